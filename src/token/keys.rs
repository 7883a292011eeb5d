//! Root public keys as mandate publishes them at `/.well-known/mandate-keys`.
//!
//! A verifier reads the [`KeysDocument`], turns it into a [`KeySet`] and picks the key whose kid
//! equals the token's Biscuit `root_key_id`.

use std::collections::{BTreeMap, HashMap};

use biscuit_auth::builder::Algorithm;
use biscuit_auth::PublicKey;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Registered agents' Ed25519 public keys, by agent id (what makes a hop attested).
pub type AgentKeys = HashMap<String, Vec<PublicKey>>;

/// The only signature algorithm mandate's root keys use.
pub const ROOT_KEY_ALGORITHM: &str = "ed25519";

/// The document served at `/.well-known/mandate-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeysDocument {
    /// Every root key a verifier should accept, the active one included.
    pub keys: Vec<PublishedKey>,
}

/// One published root public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishedKey {
    /// Key id; equals the Biscuit `root_key_id` of the tokens it signs.
    #[cfg_attr(feature = "server", schema(example = 1))]
    pub kid: u32,
    /// Signature algorithm; always `ed25519`.
    #[cfg_attr(feature = "server", schema(example = "ed25519"))]
    pub algorithm: String,
    /// The public key as `ed25519/<64 hex digits>`, the Biscuit textual form.
    #[cfg_attr(
        feature = "server",
        schema(
            example = "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189"
        )
    )]
    pub public_key: String,
    /// `active` signs new mandates; `verify_only` still verifies mandates it signed earlier.
    pub status: KeyStatus,
    /// When mandate first published this key.
    pub created_at: DateTime<Utc>,
}

/// The document served at `/.well-known/mandate-agent-keys`: the Ed25519 keys with which
/// registered agents attest their delegation hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentKeysDocument {
    /// Every agent (not retired) with at least one registered key.
    pub agents: Vec<PublishedAgentKeys>,
}

/// One agent's registered public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishedAgentKeys {
    /// The agent's id.
    #[cfg_attr(feature = "server", schema(example = "research-agent"))]
    pub agent: String,
    /// Its keys, `ed25519/<hex>`.
    pub public_keys: Vec<String>,
}

impl AgentKeysDocument {
    /// The keys by agent, refusing malformed ones.
    pub fn agent_keys(&self) -> Result<AgentKeys, KeyFormatError> {
        let mut map = AgentKeys::new();
        for entry in &self.agents {
            let keys = entry
                .public_keys
                .iter()
                .map(|k| parse_public_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            map.entry(entry.agent.clone()).or_default().extend(keys);
        }
        Ok(map)
    }
}

/// Whether a root key signs new mandates or only verifies older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs new mandates and verifies.
    Active,
    /// Verifies mandates signed before a rotation; signs nothing new.
    VerifyOnly,
}

impl KeyStatus {
    /// The wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::VerifyOnly => "verify_only",
        }
    }
}

/// Why a published key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFormatError {
    /// The key is not of the form `ed25519/<64 hex digits>`.
    #[error("public key must be `ed25519/<64 hex digits>`")]
    Malformed,
    /// The algorithm field names something other than ed25519.
    #[error("kid {kid}: unsupported algorithm `{algorithm}` (only ed25519)")]
    UnsupportedAlgorithm {
        /// The key id.
        kid: u32,
        /// The algorithm named.
        algorithm: String,
    },
    /// The same kid appears twice in one document.
    #[error("kid {0} is published twice")]
    DuplicateKid(u32),
}

/// Verification keys by kid.
pub type KeySet = BTreeMap<u32, PublicKey>;

/// Formats a public key as mandate publishes it: `ed25519/<hex>`.
pub fn format_public_key(key: &PublicKey) -> String {
    key.print()
}

/// Parses `ed25519/<64 hex digits>` into a public key.
pub fn parse_public_key(text: &str) -> Result<PublicKey, KeyFormatError> {
    let hex_part = text
        .strip_prefix("ed25519/")
        .ok_or(KeyFormatError::Malformed)?;
    if hex_part.len() != 64 {
        return Err(KeyFormatError::Malformed);
    }
    let bytes = hex::decode(hex_part).map_err(|_| KeyFormatError::Malformed)?;
    PublicKey::from_bytes(&bytes, Algorithm::Ed25519).map_err(|_| KeyFormatError::Malformed)
}

impl KeysDocument {
    /// The verification keys of this document, refusing duplicates and unknown algorithms.
    pub fn key_set(&self) -> Result<KeySet, KeyFormatError> {
        let mut set = KeySet::new();
        for key in &self.keys {
            if key.algorithm != ROOT_KEY_ALGORITHM {
                return Err(KeyFormatError::UnsupportedAlgorithm {
                    kid: key.kid,
                    algorithm: key.algorithm.clone(),
                });
            }
            let public = parse_public_key(&key.public_key)?;
            if set.insert(key.kid, public).is_some() {
                return Err(KeyFormatError::DuplicateKid(key.kid));
            }
        }
        Ok(set)
    }

    /// The key that signs new mandates, if the document names one.
    pub fn active(&self) -> Option<&PublishedKey> {
        self.keys.iter().find(|k| k.status == KeyStatus::Active)
    }
}

#[cfg(test)]
mod tests {
    use biscuit_auth::KeyPair;

    use super::*;

    fn published(kid: u32, key: &KeyPair, status: KeyStatus) -> PublishedKey {
        PublishedKey {
            kid,
            algorithm: ROOT_KEY_ALGORITHM.to_owned(),
            public_key: format_public_key(&key.public()),
            status,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_published_key_parses_back_to_the_same_public_key() {
        let key = KeyPair::new();
        let text = format_public_key(&key.public());
        assert!(text.starts_with("ed25519/"));
        assert_eq!(text.len(), "ed25519/".len() + 64);
        assert_eq!(parse_public_key(&text).unwrap(), key.public());
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        for bad in [
            "",
            "ed25519/",
            "ed25519/zz",
            "secp256r1/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189",
            "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc2018",
            "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc2018900",
        ] {
            assert_eq!(
                parse_public_key(bad),
                Err(KeyFormatError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_key_set_maps_each_kid_to_its_key_and_finds_the_active_one() {
        let (old, new) = (KeyPair::new(), KeyPair::new());
        let doc = KeysDocument {
            keys: vec![
                published(1, &old, KeyStatus::VerifyOnly),
                published(2, &new, KeyStatus::Active),
            ],
        };
        let set = doc.key_set().unwrap();
        assert_eq!(set.get(&1), Some(&old.public()));
        assert_eq!(set.get(&2), Some(&new.public()));
        assert_eq!(doc.active().map(|k| k.kid), Some(2));
    }

    #[test]
    fn a_document_publishing_one_kid_twice_is_refused() {
        let key = KeyPair::new();
        let doc = KeysDocument {
            keys: vec![
                published(7, &key, KeyStatus::Active),
                published(7, &KeyPair::new(), KeyStatus::VerifyOnly),
            ],
        };
        assert_eq!(doc.key_set(), Err(KeyFormatError::DuplicateKid(7)));
    }

    #[test]
    fn a_document_with_another_algorithm_is_refused() {
        let mut key = published(3, &KeyPair::new(), KeyStatus::Active);
        key.algorithm = "secp256r1".to_owned();
        let doc = KeysDocument { keys: vec![key] };
        assert!(matches!(
            doc.key_set(),
            Err(KeyFormatError::UnsupportedAlgorithm { kid: 3, .. })
        ));
    }

    #[test]
    fn the_document_wire_format_is_stable() {
        let json = serde_json::json!({"keys": [{
            "kid": 1, "algorithm": "ed25519",
            "public_key": "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189",
            "status": "verify_only", "created_at": "2026-01-02T03:04:05Z"
        }]});
        let doc: KeysDocument = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(doc.keys[0].status, KeyStatus::VerifyOnly);
        assert_eq!(serde_json::to_value(&doc).unwrap(), json);
    }
}
