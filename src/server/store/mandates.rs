//! The storage side of minting: every issued mandate, recorded before its token leaves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::core_store::NewAuditEvent;
use super::error::StoreError;
use super::inventory::InventoryGuard;
use crate::token::verify::Hop;
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
    /// Request metadata (request id, user agent) and, under `granted_by`, the policies behind
    /// each right; never secrets.
    pub request_meta: serde_json::Value,
}

/// A verifier's report that a mandate was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Receipt id.
    pub id: Uuid,
    /// The mandate used.
    pub mandate_id: Uuid,
    /// The revocation id of the token's last block (the hop that used it).
    pub revocation_id: Vec<u8>,
    /// The chain of hops of the token used.
    pub hops: Vec<Hop>,
    /// The tool called.
    pub tool: String,
    /// The operation performed.
    pub operation: String,
    /// The resource, if named.
    pub resource: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// When the call happened (the verifier's clock).
    pub occurred_at: DateTime<Utc>,
    /// When mandate recorded the receipt.
    pub recorded_at: DateTime<Utc>,
    /// The reporter that reported it (`None` for receipts recorded before reporters).
    pub reporter_id: Option<String>,
    /// What the reporter adds about the call.
    pub details: ReceiptDetails,
}

/// What a reporter adds about a call (each part optional).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct ReceiptDetails {
    /// SHA-256, hex, of the call's arguments in RFC 8785 canonical JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// Why the call was denied, or how it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What became of the call's output: `redacted` or `blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How long the call took, in milliseconds, as the reporter measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Which actions an attribution query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// On behalf of this subject.
    pub principal: Option<String>,
    /// Proven by this issuer URL.
    pub issuer: Option<String>,
    /// Through this orchestrator.
    pub agent: Option<String>,
    /// On this tool.
    pub tool: Option<String>,
    /// Under this mandate.
    pub mandate: Option<Uuid>,
    /// For this task.
    pub task: Option<String>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
}

/// An issuance to record, with its audit event.
#[derive(Debug, Clone)]
pub struct NewMandate {
    /// The issuance row.
    pub issuance: Issuance,
    /// Its `mandate.issued` event.
    pub audit: NewAuditEvent,
    /// The inventory generation it was decided at, if it must still be current at commit.
    pub decided_at: Option<InventoryGuard>,
    /// The approved request it is issued on, marked issued in the same transaction (which
    /// fails if the request is no longer approved and unexpired).
    pub approval: Option<Uuid>,
}

/// Issued mandates.
#[async_trait]
pub trait MandateStore: Send + Sync {
    /// Records issuances, each with its audit event, in one transaction: all of them or none.
    /// The audit events join the chain in the order given. Checked while holding the audit
    /// chain's lock, so changes and issuances committed on any replica count:
    /// - an issuance decided at an inventory generation that is no longer current fails the
    ///   transaction with [`StoreError::InventoryMoved`];
    /// - an agent or a granted tool of the batch no longer active fails it with
    ///   [`StoreError::NoLongerActive`];
    /// - with `live_cap`, it fails with [`StoreError::LimitReached`] if it would leave an agent of
    ///   the batch holding more unexpired, unrevoked mandates than that.
    async fn insert_mandates(
        &self,
        batch: &[NewMandate],
        live_cap: Option<u32>,
    ) -> Result<(), StoreError>;

    /// Records one issuance and its audit event in one transaction.
    async fn insert_mandate(
        &self,
        issuance: &Issuance,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mandate = NewMandate {
            issuance: issuance.clone(),
            audit: audit.clone(),
            decided_at: None,
            approval: None,
        };
        self.insert_mandates(std::slice::from_ref(&mandate), None)
            .await
    }

    /// Forgets the issuance counts of minutes that ended at least five minutes before `now`
    /// (so replicas whose clocks lag behind still count theirs); returns how many buckets went.
    async fn prune_issuance_counts(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// One issued mandate.
    async fn mandate(&self, id: Uuid) -> Result<Option<Issuance>, StoreError>;

    /// Records several reports' receipts, each report with its audit event, in one
    /// transaction: all of them or none.
    async fn insert_receipt_batches(
        &self,
        batch: &[(Vec<Receipt>, NewAuditEvent)],
    ) -> Result<(), StoreError>;

    /// Records receipts and their audit event in one transaction.
    async fn insert_receipts(
        &self,
        receipts: &[Receipt],
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        self.insert_receipt_batches(&[(receipts.to_vec(), audit.clone())])
            .await
    }

    /// Receipts matching `filter` with their mandates, oldest first, at most `limit`.
    async fn actions(
        &self,
        filter: &ActionFilter,
        limit: u32,
    ) -> Result<Vec<(Receipt, Issuance)>, StoreError>;
}
