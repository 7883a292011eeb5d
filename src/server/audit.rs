//! The tamper-evident audit trail: every event's hash covers the previous event's hash and the
//! event's own fields, so changing, deleting, inserting or reordering rows breaks the chain
//! from the first altered event on; checkpoints signed with the active root key pin the
//! chain's head, so cutting off the tail shows too. [`verify`] recomputes everything and names
//! the first bad event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_seal::{AuditSeal, Checked};
use super::keys::KeyRing;
use super::store::{AuditEvent, Checkpoint, NewAuditEvent, Store, StoreError};
use crate::token::keys::KeySet;

pub use super::store::{chain_hash, GENESIS};

/// The bytes a checkpoint signs.
pub fn checkpoint_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    format!("mandate-audit-checkpoint:v1:{seq}:{}", hex::encode(hash)).into_bytes()
}

/// Whether `checkpoint` carries a valid signature by the Ed25519 key `public_key`.
fn signed_by(checkpoint: &Checkpoint, public_key: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(
            &checkpoint_message(checkpoint.seq, &checkpoint.hash),
            &checkpoint.signature,
        )
        .is_ok()
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditReport {
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked: those signed with a root key the verifier loads.
    pub checkpoints: u64,
    /// Checkpoints passed over: they name a root key the verifier does not load (one retired
    /// from the configuration), so they vouch for nothing, as if they were not there.
    pub checkpoints_passed_over: u64,
    /// Whether everything holds.
    pub intact: bool,
    /// The first bad event (or checkpoint), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadEvent>,
    /// What the answering replica's own walks found (the service only): a tail cut off after
    /// the replica verified it shows here, where a full recomputation sees a shorter chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaAudit>,
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

/// The fields of a stored event that its hash covers, besides its seq and the previous hash.
pub fn as_new(event: &AuditEvent) -> NewAuditEvent {
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

/// Recomputes the whole chain and checks every checkpoint signed with one of `keys` against
/// it, and every event's MAC with `seal` (all but those written before MACs existed, or
/// covered by a checkpoint of a loaded key). Checkpoints of other keys are passed over and
/// counted.
pub async fn verify(
    store: &dyn Store,
    keys: &KeySet,
    seal: &AuditSeal,
) -> Result<AuditReport, StoreError> {
    let all = store.audit_checkpoints().await?;
    let mut report = AuditReport {
        events: 0,
        checkpoints: 0,
        checkpoints_passed_over: 0,
        intact: true,
        first_bad: None,
        replica: None,
    };
    let fail = |report: &mut AuditReport, seq: i64, id: Option<uuid::Uuid>, reason: String| {
        report.intact = false;
        report.first_bad = Some(BadEvent { seq, id, reason });
    };
    // Signatures first: a checkpoint naming a loaded root key must be signed by it.
    let mut checkpoints = Vec::with_capacity(all.len());
    for checkpoint in all {
        match keys.get(&checkpoint.kid) {
            None => report.checkpoints_passed_over += 1,
            Some(key) if signed_by(&checkpoint, &key.to_bytes()) => checkpoints.push(checkpoint),
            Some(_) => {
                fail(
                    &mut report,
                    checkpoint.seq,
                    None,
                    "checkpoint signature does not verify".into(),
                );
                return Ok(report);
            }
        }
    }
    report.checkpoints = checkpoints.len() as u64;
    let by_seq: std::collections::HashMap<i64, &Checkpoint> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    let trusted = Trusted {
        seal,
        through: checkpoints
            .iter()
            .map(|c| c.seq)
            .max()
            .unwrap_or(0)
            .max(store.audit_mac_start().await?),
    };
    let walked = walk(store, 0, GENESIS.to_vec(), &by_seq, &trusted).await?;
    report.events = walked.events;
    if let Some(bad) = walked.first_bad {
        report.intact = false;
        report.first_bad = Some(bad);
        return Ok(report);
    }
    let expected_seq = walked.next_seq;
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

/// What walking part of the chain found.
struct Walk {
    events: u64,
    next_seq: i64,
    /// The hash of event `next_seq - 1`, the last one found intact.
    head_hash: Vec<u8>,
    first_bad: Option<BadEvent>,
}

/// How a walk tells an authentic event: by its MAC, unless it is at or before `through` (written
/// before MACs existed, or covered by a checkpoint a loaded root key signed).
struct Trusted<'a> {
    seal: &'a AuditSeal,
    through: i64,
}

impl Trusted<'_> {
    /// Why `event` (whose recomputed hash is `hash`) is not authentic, if it is not.
    fn refuse(&self, event: &AuditEvent, hash: &[u8]) -> Option<String> {
        if event.seq <= self.through {
            return None;
        }
        match self.seal.check(event.seq, hash, event.mac.as_ref()) {
            Checked::Authentic => None,
            Checked::UnknownKey => Some(
                "forged: its MAC names a root key not configured here, and no checkpoint covers it"
                    .to_owned(),
            ),
            Checked::Forged => Some(
                "forged: no valid MAC of a root key; the database alone could have written it"
                    .to_owned(),
            ),
        }
    }
}

/// Recomputes the chain after event `after` (whose hash is `prev`) to the head, checking it
/// against the checkpoints on the way, and each event's MAC.
async fn walk(
    store: &dyn Store,
    mut after: i64,
    mut prev: Vec<u8>,
    checkpoints: &std::collections::HashMap<i64, &Checkpoint>,
    trusted: &Trusted<'_>,
) -> Result<Walk, StoreError> {
    let mut walked = Walk {
        events: 0,
        next_seq: after + 1,
        head_hash: Vec::new(),
        first_bad: None,
    };
    let bad = |seq: i64, id: uuid::Uuid, reason: String| BadEvent {
        seq,
        id: Some(id),
        reason,
    };
    loop {
        let page = store.audit_events(after, 1000).await?;
        if page.is_empty() {
            walked.head_hash = prev;
            return Ok(walked);
        }
        for event in &page {
            after = event.seq;
            walked.events += 1;
            let expected = walked.next_seq;
            let problem = if event.seq != expected {
                Some((
                    expected,
                    format!("expected event {expected}, found {}", event.seq),
                ))
            } else if hex::decode(&event.prev_hash).ok().as_deref() != Some(prev.as_slice()) {
                Some((event.seq, "does not follow the previous event".to_owned()))
            } else {
                let recomputed = chain_hash(&prev, event.seq, &as_new(event));
                if hex::encode(&recomputed) != event.hash {
                    Some((event.seq, "its contents do not match its hash".to_owned()))
                } else if let Some(reason) = trusted.refuse(event, &recomputed) {
                    Some((event.seq, reason))
                } else if checkpoints
                    .get(&event.seq)
                    .is_some_and(|c| c.hash != recomputed)
                {
                    Some((event.seq, "differs from a signed checkpoint".to_owned()))
                } else {
                    prev = recomputed;
                    None
                }
            };
            if let Some((seq, reason)) = problem {
                walked.first_bad = Some(bad(seq, event.id, reason));
                walked.head_hash = prev;
                return Ok(walked);
            }
            walked.next_seq += 1;
            // A page is milliseconds of hashing: the other tasks on this worker (requests
            // among them) get their turn between slices of it.
            if walked.events % WALK_SLICE == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Events re-hashed between two yields to the runtime, during a walk of the chain.
const WALK_SLICE: u64 = 64;

/// The start of the chain that this process has recomputed and found intact: every event up
/// to `seq`, the last of them hashed `hash`. The next walk goes on from there, so a walk
/// hashes only the events appended since the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The last event found intact (0: none yet).
    pub seq: i64,
    /// Its hash ([`GENESIS`] when `seq` is 0).
    pub hash: Vec<u8>,
}

/// Whether a key of `keys` signed `checkpoint`; `None` when its kid is not in the ring.
fn ring_signed(keys: &KeyRing, checkpoint: &Checkpoint) -> Option<bool> {
    keys.get(checkpoint.kid)
        .map(|key| signed_by(checkpoint, &key.keypair().public().to_bytes()))
}

/// A checkpoint naming a configured root key that did not sign it: only a write behind
/// mandate's back makes one.
fn forged(checkpoint: &Checkpoint) -> StoreError {
    StoreError::Corrupt(format!(
        "the checkpoint at event {} does not verify with root key {}; not signing",
        checkpoint.seq, checkpoint.kid
    ))
}

/// The latest checkpoint that a key of `keys` signed (checkpoints of keys no longer loaded are
/// passed over: a retired or compromised key vouches for nothing here).
async fn latest_signed(
    store: &dyn Store,
    keys: &KeyRing,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some(last) = store.latest_checkpoint(&keys.kids()).await? else {
        return Ok(None);
    };
    if ring_signed(keys, &last) != Some(true) {
        return Err(forged(&last));
    }
    Ok(Some(last))
}

/// Recomputes the chain from `verified` to its current end, and moves `verified` on as far as
/// the chain holds. With nothing verified yet, it starts at the latest checkpoint a loaded root
/// key signed (the chain up to it was verified when it was signed), or else at the first event.
///
/// Errors, leaving `verified` at the last intact event:
/// - the event verified last is gone or changed (a cut-off tail, or a rewrite);
/// - an event after it does not follow, or its contents do not match its hash;
/// - a checkpoint after it differs from the recomputed chain, or names a loaded key that did
///   not sign it.
pub async fn verify_since(
    store: &dyn Store,
    keys: &KeyRing,
    verified: &mut Option<Verified>,
) -> Result<(), StoreError> {
    let start = match verified.clone() {
        Some(start) => start,
        None => latest_signed(store, keys).await?.map_or(
            Verified {
                seq: 0,
                hash: GENESIS.to_vec(),
            },
            |last| Verified {
                seq: last.seq,
                hash: last.hash,
            },
        ),
    };
    *verified = Some(start.clone());
    if start.seq > 0 {
        let anchor = store.audit_events(start.seq - 1, 1).await?;
        let intact = anchor.first().is_some_and(|event| {
            event.seq == start.seq
                && hex::decode(&event.prev_hash)
                    .is_ok_and(|prev| chain_hash(&prev, event.seq, &as_new(event)) == start.hash)
                && hex::decode(&event.hash).ok().as_deref() == Some(start.hash.as_slice())
        });
        if !intact {
            return Err(StoreError::AuditBroken {
                seq: start.seq,
                reason: "gone or changed since it was verified".to_owned(),
            });
        }
    }
    // Checkpoints signed since (by other replicas, too) must match what is recomputed.
    let since = store.checkpoints_after(start.seq).await?;
    let mut checkpoints = std::collections::HashMap::new();
    for checkpoint in &since {
        match ring_signed(keys, checkpoint) {
            Some(true) => {
                checkpoints.insert(checkpoint.seq, checkpoint);
            }
            Some(false) => return Err(forged(checkpoint)),
            // A key no longer loaded vouches for nothing: passed over, as `verify` does.
            None => {}
        }
    }
    let seal = AuditSeal::from_ring(keys);
    let trusted = Trusted {
        seal: &seal,
        through: start.seq.max(store.audit_mac_start().await?),
    };
    let walked = walk(store, start.seq, start.hash, &checkpoints, &trusted).await?;
    *verified = Some(Verified {
        seq: walked.next_seq - 1,
        hash: walked.head_hash,
    });
    match walked.first_bad {
        Some(bad) => Err(StoreError::AuditBroken {
            seq: bad.seq,
            reason: bad.reason,
        }),
        None => Ok(()),
    }
}

/// Signs `verified`, the chain's head as recomputed by [`verify_since`], with the active root
/// key, unless a checkpoint signed by a loaded key already covers it.
pub async fn sign_checkpoint(
    store: &dyn Store,
    keys: &KeyRing,
    verified: &Verified,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>, StoreError> {
    if verified.seq == 0 {
        return Ok(None);
    }
    if let Some(last) = latest_signed(store, keys).await? {
        if last.seq == verified.seq {
            return same_head(&last, verified).map(|()| None);
        }
        if last.seq > verified.seq {
            // Another replica is ahead; the next walk checks its checkpoint.
            return Ok(None);
        }
    }
    let root = keys.active();
    let signature = root
        .keypair()
        .sign(&checkpoint_message(verified.seq, &verified.hash))
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
    let checkpoint = Checkpoint {
        seq: verified.seq,
        hash: verified.hash.clone(),
        kid: root.kid,
        signature: signature.to_bytes().to_vec(),
        signed_at: now,
    };
    store.insert_checkpoint(&checkpoint).await?;
    // Another replica may have signed the same event first: its row stays, and must agree.
    let stored = store.checkpoints_after(verified.seq - 1).await?;
    match stored.first().filter(|c| c.seq == verified.seq) {
        Some(first) if first.signature == checkpoint.signature => Ok(Some(checkpoint)),
        Some(first) => same_head(first, verified).map(|()| None),
        None => Err(StoreError::Corrupt(format!(
            "the checkpoint at event {} was not recorded",
            verified.seq
        ))),
    }
}

/// Whether `checkpoint`, at the event last verified, signs the hash recomputed for it.
fn same_head(checkpoint: &Checkpoint, verified: &Verified) -> Result<(), StoreError> {
    if checkpoint.hash == verified.hash {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "the checkpoint at event {} signs another hash than the one recomputed; not signing",
        verified.seq
    )))
}

/// Verifies the chain since the latest checkpoint a loaded root key signed, and signs its head
/// with the active root key unless a checkpoint already covers it. A broken chain is an error
/// and is not signed.
pub async fn checkpoint(
    store: &dyn Store,
    keys: &KeyRing,
    now: DateTime<Utc>,
) -> Result<Option<Checkpoint>, StoreError> {
    let mut verified = None;
    verify_since(store, keys, &mut verified).await?;
    match verified {
        Some(verified) => sign_checkpoint(store, keys, &verified, now).await,
        None => Ok(None),
    }
}

/// What this replica's walks of the chain found: how far the chain holds, and where it broke.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplicaAudit {
    /// The last event this replica recomputed and found authentic (0: none yet).
    pub verified_seq: i64,
    /// The first event that does not hold, when the last walk found one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<i64>,
    /// Why it does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the last walk ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
}

/// A replica's incremental walks of the chain ([`verify_since`]) and what the last one found,
/// for `/v1/admin/audit/verify`, `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct Replica {
    verified: tokio::sync::Mutex<Option<Verified>>,
    status: std::sync::RwLock<ReplicaAudit>,
}

impl Replica {
    /// Walks the events appended since the last walk and records what it found. Returns the
    /// head to sign when the chain holds; a broken chain is an error, and is never signed.
    pub async fn walk(
        &self,
        store: &dyn Store,
        keys: &KeyRing,
        now: DateTime<Utc>,
    ) -> Result<Option<Verified>, StoreError> {
        let mut verified = self.verified.lock().await;
        let result = verify_since(store, keys, &mut verified).await;
        let mut status = ReplicaAudit {
            verified_seq: verified.as_ref().map_or(0, |v| v.seq),
            checked_at: Some(now),
            ..ReplicaAudit::default()
        };
        match &result {
            Ok(()) => {}
            Err(StoreError::AuditBroken { seq, reason }) => {
                status.broken_at = Some(*seq);
                status.reason = Some(reason.clone());
            }
            Err(other) => status.reason = Some(other.to_string()),
        }
        *self
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
        result.map(|()| verified.clone())
    }

    /// What the last walk found.
    pub fn status(&self) -> ReplicaAudit {
        self.status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
