//! Health, migrations, root keys and the audit trail: the part of the store every other part
//! writes through, with the records it keeps.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::error::StoreError;

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

    pub(super) fn parse(text: &str) -> Result<Self, StoreError> {
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

/// A time-ordered id for a row created at `at`.
pub fn new_id(at: DateTime<Utc>) -> Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        secs,
        at.timestamp_subsec_nanos(),
    ))
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
