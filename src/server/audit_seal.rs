//! Authenticating audit events with a key the database does not hold.
//!
//! The chain hash is plain SHA-256 over public fields: anyone who can insert a row can compute
//! a valid one. So every event also carries a MAC, HMAC-SHA256 over its seq and chain hash,
//! keyed with a key derived from the active root signing key (which lives in key files, not in
//! the database). A row the database alone could have written has no valid MAC and is reported
//! as forged. The MAC costs one HMAC per event, computed while the chain's lock is held.
//!
//! Events written before MACs existed (at or before the seq the migration recorded) carry none;
//! the chain and the signed checkpoints still cover them, as before.

use std::collections::HashMap;

use ring::hmac;

use super::keys::KeyRing;

/// What the MAC key is derived for (HMAC-SHA256 of this label under the root key's seed).
const DERIVATION_LABEL: &[u8] = b"mandate-audit-mac:v1";

/// The MAC keys of the configured root keys, by kid, and which one seals new events.
pub struct AuditSeal {
    active: u32,
    keys: HashMap<u32, hmac::Key>,
}

impl std::fmt::Debug for AuditSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSeal")
            .field("active", &self.active)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A MAC and the kid of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Mac {
    /// The root key the MAC key was derived from.
    pub kid: u32,
    /// HMAC-SHA256 of the event's seq and hash, hex.
    pub tag: String,
}

/// What checking an event's MAC found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A loaded key made it.
    Authentic,
    /// It names a root key not loaded here (rotated out of the configuration).
    UnknownKey,
    /// Missing, or not made by the key it names.
    Forged,
}

fn message(seq: i64, hash: &[u8]) -> Vec<u8> {
    format!("mandate-audit-event:v1:{seq}:{}", hex::encode(hash)).into_bytes()
}

impl AuditSeal {
    /// The MAC keys derived from every key of `ring`; new events are sealed with the active one.
    pub fn from_ring(ring: &KeyRing) -> Self {
        let keys = ring
            .kids()
            .into_iter()
            .filter_map(|kid| ring.get(kid).map(|key| (kid, derive(key.keypair()))))
            .collect();
        Self {
            active: ring.active().kid,
            keys,
        }
    }

    /// The MAC keys derived from `keys` (kid, key pair); `active` seals new events.
    pub fn from_keys(keys: &[(u32, biscuit_auth::KeyPair)], active: u32) -> Self {
        Self {
            active,
            keys: keys.iter().map(|(kid, key)| (*kid, derive(key))).collect(),
        }
    }

    /// The MAC of the event at `seq` hashed `hash`, with the active key.
    pub fn seal(&self, seq: i64, hash: &[u8]) -> Option<Mac> {
        let key = self.keys.get(&self.active)?;
        Some(Mac {
            kid: self.active,
            tag: hex::encode(hmac::sign(key, &message(seq, hash))),
        })
    }

    /// Checks the MAC an event at `seq` hashed `hash` carries (in constant time).
    pub fn check(&self, seq: i64, hash: &[u8], mac: Option<&Mac>) -> Checked {
        let Some(mac) = mac else {
            return Checked::Forged;
        };
        match self.keys.get(&mac.kid) {
            None => Checked::UnknownKey,
            Some(key) => match hex::decode(&mac.tag)
                .ok()
                .map(|tag| hmac::verify(key, &message(seq, hash), &tag))
            {
                Some(Ok(())) => Checked::Authentic,
                _ => Checked::Forged,
            },
        }
    }
}

/// The MAC key of a root key: HMAC-SHA256 of [`DERIVATION_LABEL`] keyed with its seed.
fn derive(key: &biscuit_auth::KeyPair) -> hmac::Key {
    let seed = key.private().to_bytes();
    let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &seed), DERIVATION_LABEL);
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_only_for_its_seq_hash_and_key() {
        let one = biscuit_auth::KeyPair::new();
        let same = biscuit_auth::KeyPair::from(&one.private());
        let two = biscuit_auth::KeyPair::new();
        let seal = AuditSeal::from_keys(&[(1, one), (2, two)], 1);
        let mac = seal.seal(7, &[1; 32]).unwrap();
        assert_eq!(mac.kid, 1);
        assert_eq!(seal.check(7, &[1; 32], Some(&mac)), Checked::Authentic);
        assert_eq!(seal.check(8, &[1; 32], Some(&mac)), Checked::Forged);
        assert_eq!(seal.check(7, &[2; 32], Some(&mac)), Checked::Forged);
        assert_eq!(seal.check(7, &[1; 32], None), Checked::Forged);
        let relabelled = Mac {
            kid: 2,
            ..mac.clone()
        };
        assert_eq!(seal.check(7, &[1; 32], Some(&relabelled)), Checked::Forged);
        let unknown = Mac { kid: 9, ..mac };
        assert_eq!(seal.check(7, &[1; 32], Some(&unknown)), Checked::UnknownKey);
        // Another service's key derives another MAC key.
        let other = AuditSeal::from_keys(&[(1, biscuit_auth::KeyPair::new())], 1);
        assert_eq!(
            other.check(7, &[1; 32], seal.seal(7, &[1; 32]).as_ref()),
            Checked::Forged
        );
        assert_eq!(
            AuditSeal::from_keys(&[(1, same)], 1).seal(7, &[1; 32]),
            seal.seal(7, &[1; 32]),
            "derived the same from the same root key"
        );
    }
}
