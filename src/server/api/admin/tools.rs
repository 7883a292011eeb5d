//! `/v1/admin/tools`: the downstream APIs, MCP servers and tools agents may be granted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::agents::ForceQuery;
use super::answers::{audit_json, with_revoked, WithRevoked};
use super::auth::{Reader, Writer};
use super::lifecycle::{save, transition, Administered};
use super::references::{all_agents, still_used};
use crate::server::api::extract::{ApiJson, ApiQuery};
use crate::server::api::problems::{
    ActionErrors, ChangeErrors, CreateErrors, GetErrors, ListErrors,
};
use crate::server::error::ApiError;
use crate::server::model::agent::AgentStatus;
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::model::tool::{NewTool, Tool, ToolKind, ToolPatch, ToolStatus};
use crate::server::model::Grant;
use crate::server::revoke::revoke_live;
use crate::server::state::AppState;
use crate::server::store::MandateFilter;
use crate::server::store::{change_event, ToolFilter};

/// Filters and page of `GET /v1/admin/tools`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ToolQuery {
    /// Only tools in this state.
    pub status: Option<ToolStatus>,
    /// Only tools of this kind.
    pub kind: Option<ToolKind>,
    /// Only tools with this owner.
    pub owner: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// Who grants `operations` of `tool` (all operations when `None`): policies and agent ceilings.
async fn users_of(
    state: &AppState,
    tool: &str,
    operations: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    let uses = |grants: &[Grant]| {
        grants.iter().any(|g| {
            g.tool == tool
                && operations.is_none_or(|ops| g.operations.iter().any(|o| ops.contains(o)))
        })
    };
    let mut users: Vec<String> = state
        .store
        .all_policies()
        .await?
        .iter()
        .filter(|p| uses(&p.grants))
        .map(|p| format!("policy `{}`", p.id))
        .collect();
    users.extend(
        all_agents(state)
            .await?
            .iter()
            // A retired agent can never use its ceiling again; it holds nothing up.
            .filter(|a| a.status != AgentStatus::Retired && uses(&a.ceiling))
            .map(|a| format!("the ceiling of agent `{}`", a.id)),
    );
    Ok(users)
}

/// Register a tool.
#[utoipa::path(
    post, path = "/v1/admin/tools", tag = "admin", security(("admin_token" = [])),
    request_body = NewTool,
    responses(
        (status = 201, description = "Registered", body = Tool),
        CreateErrors,
    )
)]
pub async fn create_tool(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<NewTool>,
) -> Result<(StatusCode, Json<Tool>), ApiError> {
    let guard = state.store.inventory_guard().await?;
    body.check()?;
    let now = state.clock.now();
    let tool = body.into_tool(now);
    let audit = change_event(
        now,
        &caller.actor(),
        "tool.created",
        format!("tool:{}", tool.id),
        None,
        audit_json(&tool),
    );
    state.store.insert_tool(&tool, guard, &audit).await?;
    Ok((StatusCode::CREATED, Json(tool)))
}

/// List tools by id.
#[utoipa::path(
    get, path = "/v1/admin/tools", tag = "admin", security(("admin_token" = [])),
    params(ToolQuery),
    responses(
        (status = 200, description = "One page", body = Paged<Tool>),
        ListErrors,
    )
)]
pub async fn list_tools(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<ToolQuery>,
) -> Result<Json<Paged<Tool>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let filter = ToolFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
        kind: query.kind.map(|k| k.as_str().to_owned()),
        owner: query.owner,
    };
    let rows = state.store.list_tools(&filter, &page).await?;
    Ok(Json(Paged::from_rows(rows, &page, |t| t.id.clone())))
}

/// Read a tool.
#[utoipa::path(
    get, path = "/v1/admin/tools/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Tool id")),
    responses(
        (status = 200, description = "The tool", body = Tool),
        GetErrors,
    )
)]
pub async fn get_tool(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    Path(id): Path<String>,
) -> Result<Json<Tool>, ApiError> {
    Ok(Json(Tool::load(&state, &id).await?))
}

/// Change a tool. Removing an operation that a policy or agent ceiling uses is refused.
#[utoipa::path(
    patch, path = "/v1/admin/tools/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Tool id")),
    request_body = ToolPatch,
    responses(
        (status = 200, description = "Updated", body = Tool),
        ChangeErrors,
    )
)]
pub async fn update_tool(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<ToolPatch>,
) -> Result<Json<Tool>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    patch.check()?;
    let before = Tool::load(&state, &id).await?;
    if before.status == ToolStatus::Retired {
        return Err(ApiError::Conflict(format!("tool `{id}` is retired")));
    }
    let after = patch.apply(before.clone());
    let removed: Vec<String> = before
        .operations
        .iter()
        .filter(|op| !after.operations.contains(op))
        .cloned()
        .collect();
    if !removed.is_empty() {
        let users = users_of(&state, &id, Some(&removed)).await?;
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "operations {} of tool `{id}` are still granted by {}",
                removed.join(", "),
                users.join(", ")
            )));
        }
    }
    save(&state, &caller, guard, "tool.updated", before, after).await
}

/// Disable a tool: no mandate grants it until it is enabled again.
#[utoipa::path(
    post, path = "/v1/admin/tools/{id}/disable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Tool id")),
    responses(
        (status = 200, description = "Disabled", body = Tool),
        ActionErrors,
    )
)]
pub async fn disable_tool(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<WithRevoked<Tool>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    let changed = transition::<Tool>(
        &state,
        &caller,
        guard,
        &id,
        ToolStatus::Disabled,
        "tool.disabled",
    )
    .await?;
    let revoked = revoke_live(
        &state,
        &MandateFilter::default(),
        Some(&id),
        "tool disabled",
        &caller.actor(),
        format!("tool:{id}"),
    )
    .await?;
    Ok(with_revoked(changed, revoked))
}

/// Enable a disabled tool.
#[utoipa::path(
    post, path = "/v1/admin/tools/{id}/enable", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Tool id")),
    responses(
        (status = 200, description = "Active again", body = Tool),
        ActionErrors,
    )
)]
pub async fn enable_tool(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<Tool>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    transition::<Tool>(
        &state,
        &caller,
        guard,
        &id,
        ToolStatus::Active,
        "tool.enabled",
    )
    .await
}

/// Retire a tool for good. Refused while policies or ceilings grant it, unless `force=true`.
#[utoipa::path(
    post, path = "/v1/admin/tools/{id}/retire", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Tool id"), ForceQuery),
    responses(
        (status = 200, description = "Retired", body = Tool),
        ActionErrors,
    )
)]
pub async fn retire_tool(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ForceQuery>,
) -> Result<WithRevoked<Tool>, ApiError> {
    let guard = state.store.inventory_guard().await?;
    if !query.force {
        let users = users_of(&state, &id, None).await?;
        if !users.is_empty() {
            return Err(still_used(&format!("tool `{id}`"), &users));
        }
    }
    let changed = transition::<Tool>(
        &state,
        &caller,
        guard,
        &id,
        ToolStatus::Retired,
        "tool.retired",
    )
    .await?;
    let revoked = revoke_live(
        &state,
        &MandateFilter::default(),
        Some(&id),
        "tool retired",
        &caller.actor(),
        format!("tool:{id}"),
    )
    .await?;
    Ok(with_revoked(changed, revoked))
}
