//! The inventory a mint reads (active issuers, policies, tools), kept in memory between
//! changes. Every inventory write advances one generation counter in the database, in the same
//! transaction; a mint reads that counter (in the query that authenticates its agent) and
//! reloads the inventory only when it moved, so a change committed on any replica applies to the
//! next mint everywhere.

use std::sync::{Arc, PoisonError, RwLock};

use super::{active_issuers, all_tools, InventoryGuard, Store, StoreError};
use crate::server::model::issuer::Issuer;
use crate::server::model::policy::Policy;
use crate::server::model::tool::Tool;

/// The inventory at one generation.
#[derive(Debug)]
pub struct Inventory {
    /// The generation it was read at.
    pub generation: i64,
    /// Active issuers.
    pub issuers: Vec<Issuer>,
    /// Every policy.
    pub policies: Vec<Policy>,
    /// Every tool.
    pub tools: Vec<Tool>,
}

/// The last inventory read.
#[derive(Debug, Default)]
pub struct InventoryCache {
    current: RwLock<Option<Arc<Inventory>>>,
}

impl InventoryCache {
    /// The inventory as of now: the kept one if the generation has not moved, else read anew.
    pub async fn current(&self, store: &dyn Store) -> Result<Arc<Inventory>, StoreError> {
        let generation = store.inventory_guard().await?;
        self.at(store, generation).await
    }

    /// The inventory at `generation`, just read from `store`: the kept one if it is of that
    /// generation, else read anew.
    pub async fn at(
        &self,
        store: &dyn Store,
        generation: InventoryGuard,
    ) -> Result<Arc<Inventory>, StoreError> {
        let generation = generation.0;
        if let Some(kept) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|kept| kept.generation == generation)
        {
            return Ok(Arc::clone(kept));
        }
        let read = Arc::new(Inventory {
            generation,
            issuers: active_issuers(store).await?,
            policies: store.all_policies().await?,
            tools: all_tools(store).await?,
        });
        // Kept only if nothing changed while it was read: the three reads are not one snapshot.
        if store.inventory_guard().await?.0 == generation {
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&read));
        }
        Ok(read)
    }
}
