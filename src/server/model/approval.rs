//! Human approvals: the approval requests a mint asking for a gated operation creates, with
//! their decisions (the rule a policy grant sets is in `approval_rule`, re-exported here).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use super::approval_rule::*;
use super::{text_enum, Grant};
use crate::token::approval::Approver;
use crate::token::Right;

/// Where an approval request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for decisions.
    Pending,
    /// Approved: the orchestrator may collect its mandate.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Not decided in time, or approved and not collected in time.
    Expired,
    /// Approved, and its mandate issued.
    Issued,
}
text_enum!(ApprovalState {
    Pending => "pending",
    Approved => "approved",
    Denied => "denied",
    Expired => "expired",
    Issued => "issued",
});

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approves.
    Approve,
    /// Denies.
    Deny,
}
text_enum!(Verdict { Approve => "approve", Deny => "deny" });

/// One operation of a request that needs approval, and the rule that gates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatedRight {
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The policy whose grant requires the approval.
    pub policy: String,
    /// The rule, as the policy stated it when the request was made.
    pub rule: ApprovalRule,
    /// The issuer URL approvers must be proven by.
    pub approver_issuer: String,
    /// For a rule that binds arguments: the arguments asked for, and their SHA-256 (hex, RFC
    /// 8785).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<serde_json::Value>,
    /// SHA-256, hex, of `arguments` in RFC 8785 canonical JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
}

/// The mint an approval request holds until it is decided: everything needed to mint it
/// without the principal's token again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMint {
    /// The task description, verbatim.
    pub task_description: String,
    /// The caller's task reference.
    pub task_ref: Option<String>,
    /// The requested scope.
    pub scope: Vec<Grant>,
    /// The requested lifetime.
    pub ttl_seconds: Option<i64>,
    /// The holder key (public JWK), if the mandate is to be bound.
    pub holder_key: Option<serde_json::Value>,
    /// The principal's groups as their token stated them.
    pub principal_groups: Vec<String>,
    /// The principal's issuer id in mandate.
    pub principal_issuer_id: String,
    /// The endpoint the request came through, and its metadata.
    pub request_meta: serde_json::Value,
}

/// An approval request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// Its id.
    pub id: Uuid,
    /// The orchestrator that asked.
    pub agent_id: String,
    /// The principal it would act for.
    pub principal_subject: String,
    /// The principal's issuer URL.
    pub principal_issuer: String,
    /// Who, for which task, which operations and arguments (shown to approvers).
    pub binding_message: String,
    /// The operations that need approval.
    pub gated: Vec<GatedRight>,
    /// The mint it holds.
    pub held: HeldMint,
    /// Where it is.
    pub state: ApprovalState,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops waiting (and an approval stops being collectable).
    pub expires_at: DateTime<Utc>,
    /// When it was approved or denied.
    pub decided_at: Option<DateTime<Utc>>,
    /// The mandate issued on it.
    pub mandate_id: Option<Uuid>,
    /// Every decision, oldest first.
    pub decisions: Vec<Decision>,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    /// Who decided.
    pub approver: Approver,
    /// What they decided.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// The gated rights this approval counts toward (those the approver is eligible for).
    pub counts_for: Vec<Right>,
    /// When.
    pub decided_at: DateTime<Utc>,
}

impl ApprovalRequest {
    /// Its state at `now`: a pending or approved request past its expiry is expired.
    pub fn state_at(&self, now: DateTime<Utc>) -> ApprovalState {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved if now >= self.expires_at => {
                ApprovalState::Expired
            }
            state => state,
        }
    }

    /// The distinct approvers who approved `gated` (counting toward it), sorted.
    pub fn approvers_of(&self, gated: &GatedRight) -> Vec<Approver> {
        let right = Right {
            tool: gated.tool.clone(),
            operation: gated.operation.clone(),
        };
        let mut approvers: Vec<Approver> = self
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve && d.counts_for.contains(&right))
            .map(|d| d.approver.clone())
            .collect();
        approvers.sort();
        approvers.dedup();
        approvers
    }

    /// Where the decisions leave a pending request: denied by any denial, approved once every
    /// gated right has as many distinct approvers counting toward it as its rule requires.
    pub fn settled(&self) -> ApprovalState {
        if self.decisions.iter().any(|d| d.verdict == Verdict::Deny) {
            return ApprovalState::Denied;
        }
        let satisfied = self
            .gated
            .iter()
            .all(|gated| self.approvers_of(gated).len() >= gated.rule.required as usize);
        if satisfied {
            ApprovalState::Approved
        } else {
            ApprovalState::Pending
        }
    }
}
