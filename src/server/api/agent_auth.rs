//! Agent authentication at the edge: `Authorization: Bearer mnd_agt_…`. The extractor only
//! finds the agent (see [`crate::server::caller`]) and answers 401 or 403 when it cannot.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::extract::bearer;
use crate::server::caller::{agent_in_inventory, Orchestrator};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// The 401 detail for a secret that finds no active agent.
pub const UNKNOWN_AGENT: &str = "unknown agent, suspended agent or wrong agent secret";

impl FromRequestParts<AppState> for Orchestrator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::Unauthorized(UNKNOWN_AGENT.into());
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Err(ApiError::Unauthorized(
                "send the agent secret as `Authorization: Bearer mnd_agt_…`".into(),
            ));
        }
        let secret = bearer(&parts.headers).ok_or_else(unauthorized)?;
        let found = agent_in_inventory(state, secret)
            .await?
            .ok_or_else(unauthorized)?;
        Ok(Orchestrator::try_from(found)?)
    }
}
