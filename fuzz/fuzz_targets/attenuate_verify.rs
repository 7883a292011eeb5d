//! Attenuation never widens: a mandate narrowed by up to three fuzzed attenuations (rights,
//! resources, expiry, delegate, argument constraints; some attested by a registered agent)
//! allows a request only if the mandate itself allows it, a call with fuzzed arguments only if
//! every constraint allows them, and a narrowing that cannot be stated is refused, not mangled.
#![no_main]

use std::sync::LazyLock;

use chrono::Duration;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
use mandate::token::constraints::{ArgConstraint, Constraint, Scalar};
use mandate::token::keys::KeySet;
use mandate::token::verify::{check, AccessRequest, AgentKeys, Trust, VerifyOptions};
use mandate::token::Right;
use mandate_fuzz as fixture;

static FIXTURE: LazyLock<(String, KeySet, AgentKeys)> =
    LazyLock::new(|| (fixture::mandate(), fixture::keys(), fixture::agent_keys()));

/// A name: usually one the fixtures know, sometimes anything.
fn name(u: &mut Unstructured<'_>, known: &[&str]) -> Result<String> {
    if u.ratio(1, 4)? {
        u.arbitrary()
    } else {
        Ok((*u.choose(known)?).to_owned())
    }
}

fn attenuation(u: &mut Unstructured<'_>) -> Result<Attenuation> {
    let rights = if u.arbitrary()? {
        let n = u.int_in_range(0..=4)?;
        let mut rights = Vec::with_capacity(n);
        for _ in 0..n {
            rights.push(Right {
                tool: name(u, &["crm", "github"])?,
                operation: name(u, &["read", "write", "delete", "issues.read"])?,
            });
        }
        Some(rights)
    } else {
        None
    };
    let resources = if u.arbitrary()? {
        let n = u.int_in_range(0..=3)?;
        let mut resources = Vec::with_capacity(n);
        for _ in 0..n {
            resources.push(name(u, &["ACME", "Globex"])?);
        }
        Some(resources)
    } else {
        None
    };
    let expires_at = if u.arbitrary()? {
        Some(fixture::now() + Duration::seconds(u.int_in_range(-7200..=7200)?))
    } else {
        None
    };
    let delegate = if u.arbitrary()? {
        Some(name(u, &["helper", "summariser"])?)
    } else {
        None
    };
    let mut constraints = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        constraints.push(ArgConstraint {
            tool: name(u, &["crm", "github"])?,
            operation: name(u, &["read", "write"])?,
            argument: name(u, &["id", "queue"])?,
            constraint: constraint(u)?,
        });
    }
    Ok(Attenuation {
        rights,
        resources,
        expires_at,
        delegate,
        constraints,
    })
}

fn scalar(u: &mut Unstructured<'_>) -> Result<Scalar> {
    Ok(match u.int_in_range(0..=2)? {
        0 => Scalar::Integer(u.int_in_range(-3..=3)?),
        1 => Scalar::Boolean(u.arbitrary()?),
        _ => Scalar::Text(name(u, &["T-1", "T-2", "sales"])?),
    })
}

fn constraint(u: &mut Unstructured<'_>) -> Result<Constraint> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Constraint::Equals(scalar(u)?),
        1 => Constraint::OneOf(vec![scalar(u)?, scalar(u)?]),
        2 => Constraint::Prefix(name(u, &["T-", "s"])?),
        3 => Constraint::Glob(name(u, &["T-*", "?-1", "*"])?),
        4 => Constraint::Range {
            min: u.arbitrary::<Option<i8>>()?.map(i64::from),
            max: u.arbitrary::<Option<i8>>()?.map(i64::from),
        },
        _ => Constraint::MaxLength(u.int_in_range(0..=4)?),
    })
}

/// A call's arguments: the paths constraints name, with fuzzed values.
fn arguments(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    let mut members = serde_json::Map::new();
    for path in ["id", "queue"] {
        let value = match u.int_in_range(0..=4)? {
            0 => continue,
            1 => serde_json::json!(u.int_in_range(-3..=3)?),
            2 => serde_json::json!(name(u, &["T-1", "T-22", "sales"])?),
            3 => serde_json::json!([name(u, &["T-1", "sales"])?]),
            _ => serde_json::json!(u.arbitrary::<bool>()?),
        };
        members.insert(path.to_owned(), value);
    }
    Ok(serde_json::Value::Object(members))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let (mandate, keys, agent_keys) = &*FIXTURE;
    let never = |_: &[u8]| false;
    let trust = Trust {
        keys,
        agent_keys,
        is_revoked: &never,
    };
    let options = VerifyOptions::default();
    let mut token = mandate.clone();
    for _ in 0..u.int_in_range(1..=3)? {
        let step = attenuation(u)?;
        match attenuate(&token, &step) {
            Ok(derived) => token = derived,
            // Refused: nothing to narrow, or a value that cannot be stated in a block.
            Err(_) => return Ok(()),
        }
        if step.delegate.as_deref() == Some("helper") && u.arbitrary()? {
            token = match attest(&token, "helper", &fixture::helper()) {
                Ok(attested) => attested,
                Err(error) => panic!("attesting a derived token failed: {error}"),
            };
        }
    }
    // The mandate allows exactly its granted rights, on any resource, until it expires.
    let checked = match check(&token, &trust, &options) {
        Ok(checked) => checked,
        Err(error) => panic!("a derived token does not verify: {error}"),
    };
    // Three requests per input; the fuzzer varies which across inputs.
    let asked_all = fixture::asked();
    for _ in 0..3 {
        let asked = u.choose(&asked_all)?;
        let resource = *u.choose(&[None, Some("ACME"), Some("Globex")])?;
        let at = fixture::now() + Duration::seconds(u.int_in_range(-60..=4000)?);
        let request = AccessRequest {
            tool: asked.tool.clone(),
            operation: asked.operation.clone(),
            now: at,
        };
        let mandate_allows = fixture::granted().contains(asked) && at <= fixture::expires();
        let args = arguments(u)?;
        if checked
            .authorize_call(&never, &request, resource, Some(&args), &options)
            .is_ok()
        {
            assert!(
                mandate_allows,
                "a constrained call the mandate does not allow"
            );
            let stated = mandate::token::constraints::Arguments::from_json(
                &args,
                &["id", "queue"].into_iter().collect(),
            );
            for c in checked.constraints_on(&asked.tool, &asked.operation) {
                let allowed = stated
                    .0
                    .get(&c.argument)
                    .is_some_and(|v| c.constraint.allows(v));
                assert!(allowed, "{c:?} does not allow {args}, yet the token did");
            }
        }
        if let Ok(verified) = checked.authorize(&never, &request, resource, &options) {
            assert!(
                mandate_allows,
                "the derived token allows {asked:?} on {resource:?} at {at}, the mandate does not"
            );
            for hop in &verified.hops {
                assert!(!hop.attested || hop.agent == "helper", "{hop:?}");
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
