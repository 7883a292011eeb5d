//! The development identity provider's routes (`serve --dev` only): its JWKS and discovery
//! document, so the service validates the tokens `mandate dev login` signs as it would any
//! issuer's.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::server::dev::DevIdp;

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(idp.jwks())
}

async fn discovery(State(idp): State<Arc<DevIdp>>) -> Json<Value> {
    Json(json!({
        "issuer": idp.issuer(), "jwks_uri": format!("{}/jwks.json", idp.issuer()),
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }))
}

/// The dev issuer's routes: its JWKS and discovery document.
pub fn routes<S: Clone + Send + Sync + 'static>(idp: Arc<DevIdp>) -> Router<S> {
    Router::new()
        .route("/dev/idp/jwks.json", get(jwks))
        .route("/dev/idp/.well-known/openid-configuration", get(discovery))
        .with_state(idp)
}
