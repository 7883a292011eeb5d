//! The verified-token cache: a token's signature and attestation checks are done once while
//! the keys stay the same; every call still checks revocation and runs the authorizer.
//!
//! Entries are keyed by the SHA-256 of the token, bounded in number (oldest out first), dropped
//! once the mandate has expired, and dropped whenever the keys are refetched.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::token::verify::Checked;

/// The key of a token in the cache.
pub type TokenDigest = [u8; 32];

/// The digest of `token`.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// One checked token.
#[derive(Debug)]
pub struct Entry {
    /// Its checked form.
    pub checked: Checked,
    /// The key generation it was checked with.
    generation: u64,
    /// The token's hash as a DPoP proof states it (`ath`), computed once.
    ath: std::sync::OnceLock<String>,
}

impl Entry {
    /// An entry for `checked`, checked with keys of `generation`.
    pub fn new(checked: Checked, generation: u64) -> Arc<Self> {
        Arc::new(Self {
            checked,
            generation,
            ath: std::sync::OnceLock::new(),
        })
    }

    /// The `ath` a proof presenting `token` (this entry's token) must state.
    pub fn ath(&self, token: &str) -> &str {
        self.ath
            .get_or_init(|| crate::token::pop::proof::token_hash(token))
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.checked.verified().expires_at <= now
    }
}

/// A bounded map from token digests to checked tokens.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<TokenDigest, Arc<Entry>>,
    order: VecDeque<TokenDigest>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0: nothing is cached).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry for `digest` if it was checked with keys of `generation` and has not expired
    /// at `now`; a stale or expired entry is dropped.
    pub fn get(
        &self,
        digest: &TokenDigest,
        generation: u64,
        now: DateTime<Utc>,
    ) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let entry = inner.entries.get(digest)?;
        if entry.generation == generation && !entry.expired(now) {
            return Some(Arc::clone(entry));
        }
        inner.entries.remove(digest);
        None
    }

    /// Keeps `entry` under `digest`, making room by dropping the oldest entries.
    pub fn insert(&self, digest: TokenDigest, entry: Arc<Entry>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.entries.insert(digest, entry).is_none() {
            inner.order.push_back(digest);
        }
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        // `order` may still name entries dropped by `get`; keep it from growing without bound.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|d| entries.contains_key(d));
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::KeySet;
    use crate::token::mint::{mint, MandateSpec};
    use crate::token::verify::{check, AgentKeys, Trust, VerifyOptions};
    use crate::token::Right;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default()
    }

    fn checked(expires_at: DateTime<Utc>) -> (String, Checked) {
        let root = biscuit_auth::KeyPair::new();
        let spec = MandateSpec {
            approvals: vec![],
            holder_key: None,
            mandate_id: "m".into(),
            task_id: "t".into(),
            task_digest: vec![0; 32],
            principal_subject: "alice".into(),
            principal_issuer: "https://idp".into(),
            agent_id: "bot".into(),
            rights: vec![Right {
                tool: "crm".into(),
                operation: "read".into(),
            }],
            expires_at,
            constraints: vec![],
        };
        let token = mint(&spec, &root, 1).map(|m| m.token).unwrap_or_default();
        let keys = KeySet::from([(1, root.public())]);
        let trust = Trust {
            keys: &keys,
            agent_keys: &AgentKeys::new(),
            is_revoked: &|_| false,
        };
        let checked = check(&token, &trust, &VerifyOptions::default());
        (token, checked.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn entries_checked_with_other_keys_are_dropped() {
        let cache = TokenCache::new(10);
        let now = at();
        let (token, c) = checked(now + chrono::Duration::minutes(5));
        cache.insert(digest(&token), Entry::new(c, 1));
        assert!(cache.get(&digest(&token), 1, now).is_some());
        assert!(cache.get(&digest(&token), 2, now).is_none());
        assert!(cache.is_empty(), "the stale entry is gone");
    }

    #[test]
    fn entries_of_expired_mandates_are_dropped() {
        let cache = TokenCache::new(10);
        let now = at();
        let (token, c) = checked(now + chrono::Duration::minutes(5));
        let entry = Entry::new(c, 1);
        cache.insert(digest(&token), entry);
        assert!(cache.get(&digest(&token), 1, now).is_some());
        assert!(cache
            .get(&digest(&token), 1, now + chrono::Duration::minutes(5))
            .is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_oldest_out_first() {
        let cache = TokenCache::new(3);
        let now = at();
        let tokens: Vec<String> = (0..5)
            .map(|_| {
                let (token, c) = checked(now + chrono::Duration::minutes(5));
                cache.insert(digest(&token), Entry::new(c, 1));
                token
            })
            .collect();
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&digest(&tokens[0]), 1, now).is_none());
        assert!(cache.get(&digest(&tokens[1]), 1, now).is_none());
        assert!(cache.get(&digest(&tokens[4]), 1, now).is_some());
        let none = TokenCache::new(0);
        none.insert(digest(&tokens[4]), Entry::new(checked(now).1, 1));
        assert!(none.is_empty(), "capacity 0 caches nothing");
    }
}
