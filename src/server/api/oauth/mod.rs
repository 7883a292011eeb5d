//! `POST /oauth2/token`: the same exchange as `POST /v1/mandates`, as OAuth 2.0 Token Exchange
//! (RFC 8693) with RFC 6749 client authentication and errors, for clients that speak OAuth.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod ciba;

use super::dpop;
use super::mandates::request_meta;
use crate::server::caller::{agent_in_inventory, Orchestrator};
use crate::server::error::ApiError;
use crate::server::mint::{mint, Issued, MintRequest, Outcome};
use crate::server::model::Grant;
use crate::server::policy::DenialReason;
use crate::server::state::AppState;
use crate::token::pop::proof::ProofError;
use crate::token::pop::HolderKey;

/// The grant type of RFC 8693.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type mandate issues.
pub const MANDATE_TOKEN_TYPE: &str = "urn:mandate:params:oauth:token-type:mandate";
/// The `actor_token_type` of an agent secret sent as `actor_token`.
pub const AGENT_SECRET_TOKEN_TYPE: &str = "urn:mandate:params:oauth:token-type:agent-secret";
/// Subject token types accepted: all are JWTs from a trusted issuer.
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// A successful exchange (RFC 8693 section 2.2.1), with mandate's extensions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The mandate.
    pub access_token: String,
    /// `urn:mandate:params:oauth:token-type:mandate`.
    pub issued_token_type: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The granted scope, `tool:operation` separated by spaces.
    pub scope: String,
    /// The mandate's id.
    pub mandate_id: String,
    /// The authority block's revocation id, hex.
    pub revocation_id: String,
}

/// An RFC 6749 error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// RFC 6749 / RFC 8693 error code.
    #[schema(example = "invalid_scope")]
    pub error: String,
    /// What went wrong.
    pub error_description: String,
}

struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
    /// Members added to the error object (a pending approval's `auth_req_id` and the rest).
    extra: serde_json::Map<String, serde_json::Value>,
}

fn refuse(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error,
        description: description.into(),
        retry_after: None,
        extra: serde_json::Map::new(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".to_owned(), self.error.into());
        body.insert("error_description".to_owned(), self.description.into());
        body.extend(self.extra);
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::Value::Object(body)),
        )
            .into_response();
        if self.error == "invalid_client" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mandate\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Refusals of the domain reach OAuth clients as they reach every other client, in OAuth's
/// words.
macro_rules! refused_as_api_error {
    ($($error:ty),+) => {$(
        impl From<$error> for Refusal {
            fn from(error: $error) -> Self {
                ApiError::from(error).into()
            }
        }
    )+};
}
refused_as_api_error!(
    crate::server::store::StoreError,
    crate::server::caller::NotAnOrchestrator,
    crate::server::mint::MintError
);

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        let description = error.problem().detail.unwrap_or_default();
        match error {
            ApiError::Invalid(_) | ApiError::BadRequest(_) => {
                refuse(StatusCode::BAD_REQUEST, "invalid_request", description)
            }
            ApiError::SubjectRejected(e) => refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("subject_token refused ({}): {e}", e.code()),
            ),
            ApiError::Denied(denied)
                if !denied.is_empty()
                    && denied
                        .iter()
                        .all(|d| d.reason == DenialReason::BindingRequired) =>
            {
                refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    "the mandate must be bound to a key: send a DPoP proof with the request",
                )
            }
            ApiError::Denied(_) => refuse(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("denied: {description}"),
            ),
            ApiError::Unauthorized(_) => {
                refuse(StatusCode::UNAUTHORIZED, "invalid_client", description)
            }
            ApiError::Forbidden(_) => {
                refuse(StatusCode::BAD_REQUEST, "unauthorized_client", description)
            }
            ApiError::Unavailable(_) => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                description,
            ),
            ApiError::TooManyRequests(seconds, _) => Refusal {
                retry_after: Some(seconds),
                ..refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    description,
                )
            },
            ApiError::Conflict(_) => refuse(StatusCode::CONFLICT, "invalid_request", description),
            ApiError::PayloadTooLarge => refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request body too large",
            ),
            other => {
                let _ = other.into_response(); // logs internal causes
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

/// The form, each parameter at most once (RFC 6749 section 3.2).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, Refusal> {
    if !super::extract::is_form(headers) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("parameter `{name}` is repeated"),
            ));
        }
    }
    Ok(form)
}

/// `Authorization: Basic` credentials (client id and secret, each form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "malformed client credentials",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// The orchestrator behind the request: HTTP Basic (client id = agent id) or `actor_token`.
async fn client(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Orchestrator, Refusal> {
    let invalid = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    };
    let basic = basic_credentials(headers)?;
    let actor = form.get("actor_token");
    let agent = match (basic, actor) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate with HTTP Basic or actor_token, not both",
            ))
        }
        (None, None) => return Err(invalid()),
        (Some((client_id, secret)), None) => agent_in_inventory(state, &secret)
            .await?
            .filter(|found| found.agent.id == client_id),
        (None, Some(token)) => {
            if form.get("actor_token_type").map(String::as_str) != Some(AGENT_SECRET_TOKEN_TYPE) {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("actor_token_type must be {AGENT_SECRET_TOKEN_TYPE}"),
                ));
            }
            agent_in_inventory(state, token).await?
        }
    };
    let found = agent.ok_or_else(invalid)?;
    Ok(Orchestrator::try_from(found)?)
}

/// `tool:operation tool:operation …`, grouped by tool in order of appearance.
fn parse_scope(scope: &str) -> Result<Vec<Grant>, Refusal> {
    let mut grants: Vec<Grant> = Vec::new();
    for item in scope.split(' ').filter(|s| !s.is_empty()) {
        let (tool, operation) = item.split_once(':').ok_or_else(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("`{item}` is not tool:operation"),
            )
        })?;
        match grants.iter_mut().find(|g| g.tool == tool) {
            Some(grant) => grant.operations.push(operation.to_owned()),
            None => grants.push(Grant {
                tool: tool.to_owned(),
                operations: vec![operation.to_owned()],
                constraints: Default::default(),
                approval: None,
                arguments: None,
            }),
        }
    }
    Ok(grants)
}

/// The key of the request's `DPoP` proof (RFC 9449 section 5), which the mandate is then
/// bound to: the proof must be for `POST` on this endpoint, fresh and not seen before.
fn dpop_key(state: &AppState, headers: &HeaderMap) -> Result<Option<HolderKey>, Refusal> {
    match super::dpop::post_proof(state, headers, "/oauth2/token", None, None) {
        Ok(proof) => Ok(proof.map(|p| p.key)),
        Err(dpop::Refused::Request(error)) => Err(error.into()),
        Err(dpop::Refused::Proof(ProofError::Busy)) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            ProofError::Busy.to_string(),
        )),
        Err(dpop::Refused::Proof(error)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_dpop_proof",
            error.to_string(),
        )),
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Refusal> {
    form.get(name).map(String::as_str).ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("missing parameter `{name}`"),
        )
    })
}

async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, Refusal> {
    let form = parse_form(headers, body)?;
    let grant_type = required(&form, "grant_type")?;
    if grant_type == ciba::GRANT {
        let orchestrator = client(state, headers, &form).await?;
        let auth_req_id = required(&form, "auth_req_id")?;
        let now = state.clock.now();
        return match ciba::poll(state, &orchestrator, auth_req_id).await {
            Ok((issued, bound)) => Ok(token_response(issued, bound, now)),
            Err(ciba::Refused::OAuth(error, description)) => {
                Err(refuse(StatusCode::BAD_REQUEST, error, description))
            }
            Err(ciba::Refused::Api(error)) => Err(error.into()),
        };
    }
    if grant_type != TOKEN_EXCHANGE {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("only {TOKEN_EXCHANGE} and {} are supported", ciba::GRANT),
        ));
    }
    let orchestrator = client(state, headers, &form).await?;
    let subject_token = required(&form, "subject_token")?;
    let subject_token_type = required(&form, "subject_token_type")?;
    if !SUBJECT_TOKEN_TYPES.contains(&subject_token_type) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "subject_token_type must be one of {}",
                SUBJECT_TOKEN_TYPES.join(", ")
            ),
        ));
    }
    if let Some(wanted) = form.get("requested_token_type") {
        if wanted != MANDATE_TOKEN_TYPE {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("requested_token_type must be {MANDATE_TOKEN_TYPE}"),
            ));
        }
    }
    let scope = parse_scope(required(&form, "scope")?)?;
    let ttl_seconds = match form.get("ttl_seconds") {
        None => None,
        Some(ttl) => Some(ttl.parse::<i64>().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "ttl_seconds is not a number",
            )
        })?),
    };
    let holder_key = dpop_key(state, headers)?;
    let bound = holder_key.is_some();
    let request = MintRequest {
        holder_key,
        subject_token: subject_token.to_owned(),
        task_description: required(&form, "task_description")?.to_owned(),
        task_ref: form.get("task_ref").cloned(),
        scope,
        ttl_seconds,
    };
    let now = state.clock.now();
    let outcome = mint(
        state,
        &orchestrator,
        request,
        request_meta(headers, "/oauth2/token"),
    )
    .await?;
    match outcome {
        Outcome::Issued(issued) => Ok(token_response(issued, bound, now)),
        Outcome::Pending(approval) => {
            let (description, members) = ciba::pending(&approval, now);
            let mut refusal = refuse(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                description,
            );
            refusal.extra = members;
            Err(refusal)
        }
    }
}

/// The RFC 8693 answer for a minted mandate.
fn token_response(
    issued: Issued,
    bound: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> TokenResponse {
    TokenResponse {
        access_token: issued.token,
        issued_token_type: MANDATE_TOKEN_TYPE.to_owned(),
        token_type: if bound { "DPoP" } else { "Bearer" }.to_owned(),
        expires_in: (issued.expires_at - now).num_seconds(),
        scope: issued
            .scope
            .iter()
            .map(|r| format!("{}:{}", r.tool, r.operation))
            .collect::<Vec<_>>()
            .join(" "),
        mandate_id: issued.mandate_id.to_string(),
        revocation_id: issued.revocation_id,
    }
}

/// OAuth 2.0 Token Exchange (RFC 8693): a human's JWT for a mandate. Form parameters:
/// `grant_type`, `subject_token`, `subject_token_type`, `scope` (`tool:operation …`),
/// `task_description`, optional `task_ref`, `ttl_seconds`, `requested_token_type`; the
/// orchestrator authenticates with HTTP Basic (agent id, agent secret) or `actor_token` (its
/// secret, `actor_token_type` = `urn:mandate:params:oauth:token-type:agent-secret`).
///
/// A scope with an operation a policy gates behind human approval answers 400
/// `authorization_pending` with CIBA's acknowledgement fields (`auth_req_id`,
/// `binding_message`, `expires_in`, `interval`); the orchestrator then polls with
/// `grant_type=urn:openid:params:grant-type:ciba` and `auth_req_id`, and gets
/// `authorization_pending`, `slow_down`, `expired_token`, `access_denied` or the mandate.
#[utoipa::path(
    post, path = "/oauth2/token", tag = "mandates", security((), ("client_basic" = [])),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
                 description = "RFC 8693 token exchange parameters"),
    responses(
        (status = 200, description = "Minted and recorded", body = TokenResponse),
        (status = 400, description = "invalid_request, invalid_scope, unsupported_grant_type or unauthorized_client; for a gated operation authorization_pending with auth_req_id, binding_message, expires_in and interval; when polling, authorization_pending, slow_down, expired_token, access_denied or invalid_grant", body = OAuthError),
        (status = 401, description = "invalid_client", body = OAuthError),
        (status = 413, description = "Body too large", body = OAuthError),
        (status = 500, description = "server_error", body = OAuthError),
        (status = 409, description = "invalid_request: the orchestrator already holds the most live mandates allowed", body = OAuthError),
        (status = 429, description = "temporarily_unavailable: a mint rate limit is reached; nothing was issued", body = OAuthError,
         headers(("retry-after" = u64, description = "Seconds until a mint is allowed again"))),
        (status = 503, description = "temporarily_unavailable: nothing was issued", body = OAuthError),
    )
)]
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange(&state, &headers, &body).await {
        Ok(response) => (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            Json(response),
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
