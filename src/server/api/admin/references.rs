//! What admin changes check against the rest of the inventory: the tools and agents a grant or
//! a policy names, and who still uses what a change would withdraw.

use crate::server::error::ApiError;
use crate::server::model::agent::{Agent, AgentStatus};
use crate::server::model::tool::ToolStatus;
use crate::server::model::{Grant, Validation};
use crate::server::state::AppState;
use crate::server::store;

/// Checks that every granted tool exists, is not retired, and offers each operation.
pub(super) async fn check_grants(
    state: &AppState,
    field: &str,
    grants: &[Grant],
) -> Result<(), ApiError> {
    let mut check = Validation::new();
    for (i, grant) in grants.iter().enumerate() {
        match state.store.tool(&grant.tool).await? {
            None => check.fail(
                format!("{field}[{i}].tool"),
                format!("unknown tool `{}`", grant.tool),
            ),
            Some(tool) if tool.status == ToolStatus::Retired => check.fail(
                format!("{field}[{i}].tool"),
                format!("tool `{}` is retired", grant.tool),
            ),
            Some(tool) => {
                for (j, op) in grant.operations.iter().enumerate() {
                    if !tool.operations.contains(op) {
                        check.fail(
                            format!("{field}[{i}].operations[{j}]"),
                            format!("tool `{}` offers no operation `{op}`", tool.id),
                        );
                    }
                }
            }
        }
    }
    Ok(check.finish()?)
}

/// Checks that every listed agent exists and is not retired.
pub(super) async fn check_agents(
    state: &AppState,
    field: &str,
    ids: &[String],
) -> Result<(), ApiError> {
    let mut check = Validation::new();
    for (i, id) in ids.iter().enumerate() {
        let message = match state.store.agent(id).await? {
            None => format!("unknown agent `{id}`"),
            Some(agent) if agent.status == AgentStatus::Retired => {
                format!("agent `{id}` is retired")
            }
            Some(_) => continue,
        };
        check.fail(format!("{field}[{i}]"), message);
    }
    Ok(check.finish()?)
}

/// Every agent (for reference checks).
pub(super) async fn all_agents(state: &AppState) -> Result<Vec<Agent>, ApiError> {
    Ok(store::all_agents(state.store.as_ref()).await?)
}

/// The 409 of a change that others still depend on.
pub(super) fn still_used(what: &str, users: &[String]) -> ApiError {
    ApiError::Conflict(format!(
        "{what} is still used by {}; change those first or pass force=true",
        users.join(", ")
    ))
}
