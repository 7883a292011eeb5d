//! `GET /v1/admin/inventory`: for each agent, its accountable owner, every tool operation it can
//! reach and the policies that allow each, and how many live mandates it holds.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Reader;
use crate::server::api::extract::ApiQuery;
use crate::server::api::problems::ListErrors;
use crate::server::error::ApiError;
use crate::server::model::agent::{AgentKind, AgentStatus};
use crate::server::model::page::{PageQuery, PageRequest, Paged};
use crate::server::policy::{reach, Reach};
use crate::server::state::AppState;
use crate::server::store::{self, AgentFilter};

/// Filters and page of the inventory.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InventoryQuery {
    /// Only agents in this state.
    pub status: Option<AgentStatus>,
    /// Only agents with this owner.
    pub owner: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// One agent in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryEntry {
    /// Agent id.
    pub agent: String,
    /// Display name.
    pub display_name: String,
    /// Orchestrator or sub-agent.
    pub kind: AgentKind,
    /// The accountable human.
    pub owner: String,
    /// Owning team.
    pub team: Option<String>,
    /// Lifecycle state; agents that are not active reach nothing.
    pub status: AgentStatus,
    /// Every tool operation the agent can be granted, with the policies that allow it.
    pub reach: Vec<Reach>,
    /// Unexpired, unrevoked mandates the agent holds.
    pub live_mandates: i64,
}

/// The agent inventory: owners, reachable tool operations and why, live mandates.
#[utoipa::path(
    get, path = "/v1/admin/inventory", tag = "admin", security(("admin_token" = [])),
    params(InventoryQuery),
    responses(
        (status = 200, description = "One page of agents", body = Paged<InventoryEntry>),
        ListErrors,
    )
)]
pub async fn inventory(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<InventoryQuery>,
) -> Result<Json<Paged<InventoryEntry>>, ApiError> {
    let page = PageRequest::try_from(&PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    })?;
    let filter = AgentFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
        owner: query.owner,
        ..AgentFilter::default()
    };
    let agents = state.store.list_agents(&filter, &page).await?;
    // Policies of a disabled issuer grant nothing: no principal of it is accepted.
    let issuers = store::active_issuers(state.store.as_ref()).await?;
    let policies: Vec<_> = state
        .store
        .all_policies()
        .await?
        .into_iter()
        .filter(|p| issuers.iter().any(|i| i.id == p.issuer))
        .collect();
    let tools = store::all_tools(state.store.as_ref()).await?;
    let live = state.store.live_mandate_counts(state.clock.now()).await?;
    let paged = Paged::from_rows(agents, &page, |a| a.id.clone());
    Ok(Json(paged.map(|agent| InventoryEntry {
        reach: reach(&agent, &policies, &tools),
        live_mandates: live.get(&agent.id).copied().unwrap_or(0),
        agent: agent.id,
        display_name: agent.display_name,
        kind: agent.kind,
        owner: agent.owner,
        team: agent.team,
        status: agent.status,
    })))
}
