//! The admin API for IAM teams, under `/v1/admin`: the agent and tool inventory with
//! accountable owners, issuers, delegation policies, admin tokens, and the audit trail. Every
//! change is attributed to the calling token and recorded with before/after in one transaction.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod inventory;
pub mod issuers;
pub mod policies;
pub mod reporters;
pub mod tokens;
pub mod tools;

use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::server::app::AppState;
use crate::server::error::{ApiError, FieldError};
use crate::server::model::agent::{Agent, AgentStatus};
use crate::server::model::tool::ToolStatus;
use crate::server::model::Grant;
use crate::server::store;

/// Every admin route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(agents::create_agent, agents::list_agents))
        .routes(routes!(agents::get_agent, agents::update_agent))
        .routes(routes!(agents::suspend_agent))
        .routes(routes!(agents::resume_agent))
        .routes(routes!(agents::retire_agent))
        .routes(routes!(
            credentials::issue_secret,
            credentials::revoke_secret
        ))
        .routes(routes!(credentials::rotate_secret))
        .routes(routes!(credentials::add_key))
        .routes(routes!(credentials::remove_key))
        .routes(routes!(tools::create_tool, tools::list_tools))
        .routes(routes!(tools::get_tool, tools::update_tool))
        .routes(routes!(tools::disable_tool))
        .routes(routes!(tools::enable_tool))
        .routes(routes!(tools::retire_tool))
        .routes(routes!(issuers::create_issuer, issuers::list_issuers))
        .routes(routes!(issuers::get_issuer, issuers::update_issuer))
        .routes(routes!(issuers::disable_issuer))
        .routes(routes!(issuers::enable_issuer))
        .routes(routes!(policies::create_policy, policies::list_policies))
        .routes(routes!(
            policies::get_policy,
            policies::update_policy,
            policies::delete_policy
        ))
        .routes(routes!(
            reporters::create_reporter,
            reporters::list_reporters
        ))
        .routes(routes!(reporters::rotate_reporter_secret))
        .routes(routes!(reporters::disable_reporter))
        .routes(routes!(reporters::enable_reporter))
        .routes(routes!(inventory::inventory))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::verify_audit))
}

/// A 201 that carries a secret shown this once: never stored by caches.
pub type ShownOnce<T> = (
    axum::http::StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    axum::Json<T>,
);

fn shown_once<T>(body: T) -> ShownOnce<T> {
    (
        axum::http::StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
}

/// A changed resource, with how many live mandates the change revoked in
/// `x-revoked-mandates` (suspending or retiring an agent, disabling or retiring a tool,
/// disabling an issuer). Sub-agents hold only derived tokens mandate never sees: revoke the
/// mandates delegated to them instead.
pub type WithRevoked<T> = ([(axum::http::HeaderName, String); 1], axum::Json<T>);

fn with_revoked<T>(changed: axum::Json<T>, revoked: usize) -> WithRevoked<T> {
    (
        [(
            axum::http::HeaderName::from_static("x-revoked-mandates"),
            revoked.to_string(),
        )],
        changed,
    )
}

/// A value as JSON for an audit event's before/after.
fn snapshot<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Checks that every granted tool exists, is not retired, and offers each operation.
async fn check_grants(state: &AppState, field: &str, grants: &[Grant]) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, grant) in grants.iter().enumerate() {
        match state.store.tool(&grant.tool).await? {
            None => errors.push(FieldError {
                field: format!("{field}[{i}].tool"),
                message: format!("unknown tool `{}`", grant.tool),
            }),
            Some(tool) if tool.status == ToolStatus::Retired => errors.push(FieldError {
                field: format!("{field}[{i}].tool"),
                message: format!("tool `{}` is retired", grant.tool),
            }),
            Some(tool) => {
                for (j, op) in grant.operations.iter().enumerate() {
                    if !tool.operations.contains(op) {
                        errors.push(FieldError {
                            field: format!("{field}[{i}].operations[{j}]"),
                            message: format!("tool `{}` offers no operation `{op}`", tool.id),
                        });
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Checks that every listed agent exists and is not retired.
async fn check_agents(state: &AppState, field: &str, ids: &[String]) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let message = match state.store.agent(id).await? {
            None => format!("unknown agent `{id}`"),
            Some(agent) if agent.status == AgentStatus::Retired => {
                format!("agent `{id}` is retired")
            }
            Some(_) => continue,
        };
        errors.push(FieldError {
            field: format!("{field}[{i}]"),
            message,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Every agent (for reference checks).
async fn all_agents(state: &AppState) -> Result<Vec<Agent>, ApiError> {
    Ok(store::all_agents(state.store.as_ref()).await?)
}

/// The 409 of a change that others still depend on.
fn still_used(what: &str, users: &[String]) -> ApiError {
    ApiError::Conflict(format!(
        "{what} is still used by {}; change those first or pass force=true",
        users.join(", ")
    ))
}
