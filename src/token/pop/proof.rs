//! DPoP proofs (RFC 9449 section 4): a JWT with header `typ: dpop+jwt`, `alg` and the signer's
//! public `jwk`, and claims `jti`, `htm`, `htu`, `iat`, `ath` (the SHA-256 of the token
//! presented, base64url) and, when the server asked for one, `nonce`.
//!
//! [`parse`] bounds and reads a proof and checks its signature with its own key; [`check`] adds
//! what the call must match: the method, the URL (without query and fragment), an `iat` window,
//! the token's hash and the key the token is bound to. Replays and nonces need state the
//! verifier keeps ([`super::replay`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{HolderKey, HolderSecret, ALGORITHMS};

/// The largest proof parsed, in bytes.
pub const MAX_PROOF_BYTES: usize = 4096;
/// The longest `jti`, `nonce` and `htu` accepted.
const MAX_CLAIM: usize = 2048;

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The mandate is bound to a key and no proof came with it.
    #[error(
        "the mandate is bound to a key: present it as `Authorization: DPoP` with a `DPoP` proof"
    )]
    Missing,
    /// The proof came with a mandate bound to no key.
    #[error("the mandate is not bound to a key: present it as `Authorization: Bearer`")]
    Unbound,
    /// Not a DPoP proof JWT.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the proof's key.
    #[error("the proof's signature does not verify")]
    Signature,
    /// Signed by a key other than the one the mandate is bound to.
    #[error("the proof is signed by a key other than the mandate's holder")]
    WrongKey,
    /// `htm` is not the call's method.
    #[error("the proof is for another method")]
    Method,
    /// `htu` is not the call's URL.
    #[error("the proof is for another URL")]
    Url,
    /// `iat` is outside the accepted window.
    #[error("the proof's iat is outside the accepted window")]
    Stale,
    /// `ath` is absent or not the hash of the token presented.
    #[error("the proof's ath is not the hash of the mandate presented")]
    TokenHash,
    /// The proof was seen before.
    #[error("the proof was already used")]
    Replayed,
    /// A nonce is required and the proof has none, or an old one.
    #[error("the proof must carry the nonce the server provides (DPoP-Nonce)")]
    Nonce,
    /// The service checking the proof does not know the URL its clients address.
    #[error("this service does not know its public URL, so it cannot check proofs")]
    NoPublicUrl,
    /// The replay cache is full of live proofs: refused rather than forgetting one.
    #[error("too many proofs in flight; retry shortly")]
    Busy,
}

impl ProofError {
    /// The RFC 9449 error code: `use_dpop_nonce` when a nonce is wanted, else
    /// `invalid_dpop_proof`.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::Nonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// A proof whose signature verifies with the key in its header.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The signer's key (the header's `jwk`).
    pub key: HolderKey,
    /// Its RFC 7638 thumbprint.
    pub jkt: String,
    /// `jti`.
    pub jti: String,
    /// `htm`.
    pub htm: String,
    /// `htu`.
    pub htu: String,
    /// `iat`, seconds.
    pub iat: i64,
    /// `ath`, if given.
    pub ath: Option<String>,
    /// `nonce`, if given.
    pub nonce: Option<String>,
}

fn part(text: &str) -> Result<Value, ProofError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ProofError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed("a part is not JSON"))
}

fn claim<'a>(claims: &'a Value, name: &str) -> Result<Option<&'a str>, ProofError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CLAIM => Ok(Some(s)),
        Some(_) => Err(ProofError::Malformed(
            "jti, htm, htu, ath and nonce are strings of 1 to 2048 bytes",
        )),
    }
}

/// A public JWK read as a holder key, with its thumbprint.
pub type KeyReader<'a> = dyn Fn(&Value) -> Result<(HolderKey, String), ProofError> + 'a;

/// Reads a JWK as [`HolderKey::from_jwk`] does, and computes its thumbprint.
pub fn read_key(jwk: &Value) -> Result<(HolderKey, String), ProofError> {
    let key = HolderKey::from_jwk(jwk).map_err(|e| ProofError::Malformed(e.0))?;
    let jkt = key.thumbprint();
    Ok((key, jkt))
}

/// Reads `jwt`: at most [`MAX_PROOF_BYTES`], header `typ` `dpop+jwt`, `alg` `EdDSA` or
/// `ES256` matching a public `jwk`, no `crit`, a signature that verifies with that key, and
/// claims `jti`, `htm`, `htu`, `iat`.
pub fn parse(jwt: &str) -> Result<Proof, ProofError> {
    parse_with(jwt, &read_key)
}

/// [`parse`], reading the header's JWK with `read` (a cache of keys seen before, say).
pub fn parse_with(jwt: &str, read: &KeyReader<'_>) -> Result<Proof, ProofError> {
    if jwt.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed("longer than 4096 bytes"));
    }
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed("a JWT has three parts"));
    };
    let head = part(header)?;
    if head.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(ProofError::Malformed("typ must be dpop+jwt"));
    }
    if head.get("crit").is_some() {
        return Err(ProofError::Malformed("no crit extensions are understood"));
    }
    let alg = head.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !ALGORITHMS.contains(&alg) {
        return Err(ProofError::Malformed("alg must be EdDSA or ES256"));
    }
    let jwk = head
        .get("jwk")
        .ok_or(ProofError::Malformed("the header carries no jwk"))?;
    let (key, jkt) = read(jwk)?;
    if key.algorithm() != alg {
        return Err(ProofError::Malformed("alg does not match the jwk"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| ProofError::Malformed("the signature is not base64url"))?;
    let signed = &jwt[..header.len() + 1 + payload.len()];
    if !key.verifies(signed.as_bytes(), &signature) {
        return Err(ProofError::Signature);
    }
    let claims = part(payload)?;
    let required = |name| {
        claim(&claims, name)?.ok_or(ProofError::Malformed("jti, htm, htu and iat are required"))
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|iat| iat.is_finite() && iat.abs() < 1e12)
        .ok_or(ProofError::Malformed("iat is a number of seconds"))?;
    Ok(Proof {
        jkt,
        key,
        jti: required("jti")?.to_owned(),
        htm: required("htm")?.to_owned(),
        htu: required("htu")?.to_owned(),
        // Whole seconds; a fraction never moves a proof into the window.
        iat: iat.floor() as i64,
        ath: claim(&claims, "ath")?.map(str::to_owned),
        nonce: claim(&claims, "nonce")?.map(str::to_owned),
    })
}

/// `url` without query and fragment, its scheme and host lowercased and a default port
/// dropped (RFC 3986 section 6's syntax- and scheme-based normalization, as RFC 9449 asks).
/// `None` unless it is an absolute `http` or `https` URL.
pub fn normalize_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next()?;
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}{path}"))
}

/// The `ath` of a token: base64url of the SHA-256 of its ASCII.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.trim().as_bytes()))
}

/// What a call's proof must match.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URL as the client addressed it (this service's public URL and path).
    pub url: &'a str,
    /// The `ath` the proof must state: [`token_hash`] of the token presented with it; `None`
    /// at a token endpoint.
    pub ath: Option<&'a str>,
    /// The thumbprint of the key the token is bound to; `None` at a token endpoint.
    pub holder: Option<&'a str>,
    /// The verifier's time.
    pub now: DateTime<Utc>,
    /// How old a proof may be.
    pub max_age: Duration,
    /// How far ahead of the verifier's clock a proof may be dated.
    pub max_ahead: Duration,
}

/// Parses `jwt` and checks it against `expected`. Nonces and replays are the caller's
/// ([`super::replay::Proofs::check`] does both).
pub fn check(jwt: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    check_with(jwt, expected, &read_key)
}

/// [`check`], reading the header's JWK with `read`.
pub fn check_with(
    jwt: &str,
    expected: &Expected<'_>,
    read: &KeyReader<'_>,
) -> Result<Proof, ProofError> {
    let proof = parse_with(jwt, read)?;
    if let Some(holder) = expected.holder {
        if !constant_time_eq(proof.jkt.as_bytes(), holder.as_bytes()) {
            return Err(ProofError::WrongKey);
        }
    }
    if proof.htm != expected.method {
        return Err(ProofError::Method);
    }
    match (normalize_url(&proof.htu), normalize_url(expected.url)) {
        (Some(claimed), Some(actual)) if claimed == actual => {}
        _ => return Err(ProofError::Url),
    }
    let now = expected.now.timestamp();
    let oldest = now - expected.max_age.num_seconds();
    let newest = now + expected.max_ahead.num_seconds();
    if proof.iat < oldest || proof.iat > newest {
        return Err(ProofError::Stale);
    }
    if let Some(hash) = expected.ath {
        let matches = proof
            .ath
            .as_deref()
            .is_some_and(|ath| constant_time_eq(ath.as_bytes(), hash.as_bytes()));
        if !matches {
            return Err(ProofError::TokenHash);
        }
    }
    Ok(proof)
}

/// A proof for a call of `method` on `url`, signed by `holder`, presenting `token` (`None` at a
/// token endpoint), with the server's `nonce` if it gave one, dated `now`.
pub fn create(
    holder: &HolderSecret,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let header = json!({ "typ": "dpop+jwt", "alg": holder.public().algorithm(), "jwk": holder.public().to_jwk() });
    let mut claims = json!({
        "jti": uuid::Uuid::now_v7().to_string(),
        "htm": method,
        "htu": url.split(['?', '#']).next().unwrap_or(url),
        "iat": now.timestamp(),
    });
    if let Some(token) = token {
        claims["ath"] = Value::String(token_hash(token));
    }
    if let Some(nonce) = nonce {
        claims["nonce"] = Value::String(nonce.to_owned());
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(holder.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}
