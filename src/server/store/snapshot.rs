//! The inventory a mint decides on (active issuers, policies, tools, and the active agents by
//! secret), kept in memory between changes. Every inventory write, including an agent secret's
//! change, advances one generation counter in the database, in the same transaction.
//!
//! A mint decides on the kept inventory without reading the database, and its commit checks,
//! under the audit chain's lock that every inventory change also takes, that the generation it
//! decided at is still current; if not, it decides again on the inventory read anew. A refusal
//! is confirmed the same way before it is answered. So a change committed on any replica
//! applies to every mint committed after it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::error::StoreError;
use super::handle::{active_issuers, all_tools, Store};
use super::inventory::InventoryGuard;
use crate::server::model::agent::{Agent, AgentKind};
use crate::server::model::issuer::Issuer;
use crate::server::model::policy::Policy;
use crate::server::model::tool::Tool;
use crate::server::secrets::SecretHash;

/// The inventory at one generation.
#[derive(Debug)]
pub struct Inventory {
    /// The generation it was read at.
    pub generation: InventoryGuard,
    /// Active issuers.
    pub issuers: Vec<Issuer>,
    /// Every policy.
    pub policies: Vec<Policy>,
    /// Every tool.
    pub tools: Vec<Tool>,
    /// Active agents, by the hash of their unrevoked secret.
    agents_by_secret: HashMap<SecretHash, Agent>,
    /// Principals whose mandates were revoked: subject tokens must be issued after this.
    cutoffs: HashMap<(String, String), chrono::DateTime<chrono::Utc>>,
}

impl Inventory {
    /// Whether `id` is an active agent holding a secret (one that presents tokens).
    pub fn agent_exists(&self, id: &str) -> bool {
        self.agents_by_secret.values().any(|a| a.id == id)
    }

    /// The active agent whose unrevoked secret has this hash.
    pub fn agent_with_secret(&self, hash: &SecretHash) -> Option<&Agent> {
        self.agents_by_secret.get(hash)
    }

    /// When the mandates of the principal `subject` of `issuer_url` were last revoked, if ever:
    /// a subject token must be issued after it to mint.
    pub fn cutoff(&self, issuer_url: &str, subject: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.cutoffs
            .get(&(issuer_url.to_owned(), subject.to_owned()))
            .copied()
    }

    /// The active orchestrator whose unrevoked secret has this hash.
    pub fn orchestrator_with_secret(&self, hash: &SecretHash) -> Option<&Agent> {
        self.agent_with_secret(hash)
            .filter(|agent| agent.kind == AgentKind::Orchestrator)
    }
}

/// The last inventory read.
#[derive(Debug, Default)]
pub struct InventoryCache {
    current: RwLock<Option<Arc<Inventory>>>,
}

impl InventoryCache {
    /// The inventory last read, if any, without asking the database whether it is current.
    pub fn kept(&self) -> Option<Arc<Inventory>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The inventory as of now: the kept one if the generation has not moved, else read anew.
    pub async fn current(&self, store: &dyn Store) -> Result<Arc<Inventory>, StoreError> {
        let generation = store.inventory_guard().await?;
        if let Some(kept) = self.kept().filter(|kept| kept.generation == generation) {
            return Ok(kept);
        }
        let read = Arc::new(Inventory {
            generation,
            issuers: active_issuers(store).await?,
            policies: store.all_policies().await?,
            tools: all_tools(store).await?,
            agents_by_secret: store.active_agent_secrets().await?.into_iter().collect(),
            cutoffs: store.principal_cutoffs().await?.into_iter().collect(),
        });
        // Kept only if nothing changed while it was read: the reads are not one snapshot.
        if store.inventory_guard().await? == generation {
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&read));
        }
        Ok(read)
    }

    /// Drops the kept inventory, after this replica changed it: the next mint reads it anew
    /// instead of finding out at its commit.
    pub fn forget(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether `inventory` is still the current one.
    pub async fn is_current(
        &self,
        store: &dyn Store,
        inventory: &Inventory,
    ) -> Result<bool, StoreError> {
        Ok(store.inventory_guard().await? == inventory.generation)
    }
}
