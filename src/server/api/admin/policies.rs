//! `/v1/admin/policies`: which principals may delegate which tool operations to which agents.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::answers::{audit_json, with_revoked, WithRevoked};
use super::auth::{Reader, Writer};
use super::references::{check_agents, check_grants};
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{
    ActionErrors, ChangeErrors, CreateErrors, GetErrors, ListErrors,
};
use crate::server::error::ApiError;
use crate::server::model::lifecycle::Versioned;
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::model::policy::{NewPolicy, Policy, PolicyPatch};
use crate::server::model::Grant;
use crate::server::revoke::revoke_ungranted;
use crate::server::state::AppState;
use crate::server::store::{change_event, PolicyFilter};

/// Filters and page of `GET /v1/admin/policies`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyQuery {
    /// Only enabled (or disabled) policies.
    pub enabled: Option<bool>,
    /// Only policies of this issuer.
    pub issuer: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

async fn load_policy(state: &AppState, id: &str) -> Result<Policy, ApiError> {
    state
        .store
        .policy(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no policy `{id}`")))
}

/// A policy may name only a known issuer, known live agents, and offered tool operations. On
/// update, what the policy already named stays allowed (an agent retired by force can still be
/// disabled or edited out of it); only what the change adds is checked.
async fn check_references(
    state: &AppState,
    policy: &Policy,
    before: Option<&Policy>,
) -> Result<(), ApiError> {
    if state.store.issuer(&policy.issuer).await?.is_none() {
        return Err(ApiError::field(
            "issuer",
            format!("unknown issuer `{}`", policy.issuer),
        ));
    }
    let known_agents = before.map(|b| b.agents.listed()).unwrap_or_default();
    let new_agents: Vec<String> = policy
        .agents
        .listed()
        .iter()
        .filter(|a| !known_agents.contains(a))
        .cloned()
        .collect();
    check_agents(state, "agents", &new_agents).await?;
    let known_grants = before.map(|b| b.grants.as_slice()).unwrap_or_default();
    let new_grants: Vec<Grant> = policy
        .grants
        .iter()
        .filter(|g| !known_grants.contains(g))
        .cloned()
        .collect();
    check_grants(state, "grants", &new_grants).await
}

/// Create a delegation policy.
#[utoipa::path(
    post, path = "/v1/admin/policies", tag = "admin", security(("admin_token" = [])),
    request_body = NewPolicy,
    responses(
        (status = 201, description = "Created", body = Policy),
        CreateErrors,
    )
)]
pub async fn create_policy(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewPolicy>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    let guard = state.store.inventory_guard().await?;
    let now = state.clock.now();
    let policy = body.into_policy(state.config.max_ttl_seconds, now)?;
    check_references(&state, &policy, None).await?;
    let audit = change_event(
        now,
        &caller.actor(),
        "policy.created",
        format!("policy:{}", policy.id),
        None,
        audit_json(&policy),
    );
    state.store.insert_policy(&policy, guard, &audit).await?;
    Ok((StatusCode::CREATED, Json(policy)))
}

/// List policies by id.
#[utoipa::path(
    get, path = "/v1/admin/policies", tag = "admin", security(("admin_token" = [])),
    params(PolicyQuery),
    responses(
        (status = 200, description = "One page", body = Paged<Policy>),
        ListErrors,
    )
)]
pub async fn list_policies(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<PolicyQuery>,
) -> Result<Json<Paged<Policy>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let filter = PolicyFilter {
        enabled: query.enabled,
        issuer: query.issuer,
    };
    let rows = state.store.list_policies(&filter, &page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |p| p.id.clone())))
}

/// Read a policy.
#[utoipa::path(
    get, path = "/v1/admin/policies/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy", body = Policy),
        GetErrors,
    )
)]
pub async fn get_policy(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    Path(id): Path<String>,
) -> Result<Json<Policy>, ApiError> {
    Ok(Json(load_policy(&state, &id).await?))
}

/// Change a policy (enable or disable it with `{"enabled": false}`).
#[utoipa::path(
    patch, path = "/v1/admin/policies/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Policy id")),
    request_body = PolicyPatch,
    responses(
        (status = 200, description = "Updated", body = Policy),
        ChangeErrors,
    )
)]
pub async fn update_policy(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PolicyPatch>,
) -> Result<WithRevoked<Policy>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    let before = load_policy(&state, &id).await?;
    let mut after = patch.apply(before.clone(), state.config.max_ttl_seconds)?;
    check_references(&state, &after, Some(&before)).await?;
    let now = state.clock.now();
    after.follow(&before, now);
    let audit = change_event(
        now,
        &caller.actor(),
        "policy.updated",
        format!("policy:{id}"),
        audit_json(&before),
        audit_json(&after),
    );
    state.store.update_policy(&after, guard, &audit).await?;
    let revoked = revoke_ungranted(&state, &caller.actor()).await?;
    Ok(with_revoked(Json(after), revoked))
}

/// Delete a policy.
#[utoipa::path(
    delete, path = "/v1/admin/policies/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Policy id")),
    responses(
        (status = 204, description = "Deleted"),
        ActionErrors,
    )
)]
pub async fn delete_policy(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, [(axum::http::HeaderName, String); 1]), ApiError> {
    let guard = state.store.inventory_guard().await?;
    let before = load_policy(&state, &id).await?;
    let now = state.clock.now();
    let audit = change_event(
        now,
        &caller.actor(),
        "policy.deleted",
        format!("policy:{id}"),
        audit_json(&before),
        None,
    );
    state
        .store
        .delete_policy(&id, before.version, guard, &audit)
        .await?;
    let revoked = revoke_ungranted(&state, &caller.actor()).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(
            axum::http::HeaderName::from_static("x-revoked-mandates"),
            revoked.to_string(),
        )],
    ))
}
