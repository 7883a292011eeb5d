//! Any bytes, as a token's text or as its raw Biscuit encoding: verification answers with an
//! error or with rights the mandate granted, and never panics or runs unbounded.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mandate::token::keys::KeySet;
use mandate::token::verify::{check, read_out, AccessRequest, AgentKeys, Trust, VerifyOptions};
use mandate_fuzz as fixture;

static KEYS: LazyLock<(KeySet, AgentKeys)> =
    LazyLock::new(|| (fixture::keys(), fixture::agent_keys()));

fuzz_target!(|data: &[u8]| {
    let token = fixture::token_text(data);
    let (keys, agent_keys) = &*KEYS;
    let revoked = |id: &[u8]| id.first() == Some(&0);
    let trust = Trust {
        keys,
        agent_keys,
        is_revoked: &revoked,
    };
    let options = VerifyOptions::default();
    let _ = read_out(&token, &trust, &options);
    let Ok(checked) = check(&token, &trust, &options) else {
        return;
    };
    assert!(checked.revocation_ids().len() <= options.max_blocks);
    for asked in fixture::asked() {
        let request = AccessRequest {
            tool: asked.tool.clone(),
            operation: asked.operation.clone(),
            now: fixture::now(),
        };
        for resource in [None, Some("ACME")] {
            if let Ok(verified) = checked.authorize(&revoked, &request, resource, &options) {
                assert!(
                    verified.rights.contains(&asked),
                    "authorized {asked:?} outside the mandate's rights {:?}",
                    verified.rights
                );
                assert!(
                    !verified
                        .revocation_ids
                        .iter()
                        .any(|id| id.starts_with("00")),
                    "a revoked token was authorized"
                );
            }
        }
    }
});
