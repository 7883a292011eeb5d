//! Delegation policies: which principals (by issuer, subject and group) may delegate which tool
//! operations to which agents, and for how long.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use super::{nullable, Grant, Invalid, Validation, MAX_ITEMS};

/// The agents a policy covers: `"*"` for any agent, or a list of agent ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentScope {
    /// Any registered agent.
    Any,
    /// Only these agents.
    Listed(Vec<String>),
}

impl AgentScope {
    /// Whether the scope covers `agent_id`.
    pub fn covers(&self, agent_id: &str) -> bool {
        match self {
            AgentScope::Any => true,
            AgentScope::Listed(ids) => ids.iter().any(|id| id == agent_id),
        }
    }

    /// The listed agents (none for `Any`).
    pub fn listed(&self) -> &[String] {
        match self {
            AgentScope::Any => &[],
            AgentScope::Listed(ids) => ids,
        }
    }
}

impl Serialize for AgentScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AgentScope::Any => serializer.serialize_str("*"),
            AgentScope::Listed(ids) => ids.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for AgentScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Star(String),
            List(Vec<String>),
        }
        match Wire::deserialize(deserializer) {
            Ok(Wire::Star(s)) if s == "*" => Ok(AgentScope::Any),
            Ok(Wire::List(ids)) => Ok(AgentScope::Listed(ids)),
            _ => Err(serde::de::Error::custom(
                "agents must be \"*\" or a list of agent ids",
            )),
        }
    }
}

/// A delegation policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    /// Slug id.
    #[schema(example = "support-reads-crm")]
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Why the policy exists.
    pub description: Option<String>,
    /// The issuer whose principals it covers.
    #[schema(example = "corp-idp")]
    pub issuer: String,
    /// Principals covered by subject.
    pub subjects: Vec<String>,
    /// Principals covered by group membership.
    pub groups: Vec<String>,
    /// Agents covered: `"*"` or a list of agent ids.
    #[schema(value_type = Value, example = json!(["support-orchestrator"]))]
    pub agents: AgentScope,
    /// Tool operations the principals may delegate.
    pub grants: Vec<Grant>,
    /// Longest mandate the policy allows, in seconds.
    pub max_ttl_seconds: u32,
    /// Whether it grants only to mandates bound to a key (proof of possession).
    #[serde(default)]
    pub require_binding: bool,
    /// Only enabled policies grant anything.
    pub enabled: bool,
    /// Increases with every change.
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/policies`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// Slug id.
    pub id: String,
    /// Human-readable name (default: the id).
    #[serde(default)]
    pub name: Option<String>,
    /// Why the policy exists.
    #[serde(default)]
    pub description: Option<String>,
    /// Issuer id.
    pub issuer: String,
    /// Principals by subject.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Principals by group (at least one subject or group overall).
    #[serde(default)]
    pub groups: Vec<String>,
    /// `"*"` or agent ids.
    #[schema(value_type = Value, example = json!(["support-orchestrator"]))]
    pub agents: AgentScope,
    /// Tool operations (at least one).
    pub grants: Vec<Grant>,
    /// 1 to the service cap.
    pub max_ttl_seconds: i64,
    /// Grant only to mandates bound to a key (default false).
    #[serde(default)]
    pub require_binding: bool,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /v1/admin/policies/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// New name.
    pub name: Option<String>,
    /// New description, or `null` to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New subjects.
    pub subjects: Option<Vec<String>>,
    /// New groups.
    pub groups: Option<Vec<String>>,
    /// New agent scope: `"*"` or agent ids.
    #[schema(value_type = Option<Value>)]
    pub agents: Option<AgentScope>,
    /// New grants.
    pub grants: Option<Vec<Grant>>,
    /// New maximum TTL.
    pub max_ttl_seconds: Option<i64>,
    /// Whether it grants only to bound mandates.
    pub require_binding: Option<bool>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

fn check_principals(check: &mut Validation, subjects: &[String], groups: &[String]) {
    if subjects.is_empty() && groups.is_empty() {
        check.fail("subjects", "name at least one subject or group");
    }
    for (field, values) in [("subjects", subjects), ("groups", groups)] {
        if values.len() > MAX_ITEMS {
            check.fail(field, format!("must have at most {MAX_ITEMS} entries"));
        }
        for (i, value) in values.iter().enumerate() {
            check.text(&format!("{field}[{i}]"), value, 256, true);
        }
    }
}

fn check_body(check: &mut Validation, policy: &Policy) {
    check.text("name", &policy.name, 128, true);
    check.optional_text("description", policy.description.as_deref(), 2048);
    check_principals(check, &policy.subjects, &policy.groups);
    if let AgentScope::Listed(ids) = &policy.agents {
        if ids.is_empty() {
            check.fail("agents", "list at least one agent, or use \"*\"");
        }
        check.ids("agents", ids);
    }
    if policy.grants.is_empty() {
        check.fail("grants", "must grant at least one tool operation");
    }
    check.grants("grants", &policy.grants, super::GrantsOf::Policy);
}

impl NewPolicy {
    /// Field checks (references are checked by the caller), and the policy this creates.
    pub fn into_policy(self, cap: u32, now: DateTime<Utc>) -> Result<Policy, Invalid> {
        let mut check = Validation::new();
        check.id("id", &self.id);
        check.id("issuer", &self.issuer);
        check.ttl("max_ttl_seconds", self.max_ttl_seconds, cap);
        let policy = Policy {
            name: self.name.unwrap_or_else(|| self.id.clone()),
            id: self.id,
            description: self.description,
            issuer: self.issuer,
            subjects: self.subjects,
            groups: self.groups,
            agents: self.agents,
            grants: self.grants,
            max_ttl_seconds: u32::try_from(self.max_ttl_seconds).unwrap_or(0),
            require_binding: self.require_binding,
            enabled: self.enabled.unwrap_or(true),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        check_body(&mut check, &policy);
        check.finish()?;
        Ok(policy)
    }
}

impl PolicyPatch {
    /// `policy` with this patch applied, checked as a whole.
    pub fn apply(self, mut policy: Policy, cap: u32) -> Result<Policy, Invalid> {
        let mut check = Validation::new();
        if let Some(v) = self.name {
            policy.name = v;
        }
        if let Some(v) = self.description {
            policy.description = v;
        }
        if let Some(v) = self.subjects {
            policy.subjects = v;
        }
        if let Some(v) = self.groups {
            policy.groups = v;
        }
        if let Some(v) = self.agents {
            policy.agents = v;
        }
        if let Some(v) = self.grants {
            policy.grants = v;
        }
        if let Some(ttl) = self.max_ttl_seconds {
            check.ttl("max_ttl_seconds", ttl, cap);
            policy.max_ttl_seconds = u32::try_from(ttl).unwrap_or(0);
        }
        if let Some(v) = self.enabled {
            policy.enabled = v;
        }
        if let Some(v) = self.require_binding {
            policy.require_binding = v;
        }
        check_body(&mut check, &policy);
        check.finish()?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_scope_is_a_star_or_a_list() {
        let any: AgentScope = serde_json::from_str("\"*\"").unwrap();
        assert_eq!(any, AgentScope::Any);
        let listed: AgentScope = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert!(listed.covers("b") && !listed.covers("c"));
        assert_eq!(serde_json::to_string(&any).unwrap(), "\"*\"");
        for bad in ["\"all\"", "null", "3", "{}"] {
            assert!(serde_json::from_str::<AgentScope>(bad).is_err(), "{bad}");
        }
    }
}
