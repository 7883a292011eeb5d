//! `GET /v1/admin/audit`: the audit trail, oldest first.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Reader;
use crate::server::api::extract::ApiQuery;
use crate::server::api::problems::{GetErrors, ListErrors};
use crate::server::audit::AuditReport;
use crate::server::error::ApiError;
use crate::server::model::page::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::server::state::AppState;
use crate::server::store::AuditEvent;

/// Page of the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events after this sequence number (the last `seq` seen).
    pub after: Option<i64>,
    /// Events per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// Read the audit trail in order.
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "admin", security(("admin_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Events after `after`, oldest first", body = Vec<AuditEvent>),
        ListErrors,
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 200"));
    }
    let events = state
        .store
        .audit_events(query.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(events))
}

/// Recompute the whole audit chain, its events' MACs and its signed checkpoints; names the
/// first bad event, and adds what this replica's own walks found (`replica`).
#[utoipa::path(
    get, path = "/v1/admin/audit/verify", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "What verification found (`intact`, `first_bad`)", body = AuditReport),
        GetErrors,
    )
)]
pub async fn verify_audit(
    State(state): State<AppState>,
    Reader(_reader): Reader,
) -> Result<Json<AuditReport>, ApiError> {
    let keys = state
        .keys
        .document()
        .key_set()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let seal = crate::server::audit_seal::AuditSeal::from_ring(&state.keys);
    let mut report = crate::server::audit::verify(state.store.as_ref(), &keys, &seal).await?;
    let replica = state.audit.status();
    if replica.broken_at.is_some() {
        report.intact = false;
    }
    report.replica = Some(replica);
    Ok(Json(report))
}
