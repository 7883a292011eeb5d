//! `/v1/admin/tokens`: admin API tokens, shown once at creation, revocable.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::answers::{audit_json, shown_once, ShownOnce};
use super::auth::{Reader, Writer};
use crate::server::admin_tokens::issue_admin_token;
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{ActionErrors, CreateErrors, ListErrors};
use crate::server::error::ApiError;
use crate::server::model::admin_token::{AdminToken, IssuedAdminToken, NewAdminToken, Role};
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::state::AppState;
use crate::server::store::change_event;

/// Create an admin token (shown once).
#[utoipa::path(
    post, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    request_body = NewAdminToken,
    responses(
        (status = 201, description = "The token, shown this once", body = IssuedAdminToken),
        CreateErrors,
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewAdminToken>,
) -> Result<ShownOnce<IssuedAdminToken>, ApiError> {
    let now = state.clock.now();
    let issued = issue_admin_token(state.store.as_ref(), body, &caller.actor(), now).await?;
    Ok(shown_once(issued))
}

/// Filters and page of `GET /v1/admin/tokens`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Only tokens with this role.
    pub role: Option<Role>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// List admin tokens by name (never the tokens themselves).
#[utoipa::path(
    get, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    params(TokenQuery),
    responses(
        (status = 200, description = "One page", body = Paged<AdminToken>),
        ListErrors,
    )
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<Paged<AdminToken>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let role = query.role.map(Role::as_str);
    let rows = state.store.list_admin_tokens(role, &page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |t| t.name.clone())))
}

/// Revoke an admin token.
#[utoipa::path(
    delete, path = "/v1/admin/tokens/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        ActionErrors,
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let before = state
        .store
        .admin_token(id)
        .await?
        .filter(|t| t.revoked_at.is_none())
        .ok_or_else(|| ApiError::NotFound(format!("no active admin token {id}")))?;
    let now = state.clock.now();
    let mut after = before.clone();
    after.revoked_at = Some(now);
    let audit = change_event(
        now,
        &caller.actor(),
        "admin_token.revoked",
        format!("admin_token:{}", before.name),
        audit_json(&before),
        audit_json(&after),
    );
    state.store.revoke_admin_token(id, now, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
