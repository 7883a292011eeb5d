//! Agent authentication: `Authorization: Bearer mnd_agt_…`, found by the secret's SHA-256 hash
//! among the unrevoked secrets of active agents.
//!
//! Orchestrators minting are found in the inventory kept in memory (see
//! [`crate::server::store::snapshot`]): the mint's commit checks that it was still current. Other
//! agent calls read the database.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::extract::bearer;
use crate::server::app::AppState;
use crate::server::error::ApiError;
use crate::server::model::agent::{Agent, AgentKind};
use crate::server::secrets::{self, SecretHash, AGENT_SECRET_PREFIX};
use crate::server::store::snapshot::Inventory;

/// An authenticated, active orchestrator: found by its secret in `inventory`.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    /// The agent.
    pub agent: Agent,
    /// The hash of the secret it presented.
    pub secret: SecretHash,
    /// The inventory it was found in; a mint decides on it.
    pub inventory: Arc<Inventory>,
}

/// The active agent that holds `secret`, if any, found in the inventory kept in memory (or
/// read anew when the kept one does not know the secret).
pub async fn agent_in_inventory(
    state: &AppState,
    secret: &str,
) -> Result<Option<Orchestrator>, ApiError> {
    if !secrets::is_well_formed(AGENT_SECRET_PREFIX, secret) {
        return Ok(None);
    }
    let hash = secrets::hash(secret);
    let kept = state.inventory.kept();
    let inventory = match kept.filter(|kept| kept.agent_with_secret(&hash).is_some()) {
        Some(kept) => kept,
        None => state.inventory.current(state.store.as_ref()).await?,
    };
    let Some(agent) = inventory.agent_with_secret(&hash).cloned() else {
        return Ok(None);
    };
    tracing::Span::current().record("agent", agent.id.as_str());
    Ok(Some(Orchestrator {
        agent,
        secret: hash,
        inventory,
    }))
}

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
pub fn require_orchestrator(found: Orchestrator) -> Result<Orchestrator, ApiError> {
    if found.agent.kind == AgentKind::Orchestrator {
        Ok(found)
    } else {
        Err(ApiError::Forbidden(format!(
            "agent `{}` is a sub-agent: only orchestrators mint mandates",
            found.agent.id
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
        let found = agent_in_inventory(state, secret)
            .await?
            .ok_or_else(unauthorized)?;
        require_orchestrator(found)
    }
}
