//! Verifying a mandate offline with the published root keys, and reading who it speaks for:
//! the principal, the agent, and every delegation hop, attested or claimed. Token size, block
//! count and authorizer run limits are bounded explicitly, and clock skew is a parameter.

use std::sync::LazyLock;
use std::time::Duration;

use biscuit_auth::builder::{fact, string, Policy, Term};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attenuate::Attenuation;
use super::authority::{self, Authority};
pub use super::chain::Hop;
use super::chain::{holder, hops};
use super::constraints::{self as argument, ArgConstraint, Arguments};
pub use super::keys::AgentKeys;
use super::keys::KeySet;
use super::vocabulary::{self, Stated};
use super::{Right, TokenError, MAX_TOKEN_BYTES};

/// Datalog the verifier runs on every call, parsed once (a parse costs as much as the run).
type Once<T> = LazyLock<Result<T, biscuit_auth::error::Token>>;

/// The one policy: the mandate/v1 schema, and the right asked for.
static ALLOW: Once<Policy> =
    LazyLock::new(|| Policy::try_from("allow if mandate_schema(1), right({tool}, {operation})"));
/// A copy of a once-parsed piece of Datalog.
fn parsed<T: Clone>(source: &Once<T>) -> Result<T, TokenError> {
    Ok(LazyLock::force(source).clone()?)
}

/// What a verifier asks: may the holder do `operation` on `tool` (on `resource`) at `now`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The tool being called.
    pub tool: String,
    /// The operation being performed.
    pub operation: String,
    /// The verifier's current time.
    pub now: DateTime<Utc>,
}

/// The largest clock skew, in seconds, a verifier should tolerate on expiry (the verifier's
/// default). The revocation feed keeps an entry a second longer ([`KEEP_REVOKED_SECONDS`]).
pub const MAX_SKEW_SECONDS: i64 = 30;

/// How long past its mandate's expiry a revocation must stay known: a verifier compares expiry
/// in whole seconds after subtracting the skew, so a token works until the second after
/// `expires + MAX_SKEW_SECONDS` begins.
pub const KEEP_REVOKED_SECONDS: i64 = MAX_SKEW_SECONDS + 1;

/// Bounds and tolerances of verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Largest token accepted, in bytes.
    pub max_bytes: usize,
    /// Most blocks accepted (authority included).
    pub max_blocks: usize,
    /// Clock skew tolerated on expiry.
    pub skew: chrono::Duration,
    /// Authorizer run limits.
    pub limits: AuthorizerLimits,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            max_bytes: MAX_TOKEN_BYTES,
            max_blocks: 16,
            skew: chrono::Duration::zero(),
            limits: run_limits(),
        }
    }
}

/// What a verifier trusts: root keys, agents' keys, and revoked ids.
pub struct Trust<'a> {
    /// Root keys by kid.
    pub keys: &'a KeySet,
    /// Registered agents' keys.
    pub agent_keys: &'a AgentKeys,
    /// Whether a revocation id (any block's) is revoked.
    pub is_revoked: &'a (dyn Fn(&[u8]) -> bool + Send + Sync),
}

/// A verified mandate: who acts, for whom, through which hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The mandate's id.
    pub mandate_id: String,
    /// The human principal's subject.
    pub principal_subject: String,
    /// The issuer that proved the principal.
    pub principal_issuer: String,
    /// The orchestrator the mandate was minted for.
    pub agent_id: String,
    /// The task's id.
    pub task_id: String,
    /// Every hop after the orchestrator, in order.
    pub hops: Vec<Hop>,
    /// The rights the mandate granted (later blocks may narrow what is usable).
    pub rights: Vec<Right>,
    /// When this token stops working: the mandate's expiry, or a later block's earlier one.
    pub expires_at: DateTime<Utc>,
    /// Every block's revocation id, hex, authority first.
    pub revocation_ids: Vec<String>,
    /// Every argument constraint, the authority's and each later block's: all of them hold.
    #[serde(default)]
    pub constraints: Vec<ArgConstraint>,
    /// The RFC 7638 thumbprint of the key the token is bound to now (the mandate's, or the
    /// last one its holders moved the binding to); `None` for a bearer mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_key: Option<String>,
    /// The human approvals of the rights a policy gates behind approval, by tool and
    /// operation: who approved and when, and for a one-call approval the arguments' digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<super::approval::Approval>,
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

/// Verifies `token` for `request` with root keys only and no revocation list. With no agent
/// keys, a token whose hop is attested is refused (the attestation cannot be checked); claimed
/// hops verify. See [`verify_with`].
pub fn verify(token: &str, keys: &KeySet, request: &AccessRequest) -> Result<Verified, TokenError> {
    let no_agents = AgentKeys::new();
    let trust = Trust {
        keys,
        agent_keys: &no_agents,
        is_revoked: &|_| false,
    };
    verify_with(token, &trust, request, None, &VerifyOptions::default())
}

fn map_biscuit(error: biscuit_auth::error::Token) -> TokenError {
    use biscuit_auth::error::{FailedCheck, Format, Logic, Token};
    match error {
        Token::Format(Format::UnknownPublicKey) => TokenError::UnknownKey,
        Token::Format(Format::Signature(_) | Format::InvalidSignatureSize(_)) => {
            TokenError::BadSignature
        }
        Token::Format(_) | Token::Base64(_) => TokenError::Malformed,
        Token::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        ) => {
            let failed: Vec<String> = checks
                .iter()
                .map(|c| match c {
                    FailedCheck::Block(b) => b.rule.clone(),
                    FailedCheck::Authorizer(a) => a.rule.clone(),
                })
                .collect();
            if failed.iter().any(|rule| rule.contains("time($time)")) {
                TokenError::Expired
            } else if failed.is_empty() {
                TokenError::NotAuthorized("no right for this tool and operation".to_owned())
            } else {
                TokenError::NotAuthorized(failed.join("; "))
            }
        }
        Token::RunLimit(_) => TokenError::NotAuthorized("authorizer run limits reached".to_owned()),
        other => TokenError::Biscuit(other),
    }
}

/// A token whose signatures verify under mandate's root keys and whose later blocks are all
/// mandate/v1 shapes (the vocabulary is checked before the signatures, and no Datalog has run).
pub struct Parsed {
    biscuit: Biscuit,
    /// What the authority block states.
    pub authority: Authority,
    /// What each later block states, in order.
    pub blocks: Vec<Stated>,
    revocation_ids: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("mandate_id", &self.authority.mandate_id)
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

impl Parsed {
    /// Every block's revocation id, authority first.
    pub fn revocation_ids(&self) -> &[Vec<u8>] {
        &self.revocation_ids
    }

    /// How many blocks, the authority included.
    pub fn block_count(&self) -> usize {
        self.blocks.len() + 1
    }

    /// The last holder a block names, as the holders claim it.
    pub fn claimed_holder(&self) -> Option<&str> {
        self.blocks.iter().rev().find_map(|b| match b {
            Stated::Narrowing(n) => n.delegate.as_deref(),
            Stated::Attestation { .. } | Stated::Rebind { .. } => None,
        })
    }

    /// The thumbprint of the key the token is bound to now (`None`: a bearer token), after
    /// checking that each move of the binding is signed by the key it moves from.
    pub fn holder_key(&self) -> Result<Option<String>, TokenError> {
        holder(
            self.authority.holder_key.as_deref(),
            &self.blocks,
            &self.biscuit.external_public_keys(),
        )
    }

    /// When this token stops working: the mandate's expiry, or a later block's earlier one.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Stated::Narrowing(n) => n.expires_at,
                Stated::Attestation { .. } | Stated::Rebind { .. } => None,
            })
            .fold(self.authority.expires_at, DateTime::min)
    }
}

/// Checks `token`: at most `options.max_bytes` long and `options.max_blocks` blocks, every
/// block after the authority a mandate/v1 shape, then every signature against the root key
/// `keys` holds for its `root_key_id`. Nothing is authorized and no Datalog runs: this only
/// says the token is mandate's, and what it states.
pub fn parse(token: &str, keys: &KeySet, options: &VerifyOptions) -> Result<Parsed, TokenError> {
    if token.len() > options.max_bytes {
        return Err(TokenError::TooLarge);
    }
    let decoded = vocabulary::read(token, options.max_blocks)?;
    let biscuit = Biscuit::from_base64(token.trim(), |kid: Option<u32>| {
        kid.and_then(|kid| keys.get(&kid).copied())
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    })
    .map_err(map_biscuit)?;
    if biscuit.block_count() != decoded.blocks.len() + 1 {
        return Err(TokenError::Malformed);
    }
    Ok(Parsed {
        authority: authority::read(&decoded.authority)?,
        revocation_ids: biscuit.revocation_identifiers(),
        blocks: decoded.blocks,
        biscuit,
    })
}

/// Parses `token`, checks every signature against `trust.keys` (by `root_key_id`), refuses
/// revoked ids and forged attestations, and authorizes `request` (with `resource`, if the call
/// names one): its tool and operation must be a right of the mandate and every check of every
/// block must pass at `request.now` (less `options.skew` for expiry).
pub fn verify_with(
    token: &str,
    trust: &Trust<'_>,
    request: &AccessRequest,
    resource: Option<&str>,
    options: &VerifyOptions,
) -> Result<Verified, TokenError> {
    check(token, trust, options)?.authorize(trust.is_revoked, request, resource, options)
}

/// A parsed token whose attestations have been checked against the agents' keys: what stays
/// true of it while the keys stay the same. Revocation and authorization are per request.
#[derive(Debug)]
pub struct Checked {
    parsed: Parsed,
    verified: Verified,
}

/// The checks of [`verify_with`] that do not depend on the request or on revocations.
pub fn check(
    token: &str,
    trust: &Trust<'_>,
    options: &VerifyOptions,
) -> Result<Checked, TokenError> {
    let parsed = parse(token, trust.keys, options)?;
    let hops = hops(
        &parsed.blocks,
        &parsed.biscuit.external_public_keys(),
        trust.agent_keys,
    )?;
    let holder_key = parsed.holder_key()?;
    let authority = parsed.authority.clone();
    let mut constraints = authority.constraints;
    for block in &parsed.blocks {
        if let Stated::Narrowing(narrowing) = block {
            constraints.extend(narrowing.constraints.iter().cloned());
        }
    }
    let verified = Verified {
        mandate_id: authority.mandate_id,
        principal_subject: authority.principal_subject,
        principal_issuer: authority.principal_issuer,
        agent_id: authority.agent_id,
        task_id: authority.task_id,
        hops,
        rights: authority.rights,
        expires_at: parsed.expires_at(),
        revocation_ids: parsed.revocation_ids.iter().map(hex::encode).collect(),
        constraints,
        holder_key,
        approvals: authority.approvals,
    };
    Ok(Checked { parsed, verified })
}

impl Checked {
    /// Every block's revocation id, authority first.
    pub fn revocation_ids(&self) -> &[Vec<u8>] {
        &self.parsed.revocation_ids
    }

    /// Who the token speaks for and through (not yet authorized for any call).
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    /// Refuses a token that is revoked or expired at `now` (less `options.skew`), without
    /// authorizing any call.
    pub fn alive(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        now: DateTime<Utc>,
        options: &VerifyOptions,
    ) -> Result<(), TokenError> {
        if self.parsed.revocation_ids.iter().any(|id| is_revoked(id)) {
            return Err(TokenError::Revoked);
        }
        if (now - options.skew).timestamp() > self.verified.expires_at.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// The rights still usable: the mandate's, less what any later block leaves out.
    pub fn usable_rights(&self) -> Vec<Right> {
        let mut rights = self.verified.rights.clone();
        for block in &self.parsed.blocks {
            if let Stated::Narrowing(Attenuation {
                rights: Some(kept), ..
            }) = block
            {
                rights.retain(|r| kept.contains(r));
            }
        }
        rights
    }

    /// The constraints on the arguments of `operation` of `tool`.
    pub fn constraints_on<'a>(
        &'a self,
        tool: &'a str,
        operation: &'a str,
    ) -> impl Iterator<Item = &'a ArgConstraint> + 'a {
        self.verified
            .constraints
            .iter()
            .filter(move |c| c.tool == tool && c.operation == operation)
    }

    /// Refuses a revoked or expired token, then authorizes `request` as [`verify_with`] does,
    /// with no arguments stated: a constrained operation is refused.
    pub fn authorize(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        request: &AccessRequest,
        resource: Option<&str>,
        options: &VerifyOptions,
    ) -> Result<Verified, TokenError> {
        self.authorize_call(is_revoked, request, resource, None, options)
    }

    /// Authorizes a call with its JSON arguments: every constraint the token states on this
    /// operation is checked against them (the arguments the constraints name are stated as
    /// `arg($path, $value)` facts). A refusal a constraint explains names the argument.
    pub fn authorize_call(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        request: &AccessRequest,
        resource: Option<&str>,
        arguments: Option<&serde_json::Value>,
        options: &VerifyOptions,
    ) -> Result<Verified, TokenError> {
        self.authorize_held(is_revoked, request, resource, arguments, None, options)
    }

    /// Authorizes a call as [`Checked::authorize_call`] does, for a caller that proved it holds
    /// the key with thumbprint `proven` ([`super::pop`]: the proof is checked before). A bound
    /// token needs the proof of its current holder; an unbound one takes none.
    pub fn authorize_held(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        request: &AccessRequest,
        resource: Option<&str>,
        arguments: Option<&serde_json::Value>,
        proven: Option<&str>,
        options: &VerifyOptions,
    ) -> Result<Verified, TokenError> {
        use super::pop::proof::ProofError;
        match (self.verified.holder_key.as_deref(), proven) {
            (None, None) => {}
            (None, Some(_)) => return Err(ProofError::Unbound.into()),
            (Some(_), None) => return Err(ProofError::Missing.into()),
            (Some(holder), Some(proven)) => {
                if !super::pop::proof::constant_time_eq(holder.as_bytes(), proven.as_bytes()) {
                    return Err(ProofError::WrongKey.into());
                }
            }
        }
        let wanted: std::collections::BTreeSet<&str> = self
            .constraints_on(&request.tool, &request.operation)
            .map(|c| c.argument.as_str())
            .collect();
        let stated = match arguments {
            Some(arguments) if !wanted.is_empty() => Arguments::from_json(arguments, &wanted),
            _ => Arguments::default(),
        };
        let approved = self.approved_arguments(request);
        // The digest is computed only for an operation whose approval is bound to arguments.
        let digest = match (approved, arguments) {
            (Some(_), Some(arguments)) => Some(super::canonical::arguments_digest(Some(arguments))),
            _ => None,
        };
        let call = Call {
            arguments: &stated,
            arguments_sha256: digest.as_deref(),
        };
        self.run(is_revoked, request, resource, &call, proven, options)
            .map_err(|error| match error {
                TokenError::NotAuthorized(_) | TokenError::Biscuit(_) => self
                    .explain(request, &stated, approved, digest.as_deref())
                    .unwrap_or(error),
                other => other,
            })
    }

    /// The digest of the arguments the approval of `request`'s operation is bound to, if it is.
    fn approved_arguments(&self, request: &AccessRequest) -> Option<&str> {
        self.verified
            .approvals
            .iter()
            .find(|a| a.tool == request.tool && a.operation == request.operation)
            .and_then(|a| a.arguments_sha256.as_deref())
    }

    /// The first constraint on the call's operation its arguments break, or the approval
    /// bound to other arguments, as a refusal.
    fn explain(
        &self,
        request: &AccessRequest,
        stated: &Arguments,
        approved: Option<&str>,
        digest: Option<&str>,
    ) -> Option<TokenError> {
        let right = Right {
            tool: request.tool.clone(),
            operation: request.operation.clone(),
        };
        if !self.usable_rights().contains(&right) {
            return None;
        }
        if approved.is_some() && approved != digest {
            return Some(TokenError::ArgumentsNotApproved {
                tool: request.tool.clone(),
                operation: request.operation.clone(),
            });
        }
        self.constraints_on(&request.tool, &request.operation)
            .find_map(|c| match stated.0.get(&c.argument) {
                Some(value) if c.constraint.allows(value) => None,
                Some(_) => Some(TokenError::ArgumentNotAllowed {
                    argument: c.argument.clone(),
                    requirement: c.constraint.to_string(),
                }),
                None => Some(TokenError::ArgumentNotAllowed {
                    argument: c.argument.clone(),
                    requirement: format!("{} (the call does not give it)", c.constraint),
                }),
            })
    }

    fn run(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        request: &AccessRequest,
        resource: Option<&str>,
        call: &Call<'_>,
        proven: Option<&str>,
        options: &VerifyOptions,
    ) -> Result<Verified, TokenError> {
        if self.parsed.revocation_ids.iter().any(|id| is_revoked(id)) {
            return Err(TokenError::Revoked);
        }
        // Whole seconds, as Biscuit dates are.
        let now = (request.now - options.skew).timestamp();
        if now > self.verified.expires_at.timestamp() {
            return Err(TokenError::Expired);
        }
        let now = u64::try_from(now).map_err(|_| TokenError::Time)?;
        let mut allow = parsed(&ALLOW)?;
        allow.set("tool", request.tool.as_str())?;
        allow.set("operation", request.operation.as_str())?;
        let mut builder = AuthorizerBuilder::new()
            .fact(fact("time", &[Term::Date(now)]))?
            .fact(fact("tool", &[string(&request.tool)]))?
            .fact(fact("operation", &[string(&request.operation)]))?;
        if let Some(resource) = resource {
            builder = builder.fact(fact("resource", &[string(resource)]))?;
        }
        if let Some(jkt) = proven {
            builder = builder.fact(fact("holder_proof", &[string(jkt)]))?;
        }
        for (path, value) in &call.arguments.0 {
            builder = builder.fact(fact("arg", &[string(path), argument::term(value)]))?;
        }
        if let Some(digest) = call.arguments_sha256 {
            builder = builder.fact(fact("arguments_sha256", &[string(digest)]))?;
        }
        let mut authorizer = builder
            .policy(allow)?
            .set_limits(options.limits.clone())
            .build(&self.parsed.biscuit)
            .map_err(map_biscuit)?;
        authorizer.authorize().map_err(map_biscuit)?;
        Ok(self.verified.clone())
    }
}

/// What the verifier states of a call's arguments: the ones its constraints name, and the
/// digest of them all when its approval is bound to them.
struct Call<'a> {
    arguments: &'a Arguments,
    arguments_sha256: Option<&'a str>,
}

/// Who a token speaks through, read without authorizing a call (a used token may have expired
/// since): signatures, block count and attestations are checked as by [`verify_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOut {
    /// The mandate's id.
    pub mandate_id: String,
    /// Every hop after the orchestrator.
    pub hops: Vec<Hop>,
    /// Every block's revocation id, authority first.
    pub revocation_ids: Vec<Vec<u8>>,
}

/// Reads who `token` speaks through, after checking its signatures and attestations.
pub fn read_out(
    token: &str,
    trust: &Trust<'_>,
    options: &VerifyOptions,
) -> Result<ReadOut, TokenError> {
    let checked = check(token, trust, options)?;
    Ok(ReadOut {
        mandate_id: checked.verified.mandate_id,
        hops: checked.verified.hops,
        revocation_ids: checked.parsed.revocation_ids,
    })
}
