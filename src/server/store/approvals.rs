//! The storage side of human approvals: requests, each approver's decision, and the use of a
//! one-call approval, with a wake-up signal when any of them changes (LISTEN/NOTIFY on
//! Postgres, so a waiter on one replica hears a decision made on another; in-process on
//! SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::core_store::NewAuditEvent;
use super::error::StoreError;
use crate::server::model::approval::{ApprovalRequest, Decision};

/// A one-call approval's use, as a gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalUse {
    /// The approval request.
    pub approval_id: Uuid,
    /// The tool called.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The mandate the call presented.
    pub mandate_id: Uuid,
    /// The gateway that reported it.
    pub reporter_id: String,
    /// SHA-256, hex, of the call's arguments in RFC 8785 canonical JSON.
    pub arguments_sha256: String,
    /// When.
    pub used_at: DateTime<Utc>,
}

/// Approval requests and their decisions.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Records a new request (pending, no decisions) with its audit event.
    async fn insert_approval(
        &self,
        request: &ApprovalRequest,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// One request, with its decisions.
    async fn approval(&self, id: Uuid) -> Result<Option<ApprovalRequest>, StoreError>;

    /// Pending requests not expired at `now`, oldest first, at most `limit`.
    async fn pending_approvals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApprovalRequest>, StoreError>;

    /// Records `decision` on request `id` with its audit event, in one transaction, and settles
    /// the request ([`ApprovalRequest::settled`]): only while it is pending and unexpired at
    /// `decision.decided_at`, and only the approver's first decision. Otherwise a
    /// [`StoreError::Conflict`] saying why; an unknown id is [`StoreError::NotFound`]. Returns
    /// the request as it now stands.
    async fn decide_approval(
        &self,
        id: Uuid,
        decision: &Decision,
        audit: &NewAuditEvent,
    ) -> Result<ApprovalRequest, StoreError>;

    /// Records the use of a one-call approval's right with its audit event; `false` (and
    /// nothing recorded) when that right was used already.
    async fn use_approval(
        &self,
        used: &ApprovalUse,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;

    /// A signal on every committed request, decision and issuance (from any replica sharing
    /// the database).
    fn approval_signal(&self) -> broadcast::Receiver<()>;
}
