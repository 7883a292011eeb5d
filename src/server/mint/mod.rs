//! Issuing a mandate, shared by `POST /v1/mandates` and the RFC 8693 token endpoint. The steps,
//! in the order the README's walkthrough tells them:
//!
//! 1. [`MintRequest::check`]: the request's fields, and the orchestrator's mint rate.
//! 2. [`prove_principal`]: the human's token, against the trusted issuers.
//! 3. [`evaluate_scope`]: the requested operations, against the agent's ceiling, the tools and
//!    the delegation policies (pure).
//! 4. [`count_principal`]: the principal's mint rate, and a single-use token used up.
//! 5. [`sign`]: the authority block, with the active root key.
//! 6. [`record`]: the issuance and its audit event, committed before the token is handed back.
//!
//! Each step decides on one snapshot of the inventory; [`mint`] decides again when that
//! snapshot turned out to be stale. Refusals are audited too.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::caller::Orchestrator;
use super::idp::IdpError;
use super::limits::{retry_after_seconds, RateLimiter};
use super::model::agent::Agent;
use super::model::Invalid;
use super::policy::{mandate_ttl, Denial, Principal};
use super::state::AppState;
use super::store::snapshot::Inventory;
use super::store::{new_id, StoreError};
use super::telemetry::MintOutcome;
use crate::server::model::approval::ApprovalRequest;
use crate::token::constraints::{stated, ArgConstraint, MAX_CONSTRAINTS};
use crate::token::mint::{mint as mint_token, MandateSpec, Minted};
use crate::token::pop::HolderKey;
use crate::token::{Right, TokenError};
use tracing::Instrument;

mod approved;
mod record;
mod request;
mod scope;
pub use record::RequestMeta;
use record::{audit_denial, issuance_meta, record_issuance, Record};
pub use request::{MintRequest, MAX_SCOPE_TOOLS, MAX_TASK_BYTES};
use scope::evaluate_scope;

/// A minted mandate, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Issued {
    /// The mandate: a Biscuit token, base64url.
    pub token: String,
    /// Its id.
    pub mandate_id: Uuid,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The granted rights.
    pub scope: Vec<Right>,
    /// The constraints on the granted operations' arguments (from the agent's ceiling, the
    /// policy and the request), all of which the mandate enforces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ArgConstraint>,
    /// The authority block's revocation id, hex.
    pub revocation_id: String,
    /// The RFC 7638 thumbprint of the key the mandate is bound to: every use needs a proof
    /// signed by that key. Absent for a bearer mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_key: Option<String>,
    /// The human approvals the mandate carries for the rights a policy gates behind approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::token::approval::Approval>,
}

/// What a mint answers: the mandate, or the approval request it waits on.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Minted and recorded.
    Issued(Issued),
    /// A policy gates a requested operation behind human approval: nothing is minted until the
    /// request is approved, and then all of it is.
    Pending(Box<crate::server::model::approval::ApprovalRequest>),
}

/// Why a mint issued nothing. The edge (`error.rs`) turns each into a status.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The request's fields; each is named.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// An orchestrator or a principal has used its mint allowance.
    #[error("{who} has reached its mint rate limit; retry in {retry_after} s")]
    RateLimited {
        /// `agent ID` or `principal SUBJECT`.
        who: String,
        /// Seconds until a mint is allowed again.
        retry_after: u64,
    },
    /// The caller no longer authenticates (its secret was rotated, or it was suspended).
    #[error("unknown agent, suspended agent or wrong agent secret")]
    Unauthenticated,
    /// The human principal's token was refused, or its issuer's keys cannot be fetched.
    #[error(transparent)]
    Subject(IdpError),
    /// The requested scope is not granted; every denied operation is listed (none when no
    /// policy applies at all).
    #[error("requested operations are denied")]
    Denied(Vec<Denial>),
    /// The orchestrator stopped being active, or its secret changed, while the mint decided.
    #[error(
        "agent `{0}` stopped being an active orchestrator, or its secret was changed, while \
         the mandate was minted; nothing was issued"
    )]
    OrchestratorChanged(String),
    /// The inventory changed under every decision.
    #[error("the inventory kept changing while the mandate was minted; retry")]
    InventoryKeptChanging,
    /// The store refused or failed (a live-mandate limit reached included).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token could not be signed (a bug).
    #[error("the mandate could not be signed")]
    Sign(#[source] TokenError),
    /// An approval request cannot be collected: unknown to this orchestrator, or not approved.
    #[error(transparent)]
    Approval(#[from] crate::server::approvals::ApprovalError),
}

impl MintError {
    /// How the metrics count this refusal, and for a denial its reason.
    fn outcome(&self) -> (MintOutcome, Option<&'static str>) {
        match self {
            MintError::Invalid(_) => (MintOutcome::Invalid, None),
            MintError::RateLimited { .. } => (MintOutcome::RateLimited, None),
            MintError::Subject(IdpError::KeysUnavailable)
            | MintError::InventoryKeptChanging
            | MintError::Store(StoreError::Unavailable(_) | StoreError::InventoryMoved) => {
                (MintOutcome::Unavailable, None)
            }
            MintError::Subject(error) => (MintOutcome::Denied, Some(error.code())),
            MintError::Denied(_) => (MintOutcome::Denied, Some("scope_denied")),
            MintError::Approval(_) => (MintOutcome::Denied, Some("approval")),
            MintError::Unauthenticated
            | MintError::OrchestratorChanged(_)
            | MintError::Store(_)
            | MintError::Sign(_) => (MintOutcome::Error, None),
        }
    }
}

fn sha256(text: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

/// Takes one mint from `caller`'s allowance, or refuses naming the `kind` and `name` of who it
/// is and when to retry.
fn throttle(
    state: &AppState,
    limiter: &RateLimiter,
    kind: &str,
    name: &str,
    caller: &str,
) -> Result<(), MintError> {
    limiter.take(caller, state.clock.instant()).map_err(|wait| {
        let retry_after = retry_after_seconds(wait);
        let who = format!("{kind} {name}");
        tracing::warn!(who, retry_after, "mint rate limit reached");
        MintError::RateLimited { who, retry_after }
    })
}

/// Mints a mandate for an authenticated, active orchestrator, and counts the outcome.
#[tracing::instrument(skip_all, fields(agent = %caller.agent.id))]
pub async fn mint(
    state: &AppState,
    caller: &Orchestrator,
    request: MintRequest,
    meta: RequestMeta,
) -> Result<Outcome, MintError> {
    let started = state.clock.instant();
    let result = decide_until_current(state, caller, request, meta, None).await;
    count(state, started, &result);
    result
}

/// Mints the mandate an approved request holds, for the orchestrator that asked for it, once:
/// decided again on the current inventory (the principal as the request proved them, unless
/// their mandates were revoked since), carrying the approvals.
#[tracing::instrument(skip_all, fields(agent = %caller.agent.id, approval = %id))]
pub async fn collect(
    state: &AppState,
    caller: &Orchestrator,
    id: Uuid,
) -> Result<Issued, MintError> {
    let started = state.clock.instant();
    let result = async {
        let request = crate::server::approvals::collectable(state, &caller.agent.id, id).await?;
        let held = &request.held;
        let holder_key = match &held.holder_key {
            Some(jwk) => Some(HolderKey::from_jwk(jwk).map_err(|e| {
                MintError::Store(StoreError::Corrupt(format!("held holder key: {e}")))
            })?),
            None => None,
        };
        let mint = MintRequest {
            subject_token: String::new(),
            task_description: held.task_description.clone(),
            task_ref: held.task_ref.clone(),
            scope: held.scope.clone(),
            ttl_seconds: held.ttl_seconds,
            holder_key,
        };
        let meta = RequestMeta {
            endpoint: "/v1/approvals/{id}/mandate",
            ..RequestMeta::default()
        };
        decide_until_current(state, caller, mint, meta, Some(&request)).await
    }
    .await;
    count(state, started, &result);
    match result? {
        Outcome::Issued(issued) => Ok(issued),
        Outcome::Pending(_) => Err(MintError::InventoryKeptChanging),
    }
}

/// Counts a mint's outcome and time in the metrics.
fn count(state: &AppState, started: std::time::Instant, result: &Result<Outcome, MintError>) {
    let (outcome, reason) = match result {
        Ok(Outcome::Issued(_)) => (MintOutcome::Issued, None),
        Ok(Outcome::Pending(_)) => (MintOutcome::Pending, None),
        Err(error) => error.outcome(),
    };
    let took = state.clock.instant().saturating_duration_since(started);
    state.metrics.minted(outcome, reason, took);
}

/// Why [`decide`] did not issue.
enum Failure {
    /// The answer to give.
    Refused(MintError),
    /// The inventory it decided on is no longer current: nothing was issued or audited.
    Stale,
}

impl<E: Into<MintError>> From<E> for Failure {
    fn from(error: E) -> Self {
        match error.into() {
            MintError::Store(StoreError::InventoryMoved) => Failure::Stale,
            other => Failure::Refused(other),
        }
    }
}

/// How many times a mint is decided before a changing inventory makes it give up (503).
const DECISIONS: usize = 3;

/// Checks the request, then decides on the inventory the caller was found in; when that turns
/// out to have changed, decides again on the current one, where the caller must still be an
/// active orchestrator.
async fn decide_until_current(
    state: &AppState,
    caller: &Orchestrator,
    request: MintRequest,
    meta: RequestMeta,
    approved: Option<&ApprovalRequest>,
) -> Result<Outcome, MintError> {
    // An approved request's mint was checked and counted when it was requested.
    let checked = match approved {
        Some(_) => Ok(()),
        None => request
            .check(state.config.max_ttl_seconds)
            .map_err(MintError::from)
            .and_then(|()| {
                let id = &caller.agent.id;
                throttle(state, &state.limits.agents, "agent", id, id)
            }),
    };
    if let Err(refusal) = checked {
        // Answered only to a caller that still authenticates.
        let current = state.inventory.current(state.store.as_ref()).await?;
        return match current.orchestrator_with_secret(&caller.secret) {
            Some(_) => Err(refusal),
            None => Err(MintError::Unauthenticated),
        };
    }
    let mut inventory = Arc::clone(&caller.inventory);
    let mut agent = caller.agent.clone();
    // The principal counted against its mint rate, once however often the mint is decided.
    let mut counted = None;
    for decision in 1..=DECISIONS {
        let attempt = decide(
            state,
            &agent,
            &inventory,
            &mut counted,
            &request,
            &meta,
            approved,
        );
        match attempt.await {
            Ok(issued) => return Ok(issued),
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Stale) if decision == DECISIONS => break,
            Err(Failure::Stale) => {}
        }
        inventory = state.inventory.current(state.store.as_ref()).await?;
        match inventory.orchestrator_with_secret(&caller.secret) {
            Some(now) => agent = now.clone(),
            None => {
                let error = MintError::OrchestratorChanged(agent.id.clone());
                let details = json!({ "reason": "inventory_changed", "detail": error.to_string() });
                audit_denial(state, &agent, state.clock.now(), details).await;
                return Err(error);
            }
        }
    }
    Err(MintError::InventoryKeptChanging)
}

/// A refusal decided on `inventory`, or [`Failure::Stale`] if that is no longer current.
async fn confirm(state: &AppState, inventory: &Inventory) -> Result<(), Failure> {
    if state
        .inventory
        .is_current(state.store.as_ref(), inventory)
        .await?
    {
        Ok(())
    } else {
        Err(Failure::Stale)
    }
}

/// One decision on `inventory`: the steps of the module's list from the principal on, each in
/// its own span (`jwt.validate`, `policy.evaluate`, `token.sign`, `store.commit`). `counted`
/// names the principal already counted against its mint rate by an earlier decision.
#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &AppState,
    agent: &Agent,
    inventory: &Inventory,
    counted: &mut Option<String>,
    request: &MintRequest,
    meta: &RequestMeta,
    approved: Option<&ApprovalRequest>,
) -> Result<Outcome, Failure> {
    let now = state.clock.now();
    let principal = match approved {
        None => prove_principal(state, agent, inventory, request, now).await?,
        Some(approval) => approved::principal(inventory, approval)
            .map_err(|error| Failure::Refused(error.into()))?,
    };
    let bound = request.holder_key.is_some();
    let evaluation = evaluate_scope(agent, inventory, &principal, &request.scope, bound);
    if approved.is_none() {
        count_principal(state, agent, &principal, counted, now).await?;
    }
    let principal_json = json!({
        "subject": principal.subject, "issuer": principal.issuer_url, "groups": principal.groups,
    });
    if !evaluation.denied.is_empty() {
        confirm(state, inventory).await?;
        let details = json!({
            "reason": "scope_denied", "principal": principal_json,
            "scope": request.scope, "denied": evaluation.denied,
        });
        audit_denial(state, agent, now, details).await;
        return Err(Failure::Refused(MintError::Denied(evaluation.denied)));
    }
    let Some(policy_ttl) = evaluation.policy_ttl else {
        confirm(state, inventory).await?;
        return Err(Failure::Refused(MintError::Denied(Vec::new())));
    };
    if stated(&evaluation.constraints) > MAX_CONSTRAINTS {
        return Err(Failure::Refused(MintError::Invalid(Invalid::field(
            "scope",
            format!(
                "the granted operations carry more than {MAX_CONSTRAINTS} argument constraints"
            ),
        ))));
    }
    match approved {
        None => {
            let arguments = approved::bound_arguments(request, &evaluation.gated)
                .map_err(|e| Failure::Refused(e.into()))?;
            if !evaluation.gated.is_empty() {
                confirm(state, inventory).await?;
                let request_meta = issuance_meta(meta, &evaluation.granted_by);
                let held = approved::hold(
                    state,
                    agent,
                    inventory,
                    &principal,
                    request,
                    evaluation.gated.iter().zip(arguments).collect(),
                    request_meta,
                )
                .await?;
                return Ok(Outcome::Pending(Box::new(held)));
            }
        }
        Some(approval) => {
            if let Err(right) = approved::covers(approval, &evaluation.gated) {
                confirm(state, inventory).await?;
                return Err(Failure::Refused(
                    crate::server::approvals::ApprovalError::GatedSince(right).into(),
                ));
            }
        }
    }
    let requested_ttl = request.ttl_seconds.and_then(|t| u32::try_from(t).ok());
    let cap = state.config.max_ttl_seconds;
    let ttl = mandate_ttl(requested_ttl, policy_ttl, agent.max_ttl_seconds, cap);
    let mut expires_at = now + Duration::seconds(i64::from(ttl));
    if let Some(approval) = approved {
        expires_at = expires_at.min(approved::latest_expiry(approval));
    }
    let mandate_id = new_id(now);
    let task_id = match (&request.task_ref, approved) {
        (Some(task_ref), _) => task_ref.clone(),
        (None, Some(approval)) => format!("task-{}", approval.id),
        (None, None) => format!("task-{mandate_id}"),
    };
    let spec = MandateSpec {
        mandate_id: mandate_id.to_string(),
        task_id,
        task_digest: sha256(&request.task_description),
        principal_subject: principal.subject.clone(),
        principal_issuer: principal.issuer_url.clone(),
        agent_id: agent.id.clone(),
        rights: evaluation.granted.clone(),
        expires_at,
        constraints: evaluation.constraints.clone(),
        holder_key: request.holder_key.as_ref().map(HolderKey::thumbprint),
        approvals: approved.map(approved::carried).unwrap_or_default(),
    };
    let (minted, kid) = sign(state, &spec)?;
    let issued = Issued {
        token: minted.token,
        mandate_id,
        expires_at: spec.expires_at,
        scope: evaluation.granted.clone(),
        constraints: evaluation.constraints.clone(),
        revocation_id: hex::encode(&minted.revocation_id),
        holder_key: spec.holder_key.clone(),
        approvals: spec.approvals.clone(),
    };
    let mut request_meta = issuance_meta(meta, &evaluation.granted_by);
    if let (Some(object), Some(approval)) = (request_meta.as_object_mut(), approved) {
        object.insert("approval".to_owned(), json!(approval.id));
        object.insert("approvals".to_owned(), json!(spec.approvals));
    }
    let record = Record {
        mandate_id,
        spec,
        kid,
        revocation_id: minted.revocation_id,
        task_description: request.task_description.clone(),
        request_meta,
        principal: principal_json,
        decided_at: inventory.generation,
        approval: approved.map(|a| a.id),
        now,
    };
    record_issuance(state, agent, record).await?;
    Ok(Outcome::Issued(issued))
}

/// Step 2: the human principal, proven by their token against the trusted issuers (the
/// development issuer only while the development provider runs), and not offboarded since the
/// token was issued. A refusal is audited.
async fn prove_principal(
    state: &AppState,
    agent: &Agent,
    inventory: &Inventory,
    request: &MintRequest,
    now: DateTime<Utc>,
) -> Result<Principal, Failure> {
    let issuers: Vec<_> = inventory
        .issuers
        .iter()
        .filter(|i| i.id != super::dev::DEV_ISSUER || state.dev_idp.is_some())
        .collect();
    let proven = state
        .idp
        .verify(&request.subject_token, &issuers, Some(&agent.id), now)
        .instrument(tracing::info_span!("jwt.validate"))
        .await
        .and_then(|principal| issued_after_cutoff(inventory, principal));
    match proven {
        Ok(principal) => Ok(principal),
        Err(error) => {
            confirm(state, inventory).await?;
            let details = json!({ "reason": error.code(), "scope": request.scope });
            audit_denial(state, agent, now, details).await;
            Err(Failure::Refused(MintError::Subject(error)))
        }
    }
}

/// Step 4: one mint from the principal's allowance, once however often the mint is decided;
/// and a token of an issuer whose tokens mint once is used up by this request, issued or
/// refused.
async fn count_principal(
    state: &AppState,
    agent: &Agent,
    principal: &Principal,
    counted: &mut Option<String>,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let key = format!("{}\n{}", principal.issuer_url, principal.subject);
    if counted.as_ref() == Some(&key) {
        return Ok(());
    }
    let limiter = &state.limits.principals;
    throttle(state, limiter, "principal", &principal.subject, &key)?;
    if let Some((jti, exp)) = &principal.single_use {
        let expires = DateTime::from_timestamp(*exp, 0).unwrap_or(now);
        let first_use = state
            .store
            .use_subject_token(&principal.issuer_url, jti, expires)
            .await
            .map_err(|e| Failure::Refused(e.into()))?;
        if !first_use {
            audit_denial(state, agent, now, json!({ "reason": "token_replayed" })).await;
            return Err(Failure::Refused(MintError::Subject(IdpError::Replayed)));
        }
    }
    *counted = Some(key);
    Ok(())
}

/// Step 5: the authority block, signed with the active root key; returns the token and the
/// key's id.
fn sign(state: &AppState, spec: &MandateSpec) -> Result<(Minted, u32), Failure> {
    let root = state.keys.active();
    let minted = tracing::info_span!("token.sign", kid = root.kid)
        .in_scope(|| mint_token(spec, root.keypair(), root.kid))
        .map_err(|e| Failure::Refused(MintError::Sign(e)))?;
    Ok((minted, root.kid))
}

/// `principal`, unless its mandates were revoked at or after its subject token was issued (a
/// token stating no `iat` is refused once there is a cut-off).
fn issued_after_cutoff(inventory: &Inventory, principal: Principal) -> Result<Principal, IdpError> {
    match inventory.cutoff(&principal.issuer_url, &principal.subject) {
        Some(cutoff)
            if principal
                .issued_at
                .is_none_or(|iat| iat <= cutoff.timestamp()) =>
        {
            Err(IdpError::IssuedBeforeRevocation)
        }
        _ => Ok(principal),
    }
}
