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

/// An authenticated, active orchestrator.
#[derive(Debug, Clone)]
pub struct Orchestrator(pub Agent);

/// The active agent that holds `secret`, if any.
pub async fn agent_for_secret(state: &AppState, secret: &str) -> Result<Option<Agent>, ApiError> {
    if !secrets::is_well_formed(AGENT_SECRET_PREFIX, secret) {
        return Ok(None);
    }
    let agent = state.store.agent_by_secret(&secrets::hash(secret)).await?;
    if let Some(agent) = &agent {
        tracing::Span::current().record("agent", agent.id.as_str());
    }
    Ok(agent)
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
        let agent = agent_for_secret(state, secret)
            .await?
            .ok_or_else(unauthorized)?;
        require_orchestrator(agent).map(Orchestrator)
    }
}
