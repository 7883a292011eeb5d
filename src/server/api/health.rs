//! Probes: `/healthz` (the process is alive) and `/readyz` (it can serve: store reachable,
//! signing key loaded).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::server::error::{ApiError, Problem};
use crate::server::state::AppState;

/// How long readiness waits for the store before calling it unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// The store in use: `postgres` or `sqlite`.
    #[schema(example = "postgres")]
    pub store: String,
    /// The kid of the key that signs new mandates.
    #[schema(example = 1)]
    pub active_kid: u32,
    /// What this replica's last walk of the audit chain found (a broken chain does not make
    /// the replica unready: it still refuses to sign over the break).
    pub audit: crate::server::audit::ReplicaAudit,
}

/// The process is alive.
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// The service can serve requests: its store answers and a signing key is loaded.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "The store does not answer", body = Problem,
         content_type = "application/problem+json")
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: store ping failed");
            return Err(ApiError::Unavailable(
                "the store does not answer".to_owned(),
            ));
        }
        Err(_) => {
            return Err(ApiError::Unavailable(
                "the store did not answer in time".to_owned(),
            ))
        }
    }
    let store = serde_json::to_value(state.store.backend())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Json(Readiness {
        status: "ready".to_owned(),
        store,
        active_kid: state.keys.active().kid,
        audit: state.audit.status(),
    }))
}

/// Every metric in the Prometheus text exposition format, for scraping. Labels are bounded
/// outcome, reason and operation names; none identifies a principal, an agent or a token.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The metrics", body = String,
         content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "The metrics could not be encoded", body = Problem,
         content_type = "application/problem+json")
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    ))
}
