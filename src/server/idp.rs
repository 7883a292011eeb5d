//! Trusted issuers' tokens: fetching and caching each issuer's JWKS, and validating a human
//! principal's JWT against the issuer it names. Expiry is checked against the injected clock,
//! the algorithm against the issuer's allowlist (never `none`, never HMAC), and the signing key
//! must be one the issuer publishes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration as StdDuration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::model::issuer::Issuer;
use super::policy::Principal;

#[path = "idp_error.rs"]
mod error;
pub use error::IdpError;

/// The largest subject token accepted.
pub const MAX_SUBJECT_TOKEN_BYTES: usize = 16 * 1024;
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Most groups read from a token.
const MAX_GROUPS: usize = 256;
/// Most verified signatures remembered (see [`Signatures`]).
const MAX_REMEMBERED_SIGNATURES: usize = 1024;
/// Larger subject tokens are verified every time, never remembered: the memory held stays small.
const MAX_REMEMBERED_TOKEN_BYTES: usize = 8 * 1024;

/// How tokens are validated and keys fetched.
#[derive(Debug, Clone, Copy)]
pub struct IdpSettings {
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long fetched keys are used before they are fetched again.
    pub cache_ttl: Duration,
    /// How long keys may still be used when the issuer cannot be reached.
    pub max_stale: Duration,
    /// A token signed with an unknown key refetches the keys at most once per this interval.
    pub unknown_kid_refetch: Duration,
    /// Timeout of each HTTP request to an issuer.
    pub fetch_timeout: StdDuration,
}

impl Default for IdpSettings {
    fn default() -> Self {
        Self {
            leeway: Duration::seconds(60),
            cache_ttl: Duration::minutes(5),
            max_stale: Duration::hours(1),
            unknown_kid_refetch: Duration::seconds(30),
            fetch_timeout: StdDuration::from_secs(5),
        }
    }
}

/// One issuer's keys as last fetched.
#[derive(Debug, Clone)]
struct CachedKeys {
    /// Where they came from (changes when the issuer's configuration does).
    source: String,
    keys: Vec<Jwk>,
    fetched_at: DateTime<Utc>,
    last_unknown_kid_refetch: Option<DateTime<Utc>>,
}

/// A subject token whose signature verified, with everything the verification depended on.
#[derive(Debug)]
struct VerifiedSignature {
    issuer_id: String,
    issuer_url: String,
    audiences: Vec<String>,
    alg: String,
    key: Jwk,
    claims: Map<String, Value>,
}

/// Subject tokens whose signatures verified, keyed by the token's SHA-256: an orchestrator
/// mints several mandates with one principal's token, and each after the first skips the
/// signature check (and only that). A remembered verification counts only while the issuer's
/// settings and its published key are the same as when it was made; expiry, `nbf` and the
/// claims are checked again on every use. Bounded: oldest out first.
#[derive(Debug, Default)]
struct Signatures {
    entries: HashMap<[u8; 32], Arc<VerifiedSignature>>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Signatures {
    fn remember(&mut self, digest: [u8; 32], verified: Arc<VerifiedSignature>) {
        if self.entries.insert(digest, verified).is_none() {
            self.order.push_back(digest);
        }
        while self.entries.len() > MAX_REMEMBERED_SIGNATURES {
            match self.order.pop_front() {
                Some(oldest) => self.entries.remove(&oldest),
                None => break,
            };
        }
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    let mut digest = [0; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    digest
}

/// Validates subject tokens; shared by every request.
#[derive(Debug)]
pub struct IdentityVerifier {
    http: reqwest::Client,
    settings: IdpSettings,
    /// Each issuer's keys, read without waiting by every validation.
    cache: std::sync::RwLock<HashMap<String, Arc<CachedKeys>>>,
    /// One fetch at a time per issuer: callers that find the keys stale wait for the fetch in
    /// progress instead of starting their own, and other issuers' validations never wait.
    fetching: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Signatures already verified.
    signatures: std::sync::Mutex<Signatures>,
}

/// The JOSE header fields mandate reads.
struct Header {
    alg: String,
    kid: Option<String>,
}

fn decode_segment(segment: &str) -> Result<Map<String, Value>, IdpError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| IdpError::Malformed("not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(IdpError::Malformed("not a JSON object")),
    }
}

/// Reads the header and the unverified claims (only to find the issuer; nothing else is
/// trusted before the signature verifies).
fn peek(token: &str) -> Result<(Header, Map<String, Value>), IdpError> {
    if token.len() > MAX_SUBJECT_TOKEN_BYTES {
        return Err(IdpError::Malformed("too large"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdpError::Malformed("not three segments"));
    };
    let header = decode_segment(header)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(IdpError::Malformed("no alg"))?
        .to_owned();
    // RFC 7515 §4.1.11: a recipient that does not understand every extension `crit` names
    // must reject the token, and mandate understands none.
    if header.contains_key("crit") {
        return Err(IdpError::Malformed(
            "a critical header extension is not understood",
        ));
    }
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok((Header { alg, kid }, decode_segment(claims)?))
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. Later ones (`1e300`) would saturate
/// and never expire.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, IdpError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|v| v.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(v))
            // Truncation of fractional seconds is intended; NumericDate may carry them.
            .map(|v| Some(v as i64))
            .ok_or(IdpError::Malformed(
                "a date claim is not a number from 1970 to 9999",
            )),
    }
}

/// The groups in `claims[name]`: a list of strings (or one string), bounded.
fn groups_of(claims: &Map<String, Value>, name: Option<&str>) -> Vec<String> {
    let Some(value) = name.and_then(|n| claims.get(n)) else {
        return Vec::new();
    };
    let list: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        single @ Value::String(_) => vec![single],
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(Value::as_str)
        .filter(|g| !g.is_empty() && g.len() <= 256 && !g.contains('\0'))
        .take(MAX_GROUPS)
        .map(str::to_owned)
        .collect()
}

fn is_loopback(url: &reqwest::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

fn allowed_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    (url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url))).then_some(url)
}

impl IdentityVerifier {
    /// A verifier with its own HTTP client.
    pub fn new(settings: IdpSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            // A redirect could leave https for http, or the issuer's host: follow none.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("mandate")
            .build()?;
        Ok(Self {
            http,
            settings,
            cache: std::sync::RwLock::new(HashMap::new()),
            fetching: std::sync::Mutex::new(HashMap::new()),
            signatures: std::sync::Mutex::new(Signatures::default()),
        })
    }

    /// Validates `token`, presented by the orchestrator `presenter` (`None`: by the human
    /// themself, as an approver does), against the active `issuers` at `now` and returns the
    /// principal.
    pub async fn verify(
        &self,
        token: &str,
        issuers: &[&Issuer],
        presenter: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Principal, IdpError> {
        let (header, unverified) = peek(token)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(IdpError::UntrustedIssuer)?;
        let issuer = issuers
            .iter()
            .find(|i| i.issuer_url == iss)
            .ok_or(IdpError::UntrustedIssuer)?;
        let algorithm: Algorithm = header
            .alg
            .parse()
            .map_err(|_| IdpError::AlgorithmNotAllowed(header.alg.clone()))?;
        // Public-key algorithms only, whatever an issuer's stored allowlist says.
        let symmetric = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        if symmetric || !issuer.allowed_algorithms.contains(&header.alg) {
            return Err(IdpError::AlgorithmNotAllowed(header.alg));
        }
        let jwk = self.key(issuer, header.kid.as_deref(), now).await?;
        if jwk.common.public_key_use == Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) {
            return Err(IdpError::UnknownKey);
        }
        if let Some(key_alg) = jwk.common.key_algorithm {
            let key_alg = serde_json::to_value(key_alg).unwrap_or_default();
            if key_alg.as_str() != Some(header.alg.as_str()) {
                return Err(IdpError::AlgorithmNotAllowed(header.alg));
            }
        }
        let claims = self.verified_claims(token, issuer, iss, &header.alg, algorithm, jwk)?;
        let leeway = self.settings.leeway.num_seconds();
        let exp = numeric_date(&claims, "exp")?.ok_or(IdpError::Expired)?;
        if now.timestamp() > exp.saturating_add(leeway) {
            return Err(IdpError::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")? {
            if now.timestamp().saturating_add(leeway) < nbf {
                return Err(IdpError::NotYetValid);
            }
        }
        // Bound to its client: only the orchestrator it was issued to may present it.
        if let (Some(claim), Some(presenter)) = (&issuer.client_claim, presenter) {
            if claims.get(claim).and_then(Value::as_str) != Some(presenter) {
                return Err(IdpError::WrongClient);
            }
        }
        let single_use = if issuer.single_use_tokens {
            let jti = claims
                .get("jti")
                .and_then(Value::as_str)
                .filter(|j| !j.is_empty() && j.len() <= 256)
                .ok_or(IdpError::Malformed("single-use tokens must carry a jti"))?;
            Some((jti.to_owned(), exp))
        } else {
            None
        };
        let subject = claims
            .get(&issuer.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256 && !s.contains('\0'))
            .ok_or(IdpError::MissingSubject)?
            .to_owned();
        Ok(Principal {
            issuer_id: issuer.id.clone(),
            issuer_url: issuer.issuer_url.clone(),
            subject,
            groups: groups_of(&claims, issuer.groups_claim.as_deref()),
            issued_at: numeric_date(&claims, "iat")?,
            single_use,
            client: issuer
                .client_claim
                .as_ref()
                .and_then(|claim| claims.get(claim))
                .and_then(Value::as_str)
                .map(|c| c.chars().take(256).collect()),
        })
    }

    /// The token's claims once its signature, `iss` and `aud` verify with `key`: remembered
    /// from an earlier verification made with the same key and issuer settings, or verified now.
    fn verified_claims(
        &self,
        token: &str,
        issuer: &Issuer,
        iss: &str,
        alg: &str,
        algorithm: Algorithm,
        key: Jwk,
    ) -> Result<Map<String, Value>, IdpError> {
        let digest = token_digest(token);
        let remembered = self
            .signatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(&digest)
            .cloned();
        if let Some(seen) = remembered.filter(|seen| {
            seen.issuer_id == issuer.id
                && seen.issuer_url == iss
                && seen.audiences == issuer.audiences
                && seen.alg == alg
                && seen.key == key
        }) {
            return Ok(seen.claims.clone());
        }
        let decoding_key = DecodingKey::from_jwk(&key).map_err(|_| IdpError::UnknownKey)?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[iss]);
        validation.set_audience(&issuer.audiences);
        // Time is checked by the caller against the injected clock, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::from(["iss".to_owned(), "aud".to_owned()]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding_key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => IdpError::WrongAudience,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => IdpError::UntrustedIssuer,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    IdpError::AlgorithmNotAllowed(alg.to_owned())
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => IdpError::WrongAudience,
                _ => IdpError::BadSignature,
            })?
            .claims;
        if token.len() > MAX_REMEMBERED_TOKEN_BYTES {
            return Ok(claims);
        }
        self.signatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remember(
                digest,
                Arc::new(VerifiedSignature {
                    issuer_id: issuer.id.clone(),
                    issuer_url: iss.to_owned(),
                    audiences: issuer.audiences.clone(),
                    alg: alg.to_owned(),
                    key,
                    claims: claims.clone(),
                }),
            );
        Ok(claims)
    }

    /// The issuer's key for `kid`: from the cache while fresh; refetched when stale, and when
    /// the kid is unknown (at most once per `unknown_kid_refetch`).
    async fn key(
        &self,
        issuer: &Issuer,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Jwk, IdpError> {
        let source = issuer
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("discovery:{}", issuer.issuer_url));
        if let Some(key) = self.fresh_key(issuer, &source, kid, now) {
            return Ok(key);
        }
        let gate = Arc::clone(
            self.fetching
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(issuer.id.clone())
                .or_default(),
        );
        let _turn = gate.lock().await;
        // The fetch this caller waited for may have brought the key.
        if let Some(key) = self.fresh_key(issuer, &source, kid, now) {
            return Ok(key);
        }
        let cached = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&issuer.id)
            .filter(|c| c.source == source)
            .map(|c| CachedKeys::clone(c));
        let fresh = cached
            .as_ref()
            .is_some_and(|c| now < c.fetched_at + self.settings.cache_ttl);
        let mut entry = match (cached, fresh) {
            (Some(entry), true) => entry,
            (stale, _) => match self.fetch(issuer).await {
                Ok(keys) => CachedKeys {
                    source: source.clone(),
                    keys,
                    fetched_at: now,
                    last_unknown_kid_refetch: stale.and_then(|s| s.last_unknown_kid_refetch),
                },
                Err(error) => {
                    tracing::warn!(issuer = %issuer.id, %error, "cannot fetch issuer keys");
                    match stale.filter(|s| now < s.fetched_at + self.settings.max_stale) {
                        Some(stale) => stale,
                        None => return Err(IdpError::KeysUnavailable),
                    }
                }
            },
        };
        if find_key(&entry.keys, kid).is_none() {
            let may_refetch = entry
                .last_unknown_kid_refetch
                .is_none_or(|at| now >= at + self.settings.unknown_kid_refetch);
            if may_refetch {
                entry.last_unknown_kid_refetch = Some(now);
                if let Ok(keys) = self.fetch(issuer).await {
                    entry.keys = keys;
                    entry.fetched_at = now;
                }
            }
        }
        let found = find_key(&entry.keys, kid).cloned();
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issuer.id.clone(), Arc::new(entry));
        found.ok_or(IdpError::UnknownKey)
    }

    /// The key for `kid` if the issuer's cached keys are fresh and hold it.
    fn fresh_key(
        &self,
        issuer: &Issuer,
        source: &str,
        kid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Jwk> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(&issuer.id)?;
        if entry.source != source || now >= entry.fetched_at + self.settings.cache_ttl {
            return None;
        }
        find_key(&entry.keys, kid).cloned()
    }

    /// Fetches the issuer's JWKS (through discovery when no `jwks_uri` is set).
    async fn fetch(&self, issuer: &Issuer) -> Result<Vec<Jwk>, String> {
        let jwks_uri = match &issuer.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let base = issuer.issuer_url.trim_end_matches('/');
                let url = format!("{base}/.well-known/openid-configuration");
                let config = self.get_json(&url).await?;
                if config.get("issuer").and_then(Value::as_str) != Some(&issuer.issuer_url) {
                    return Err("discovery document names another issuer".to_owned());
                }
                config
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or("discovery document has no jwks_uri")?
                    .to_owned()
            }
        };
        let jwks = self.get_json(&jwks_uri).await?;
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no keys array")?;
        // Keys of types mandate cannot use are skipped rather than failing the whole set.
        Ok(keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let url = allowed_url(url).ok_or("keys URL must be https (http only on loopback)")?;
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err("document too large".to_owned());
            }
        }
        serde_json::from_slice(&body).map_err(|_| "not JSON".to_owned())
    }
}

/// The key with `kid`, or the only key when the token names none.
fn find_key<'a>(keys: &'a [Jwk], kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}

#[cfg(test)]
#[path = "idp_tests.rs"]
mod tests;
