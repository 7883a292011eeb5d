//! Agents: registered non-human identities, each with an accountable owner, a ceiling of tool
//! rights it may ever hold, a maximum mandate lifetime and a lifecycle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{nullable, text_enum, Grant, Invalid, Validation};

/// Whether an agent starts tasks or works under another agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// Calls mandate at task start with the human's token.
    Orchestrator,
    /// Receives attenuated mandates from another agent.
    SubAgent,
}
text_enum!(AgentKind { Orchestrator => "orchestrator", SubAgent => "sub_agent" });

/// Where an agent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May receive mandates.
    Active,
    /// Temporarily barred; can be resumed.
    Suspended,
    /// Permanently barred.
    Retired,
}
text_enum!(AgentStatus { Active => "active", Suspended => "suspended", Retired => "retired" });

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    /// Slug id.
    #[schema(example = "support-orchestrator")]
    pub id: String,
    /// Human-readable name.
    #[schema(example = "Support orchestrator")]
    pub display_name: String,
    /// Orchestrator or sub-agent.
    pub kind: AgentKind,
    /// The accountable human (subject or email).
    #[schema(example = "alice@example.com")]
    pub owner: String,
    /// Owning team.
    pub team: Option<String>,
    /// What the agent is for.
    pub description: Option<String>,
    /// Every tool operation the agent may ever hold.
    pub ceiling: Vec<Grant>,
    /// Longest mandate the agent may receive, in seconds.
    #[schema(example = 900)]
    pub max_ttl_seconds: u32,
    /// Whether every mandate minted for it must be bound to a key (proof of possession).
    #[serde(default)]
    pub require_binding: bool,
    /// Lifecycle state.
    pub status: AgentStatus,
    /// Increases with every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/agents`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Slug id: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    #[schema(example = "support-orchestrator")]
    pub id: String,
    /// Human-readable name (at most 128 characters).
    #[schema(example = "Support orchestrator")]
    pub display_name: String,
    /// Orchestrator or sub-agent.
    pub kind: AgentKind,
    /// The accountable human (subject or email); required.
    #[schema(example = "alice@example.com")]
    pub owner: String,
    /// Owning team.
    #[serde(default)]
    pub team: Option<String>,
    /// What the agent is for (at most 2048 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Tool operations it may ever hold; each must be offered by a registered tool.
    #[serde(default)]
    pub ceiling: Vec<Grant>,
    /// Longest mandate it may receive, 1 to the service cap (default 900).
    #[serde(default)]
    pub max_ttl_seconds: Option<i64>,
    /// Refuse to mint it a mandate not bound to a key (default false).
    #[serde(default)]
    pub require_binding: bool,
}

/// `PATCH /v1/admin/agents/{id}`: absent fields stay, `null` clears optional ones.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New accountable owner.
    pub owner: Option<String>,
    /// New team, or `null` to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub team: Option<Option<String>>,
    /// New description, or `null` to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New ceiling (replaces the old one).
    pub ceiling: Option<Vec<Grant>>,
    /// New maximum TTL.
    pub max_ttl_seconds: Option<i64>,
    /// Whether its mandates must be bound to a key.
    pub require_binding: Option<bool>,
}

/// Default maximum mandate lifetime of a new agent: 15 minutes.
pub const DEFAULT_MAX_TTL: u32 = 900;

/// An agent's registered Ed25519 public key, used to attest its delegation hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentKey {
    /// Key id.
    pub id: Uuid,
    /// The agent it belongs to.
    pub agent_id: String,
    /// `ed25519/<64 hex digits>`.
    pub public_key: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/admin/agents/{id}/keys`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentKey {
    /// `ed25519/<64 hex digits>`.
    #[schema(example = "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189")]
    pub public_key: String,
}

/// The metadata of an agent secret; the secret itself is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentSecretInfo {
    /// Secret id.
    pub id: Uuid,
    /// Who issued it.
    pub created_by: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}

/// An agent with its credentials' metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentDetail {
    /// The agent.
    #[serde(flatten)]
    pub agent: Agent,
    /// Its active secret, if one is issued (never the secret itself).
    pub secret: Option<AgentSecretInfo>,
    /// Its registered public keys.
    pub public_keys: Vec<AgentKey>,
}

/// An agent secret, shown once.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedAgentSecret {
    /// Secret id.
    pub id: Uuid,
    /// The agent.
    pub agent_id: String,
    /// `mnd_agt_…`: store it now; mandate keeps only its hash.
    pub secret: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
}

impl NewAgent {
    /// Field checks that need no store; tool references are checked by the caller.
    pub fn check(&self, cap: u32) -> Result<(), Invalid> {
        let mut check = Validation::new();
        check.id("id", &self.id);
        check.text("display_name", &self.display_name, 128, true);
        check.text("owner", &self.owner, 256, true);
        check.optional_text("team", self.team.as_deref(), 128);
        check.optional_text("description", self.description.as_deref(), 2048);
        check.grants("ceiling", &self.ceiling, super::GrantsOf::Ceiling);
        if let Some(ttl) = self.max_ttl_seconds {
            check.ttl("max_ttl_seconds", ttl, cap);
        }
        check.finish()
    }

    /// The agent this request registers.
    pub fn into_agent(self, cap: u32, now: DateTime<Utc>) -> Agent {
        Agent {
            id: self.id,
            display_name: self.display_name,
            kind: self.kind,
            owner: self.owner,
            team: self.team,
            description: self.description,
            ceiling: self.ceiling,
            max_ttl_seconds: self
                .max_ttl_seconds
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_MAX_TTL.min(cap)),
            require_binding: self.require_binding,
            status: AgentStatus::Active,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

impl AgentPatch {
    /// Field checks that need no store.
    pub fn check(&self, cap: u32) -> Result<(), Invalid> {
        let mut check = Validation::new();
        if let Some(name) = &self.display_name {
            check.text("display_name", name, 128, true);
        }
        if let Some(owner) = &self.owner {
            check.text("owner", owner, 256, true);
        }
        if let Some(team) = &self.team {
            check.optional_text("team", team.as_deref(), 128);
        }
        if let Some(description) = &self.description {
            check.optional_text("description", description.as_deref(), 2048);
        }
        if let Some(ceiling) = &self.ceiling {
            check.grants("ceiling", ceiling, super::GrantsOf::Ceiling);
        }
        if let Some(ttl) = self.max_ttl_seconds {
            check.ttl("max_ttl_seconds", ttl, cap);
        }
        check.finish()
    }

    /// `agent` with this patch applied (not yet versioned or timestamped).
    pub fn apply(self, mut agent: Agent) -> Agent {
        if let Some(v) = self.display_name {
            agent.display_name = v;
        }
        if let Some(v) = self.owner {
            agent.owner = v;
        }
        if let Some(v) = self.team {
            agent.team = v;
        }
        if let Some(v) = self.description {
            agent.description = v;
        }
        if let Some(v) = self.ceiling {
            agent.ceiling = v;
        }
        if let Some(v) = self.max_ttl_seconds.and_then(|t| u32::try_from(t).ok()) {
            agent.max_ttl_seconds = v;
        }
        if let Some(v) = self.require_binding {
            agent.require_binding = v;
        }
        agent
    }
}

impl std::fmt::Debug for IssuedAgentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAgentSecret")
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}
