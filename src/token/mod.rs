//! The mandate/v1 token schema, shared by the service and by offline verifiers: minting the
//! authority block, verifying a token, and the published key formats. Documented for other
//! Biscuit libraries in `docs/token-schema.md`.
//!
//! This module builds without the `server` feature, so downstream services can depend on it
//! alone.
//!
//! A mandate's life offline, as the service mints it, a sub-agent narrows it, and a tool
//! verifies it (a downstream service uses [`crate::verifier::Verifier`], which fetches and caches
//! the published keys, instead of a [`keys::KeySet`] of its own):
//!
//! ```
//! use biscuit_auth::KeyPair;
//! use chrono::{DateTime, Duration};
//! use mandate::token::attenuate::{attenuate, Attenuation};
//! use mandate::token::keys::KeySet;
//! use mandate::token::mint::{mint, MandateSpec};
//! use mandate::token::verify::{verify, AccessRequest};
//! use mandate::token::{Right, TokenError};
//!
//! let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
//! let right = |tool: &str, operation: &str| Right { tool: tool.into(), operation: operation.into() };
//! // The service: alice delegates CRM reads and writes to `bot` for ten minutes.
//! let root = KeyPair::new();
//! let spec = MandateSpec {
//!     mandate_id: "01900000-0000-7000-8000-000000000001".into(),
//!     task_id: "summarise-tickets".into(),
//!     task_digest: vec![0; 32],
//!     principal_subject: "alice".into(),
//!     principal_issuer: "https://idp.example.com/".into(),
//!     agent_id: "bot".into(),
//!     rights: vec![right("crm", "read"), right("crm", "write")],
//!     expires_at: now + Duration::minutes(10),
//!     constraints: vec![],
//!     holder_key: None,
//!     approvals: vec![],
//! };
//! let mandate = mint(&spec, &root, 1)?.token;
//!
//! // The orchestrator hands a sub-agent reads only, for five minutes, without asking mandate.
//! let narrowed = attenuate(&mandate, &Attenuation {
//!     rights: Some(vec![right("crm", "read")]),
//!     expires_at: Some(now + Duration::minutes(5)),
//!     delegate: Some("researcher".into()),
//!     ..Attenuation::default()
//! })?;
//!
//! // The tool: the call it is asked to make, checked against the root public keys.
//! let keys = KeySet::from([(1, root.public())]);
//! let call = |operation: &str, at| AccessRequest { tool: "crm".into(), operation: operation.into(), now: at };
//! let verified = verify(&narrowed, &keys, &call("read", now))?;
//! assert_eq!(verified.principal_subject, "alice");
//! assert_eq!(verified.hops[0].agent, "researcher");
//! assert_eq!(verified.expires_at, now + Duration::minutes(5));
//! // What the sub-agent was not handed, and what outlived its block, is refused.
//! assert!(matches!(verify(&narrowed, &keys, &call("write", now)), Err(TokenError::NotAuthorized(_))));
//! assert!(verify(&narrowed, &keys, &call("read", now + Duration::minutes(6))).is_err());
//! // The mandate itself still writes.
//! assert!(verify(&mandate, &keys, &call("write", now)).is_ok());
//! # Ok::<(), TokenError>(())
//! ```

pub mod approval;
pub mod attenuate;
pub mod attest;
pub mod authority;
pub mod canonical;
mod chain;
pub mod constraints;
pub mod inspect;
pub mod keys;
pub mod mint;
pub mod pop;
pub mod verify;
pub mod vocabulary;

use serde::{Deserialize, Serialize};

/// The schema version every mandate states as `mandate_schema(1)`.
pub const SCHEMA_VERSION: i64 = 1;

/// The largest token a verifier parses.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most (tool, operation) pairs one attenuation block may narrow to.
pub const MAX_RIGHTS: usize = 64;
/// Most resources one attenuation block may allow.
pub const MAX_RESOURCES: usize = 64;
/// Longest string an attenuation block may state.
pub const MAX_STRING: usize = 256;

/// Whether a value can be stated in a block and read back: verifiers read hops from printed
/// block source, which the Biscuit library does not escape, so quotes, backslashes and
/// control characters are refused rather than making a derived token unverifiable.
pub(crate) fn printable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_STRING
        && !value
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

/// One granted right: an operation of a tool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Right {
    /// The tool's id.
    pub tool: String,
    /// The operation.
    pub operation: String,
}

/// Why a token could not be minted or was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is larger than [`MAX_TOKEN_BYTES`].
    #[error("token larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// The token does not follow the mandate/v1 schema.
    #[error("not a mandate/v1 token")]
    Malformed,
    /// A fact the schema requires is absent or repeated.
    #[error("the authority block must state exactly one `{0}` fact")]
    MissingFact(&'static str),
    /// A block after the authority is not one of the mandate/v1 shapes ([`vocabulary`]).
    #[error("block {index} is not a mandate/v1 block: {reason}")]
    NotMandateBlock {
        /// The block's position (the authority is 0).
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Verification did not get its turn, or did not finish, within its deadline.
    #[error("verification did not finish within its deadline")]
    Busy,
    /// A time outside the representable range.
    #[error("time out of range")]
    Time,
    /// More blocks than the verifier accepts.
    #[error("too many blocks")]
    TooManyBlocks,
    /// The token names a root key the verifier does not know.
    #[error("signed with an unknown root key")]
    UnknownKey,
    /// A signature does not verify (tampered, truncated or moved blocks).
    #[error("a signature does not verify")]
    BadSignature,
    /// The mandate, or a block's shorter expiry, has passed.
    #[error("the mandate has expired")]
    Expired,
    /// One of the token's revocation ids is revoked.
    #[error("the mandate has been revoked")]
    Revoked,
    /// An attestation block is not what it claims.
    #[error("forged attestation: {0}")]
    ForgedAttestation(String),
    /// A block moves the holder binding without the holder's signature.
    #[error("forged binding: {0}")]
    ForgedBinding(String),
    /// The proof of possession is missing or refused.
    #[error("{0}")]
    Proof(#[from] pop::proof::ProofError),
    /// The call's arguments are outside a constraint of the mandate.
    #[error("argument `{argument}` {requirement}")]
    ArgumentNotAllowed {
        /// The argument's path.
        argument: String,
        /// What the constraint requires (`must start with `acme/``).
        requirement: String,
    },
    /// The operation's approval is bound to other arguments than the call's (or the verifier
    /// was not given the call's arguments).
    #[error("the call's arguments are not the ones approved for `{tool}` `{operation}`")]
    ArgumentsNotApproved {
        /// The tool.
        tool: String,
        /// The operation.
        operation: String,
    },
    /// The request is not granted; names the failed checks.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The verifier's revocation list is too old to rely on.
    #[error("revocation list stale: {0}")]
    RevocationsStale(String),
    /// An attenuation that would narrow nothing.
    #[error("an attenuation must restrict something or name a delegate")]
    EmptyAttenuation,
    /// The Biscuit library refused the token (bad signature, failed check, unknown key, …).
    #[error("biscuit: {0}")]
    Biscuit(#[from] biscuit_auth::error::Token),
}

impl TokenError {
    /// The stable reason code of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed | TokenError::MissingFact(_) | TokenError::Time => "malformed",
            TokenError::TooManyBlocks => "too_many_blocks",
            TokenError::NotMandateBlock { .. } => "not_mandate_block",
            TokenError::Busy => "busy",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::Revoked => "revoked",
            TokenError::ForgedAttestation(_) => "forged_attestation",
            TokenError::ForgedBinding(_) => "forged_binding",
            TokenError::Proof(proof) => proof.code(),
            TokenError::NotAuthorized(_) => "not_authorized",
            TokenError::ArgumentNotAllowed { .. } => "argument_not_allowed",
            TokenError::ArgumentsNotApproved { .. } => "arguments_not_approved",
            TokenError::EmptyAttenuation => "empty_attenuation",
            TokenError::RevocationsStale(_) => "revocations_stale",
            TokenError::Biscuit(_) => "invalid",
        }
    }
}

impl From<biscuit_auth::error::Format> for TokenError {
    fn from(error: biscuit_auth::error::Format) -> Self {
        TokenError::Biscuit(biscuit_auth::error::Token::Format(error))
    }
}

#[cfg(test)]
mod chain_tests;

#[cfg(test)]
mod tests {
    use biscuit_auth::KeyPair;
    use chrono::{DateTime, Utc};

    use super::keys::KeySet;
    use super::mint::{mint, MandateSpec};
    use super::verify::{verify, AccessRequest};
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn spec(subject: &str, task: &str) -> MandateSpec {
        MandateSpec {
            approvals: vec![],
            holder_key: None,
            mandate_id: "01900000-0000-7000-8000-000000000001".into(),
            task_id: task.into(),
            task_digest: vec![7; 32],
            principal_subject: subject.into(),
            principal_issuer: "https://idp.example.com/".into(),
            agent_id: "bot".into(),
            rights: vec![
                Right {
                    tool: "crm".into(),
                    operation: "read".into(),
                },
                Right {
                    tool: "crm".into(),
                    operation: "write".into(),
                },
            ],
            expires_at: at(600),
            constraints: vec![],
        }
    }

    fn request(tool: &str, operation: &str, now: DateTime<Utc>) -> AccessRequest {
        AccessRequest {
            tool: tool.into(),
            operation: operation.into(),
            now,
        }
    }

    #[test]
    fn a_minted_mandate_grants_exactly_its_rights_until_it_expires() {
        let root = KeyPair::new();
        let minted = mint(&spec("alice", "task-1"), &root, 3).unwrap();
        let keys = KeySet::from([(3, root.public())]);
        let authority = verify(&minted.token, &keys, &request("crm", "read", at(0))).unwrap();
        assert_eq!(authority.principal_subject, "alice");
        assert_eq!(authority.agent_id, "bot");
        assert_eq!(authority.task_id, "task-1");
        assert_eq!(authority.expires_at, at(600));
        assert_eq!(authority.rights.len(), 2);
        assert!(verify(&minted.token, &keys, &request("crm", "write", at(600))).is_ok());
        assert!(verify(&minted.token, &keys, &request("crm", "delete", at(0))).is_err());
        assert!(verify(&minted.token, &keys, &request("mail", "read", at(0))).is_err());
        assert!(verify(&minted.token, &keys, &request("crm", "read", at(601))).is_err());
        assert_eq!(minted.revocation_id.len(), 64, "an Ed25519 signature");
    }

    #[test]
    fn a_mandate_verifies_only_under_its_own_kid() {
        let root = KeyPair::new();
        let minted = mint(&spec("alice", "t"), &root, 3).unwrap();
        let wrong_kid = KeySet::from([(4, root.public())]);
        assert!(verify(&minted.token, &wrong_kid, &request("crm", "read", at(0))).is_err());
        let wrong_key = KeySet::from([(3, KeyPair::new().public())]);
        assert!(verify(&minted.token, &wrong_key, &request("crm", "read", at(0))).is_err());
    }

    #[test]
    fn datalog_in_values_is_data_not_code() {
        let root = KeyPair::new();
        let hostile = "alice\"); right(\"crm\", \"delete\"); check if true; //\n\u{202E}";
        let minted = mint(&spec(hostile, "t\"); right(\"x\",\"y\")"), &root, 1).unwrap();
        let keys = KeySet::from([(1, root.public())]);
        let authority = verify(&minted.token, &keys, &request("crm", "read", at(0))).unwrap();
        assert_eq!(authority.principal_subject, hostile);
        assert_eq!(authority.rights.len(), 2);
        assert!(verify(&minted.token, &keys, &request("crm", "delete", at(0))).is_err());
        assert!(verify(&minted.token, &keys, &request("x", "y", at(0))).is_err());
    }

    #[test]
    fn oversized_tokens_are_refused_before_parsing() {
        let keys = KeySet::new();
        let huge = "A".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            verify(&huge, &keys, &request("crm", "read", at(0))),
            Err(TokenError::TooLarge)
        ));
    }

    #[test]
    fn a_mandate_without_rights_grants_nothing() {
        let root = KeyPair::new();
        let mut empty = spec("alice", "t");
        empty.rights.clear();
        let minted = mint(&empty, &root, 1).unwrap();
        let keys = KeySet::from([(1, root.public())]);
        assert!(verify(&minted.token, &keys, &request("crm", "read", at(0))).is_err());
    }
}
