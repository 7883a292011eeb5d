//! The block vocabulary: any Datalog appended to a real mandate as a holder's block (mode 0),
//! or any bytes as a token (mode 1). The reader answers in time linear in the input and never
//! panics; whatever it accepts, the authorizer evaluates within its run limits and grants only
//! the mandate's own rights.
#![no_main]

use std::sync::LazyLock;

use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
use libfuzzer_sys::fuzz_target;
use mandate::token::keys::KeySet;
use mandate::token::verify::{check, AccessRequest, AgentKeys, Trust, VerifyOptions};
use mandate::token::{vocabulary, TokenError};
use mandate_fuzz as fixture;

static KEYS: LazyLock<(KeySet, AgentKeys, String)> =
    LazyLock::new(|| (fixture::keys(), fixture::agent_keys(), fixture::mandate()));

/// The token to read: the mandate with `source` appended, or the raw bytes as a token.
fn token(data: &[u8], mandate: &str) -> Option<String> {
    match data.split_first() {
        Some((0, source)) => {
            let source = std::str::from_utf8(source).ok()?;
            let block = BlockBuilder::new().code(source).ok()?;
            let parent = UnverifiedBiscuit::from_base64(mandate).ok()?;
            parent.append(block).ok()?.to_base64().ok()
        }
        _ => Some(fixture::token_text(data)),
    }
}

fuzz_target!(|data: &[u8]| {
    let (keys, agent_keys, mandate) = &*KEYS;
    let Some(token) = token(data, mandate) else {
        return;
    };
    if vocabulary::read(&token, 16).is_err() {
        return;
    }
    let trust = Trust {
        keys,
        agent_keys,
        is_revoked: &|_| false,
    };
    let options = VerifyOptions::default();
    let Ok(checked) = check(&token, &trust, &options) else {
        return;
    };
    for asked in fixture::asked() {
        let request = AccessRequest {
            tool: asked.tool.clone(),
            operation: asked.operation.clone(),
            now: fixture::now(),
        };
        for resource in [None, Some("ACME")] {
            match checked.authorize(&|_| false, &request, resource, &options) {
                Ok(verified) => assert!(
                    fixture::granted().contains(&asked) && verified.rights.contains(&asked),
                    "authorized {asked:?} outside the mandate's rights"
                ),
                Err(TokenError::NotAuthorized(reason)) => assert!(
                    !reason.contains("run limits"),
                    "an accepted block reached the run limits"
                ),
                Err(_) => {}
            }
        }
    }
});
