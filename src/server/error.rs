//! One error type for every endpoint, rendered as RFC 9457 problem+json. Internal causes are
//! logged with the request's span and answered with a generic message; they never reach clients.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::admin_tokens::AdminTokenError;
use super::approvals::ApprovalError;
use super::caller::NotAnOrchestrator;
use super::idp::IdpError;
use super::mint::MintError;
pub use super::model::FieldError;
use super::model::Invalid;
use super::policy::Denial;
use super::store::StoreError;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:mandate:problem:<code>`.
    #[schema(example = "urn:mandate:problem:not-found")]
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, fixed summary of the kind.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status.
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For 422: each invalid field and what is wrong with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// A stable reason code (for a refused subject token: `expired`, `bad_signature`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a refused mint: every denied operation and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denial>,
    /// The W3C trace id of the request, to find its trace and log lines.
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl Problem {
    /// A problem of kind `code` with the given status, title and detail.
    pub fn new(status: StatusCode, code: &str, title: &str, detail: Option<String>) -> Self {
        Self {
            kind: format!("urn:mandate:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
            reason: None,
            denied: Vec::new(),
            trace_id: None,
        }
    }

    /// The generic problem for a bare status.
    pub fn for_status(status: StatusCode) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        let code = title.to_ascii_lowercase().replace(' ', "-");
        Self::new(status, &code, title, None)
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if self.trace_id.is_none() {
            self.trace_id = super::telemetry::trace_id(&tracing::Span::current());
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response()
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404: nothing here; the message names what was looked for.
    #[error("{0}")]
    NotFound(String),
    /// 400: the request is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 401: the human principal's token was refused; the reason names the check that failed.
    #[error("{0}")]
    SubjectRejected(IdpError),
    /// 403: the requested scope is not granted; every denied operation is listed.
    #[error("requested operations are denied")]
    Denied(Vec<Denial>),
    /// 403: valid credentials that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 413: the body is larger than the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON with invalid fields; each is named.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// 409: the change contradicts what is stored; the message says what.
    #[error("{0}")]
    Conflict(String),
    /// 429: the caller has used its allowance; it may retry after this many seconds.
    #[error("{1}")]
    TooManyRequests(u64, String),
    /// 503: a dependency (the store) is not available; the message names it.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; logged, never described to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message)
            | StoreError::LimitReached(message)
            | StoreError::NoLongerActive(message) => ApiError::Conflict(message),
            StoreError::NotFound(message) => ApiError::NotFound(message),
            StoreError::InventoryMoved => ApiError::Unavailable(
                "the inventory changed while the mandate was minted; retry".to_owned(),
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                ApiError::Unavailable("the store is unavailable; retry later".to_owned())
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(Invalid(errors): Invalid) -> Self {
        ApiError::Invalid(errors)
    }
}

impl From<AdminTokenError> for ApiError {
    fn from(error: AdminTokenError) -> Self {
        match error {
            AdminTokenError::Invalid(invalid) => invalid.into(),
            AdminTokenError::Store(error) => error.into(),
            random @ AdminTokenError::Random(_) => ApiError::Internal(Box::new(random)),
        }
    }
}

impl From<NotAnOrchestrator> for ApiError {
    fn from(error: NotAnOrchestrator) -> Self {
        ApiError::Forbidden(error.to_string())
    }
}

impl From<MintError> for ApiError {
    fn from(error: MintError) -> Self {
        let message = error.to_string();
        match error {
            MintError::Invalid(invalid) => invalid.into(),
            MintError::RateLimited { retry_after, .. } => {
                ApiError::TooManyRequests(retry_after, message)
            }
            MintError::Unauthenticated => ApiError::Unauthorized(message),
            MintError::Subject(IdpError::KeysUnavailable) => {
                ApiError::Unavailable("the issuer's keys cannot be fetched; retry later".to_owned())
            }
            MintError::Subject(refused) => ApiError::SubjectRejected(refused),
            MintError::Denied(denied) => ApiError::Denied(denied),
            MintError::OrchestratorChanged(_) => ApiError::Conflict(message),
            MintError::InventoryKeptChanging => ApiError::Unavailable(message),
            MintError::Store(error) => error.into(),
            MintError::Sign(error) => ApiError::Internal(Box::new(error)),
            MintError::Approval(error) => error.into(),
        }
    }
}

impl From<ApprovalError> for ApiError {
    fn from(error: ApprovalError) -> Self {
        let message = error.to_string();
        match error {
            ApprovalError::NotFound(_) => ApiError::NotFound(message),
            ApprovalError::Approver(IdpError::KeysUnavailable) => {
                ApiError::Unavailable("the issuer's keys cannot be fetched; retry later".to_owned())
            }
            ApprovalError::Approver(refused) => ApiError::Unauthorized(format!(
                "the approver's token was refused ({}): {refused}",
                refused.code()
            )),
            ApprovalError::NotEligible(_)
            | ApprovalError::Denied { .. }
            | ApprovalError::PrincipalRevoked(_) => ApiError::Forbidden(message),
            ApprovalError::State { .. } | ApprovalError::GatedSince(_) => {
                ApiError::Conflict(message)
            }
            ApprovalError::Invalid(invalid) => invalid.into(),
            ApprovalError::Store(error) => error.into(),
        }
    }
}

impl ApiError {
    /// A 422 naming one invalid field and what is wrong with it.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The problem document for this error: its kind, its detail, and what only some kinds
    /// carry (the failed check's `reason`, the `denied` operations, the invalid fields).
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.kind();
        let mut problem = Problem::new(status, code, title, self.detail());
        match self {
            ApiError::SubjectRejected(error) => problem.reason = Some(error.code().to_owned()),
            ApiError::Denied(denied) => problem.denied = denied.clone(),
            ApiError::Invalid(errors) => problem.errors = errors.clone(),
            _ => {}
        }
        problem
    }

    /// The status, the problem type's code and its fixed title.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not Found"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad Request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::SubjectRejected(_) => (
                StatusCode::UNAUTHORIZED,
                "subject-token-rejected",
                "Subject Token Rejected",
            ),
            ApiError::Denied(_) => (StatusCode::FORBIDDEN, "scope-denied", "Scope Denied"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload Too Large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported Media Type",
            ),
            ApiError::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Unprocessable Content",
            ),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            ApiError::TooManyRequests(..) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too Many Requests",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service Unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal Server Error",
            ),
        }
    }

    /// What went wrong in this occurrence; never an internal cause.
    fn detail(&self) -> Option<String> {
        match self {
            ApiError::NotFound(detail)
            | ApiError::BadRequest(detail)
            | ApiError::Unauthorized(detail)
            | ApiError::Forbidden(detail)
            | ApiError::UnsupportedMediaType(detail)
            | ApiError::Conflict(detail)
            | ApiError::TooManyRequests(_, detail)
            | ApiError::Unavailable(detail) => Some(detail.clone()),
            ApiError::SubjectRejected(error) => Some(error.to_string()),
            ApiError::Denied(denied) => Some(
                denied
                    .iter()
                    .map(|d| {
                        let reason = serde_json::to_value(d.reason).unwrap_or_default();
                        let reason = reason.as_str().unwrap_or("");
                        format!("{}:{} ({reason})", d.tool, d.operation)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ApiError::Invalid(errors) => Some(
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ApiError::PayloadTooLarge => None,
            ApiError::Internal(_) => {
                Some("an internal error occurred; it has been logged".to_owned())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let retry_after = match &self {
            ApiError::TooManyRequests(seconds, _) => Some(*seconds),
            _ => None,
        };
        let mut response = self.problem().into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mandate\""),
            );
        }
        response
    }
}

/// Gives every error response a problem+json body, including those produced by routing (404,
/// 405) and by middleware (413 body too large, 408 timeout) that know nothing of our format.
pub async fn problem_for_bare_errors(request: Request<Body>, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // Bare errors have no body or axum's text/plain one; JSON errors (the OAuth endpoint's
    // RFC 6749 format, or problem+json) are already well-formed.
    let bare = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut replaced = Problem::for_status(status).into_response();
    // Keep headers such as Allow (405) and Retry-After; the body and its length are replaced.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_kind_as_a_urn() {
        let p = Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(p.kind, "urn:mandate:problem:payload-too-large");
        assert_eq!(p.title, "Payload Too Large");
        assert_eq!(p.status, 413);
    }

    #[test]
    fn internal_errors_never_describe_their_cause() {
        let err = ApiError::Internal("password authentication failed for user x".into());
        let body = serde_json::to_string(&err.problem()).unwrap();
        assert!(!body.contains("password"), "{body}");
        assert!(body.contains("\"status\":500"));
    }

    #[test]
    fn store_conflicts_become_409_with_their_message() {
        let err: ApiError = StoreError::Conflict("kid 1 is taken".into()).into();
        let p = err.problem();
        assert_eq!(p.status, 409);
        assert_eq!(p.detail.as_deref(), Some("kid 1 is taken"));
    }
}
