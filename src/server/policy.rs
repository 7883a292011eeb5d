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
    use crate::server::model::Grant;

    fn grant(tool: &str, ops: &[&str]) -> Grant {
        Grant {
            tool: tool.into(),
            operations: ops.iter().map(|o| o.to_string()).collect(),
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
