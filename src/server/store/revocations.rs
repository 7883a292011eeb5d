//! The storage side of revocation: revoked revocation ids with who revoked them and why, a
//! monotonic feed for verifiers, and a wake-up signal when new entries commit (LISTEN/NOTIFY
//! on Postgres, so every replica hears it; in-process on SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::core_store::NewAuditEvent;
use super::error::StoreError;
use super::inventory::InventoryGuard;
use super::mandates::Issuance;

/// One id to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevocation {
    /// Row id.
    pub id: Uuid,
    /// The revoked block's revocation id.
    pub revocation_id: Vec<u8>,
    /// The mandate it belongs to.
    pub mandate_id: Option<Uuid>,
    /// Why.
    pub reason: String,
    /// Who: `admin:<name>`, `agent:<id>`, `holder:<agent>`, `system`.
    pub revoked_by: String,
    /// When.
    pub revoked_at: DateTime<Utc>,
    /// When the mandate expires anyway (the entry is useless after).
    pub expires_at: DateTime<Utc>,
}

/// A revocation as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Position in the feed.
    pub seq: i64,
    /// What was revoked, and by whom.
    pub entry: NewRevocation,
}

/// A feed entry as verifiers see it: no reasons, no names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct FeedEntry {
    /// Position in the feed (the cursor).
    pub seq: i64,
    /// The revoked revocation id, hex.
    pub revocation_id: String,
    /// After this the entry can be dropped: the mandate has expired anyway.
    pub expires_at: DateTime<Utc>,
}

impl From<&Revocation> for FeedEntry {
    fn from(r: &Revocation) -> Self {
        FeedEntry {
            seq: r.seq,
            revocation_id: hex::encode(&r.entry.revocation_id),
            expires_at: r.entry.expires_at,
        }
    }
}

/// Which live mandates a bulk revocation takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MandateFilter {
    /// Minted for this agent.
    pub agent: Option<String>,
    /// On behalf of this subject (with `principal_issuer`).
    pub principal_subject: Option<String>,
    /// Proven by this issuer URL.
    pub principal_issuer: Option<String>,
    /// For this task.
    pub task: Option<String>,
    /// Issued before this time.
    pub issued_before: Option<DateTime<Utc>>,
}

/// Revocations and the feed.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Records the entries not yet revoked (a revoked id stays as first revoked) and, when any
    /// is new, the audit event, in one transaction; returns the new ones.
    async fn revoke(
        &self,
        entries: &[NewRevocation],
        audit: &NewAuditEvent,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// The revocation of `revocation_id`, if revoked.
    async fn revocation(&self, revocation_id: &[u8]) -> Result<Option<Revocation>, StoreError>;

    /// Feed entries with `seq > after`, oldest first; only unexpired ones at `now` unless
    /// `include_expired`.
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
        now: DateTime<Utc>,
        include_expired: bool,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// How many ids of this mandate are revoked.
    async fn revocations_of_mandate(&self, mandate_id: Uuid) -> Result<usize, StoreError>;

    /// Unexpired, unrevoked mandates matching `filter`.
    async fn live_mandates(
        &self,
        filter: &MandateFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<Issuance>, StoreError>;

    /// A signal on every committed revocation (from any replica sharing the database).
    fn revocation_signal(&self) -> broadcast::Receiver<()>;

    /// Refuses, from now on, mints on a subject token of this principal issued at or before
    /// `not_after` (a later cut-off replaces an earlier one), with its audit event; advances the
    /// inventory generation, so every replica's next mint sees it.
    async fn cut_off_principal(
        &self,
        issuer_url: &str,
        subject: &str,
        not_after: DateTime<Utc>,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// Records that the subject token `jti` of `issuer_url` was presented; false if it was
    /// already (kept until `expires_at`, then pruned with the issuance counts).
    async fn use_subject_token(
        &self,
        issuer_url: &str,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Every principal cut-off: (issuer URL, subject) and the time tokens must be issued after.
    async fn principal_cutoffs(&self)
        -> Result<Vec<((String, String), DateTime<Utc>)>, StoreError>;
}
