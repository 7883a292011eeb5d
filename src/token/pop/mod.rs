//! Proof of possession: a mandate bound to its holder's key, used only with a fresh proof signed
//! by that key (RFC 9449, DPoP).
//!
//! - A bound mandate's authority block states `holder_key($jkt)`, the RFC 7638 thumbprint of the
//!   key, and the check `check if holder_proof($jkt)`: a verifier that checks no proof (and so
//!   states no `holder_proof` fact) refuses the mandate, so binding fails closed even where this
//!   module is unknown.
//! - The binding moves only with the holder's signature: a later third-party block stating
//!   `holder_key($jkt)` and nothing else, signed by the current holder's key
//!   (`token::attest::rebind`). Biscuit ties the block to the token it was requested for. A
//!   block signed by any other key is refused (`forged_binding`); an unbound mandate cannot be
//!   bound offline.
//! - Each call presents the mandate with a DPoP proof (the `proof` module) signed by the key
//!   the last binding names. The verifier checks the proof, then states `holder_proof($jkt)`.
//!
//! Keys are Ed25519 (`EdDSA`) or P-256 (`ES256`), as JWKs.

pub mod proof;
pub mod replay;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use biscuit_auth::builder::Algorithm;
use ed25519_dalek::Signer as _;
use p256::ecdsa::signature::Verifier as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The JWS algorithms a proof may be signed with.
pub const ALGORITHMS: [&str; 2] = ["EdDSA", "ES256"];

/// Why a JWK is not a holder key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a holder key: {0}")]
pub struct JwkError(pub &'static str);

/// A holder's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderKey {
    /// Ed25519, `{"kty":"OKP","crv":"Ed25519","x":…}`, signing `EdDSA`.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// P-256, `{"kty":"EC","crv":"P-256","x":…,"y":…}`, signing `ES256`.
    P256(p256::ecdsa::VerifyingKey),
}

fn coordinate(jwk: &Value, name: &str) -> Result<[u8; 32], JwkError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError("a coordinate is missing"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwkError("a coordinate is not base64url"))?;
    bytes
        .try_into()
        .map_err(|_| JwkError("a coordinate is not 32 bytes"))
}

impl HolderKey {
    /// Reads a public JWK. A JWK with private members (`d`) is refused: a public key is all
    /// anyone but its holder should see.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwkError> {
        let object = jwk.as_object().ok_or(JwkError("a JWK is a JSON object"))?;
        if object.contains_key("d") {
            return Err(JwkError(
                "it carries a private key (`d`); send the public key only",
            ));
        }
        Self::public_of(jwk)
    }

    fn public_of(jwk: &Value) -> Result<Self, JwkError> {
        let field = |name| jwk.get(name).and_then(Value::as_str);
        match (field("kty"), field("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&coordinate(jwk, "x")?)
                    .map_err(|_| JwkError("not an Ed25519 public key"))?;
                // A point of small order verifies signatures nobody made.
                if key.is_weak() {
                    return Err(JwkError("a weak Ed25519 key (a point of small order)"));
                }
                Ok(HolderKey::Ed25519(key))
            }
            (Some("EC"), Some("P-256")) => {
                let point = p256::EncodedPoint::from_affine_coordinates(
                    &coordinate(jwk, "x")?.into(),
                    &coordinate(jwk, "y")?.into(),
                    false,
                );
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(HolderKey::P256)
                    .map_err(|_| JwkError("not a point of P-256"))
            }
            _ => Err(JwkError(
                "only Ed25519 (kty OKP) and P-256 (kty EC) keys are accepted",
            )),
        }
    }

    /// The public JWK, with only the members RFC 7638 hashes, in its order.
    pub fn to_jwk(&self) -> Value {
        match self {
            HolderKey::Ed25519(key) => json!({
                "crv": "Ed25519", "kty": "OKP", "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
            }),
            HolderKey::P256(key) => {
                let point = key.to_encoded_point(false);
                let encode = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.map(|c| &c[..]).unwrap_or_default())
                };
                json!({
                    "crv": "P-256", "kty": "EC", "x": encode(point.x()), "y": encode(point.y()),
                })
            }
        }
    }

    /// The RFC 7638 thumbprint: base64url of the SHA-256 of the required members, sorted,
    /// without whitespace.
    pub fn thumbprint(&self) -> String {
        // serde_json writes object members sorted (no `preserve_order`) and without spaces.
        let canonical = self.to_jwk().to_string();
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> &'static str {
        match self {
            HolderKey::Ed25519(_) => "EdDSA",
            HolderKey::P256(_) => "ES256",
        }
    }

    /// Whether `signature` (JWS form: 64 bytes for both algorithms) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            HolderKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
            HolderKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok()),
        }
    }

    /// The key that signed a third-party block, as a holder key.
    pub fn from_biscuit(key: &biscuit_auth::PublicKey) -> Option<Self> {
        use biscuit_auth::format::schema::public_key::Algorithm as Signed;
        let bytes = key.to_bytes();
        match key.algorithm() {
            Signed::Ed25519 => {
                let bytes: [u8; 32] = bytes.try_into().ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .ok()
                    .map(HolderKey::Ed25519)
            }
            Signed::Secp256r1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                .ok()
                .map(HolderKey::P256),
        }
    }
}

/// Whether `text` has the form of a thumbprint: 43 base64url characters (a SHA-256).
pub fn is_thumbprint(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A holder's key pair: signs proofs, and rebinds the mandate it holds to another key.
pub struct HolderSecret {
    signing: Signing,
    public: HolderKey,
}

enum Signing {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for HolderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderSecret")
            .field("thumbprint", &self.public.thumbprint())
            .finish_non_exhaustive()
    }
}

impl HolderSecret {
    /// A new key of `algorithm` (`EdDSA` or `ES256`).
    pub fn generate(algorithm: &str) -> Result<Self, JwkError> {
        let algorithm = match algorithm {
            "EdDSA" => Algorithm::Ed25519,
            "ES256" => Algorithm::Secp256r1,
            _ => return Err(JwkError("the algorithm is EdDSA or ES256")),
        };
        // biscuit-auth draws the key from the operating system's generator.
        let pair = biscuit_auth::KeyPair::new_with_algorithm(algorithm);
        Self::from_scalar(algorithm, &pair.private().to_bytes())
    }

    fn from_scalar(algorithm: Algorithm, d: &[u8]) -> Result<Self, JwkError> {
        let bytes: [u8; 32] = d
            .try_into()
            .map_err(|_| JwkError("the private key is not 32 bytes"))?;
        let signing = match algorithm {
            Algorithm::Ed25519 => Signing::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes)),
            Algorithm::Secp256r1 => Signing::P256(
                p256::ecdsa::SigningKey::from_bytes(&bytes.into())
                    .map_err(|_| JwkError("not a P-256 private key"))?,
            ),
        };
        let public = match &signing {
            Signing::Ed25519(key) => HolderKey::Ed25519(key.verifying_key()),
            Signing::P256(key) => HolderKey::P256(*key.verifying_key()),
        };
        Ok(Self { signing, public })
    }

    /// Reads a private JWK (`d` beside the public members, which must agree with it).
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwkError> {
        let public = HolderKey::public_of(jwk)?;
        let d = coordinate(jwk, "d").map_err(|_| JwkError("a private JWK has a 32-byte `d`"))?;
        let algorithm = match public {
            HolderKey::Ed25519(_) => Algorithm::Ed25519,
            HolderKey::P256(_) => Algorithm::Secp256r1,
        };
        let secret = Self::from_scalar(algorithm, &d)?;
        if secret.public != public {
            return Err(JwkError("`d` is not the private key of `x` (and `y`)"));
        }
        Ok(secret)
    }

    /// The private JWK: keep it where only the holder reads it.
    pub fn to_jwk(&self) -> Value {
        let mut jwk = self.public.to_jwk();
        let d = match &self.signing {
            Signing::Ed25519(key) => URL_SAFE_NO_PAD.encode(key.to_bytes()),
            Signing::P256(key) => URL_SAFE_NO_PAD.encode(key.to_bytes()),
        };
        jwk["d"] = Value::String(d);
        jwk
    }

    /// The public key.
    pub fn public(&self) -> &HolderKey {
        &self.public
    }

    /// A JWS signature (64 bytes) of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.signing {
            Signing::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            Signing::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
        }
    }

    /// The private key as biscuit-auth signs third-party blocks with it.
    pub(crate) fn biscuit_key(
        &self,
    ) -> Result<biscuit_auth::PrivateKey, biscuit_auth::error::Format> {
        let (bytes, algorithm) = match &self.signing {
            Signing::Ed25519(key) => (key.to_bytes().to_vec(), Algorithm::Ed25519),
            Signing::P256(key) => (key.to_bytes().to_vec(), Algorithm::Secp256r1),
        };
        biscuit_auth::PrivateKey::from_bytes(&bytes, algorithm)
    }
}

#[cfg(test)]
#[path = "pop_tests.rs"]
mod tests;
