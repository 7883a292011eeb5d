//! The block vocabulary: what `mandate token attenuate` and `attest` write reads back exactly,
//! and every other block is refused before any Datalog runs.

use std::time::{Duration, Instant};

use biscuit_auth::{BlockBuilder, KeyPair, UnverifiedBiscuit};
use chrono::DateTime;
use proptest::prelude::*;

use super::{read, Stated};
use crate::token::attenuate::{attenuate, Attenuation};
use crate::token::attest::attest;
use crate::token::constraints::{ArgConstraint, Constraint, Scalar};
use crate::token::keys::KeySet;
use crate::token::mint::{mint, MandateSpec};
use crate::token::verify::{verify_with, AccessRequest, AgentKeys, Trust, VerifyOptions};
use crate::token::{Right, TokenError};

fn mandate() -> (String, KeySet) {
    let root = KeyPair::new();
    let spec = MandateSpec {
        approvals: vec![],
        holder_key: None,
        mandate_id: "01900000-0000-7000-8000-000000000007".into(),
        task_id: "task".into(),
        task_digest: vec![1; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://idp.example.com/".into(),
        agent_id: "orchestrator".into(),
        rights: vec![right("crm", "read")],
        expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        constraints: vec![],
    };
    let token = mint(&spec, &root, 1).unwrap().token;
    (token, KeySet::from([(1, root.public())]))
}

fn right(tool: &str, operation: &str) -> Right {
    Right {
        tool: tool.into(),
        operation: operation.into(),
    }
}

/// `token` with one first-party block of `source` appended.
fn append(token: &str, source: &str) -> String {
    let block = BlockBuilder::new()
        .code(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    UnverifiedBiscuit::from_base64(token)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap()
}

fn refusal(token: &str) -> TokenError {
    read(token, 16).expect_err("refused")
}

#[test]
fn what_attenuate_writes_reads_back_exactly() {
    let (token, _) = mandate();
    let narrowings = [
        Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
        Attenuation {
            rights: Some(vec![right("crm", "read")]),
            ..Attenuation::default()
        },
        Attenuation {
            rights: Some(Vec::new()),
            ..Attenuation::default()
        },
        Attenuation {
            resources: Some(Vec::new()),
            ..Attenuation::default()
        },
        Attenuation {
            rights: Some((0..64).map(|i| right("crm", &format!("op{i}"))).collect()),
            resources: Some((0..64).map(|i| format!("r{i}")).collect()),
            expires_at: DateTime::from_timestamp(1_899_000_000, 0),
            delegate: Some("agent-b".into()),
            constraints: every_kind_of_constraint(),
        },
        Attenuation {
            constraints: every_kind_of_constraint(),
            ..Attenuation::default()
        },
    ];
    for narrowing in narrowings {
        let derived = attenuate(&token, &narrowing).unwrap();
        let mut decoded = read(&derived, 16).unwrap();
        let Some(Stated::Narrowing(mut read_back)) = decoded.blocks.pop() else {
            panic!("one narrowing");
        };
        if let Some(resources) = read_back.resources.as_mut() {
            // A Biscuit set is ordered.
            resources.sort_by_key(|r| r[1..].parse::<u32>().unwrap());
        }
        assert_eq!(read_back, narrowing);
    }
}

#[test]
fn an_attested_hop_reads_as_its_agent() {
    let (token, _) = mandate();
    let delegated = attenuate(
        &token,
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let attested = attest(&delegated, "agent-a", &KeyPair::new()).unwrap();
    let decoded = read(&attested, 16).unwrap();
    assert_eq!(
        decoded.blocks[1],
        Stated::Attestation {
            agent: "agent-a".into()
        }
    );
}

/// One hostile block of each family, each refused as not a mandate/v1 block.
fn hostile_blocks() -> Vec<(&'static str, String)> {
    let facts: String = (0..40).map(|i| format!("f({i});")).collect();
    let many_facts: String = (0..400).map(|i| format!("delegate(\"a{i}\");")).collect();
    let long_expression = (0..300)
        .map(|i| format!("$t == \"t{i}\""))
        .collect::<Vec<_>>()
        .join(" || ");
    let large_set = (0..500)
        .map(|i| format!("\"r{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        (
            "a k-way join",
            format!("{facts} r($a) <- f($a), f($b), f($c), f($d), $a + $b + $c + $d < 0;"),
        ),
        (
            "a check that joins",
            format!("{facts} check if f($a), f($b), f($c), f($d), $a + $b + $c + $d < 0;"),
        ),
        ("a rule that generates facts", "g($x) <- time($x);".into()),
        ("facts", many_facts),
        (
            "a long expression",
            format!("check if tool($t), operation($o), {long_expression};"),
        ),
        (
            "a large set",
            format!("check if resource($r), {{{large_set}}}.contains($r);"),
        ),
        (
            "a huge string",
            format!("delegate(\"{}\");", "x".repeat(4000)),
        ),
        (
            "an arithmetic expiry",
            "check if time($t), $t <= 2030-01-01T00:00:00Z, 1 + 1 == 2;".into(),
        ),
        ("check all", "check all time($t), $t <= 2030-01-01T00:00:00Z;".into()),
        ("reject if", "reject if tool(\"crm\");".into()),
        (
            "a scope",
            "check if time($t), $t <= 2030-01-01T00:00:00Z trusting previous;".into(),
        ),
        ("an unknown fact", "right(\"crm\", \"delete\");".into()),
        ("a claimed hop", "hop(\"agent-a\");".into()),
        ("an empty block", String::new()),
        (
            "a regex",
            "check if resource($r), $r.matches(\"^(a+)+$\");".into(),
        ),
        (
            "two expiries",
            "check if time($t), $t <= 2030-01-01T00:00:00Z; check if time($t), $t <= 2031-01-01T00:00:00Z;"
                .into(),
        ),
    ]
}

#[test]
fn every_family_of_hostile_block_is_refused_before_any_datalog_runs() {
    let (token, keys) = mandate();
    let trust = Trust {
        keys: &keys,
        agent_keys: &AgentKeys::new(),
        is_revoked: &|_| false,
    };
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    };
    for (family, source) in hostile_blocks() {
        let hostile = append(&token, &source);
        assert!(
            matches!(
                refusal(&hostile),
                TokenError::NotMandateBlock { index: 1, .. }
            ),
            "{family}: {}",
            refusal(&hostile)
        );
        #[expect(clippy::disallowed_methods, reason = "this test times real work")]
        let started = Instant::now();
        let verdict = verify_with(&hostile, &trust, &request, None, &VerifyOptions::default());
        let took = started.elapsed();
        assert!(
            matches!(
                verdict,
                Err(TokenError::NotMandateBlock { .. }) | Err(TokenError::TooLarge)
            ),
            "{family}: {verdict:?}"
        );
        assert!(took < Duration::from_millis(50), "{family} took {took:?}");
    }
}

#[test]
fn a_block_after_good_ones_is_still_read() {
    let (token, _) = mandate();
    let narrowed = attenuate(
        &token,
        &Attenuation {
            delegate: Some("agent-a".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let hostile = append(&narrowed, "g($x) <- time($x);");
    assert!(matches!(
        refusal(&hostile),
        TokenError::NotMandateBlock { index: 2, .. }
    ));
}

#[test]
fn attenuate_refuses_what_the_vocabulary_would_not_read_back() {
    let (token, _) = mandate();
    let rights = Attenuation {
        rights: Some((0..65).map(|i| right("crm", &format!("op{i}"))).collect()),
        ..Attenuation::default()
    };
    assert!(matches!(
        attenuate(&token, &rights),
        Err(TokenError::Malformed)
    ));
    let resources = Attenuation {
        resources: Some((0..65).map(|i| format!("r{i}")).collect()),
        ..Attenuation::default()
    };
    assert!(matches!(
        attenuate(&token, &resources),
        Err(TokenError::Malformed)
    ));
}

#[test]
fn many_blocks_are_refused_before_any_is_read() {
    let (mut token, _) = mandate();
    for _ in 0..16 {
        token = append(&token, "delegate(\"a\");");
    }
    assert!(matches!(refusal(&token), TokenError::TooManyBlocks));
}

#[test]
fn variants_of_the_documented_shapes_are_refused() {
    let (token, _) = mandate();
    for source in [
        // The same variable for tool and operation.
        "check if tool($t), operation($t), ($t == \"crm\" && $t == \"read\");",
        // Rights compared the wrong way round.
        "check if tool($t), operation($o), ($o == \"read\" && $t == \"crm\");",
        // A right joined with `&&` instead of `||`.
        "check if tool($t), operation($o), ($t == \"crm\" && $o == \"read\") && ($t == \"crm\" && $o == \"write\");",
        // A right that is not a string.
        "check if tool($t), operation($o), ($t == 1 && $o == \"read\");",
        // An expiry that is not a date.
        "check if time($t), $t <= 5;",
        // An expiry on the wrong variable.
        "check if time($t), $u <= 2030-01-01T00:00:00Z;",
        // A resource set of integers.
        "check if resource($r), {1, 2}.contains($r);",
        // A check that is true whatever the call.
        "check if true;",
        // A delegate that is not a string.
        "delegate(1);",
        // A quote in a delegate.
        "delegate(\"a\\\"b\");",
    ] {
        let hostile = append(&token, source);
        assert!(
            matches!(refusal(&hostile), TokenError::NotMandateBlock { .. }),
            "{source}"
        );
    }
}

#[test]
fn the_documented_text_forms_parse_to_the_shapes() {
    let (token, _) = mandate();
    for source in [
        "delegate(\"agent-a\");",
        "check if tool($tool), operation($operation), ($tool == \"crm\" && $operation == \"read\");",
        "check if tool($t), operation($o), ($t == \"crm\" && $o == \"read\") || ($t == \"mail\" && $o == \"send\");",
        "check if tool($t), operation($o), $t == \"crm\" && $o == \"read\";",
        "check if false;",
        "check if resource($resource), {\"acme/api\", \"acme/web\"}.contains($resource);",
        "check if time($time), $time <= 2030-01-01T00:00:00Z;",
    ] {
        let narrowed = append(&token, source);
        assert!(read(&narrowed, 16).is_ok(), "{source}");
    }
}

fn arb_right() -> impl Strategy<Value = Right> {
    ("[a-z]{1,8}", "[a-z.]{1,8}").prop_map(|(tool, operation)| Right { tool, operation })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_attenuation_reads_back_as_written(
        rights in proptest::option::of(proptest::collection::vec(arb_right(), 0..8)),
        resources in proptest::option::of(proptest::collection::btree_set("[a-z/]{1,12}", 0..8)),
        expires in proptest::option::of(1_800_000_000i64..1_900_000_000),
        delegate in proptest::option::of("[a-z-]{1,12}"),
    ) {
        let narrowing = Attenuation {
            rights,
            resources: resources.map(|r| r.into_iter().collect()),
            expires_at: expires.and_then(|s| DateTime::from_timestamp(s, 0)),
            delegate,
            constraints: vec![],
        };
        let (token, _) = mandate();
        match attenuate(&token, &narrowing) {
            Err(TokenError::EmptyAttenuation) => prop_assert_eq!(&narrowing, &Attenuation::default()),
            Err(other) => prop_assert!(false, "{}", other),
            Ok(derived) => {
                let mut decoded = read(&derived, 16).unwrap();
                let Some(Stated::Narrowing(mut read_back)) = decoded.blocks.pop() else {
                    panic!("one narrowing");
                };
                if let Some(resources) = read_back.resources.as_mut() {
                    resources.sort();
                }
                prop_assert_eq!(read_back, narrowing);
            }
        }
    }
}

/// One constraint of each kind, on `crm:write`.
fn every_kind_of_constraint() -> Vec<ArgConstraint> {
    let on = |argument: &str, constraint| ArgConstraint {
        tool: "crm".into(),
        operation: "write".into(),
        argument: argument.into(),
        constraint,
    };
    vec![
        on("repo", Constraint::Prefix("acme/".into())),
        on("path", Constraint::Glob("docs/*.md".into())),
        on(
            "labels",
            Constraint::OneOf(vec![Scalar::Text("bug".into()), Scalar::Text("p1".into())]),
        ),
        on("draft", Constraint::Equals(Scalar::Boolean(false))),
        on(
            "size",
            Constraint::OneOf(vec![Scalar::Integer(1), Scalar::Integer(3)]),
        ),
        on(
            "count",
            Constraint::Range {
                min: Some(1),
                max: None,
            },
        ),
        on(
            "count",
            Constraint::Range {
                min: None,
                max: Some(5),
            },
        ),
        on("options.title", Constraint::MaxLength(80)),
    ]
}
