//! The DPoP proofs (RFC 9449) mandate's own endpoints check: at `/oauth2/token`, where the proof's
//! key binds the new mandate, and at `/v1/revocations`, where a bound mandate's branch is ended
//! by its holder only.

use axum::http::HeaderMap;

use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::token::pop::proof::{Expected, Proof, ProofError};

/// Why a request's proof was not accepted.
#[derive(Debug)]
pub enum Refused {
    /// The proof is malformed, stale, replayed, or for another key, URL or token.
    Proof(ProofError),
    /// The request does not say where it was sent (no usable `Host`).
    Request(ApiError),
}

impl From<ProofError> for Refused {
    fn from(error: ProofError) -> Self {
        Refused::Proof(error)
    }
}

/// The request's `DPoP` proof for `POST` on `path` of this service (`None` when it sends
/// none), checked against `token` (its `ath`) and the key `holder`, and remembered, so it is
/// refused when sent again.
pub fn post_proof(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    token: Option<&str>,
    holder: Option<&str>,
) -> Result<Option<Proof>, Refused> {
    let mut proofs = headers.get_all("dpop").iter();
    let Some(proof) = proofs.next() else {
        return Ok(None);
    };
    if proofs.next().is_some() {
        return Err(ProofError::Malformed("more than one DPoP header").into());
    }
    let proof = proof
        .to_str()
        .map_err(|_| ProofError::Malformed("the DPoP header is not text"))?;
    let origin = super::gateways::origin(headers).map_err(Refused::Request)?;
    let ath = token.map(crate::token::pop::proof::token_hash);
    let url = format!("{origin}{path}");
    let settings = state.proofs.settings();
    let expected = Expected {
        method: "POST",
        url: &url,
        ath: ath.as_deref(),
        holder,
        now: state.clock.now(),
        max_age: settings.max_age,
        max_ahead: settings.max_ahead,
    };
    Ok(Some(state.proofs.check(proof, &expected)?))
}

/// Requires the request's `DPoP` proof for `POST` on `path` by `holder`, the key `token` is
/// bound to: a 401 naming the proof's refusal otherwise.
pub fn holder_proof(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    token: &str,
    holder: &str,
) -> Result<(), ApiError> {
    let refused = |error: ProofError| ApiError::Unauthorized(format!("{}: {error}", error.code()));
    match post_proof(state, headers, path, Some(token), Some(holder)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(refused(ProofError::Missing)),
        Err(Refused::Proof(error)) => Err(refused(error)),
        Err(Refused::Request(error)) => Err(error),
    }
}
