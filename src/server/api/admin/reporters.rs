//! `/v1/admin/reporters`: the verifiers and gateways whose receipts are accepted, each with an
//! accountable owner and a credential shown once.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::answers::{audit_json, shown_once, ShownOnce};
use super::auth::{Caller, Reader, Writer};
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{ActionErrors, CreateErrors, ListErrors};
use crate::server::error::ApiError;
use crate::server::model::lifecycle::{step, Versioned};
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::model::reporter::{IssuedReporter, NewReporter, Reporter, ReporterStatus};
use crate::server::secrets::{self, Secret, REPORTER_SECRET_PREFIX};
use crate::server::state::AppState;
use crate::server::store::change_event;

fn new_secret() -> Result<Secret, ApiError> {
    secrets::generate(REPORTER_SECRET_PREFIX).map_err(|e| ApiError::Internal(Box::new(e)))
}

/// Register a reporter; its credential is shown this once.
#[utoipa::path(
    post, path = "/v1/admin/reporters", tag = "admin", security(("admin_token" = [])),
    request_body = NewReporter,
    responses(
        (status = 201, description = "The reporter and its credential, shown this once", body = IssuedReporter),
        CreateErrors,
    )
)]
pub async fn create_reporter(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewReporter>,
) -> Result<ShownOnce<IssuedReporter>, ApiError> {
    body.check()?;
    let now = state.clock.now();
    let reporter = body.into_reporter(now);
    let secret = new_secret()?;
    let audit = change_event(
        now,
        &caller.actor(),
        "reporter.created",
        format!("reporter:{}", reporter.id),
        None,
        audit_json(&reporter),
    );
    state
        .store
        .insert_reporter(&reporter, &secret.hash(), &audit)
        .await?;
    Ok(shown_once(IssuedReporter {
        reporter,
        secret: secret.expose().to_owned(),
    }))
}

/// Page of `GET /v1/admin/reporters`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReporterQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// List reporters by id (never their credentials).
#[utoipa::path(
    get, path = "/v1/admin/reporters", tag = "admin", security(("admin_token" = [])),
    params(ReporterQuery),
    responses(
        (status = 200, description = "One page", body = Paged<Reporter>),
        ListErrors,
    )
)]
pub async fn list_reporters(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<ReporterQuery>,
) -> Result<Json<Paged<Reporter>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let rows = state.store.list_reporters(&page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |r| r.id.clone())))
}

/// Writes `after` (one version on from `before`) with its audit event, and a new credential.
async fn save(
    state: &AppState,
    caller: &Caller,
    action: &str,
    before: Reporter,
    mut after: Reporter,
    secret: Option<&Secret>,
) -> Result<Reporter, ApiError> {
    let now = state.clock.now();
    after.follow(&before, now);
    let audit = change_event(
        now,
        &caller.actor(),
        action,
        format!("reporter:{}", after.id),
        audit_json(&before),
        audit_json(&after),
    );
    let hash = secret.map(Secret::hash);
    state
        .store
        .update_reporter(&after, hash.as_ref(), &audit)
        .await?;
    Ok(after)
}

async fn load(state: &AppState, id: &str) -> Result<Reporter, ApiError> {
    state
        .store
        .reporter(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no reporter `{id}`")))
}

/// Replace a reporter's credential: the old one stops working now; the new one is shown once.
#[utoipa::path(
    post, path = "/v1/admin/reporters/{id}/secret/rotate", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Reporter id")),
    responses(
        (status = 201, description = "The new credential, shown this once", body = IssuedReporter),
        ActionErrors,
    )
)]
pub async fn rotate_reporter_secret(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<ShownOnce<IssuedReporter>, ApiError> {
    let before = load(&state, &id).await?;
    let secret = new_secret()?;
    let after = before.clone();
    let reporter = save(
        &state,
        &caller,
        "reporter.secret_rotated",
        before,
        after,
        Some(&secret),
    )
    .await?;
    Ok(shown_once(IssuedReporter {
        reporter,
        secret: secret.expose().to_owned(),
    }))
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    id: &str,
    to: ReporterStatus,
    action: &str,
) -> Result<Json<Reporter>, ApiError> {
    let before = load(state, id).await?;
    // A reporter's statuses revoke nothing: asking for the status it has is a conflict.
    step(id, before.status, to).map_err(|e| ApiError::Conflict(e.0))?;
    let mut after = before.clone();
    after.status = to;
    Ok(Json(
        save(state, caller, action, before, after, None).await?,
    ))
}

/// Refuse a reporter's credential from now on.
#[utoipa::path(
    post, path = "/v1/admin/reporters/{id}/disable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Reporter id")),
    responses(
        (status = 200, description = "Disabled", body = Reporter),
        ActionErrors,
    )
)]
pub async fn disable_reporter(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<Reporter>, ApiError> {
    set_status(
        &state,
        &caller,
        &id,
        ReporterStatus::Disabled,
        "reporter.disabled",
    )
    .await
}

/// Accept a disabled reporter's credential again.
#[utoipa::path(
    post, path = "/v1/admin/reporters/{id}/enable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Reporter id")),
    responses(
        (status = 200, description = "Active again", body = Reporter),
        ActionErrors,
    )
)]
pub async fn enable_reporter(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<Reporter>, ApiError> {
    set_status(
        &state,
        &caller,
        &id,
        ReporterStatus::Active,
        "reporter.enabled",
    )
    .await
}
