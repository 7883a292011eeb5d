//! The admin API for IAM teams, under `/v1/admin`: the agent and tool inventory with
//! accountable owners, issuers, delegation policies, admin tokens, and the audit trail. Every
//! change is attributed to the calling token and recorded with before/after in one transaction.

pub mod agents;
mod answers;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod inventory;
pub mod issuers;
mod lifecycle;
pub mod policies;
mod references;
pub mod reporters;
pub mod tokens;
pub mod tools;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::server::state::AppState;

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
