//! Who holds a token, read from its blocks after the authority and the keys that signed them:
//! the delegation hops (claimed, or attested by the agent's registered key), and the key the
//! token is bound to (moved only by blocks its holder so far signed).

use biscuit_auth::PublicKey;
use serde::{Deserialize, Serialize};

use super::keys::AgentKeys;
use super::vocabulary::Stated;
use super::TokenError;

/// One step of the delegation chain after the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The agent that received the token.
    pub agent: String,
    /// Whether that agent signed its hop with its registered key.
    pub attested: bool,
}

/// The hops of a token's later blocks: each `delegate` names a claimed hop; an attestation
/// turns the last hop into an attested one, if the key that signed it (from the verified
/// token) is registered for that agent.
pub(super) fn hops(
    blocks: &[Stated],
    signers: &[Option<PublicKey>],
    agent_keys: &AgentKeys,
) -> Result<Vec<Hop>, TokenError> {
    let mut hops: Vec<Hop> = Vec::new();
    for (block, signer) in blocks.iter().zip(signers.iter().skip(1)) {
        match (block, signer) {
            (Stated::Attestation { agent }, Some(signer)) => {
                let last = hops
                    .last_mut()
                    .filter(|h| &h.agent == agent && !h.attested)
                    .ok_or_else(|| {
                        TokenError::ForgedAttestation(format!(
                            "`{agent}` attests a hop the token was not delegated to it for"
                        ))
                    })?;
                let registered = agent_keys
                    .get(agent)
                    .is_some_and(|keys| keys.contains(signer));
                if !registered {
                    return Err(TokenError::ForgedAttestation(format!(
                        "the attestation of `{agent}` is not signed by a key registered for it"
                    )));
                }
                last.attested = true;
            }
            // Checked by `holder`.
            (Stated::Rebind { .. }, Some(_)) => {}
            (Stated::Narrowing(narrowing), None) => {
                if let Some(agent) = &narrowing.delegate {
                    hops.push(Hop {
                        agent: agent.clone(),
                        attested: false,
                    });
                }
            }
            // The vocabulary reads a block as an attestation exactly when it is signed by a
            // key of its own; the verified token must agree.
            _ => return Err(TokenError::Malformed),
        }
    }
    Ok(hops)
}

/// The key a token is bound to after its last block: the authority's binding, moved by each
/// rebinding block, which the key bound so far must have signed.
pub(super) fn holder(
    bound: Option<&str>,
    blocks: &[Stated],
    signers: &[Option<PublicKey>],
) -> Result<Option<String>, TokenError> {
    let mut holder = bound.map(str::to_owned);
    for (block, signer) in blocks.iter().zip(signers.iter().skip(1)) {
        let Stated::Rebind { holder_key } = block else {
            continue;
        };
        let Some(current) = &holder else {
            return Err(TokenError::ForgedBinding(
                "a mandate bound to no key cannot be bound offline".to_owned(),
            ));
        };
        let signed_by = signer
            .as_ref()
            .and_then(super::pop::HolderKey::from_biscuit)
            .map(|key| key.thumbprint());
        if signed_by.as_deref() != Some(current.as_str()) {
            return Err(TokenError::ForgedBinding(
                "the binding is moved by a block the holder's key did not sign".to_owned(),
            ));
        }
        holder = Some(holder_key.clone());
    }
    Ok(holder)
}
