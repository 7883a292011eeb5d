//! Scope evaluation: pure functions over agents, tools and policies, with no I/O, so every rule
//! is tested exhaustively here. An operation is within reach of an agent only if the tool is
//! active and offers it, the agent's ceiling includes it, and an enabled policy covering the
//! agent grants it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::agent::{Agent, AgentStatus};
use super::model::policy::Policy;
use super::model::tool::{Tool, ToolStatus};
use super::model::Grant;
use crate::token::constraints::{ArgConstraint, Constraint};

/// One tool operation an agent can reach, and the policies that allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reach {
    /// Tool id.
    pub tool: String,
    /// Operation of that tool.
    pub operation: String,
    /// Ids of the enabled policies that grant it to this agent.
    pub policies: Vec<String>,
}

/// Whether `agent`'s ceiling includes `operation` of `tool`.
pub fn ceiling_allows(agent: &Agent, tool: &str, operation: &str) -> bool {
    agent
        .ceiling
        .iter()
        .any(|g| g.tool == tool && g.operations.iter().any(|o| o == operation))
}

/// A human principal, as proven by an issuer's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The issuer's id in mandate.
    pub issuer_id: String,
    /// The issuer's URL (the token's `iss`).
    pub issuer_url: String,
    /// The subject (from the issuer's subject claim).
    pub subject: String,
    /// Groups (from the issuer's groups claim).
    pub groups: Vec<String>,
    /// When the issuer issued the token (`iat`, seconds), if it says.
    pub issued_at: Option<i64>,
    /// For an issuer whose tokens mint once: the token's `jti` and `exp`.
    pub single_use: Option<(String, i64)>,
    /// For an issuer that names the client a token was issued to (`client_claim`): that
    /// client, as the token states it.
    pub client: Option<String>,
}

/// Whether `policy` covers `principal`: same issuer, and the subject or one of the groups named.
pub fn covers_principal(policy: &Policy, principal: &Principal) -> bool {
    policy.issuer == principal.issuer_id
        && (policy.subjects.contains(&principal.subject)
            || policy.groups.iter().any(|g| principal.groups.contains(g)))
}

/// Why one requested operation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// No tool with this id is registered.
    UnknownTool,
    /// The tool is disabled or retired.
    ToolInactive,
    /// The tool offers no such operation.
    UnknownOperation,
    /// The agent's ceiling does not include it, or allows looser arguments than asked.
    OutsideAgentCeiling,
    /// No enabled policy grants it to this agent for this principal.
    NoPolicy,
    /// Policies grant it, but each allows an argument only within less than was asked.
    ArgumentsLooserThanPolicy,
    /// Granted only to a mandate bound to a key (the agent or the policy requires binding),
    /// and the request binds none.
    BindingRequired,
}

/// One refused operation and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Denial {
    /// Tool id.
    pub tool: String,
    /// Operation.
    pub operation: String,
    /// Why it is refused.
    pub reason: DenialReason,
    /// The argument asked for more loosely than the ceiling or a policy allows, and what
    /// they allow of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argument: Option<ArgumentDenial>,
}

/// An argument asked for more loosely than allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArgumentDenial {
    /// The argument's path.
    pub name: String,
    /// What was asked of it.
    pub requested: Constraint,
    /// What the ceiling or the closest policy allows of it.
    pub allowed: Constraint,
}

/// The outcome of evaluating a requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The granted rights, sorted (empty when anything is denied).
    pub granted: Vec<crate::token::Right>,
    /// The argument constraints the mandate carries: for each granted right, those of the
    /// ceiling, of the policy it is granted under, and of the request, all of which hold.
    pub constraints: Vec<ArgConstraint>,
    /// Every refused operation, in request order.
    pub denied: Vec<Denial>,
    /// The longest TTL the policies behind the grants allow: for each right the most generous
    /// policy granting it, then the least of those over all rights.
    pub policy_ttl: Option<u32>,
    /// For each granted right, the ids of the policies that grant it (a mandate stays live
    /// while one of them still does).
    pub granted_by: Vec<GrantedBy>,
    /// The granted rights that every policy granting them gates behind human approval, each
    /// with the rule of the policy it is granted under.
    pub gated: Vec<Gate>,
}

/// A granted right that needs human approval first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The policy it is granted under.
    pub policy: String,
    /// That policy's issuer (approvers named without one are proven by it).
    pub policy_issuer: String,
    /// Its approval rule.
    pub rule: super::model::approval::ApprovalRule,
}

/// The policies behind one granted right.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GrantedBy {
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The ids of the policies granting it.
    pub policies: Vec<String>,
    /// The argument constraints the mandate carries on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<(String, Constraint)>,
    /// Whether the mandate is bound to its holder's key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bound: bool,
}

impl GrantedBy {
    /// Whether one of the policies that granted this right still does, for `agent_id`, with
    /// no constraint the mandate does not already carry, and not requiring binding of an
    /// unbound mandate.
    pub fn still_granted(&self, agent_id: &str, policies: &[Policy]) -> bool {
        policies.iter().any(|p| {
            self.policies.contains(&p.id)
                && p.enabled
                && (self.bound || !p.require_binding)
                && p.agents.covers(agent_id)
                && p.grants.iter().any(|g| {
                    g.tool == self.tool
                        && g.operations.contains(&self.operation)
                        && g.constraints.iter().all(|(name, rule)| {
                            self.constraints
                                .iter()
                                .any(|(carried, c)| carried == name && c.implies(rule))
                        })
                })
        })
    }
}

/// The first argument `requested` asks for more loosely than `rules` allow.
fn looser(
    requested: &BTreeMap<String, Constraint>,
    rules: &BTreeMap<String, Constraint>,
) -> Option<ArgumentDenial> {
    requested.iter().find_map(|(name, asked)| {
        let rule = rules.get(name)?;
        (!asked.implies(rule)).then(|| ArgumentDenial {
            name: name.clone(),
            requested: asked.clone(),
            allowed: rule.clone(),
        })
    })
}

/// Evaluates `requested` for `agent` acting for `principal`. All or nothing: one denied
/// operation denies the request, and every denied operation is reported.
///
/// An operation's arguments are constrained by the agent's ceiling, by the policy it is
/// granted under and by the request; a request may narrow an argument, never loosen one the
/// ceiling or a policy constrains. Of the policies a request fits, the one constraining the
/// fewest arguments is chosen, and the mandate carries all three sets of constraints.
pub fn evaluate(
    principal: &Principal,
    agent: &Agent,
    requested: &[Grant],
    policies: &[Policy],
    tools: &[Tool],
) -> Evaluation {
    let applicable: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.enabled && p.agents.covers(&agent.id) && covers_principal(p, principal))
        .collect();
    let mut granted = Vec::new();
    let mut constraints = Vec::new();
    let mut denied = Vec::new();
    let mut policy_ttl: Option<u32> = None;
    let mut granted_by = Vec::new();
    let mut gated = Vec::new();
    for grant in requested {
        let tool = tools.iter().find(|t| t.id == grant.tool);
        for operation in &grant.operations {
            let deny = |reason, argument| Denial {
                tool: grant.tool.clone(),
                operation: operation.clone(),
                reason,
                argument,
            };
            let Some(tool) = tool else {
                denied.push(deny(DenialReason::UnknownTool, None));
                continue;
            };
            let ceiling = agent
                .ceiling
                .iter()
                .find(|g| g.tool == tool.id && g.operations.contains(operation));
            if tool.status != ToolStatus::Active {
                denied.push(deny(DenialReason::ToolInactive, None));
                continue;
            }
            if !tool.operations.contains(operation) {
                denied.push(deny(DenialReason::UnknownOperation, None));
                continue;
            }
            let Some(ceiling) = ceiling else {
                denied.push(deny(DenialReason::OutsideAgentCeiling, None));
                continue;
            };
            if let Some(argument) = looser(&grant.constraints, &ceiling.constraints) {
                denied.push(deny(DenialReason::OutsideAgentCeiling, Some(argument)));
                continue;
            }
            let granting: Vec<(&Policy, &Grant)> = applicable
                .iter()
                .filter_map(|p| {
                    p.grants
                        .iter()
                        .find(|g| g.tool == tool.id && g.operations.contains(operation))
                        .map(|g| (*p, g))
                })
                .collect();
            if granting.is_empty() {
                denied.push(deny(DenialReason::NoPolicy, None));
                continue;
            }
            let fitting: Vec<&(&Policy, &Grant)> = granting
                .iter()
                .filter(|(_, g)| looser(&grant.constraints, &g.constraints).is_none())
                .collect();
            // A policy granting it without approval is preferred to one gating it.
            let fewest = |open: bool| {
                fitting
                    .iter()
                    .filter(|(_, g)| g.approval.is_none() == open)
                    .min_by_key(|(_, g)| g.constraints.len())
            };
            let Some((policy, chosen)) = fewest(true).or_else(|| fewest(false)) else {
                let argument = granting
                    .iter()
                    .find_map(|(_, g)| looser(&grant.constraints, &g.constraints));
                denied.push(deny(DenialReason::ArgumentsLooserThanPolicy, argument));
                continue;
            };
            if let Some(rule) = &chosen.approval {
                gated.push(Gate {
                    tool: tool.id.clone(),
                    operation: operation.clone(),
                    policy: policy.id.clone(),
                    policy_issuer: policy.issuer.clone(),
                    rule: rule.clone(),
                });
            }
            let ttl = fitting.iter().map(|(p, _)| p.max_ttl_seconds).max();
            if let Some(ttl) = ttl {
                policy_ttl = Some(policy_ttl.map_or(ttl, |t| t.min(ttl)));
            }
            let mut carried: Vec<(String, Constraint)> = Vec::new();
            for (name, c) in ceiling
                .constraints
                .iter()
                .chain(&chosen.constraints)
                .chain(&grant.constraints)
            {
                if !carried.iter().any(|(n, d)| n == name && d == c) {
                    carried.push((name.clone(), c.clone()));
                }
            }
            constraints.extend(carried.iter().map(|(name, c)| ArgConstraint {
                tool: tool.id.clone(),
                operation: operation.clone(),
                argument: name.clone(),
                constraint: c.clone(),
            }));
            granted.push(crate::token::Right {
                tool: tool.id.clone(),
                operation: operation.clone(),
            });
            granted_by.push(GrantedBy {
                tool: tool.id.clone(),
                operation: operation.clone(),
                policies: fitting.iter().map(|(p, _)| p.id.clone()).collect(),
                constraints: carried,
                bound: false,
            });
        }
    }
    if !denied.is_empty() {
        granted.clear();
        granted_by.clear();
        constraints.clear();
        gated.clear();
        policy_ttl = None;
    }
    gated.sort_by(|a, b| (&a.tool, &a.operation).cmp(&(&b.tool, &b.operation)));
    gated.dedup_by(|a, b| a.tool == b.tool && a.operation == b.operation);
    granted.sort();
    granted.dedup();
    granted_by.sort_by(|a, b| (&a.tool, &a.operation).cmp(&(&b.tool, &b.operation)));
    granted_by.dedup_by(|a, b| a.tool == b.tool && a.operation == b.operation);
    constraints.sort();
    constraints.dedup();
    Evaluation {
        granted,
        constraints,
        denied,
        policy_ttl,
        granted_by,
        gated,
    }
}

/// The mandate's lifetime: the least of what was asked, what the policies allow, the agent's
/// maximum and the service cap.
pub fn mandate_ttl(requested: Option<u32>, policy_ttl: u32, agent_max: u32, cap: u32) -> u32 {
    [requested.unwrap_or(DEFAULT_TTL), policy_ttl, agent_max, cap]
        .into_iter()
        .min()
        .unwrap_or(0)
}

/// Lifetime of a mandate when none is asked for: 15 minutes.
pub const DEFAULT_TTL: u32 = 900;

/// Every operation `agent` can reach through `policies` (for any principal they cover), sorted
/// by tool and operation. Agents that are not active reach nothing.
pub fn reach(agent: &Agent, policies: &[Policy], tools: &[Tool]) -> Vec<Reach> {
    if agent.status != AgentStatus::Active {
        return Vec::new();
    }
    let mut found: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for policy in policies
        .iter()
        .filter(|p| p.enabled && p.agents.covers(&agent.id))
    {
        for grant in &policy.grants {
            let Some(tool) = tools
                .iter()
                .find(|t| t.id == grant.tool && t.status == ToolStatus::Active)
            else {
                continue;
            };
            for operation in &grant.operations {
                if tool.operations.contains(operation) && ceiling_allows(agent, &tool.id, operation)
                {
                    found
                        .entry((tool.id.as_str(), operation.as_str()))
                        .or_default()
                        .push(policy.id.clone());
                }
            }
        }
    }
    found
        .into_iter()
        .map(|((tool, operation), policies)| Reach {
            tool: tool.to_owned(),
            operation: operation.to_owned(),
            policies,
        })
        .collect()
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
