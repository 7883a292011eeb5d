//! What an upstream receives instead of the mandate: a short-lived assertion of who acts, for
//! whom, through which hops, and which call, signed with the gateway's Ed25519 key.
//!
//! The assertion is a compact JWS (RFC 7515) in the `Mandate-Assertion` header, `alg` `EdDSA`,
//! `typ` `mandate-assertion+jwt`, `kid` the key's id in the gateway's JWK Set
//! (`GET /.well-known/jwks.json` on the gateway). Its claims:
//!
//! | claim | value |
//! |---|---|
//! | `iss` | the gateway's public URL |
//! | `aud` | the tool's id (the upstream the call goes to) |
//! | `iat`, `exp` | issued now, valid `assertion_ttl_seconds` (60 by default) |
//! | `jti` | a fresh UUID, for replay caches |
//! | `sub`, `principal_issuer` | the human principal and the issuer that proved them |
//! | `agent` | the orchestrator the mandate was minted for |
//! | `hops` | every hop after it: `[{"agent": …, "attested": …}]` |
//! | `mandate_id`, `task_id` | the mandate and its task |
//! | `call` | `{"method", "operation", "arguments_sha256"}` of the JSON-RPC request |
//!
//! An upstream checks the signature with the published key, `aud` against its own tool id,
//! and `exp`; the mandate itself never leaves the gateway.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub use crate::token::canonical::{arguments_digest, canonical};
use crate::token::verify::{Hop, Verified};

/// The header an upstream reads.
pub const HEADER: &str = "mandate-assertion";

/// The gateway's signing key.
pub struct AssertionKey {
    pair: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The call an assertion is for.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// The JSON-RPC method (`tools/call`, `tools/list`, …).
    pub method: String,
    /// The operation (the MCP tool's name), for `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// SHA-256, hex, of the arguments in RFC 8785 canonical JSON, for `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sub: &'a str,
    principal_issuer: &'a str,
    agent: &'a str,
    hops: &'a [Hop],
    mandate_id: &'a str,
    task_id: &'a str,
    call: &'a Call,
}

impl AssertionKey {
    /// Loads the key from `path` (PKCS#8 PEM, mode 0600), creating it there if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let key = if path.exists() {
            crate::server::keys::load_key_file(path).map_err(|e| e.to_string())?
        } else {
            crate::server::keys::generate_key_file(path).map_err(|e| e.to_string())?
        };
        let seed = key.private().to_bytes();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| format!("{} is not an Ed25519 key", path.display()))?;
        let digest = Sha256::digest(pair.public_key().as_ref());
        Ok(Self {
            kid: hex::encode(&digest[..8]),
            pair,
        })
    }

    /// The JWK Set publishing the key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
        }]})
    }

    /// Signs an assertion of `verified` making `call` on `tool`, valid `ttl` from `now`.
    pub fn sign(
        &self,
        issuer: &str,
        tool: &str,
        verified: &Verified,
        call: &Call,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> String {
        let header = json!({"alg": "EdDSA", "typ": "mandate-assertion+jwt", "kid": self.kid});
        let claims = Claims {
            iss: issuer,
            aud: tool,
            iat: now.timestamp(),
            exp: now.timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(60),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: &verified.principal_subject,
            principal_issuer: &verified.principal_issuer,
            agent: &verified.agent_id,
            hops: &verified.hops,
            mandate_id: &verified.mandate_id,
            task_id: &verified.task_id,
            call,
        };
        let input = format!("{}.{}", encoded(&header), encoded(&claims));
        let signature = self.pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// One part of a compact JWS: JSON, base64url without padding.
fn encoded(part: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(part).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assertion_verifies_with_the_published_key_and_names_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let key = AssertionKey::load_or_create(&dir.path().join("a.pem")).unwrap();
        let again = AssertionKey::load_or_create(&dir.path().join("a.pem")).unwrap();
        assert_eq!(key.jwks(), again.jwks(), "the key is kept");
        let verified = Verified {
            approvals: vec![],
            holder_key: None,
            mandate_id: "m".into(),
            principal_subject: "alice".into(),
            principal_issuer: "https://idp".into(),
            agent_id: "bot".into(),
            task_id: "t".into(),
            hops: vec![Hop {
                agent: "sub".into(),
                attested: true,
            }],
            rights: vec![],
            expires_at: DateTime::from_timestamp(1_800_000_600, 0).unwrap_or_default(),
            revocation_ids: vec![],
            constraints: vec![],
        };
        let call = Call {
            method: "tools/call".into(),
            operation: Some("issues.create".into()),
            arguments_sha256: Some(arguments_digest(None)),
        };
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let jws = key.sign(
            "https://gw",
            "github",
            &verified,
            &call,
            now,
            std::time::Duration::from_secs(60),
        );
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let x = key.jwks()["keys"][0]["x"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            URL_SAFE_NO_PAD.decode(x).unwrap_or_default(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        assert!(public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .is_ok());
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "github");
        assert_eq!(claims["exp"], 1_800_000_060);
        assert_eq!(claims["hops"][0]["agent"], "sub");
        assert_eq!(claims["call"]["operation"], "issues.create");
        assert_eq!(
            claims["call"]["arguments_sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
