//! Step 6 of a mint: the issuance and its audit event, committed before the token leaves; and
//! the audit event of a refusal.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use serde::Serialize;

use crate::server::model::agent::Agent;
use crate::server::policy::GrantedBy;
use crate::server::state::AppState;
use crate::server::store::{
    new_id, AuditOutcome, InventoryGuard, Issuance, NewAuditEvent, NewMandate, StoreError,
};
use crate::token::mint::MandateSpec;

/// Where a request came from, recorded with the issuance (never secrets).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestMeta {
    /// The endpoint used.
    pub endpoint: &'static str,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// The caller's `user-agent` (truncated).
    pub user_agent: Option<String>,
}

/// Records a refusal; a refusal stands even if it cannot be recorded.
pub(super) async fn audit_denial(
    state: &AppState,
    agent: &Agent,
    now: DateTime<Utc>,
    details: serde_json::Value,
) {
    let event = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("agent:{}", agent.id),
        action: "mandate.denied".to_owned(),
        target: Some(format!("agent:{}", agent.id)),
        outcome: AuditOutcome::Denied,
        details,
    };
    if let Err(error) = state.store.append_audit(&event).await {
        tracing::error!(%error, "could not record a mint denial");
    }
}

/// What [`record_issuance`] writes: the signed mandate and how it was decided.
pub(super) struct Record {
    pub(super) mandate_id: Uuid,
    pub(super) spec: MandateSpec,
    pub(super) kid: u32,
    pub(super) revocation_id: Vec<u8>,
    pub(super) task_description: String,
    pub(super) request_meta: serde_json::Value,
    pub(super) principal: serde_json::Value,
    pub(super) decided_at: InventoryGuard,
    /// The approved request it is minted on, marked issued in the same transaction.
    pub(super) approval: Option<Uuid>,
    pub(super) now: DateTime<Utc>,
}

/// Step 6: the issuance and its audit event, committed (checked against the inventory the mint
/// decided on) before anything leaves. A refusal at commit is audited.
pub(super) async fn record_issuance(
    state: &AppState,
    agent: &Agent,
    record: Record,
) -> Result<(), StoreError> {
    let Record {
        mandate_id,
        spec,
        now,
        ..
    } = &record;
    let mandate_id = *mandate_id;
    let issuance = Issuance {
        id: mandate_id,
        agent_id: agent.id.clone(),
        principal_subject: spec.principal_subject.clone(),
        principal_issuer: spec.principal_issuer.clone(),
        task_id: spec.task_id.clone(),
        task_description: record.task_description.clone(),
        task_digest: spec.task_digest.clone(),
        scope: spec.rights.clone(),
        root_kid: record.kid,
        revocation_id: record.revocation_id.clone(),
        issued_at: *now,
        expires_at: spec.expires_at,
        request_meta: record.request_meta.clone(),
    };
    let audit = NewAuditEvent {
        id: new_id(*now),
        occurred_at: *now,
        actor: format!("agent:{}", agent.id),
        action: "mandate.issued".to_owned(),
        target: Some(format!("mandate:{mandate_id}")),
        outcome: AuditOutcome::Success,
        details: json!({
            "principal": record.principal, "agent": agent.id, "task_id": spec.task_id,
            "scope": spec.rights, "constraints": spec.constraints,
            "expires_at": spec.expires_at, "kid": record.kid,
            "revocation_id": hex::encode(&record.revocation_id),
            "holder_key": spec.holder_key,
            "approvals": spec.approvals,
        }),
    };
    let mandate = NewMandate {
        issuance,
        audit,
        decided_at: Some(record.decided_at),
        approval: record.approval,
    };
    // An approved mint commits alone: its request's state is checked in its transaction.
    let committed = match record.approval {
        None => {
            let submitted = state.writers.mandates.submit(mandate);
            state.metrics.commit("insert_mandate", submitted).await
        }
        Some(_) => {
            let cap = Some(state.config.max_live_mandates_per_agent);
            let inserted = state
                .store
                .insert_mandates(std::slice::from_ref(&mandate), cap);
            state.metrics.commit("insert_mandate", inserted).await
        }
    };
    let refused = match &committed {
        Err(StoreError::LimitReached(message)) => Some(("live_mandate_limit", message)),
        Err(StoreError::NoLongerActive(message)) => Some(("inventory_changed", message)),
        _ => None,
    };
    if let Some((reason, message)) = refused {
        let details = json!({
            "reason": reason, "principal": record.principal,
            "scope": spec.rights, "detail": message,
        });
        audit_denial(state, agent, *now, details).await;
    }
    committed?;
    Ok(())
}

/// What an issuance row keeps beside the mandate: the request's metadata and, under
/// `granted_by`, the policies behind each right (read again when a policy is disabled or
/// deleted).
pub(super) fn issuance_meta(meta: &RequestMeta, granted_by: &[GrantedBy]) -> serde_json::Value {
    let mut value = serde_json::to_value(meta).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("granted_by".to_owned(), json!(granted_by));
    }
    value
}
