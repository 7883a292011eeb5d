//! The tamper-evident audit trail: every event's hash covers the previous event's hash and the
//! event's own fields, so changing, deleting, inserting or reordering rows breaks the chain
//! from the first altered event on; checkpoints signed with the active root key pin the
//! chain's head, so cutting off the tail shows too. [`verify`] recomputes everything and names
//! the first bad event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::store::{AuditEvent, Checkpoint, NewAuditEvent, Store, StoreError};
use crate::token::keys::KeySet;

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

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    format!("mandate-audit-checkpoint:v1:{seq}:{}", hex::encode(hash)).into_bytes()
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditReport {
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Whether everything holds.
    pub intact: bool,
    /// The first bad event (or checkpoint), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadEvent>,
}

/// The first place the trail does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BadEvent {
    /// The event's position.
    pub seq: i64,
    /// The event's id, if a row is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
    /// What is wrong.
    pub reason: String,
}

fn as_new(event: &AuditEvent) -> NewAuditEvent {
    NewAuditEvent {
        id: event.id,
        occurred_at: event.occurred_at,
        actor: event.actor.clone(),
        action: event.action.clone(),
        target: event.target.clone(),
        outcome: event.outcome,
        details: event.details.clone(),
    }
}

/// Recomputes the whole chain and checks every checkpoint against it and against `keys`.
pub async fn verify(store: &dyn Store, keys: &KeySet) -> Result<AuditReport, StoreError> {
    let checkpoints = store.audit_checkpoints().await?;
    let mut report = AuditReport {
        events: 0,
        checkpoints: checkpoints.len() as u64,
        intact: true,
        first_bad: None,
    };
    let fail = |report: &mut AuditReport, seq: i64, id: Option<uuid::Uuid>, reason: String| {
        report.intact = false;
        report.first_bad = Some(BadEvent { seq, id, reason });
    };
    // Signatures first: a checkpoint must be signed by a published root key.
    for checkpoint in &checkpoints {
        let signed = keys.get(&checkpoint.kid).is_some_and(|key| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.to_bytes())
                .verify(
                    &checkpoint_message(checkpoint.seq, &checkpoint.hash),
                    &checkpoint.signature,
                )
                .is_ok()
        });
        if !signed {
            fail(
                &mut report,
                checkpoint.seq,
                None,
                "checkpoint signature does not verify".into(),
            );
            return Ok(report);
        }
    }
    let by_seq: std::collections::HashMap<i64, &Checkpoint> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    let mut prev: Vec<u8> = GENESIS.to_vec();
    let mut expected_seq = 1;
    let mut after = 0;
    loop {
        let page = store.audit_events(after, 1000).await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            after = event.seq;
            report.events += 1;
            if event.seq != expected_seq {
                let reason = format!("expected event {expected_seq}, found {}", event.seq);
                fail(&mut report, expected_seq, Some(event.id), reason);
                return Ok(report);
            }
            if hex::decode(&event.prev_hash).ok().as_deref() != Some(prev.as_slice()) {
                fail(
                    &mut report,
                    event.seq,
                    Some(event.id),
                    "does not follow the previous event".into(),
                );
                return Ok(report);
            }
            let recomputed = chain_hash(&prev, event.seq, &as_new(event));
            if hex::encode(&recomputed) != event.hash {
                fail(
                    &mut report,
                    event.seq,
                    Some(event.id),
                    "its contents do not match its hash".into(),
                );
                return Ok(report);
            }
            if let Some(checkpoint) = by_seq.get(&event.seq) {
                if checkpoint.hash != recomputed {
                    fail(
                        &mut report,
                        event.seq,
                        Some(event.id),
                        "differs from a signed checkpoint".into(),
                    );
                    return Ok(report);
                }
            }
            prev = recomputed;
            expected_seq += 1;
        }
    }
    if let Some(missing) = checkpoints.iter().find(|c| c.seq >= expected_seq) {
        fail(
            &mut report,
            missing.seq,
            None,
            "a signed checkpoint covers events that are gone".into(),
        );
    }
    Ok(report)
}

/// Signs the chain's head with the active root key, unless it is already checkpointed.
pub async fn checkpoint(
    store: &dyn Store,
    keys: &super::keys::KeyRing,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some(head) = store.audit_head().await? else {
        return Ok(None);
    };
    let last = store
        .audit_checkpoints()
        .await?
        .into_iter()
        .map(|c| c.seq)
        .max();
    if last == Some(head.0) {
        return Ok(None);
    }
    let root = keys.active();
    let signature = root
        .keypair()
        .sign(&checkpoint_message(head.0, &head.1))
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
    let checkpoint = Checkpoint {
        seq: head.0,
        hash: head.1,
        kid: root.kid,
        signature: signature.to_bytes().to_vec(),
        signed_at: now,
    };
    store.insert_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}
