//! The storage side of the admin API: admin tokens, agents and their credentials, tools and
//! issuers, policies. Every change takes the audit event that records it
//! and commits both together; updates name the version they replace, so a concurrent change is
//! a conflict rather than a lost update.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::core_store::NewAuditEvent;
use super::error::StoreError;
use crate::server::model::admin_token::AdminToken;
use crate::server::model::agent::{Agent, AgentKey, AgentSecretInfo};
use crate::server::model::issuer::Issuer;
use crate::server::model::page::PageRequest;
use crate::server::model::policy::Policy;
use crate::server::model::reporter::Reporter;
use crate::server::model::tool::Tool;
use crate::server::secrets::SecretHash;

/// The inventory generation a change was checked against (see `inventory_state` in the
/// migrations). Writes of agents, tools, issuers and policies take one and fail with a conflict
/// if any other such write landed after it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryGuard(pub i64);

/// Admin API tokens.
#[async_trait]
pub trait AdminTokenStore: Send + Sync {
    /// Records a new token (by hash). A taken name is a conflict.
    async fn insert_admin_token(
        &self,
        token: &AdminToken,
        hash: &SecretHash,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// The unrevoked token with this hash.
    async fn admin_token_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<AdminToken>, StoreError>;

    /// One token by id, revoked or not.
    async fn admin_token(&self, id: Uuid) -> Result<Option<AdminToken>, StoreError>;

    /// Tokens by name, after the page cursor; only those with `role` when given.
    async fn list_admin_tokens(
        &self,
        role: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<AdminToken>, StoreError>;

    /// Revokes an unrevoked token; `NotFound` when there is none.
    async fn revoke_admin_token(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
}

/// Filters of `GET /v1/admin/agents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this owner.
    pub owner: Option<String>,
    /// Only this team.
    pub team: Option<String>,
}

/// Filters of `GET /v1/admin/tools`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this owner.
    pub owner: Option<String>,
}

/// Filters of `GET /v1/admin/issuers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerFilter {
    /// Only this status.
    pub status: Option<String>,
}

/// Filters of `GET /v1/admin/policies`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFilter {
    /// Only enabled (or disabled) policies.
    pub enabled: Option<bool>,
    /// Only policies of this issuer.
    pub issuer: Option<String>,
}

/// A change to an agent's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    /// A first secret; a conflict if one is active.
    Issue(NewSecret),
    /// Replace the active secret; `NotFound` if there is none.
    Rotate(NewSecret),
    /// Revoke the active secret; `NotFound` if there is none.
    Revoke,
}

/// A secret to store (by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret {
    /// Its metadata.
    pub info: AgentSecretInfo,
    /// SHA-256 of the secret.
    pub hash: SecretHash,
}

/// Agents and their credentials.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// The current inventory generation; read it before checking a change.
    async fn inventory_guard(&self) -> Result<InventoryGuard, StoreError>;
    /// Registers an agent; a taken id is a conflict.
    async fn insert_agent(
        &self,
        agent: &Agent,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// One agent.
    async fn agent(&self, id: &str) -> Result<Option<Agent>, StoreError>;
    /// Agents by id, after the page cursor, up to `page.fetch_limit()`.
    async fn list_agents(
        &self,
        filter: &AgentFilter,
        page: &PageRequest,
    ) -> Result<Vec<Agent>, StoreError>;
    /// Replaces the agent whose version is `agent.version - 1`.
    async fn update_agent(
        &self,
        agent: &Agent,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// The agent's active secret.
    async fn agent_secret(&self, agent_id: &str) -> Result<Option<AgentSecretInfo>, StoreError>;
    /// The active agent whose unrevoked secret has this hash.
    async fn agent_by_secret(&self, hash: &SecretHash) -> Result<Option<Agent>, StoreError>;
    /// Every active agent that has an unrevoked secret, with its secret's hash.
    async fn active_agent_secrets(&self) -> Result<Vec<(SecretHash, Agent)>, StoreError>;
    /// Issues, rotates or revokes the agent's secret; advances the inventory generation (a
    /// mint authenticates its agent from the inventory kept in memory).
    async fn change_agent_secret(
        &self,
        agent_id: &str,
        change: &SecretChange,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// The agent's registered public keys.
    async fn agent_keys(&self, agent_id: &str) -> Result<Vec<AgentKey>, StoreError>;
    /// Every registered key of every active agent, by agent: a suspended agent attests nothing.
    async fn all_agent_keys(&self) -> Result<Vec<AgentKey>, StoreError>;
    /// Registers a public key; a key registered anywhere already is a conflict.
    async fn insert_agent_key(
        &self,
        key: &AgentKey,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// Removes a registered key; `NotFound` when the agent has no such key.
    async fn remove_agent_key(
        &self,
        agent_id: &str,
        key_id: Uuid,
        at: DateTime<Utc>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
}

/// Tools and issuers: what agents act on, and whom principals are proven by.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Registers a tool; a taken id is a conflict.
    async fn insert_tool(
        &self,
        tool: &Tool,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// One tool.
    async fn tool(&self, id: &str) -> Result<Option<Tool>, StoreError>;
    /// Tools by id, after the page cursor.
    async fn list_tools(
        &self,
        filter: &ToolFilter,
        page: &PageRequest,
    ) -> Result<Vec<Tool>, StoreError>;
    /// Replaces the tool whose version is `tool.version - 1`.
    async fn update_tool(
        &self,
        tool: &Tool,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// Registers an issuer; a taken id or issuer URL is a conflict.
    async fn insert_issuer(
        &self,
        issuer: &Issuer,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// One issuer.
    async fn issuer(&self, id: &str) -> Result<Option<Issuer>, StoreError>;
    /// Issuers by id, after the page cursor.
    async fn list_issuers(
        &self,
        filter: &IssuerFilter,
        page: &PageRequest,
    ) -> Result<Vec<Issuer>, StoreError>;
    /// Replaces the issuer whose version is `issuer.version - 1`.
    async fn update_issuer(
        &self,
        issuer: &Issuer,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
}

/// Delegation policies, and the live mandates the inventory counts.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Creates a policy; a taken id is a conflict.
    async fn insert_policy(
        &self,
        policy: &Policy,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// One policy.
    async fn policy(&self, id: &str) -> Result<Option<Policy>, StoreError>;
    /// Policies by id, after the page cursor.
    async fn list_policies(
        &self,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Vec<Policy>, StoreError>;
    /// Every policy (for reference checks and the inventory).
    async fn all_policies(&self) -> Result<Vec<Policy>, StoreError>;
    /// Replaces the policy whose version is `policy.version - 1`.
    async fn update_policy(
        &self,
        policy: &Policy,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes the policy if it is still at `version`.
    async fn delete_policy(
        &self,
        id: &str,
        version: i64,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// Unexpired, unrevoked mandates per agent.
    async fn live_mandate_counts(
        &self,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, i64>, StoreError>;
}

/// Reporters: the verifiers and gateways whose receipts are accepted.
#[async_trait]
pub trait ReporterStore: Send + Sync {
    /// Records a new reporter with the hash of its credential; a taken id is a conflict.
    async fn insert_reporter(
        &self,
        reporter: &Reporter,
        hash: &SecretHash,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;

    /// One reporter by id.
    async fn reporter(&self, id: &str) -> Result<Option<Reporter>, StoreError>;

    /// The active reporter whose credential has this hash.
    async fn reporter_by_secret(&self, hash: &SecretHash) -> Result<Option<Reporter>, StoreError>;

    /// Reporters by id, after the page cursor.
    async fn list_reporters(&self, page: &PageRequest) -> Result<Vec<Reporter>, StoreError>;

    /// Writes a changed reporter (status, version), and a new credential hash when given, if
    /// its version is still the one before; with its audit event.
    async fn update_reporter(
        &self,
        reporter: &Reporter,
        hash: Option<&SecretHash>,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
}
