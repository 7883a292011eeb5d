//! `GET /.well-known/mandate-keys`: the root public keys verifiers need to check mandates offline.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::token::keys::{AgentKeysDocument, KeysDocument, PublishedAgentKeys};

/// Verifiers may cache the document this long; they refetch sooner on an unknown kid.
const CACHE_CONTROL: &str = "public, max-age=300";

/// The root public keys: the active one and those kept for verification after a rotation.
#[utoipa::path(
    get, path = "/.well-known/mandate-keys", tag = "keys",
    responses((status = 200, description = "Published root keys", body = KeysDocument,
               headers(("cache-control" = String, description = "public, max-age=300"))))
)]
pub async fn mandate_keys(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, CACHE_CONTROL)],
        Json::<KeysDocument>(state.keys.document()),
    )
}

/// The public keys registered agents attest their delegation hops with. Verifiers count a hop
/// as attested only when it is signed by one of its agent's keys here.
#[utoipa::path(
    get, path = "/.well-known/mandate-agent-keys", tag = "keys",
    responses(
        (status = 200, description = "Registered agent keys", body = AgentKeysDocument,
         headers(("cache-control" = String, description = "public, max-age=300"))),
        (status = 503, description = "The store is unavailable", body = crate::server::error::Problem,
         content_type = "application/problem+json"),
    )
)]
pub async fn agent_keys(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut agents: Vec<PublishedAgentKeys> = Vec::new();
    for key in state.store.all_agent_keys().await? {
        match agents.last_mut() {
            Some(entry) if entry.agent == key.agent_id => entry.public_keys.push(key.public_key),
            _ => agents.push(PublishedAgentKeys {
                agent: key.agent_id,
                public_keys: vec![key.public_key],
            }),
        }
    }
    Ok((
        [(header::CACHE_CONTROL, CACHE_CONTROL)],
        Json(AgentKeysDocument { agents }),
    ))
}
