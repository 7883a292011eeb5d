//! What checking proofs needs beyond the proof itself: the proofs already seen (a bounded
//! replay cache) and server nonces (`DPoP-Nonce`).
//!
//! The cache remembers a proof (its key's thumbprint and `jti`) until its `iat` leaves the
//! window, after which the proof is refused as stale anyway. It is one process's memory: with
//! several replicas behind one URL, a captured proof can be replayed once to each replica within
//! the window (`docs/token-schema.md` says what closes that). When the cache is full of live
//! proofs a new one is refused (`Busy`), never let through by forgetting an old one.
//!
//! A nonce is `period || HMAC-SHA256(key, period)[..16]`, base64url: stateless, so replicas
//! given the same [`ProofSettings::nonce_key`] accept each other's nonces; one is accepted in
//! its period and the next.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};

use super::proof::{check_with, read_key, Expected, Proof, ProofError};
use super::HolderKey;

/// Most holder keys kept decoded (a key seen again skips decoding and hashing its JWK).
const KEY_CACHE: usize = 4096;

/// How proofs are checked.
#[derive(Debug, Clone)]
pub struct ProofSettings {
    /// How old a proof may be (its `iat`).
    pub max_age: Duration,
    /// How far ahead of this clock a proof may be dated.
    pub max_ahead: Duration,
    /// Whether every proof must carry a nonce this verifier issued.
    pub require_nonce: bool,
    /// How long a nonce period lasts (a nonce works in its period and the next).
    pub nonce_period: Duration,
    /// Most proofs remembered at once.
    pub replay_capacity: usize,
    /// The key nonces are made with: replicas given the same key accept each other's nonces.
    /// `None`: a key of this process's own, drawn at random.
    pub nonce_key: Option<NonceKey>,
}

/// A nonce key (32 bytes), never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceKey(pub [u8; 32]);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey([redacted])")
    }
}

impl Default for ProofSettings {
    /// 60 s old at most, 30 s ahead, no nonce, 5-minute nonce periods, 100,000 proofs.
    fn default() -> Self {
        Self {
            max_age: Duration::seconds(60),
            max_ahead: Duration::seconds(crate::token::verify::MAX_SKEW_SECONDS),
            require_nonce: false,
            nonce_period: Duration::minutes(5),
            replay_capacity: 100_000,
            nonce_key: None,
        }
    }
}

/// The proofs seen, each until it leaves the window.
#[derive(Debug, Default)]
struct Seen {
    until: HashMap<[u8; 32], i64>,
    order: VecDeque<([u8; 32], i64)>,
    /// When the whole cache was last swept (at most once a second).
    swept_at: i64,
}

/// Checks proofs and remembers them.
pub struct Proofs {
    settings: ProofSettings,
    nonce_key: [u8; 32],
    seen: Mutex<Seen>,
    /// Holder keys decoded before, by their JWK's public members.
    keys: Mutex<HashMap<String, (HolderKey, String)>>,
}

impl std::fmt::Debug for Proofs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proofs")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

type NonceMac = Hmac<Sha256>;

impl Proofs {
    /// A checker whose nonces are keyed by `nonce_key` (replicas that share it accept each
    /// other's nonces).
    pub fn new(settings: ProofSettings, nonce_key: [u8; 32]) -> Self {
        Self {
            settings,
            nonce_key,
            seen: Mutex::new(Seen::default()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// A checker with the settings' nonce key, or one of its own drawn at random.
    pub fn from_settings(settings: ProofSettings) -> Self {
        if let Some(NonceKey(key)) = settings.nonce_key {
            return Self::new(settings, key);
        }
        let mut key = [0u8; 32];
        // biscuit-auth draws keys from the operating system's generator; its private key bytes
        // are 32 random bytes.
        let random = biscuit_auth::KeyPair::new().private().to_bytes();
        key.copy_from_slice(&random[..32]);
        Self::new(settings, key)
    }

    /// The settings.
    pub fn settings(&self) -> &ProofSettings {
        &self.settings
    }

    fn period(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp()
            .div_euclid(self.settings.nonce_period.num_seconds().max(1))
    }

    fn mac(&self, period: i64) -> Vec<u8> {
        // HMAC takes a key of any length.
        let mut mac = NonceMac::new_from_slice(&self.nonce_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(&period.to_be_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// A nonce for clients to put in their next proofs.
    pub fn nonce(&self, now: DateTime<Utc>) -> String {
        let period = self.period(now);
        let mut bytes = period.to_be_bytes().to_vec();
        bytes.extend(self.mac(period));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` is one this checker (or a replica with its key) issued in this period or
    /// the one before.
    pub fn nonce_current(&self, nonce: &str, now: DateTime<Utc>) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Ok(period) = <[u8; 8]>::try_from(bytes.get(..8).unwrap_or_default()) else {
            return false;
        };
        let period = i64::from_be_bytes(period);
        let current = self.period(now);
        (period == current || period == current - 1)
            && super::proof::constant_time_eq(&bytes[8..], &self.mac(period))
    }

    /// Checks `proof` against `expected` (its own window replaced by the settings'), then its
    /// nonce when one is required, then that it was not seen before; a proof that passes is
    /// remembered.
    pub fn check(&self, proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
        let expected = Expected {
            max_age: self.settings.max_age,
            max_ahead: self.settings.max_ahead,
            ..expected.clone()
        };
        let proof = check_with(proof, &expected, &|jwk| self.key(jwk))?;
        if self.settings.require_nonce
            && !proof
                .nonce
                .as_deref()
                .is_some_and(|n| self.nonce_current(n, expected.now))
        {
            return Err(ProofError::Nonce);
        }
        let until = proof.iat + self.settings.max_age.num_seconds() + 1;
        self.remember(&proof, until, expected.now.timestamp())?;
        Ok(proof)
    }

    /// A JWK as a holder key, decoded once while it stays among the last [`KEY_CACHE`] keys
    /// (the cache starts over when full).
    fn key(&self, jwk: &serde_json::Value) -> Result<(HolderKey, String), ProofError> {
        let member = |name| jwk.get(name).and_then(serde_json::Value::as_str);
        let private = jwk.get("d").is_some();
        let id = match (member("kty"), member("crv"), member("x"), member("y")) {
            (Some(kty), Some(crv), Some(x), y) if !private => {
                format!("{kty} {crv} {x} {}", y.unwrap_or_default())
            }
            _ => return read_key(jwk),
        };
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = keys.get(&id) {
            return Ok(known.clone());
        }
        let read = read_key(jwk)?;
        if keys.len() >= KEY_CACHE {
            keys.clear();
        }
        keys.insert(id, read.clone());
        Ok(read)
    }

    fn remember(&self, proof: &Proof, until: i64, now: i64) -> Result<(), ProofError> {
        let mut id = Sha256::new();
        id.update(proof.jkt.as_bytes());
        id.update([0]);
        id.update(proof.jti.as_bytes());
        let id: [u8; 32] = id.finalize().into();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // Entries leave in the order they came; each proof's deadline is `iat + max_age`, so
        // the front is not always the first to expire: scan forward while entries are dead.
        while let Some(&(front, deadline)) = seen.order.front() {
            if deadline > now {
                break;
            }
            seen.order.pop_front();
            if seen.until.get(&front) == Some(&deadline) {
                seen.until.remove(&front);
            }
        }
        if let Some(&deadline) = seen.until.get(&id) {
            if deadline > now {
                return Err(ProofError::Replayed);
            }
        }
        if seen.until.len() >= self.settings.replay_capacity && seen.swept_at < now {
            // Dead entries may sit behind a live one in the queue: sweep them all, at most
            // once a second, so a full cache costs no more than a refusal.
            seen.swept_at = now;
            seen.until.retain(|_, deadline| *deadline > now);
            let live = &seen.until;
            let kept: VecDeque<_> = seen
                .order
                .iter()
                .filter(|(id, deadline)| live.get(id) == Some(deadline))
                .copied()
                .collect();
            seen.order = kept;
        }
        if seen.until.len() >= self.settings.replay_capacity {
            return Err(ProofError::Busy);
        }
        seen.until.insert(id, until);
        seen.order.push_back((id, until));
        Ok(())
    }

    /// How many proofs are remembered.
    pub fn remembered(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }
}
