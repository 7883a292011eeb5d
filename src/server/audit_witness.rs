//! A copy of the signed checkpoints kept outside the database (a witness), and checking the
//! database against it.
//!
//! Whoever controls the database can delete checkpoints, or relabel one with a kid the
//! verifier does not load so that it is passed over. A witness file, written by
//! `mandate audit checkpoints export --out FILE` (run it periodically: each run appends only the
//! checkpoints after the file's last), keeps what was signed: `mandate audit verify --witness
//! FILE` reports every checkpoint of the copy that the database no longer holds unchanged.
//!
//! The format is one JSON object a line, in seq order:
//! `{"seq":42,"hash":"<hex>","kid":1,"signature":"<hex>","signed_at":"2026-01-02T03:04:05Z"}`.

use std::io::{BufRead, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{checkpoint_message, BadEvent};
use super::store::Checkpoint;
use crate::token::keys::KeySet;

/// One checkpoint as the witness file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witnessed {
    /// The last event the checkpoint covers.
    pub seq: i64,
    /// Its chain hash, hex.
    pub hash: String,
    /// The root key that signed it.
    pub kid: u32,
    /// The Ed25519 signature, hex.
    pub signature: String,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
}

impl From<&Checkpoint> for Witnessed {
    fn from(c: &Checkpoint) -> Self {
        Witnessed {
            seq: c.seq,
            hash: hex::encode(&c.hash),
            kid: c.kid,
            signature: hex::encode(&c.signature),
            signed_at: c.signed_at,
        }
    }
}

/// Why a witness file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The file cannot be read or written.
    #[error("witness file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
    /// A line is not a witnessed checkpoint, or lines are out of order.
    #[error("witness file {path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads every checkpoint of the witness file at `path` (none if it does not exist).
pub fn read(path: &Path) -> Result<Vec<Witnessed>, WitnessError> {
    let name = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(reason) => return Err(WitnessError::Io { path: name, reason }),
    };
    let mut witnessed: Vec<Witnessed> = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|reason| WitnessError::Io {
            path: name.clone(),
            reason,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| WitnessError::Malformed {
            path: name.clone(),
            line: i + 1,
            reason,
        };
        let entry: Witnessed = serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
        if witnessed.last().is_some_and(|last| last.seq >= entry.seq) {
            return Err(malformed(
                "checkpoints must come in increasing seq".to_owned(),
            ));
        }
        witnessed.push(entry);
    }
    Ok(witnessed)
}

/// Appends to the witness file at `path` the checkpoints of `all` after its last one; returns
/// how many were appended.
pub fn append(path: &Path, all: &[Checkpoint]) -> Result<usize, WitnessError> {
    let after = read(path)?.last().map_or(0, |last| last.seq);
    let io = |reason| WitnessError::Io {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut appended = 0;
    for checkpoint in all.iter().filter(|c| c.seq > after) {
        let line = serde_json::to_string(&Witnessed::from(checkpoint)).unwrap_or_default();
        writeln!(file, "{line}").map_err(io)?;
        appended += 1;
    }
    file.sync_all().map_err(io)?;
    Ok(appended)
}

/// The first checkpoint of `witnessed` that `stored` (the database's checkpoints) does not
/// hold unchanged, among those signed by a key of `keys` (a witnessed checkpoint whose
/// signature does not verify is itself reported: the copy was altered).
pub fn check(witnessed: &[Witnessed], stored: &[Checkpoint], keys: &KeySet) -> Option<BadEvent> {
    let by_seq: std::collections::HashMap<i64, &Checkpoint> =
        stored.iter().map(|c| (c.seq, c)).collect();
    let bad = |seq, reason: &str| {
        Some(BadEvent {
            seq,
            id: None,
            reason: reason.to_owned(),
        })
    };
    for entry in witnessed {
        let Some(key) = keys.get(&entry.kid) else {
            continue;
        };
        let (Ok(hash), Ok(signature)) = (hex::decode(&entry.hash), hex::decode(&entry.signature))
        else {
            return bad(entry.seq, "the witness's copy is not hex");
        };
        let signed =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.to_bytes())
                .verify(&checkpoint_message(entry.seq, &hash), &signature)
                .is_ok();
        if !signed {
            return bad(
                entry.seq,
                "the witness's copy of this checkpoint is not signed by its key",
            );
        }
        match by_seq.get(&entry.seq) {
            None => return bad(entry.seq, "a checkpoint the witness holds was deleted"),
            Some(stored)
                if stored.kid != entry.kid
                    || stored.hash != hash
                    || stored.signature != signature =>
            {
                return bad(
                    entry.seq,
                    "a checkpoint the witness holds was relabelled or changed",
                );
            }
            Some(_) => {}
        }
    }
    None
}
