//! The downstream side (feature `verifier`): a [`Verifier`] that keeps mandate's published root
//! and agent keys (fetched once, refetched on an unknown kid at most once per interval) and
//! verifies mandates offline, and a tower [`layer::MandateLayer`] for axum services.

pub mod cache;
pub mod layer;
pub mod pool;
pub mod receipts;
pub mod revocations;

use std::sync::Arc;
use std::time::{Duration, Instant};

use biscuit_auth::UnverifiedBiscuit;
use tokio::sync::RwLock;

use crate::clock::SharedClock;
use crate::token::keys::{AgentKeysDocument, KeySet, KeysDocument};
use crate::token::pop::proof::{Expected, ProofError};
use crate::token::pop::replay::{ProofSettings, Proofs};
use crate::token::verify::{check, AccessRequest, AgentKeys, Trust, Verified, VerifyOptions};
use crate::token::vocabulary::{self, Stated};
use crate::token::TokenError;
pub use cache::Entry;
use cache::TokenCache;

/// Tells whether a revocation id is revoked (filled by a revocation feed).
pub trait RevocationCheck: Send + Sync {
    /// Whether `id` (a block's revocation id) is revoked.
    fn is_revoked(&self, id: &[u8]) -> bool;

    /// Whether the list is current enough to rely on; `Err` names why not, and verification
    /// then fails closed.
    fn fresh(&self) -> Result<(), String> {
        Ok(())
    }
}

/// No revocation list: nothing is revoked.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRevocations;

impl RevocationCheck for NoRevocations {
    fn is_revoked(&self, _id: &[u8]) -> bool {
        false
    }
}

/// What one call does: a tool's operation, optionally on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The tool (this service's id in mandate).
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The resource, when the service names one.
    pub resource: Option<String>,
}

/// How a verifier fetches keys and verifies.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// mandate's base URL, e.g. `https://mandate.internal`.
    pub base_url: String,
    /// Bounds and clock-skew tolerance of each verification.
    pub options: VerifyOptions,
    /// An unknown kid or attesting key refetches the keys at most once per this interval.
    pub refetch_interval: Duration,
    /// Keys are refetched this often anyway, so retired root keys and removed agent keys stop
    /// being trusted.
    pub key_ttl: Duration,
    /// Keys older than this (mandate unreachable) are no longer trusted: verification fails
    /// closed.
    pub max_key_age: Duration,
    /// Timeout of each key fetch.
    pub fetch_timeout: Duration,
    /// Most tokens whose signature checks are remembered (0: none). Every call still checks
    /// revocation and runs the authorizer.
    pub cache_capacity: usize,
    /// How proofs of possession are checked (window, nonces, replay cache).
    pub proofs: ProofSettings,
}

impl VerifierSettings {
    /// Defaults for `base_url`: 16 KiB, 16 blocks, 30 s skew, refetch at most every 30 s, keys
    /// kept 5 minutes (trusted up to an hour while mandate is unreachable), 10,000 checked
    /// tokens remembered.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            options: VerifyOptions {
                skew: chrono::Duration::seconds(crate::token::verify::MAX_SKEW_SECONDS),
                ..VerifyOptions::default()
            },
            refetch_interval: Duration::from_secs(30),
            key_ttl: Duration::from_secs(300),
            max_key_age: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
            cache_capacity: 10_000,
            proofs: ProofSettings::default(),
        }
    }
}

/// How a call presents its mandate: `Authorization: Bearer <token>`, or `Authorization: DPoP
/// <token>` with a `DPoP` proof for the call's method and URL.
#[derive(Debug, Clone, Copy)]
pub struct Presentation<'a> {
    /// The mandate.
    pub token: &'a str,
    /// The `DPoP` header, when the call uses the DPoP scheme (`None` for Bearer).
    pub proof: Option<&'a str>,
    /// The call's method.
    pub method: &'a str,
    /// The call's URL as the client addressed it: this service's public URL and the path.
    pub url: &'a str,
}

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or answered an error.
    #[error("cannot fetch {url}: {reason}")]
    Http {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The document is not what mandate publishes.
    #[error("{url} is not a valid key document: {reason}")]
    Document {
        /// What was fetched.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Default)]
struct Cached {
    keys: Arc<KeySet>,
    agent_keys: Arc<AgentKeys>,
    /// The last fetch attempt.
    last_fetch: Option<Instant>,
    /// The last fetch that succeeded.
    last_success: Option<Instant>,
    /// Bumped by every successful fetch: tokens checked with older keys are checked again.
    generation: u64,
}

/// Verifies mandates offline with mandate's published keys.
pub struct Verifier {
    settings: VerifierSettings,
    http: reqwest::Client,
    cache: RwLock<Cached>,
    tokens: TokenCache,
    revocations: Arc<dyn RevocationCheck>,
    proofs: Proofs,
    clock: SharedClock,
    /// Held while the keys are fetched, so concurrent calls do not fetch them again.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("base_url", &self.settings.base_url)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier with no keys yet; they are fetched on first use (or by [`Verifier::refresh`]).
    pub fn new(
        settings: VerifierSettings,
        revocations: Arc<dyn RevocationCheck>,
        clock: SharedClock,
    ) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .build()
            .map_err(|e| FetchError::Http {
                url: settings.base_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            tokens: TokenCache::new(settings.cache_capacity),
            proofs: Proofs::from_settings(settings.proofs.clone()),
            settings,
            http,
            cache: RwLock::new(Cached::default()),
            revocations,
            clock,
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, FetchError> {
        let url = format!("{}{path}", self.settings.base_url.trim_end_matches('/'));
        let http = |reason: String| FetchError::Http {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("answered {}", response.status())));
        }
        response.json().await.map_err(|e| FetchError::Document {
            url: url.clone(),
            reason: e.to_string(),
        })
    }

    /// Fetches the root and agent keys now.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let root: KeysDocument = self.get("/.well-known/mandate-keys").await?;
        let agents: AgentKeysDocument = self.get("/.well-known/mandate-agent-keys").await?;
        let document = |url: &str, e: crate::token::keys::KeyFormatError| FetchError::Document {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let keys = root
            .key_set()
            .map_err(|e| document("/.well-known/mandate-keys", e))?;
        let agent_keys = agents
            .agent_keys()
            .map_err(|e| document("/.well-known/mandate-agent-keys", e))?;
        let mut cache = self.cache.write().await;
        let generation = cache.generation + 1;
        let fetched = self.clock.instant();
        *cache = Cached {
            keys: Arc::new(keys),
            agent_keys: Arc::new(agent_keys),
            last_fetch: Some(fetched),
            last_success: Some(fetched),
            generation,
        };
        Ok(())
    }

    /// Refreshes the keys when they are older than `key_ttl`, or when the token names a kid or
    /// an attesting key not in the cache (at most once per `refetch_interval`). A failed fetch
    /// leaves the cached keys in place until they are older than `max_key_age`.
    async fn ensure_keys(
        &self,
        token: &UnverifiedBiscuit,
        blocks: &[Stated],
    ) -> Result<(), TokenError> {
        let kid = token.root_key_id();
        // Only attestations are signed by agents' keys (a rebinding is signed by a holder's).
        let attesting: Vec<_> = token
            .external_public_keys()
            .into_iter()
            .skip(1)
            .zip(blocks)
            .filter(|(_, block)| matches!(block, Stated::Attestation { .. }))
            .filter_map(|(key, _)| key)
            .collect();
        let unknown = {
            let cache = self.cache.read().await;
            let kid_unknown = !kid.is_some_and(|kid| cache.keys.contains_key(&kid));
            let key_unknown = attesting.iter().any(|k| {
                !cache
                    .agent_keys
                    .values()
                    .any(|keys| keys.iter().any(|known| known == k))
            });
            kid_unknown || key_unknown
        };
        self.refresh_if_due(unknown).await
    }

    /// Refreshes the keys when they are older than `key_ttl`, or when a token needs a key not
    /// in the cache (`unknown`) and the last attempt is older than `refetch_interval`; refuses
    /// once the last successful fetch is older than `max_key_age`.
    async fn refresh_if_due(&self, unknown: bool) -> Result<(), TokenError> {
        let now = self.clock.instant();
        let trusted = |cache: &Cached| {
            cache
                .last_success
                .is_some_and(|at| now.saturating_duration_since(at) <= self.settings.max_key_age)
        };
        let due = |cache: &Cached| match cache.last_fetch {
            None => true,
            Some(at) => {
                let age = now.saturating_duration_since(at);
                // Keys too old to trust are asked for as often as an unknown key is, so
                // verification resumes soon after mandate is reachable again.
                age >= self.settings.key_ttl
                    || ((unknown || !trusted(cache)) && age >= self.settings.refetch_interval)
            }
        };
        if due(&*self.cache.read().await) {
            // One fetch at a time: calls that find a fetch due wait for the one under way,
            // and fetch only if it left one still due.
            let _fetching = self.fetching.lock().await;
            if due(&*self.cache.read().await) {
                if let Err(error) = self.refresh().await {
                    tracing::warn!(%error, "cannot refresh mandate's keys");
                    // Count the attempt, so an unreachable mandate is not asked on every
                    // request.
                    self.cache.write().await.last_fetch = Some(now);
                }
            }
        }
        if !trusted(&*self.cache.read().await) {
            return Err(TokenError::UnknownKey);
        }
        Ok(())
    }

    /// The verifier's current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Verifies `token` for `access` now. A token seen before (with the same keys) skips the
    /// signature and attestation checks; revocation and authorization run on every call.
    pub async fn verify(&self, token: &str, access: &Access) -> Result<Verified, TokenError> {
        self.verify_call(token, access, None).await
    }

    /// Verifies a call of `access` with its JSON `arguments`, which the token's argument
    /// constraints on that operation are checked against (none given: a constrained operation
    /// is refused).
    pub async fn verify_call(
        &self,
        token: &str,
        access: &Access,
        arguments: Option<&serde_json::Value>,
    ) -> Result<Verified, TokenError> {
        let entry = self.checked(token).await?;
        self.authorize(&entry, access, arguments.cloned()).await
    }

    /// The checks of a token that hold until the keys change (signatures, block vocabulary,
    /// attestations), remembered per token. Revocation and authorization are per call
    /// ([`Verifier::authorize`]).
    pub async fn checked(&self, token: &str) -> Result<Arc<Entry>, TokenError> {
        if token.len() > self.settings.options.max_bytes {
            return Err(TokenError::TooLarge);
        }
        self.revocations
            .fresh()
            .map_err(TokenError::RevocationsStale)?;
        let digest = cache::digest(token);
        self.refresh_if_due(false).await?;
        let generation = self.cache.read().await.generation;
        if let Some(entry) = self.tokens.get(&digest, generation, self.clock.now()) {
            return Ok(entry);
        }
        let decoded = vocabulary::read(token, self.settings.options.max_blocks)?;
        let unverified =
            UnverifiedBiscuit::from_base64(token).map_err(|_| TokenError::Malformed)?;
        self.ensure_keys(&unverified, &decoded.blocks).await?;
        let (keys, agent_keys, generation) = {
            let cache = self.cache.read().await;
            (
                Arc::clone(&cache.keys),
                Arc::clone(&cache.agent_keys),
                cache.generation,
            )
        };
        let token = token.to_owned();
        let options = self.settings.options.clone();
        let checked = pool::run(move || {
            let trust = Trust {
                keys: &keys,
                agent_keys: &agent_keys,
                is_revoked: &|_| false,
            };
            check(&token, &trust, &options)
        })
        .await?;
        let entry = Entry::new(checked, generation);
        self.tokens.insert(digest, Arc::clone(&entry));
        Ok(entry)
    }

    /// Refuses a checked token that is revoked or expired now, or when the revocation list is
    /// too old to tell.
    pub fn alive(&self, entry: &Entry) -> Result<(), TokenError> {
        self.revocations
            .fresh()
            .map_err(TokenError::RevocationsStale)?;
        entry.checked.alive(
            &|id: &[u8]| self.revocations.is_revoked(id),
            self.clock.now(),
            &self.settings.options,
        )
    }

    /// Authorizes one call of a checked token now: not revoked (with a fresh revocation list),
    /// not expired, `access` granted, and `arguments` within the token's constraints. A bound
    /// token is refused: it needs [`Verifier::authorize_held`] with a proof.
    pub async fn authorize(
        &self,
        entry: &Arc<Entry>,
        access: &Access,
        arguments: Option<serde_json::Value>,
    ) -> Result<Verified, TokenError> {
        self.authorize_held(entry, access, arguments, None).await
    }

    /// Verifies a call as [`Verifier::verify_call`] does, with the mandate as the call
    /// presented it: a bound mandate needs a proof from its current holder for this method and
    /// URL; an unbound one must come as Bearer.
    pub async fn verify_presented(
        &self,
        presented: &Presentation<'_>,
        access: &Access,
        arguments: Option<&serde_json::Value>,
    ) -> Result<Verified, TokenError> {
        let entry = self.checked(presented.token).await?;
        // A revoked or expired token's proofs are not remembered.
        self.alive(&entry)?;
        let proven = self.prove(&entry, presented)?;
        self.authorize_held(&entry, access, arguments.cloned(), proven)
            .await
    }

    /// Checks the proof of possession a call presents with a checked token: the thumbprint
    /// of the key it proves, `None` for an unbound token presented as Bearer. The proof is
    /// remembered, so the same proof is refused next time.
    pub fn prove(
        &self,
        entry: &Entry,
        presented: &Presentation<'_>,
    ) -> Result<Option<String>, TokenError> {
        let holder = entry.checked.verified().holder_key.as_deref();
        let proof = match (holder, presented.proof) {
            (None, None) => return Ok(None),
            (None, Some(_)) => return Err(ProofError::Unbound.into()),
            (Some(_), None) => return Err(ProofError::Missing.into()),
            (Some(_), Some(proof)) => proof,
        };
        let expected = Expected {
            method: presented.method,
            url: presented.url,
            ath: Some(entry.ath(presented.token)),
            holder,
            now: self.clock.now(),
            max_age: self.settings.proofs.max_age,
            max_ahead: self.settings.proofs.max_ahead,
        };
        Ok(Some(self.proofs.check(proof, &expected)?.jkt))
    }

    /// Authorizes a call of a checked token as [`Verifier::authorize`] does, for a caller that
    /// proved it holds the key with thumbprint `proven` ([`Verifier::prove`]).
    pub async fn authorize_held(
        &self,
        entry: &Arc<Entry>,
        access: &Access,
        arguments: Option<serde_json::Value>,
        proven: Option<String>,
    ) -> Result<Verified, TokenError> {
        self.revocations
            .fresh()
            .map_err(TokenError::RevocationsStale)?;
        let request = AccessRequest {
            tool: access.tool.clone(),
            operation: access.operation.clone(),
            now: self.clock.now(),
        };
        let entry = Arc::clone(entry);
        let revocations = Arc::clone(&self.revocations);
        let options = self.settings.options.clone();
        let resource = access.resource.clone();
        pool::run(move || {
            entry.checked.authorize_held(
                &|id: &[u8]| revocations.is_revoked(id),
                &request,
                resource.as_deref(),
                arguments.as_ref(),
                proven.as_deref(),
                &options,
            )
        })
        .await
    }

    /// A nonce for the `DPoP-Nonce` header: with `require_nonce`, proofs must carry one.
    pub fn nonce(&self) -> String {
        self.proofs.nonce(self.clock.now())
    }

    /// How many checked tokens are remembered.
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }
}
