//! The approval rule a policy grant may set: who approves its operations, how many, for how
//! long, whether for one call. (The requests and decisions are in `approval`.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Shortest and longest time an approval stays valid, in seconds.
pub const VALID_SECONDS: std::ops::RangeInclusive<u32> = 60..=86_400;
/// How long an approval stays valid when the rule does not say: 15 minutes.
pub const DEFAULT_VALID_SECONDS: u32 = 900;
/// Longest reason an approver gives.
pub const MAX_REASON: usize = 1024;
/// Most approval requests one orchestrator may have pending at once.
pub const MAX_PENDING_PER_AGENT: u32 = 100;
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
