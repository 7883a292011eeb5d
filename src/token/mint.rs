//! Minting the authority block of a mandate (schema mandate/v1). Every value is bound as a
//! Datalog parameter, never formatted into the source, so no principal, task or tool name can
//! change the token's meaning.

use std::collections::HashMap;
use std::fmt::Write as _;

use biscuit_auth::builder::Term;
use biscuit_auth::{Biscuit, KeyPair};
use chrono::{DateTime, Utc};

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
}

/// A minted mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token, base64url.
    pub token: String,
    /// The authority block's revocation id: revoking it revokes every token derived from this one.
    pub revocation_id: Vec<u8>,
}

/// The Datalog source of the authority block, with a `{parameter}` for every value.
fn authority_source(rights: usize) -> String {
    let mut source = String::from(
        "mandate_schema({schema});\n\
         mandate({mandate_id});\n\
         task({task_id}, {task_digest});\n\
         principal({subject}, {issuer});\n\
         agent({agent});\n\
         expires({expires});\n\
         check if time($time), $time <= {expires};\n",
    );
    for i in 0..rights {
        // Writing to a String cannot fail.
        let _ = writeln!(source, "right({{tool{i}}}, {{operation{i}}});");
    }
    source
}

/// Builds and signs the authority block with `root` under key id `kid`.
pub fn mint(spec: &MandateSpec, root: &KeyPair, kid: u32) -> Result<Minted, TokenError> {
    let expires = u64::try_from(spec.expires_at.timestamp()).map_err(|_| TokenError::Time)?;
    let mut params: HashMap<String, Term> = HashMap::from([
        ("schema".to_owned(), Term::Integer(SCHEMA_VERSION)),
        ("mandate_id".to_owned(), Term::Str(spec.mandate_id.clone())),
        ("task_id".to_owned(), Term::Str(spec.task_id.clone())),
        (
            "task_digest".to_owned(),
            Term::Bytes(spec.task_digest.clone()),
        ),
        (
            "subject".to_owned(),
            Term::Str(spec.principal_subject.clone()),
        ),
        (
            "issuer".to_owned(),
            Term::Str(spec.principal_issuer.clone()),
        ),
        ("agent".to_owned(), Term::Str(spec.agent_id.clone())),
        ("expires".to_owned(), Term::Date(expires)),
    ]);
    for (i, right) in spec.rights.iter().enumerate() {
        params.insert(format!("tool{i}"), Term::Str(right.tool.clone()));
        params.insert(format!("operation{i}"), Term::Str(right.operation.clone()));
    }
    let token = Biscuit::builder()
        .code_with_params(authority_source(spec.rights.len()), params, HashMap::new())?
        .root_key_id(kid)
        .build(root)?;
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
