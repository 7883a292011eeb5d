//! Bearer secrets: admin tokens (`mnd_adm_…`) and agent secrets (`mnd_agt_…`). Random, prefixed
//! so secret scanners recognise them, shown once, stored only as SHA-256 hashes, compared in
//! constant time, never printed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Prefix of admin API tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "mnd_adm_";
/// Prefix of agent secrets.
pub const AGENT_SECRET_PREFIX: &str = "mnd_agt_";
/// Prefix of reporter credentials.
pub const REPORTER_SECRET_PREFIX: &str = "mnd_rep_";

/// Random bytes in each secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Length of the base64url text of [`SECRET_BYTES`] bytes.
const SECRET_TEXT_LEN: usize = 43;

/// A secret in clear, wiped from memory when dropped and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret read from configuration or a request.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The clear text, to show once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 hash that is stored in its place.
    pub fn hash(&self) -> SecretHash {
        hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The SHA-256 hash of a secret.
pub type SecretHash = [u8; 32];

/// Why no secret could be made.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// A new random secret with the given prefix.
pub fn generate(prefix: &str) -> Result<Secret, RandomError> {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| RandomError)?;
    let mut text = String::with_capacity(prefix.len() + SECRET_TEXT_LEN);
    text.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut text);
    Ok(Secret::new(text))
}

/// Whether `text` has the shape of a secret with this prefix (it may still be unknown).
pub fn is_well_formed(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == SECRET_TEXT_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// SHA-256 of a secret's text.
pub fn hash(text: &str) -> SecretHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Compares two hashes without revealing, through timing, where they first differ.
pub fn hashes_match(a: &SecretHash, b: &SecretHash) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_prefixed_well_formed_and_distinct() {
        let a = generate(ADMIN_TOKEN_PREFIX).unwrap();
        let b = generate(ADMIN_TOKEN_PREFIX).unwrap();
        assert!(a.expose().starts_with("mnd_adm_"));
        assert!(is_well_formed(ADMIN_TOKEN_PREFIX, a.expose()));
        assert!(!is_well_formed(AGENT_SECRET_PREFIX, a.expose()));
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn malformed_secrets_are_recognised() {
        for bad in [
            "",
            "mnd_adm_",
            "mnd_adm_short",
            "MND_ADM_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "mnd_adm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "mnd_adm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!is_well_formed(ADMIN_TOKEN_PREFIX, bad), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_and_matches_only_itself() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hashes_match(&hash("abc"), &hash("abc")));
        assert!(!hashes_match(&hash("abc"), &hash("abd")));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = generate(AGENT_SECRET_PREFIX).unwrap();
        let debug = format!("{secret:?}");
        assert!(!debug.contains(secret.expose()));
        assert!(!debug.contains("mnd_agt_"));
    }
}
