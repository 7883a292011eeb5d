//! `POST /v1/mandates`: an orchestrator exchanges a human principal's token and a task for a
//! mandate.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::ApiJson;
use crate::server::approvals::{ApprovalView, POLL_INTERVAL};
use crate::server::caller::Orchestrator;
use crate::server::error::{ApiError, Problem};
use crate::server::mint::{mint, Issued, MintRequest, Outcome, RequestMeta};
use crate::server::model::Grant;
use crate::server::state::AppState;
use crate::token::pop::HolderKey;

/// The task a mandate is for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// What the task is (at most 4096 bytes), stored and bound verbatim.
    #[schema(example = "Summarise open support tickets for ACME")]
    pub description: String,
    /// The caller's own id for the task (at most 128 characters).
    #[serde(default, rename = "ref")]
    pub task_ref: Option<String>,
}

/// `POST /v1/mandates`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// The human principal's JWT from a trusted issuer.
    pub subject_token: String,
    /// The task.
    pub task: TaskBody,
    /// Tool operations wanted; all must be granted or nothing is.
    pub scope: Vec<Grant>,
    /// Wanted lifetime, 1 to the service cap (default 900; never more than policy or agent allow).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// Bind the mandate to this public key (a JWK, Ed25519 or P-256): every use then needs a
    /// DPoP proof signed by it.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"kty": "OKP", "crv": "Ed25519", "x": "I9qRDBHBQHUdyqWrci_dsHqtUbPxrr2AK0TgU48a27g"}))]
    pub holder_key: Option<serde_json::Value>,
}

/// Metadata of the request, for the issuance record.
pub fn request_meta(headers: &HeaderMap, endpoint: &'static str) -> RequestMeta {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    RequestMeta {
        endpoint,
        request_id: text("x-request-id"),
        user_agent: text("user-agent"),
    }
}

/// Mint a mandate for a task, on behalf of the human whose token is presented.
#[utoipa::path(
    post, path = "/v1/mandates", tag = "mandates", security(("agent_secret" = [])),
    request_body = MintBody,
    responses(
        (status = 201, description = "Minted and recorded", body = Issued,
         headers(("cache-control" = String, description = "no-store"))),
        (status = 202, description = "A requested operation needs human approval: nothing is minted yet. Poll `poll` or stream `stream`; once approved, POST `mandate` for the mandate", body = ApprovalView,
         headers(("location" = String, description = "The approval request"),
                 ("retry-after" = u64, description = "Seconds between polls"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Bad agent secret, or the subject token was refused (`reason` names the check)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A sub-agent, or operations denied (`denied` lists each with its reason)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, named", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The orchestrator already holds the most live mandates allowed (or pending approval requests), or it or a tool stopped being active (or its secret was changed) while the mandate was minted, or a gating policy names approvers of an issuer that is not trusted; nothing was issued", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The orchestrator or the principal has reached its mint rate limit; nothing was issued",
         body = Problem, content_type = "application/problem+json",
         headers(("retry-after" = u64, description = "Seconds until a mint is allowed again"))),
        (status = 503, description = "The store or the issuer's keys are unavailable, or the inventory kept changing while the mandate was minted; nothing was issued", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_mandate(
    State(state): State<AppState>,
    orchestrator: Orchestrator,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MintBody>,
) -> Result<Response, ApiError> {
    let holder_key = body
        .holder_key
        .as_ref()
        .map(HolderKey::from_jwk)
        .transpose()
        .map_err(|e| ApiError::field("holder_key", e.to_string()))?;
    let request = MintRequest {
        holder_key,
        subject_token: body.subject_token,
        task_description: body.task.description,
        task_ref: body.task.task_ref,
        scope: body.scope,
        ttl_seconds: body.ttl_seconds,
    };
    let outcome = mint(
        &state,
        &orchestrator,
        request,
        request_meta(&headers, "/v1/mandates"),
    )
    .await?;
    match outcome {
        Outcome::Issued(issued) => Ok((
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, "no-store")],
            Json(issued),
        )
            .into_response()),
        Outcome::Pending(request) => {
            let view = ApprovalView::of(&request, state.clock.now());
            let mut response = (StatusCode::ACCEPTED, Json(&view)).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::RETRY_AFTER, HeaderValue::from(POLL_INTERVAL));
            if let Ok(location) = HeaderValue::from_str(&view.poll) {
                headers.insert(header::LOCATION, location);
            }
            Ok(response)
        }
    }
}
