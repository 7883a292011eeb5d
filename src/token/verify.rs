//! Verifying a mandate offline with the published root keys, and reading who it speaks for:
//! the principal, the agent, and every delegation hop, attested or claimed. Token size, block
//! count and authorizer run limits are bounded explicitly, and clock skew is a parameter.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use biscuit_auth::builder::{fact, string, Policy, Rule, Term};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, PublicKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::inspect::{chain_of, BlockKind, Chain};
use super::keys::KeySet;
use super::{Right, TokenError, MAX_TOKEN_BYTES, SCHEMA_VERSION};

/// Registered agents' Ed25519 public keys, by agent id (what makes a hop attested).
pub type AgentKeys = HashMap<String, Vec<PublicKey>>;

/// Datalog the verifier runs on every call, parsed once (a parse costs as much as the run).
type Parsed<T> = LazyLock<Result<T, biscuit_auth::error::Token>>;

/// The one policy: the mandate/v1 schema, and the right asked for.
static ALLOW: Parsed<Policy> =
    LazyLock::new(|| Policy::try_from("allow if mandate_schema(1), right({tool}, {operation})"));
/// The authority block's single-valued facts, together.
static AUTHORITY: Parsed<Rule> = LazyLock::new(|| {
    Rule::try_from(
        "data($v, $m, $s, $i, $a, $t, $d, $e) <- mandate_schema($v), mandate($m), \
         principal($s, $i), agent($a), task($t, $d), expires($e)",
    )
});
/// The authority block's rights.
static RIGHTS: Parsed<Rule> = LazyLock::new(|| Rule::try_from("data($t, $o) <- right($t, $o)"));
/// The mandate's id.
static MANDATE_ID: Parsed<Rule> = LazyLock::new(|| Rule::try_from("data($m) <- mandate($m)"));

/// A copy of a once-parsed piece of Datalog.
fn parsed<T: Clone>(source: &Parsed<T>) -> Result<T, TokenError> {
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

/// One step of the delegation chain after the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The agent that received the token.
    pub agent: String,
    /// Whether that agent signed its hop with its registered key.
    pub attested: bool,
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
    /// When the mandate expires (a later block may end it earlier).
    pub expires_at: DateTime<Utc>,
    /// Every block's revocation id, hex, authority first.
    pub revocation_ids: Vec<String>,
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

/// The hops of `chain`: each `delegate` names a claimed hop; an attestation block turns the
/// last hop into an attested one, if its key is registered for that agent.
fn hops(chain: &Chain, agent_keys: &AgentKeys) -> Result<Vec<Hop>, TokenError> {
    let mut hops: Vec<Hop> = Vec::new();
    for block in &chain.blocks[1..] {
        match block.kind {
            BlockKind::Attestation => {
                let agent = block.hop.as_ref().ok_or_else(|| {
                    TokenError::ForgedAttestation("a third-party block attests no hop".into())
                })?;
                let last = hops
                    .last_mut()
                    .filter(|h| &h.agent == agent && !h.attested)
                    .ok_or_else(|| {
                        TokenError::ForgedAttestation(format!(
                            "`{agent}` attests a hop the token was not delegated to it for"
                        ))
                    })?;
                let signer = block.external_key.as_deref().unwrap_or_default();
                let registered = agent_keys
                    .get(agent)
                    .is_some_and(|keys| keys.iter().any(|k| k.print() == signer));
                if !registered {
                    return Err(TokenError::ForgedAttestation(format!(
                        "the attestation of `{agent}` is not signed by a key registered for it"
                    )));
                }
                last.attested = true;
            }
            BlockKind::Attenuation => {
                if block.hop.is_some() {
                    return Err(TokenError::ForgedAttestation(
                        "a hop claimed without a signature of its own".into(),
                    ));
                }
                if let Some(agent) = &block.delegate {
                    hops.push(Hop {
                        agent: agent.clone(),
                        attested: false,
                    });
                }
            }
            BlockKind::Authority => return Err(TokenError::Malformed),
        }
    }
    Ok(hops)
}

/// Parses `token` if it is at most `max_bytes` long, checking every block's signature against
/// the root key `keys` holds for its `root_key_id`. Nothing is authorized: this only says the
/// token is mandate's.
pub fn parse(token: &str, keys: &KeySet, max_bytes: usize) -> Result<Biscuit, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    Biscuit::from_base64(token, |kid: Option<u32>| {
        kid.and_then(|kid| keys.get(&kid).copied())
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    })
    .map_err(map_biscuit)
}

/// Reads the delegation chain of a parsed token and checks each hop's attestation.
fn attested_hops(
    biscuit: &Biscuit,
    revocation_ids: &[Vec<u8>],
    agent_keys: &AgentKeys,
) -> Result<Vec<Hop>, TokenError> {
    // Hops are read from the later blocks only: the authority block, the largest to print, is
    // read through the authorizer, so its source is left out here.
    let chain = chain_of(
        biscuit.block_count(),
        |i| match i {
            0 => Ok(String::new()),
            _ => Ok(biscuit.print_block_source(i)?),
        },
        &biscuit.external_public_keys(),
        revocation_ids,
        biscuit.root_key_id(),
    )?;
    hops(&chain, agent_keys)
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
    check(token, trust, options)?.authorize(trust.is_revoked, request, resource, options, None)
}

/// A token whose size, block count, signatures and attestations have been checked: what stays
/// true of it while the keys stay the same. Revocation and authorization are per request.
pub struct Checked {
    biscuit: Biscuit,
    revocation_ids: Vec<Vec<u8>>,
    hops: Vec<Hop>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("blocks", &self.biscuit.block_count())
            .field("hops", &self.hops)
            .finish_non_exhaustive()
    }
}

/// The checks of [`verify_with`] that do not depend on the request or on revocations.
pub fn check(
    token: &str,
    trust: &Trust<'_>,
    options: &VerifyOptions,
) -> Result<Checked, TokenError> {
    let biscuit = parse(token, trust.keys, options.max_bytes)?;
    if biscuit.block_count() > options.max_blocks {
        return Err(TokenError::TooManyBlocks);
    }
    let revocation_ids = biscuit.revocation_identifiers();
    let hops = attested_hops(&biscuit, &revocation_ids, trust.agent_keys)?;
    Ok(Checked {
        biscuit,
        revocation_ids,
        hops,
    })
}

impl Checked {
    /// Every block's revocation id, authority first.
    pub fn revocation_ids(&self) -> &[Vec<u8>] {
        &self.revocation_ids
    }

    /// Refuses a revoked token, then authorizes `request` as [`verify_with`] does. `known` is
    /// what an earlier authorization of this token read from its authority block (it cannot
    /// change); without it the facts are read again.
    pub fn authorize(
        &self,
        is_revoked: &dyn Fn(&[u8]) -> bool,
        request: &AccessRequest,
        resource: Option<&str>,
        options: &VerifyOptions,
        known: Option<&Verified>,
    ) -> Result<Verified, TokenError> {
        if self.revocation_ids.iter().any(|id| is_revoked(id)) {
            return Err(TokenError::Revoked);
        }
        let now = (request.now - options.skew).timestamp();
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
        let mut authorizer = builder
            .policy(allow)?
            .set_limits(options.limits.clone())
            .build(&self.biscuit)
            .map_err(map_biscuit)?;
        authorizer.authorize().map_err(map_biscuit)?;
        if let Some(known) = known {
            return Ok(known.clone());
        }
        let authority = read_authority(&mut authorizer)?;
        Ok(Verified {
            hops: self.hops.clone(),
            revocation_ids: self.revocation_ids.iter().map(hex::encode).collect(),
            ..authority
        })
    }
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
    let mut authorizer = AuthorizerBuilder::new()
        .set_limits(options.limits.clone())
        .build(&checked.biscuit)
        .map_err(map_biscuit)?;
    let (mandate_id,): (String,) = one(authorizer.query(parsed(&MANDATE_ID)?)?, "mandate")?;
    Ok(ReadOut {
        mandate_id,
        hops: checked.hops,
        revocation_ids: checked.revocation_ids,
    })
}

/// The rights of `token`'s authority block, after checking its signatures (nothing else: use
/// it to enumerate what to verify, never to grant).
pub fn read_rights(token: &str, keys: &KeySet) -> Result<Vec<Right>, TokenError> {
    let biscuit = parse(token, keys, MAX_TOKEN_BYTES)?;
    let mut authorizer = AuthorizerBuilder::new()
        .set_limits(run_limits())
        .build(&biscuit)
        .map_err(map_biscuit)?;
    Ok(authorizer
        .query::<_, (String, String), _>(parsed(&RIGHTS)?)?
        .into_iter()
        .map(|(tool, operation)| Right { tool, operation })
        .collect())
}

fn one<T>(mut rows: Vec<T>, what: &'static str) -> Result<T, TokenError> {
    if rows.len() == 1 {
        rows.pop().ok_or(TokenError::MissingFact(what))
    } else {
        Err(TokenError::MissingFact(what))
    }
}

/// Reads the authority block's facts (only the authority block is trusted for them), in two
/// queries: the single-valued facts together (exactly one of each, else one row would not
/// come back), then the rights.
fn read_authority(authorizer: &mut biscuit_auth::Authorizer) -> Result<Verified, TokenError> {
    type Facts = (
        i64,
        String,
        String,
        String,
        String,
        String,
        Vec<u8>,
        std::time::SystemTime,
    );
    let rows: Vec<Facts> = authorizer.query(parsed(&AUTHORITY)?)?;
    let (schema, mandate_id, principal_subject, principal_issuer, agent_id, task_id, _, expires) =
        one(rows, "mandate, principal, agent, task or expires")?;
    if schema != SCHEMA_VERSION {
        return Err(TokenError::Malformed);
    }
    let mut rights: Vec<Right> = authorizer
        .query::<_, (String, String), _>(parsed(&RIGHTS)?)?
        .into_iter()
        .map(|(tool, operation)| Right { tool, operation })
        .collect();
    rights.sort();
    Ok(Verified {
        mandate_id,
        principal_subject,
        principal_issuer,
        agent_id,
        task_id,
        hops: Vec::new(),
        rights,
        expires_at: DateTime::<Utc>::from(expires),
        revocation_ids: Vec::new(),
    })
}
