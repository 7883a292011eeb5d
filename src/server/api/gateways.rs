//! What a gateway asks mandate: the tools it may route (`GET /v1/gateway/tools`, with its
//! reporter credential), and the authorization server's RFC 8414 metadata, which MCP clients
//! find through a gateway's protected resource metadata.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::receipts::Reporting;
use crate::server::error::ApiError;
use crate::server::model::reporter::ReporterKind;
use crate::server::model::tool::ToolStatus;
use crate::server::state::AppState;
use crate::server::store::all_tools;

/// One tool a gateway may route.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoutableTool {
    /// The tool's id.
    pub id: String,
    /// Its operations (on an MCP route: the MCP tools' names).
    pub operations: Vec<String>,
}

/// `GET /v1/gateway/tools`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayInventory {
    /// The gateway's reporter id.
    pub gateway: String,
    /// Every active tool.
    pub tools: Vec<RoutableTool>,
}

/// The active tools, for a registered gateway checking its routes at start-up.
#[utoipa::path(
    get, path = "/v1/gateway/tools", tag = "receipts",
    security(("reporter_secret" = [])),
    responses(
        (status = 200, description = "The active tools", body = GatewayInventory),
        (status = 401, description = "No credential of an active reporter", body = crate::server::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The reporter is a verifier, not a gateway", body = crate::server::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn tools(
    State(state): State<AppState>,
    Reporting(reporter): Reporting,
) -> Result<Json<GatewayInventory>, ApiError> {
    if reporter.kind != ReporterKind::Gateway {
        return Err(ApiError::Forbidden(format!(
            "`{}` is registered as a verifier, not a gateway",
            reporter.id
        )));
    }
    let tools = all_tools(state.store.as_ref())
        .await?
        .into_iter()
        .filter(|t| t.status == ToolStatus::Active)
        .map(|t| RoutableTool {
            id: t.id,
            operations: t.operations,
        })
        .collect();
    Ok(Json(GatewayInventory {
        gateway: reporter.id,
        tools,
    }))
}

/// RFC 8414 authorization server metadata, for the address the request was made to.
#[utoipa::path(
    get, path = "/.well-known/oauth-authorization-server", tag = "keys",
    responses(
        (status = 200, description = "Authorization server metadata (RFC 8414)", body = Object),
        (status = 400, description = "No Host header", body = crate::server::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn authorization_server(headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    let issuer = origin(&headers)?;
    Ok(Json(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "response_types_supported": [],
        "introspection_endpoint": format!("{issuer}/v1/introspect"),
        "revocation_endpoint": format!("{issuer}/v1/revocations"),
        "dpop_signing_alg_values_supported": crate::token::pop::ALGORITHMS,
        "mandate_keys_uri": format!("{issuer}/.well-known/mandate-keys"),
        "mandate_agent_keys_uri": format!("{issuer}/.well-known/mandate-agent-keys"),
        "mandate_revocation_feed": format!("{issuer}/v1/revocations/stream"),
    })))
}

/// The origin clients address mandate at, from `Host` and `X-Forwarded-Proto` (set by the
/// TLS-terminating proxy in front).
pub fn origin(headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .ok_or_else(|| ApiError::BadRequest("a Host header is required".into()))?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{host}"))
}
