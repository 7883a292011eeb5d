//! Agent authentication: `Authorization: Bearer mnd_agt_…`, found by the secret's SHA-256 hash
//! among the unrevoked secrets of active agents.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::extract::bearer;
use crate::server::app::AppState;
use crate::server::error::ApiError;
use crate::server::model::agent::{Agent, AgentKind};
use crate::server::secrets::{self, AGENT_SECRET_PREFIX};
use crate::server::store::InventoryGuard;

/// An authenticated, active orchestrator, with the inventory generation read as it was found.
#[derive(Debug, Clone)]
pub struct Orchestrator(pub Agent, pub InventoryGuard);

/// The active agent that holds `secret`, if any, with the inventory generation read in the
/// same query.
pub async fn authenticate_agent(
    state: &AppState,
    secret: &str,
) -> Result<Option<(Agent, InventoryGuard)>, ApiError> {
    if !secrets::is_well_formed(AGENT_SECRET_PREFIX, secret) {
        return Ok(None);
    }
    let found = state
        .store
        .authenticate_agent(&secrets::hash(secret))
        .await?;
    if let Some((agent, _)) = &found {
        tracing::Span::current().record("agent", agent.id.as_str());
    }
    Ok(found)
}

/// The active agent that holds `secret`, if any.
pub async fn agent_for_secret(state: &AppState, secret: &str) -> Result<Option<Agent>, ApiError> {
    Ok(authenticate_agent(state, secret)
        .await?
        .map(|(agent, _)| agent))
}

/// Only orchestrators start tasks: sub-agents receive attenuated mandates instead.
pub fn require_orchestrator(agent: Agent) -> Result<Agent, ApiError> {
    if agent.kind == AgentKind::Orchestrator {
        Ok(agent)
    } else {
        Err(ApiError::Forbidden(format!(
            "agent `{}` is a sub-agent: only orchestrators mint mandates",
            agent.id
        )))
    }
}

impl FromRequestParts<AppState> for Orchestrator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::Unauthorized("unknown agent, suspended agent or wrong agent secret".into())
        };
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::Unauthorized(
                "send the agent secret as `Authorization: Bearer mnd_agt_…`".into(),
            ));
        }
        let secret = bearer(&parts.headers).ok_or_else(unauthorized)?;
        let (agent, generation) = authenticate_agent(state, secret)
            .await?
            .ok_or_else(unauthorized)?;
        Ok(Orchestrator(require_orchestrator(agent)?, generation))
    }
}
