//! Attested hops: a registered agent signs, with its own Ed25519 key, a third-party block
//! stating `hop($agent)`. Biscuit binds the block to the token it was requested for, so it
//! cannot be moved onto another token or reordered; verifiers accept it only when the key is
//! the one registered for that agent.
//!
//! A signing service signs whatever request it is sent: it must authenticate its caller, or
//! anyone reaching it gets hops attested in its agent's name.
//!
//! When the holder is the agent itself, [`attest`] does everything. When the key lives
//! elsewhere (a signing service), the holder sends [`attestation_request`] there, the signer
//! answers with [`sign_attestation`], and the holder appends it with [`append_attestation`].
//!
//! [`rebind`] appends the other signed block a holder makes: moving a bound mandate's binding
//! to the next holder's key ([`super::pop`]).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use biscuit_auth::builder::Term;
use biscuit_auth::{BlockBuilder, KeyPair, PrivateKey, ThirdPartyRequest, UnverifiedBiscuit};

use super::TokenError;

/// The request a signer needs (base64): it binds the attestation to this token.
pub fn attestation_request(token: &str) -> Result<String, TokenError> {
    let token = UnverifiedBiscuit::from_base64(token)?;
    Ok(token.third_party_request()?.serialize_base64()?)
}

/// The attestation block for `request`, signed by `agent_id`'s key (base64).
pub fn sign_attestation(
    request: &str,
    agent_id: &str,
    key: &PrivateKey,
) -> Result<String, TokenError> {
    if agent_id.is_empty()
        || agent_id
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(TokenError::Malformed);
    }
    let request = ThirdPartyRequest::deserialize_base64(request)?;
    let params = HashMap::from([("agent".to_owned(), Term::Str(agent_id.to_owned()))]);
    let block = BlockBuilder::new().code_with_params("hop({agent});", params, HashMap::new())?;
    Ok(request.create_block(key, block)?.serialize_base64()?)
}

/// Appends a signed attestation block to `token`.
pub fn append_attestation(token: &str, block: &str) -> Result<String, TokenError> {
    let bytes = URL_SAFE.decode(block).map_err(|_| TokenError::Malformed)?;
    let token = UnverifiedBiscuit::from_base64(token)?;
    Ok(token.append_third_party(&bytes)?.to_base64()?)
}

/// Attests that `agent_id`, holding `key`, now holds `token`.
pub fn attest(token: &str, agent_id: &str, key: &KeyPair) -> Result<String, TokenError> {
    let request = attestation_request(token)?;
    let block = sign_attestation(&request, agent_id, &key.private())?;
    append_attestation(token, &block)
}

/// Moves the binding of `token`, held by `holder`, to the key whose thumbprint is `next`: a
/// third-party block stating `holder_key(next)`, signed by `holder`.
pub fn rebind(
    token: &str,
    holder: &super::pop::HolderSecret,
    next: &str,
) -> Result<String, TokenError> {
    if token.len() > super::MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    if !super::pop::is_thumbprint(next) {
        return Err(TokenError::Malformed);
    }
    let parent = UnverifiedBiscuit::from_base64(token)?;
    let request: ThirdPartyRequest = parent.third_party_request()?;
    let params = HashMap::from([("jkt".to_owned(), Term::Str(next.to_owned()))]);
    let block =
        BlockBuilder::new().code_with_params("holder_key({jkt});", params, HashMap::new())?;
    let signed = request.create_block(&holder.biscuit_key()?, block)?;
    Ok(parent
        .append_third_party(&signed.serialize()?)?
        .to_base64()?)
}
