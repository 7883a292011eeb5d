//! An agent's credentials: its secret (`mnd_agt_…`, shown once, stored as a hash) and its
//! Ed25519 public keys (used to attest the delegation hops it signs).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use super::answers::{audit_json, shown_once, ShownOnce};
use super::auth::{Caller, Writer};
use super::lifecycle::Administered;
use crate::server::api::extract::ApiJson;
use crate::server::api::problems::{ActionErrors, ChangeErrors};
use crate::server::error::ApiError;
use crate::server::model::agent::{
    Agent, AgentKey, AgentSecretInfo, AgentStatus, IssuedAgentSecret, NewAgentKey,
};
use crate::server::secrets::{self, AGENT_SECRET_PREFIX};
use crate::server::state::AppState;
use crate::server::store::{change_event, new_id, NewSecret, SecretChange};
use crate::token::keys::{format_public_key, parse_public_key};

async fn live_agent(state: &AppState, id: &str) -> Result<(), ApiError> {
    let agent = Agent::load(state, id).await?;
    if agent.status == AgentStatus::Retired {
        return Err(ApiError::Conflict(format!("agent `{id}` is retired")));
    }
    Ok(())
}

/// Issues or rotates a secret and returns it, once.
async fn new_secret(
    state: &AppState,
    caller: &Caller,
    id: &str,
    rotate: bool,
) -> Result<ShownOnce<IssuedAgentSecret>, ApiError> {
    live_agent(state, id).await?;
    let before = state.store.agent_secret(id).await?;
    let now = state.clock.now();
    let secret =
        secrets::generate(AGENT_SECRET_PREFIX).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let info = AgentSecretInfo {
        id: new_id(now),
        created_by: caller.actor(),
        created_at: now,
    };
    let stored = NewSecret {
        info: info.clone(),
        hash: secret.hash(),
    };
    let (change, action) = if rotate {
        (SecretChange::Rotate(stored), "agent.secret_rotated")
    } else {
        (SecretChange::Issue(stored), "agent.secret_issued")
    };
    let audit = change_event(
        now,
        &caller.actor(),
        action,
        format!("agent:{id}"),
        before.as_ref().and_then(audit_json),
        audit_json(&info),
    );
    state
        .store
        .change_agent_secret(id, &change, now, &audit)
        .await?;
    Ok(shown_once(IssuedAgentSecret {
        id: info.id,
        agent_id: id.to_owned(),
        secret: secret.expose().to_owned(),
        created_at: now,
    }))
}

/// Issue the agent's secret (shown once). Refused if one is active: rotate it instead.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/secret", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 201, description = "The secret, shown this once", body = IssuedAgentSecret),
        ActionErrors,
    )
)]
pub async fn issue_secret(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<ShownOnce<IssuedAgentSecret>, ApiError> {
    new_secret(&state, &caller, &id, false).await
}

/// Replace the agent's secret: the old one stops working now; the new one is shown once.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/secret/rotate", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 201, description = "The new secret, shown this once", body = IssuedAgentSecret),
        ActionErrors,
    )
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<ShownOnce<IssuedAgentSecret>, ApiError> {
    new_secret(&state, &caller, &id, true).await
}

/// Revoke the agent's secret.
#[utoipa::path(
    delete, path = "/v1/admin/agents/{id}/secret", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses(
        (status = 204, description = "Revoked"),
        ActionErrors,
    )
)]
pub async fn revoke_secret(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    Agent::load(&state, &id).await?;
    let before = state.store.agent_secret(&id).await?;
    let now = state.clock.now();
    let audit = change_event(
        now,
        &caller.actor(),
        "agent.secret_revoked",
        format!("agent:{id}"),
        before.as_ref().and_then(audit_json),
        None,
    );
    state
        .store
        .change_agent_secret(&id, &SecretChange::Revoke, now, &audit)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register an Ed25519 public key with which the agent attests its delegation hops.
#[utoipa::path(
    post, path = "/v1/admin/agents/{id}/keys", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id")),
    request_body = NewAgentKey,
    responses(
        (status = 201, description = "Registered", body = AgentKey),
        ChangeErrors,
    )
)]
pub async fn add_key(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAgentKey>,
) -> Result<(StatusCode, Json<AgentKey>), ApiError> {
    let public = parse_public_key(&body.public_key)
        .map_err(|e| ApiError::field("public_key", e.to_string()))?;
    live_agent(&state, &id).await?;
    let now = state.clock.now();
    let key = AgentKey {
        id: new_id(now),
        agent_id: id.clone(),
        // The canonical (lowercase) form, so one key cannot be registered twice by case.
        public_key: format_public_key(&public),
        created_at: now,
    };
    let audit = change_event(
        now,
        &caller.actor(),
        "agent.key_added",
        format!("agent:{id}"),
        None,
        audit_json(&key),
    );
    state.store.insert_agent_key(&key, &audit).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Remove one of the agent's public keys.
#[utoipa::path(
    delete, path = "/v1/admin/agents/{id}/keys/{key_id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent id"), ("key_id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Removed"),
        ActionErrors,
    )
)]
pub async fn remove_key(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path((id, key_id)): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let before = state
        .store
        .agent_keys(&id)
        .await?
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ApiError::NotFound(format!("agent `{id}` has no key {key_id}")))?;
    let now = state.clock.now();
    let audit = change_event(
        now,
        &caller.actor(),
        "agent.key_removed",
        format!("agent:{id}"),
        audit_json(&before),
        None,
    );
    state
        .store
        .remove_agent_key(&id, key_id, now, &audit)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
