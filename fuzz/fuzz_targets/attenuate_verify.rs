//! Attenuation never widens: a mandate narrowed by up to three fuzzed attenuations (rights,
//! resources, expiry, delegate; some attested by a registered agent) allows a request only if
//! the mandate itself allows it, and a narrowing that cannot be stated is refused, not mangled.
#![no_main]

use std::sync::LazyLock;

use chrono::Duration;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
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
    Ok(Attenuation {
        rights,
        resources,
        expires_at,
        delegate,
    })
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
