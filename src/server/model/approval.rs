//! Human approvals: the rule a policy grant sets for who must approve its operations, and the
//! approval requests a mint asking for such an operation creates, with their decisions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{text_enum, Grant, Validation, MAX_ITEMS};
use crate::token::approval::{Approver, MAX_APPROVERS};
use crate::token::Right;

/// Shortest and longest time an approval stays valid, in seconds.
pub const VALID_SECONDS: std::ops::RangeInclusive<u32> = 60..=86_400;
/// How long an approval stays valid when the rule does not say: 15 minutes.
pub const DEFAULT_VALID_SECONDS: u32 = 900;
/// Longest reason an approver gives.
pub const MAX_REASON: usize = 1024;
/// Largest arguments (as RFC 8785 JSON) a request may bind an approval to.
pub const MAX_ARGUMENTS_BYTES: usize = 8 * 1024;

/// Who approves a gated operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Approvers {
    /// `"principal"`: the human the mandate acts for, with a fresh token of their own.
    #[schema(value_type = String, example = "principal")]
    Principal(PrincipalOnly),
    /// Named subjects or members of groups, proven by a trusted issuer.
    Named(NamedApprovers),
}

/// The word `principal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalOnly {
    /// The principal approves.
    Principal,
}

/// Approvers by subject or group at one issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedApprovers {
    /// The issuer (its id in mandate) that proves approvers; default: the policy's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Approvers by subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Approvers by group membership.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What a policy grant requires before its operations are minted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// `"principal"`, or `{issuer?, subjects, groups}`.
    pub approvers: Approvers,
    /// How many distinct approvers must approve (m of n); default 1. One denial denies.
    #[serde(default = "one")]
    pub required: u32,
    /// Whether the principal's own approval counts toward `required` when they are also a
    /// named approver (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub principal_counts: bool,
    /// How long an approval stays valid, 60 to 86,400 seconds (default 900): a request waits
    /// for its decisions at most this long, and the mandate minted on it expires at most this
    /// long after the approval.
    #[serde(default = "default_valid")]
    pub valid_seconds: u32,
    /// Whether the approval is for one call with exactly the arguments the request names
    /// (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bind_arguments: bool,
    /// Where each new request and each decision is announced: a POST of the request, signed
    /// with mandate's root key (`Mandate-Signature`). `https`, or `http` on a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

fn one() -> u32 {
    1
}

fn default_valid() -> u32 {
    DEFAULT_VALID_SECONDS
}

impl ApprovalRule {
    /// The field checks of a rule in a policy grant at `field`.
    pub fn check(&self, check: &mut Validation, field: &str) {
        if self.required == 0 || self.required as usize > MAX_APPROVERS {
            check.fail(
                format!("{field}.required"),
                format!("must be 1 to {MAX_APPROVERS}"),
            );
        }
        if !VALID_SECONDS.contains(&self.valid_seconds) {
            check.fail(
                format!("{field}.valid_seconds"),
                format!(
                    "must be {} to {} seconds",
                    VALID_SECONDS.start(),
                    VALID_SECONDS.end()
                ),
            );
        }
        match &self.approvers {
            Approvers::Principal(_) => {
                if self.required != 1 {
                    check.fail(
                        format!("{field}.required"),
                        "the principal alone approves: required must be 1",
                    );
                }
            }
            Approvers::Named(named) => {
                if let Some(issuer) = &named.issuer {
                    check.id(&format!("{field}.approvers.issuer"), issuer);
                }
                if named.subjects.is_empty() && named.groups.is_empty() {
                    check.fail(
                        format!("{field}.approvers"),
                        "name at least one subject or group",
                    );
                }
                for (name, values) in [("subjects", &named.subjects), ("groups", &named.groups)] {
                    if values.len() > MAX_ITEMS {
                        check.fail(
                            format!("{field}.approvers.{name}"),
                            format!("must have at most {MAX_ITEMS} entries"),
                        );
                    }
                    for (i, value) in values.iter().enumerate() {
                        check.text(&format!("{field}.approvers.{name}[{i}]"), value, 256, true);
                    }
                }
                let named_count = named.subjects.len();
                if named.groups.is_empty() && (self.required as usize) > named_count {
                    check.fail(
                        format!("{field}.required"),
                        format!("only {named_count} subjects are named"),
                    );
                }
            }
        }
        if let Some(url) = &self.webhook {
            if webhook_url(url).is_none() {
                check.fail(
                    format!("{field}.webhook"),
                    "must be an https URL, or http on a loopback address, of at most 512 bytes",
                );
            }
        }
    }
}

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

    /// The approvals given so far.
    pub fn approvers(&self) -> Vec<Approver> {
        let mut approvers: Vec<Approver> = self
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
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
        let satisfied = self.gated.iter().all(|gated| {
            let right = Right {
                tool: gated.tool.clone(),
                operation: gated.operation.clone(),
            };
            let mut approvers: Vec<&Approver> = self
                .decisions
                .iter()
                .filter(|d| d.verdict == Verdict::Approve && d.counts_for.contains(&right))
                .map(|d| &d.approver)
                .collect();
            approvers.sort();
            approvers.dedup();
            approvers.len() >= gated.rule.required as usize
        });
        if satisfied {
            ApprovalState::Approved
        } else {
            ApprovalState::Pending
        }
    }

    /// The gated rights.
    pub fn rights(&self) -> Vec<Right> {
        self.gated
            .iter()
            .map(|g| Right {
                tool: g.tool.clone(),
                operation: g.operation.clone(),
            })
            .collect()
    }
}

/// A webhook URL mandate posts to: `https`, or `http` on a loopback address, at most 512 bytes,
/// with no credentials in it.
pub fn webhook_url(text: &str) -> Option<url::Url> {
    if text.len() > 512 {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return None,
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    (scheme_ok && url.username().is_empty() && url.password().is_none()).then_some(url)
}
