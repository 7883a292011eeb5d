//! Human approvals of gated operations: approvers proving who they are with their own IdP
//! token, listing what waits for them and deciding; an orchestrator waiting on its request; a
//! gateway recording the one call an argument-bound approval is for. A mint holds the request
//! (`mint::approved`) and mints it once approved ([`crate::server::mint::collect`]).
//!
//! The rules:
//! - An approver's token must be valid for a trusted issuer and issued after the request was
//!   made: the orchestrator holds the principal's earlier tokens, and must not be able to
//!   approve with one of them.
//! - An approver counts toward each gated right whose rule names them (by subject or group, at
//!   the rule's issuer); the principal counts only where the rule says so, or where the rule is
//!   the principal's own approval. Each approver decides once; one denial denies.
//! - Decisions on a request that is no longer pending (decided, expired) are refused.

pub mod webhook;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::idp::IdpError;
use super::model::approval::{
    ApprovalRequest, ApprovalState, Approvers, Decision, GatedRight, Verdict, MAX_REASON,
};
use super::model::Validation;
use super::policy::Principal;
use super::state::AppState;
use super::store::{new_id, ApprovalUse, AuditOutcome, NewAuditEvent, StoreError};
use crate::token::approval::Approver;
use crate::token::Right;

/// How often, in seconds, a waiter is asked to poll.
pub const POLL_INTERVAL: u64 = 5;
/// How many of the oldest pending requests an approver's list is drawn from.
pub const MAX_LISTED: u32 = 1000;

/// Why an approval operation refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such request (for this caller).
    #[error("no approval request {0}")]
    NotFound(Uuid),
    /// The approver's token was refused.
    #[error(transparent)]
    Approver(IdpError),
    /// The approver may not decide on this request; says why.
    #[error("{0}")]
    NotEligible(String),
    /// The request is not in a state that allows this; says which.
    #[error("approval request {id} is {state}{detail}")]
    State {
        /// The request.
        id: Uuid,
        /// Its state.
        state: &'static str,
        /// More about it.
        detail: String,
    },
    /// The request was denied: who denied, and why.
    #[error("approval request {id} was denied ({reasons})")]
    Denied {
        /// The request.
        id: Uuid,
        /// `denied by SUBJECT: REASON`, each.
        reasons: String,
    },
    /// A right the request was not approved for is gated now, or its rule changed.
    #[error(
        "`{}` `{}` needs an approval this request was not made for (its policy or rule changed \
         since); request the mandate anew",
        .0.tool, .0.operation
    )]
    GatedSince(Right),
    /// The principal's mandates were revoked after the request was made.
    #[error("the principal's mandates were revoked after approval request {0} was made")]
    PrincipalRevoked(Uuid),
    /// A field of the request.
    #[error(transparent)]
    Invalid(#[from] super::model::Invalid),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An approval request as its orchestrator and its approvers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalView {
    /// Its id (also CIBA's `auth_req_id`).
    pub id: Uuid,
    /// `pending`, `approved`, `denied`, `expired` or `issued`.
    pub state: ApprovalState,
    /// Who, for which task, which operations and arguments.
    pub binding_message: String,
    /// The orchestrator that asked.
    pub agent: String,
    /// The principal it would act for.
    pub principal: Approver,
    /// The task, verbatim.
    pub task: String,
    /// The operations that need approval, with who may approve them.
    #[schema(value_type = Vec<Object>)]
    pub gated: Vec<GatedRight>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops waiting (and an approval stops being collectable).
    pub expires_at: DateTime<Utc>,
    /// When it was approved or denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Every decision so far.
    pub decisions: Vec<Decision>,
    /// The mandate issued on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<Uuid>,
    /// Where to poll its state.
    pub poll: String,
    /// Where to stream its state (Server-Sent Events).
    pub stream: String,
    /// Where its orchestrator collects the mandate once approved.
    pub mandate: String,
    /// Seconds between polls.
    pub interval: u64,
}

impl ApprovalView {
    /// `request` as it stands at `now`.
    pub fn of(request: &ApprovalRequest, now: DateTime<Utc>) -> Self {
        let base = format!("/v1/approvals/{}", request.id);
        ApprovalView {
            id: request.id,
            state: request.state_at(now),
            binding_message: request.binding_message.clone(),
            agent: request.agent_id.clone(),
            principal: Approver {
                subject: request.principal_subject.clone(),
                issuer: request.principal_issuer.clone(),
            },
            task: request.held.task_description.clone(),
            gated: request.gated.clone(),
            created_at: request.created_at,
            expires_at: request.expires_at,
            decided_at: request.decided_at,
            decisions: request.decisions.clone(),
            mandate_id: request.mandate_id,
            stream: format!("{base}/events"),
            mandate: format!("{base}/mandate"),
            poll: base,
            interval: POLL_INTERVAL,
        }
    }
}

/// What approvers read before deciding: who asks, for whom, which task, which operations and
/// arguments. Bounded: the task and the arguments are cut at 200 characters each, the whole at
/// [`MAX_BINDING_MESSAGE`].
pub fn binding_message(principal: &str, agent: &str, task: &str, gated: &[GatedRight]) -> String {
    let cut = |text: &str| -> String {
        let mut out: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
            out.push('…');
        }
        out
    };
    let operations: Vec<String> = gated
        .iter()
        .map(|g| match &g.arguments {
            Some(arguments) => format!(
                "{} {} {}",
                g.tool,
                g.operation,
                cut(&crate::token::canonical::canonical(arguments))
            ),
            None => format!("{} {}", g.tool, g.operation),
        })
        .collect();
    let message = format!(
        "{agent} asks to {} for {principal}, for the task \"{}\"",
        operations.join(", "),
        cut(task)
    );
    if message.chars().count() <= MAX_BINDING_MESSAGE {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_BINDING_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

/// Longest binding message, in characters.
pub const MAX_BINDING_MESSAGE: usize = 1024;

/// Announces a request's change to the policies' webhooks (in the background).
pub fn announce(state: &AppState, request: &ApprovalRequest, event: &'static str) {
    let now = state.clock.now();
    let mut urls: Vec<&str> = request
        .gated
        .iter()
        .filter_map(|g| g.rule.webhook.as_deref())
        .collect();
    urls.sort_unstable();
    urls.dedup();
    if urls.is_empty() {
        return;
    }
    let body = json!({
        "type": event, "sent_at": now, "approval": ApprovalView::of(request, now),
    });
    for url in urls {
        webhook::deliver(state, url, &body, now);
    }
}

/// The approver behind `token`: valid for an active trusted issuer (the development issuer
/// only while it runs), not cut off, its `iat` stated; a single-use token is used up.
pub async fn approver(state: &AppState, token: &str) -> Result<Principal, ApprovalError> {
    let now = state.clock.now();
    let inventory = state.inventory.current(state.store.as_ref()).await?;
    let issuers: Vec<_> = inventory
        .issuers
        .iter()
        .filter(|i| i.id != super::dev::DEV_ISSUER || state.dev_idp.is_some())
        .collect();
    let principal = state
        .idp
        .verify(token, &issuers, None, now)
        .await
        .map_err(ApprovalError::Approver)?;
    // A token issued to an agent's client is the agent's to present, never an approval.
    if let Some(client) = &principal.client {
        if inventory.agent_exists(client) {
            return Err(ApprovalError::NotEligible(format!(
                "this token was issued to agent `{client}`: approve with a token of your own"
            )));
        }
    }
    let Some(issued_at) = principal.issued_at else {
        return Err(ApprovalError::Approver(IdpError::Malformed(
            "an approver's token must state when it was issued (iat)",
        )));
    };
    if inventory
        .cutoff(&principal.issuer_url, &principal.subject)
        .is_some_and(|cutoff| issued_at <= cutoff.timestamp())
    {
        return Err(ApprovalError::Approver(IdpError::IssuedBeforeRevocation));
    }
    if let Some((jti, exp)) = &principal.single_use {
        let expires = DateTime::from_timestamp(*exp, 0).unwrap_or(now);
        if !state
            .store
            .use_subject_token(&principal.issuer_url, jti, expires)
            .await?
        {
            return Err(ApprovalError::Approver(IdpError::Replayed));
        }
    }
    Ok(principal)
}

/// Why `approver` may not approve `gated` of `request`, if they may not.
fn ineligible(
    gated: &GatedRight,
    approver: &Principal,
    request: &ApprovalRequest,
) -> Option<String> {
    let is_principal = approver.subject == request.principal_subject
        && approver.issuer_url == request.principal_issuer;
    let what = format!("`{}` `{}`", gated.tool, gated.operation);
    if approver.issuer_url != gated.approver_issuer {
        return Some(format!(
            "{what} is approved by subjects of {}, not of {}",
            gated.approver_issuer, approver.issuer_url
        ));
    }
    match &gated.rule.approvers {
        Approvers::Principal(_) if is_principal => None,
        Approvers::Principal(_) => Some(format!(
            "{what} is approved by the principal {} only",
            request.principal_subject
        )),
        Approvers::Named(named) => {
            let named_here = named.subjects.contains(&approver.subject)
                || named.groups.iter().any(|g| approver.groups.contains(g));
            if !named_here {
                Some(format!(
                    "policy `{}` does not name {} among the approvers of {what}",
                    gated.policy, approver.subject
                ))
            } else if is_principal && !gated.rule.principal_counts {
                Some(format!(
                    "policy `{}` does not let the principal approve their own {what}",
                    gated.policy
                ))
            } else {
                None
            }
        }
    }
}

/// The gated rights of `request` that `approver` counts toward, or why none.
fn counts_for(request: &ApprovalRequest, approver: &Principal) -> Result<Vec<Right>, String> {
    let mut rights = Vec::new();
    let mut reasons = Vec::new();
    for gated in &request.gated {
        match ineligible(gated, approver, request) {
            None => rights.push(Right {
                tool: gated.tool.clone(),
                operation: gated.operation.clone(),
            }),
            Some(reason) => reasons.push(reason),
        }
    }
    if rights.is_empty() {
        Err(reasons.join("; "))
    } else {
        Ok(rights)
    }
}

/// The requests waiting at `now` for `approver`'s decision: pending, one of its gated rights
/// theirs to approve, not yet decided by them.
pub async fn waiting_for(
    state: &AppState,
    approver: &Principal,
) -> Result<Vec<ApprovalView>, ApprovalError> {
    let now = state.clock.now();
    let me = Approver {
        subject: approver.subject.clone(),
        issuer: approver.issuer_url.clone(),
    };
    Ok(state
        .store
        .pending_approvals(now, MAX_LISTED)
        .await?
        .into_iter()
        .filter(|r| counts_for(r, approver).is_ok())
        .filter(|r| !r.decisions.iter().any(|d| d.approver == me))
        .map(|r| ApprovalView::of(&r, now))
        .collect())
}

/// One request, for an approver who may decide on it, or who already did.
pub async fn shown_to_approver(
    state: &AppState,
    approver: &Principal,
    id: Uuid,
) -> Result<ApprovalView, ApprovalError> {
    let request = state
        .store
        .approval(id)
        .await?
        .ok_or(ApprovalError::NotFound(id))?;
    let decided = request.decisions.iter().any(|d| {
        d.approver.subject == approver.subject && d.approver.issuer == approver.issuer_url
    });
    if !decided {
        counts_for(&request, approver).map_err(ApprovalError::NotEligible)?;
    }
    Ok(ApprovalView::of(&request, state.clock.now()))
}

/// One request, for the orchestrator that made it (any other gets "not found").
pub async fn shown_to_agent(
    state: &AppState,
    agent: &str,
    id: Uuid,
) -> Result<ApprovalRequest, ApprovalError> {
    match state.store.approval(id).await? {
        Some(request) if request.agent_id == agent => Ok(request),
        _ => Err(ApprovalError::NotFound(id)),
    }
}

/// A request `agent` may collect its mandate from now: its own, and approved.
pub async fn collectable(
    state: &AppState,
    agent: &str,
    id: Uuid,
) -> Result<ApprovalRequest, ApprovalError> {
    let request = shown_to_agent(state, agent, id).await?;
    match request.state_at(state.clock.now()) {
        ApprovalState::Approved => Ok(request),
        other => Err(not_collectable(&request, other)),
    }
}

/// Why a request in `state` gives no mandate.
pub fn not_collectable(request: &ApprovalRequest, state: ApprovalState) -> ApprovalError {
    let detail = match state {
        ApprovalState::Pending => {
            format!(": waiting for approval; poll again in {POLL_INTERVAL} s or stream its events")
        }
        ApprovalState::Denied => {
            let reasons: Vec<String> = request
                .decisions
                .iter()
                .filter(|d| d.verdict == Verdict::Deny)
                .map(|d| format!("denied by {}: {}", d.approver.subject, d.reason))
                .collect();
            return ApprovalError::Denied {
                id: request.id,
                reasons: reasons.join("; "),
            };
        }
        ApprovalState::Expired => " and gives no mandate; request it anew".to_owned(),
        ApprovalState::Issued => ": its mandate was issued already".to_owned(),
        ApprovalState::Approved => String::new(),
    };
    ApprovalError::State {
        id: request.id,
        state: state.as_str(),
        detail,
    }
}

/// Records `approver`'s decision on request `id`, with its audit event; announces the request
/// once decided.
pub async fn decide(
    state: &AppState,
    approver: &Principal,
    id: Uuid,
    verdict: Verdict,
    reason: &str,
) -> Result<ApprovalView, ApprovalError> {
    let mut check = Validation::new();
    check.text("reason", reason, MAX_REASON, true);
    check.finish()?;
    let now = state.clock.now();
    let request = state
        .store
        .approval(id)
        .await?
        .ok_or(ApprovalError::NotFound(id))?;
    let rights = counts_for(&request, approver).map_err(ApprovalError::NotEligible)?;
    let current = request.state_at(now);
    if current != ApprovalState::Pending {
        return Err(ApprovalError::State {
            id,
            state: current.as_str(),
            detail: "; it takes no more decisions".to_owned(),
        });
    }
    // Strictly after the request's second: the mint's own subject token, issued at the latest
    // in that second, never decides on it.
    if approver
        .issued_at
        .is_none_or(|iat| iat <= request.created_at.timestamp())
    {
        return Err(ApprovalError::NotEligible(format!(
            "sign in again: a decision needs a token issued after the request was made ({})",
            request.created_at.to_rfc3339()
        )));
    }
    let decision = Decision {
        approver: Approver {
            subject: approver.subject.clone(),
            issuer: approver.issuer_url.clone(),
        },
        verdict,
        reason: reason.to_owned(),
        counts_for: rights,
        decided_at: now,
    };
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("approver:{}", approver.subject),
        action: match verdict {
            Verdict::Approve => "approval.approved",
            Verdict::Deny => "approval.denied",
        }
        .to_owned(),
        target: Some(format!("approval:{id}")),
        outcome: match verdict {
            Verdict::Approve => AuditOutcome::Success,
            Verdict::Deny => AuditOutcome::Denied,
        },
        details: json!({
            "approver": decision.approver, "reason": reason,
            "counts_for": decision.counts_for, "agent": request.agent_id,
            "principal": {"subject": request.principal_subject, "issuer": request.principal_issuer},
        }),
    };
    let decided = state.store.decide_approval(id, &decision, &audit).await?;
    match decided.state {
        ApprovalState::Approved => announce(state, &decided, "approval.approved"),
        ApprovalState::Denied => announce(state, &decided, "approval.denied"),
        _ => {}
    }
    Ok(ApprovalView::of(&decided, now))
}

/// Records that reporter `reporter` let through the one call a one-call approval is for;
/// refuses a second. `approval` is what the verified mandate carries for the call's operation,
/// and `arguments_sha256` the digest of the call's arguments.
pub async fn use_once(
    state: &AppState,
    reporter: &str,
    mandate_id: Uuid,
    approval: &crate::token::approval::Approval,
    arguments_sha256: &str,
) -> Result<(), ApprovalError> {
    let now = state.clock.now();
    let id: Uuid = approval
        .id
        .parse()
        .map_err(|_| super::model::Invalid::field("token", "its approval id is not a UUID"))?;
    if approval.arguments_sha256.as_deref() != Some(arguments_sha256) {
        return Err(super::model::Invalid::field(
            "arguments_sha256",
            "is not the digest the mandate's approval is bound to",
        )
        .into());
    }
    let used = ApprovalUse {
        approval_id: id,
        tool: approval.tool.clone(),
        operation: approval.operation.clone(),
        mandate_id,
        reporter_id: reporter.to_owned(),
        arguments_sha256: arguments_sha256.to_owned(),
        used_at: now,
    };
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("reporter:{reporter}"),
        action: "approval.used".to_owned(),
        target: Some(format!("approval:{id}")),
        outcome: AuditOutcome::Success,
        details: json!({
            "mandate_id": mandate_id, "tool": approval.tool, "operation": approval.operation,
            "arguments_sha256": arguments_sha256, "approvers": approval.approvers,
        }),
    };
    if state.store.use_approval(&used, &audit).await? {
        Ok(())
    } else {
        Err(ApprovalError::State {
            id,
            state: "used",
            detail: format!(
                ": its one call of `{}` `{}` was made already",
                approval.tool, approval.operation
            ),
        })
    }
}
