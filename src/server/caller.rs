//! Agents found by the secret they present (`mnd_agt_…`), by its SHA-256 hash among the
//! unrevoked secrets of active agents.
//!
//! Orchestrators minting are found in the inventory kept in memory (see
//! [`crate::server::store::snapshot`]): the mint's commit checks that it was still current. Other
//! agent calls read the database. The HTTP extractors in `api::agent_auth` only produce these.

use std::sync::Arc;

use super::model::agent::{Agent, AgentKind};
use super::secrets::{self, SecretHash, AGENT_SECRET_PREFIX};
use super::state::AppState;
use super::store::snapshot::Inventory;
use super::store::StoreError;

/// An authenticated, active agent, found by its secret in `inventory`; an [`Orchestrator`]
/// once [`Orchestrator::try_from`] has checked its kind.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The agent.
    pub agent: Agent,
    /// The hash of the secret it presented.
    pub secret: SecretHash,
    /// The inventory it was found in.
    pub inventory: Arc<Inventory>,
}

/// An authenticated, active orchestrator: the only kind of agent that mints. A mint decides on
/// the inventory it was found in.
#[derive(Debug, Clone)]
pub struct Orchestrator(Authenticated);

impl std::ops::Deref for Orchestrator {
    type Target = Authenticated;

    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

/// Why an authenticated agent may not mint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent `{0}` is a sub-agent: only orchestrators mint mandates")]
pub struct NotAnOrchestrator(pub String);

impl TryFrom<Authenticated> for Orchestrator {
    type Error = NotAnOrchestrator;

    /// Only orchestrators start tasks: sub-agents receive attenuated mandates instead.
    fn try_from(found: Authenticated) -> Result<Self, NotAnOrchestrator> {
        if found.agent.kind == AgentKind::Orchestrator {
            Ok(Orchestrator(found))
        } else {
            Err(NotAnOrchestrator(found.agent.id))
        }
    }
}

/// The active agent that holds `secret`, if any, found in the inventory kept in memory (or
/// read anew when the kept one does not know the secret).
pub async fn agent_in_inventory(
    state: &AppState,
    secret: &str,
) -> Result<Option<Authenticated>, StoreError> {
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
    Ok(Some(Authenticated {
        agent,
        secret: hash,
        inventory,
    }))
}

/// The active agent that holds `secret`, if any, read from the store.
pub async fn agent_for_secret(state: &AppState, secret: &str) -> Result<Option<Agent>, StoreError> {
    if !secrets::is_well_formed(AGENT_SECRET_PREFIX, secret) {
        return Ok(None);
    }
    let agent = state.store.agent_by_secret(&secrets::hash(secret)).await?;
    if let Some(agent) = &agent {
        tracing::Span::current().record("agent", agent.id.as_str());
    }
    Ok(agent)
}
