//! What the two SQL backends share: the pool's wait, row conversions, and the conflicts their
//! writes report.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::core_store::{new_id, AuditOutcome, NewAuditEvent, NewRootKey, RootKeyRecord};
use super::error::StoreError;

/// How long a request waits for a pooled connection before the store reports itself unavailable.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The audit event recorded when a root key is first published.
pub(super) fn root_key_registered(key: &NewRootKey, at: DateTime<Utc>) -> NewAuditEvent {
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
pub(super) fn check_root_key(
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
pub(super) fn db_time(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

pub(super) fn kid_from_db(kid: i64) -> Result<u32, StoreError> {
    u32::try_from(kid).map_err(|_| StoreError::Corrupt(format!("kid {kid}")))
}

/// Maps a unique-key violation to a conflict that names what already exists.
pub(super) fn exists(what: String) -> impl FnOnce(StoreError) -> StoreError {
    move |error| match error {
        StoreError::Conflict(_) => StoreError::Conflict(format!("{what} already exists")),
        other => other,
    }
}

/// A stored text value parsed into its enum.
pub(super) fn parse_text<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// The conflict of an update whose version was overtaken.
pub(super) fn changed_meanwhile(what: String) -> StoreError {
    StoreError::Conflict(format!(
        "{what} changed since it was read; fetch it again and retry"
    ))
}

/// The conflict of a change checked against an inventory that changed meanwhile.
pub(super) fn inventory_moved() -> StoreError {
    StoreError::Conflict(
        "the inventory changed while this change was being checked; retry it".to_owned(),
    )
}

/// A stored non-negative INTEGER as u32.
pub(super) fn u32_from_db(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative value {value}")))
}
