//! `/v1/admin/issuers`: the OIDC identity providers trusted to prove human principals.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::answers::{audit_json, with_revoked, WithRevoked};
use super::auth::{Reader, Writer};
use super::lifecycle::{save, transition, Administered};
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{
    ActionErrors, ChangeErrors, CreateErrors, GetErrors, ListErrors,
};
use crate::server::error::ApiError;
use crate::server::model::issuer::{Issuer, IssuerPatch, IssuerStatus, NewIssuer};
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::revoke::revoke_live;
use crate::server::state::AppState;
use crate::server::store::MandateFilter;
use crate::server::store::{change_event, IssuerFilter};

/// Filters and page of `GET /v1/admin/issuers`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IssuerQuery {
    /// Only issuers in this state.
    pub status: Option<IssuerStatus>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// Trust an OIDC identity provider.
#[utoipa::path(
    post, path = "/v1/admin/issuers", tag = "admin", security(("admin_token" = [])),
    request_body = NewIssuer,
    responses(
        (status = 201, description = "Registered", body = Issuer),
        CreateErrors,
    )
)]
pub async fn create_issuer(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewIssuer>,
) -> Result<(StatusCode, Json<Issuer>), ApiError> {
    let guard = state.store.inventory_guard().await?;
    body.check()?;
    let now = state.clock.now();
    let issuer = body.into_issuer(now);
    let audit = change_event(
        now,
        &caller.actor(),
        "issuer.created",
        format!("issuer:{}", issuer.id),
        None,
        audit_json(&issuer),
    );
    state.store.insert_issuer(&issuer, guard, &audit).await?;
    Ok((StatusCode::CREATED, Json(issuer)))
}

/// List issuers by id.
#[utoipa::path(
    get, path = "/v1/admin/issuers", tag = "admin", security(("admin_token" = [])),
    params(IssuerQuery),
    responses(
        (status = 200, description = "One page", body = Paged<Issuer>),
        ListErrors,
    )
)]
pub async fn list_issuers(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<IssuerQuery>,
) -> Result<Json<Paged<Issuer>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let filter = IssuerFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
    };
    let rows = state.store.list_issuers(&filter, &page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |i| i.id.clone())))
}

/// Read an issuer.
#[utoipa::path(
    get, path = "/v1/admin/issuers/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Issuer id")),
    responses(
        (status = 200, description = "The issuer", body = Issuer),
        GetErrors,
    )
)]
pub async fn get_issuer(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    Path(id): Path<String>,
) -> Result<Json<Issuer>, ApiError> {
    Ok(Json(Issuer::load(&state, &id).await?))
}

/// Change an issuer's audiences, keys location, algorithms or claim mapping.
#[utoipa::path(
    patch, path = "/v1/admin/issuers/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Issuer id")),
    request_body = IssuerPatch,
    responses(
        (status = 200, description = "Updated", body = Issuer),
        ChangeErrors,
    )
)]
pub async fn update_issuer(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<IssuerPatch>,
) -> Result<Json<Issuer>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    let before = Issuer::load(&state, &id).await?;
    let after = patch.apply(before.clone())?;
    save(&state, &caller, guard, "issuer.updated", before, after).await
}

/// Stop accepting an issuer's tokens.
#[utoipa::path(
    post, path = "/v1/admin/issuers/{id}/disable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Issuer id")),
    responses(
        (status = 200, description = "Disabled", body = Issuer),
        ActionErrors,
    )
)]
pub async fn disable_issuer(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<WithRevoked<Issuer>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    let changed = transition::<Issuer>(
        &state,
        &caller,
        guard,
        &id,
        IssuerStatus::Disabled,
        "issuer.disabled",
    )
    .await?;
    let revoked = revoke_live(
        &state,
        &MandateFilter {
            principal_issuer: Some(changed.issuer_url.clone()),
            ..MandateFilter::default()
        },
        None,
        "issuer disabled",
        &caller.actor(),
        format!("issuer:{id}"),
    )
    .await?;
    Ok(with_revoked(changed, revoked))
}

/// Accept an issuer's tokens again.
#[utoipa::path(
    post, path = "/v1/admin/issuers/{id}/enable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Issuer id")),
    responses(
        (status = 200, description = "Active again", body = Issuer),
        ActionErrors,
    )
)]
pub async fn enable_issuer(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<Issuer>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    transition::<Issuer>(
        &state,
        &caller,
        guard,
        &id,
        IssuerStatus::Active,
        "issuer.enabled",
    )
    .await
}
