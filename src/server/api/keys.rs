//! `GET /.well-known/mandate-keys`: the root public keys verifiers need to check mandates offline.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::server::app::AppState;
use crate::token::keys::KeysDocument;

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
