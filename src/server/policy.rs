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
}

impl GrantedBy {
    /// Whether one of the policies that granted this right still does, for `agent_id`, with
    /// no constraint the mandate does not already carry.
    pub fn still_granted(&self, agent_id: &str, policies: &[Policy]) -> bool {
        policies.iter().any(|p| {
            self.policies.contains(&p.id)
                && p.enabled
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
            let Some((_, chosen)) = fitting.iter().min_by_key(|(_, g)| g.constraints.len()) else {
                let argument = granting
                    .iter()
                    .find_map(|(_, g)| looser(&grant.constraints, &g.constraints));
                denied.push(deny(DenialReason::ArgumentsLooserThanPolicy, argument));
                continue;
            };
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
            });
        }
    }
    if !denied.is_empty() {
        granted.clear();
        granted_by.clear();
        constraints.clear();
        policy_ttl = None;
    }
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
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::server::model::agent::AgentKind;
    use crate::server::model::policy::AgentScope;
    use crate::server::model::tool::ToolKind;

    fn grant(tool: &str, ops: &[&str]) -> Grant {
        Grant {
            tool: tool.into(),
            operations: ops.iter().map(|o| o.to_string()).collect(),
            constraints: Default::default(),
        }
    }

    fn agent(id: &str, ceiling: Vec<Grant>) -> Agent {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Agent {
            id: id.into(),
            display_name: id.into(),
            kind: AgentKind::Orchestrator,
            owner: "alice".into(),
            team: None,
            description: None,
            ceiling,
            max_ttl_seconds: 900,
            status: AgentStatus::Active,
            version: 1,
            created_at: t,
            updated_at: t,
        }
    }

    fn tool(id: &str, ops: &[&str]) -> Tool {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Tool {
            id: id.into(),
            display_name: id.into(),
            kind: ToolKind::Api,
            owner: "bob".into(),
            description: None,
            operations: ops.iter().map(|o| o.to_string()).collect(),
            status: ToolStatus::Active,
            version: 1,
            created_at: t,
            updated_at: t,
        }
    }

    fn policy(id: &str, agents: AgentScope, grants: Vec<Grant>) -> Policy {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Policy {
            id: id.into(),
            name: id.into(),
            description: None,
            issuer: "idp".into(),
            subjects: vec![],
            groups: vec!["staff".into()],
            agents,
            grants,
            max_ttl_seconds: 600,
            enabled: true,
            version: 1,
            created_at: t,
            updated_at: t,
        }
    }

    fn alice(groups: &[&str]) -> Principal {
        Principal {
            issuer_id: "idp".into(),
            issuer_url: "https://idp.example.com/".into(),
            subject: "alice".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issued_at: None,
            single_use: None,
        }
    }

    fn reasons(e: &Evaluation) -> Vec<(String, DenialReason)> {
        e.denied
            .iter()
            .map(|d| (format!("{}:{}", d.tool, d.operation), d.reason))
            .collect()
    }

    fn constrained(tool: &str, ops: &[&str], constraints: &[(&str, Constraint)]) -> Grant {
        let mut g = grant(tool, ops);
        g.constraints = constraints
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.clone()))
            .collect();
        g
    }

    #[test]
    fn argument_constraints_intersect_ceiling_policy_and_request() {
        let prefix = |p: &str| Constraint::Prefix(p.into());
        let bot = agent(
            "bot",
            vec![constrained(
                "gh",
                &["create"],
                &[(
                    "owner",
                    Constraint::Equals(crate::token::constraints::Scalar::Text("acme".into())),
                )],
            )],
        );
        let tools = [tool("gh", &["create"])];
        let policies = [policy(
            "p",
            AgentScope::Any,
            vec![constrained("gh", &["create"], &[("repo", prefix("acme/"))])],
        )];
        let ask = |constraints: &[(&str, Constraint)]| {
            evaluate(
                &alice(&["staff"]),
                &bot,
                &[constrained("gh", &["create"], constraints)],
                &policies,
                &tools,
            )
        };
        // Nothing asked of the arguments: the ceiling's and the policy's constraints both hold.
        let plain = ask(&[]);
        let carried: Vec<(&str, &Constraint)> = plain
            .constraints
            .iter()
            .map(|c| (c.argument.as_str(), &c.constraint))
            .collect();
        assert_eq!(carried.len(), 2, "{carried:?}");
        assert!(carried.contains(&("repo", &prefix("acme/"))));
        // Narrower than the policy: granted, carrying the request's too.
        let narrow = ask(&[("repo", prefix("acme/web"))]);
        assert!(narrow.denied.is_empty());
        assert!(narrow
            .constraints
            .iter()
            .any(|c| c.constraint == prefix("acme/web")));
        assert_eq!(narrow.granted_by[0].constraints.len(), 3);
        // Looser than the policy, or than the ceiling: denied naming the argument.
        let loose = ask(&[("repo", prefix("ac"))]);
        assert_eq!(
            loose.denied[0].reason,
            DenialReason::ArgumentsLooserThanPolicy
        );
        let argument = loose.denied[0].argument.clone().unwrap();
        assert_eq!(
            (argument.name.as_str(), argument.allowed),
            ("repo", prefix("acme/"))
        );
        assert!(loose.granted.is_empty() && loose.constraints.is_empty());
        let outside = ask(&[("owner", prefix("a"))]);
        assert_eq!(outside.denied[0].reason, DenialReason::OutsideAgentCeiling);
        assert_eq!(
            outside.denied[0].argument.as_ref().map(|a| a.name.as_str()),
            Some("owner")
        );
    }

    #[test]
    fn of_the_policies_a_request_fits_the_least_constrained_decides() {
        let bot = agent("bot", vec![grant("gh", &["create"])]);
        let tools = [tool("gh", &["create"])];
        let tight = policy(
            "tight",
            AgentScope::Any,
            vec![constrained(
                "gh",
                &["create"],
                &[("repo", Constraint::Prefix("acme/".into()))],
            )],
        );
        let open = policy("open", AgentScope::Any, vec![grant("gh", &["create"])]);
        let e = evaluate(
            &alice(&["staff"]),
            &bot,
            &[grant("gh", &["create"])],
            &[tight.clone(), open.clone()],
            &tools,
        );
        assert!(e.constraints.is_empty(), "{:?}", e.constraints);
        // A mandate carrying no constraint stays live only while a policy grants it so.
        let by = &e.granted_by[0];
        assert!(by.still_granted("bot", &[tight.clone(), open]));
        assert!(
            !by.still_granted("bot", &[tight]),
            "a policy tightened since does not keep it"
        );
    }

    #[test]
    fn a_request_within_policy_ceiling_and_tool_is_granted_with_the_policy_ttl() {
        let bot = agent("bot", vec![grant("crm", &["read", "write"])]);
        let tools = [tool("crm", &["read", "write"])];
        let mut short = policy("short", AgentScope::Any, vec![grant("crm", &["read"])]);
        short.max_ttl_seconds = 60;
        let long = policy(
            "long",
            AgentScope::Any,
            vec![grant("crm", &["read", "write"])],
        );
        let e = evaluate(
            &alice(&["staff"]),
            &bot,
            &[grant("crm", &["read", "write"])],
            &[short, long],
            &tools,
        );
        assert!(e.denied.is_empty());
        assert_eq!(e.granted.len(), 2);
        // read is allowed for 600 s by `long`: the most generous policy per right counts.
        assert_eq!(e.policy_ttl, Some(600));
    }

    #[test]
    fn every_denied_operation_is_reported_with_its_reason() {
        let bot = agent(
            "bot",
            vec![grant("crm", &["read", "write"]), grant("old", &["x"])],
        );
        let mut old = tool("old", &["x"]);
        old.status = ToolStatus::Disabled;
        let tools = [tool("crm", &["read", "write", "delete"]), old];
        let policies = [policy("p", AgentScope::Any, vec![grant("crm", &["read"])])];
        let requested = [
            grant("crm", &["read", "write", "delete", "purge"]),
            grant("old", &["x"]),
            grant("ghost", &["y"]),
        ];
        let e = evaluate(&alice(&["staff"]), &bot, &requested, &policies, &tools);
        assert_eq!(
            reasons(&e),
            vec![
                ("crm:write".into(), DenialReason::NoPolicy),
                ("crm:delete".into(), DenialReason::OutsideAgentCeiling),
                ("crm:purge".into(), DenialReason::UnknownOperation),
                ("old:x".into(), DenialReason::ToolInactive),
                ("ghost:y".into(), DenialReason::UnknownTool),
            ]
        );
        assert!(e.granted.is_empty(), "all or nothing");
        assert_eq!(e.policy_ttl, None);
    }

    #[test]
    fn a_policy_covers_only_its_issuer_subjects_groups_and_agents() {
        let bot = agent("bot", vec![grant("crm", &["read"])]);
        let tools = [tool("crm", &["read"])];
        let ask = [grant("crm", &["read"])];
        let mut by_subject = policy("s", AgentScope::Any, vec![grant("crm", &["read"])]);
        by_subject.groups = vec![];
        by_subject.subjects = vec!["alice".into()];
        assert!(evaluate(
            &alice(&[]),
            &bot,
            &ask,
            std::slice::from_ref(&by_subject),
            &tools
        )
        .denied
        .is_empty());
        let mut bob = alice(&[]);
        bob.subject = "bob".into();
        assert!(
            !evaluate(&bob, &bot, &ask, std::slice::from_ref(&by_subject), &tools)
                .denied
                .is_empty()
        );
        let mut other_issuer = alice(&["staff"]);
        other_issuer.issuer_id = "other".into();
        let by_group = policy("g", AgentScope::Any, vec![grant("crm", &["read"])]);
        assert!(!evaluate(
            &other_issuer,
            &bot,
            &ask,
            std::slice::from_ref(&by_group),
            &tools
        )
        .denied
        .is_empty());
        assert!(!evaluate(
            &alice(&["sales"]),
            &bot,
            &ask,
            std::slice::from_ref(&by_group),
            &tools
        )
        .denied
        .is_empty());
        let for_other_agent = policy(
            "o",
            AgentScope::Listed(vec!["x".into()]),
            vec![grant("crm", &["read"])],
        );
        assert!(
            !evaluate(&alice(&["staff"]), &bot, &ask, &[for_other_agent], &tools)
                .denied
                .is_empty()
        );
        let mut disabled = by_group;
        disabled.enabled = false;
        assert!(
            !evaluate(&alice(&["staff"]), &bot, &ask, &[disabled], &tools)
                .denied
                .is_empty()
        );
    }

    #[test]
    fn the_ttl_is_the_least_of_request_policy_agent_and_cap() {
        assert_eq!(mandate_ttl(None, 3600, 3600, 3600), 900);
        assert_eq!(mandate_ttl(Some(120), 600, 900, 3600), 120);
        assert_eq!(mandate_ttl(Some(3000), 600, 900, 3600), 600);
        assert_eq!(mandate_ttl(Some(3000), 3000, 300, 3600), 300);
        assert_eq!(mandate_ttl(Some(3000), 3000, 3000, 60), 60);
    }

    proptest::proptest! {
        /// Granting is monotone: adding a policy never removes a grant, and removing one never
        /// adds a grant.
        #[test]
        fn adding_a_policy_never_takes_a_right_away(
            ops in proptest::collection::vec(0usize..4, 1..4),
            first in proptest::collection::vec(0usize..4, 1..4),
            second in proptest::collection::vec(0usize..4, 1..4),
        ) {
            let names = ["a", "b", "c", "d"];
            let pick = |ix: &[usize]| -> Vec<&str> { let mut v: Vec<&str> = ix.iter().map(|i| names[*i]).collect(); v.sort(); v.dedup(); v };
            let bot = agent("bot", vec![grant("t", &names)]);
            let tools = [tool("t", &names)];
            let ask = [grant("t", &pick(&ops))];
            let one = [policy("p1", AgentScope::Any, vec![grant("t", &pick(&first))])];
            let two = [one[0].clone(), policy("p2", AgentScope::Any, vec![grant("t", &pick(&second))])];
            let e1 = evaluate(&alice(&["staff"]), &bot, &ask, &one, &tools);
            let e2 = evaluate(&alice(&["staff"]), &bot, &ask, &two, &tools);
            proptest::prop_assert!(e2.denied.len() <= e1.denied.len());
            if e1.denied.is_empty() {
                proptest::prop_assert_eq!(&e1.granted, &e2.granted);
            }
            for d in &e2.denied {
                proptest::prop_assert!(e1.denied.contains(d));
            }
        }
    }

    fn pairs(reach: &[Reach]) -> Vec<(String, String, Vec<String>)> {
        reach
            .iter()
            .map(|r| (r.tool.clone(), r.operation.clone(), r.policies.clone()))
            .collect()
    }

    #[test]
    fn reach_is_the_intersection_of_policy_ceiling_and_tool() {
        let bot = agent("bot", vec![grant("crm", &["read", "write"])]);
        let tools = [tool("crm", &["read", "write", "delete"])];
        let policies = [
            policy(
                "p1",
                AgentScope::Any,
                vec![grant("crm", &["read", "delete"])],
            ),
            policy(
                "p2",
                AgentScope::Listed(vec!["bot".into()]),
                vec![grant("crm", &["read", "write"])],
            ),
            policy(
                "other",
                AgentScope::Listed(vec!["someone-else".into()]),
                vec![grant("crm", &["write"])],
            ),
        ];
        assert_eq!(
            pairs(&reach(&bot, &policies, &tools)),
            vec![
                ("crm".into(), "read".into(), vec!["p1".into(), "p2".into()]),
                ("crm".into(), "write".into(), vec!["p2".into()]),
            ]
        );
    }

    #[test]
    fn disabled_policies_inactive_tools_and_inactive_agents_reach_nothing() {
        let mut bot = agent("bot", vec![grant("crm", &["read"])]);
        let mut tools = [tool("crm", &["read"])];
        let mut policies = [policy("p", AgentScope::Any, vec![grant("crm", &["read"])])];
        assert_eq!(reach(&bot, &policies, &tools).len(), 1);

        policies[0].enabled = false;
        assert!(reach(&bot, &policies, &tools).is_empty());
        policies[0].enabled = true;

        tools[0].status = ToolStatus::Disabled;
        assert!(reach(&bot, &policies, &tools).is_empty());
        tools[0].status = ToolStatus::Active;

        bot.status = AgentStatus::Suspended;
        assert!(reach(&bot, &policies, &tools).is_empty());
    }

    #[test]
    fn an_operation_the_tool_no_longer_offers_is_out_of_reach() {
        let bot = agent("bot", vec![grant("crm", &["read", "export"])]);
        let tools = [tool("crm", &["read"])];
        let policies = [policy(
            "p",
            AgentScope::Any,
            vec![grant("crm", &["read", "export"])],
        )];
        let found = reach(&bot, &policies, &tools);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].operation, "read");
    }
}
