//! Issuing a mandate, shared by `POST /v1/mandates` and the RFC 8693 token endpoint: validate
//! the request, prove the human principal, evaluate the requested scope, sign, and record the
//! issuance with its audit event before the token is handed back. Refusals are audited too.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::api::agent_auth::Orchestrator;
use super::app::AppState;
use super::error::ApiError;
use super::limits::{retry_after_seconds, RateLimiter};
use super::model::agent::Agent;
use super::model::{Check, Grant};
use super::policy::{evaluate, mandate_ttl, Denial};
use super::store::snapshot::Inventory;
use super::store::{new_id, AuditOutcome, Issuance, NewAuditEvent, NewMandate, StoreError};
use super::telemetry::MintOutcome;
use crate::token::mint::{mint as mint_token, MandateSpec};
use crate::token::Right;
use tracing::Instrument;

/// Longest task description, in bytes.
pub const MAX_TASK_BYTES: usize = 4096;
/// Most tool entries in one requested scope.
pub const MAX_SCOPE_TOOLS: usize = 64;

/// What an orchestrator asks for.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The human principal's JWT.
    pub subject_token: String,
    /// What the task is, verbatim.
    pub task_description: String,
    /// The caller's own id for the task, if any.
    pub task_ref: Option<String>,
    /// The tool operations wanted.
    pub scope: Vec<Grant>,
    /// Wanted lifetime in seconds (default 15 minutes).
    pub ttl_seconds: Option<i64>,
}

/// Where a request came from, recorded with the issuance (never secrets).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestMeta {
    /// The endpoint used.
    pub endpoint: &'static str,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// The caller's `user-agent` (truncated).
    pub user_agent: Option<String>,
}

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
    /// The authority block's revocation id, hex.
    pub revocation_id: String,
}

impl MintRequest {
    fn check(&self, cap: u32) -> Result<(), ApiError> {
        let mut check = Check::new();
        if self.subject_token.is_empty() {
            check.fail("subject_token", "must not be empty");
        }
        if self.task_description.trim().is_empty() {
            check.fail("task.description", "must not be empty");
        } else if self.task_description.len() > MAX_TASK_BYTES {
            check.fail(
                "task.description",
                format!("must be at most {MAX_TASK_BYTES} bytes"),
            );
        } else if self.task_description.contains('\0') {
            check.fail("task.description", "must not contain NUL characters");
        }
        if let Some(task_ref) = &self.task_ref {
            check.text("task.ref", task_ref, 128, true);
        }
        if self.scope.is_empty() {
            check.fail("scope", "must request at least one tool operation");
        } else if self.scope.len() > MAX_SCOPE_TOOLS {
            check.fail(
                "scope",
                format!("must name at most {MAX_SCOPE_TOOLS} tools"),
            );
        } else {
            check.grants("scope", &self.scope);
        }
        if let Some(ttl) = self.ttl_seconds {
            check.ttl("ttl_seconds", ttl, cap);
        }
        check.finish()
    }
}

fn sha256(text: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .to_vec()
}

/// Records a refusal; a refusal stands even if it cannot be recorded.
async fn audit_denial(
    state: &AppState,
    agent: &Agent,
    now: DateTime<Utc>,
    details: serde_json::Value,
) {
    let event = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("agent:{}", agent.id),
        action: "mandate.denied".to_owned(),
        target: Some(format!("agent:{}", agent.id)),
        outcome: AuditOutcome::Denied,
        details,
    };
    if let Err(error) = state.store.append_audit(&event).await {
        tracing::error!(%error, "could not record a mint denial");
    }
}

/// Takes one mint from `caller`'s allowance, or answers 429 naming the `kind` and `name` of
/// who it is and when to retry.
fn throttle(limiter: &RateLimiter, kind: &str, name: &str, caller: &str) -> Result<(), ApiError> {
    limiter
        .take(caller, std::time::Instant::now())
        .map_err(|wait| {
            let seconds = retry_after_seconds(wait);
            let who = format!("{kind} {name}");
            tracing::warn!(who, retry_after = seconds, "mint rate limit reached");
            ApiError::TooManyRequests(
                seconds,
                format!("{who} has reached its mint rate limit; retry in {seconds} s"),
            )
        })
}

/// Mints a mandate for an authenticated, active orchestrator, and counts the outcome.
#[tracing::instrument(skip_all, fields(agent = %caller.agent.id))]
pub async fn mint(
    state: &AppState,
    caller: &Orchestrator,
    request: MintRequest,
    meta: RequestMeta,
) -> Result<Issued, ApiError> {
    let started = Instant::now();
    let result = decide(state, caller, request, meta).await;
    let (outcome, reason) = MintOutcome::of(&result);
    state.metrics.minted(outcome, reason, started.elapsed());
    result
}

/// Why [`issue`] did not issue.
enum Failure {
    /// The answer to give.
    Refused(ApiError),
    /// The inventory it decided on is no longer current: nothing was issued or audited.
    Stale,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Refused(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InventoryMoved => Failure::Stale,
            other => Failure::Refused(other.into()),
        }
    }
}

/// How many times a mint is decided before a changing inventory makes it give up (503).
const DECISIONS: usize = 3;

/// Decides on the inventory the caller was found in; when that turns out to have changed,
/// decides again on the current one, where the caller must still be an active orchestrator.
async fn decide(
    state: &AppState,
    caller: &Orchestrator,
    request: MintRequest,
    meta: RequestMeta,
) -> Result<Issued, ApiError> {
    let checked = request.check(state.config.max_ttl_seconds).and_then(|()| {
        throttle(
            &state.limits.agents,
            "agent",
            &caller.agent.id,
            &caller.agent.id,
        )
    });
    if let Err(refusal) = checked {
        // Answered only to a caller that still authenticates.
        let current = state.inventory.current(state.store.as_ref()).await?;
        return match current.orchestrator_with_secret(&caller.secret) {
            Some(_) => Err(refusal),
            None => Err(ApiError::Unauthorized(
                "unknown agent, suspended agent or wrong agent secret".to_owned(),
            )),
        };
    }
    let mut inventory = Arc::clone(&caller.inventory);
    let mut agent = caller.agent.clone();
    // The principal counted against its mint rate, once however often the mint is decided.
    let mut counted = None;
    for decision in 1..=DECISIONS {
        let attempt = issue(
            state,
            &agent,
            &inventory,
            &mut counted,
            request.clone(),
            meta.clone(),
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
                let message = format!(
                    "agent `{}` stopped being an active orchestrator, or its secret was \
                     changed, while the mandate was minted; nothing was issued",
                    agent.id
                );
                let now = state.clock.now();
                let details = json!({ "reason": "inventory_changed", "detail": message });
                audit_denial(state, &agent, now, details).await;
                return Err(ApiError::Conflict(message));
            }
        }
    }
    Err(ApiError::Unavailable(
        "the inventory kept changing while the mandate was minted; retry".to_owned(),
    ))
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

/// The steps of a mint decided on `inventory` (`counted` names the principal already counted
/// against its mint rate by an earlier decision of the same mint), each in its own span:
/// `jwt.validate`, `policy.evaluate`, `token.sign` and `store.commit`.
async fn issue(
    state: &AppState,
    agent: &Agent,
    inventory: &Inventory,
    counted: &mut Option<String>,
    request: MintRequest,
    meta: RequestMeta,
) -> Result<Issued, Failure> {
    let cap = state.config.max_ttl_seconds;
    let now = state.clock.now();
    // The development issuer is trusted only while the development provider runs.
    let issuers: Vec<_> = inventory
        .issuers
        .iter()
        .filter(|i| i.id != super::dev::DEV_ISSUER || state.dev_idp.is_some())
        .collect();
    let principal = match state
        .idp
        .verify(&request.subject_token, &issuers, &agent.id, now)
        .instrument(tracing::info_span!("jwt.validate"))
        .await
        .and_then(|principal| issued_after_cutoff(inventory, principal))
    {
        Ok(principal) => principal,
        Err(error) => {
            confirm(state, inventory).await?;
            audit_denial(
                state,
                agent,
                now,
                json!({ "reason": error.code(), "scope": request.scope }),
            )
            .await;
            return Err(Failure::Refused(match error {
                super::idp::IdpError::KeysUnavailable => ApiError::Unavailable(
                    "the issuer's keys cannot be fetched; retry later".to_owned(),
                ),
                other => ApiError::SubjectRejected(other),
            }));
        }
    };
    let evaluation = tracing::info_span!("policy.evaluate").in_scope(|| {
        evaluate(
            &principal,
            agent,
            &request.scope,
            &inventory.policies,
            &inventory.tools,
        )
    });
    let principal_key = format!("{}\n{}", principal.issuer_url, principal.subject);
    if counted.as_ref() != Some(&principal_key) {
        throttle(
            &state.limits.principals,
            "principal",
            &principal.subject,
            &principal_key,
        )?;
        // Once per mint, however often it is decided: a token of an issuer whose tokens mint
        // once is used up by this request, issued or refused.
        if let Some((jti, exp)) = &principal.single_use {
            let expires = DateTime::from_timestamp(*exp, 0).unwrap_or(now);
            if !state
                .store
                .use_subject_token(&principal.issuer_url, jti, expires)
                .await
                .map_err(|e| Failure::Refused(e.into()))?
            {
                audit_denial(state, agent, now, json!({ "reason": "token_replayed" })).await;
                return Err(Failure::Refused(ApiError::SubjectRejected(
                    super::idp::IdpError::Replayed,
                )));
            }
        }
        *counted = Some(principal_key);
    }
    let principal_json = json!({
        "subject": principal.subject, "issuer": principal.issuer_url, "groups": principal.groups,
    });
    if !evaluation.denied.is_empty() {
        confirm(state, inventory).await?;
        audit_denial(
            state,
            agent,
            now,
            json!({
                "reason": "scope_denied", "principal": principal_json,
                "scope": request.scope, "denied": evaluation.denied,
            }),
        )
        .await;
        return Err(ApiError::Denied(evaluation.denied).into());
    }
    let Some(policy_ttl) = evaluation.policy_ttl else {
        confirm(state, inventory).await?;
        return Err(ApiError::Denied(Vec::<Denial>::new()).into());
    };
    let requested_ttl = request.ttl_seconds.and_then(|t| u32::try_from(t).ok());
    let ttl = mandate_ttl(requested_ttl, policy_ttl, agent.max_ttl_seconds, cap);
    let mandate_id = new_id(now);
    let task_id = request
        .task_ref
        .clone()
        .unwrap_or_else(|| format!("task-{mandate_id}"));
    let expires_at = now + Duration::seconds(i64::from(ttl));
    let root = state.keys.active();
    let spec = MandateSpec {
        mandate_id: mandate_id.to_string(),
        task_id: task_id.clone(),
        task_digest: sha256(&request.task_description),
        principal_subject: principal.subject.clone(),
        principal_issuer: principal.issuer_url.clone(),
        agent_id: agent.id.clone(),
        rights: evaluation.granted.clone(),
        expires_at,
    };
    let minted = tracing::info_span!("token.sign", kid = root.kid)
        .in_scope(|| mint_token(&spec, root.keypair(), root.kid))
        .map_err(|e| Failure::Refused(ApiError::Internal(Box::new(e))))?;
    let issuance = Issuance {
        id: mandate_id,
        agent_id: agent.id.clone(),
        principal_subject: principal.subject.clone(),
        principal_issuer: principal.issuer_url.clone(),
        task_id: task_id.clone(),
        task_description: request.task_description,
        task_digest: spec.task_digest,
        scope: evaluation.granted.clone(),
        root_kid: root.kid,
        revocation_id: minted.revocation_id.clone(),
        issued_at: now,
        expires_at,
        request_meta: issuance_meta(&meta, &evaluation.granted_by),
    };
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("agent:{}", agent.id),
        action: "mandate.issued".to_owned(),
        target: Some(format!("mandate:{mandate_id}")),
        outcome: AuditOutcome::Success,
        details: json!({
            "principal": principal_json, "agent": agent.id, "task_id": task_id,
            "scope": evaluation.granted, "expires_at": expires_at, "kid": root.kid,
            "revocation_id": hex::encode(&minted.revocation_id),
        }),
    };
    // Nothing leaves unless its record is committed.
    let committed = state
        .metrics
        .commit(
            "insert_mandate",
            state.writers.mandates.submit(NewMandate {
                issuance,
                audit,
                decided_at: Some(inventory.generation),
            }),
        )
        .await;
    let refused = match &committed {
        Err(StoreError::LimitReached(message)) => Some(("live_mandate_limit", message)),
        Err(StoreError::NoLongerActive(message)) => Some(("inventory_changed", message)),
        _ => None,
    };
    if let Some((reason, message)) = refused {
        audit_denial(
            state,
            agent,
            now,
            json!({
                "reason": reason, "principal": principal_json,
                "scope": evaluation.granted, "detail": message,
            }),
        )
        .await;
    }
    committed?;
    Ok(Issued {
        token: minted.token,
        mandate_id,
        expires_at,
        scope: evaluation.granted,
        revocation_id: hex::encode(minted.revocation_id),
    })
}

/// What an issuance row keeps beside the mandate: the request's metadata and, under
/// `granted_by`, the policies behind each right (read again when a policy is disabled or
/// deleted).
fn issuance_meta(meta: &RequestMeta, granted_by: &[super::policy::GrantedBy]) -> serde_json::Value {
    let mut value = serde_json::to_value(meta).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("granted_by".to_owned(), json!(granted_by));
    }
    value
}

/// `principal`, unless its mandates were revoked at or after its subject token was issued (a
/// token stating no `iat` is refused once there is a cut-off).
fn issued_after_cutoff(
    inventory: &Inventory,
    principal: super::policy::Principal,
) -> Result<super::policy::Principal, super::idp::IdpError> {
    match inventory.cutoff(&principal.issuer_url, &principal.subject) {
        Some(cutoff)
            if principal
                .issued_at
                .is_none_or(|iat| iat <= cutoff.timestamp()) =>
        {
            Err(super::idp::IdpError::IssuedBeforeRevocation)
        }
        _ => Ok(principal),
    }
}
