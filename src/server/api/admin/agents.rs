//! `/v1/admin/agents`: register, list, read, update, suspend, resume and retire agents.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::answers::{audit_json, with_revoked, WithRevoked};
use super::auth::{Reader, Writer};
use super::lifecycle::{save, transition, Administered};
use super::references::{check_grants, still_used};
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{
    ActionErrors, ChangeErrors, CreateErrors, GetErrors, ListErrors,
};
use crate::server::error::ApiError;
use crate::server::model::agent::{
    Agent, AgentDetail, AgentKind, AgentPatch, AgentStatus, NewAgent,
};
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::revoke::revoke_live;
use crate::server::state::AppState;
use crate::server::store::MandateFilter;
use crate::server::store::{change_event, AgentFilter};

/// Filters and page of `GET /v1/admin/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only agents in this state.
    pub status: Option<AgentStatus>,
    /// Only agents of this kind.
    pub kind: Option<AgentKind>,
    /// Only agents with this owner.
    pub owner: Option<String>,
    /// Only agents of this team.
    pub team: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// `?force=true` retires even what policies still name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Go ahead although policies still refer to it.
    #[serde(default)]
    pub force: bool,
}

/// Register an agent.
#[utoipa::path(
    post, path = "/v1/admin/agents", tag = "admin", security(("admin_token" = [])),
    request_body = NewAgent,
    responses(
        (status = 201, description = "Registered", body = Agent),
        CreateErrors,
    )
)]
pub async fn create_agent(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let guard = state.store.inventory_guard().await?;
    let cap = state.config.max_ttl_seconds;
    body.check(cap)?;
    check_grants(&state, "ceiling", &body.ceiling).await?;
    let now = state.clock.now();
    let agent = body.into_agent(cap, now);
    let audit = change_event(
        now,
        &caller.actor(),
        "agent.created",
        format!("agent:{}", agent.id),
        None,
        audit_json(&agent),
    );
    state.store.insert_agent(&agent, guard, &audit).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// List agents by id.
#[utoipa::path(
    get, path = "/v1/admin/agents", tag = "admin", security(("admin_token" = [])),
    params(AgentQuery),
    responses(
        (status = 200, description = "One page", body = Paged<Agent>),
        ListErrors,
    )
)]
pub async fn list_agents(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<AgentQuery>,
) -> Result<Json<Paged<Agent>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let filter = AgentFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
        kind: query.kind.map(|k| k.as_str().to_owned()),
        owner: query.owner,
        team: query.team,
    };
    let rows = state.store.list_agents(&filter, &page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |a| a.id.clone())))
}

/// Read an agent with its credentials' metadata.
#[utoipa::path(
    get, path = "/v1/admin/agents/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "The agent", body = AgentDetail),
        GetErrors,
    )
)]
pub async fn get_agent(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    Path(id): Path<String>,
) -> Result<Json<AgentDetail>, ApiError> {
    let agent = Agent::load(&state, &id).await?;
    let secret = state.store.agent_secret(&id).await?;
    let public_keys = state.store.agent_keys(&id).await?;
    Ok(Json(AgentDetail {
        agent,
        secret,
        public_keys,
    }))
}

/// Change an agent's description, owner, ceiling or maximum TTL.
#[utoipa::path(
    patch, path = "/v1/admin/agents/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = AgentPatch,
    responses(
        (status = 200, description = "Updated", body = Agent),
        ChangeErrors,
    )
)]
pub async fn update_agent(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<AgentPatch>,
) -> Result<Json<Agent>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    patch.check(state.config.max_ttl_seconds)?;
    if let Some(ceiling) = &patch.ceiling {
        check_grants(&state, "ceiling", ceiling).await?;
    }
    let before = Agent::load(&state, &id).await?;
    if before.status == AgentStatus::Retired {
        return Err(ApiError::Conflict(format!("agent `{id}` is retired")));
    }
    let after = patch.apply(before.clone());
    save(&state, &caller, guard, "agent.updated", before, after).await
}

/// Suspend an active agent: it receives no mandates until resumed.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/suspend", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Suspended", body = Agent),
        ActionErrors,
    )
)]
pub async fn suspend_agent(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<WithRevoked<Agent>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    let changed = transition::<Agent>(
        &state,
        &caller,
        guard,
        &id,
        AgentStatus::Suspended,
        "agent.suspended",
    )
    .await?;
    let revoked = revoke_live(
        &state,
        &MandateFilter {
            agent: Some(id.clone()),
            ..MandateFilter::default()
        },
        None,
        "agent suspended",
        &caller.actor(),
        format!("agent:{id}"),
    )
    .await?;
    Ok(with_revoked(changed, revoked))
}

/// Resume a suspended agent.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/resume", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 200, description = "Active again", body = Agent),
        ActionErrors,
    )
)]
pub async fn resume_agent(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    transition::<Agent>(
        &state,
        &caller,
        guard,
        &id,
        AgentStatus::Active,
        "agent.resumed",
    )
    .await
}

/// Retire an agent for good. Refused while policies name it, unless `force=true`.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/retire", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id"), ForceQuery),
    responses(
        (status = 200, description = "Retired", body = Agent),
        ActionErrors,
    )
)]
pub async fn retire_agent(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ForceQuery>,
) -> Result<WithRevoked<Agent>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    if !query.force {
        let users: Vec<String> = state
            .store
            .all_policies()
            .await?
            .into_iter()
            .filter(|p| p.agents.listed().contains(&id))
            .map(|p| format!("policy `{}`", p.id))
            .collect();
        if !users.is_empty() {
            return Err(still_used(&format!("agent `{id}`"), &users));
        }
    }
    let changed = transition::<Agent>(
        &state,
        &caller,
        guard,
        &id,
        AgentStatus::Retired,
        "agent.retired",
    )
    .await?;
    let revoked = revoke_live(
        &state,
        &MandateFilter {
            agent: Some(id.clone()),
            ..MandateFilter::default()
        },
        None,
        "agent retired",
        &caller.actor(),
        format!("agent:{id}"),
    )
    .await?;
    Ok(with_revoked(changed, revoked))
}
