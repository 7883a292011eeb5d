//! Verifying a mandate offline with the published root keys, and reading who it speaks for.
//! Authorizer run limits are set explicitly; the library's defaults are not relied on.

use std::collections::HashMap;
use std::time::Duration;

use biscuit_auth::builder::Term;
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit};
use chrono::{DateTime, Utc};

use super::keys::KeySet;
use super::{Right, TokenError, MAX_TOKEN_BYTES, SCHEMA_VERSION};

/// What a verifier asks: may the holder do `operation` on `tool` at `now`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The tool being called.
    pub tool: String,
    /// The operation being performed.
    pub operation: String,
    /// The verifier's current time.
    pub now: DateTime<Utc>,
}

/// The authority a verified mandate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The mandate's id.
    pub mandate_id: String,
    /// The human principal's subject.
    pub principal_subject: String,
    /// The issuer that proved the principal.
    pub principal_issuer: String,
    /// The agent the mandate was minted for.
    pub agent_id: String,
    /// The task's id.
    pub task_id: String,
    /// Every right of the authority block.
    pub rights: Vec<Right>,
    /// When the mandate expires.
    pub expires_at: DateTime<Utc>,
}

/// Bounds on one authorization: enough for any mandate, small enough that no token can make a
/// verifier spin.
pub fn run_limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1_000,
        max_iterations: 100,
        max_time: Duration::from_millis(20),
    }
}

/// Parses `token`, checks its signatures against `keys` (by `root_key_id`), and authorizes
/// `request`: its tool and operation must be a right of the mandate and every check of every
/// block must pass at `request.now`.
pub fn verify(
    token: &str,
    keys: &KeySet,
    request: &AccessRequest,
) -> Result<Authority, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let biscuit = Biscuit::from_base64(token, |kid: Option<u32>| {
        kid.and_then(|kid| keys.get(&kid).copied())
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    })?;
    let now = u64::try_from(request.now.timestamp()).map_err(|_| TokenError::Time)?;
    let params = HashMap::from([
        ("now".to_owned(), Term::Date(now)),
        ("tool".to_owned(), Term::Str(request.tool.clone())),
        ("operation".to_owned(), Term::Str(request.operation.clone())),
    ]);
    let mut authorizer = AuthorizerBuilder::new()
        .code_with_params(
            "time({now}); tool({tool}); operation({operation});\n\
             allow if mandate_schema(1), right({tool}, {operation});",
            params,
            HashMap::new(),
        )?
        .set_limits(run_limits())
        .build(&biscuit)?;
    authorizer.authorize()?;
    read_authority(&mut authorizer)
}

fn one<T>(mut rows: Vec<T>, what: &'static str) -> Result<T, TokenError> {
    if rows.len() == 1 {
        rows.pop().ok_or(TokenError::MissingFact(what))
    } else {
        Err(TokenError::MissingFact(what))
    }
}

/// Reads the authority block's facts (only the authority block is trusted for them).
fn read_authority(authorizer: &mut biscuit_auth::Authorizer) -> Result<Authority, TokenError> {
    let schema: Vec<(i64,)> = authorizer.query("data($v) <- mandate_schema($v)")?;
    if one(schema, "mandate_schema")?.0 != SCHEMA_VERSION {
        return Err(TokenError::Malformed);
    }
    let (mandate_id,): (String,) = one(authorizer.query("data($m) <- mandate($m)")?, "mandate")?;
    let (principal_subject, principal_issuer): (String, String) = one(
        authorizer.query("data($s, $i) <- principal($s, $i)")?,
        "principal",
    )?;
    let (agent_id,): (String,) = one(authorizer.query("data($a) <- agent($a)")?, "agent")?;
    let (task_id, _digest): (String, Vec<u8>) =
        one(authorizer.query("data($t, $d) <- task($t, $d)")?, "task")?;
    let (expires,): (std::time::SystemTime,) =
        one(authorizer.query("data($e) <- expires($e)")?, "expires")?;
    let mut rights: Vec<Right> = authorizer
        .query::<_, (String, String), _>("data($t, $o) <- right($t, $o)")?
        .into_iter()
        .map(|(tool, operation)| Right { tool, operation })
        .collect();
    rights.sort();
    let expires_at = DateTime::<Utc>::from(expires);
    Ok(Authority {
        mandate_id,
        principal_subject,
        principal_issuer,
        agent_id,
        task_id,
        rights,
        expires_at,
    })
}
