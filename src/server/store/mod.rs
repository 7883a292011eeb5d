//! Storage: one [`Store`] trait, implemented for Postgres (production) and SQLite (the embedded
//! default) from the same SQL (`sql/*.rs`, included into each). Both pass one conformance suite (`tests/api/store.rs`).
//! Transactions live here: every change and its audit event commit together or not at all.

pub mod batch;
mod inventory;
mod mandates;
mod postgres;
mod revocations;
pub mod snapshot;
mod sqlite;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

pub use inventory::{
    AdminTokenStore, AgentFilter, AgentStore, CatalogStore, InventoryGuard, IssuerFilter,
    NewSecret, PolicyFilter, PolicyStore, ReporterStore, SecretChange, ToolFilter,
};
pub use mandates::{ActionFilter, Issuance, MandateStore, NewMandate, Receipt};
pub use postgres::PostgresStore;
pub use revocations::{FeedEntry, MandateFilter, NewRevocation, Revocation, RevocationStore};
pub use sqlite::SqliteStore;

use super::config::Database;
use super::model::agent::Agent;
use super::model::issuer::{Issuer, IssuerStatus};
use super::model::page::PageRequest;
use super::model::tool::Tool;

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite (embedded).
    Sqlite,
}

/// How much of a store's connection pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open now.
    pub size: u32,
    /// Of those, how many are idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// Everything mandate stores, as one handle: the core operations, admin tokens and the
/// inventory. Each method is one transaction; every change commits with its audit event.
pub trait Store:
    CoreStore
    + AdminTokenStore
    + AgentStore
    + CatalogStore
    + PolicyStore
    + MandateStore
    + RevocationStore
    + ReporterStore
{
}

impl<T> Store for T where
    T: CoreStore
        + AdminTokenStore
        + AgentStore
        + CatalogStore
        + PolicyStore
        + MandateStore
        + RevocationStore
        + ReporterStore
{
}

/// The key a store seals audit events with, once it has one.
pub type Seal =
    std::sync::Arc<std::sync::RwLock<Option<std::sync::Arc<crate::server::audit_seal::AuditSeal>>>>;

/// Health, migrations, root keys and the audit trail.
#[async_trait]
pub trait CoreStore: Send + Sync + Debug {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// The connection pool's usage now.
    fn pool_usage(&self) -> PoolUsage;

    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Applies pending migrations; safe to call on every start and from several processes.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;

    /// Records a root key the first time it is published, with its audit event. Returns the
    /// stored record (with its original `created_at` when the key was already known). A kid
    /// already bound to another public key, or a public key already bound to another kid, is a
    /// [`StoreError::Conflict`].
    async fn register_root_key(
        &self,
        key: &NewRootKey,
        at: DateTime<Utc>,
    ) -> Result<RootKeyRecord, StoreError>;

    /// Every recorded root key, by kid.
    async fn root_keys(&self) -> Result<Vec<RootKeyRecord>, StoreError>;

    /// Seals every audit event written from now on with `seal`'s active key.
    fn seal_audit(&self, seal: std::sync::Arc<crate::server::audit_seal::AuditSeal>);

    /// The last seq written before audit events carried MACs (0: every event carries one).
    async fn audit_mac_start(&self) -> Result<i64, StoreError>;

    /// Appends one audit event.
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError>;

    /// Audit events with `seq > after`, oldest first, at most `limit`.
    async fn audit_events(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// The chain's head: the last event's seq and hash.
    async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError>;

    /// Every checkpoint, by seq.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// The checkpoint with the highest seq among those naming one of `kids`, if any.
    async fn latest_checkpoint(&self, kids: &[u32]) -> Result<Option<Checkpoint>, StoreError>;

    /// The checkpoints with `seq > after`, by seq.
    async fn checkpoints_after(&self, after: i64) -> Result<Vec<Checkpoint>, StoreError>;

    /// Records a checkpoint.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;

    /// Closes every pooled connection.
    async fn close(&self);
}

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run.
    pub applied: usize,
    /// Migrations the binary knows.
    pub known: usize,
}

/// A root key to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRootKey {
    /// Key id.
    pub kid: u32,
    /// `ed25519/<hex>`.
    pub public_key: String,
}

/// A recorded root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKeyRecord {
    /// Key id.
    pub kid: u32,
    /// Always `ed25519`.
    pub algorithm: String,
    /// `ed25519/<hex>`.
    pub public_key: String,
    /// When mandate first published the key.
    pub created_at: DateTime<Utc>,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// The action happened.
    Success,
    /// A policy or check refused it.
    Denied,
    /// It failed for another reason.
    Failure,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failure => "failure",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "success" => Ok(AuditOutcome::Success),
            "denied" => Ok(AuditOutcome::Denied),
            "failure" => Ok(AuditOutcome::Failure),
            other => Err(StoreError::Corrupt(format!("audit outcome `{other}`"))),
        }
    }
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// Event id (UUIDv7).
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who acted: `system`, `admin:<name>`, `agent:<id>`, ….
    pub actor: String,
    /// What happened, dotted: `root_key.registered`, `mandate.issued`, ….
    pub action: String,
    /// What it happened to.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Structured details (never secrets).
    pub details: serde_json::Value,
}

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of an event at `seq` after an event hashed `prev`.
pub fn chain_hash(prev: &[u8], seq: i64, event: &NewAuditEvent) -> Vec<u8> {
    // A JSON array is an unambiguous encoding of the fields; details serialise with sorted keys.
    let fields = json!([
        hex::encode(prev),
        seq,
        event.id,
        event.occurred_at.timestamp_micros(),
        event.actor,
        event.action,
        event.target,
        event.outcome.as_str(),
        event.details,
    ]);
    ring::digest::digest(&ring::digest::SHA256, fields.to_string().as_bytes())
        .as_ref()
        .to_vec()
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the trail.
    pub seq: i64,
    /// Event id.
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// What it happened to.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Structured details.
    pub details: serde_json::Value,
    /// The previous event's hash, hex.
    pub prev_hash: String,
    /// This event's chain hash, hex.
    pub hash: String,
    /// Its MAC ([`crate::server::audit_seal`]); `None` on events written before MACs existed,
    /// or by something without the key.
    pub mac: Option<crate::server::audit_seal::Mac>,
}

/// A signed checkpoint of the audit chain's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event covered.
    pub seq: i64,
    /// Its chain hash.
    pub hash: Vec<u8>,
    /// The root key that signed.
    pub kid: u32,
    /// Ed25519 signature of `audit::checkpoint_message(seq, hash)`.
    pub signature: Vec<u8>,
    /// When.
    pub signed_at: DateTime<Utc>,
}

/// Storage failures. Only [`StoreError::Conflict`] carries a message meant for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection (503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The change contradicts what is stored (409).
    #[error("{0}")]
    Conflict(String),
    /// The row to change does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// A configured limit would be exceeded (409); the message says which.
    #[error("{0}")]
    LimitReached(String),
    /// An agent or tool the write depends on stopped being active meanwhile (409).
    #[error("{0}")]
    NoLongerActive(String),
    /// The write was decided on an inventory that has changed since (503 if it reaches a
    /// client: the decision is made again first).
    #[error("the inventory changed while the mandate was minted")]
    InventoryMoved,
    /// A stored value is not what mandate wrote (500).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The audit chain does not hold from event `seq` on (500): nothing is signed over it.
    #[error("stored data is corrupt: audit chain broken at event {seq}: {reason}; not signing it")]
    AuditBroken {
        /// The first event that does not hold.
        seq: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Any other database error (500).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            if db.is_unique_violation() {
                return StoreError::Conflict("it already exists".to_owned());
            }
            if db.is_foreign_key_violation() {
                return StoreError::Conflict(
                    "it refers to something that does not exist".to_owned(),
                );
            }
            if db.code().is_some_and(|code| is_unavailable_state(&code)) {
                return StoreError::Unavailable(error);
            }
        }
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
            other => StoreError::Database(other),
        }
    }
}

/// Postgres SQLSTATEs meaning "not now" rather than "not this": a lost connection (class 08),
/// exhausted resources (53) and operator intervention (57: shutting down, starting up, restarted
/// after a crash), and 55000 (object not in prerequisite state: a database not accepting
/// connections, as during a restore). SQLite's numeric result codes never have five characters.
fn is_unavailable_state(code: &str) -> bool {
    code.len() == 5
        && (code == "55000"
            || ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class)))
}

/// How long a request waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A time-ordered id for a row created at `at`.
pub fn new_id(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        secs,
        at.timestamp_subsec_nanos(),
    ))
}

/// The audit event recorded when a root key is first published.
fn root_key_registered(key: &NewRootKey, at: DateTime<Utc>) -> NewAuditEvent {
    NewAuditEvent {
        id: new_id(at),
        occurred_at: at,
        actor: "system".to_owned(),
        action: "root_key.registered".to_owned(),
        target: Some(format!("root_key:{}", key.kid)),
        outcome: AuditOutcome::Success,
        details: serde_json::json!({ "kid": key.kid, "public_key": key.public_key }),
    }
}

/// Checks a stored root key against the one being registered.
fn check_root_key(
    key: &NewRootKey,
    stored: Option<RootKeyRecord>,
) -> Result<RootKeyRecord, StoreError> {
    match stored {
        Some(record) if record.public_key == key.public_key => Ok(record),
        Some(_) => Err(StoreError::Conflict(format!(
            "kid {} is already bound to another public key; kids are never reused",
            key.kid
        ))),
        None => Err(StoreError::Conflict(format!(
            "this public key is already registered under another kid than {}",
            key.kid
        ))),
    }
}

/// Postgres keeps microseconds; SQLite keeps whatever it is given. Both stores write instants
/// truncated to microseconds so they return the same values.
fn db_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn kid_from_db(kid: i64) -> Result<u32, StoreError> {
    u32::try_from(kid).map_err(|_| StoreError::Corrupt(format!("kid {kid}")))
}

/// Maps a unique-key violation to a conflict that names what already exists.
fn exists(what: String) -> impl FnOnce(StoreError) -> StoreError {
    move |error| match error {
        StoreError::Conflict(_) => StoreError::Conflict(format!("{what} already exists")),
        other => other,
    }
}

/// A stored text value parsed into its enum.
fn parse_text<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// The conflict of an update whose version was overtaken.
fn changed_meanwhile(what: String) -> StoreError {
    StoreError::Conflict(format!(
        "{what} changed since it was read; fetch it again and retry"
    ))
}

/// The conflict of a change checked against an inventory that changed meanwhile.
fn inventory_moved() -> StoreError {
    StoreError::Conflict(
        "the inventory changed while this change was being checked; retry it".to_owned(),
    )
}

/// A stored non-negative INTEGER as u32.
fn u32_from_db(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative value {value}")))
}

/// The audit event of an admin change: who, what, to which target, before and after.
pub fn change_event(
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> NewAuditEvent {
    NewAuditEvent {
        id: new_id(at),
        occurred_at: at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(target),
        outcome: AuditOutcome::Success,
        details: serde_json::json!({ "before": before, "after": after }),
    }
}

/// Every row of a list, fetched page by page with `fetch` (which returns up to one row more
/// than the page size, as the list methods do).
async fn every<T, F, Fut>(mut fetch: F, key: impl Fn(&T) -> String) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    const PAGE: u32 = 200;
    let mut all = Vec::new();
    let mut page = PageRequest::first(PAGE);
    loop {
        let mut rows = fetch(page.clone()).await?;
        let more = rows.len() > PAGE as usize;
        rows.truncate(PAGE as usize);
        page.after = rows.last().map(&key);
        all.extend(rows);
        if !more {
            return Ok(all);
        }
    }
}

/// Every agent.
pub async fn all_agents(store: &dyn Store) -> Result<Vec<Agent>, StoreError> {
    let filter = &AgentFilter::default();
    every(
        |page| async move { store.list_agents(filter, &page).await },
        |a| a.id.clone(),
    )
    .await
}

/// Every tool.
pub async fn all_tools(store: &dyn Store) -> Result<Vec<Tool>, StoreError> {
    let filter = &ToolFilter::default();
    every(
        |page| async move { store.list_tools(filter, &page).await },
        |t| t.id.clone(),
    )
    .await
}

/// Every active issuer.
pub async fn active_issuers(store: &dyn Store) -> Result<Vec<Issuer>, StoreError> {
    let filter = IssuerFilter {
        status: Some(IssuerStatus::Active.as_str().to_owned()),
    };
    every_issuer(store, &filter).await
}

/// Every issuer `filter` selects.
pub async fn every_issuer(
    store: &dyn Store,
    filter: &IssuerFilter,
) -> Result<Vec<Issuer>, StoreError> {
    every(
        |page| async move { store.list_issuers(filter, &page).await },
        |i| i.id.clone(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::is_unavailable_state;

    #[test]
    fn shutdown_restart_and_lost_connection_states_mean_unavailable_and_constraint_states_do_not() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08003", "53300", "55000",
        ] {
            assert!(is_unavailable_state(code), "{code}");
        }
        for code in [
            "23505", "23503", "42P01", "40001", "55006", "5", "517", "2067",
        ] {
            assert!(!is_unavailable_state(code), "{code}");
        }
    }
}
