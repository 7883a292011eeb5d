//! Storage: one [`Store`] trait, implemented for Postgres (production) and SQLite (the embedded
//! default) from the same SQL (`sql/*.rs`, included into each). Both pass one conformance suite
//! (`tests/api/store.rs`). Transactions live here: every change and its audit event commit
//! together or not at all.
//!
//! This file only names the parts and opens the configured store; the parts import each other,
//! never this file:
//! - `error` — [`StoreError`]; `core_store` — [`CoreStore`] (health, migrations, root keys, the
//!   audit trail) and its records; `handle` — [`Store`], the one handle, and whole-list reads.
//! - `inventory`, `mandates`, `revocations`, `approvals` — the other parts of the handle.
//! - `backend` — what the two SQL backends (`postgres`, `sqlite`) share.

mod approvals;
mod backend;
pub mod batch;
mod core_store;
mod error;
mod handle;
mod inventory;
mod mandates;
mod postgres;
mod revocations;
pub mod snapshot;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

pub use approvals::{ApprovalStore, ApprovalUse};
pub use core_store::{
    chain_hash, change_event, new_id, AuditEvent, AuditOutcome, Backend, Checkpoint, CoreStore,
    MigrationReport, NewAuditEvent, NewRootKey, PoolUsage, RootKeyRecord, Seal, GENESIS,
};
pub use error::StoreError;
pub use handle::{active_issuers, all_agents, all_tools, every_issuer, SharedStore, Store};
pub use inventory::{
    AdminTokenStore, AgentFilter, AgentStore, CatalogStore, InventoryGuard, IssuerFilter,
    NewSecret, PolicyFilter, PolicyStore, ReporterStore, SecretChange, ToolFilter,
};
pub use mandates::{ActionFilter, Issuance, MandateStore, NewMandate, Receipt, ReceiptDetails};
pub use postgres::PostgresStore;
pub use revocations::{FeedEntry, MandateFilter, NewRevocation, Revocation, RevocationStore};
pub use sqlite::SqliteStore;

use super::config::Database;

/// Opens the configured store. SQLite files are created if missing; Postgres must be reachable.
pub async fn connect(
    database: &Database,
    data_dir: &Path,
    max_connections: u32,
) -> Result<SharedStore, StoreError> {
    match database {
        Database::Postgres(url) => Ok(Arc::new(
            PostgresStore::connect(url.expose(), max_connections).await?,
        )),
        Database::Embedded | Database::Sqlite(_) => {
            let path = database.sqlite_path(data_dir).unwrap_or_default();
            Ok(Arc::new(SqliteStore::open(&path, max_connections).await?))
        }
    }
}
