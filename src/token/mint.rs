//! Minting the authority block of a mandate (schema mandate/v1). Every value is bound as a
//! Datalog parameter, never formatted into the source, so no principal, task or tool name can
//! change the token's meaning.

use std::sync::LazyLock;

use biscuit_auth::builder::{fact, string, Check, Term};
use biscuit_auth::{Biscuit, KeyPair};
use chrono::{DateTime, Utc};

use super::attenuate::constrained;
use super::constraints::ArgConstraint;
use super::{Right, TokenError, SCHEMA_VERSION};

/// What the authority block of a new mandate states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateSpec {
    /// The mandate's id (a UUID in text form).
    pub mandate_id: String,
    /// The task's id.
    pub task_id: String,
    /// SHA-256 of the task description.
    pub task_digest: Vec<u8>,
    /// The human principal's subject.
    pub principal_subject: String,
    /// The issuer URL that proved the principal.
    pub principal_issuer: String,
    /// The agent the mandate is minted for.
    pub agent_id: String,
    /// Every granted (tool, operation).
    pub rights: Vec<Right>,
    /// When the mandate stops working.
    pub expires_at: DateTime<Utc>,
    /// Constraints on the arguments of the granted operations.
    pub constraints: Vec<ArgConstraint>,
    /// The RFC 7638 thumbprint of the key the mandate is bound to ([`super::pop`]), if any.
    pub holder_key: Option<String>,
    /// The approvals of the rights a policy gates behind human approval ([`super::approval`]).
    pub approvals: Vec<super::approval::Approval>,
}

/// A minted mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token, base64url.
    pub token: String,
    /// The authority block's revocation id: revoking it revokes every token derived from this one.
    pub revocation_id: Vec<u8>,
}

/// The authority block's one check, parsed once: the mandate works until `{expires}`.
static EXPIRY_CHECK: LazyLock<Result<Check, biscuit_auth::error::Token>> =
    LazyLock::new(|| Check::try_from("check if time($time), $time <= {expires}"));
/// A bound mandate's check: only a verifier that checked the holder's proof passes it.
static PROOF_CHECK: LazyLock<Result<Check, biscuit_auth::error::Token>> =
    LazyLock::new(|| Check::try_from("check if holder_proof($jkt)"));

/// Builds and signs the authority block with `root` under key id `kid`. Every value is a term
/// of a fact built directly (no Datalog source is formatted or parsed per mint).
pub fn mint(spec: &MandateSpec, root: &KeyPair, kid: u32) -> Result<Minted, TokenError> {
    let expires = u64::try_from(spec.expires_at.timestamp()).map_err(|_| TokenError::Time)?;
    let mut expiry = EXPIRY_CHECK.clone()?;
    expiry.set("expires", Term::Date(expires))?;
    let mut builder = Biscuit::builder()
        .fact(fact("mandate_schema", &[Term::Integer(SCHEMA_VERSION)]))?
        .fact(fact("mandate", &[string(&spec.mandate_id)]))?
        .fact(fact(
            "task",
            &[string(&spec.task_id), Term::Bytes(spec.task_digest.clone())],
        ))?
        .fact(fact(
            "principal",
            &[
                string(&spec.principal_subject),
                string(&spec.principal_issuer),
            ],
        ))?
        .fact(fact("agent", &[string(&spec.agent_id)]))?
        .fact(fact("expires", &[Term::Date(expires)]))?
        .check(expiry)?;
    for right in &spec.rights {
        builder = builder.fact(fact(
            "right",
            &[string(&right.tool), string(&right.operation)],
        ))?;
    }
    if let Some(jkt) = &spec.holder_key {
        if !super::pop::is_thumbprint(jkt) {
            return Err(TokenError::Malformed);
        }
        builder = builder
            .fact(fact("holder_key", &[string(jkt)]))?
            .check(PROOF_CHECK.clone()?)?;
    }
    let (facts, checks) = super::approval::compile(&spec.approvals)?;
    for fact in facts {
        builder = builder.fact(fact)?;
    }
    for check in checks {
        builder = builder.check(check)?;
    }
    for compiled in constrained(&spec.constraints)? {
        builder = builder.fact(compiled.fact)?.check(compiled.check)?;
    }
    let token = builder.root_key_id(kid).build(root)?;
    let revocation_id = token
        .revocation_identifiers()
        .into_iter()
        .next()
        .ok_or(TokenError::Malformed)?;
    Ok(Minted {
        token: token.to_base64()?,
        revocation_id,
    })
}
