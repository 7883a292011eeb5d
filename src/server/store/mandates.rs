//! The storage side of minting: every issued mandate, recorded before its token leaves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEvent, StoreError};
use crate::token::Right;

/// One issued mandate, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// Mandate id.
    pub id: Uuid,
    /// The orchestrator it was minted for.
    pub agent_id: String,
    /// The human principal's subject.
    pub principal_subject: String,
    /// The issuer URL that proved the principal.
    pub principal_issuer: String,
    /// The task's id.
    pub task_id: String,
    /// The task description, verbatim.
    pub task_description: String,
    /// SHA-256 of the description.
    pub task_digest: Vec<u8>,
    /// Granted rights.
    pub scope: Vec<Right>,
    /// The root key that signed it.
    pub root_kid: u32,
    /// The authority block's revocation id.
    pub revocation_id: Vec<u8>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Request metadata (request id, user agent); never secrets.
    pub request_meta: serde_json::Value,
}

/// Issued mandates.
#[async_trait]
pub trait MandateStore: Send + Sync {
    /// Records an issuance and its audit event in one transaction.
    async fn insert_mandate(
        &self,
        issuance: &Issuance,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// One issued mandate.
    async fn mandate(&self, id: Uuid) -> Result<Option<Issuance>, StoreError>;
}
