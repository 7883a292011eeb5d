//! Argument constraints end to end: minted or added offline, checked by Datalog against a
//! call's arguments, refused with the argument named, and never loosened by attenuation.

use biscuit_auth::KeyPair;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{ArgConstraint, Constraint, Scalar};
use crate::token::attenuate::{attenuate, Attenuation};
use crate::token::keys::KeySet;
use crate::token::mint::{mint, MandateSpec};
use crate::token::verify::{check, AccessRequest, AgentKeys, Trust, VerifyOptions};
use crate::token::{Right, TokenError};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn on(argument: &str, constraint: Constraint) -> ArgConstraint {
    ArgConstraint {
        tool: "github".into(),
        operation: "issues.create".into(),
        argument: argument.into(),
        constraint,
    }
}

fn text(s: &str) -> Scalar {
    Scalar::Text(s.into())
}

fn mandate(constraints: Vec<ArgConstraint>) -> (String, KeySet) {
    let root = KeyPair::new();
    let right = |operation: &str| Right {
        tool: "github".into(),
        operation: operation.into(),
    };
    let spec = MandateSpec {
        approvals: vec![],
        holder_key: None,
        mandate_id: "01900000-0000-7000-8000-00000000000c".into(),
        task_id: "triage".into(),
        task_digest: vec![0; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://idp.example.com/".into(),
        agent_id: "bot".into(),
        rights: vec![right("issues.create"), right("issues.read")],
        expires_at: now() + Duration::minutes(10),
        constraints,
    };
    let token = mint(&spec, &root, 1).map(|m| m.token).unwrap_or_default();
    (token, KeySet::from([(1, root.public())]))
}

/// Verifies a call of `operation` with `arguments` (`None`: the verifier states none).
fn call(
    token: &str,
    keys: &KeySet,
    operation: &str,
    arguments: Option<Value>,
) -> Result<(), TokenError> {
    let agents = AgentKeys::new();
    let trust = Trust {
        keys,
        agent_keys: &agents,
        is_revoked: &|_| false,
    };
    let request = AccessRequest {
        tool: "github".into(),
        operation: operation.into(),
        now: now(),
    };
    let options = VerifyOptions::default();
    check(token, &trust, &options)?
        .authorize_call(&|_| false, &request, None, arguments.as_ref(), &options)
        .map(|_| ())
}

fn refused_argument(result: Result<(), TokenError>) -> Option<(String, String)> {
    match result {
        Err(TokenError::ArgumentNotAllowed {
            argument,
            requirement,
        }) => Some((argument, requirement)),
        _ => None,
    }
}

#[test]
fn a_minted_constraint_allows_calls_inside_it_and_names_the_argument_outside_it() {
    let (token, keys) = mandate(vec![
        on("repo", Constraint::Prefix("acme/".into())),
        on(
            "labels",
            Constraint::OneOf(vec![text("bug"), text("triage")]),
        ),
    ]);
    let good = json!({"repo": "acme/web", "labels": ["bug"], "title": "x"});
    assert_eq!(
        call(&token, &keys, "issues.create", Some(good)).ok(),
        Some(())
    );
    let empty_labels = json!({"repo": "acme/web", "labels": []});
    assert!(call(&token, &keys, "issues.create", Some(empty_labels)).is_ok());

    let elsewhere = json!({"repo": "evil/web", "labels": ["bug"]});
    assert_eq!(
        refused_argument(call(&token, &keys, "issues.create", Some(elsewhere))),
        Some(("repo".into(), "must start with `acme/`".into()))
    );
    let bad_label = json!({"repo": "acme/web", "labels": ["bug", "p0"]});
    assert_eq!(
        refused_argument(call(&token, &keys, "issues.create", Some(bad_label))),
        Some(("labels".into(), "must be one of `bug`, `triage`".into()))
    );
    // A value of another type, or none at all, does not pass: the checks fail closed.
    let number = json!({"repo": 7, "labels": ["bug"]});
    assert!(refused_argument(call(&token, &keys, "issues.create", Some(number))).is_some());
    let missing = json!({"labels": ["bug"]});
    let (argument, requirement) =
        refused_argument(call(&token, &keys, "issues.create", Some(missing))).unwrap_or_default();
    assert_eq!(argument, "repo");
    assert!(requirement.contains("does not give it"), "{requirement}");
    // A verifier that states no arguments refuses the constrained operation only.
    assert!(call(&token, &keys, "issues.create", None).is_err());
    assert!(call(&token, &keys, "issues.read", None).is_ok());
}

#[test]
fn every_kind_of_constraint_is_enforced_by_the_token() {
    let cases: Vec<(Constraint, Value, Value)> = vec![
        (
            Constraint::Equals(text("main")),
            json!("main"),
            json!("dev"),
        ),
        (
            Constraint::Equals(Scalar::Boolean(false)),
            json!(false),
            json!(true),
        ),
        (Constraint::Equals(Scalar::Integer(3)), json!(3), json!("3")),
        (
            Constraint::OneOf(vec![Scalar::Integer(1), Scalar::Integer(2)]),
            json!(2),
            json!(3),
        ),
        (
            Constraint::Prefix("acme/".into()),
            json!("acme/x"),
            json!("acm"),
        ),
        (
            Constraint::Glob("docs/*.md".into()),
            json!("docs/a/b.md"),
            json!("docs/a.mdx"),
        ),
        (
            Constraint::Glob("v?.(x)".into()),
            json!("v1.(x)"),
            json!("v1x(x)"),
        ),
        (
            Constraint::Range {
                min: Some(1),
                max: Some(10),
            },
            json!(10),
            json!(11),
        ),
        (
            Constraint::Range {
                min: Some(1),
                max: None,
            },
            json!(1),
            json!(0),
        ),
        (
            Constraint::Range {
                min: None,
                max: Some(5),
            },
            json!(-4),
            json!(2.5),
        ),
        (Constraint::MaxLength(3), json!("abc"), json!("abcd")),
        (
            Constraint::MaxLength(2),
            json!(["a", "b"]),
            json!(["a", "b", "c"]),
        ),
    ];
    for (constraint, inside, outside) in cases {
        let (token, keys) = mandate(vec![on("options.value", constraint.clone())]);
        let args = |v: &Value| Some(json!({"options": {"value": v}}));
        assert!(
            call(&token, &keys, "issues.create", args(&inside)).is_ok(),
            "{constraint:?} refuses {inside}"
        );
        assert!(
            call(&token, &keys, "issues.create", args(&outside)).is_err(),
            "{constraint:?} allows {outside}"
        );
    }
}

#[test]
fn a_holder_adds_constraints_offline_and_a_narrowed_token_reports_them() {
    let (token, keys) = mandate(vec![on("repo", Constraint::Prefix("acme/".into()))]);
    let narrowed = attenuate(
        &token,
        &Attenuation {
            constraints: vec![on("repo", Constraint::Equals(text("acme/web")))],
            ..Attenuation::default()
        },
    )
    .unwrap_or_default();
    let web = json!({"repo": "acme/web"});
    let api = json!({"repo": "acme/api"});
    assert!(call(&narrowed, &keys, "issues.create", Some(web)).is_ok());
    assert!(call(&token, &keys, "issues.create", Some(api.clone())).is_ok());
    assert_eq!(
        refused_argument(call(&narrowed, &keys, "issues.create", Some(api))),
        Some(("repo".into(), "must equal `acme/web`".into()))
    );
    // An attempt to loosen is only one more check: the mandate's own still holds.
    let loosened = attenuate(
        &token,
        &Attenuation {
            constraints: vec![on("repo", Constraint::Prefix("".into()))],
            ..Attenuation::default()
        },
    );
    assert!(loosened.is_err(), "an empty prefix is not a constraint");
    let elsewhere = attenuate(
        &token,
        &Attenuation {
            constraints: vec![on("repo", Constraint::Prefix("evil/".into()))],
            ..Attenuation::default()
        },
    )
    .unwrap_or_default();
    let evil = json!({"repo": "evil/x"});
    assert!(call(&elsewhere, &keys, "issues.create", Some(evil)).is_err());
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let word = "[a-c]{0,3}";
    prop_oneof![
        word.prop_map(|w| Constraint::Equals(Scalar::Text(format!("x{w}")))),
        proptest::collection::vec(word, 1..4).prop_map(|ws| Constraint::OneOf(
            ws.into_iter().map(|w| text(&format!("x{w}"))).collect()
        )),
        word.prop_map(|w| Constraint::Prefix(format!("x{w}"))),
        "[a-c*?]{0,4}".prop_map(|g| Constraint::Glob(format!("x{g}"))),
        (0i64..6, 0i64..6).prop_map(|(a, b)| Constraint::Range {
            min: Some(a.min(b)),
            max: Some(a.max(b))
        }),
        (0u32..5).prop_map(Constraint::MaxLength),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "x[a-c]{0,4}".prop_map(Value::from),
        (0i64..6).prop_map(Value::from),
        proptest::collection::vec("x[a-c]{0,2}", 0..3).prop_map(|v| json!(v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever a holder adds, a call the parent refuses stays refused, and Datalog decides
    /// each constraint as `Constraint::allows` says.
    #[test]
    fn no_attenuation_loosens_an_argument_constraint(
        minted in proptest::collection::vec(constraint(), 1..3),
        added in proptest::collection::vec(constraint(), 1..3),
        arg in value(),
    ) {
        let (token, keys) = mandate(minted.iter().cloned().map(|c| on("a", c)).collect());
        let child = attenuate(&token, &Attenuation {
            constraints: added.iter().cloned().map(|c| on("a", c)).collect(),
            ..Attenuation::default()
        }).unwrap_or_default();
        let args = Some(json!({ "a": arg.clone() }));
        let parent_allows = call(&token, &keys, "issues.create", args.clone()).is_ok();
        let child_allows = call(&child, &keys, "issues.create", args).is_ok();
        prop_assert!(!child_allows || parent_allows, "the child allows what its parent refuses");
        let stated = super::arg_value(&arg);
        let native = |cs: &[Constraint]| {
            stated.as_ref().is_some_and(|v| cs.iter().all(|c| c.allows(v)))
        };
        prop_assert_eq!(parent_allows, native(&minted));
        let both: Vec<Constraint> = minted.iter().chain(&added).cloned().collect();
        prop_assert_eq!(child_allows, native(&both));
    }
}
