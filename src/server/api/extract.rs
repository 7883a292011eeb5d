//! Extractors that answer in problem+json: JSON bodies (unknown fields refused by each type's
//! `deny_unknown_fields`), and query strings.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::server::error::ApiError;

/// The credential of an `Authorization: Bearer …` header (scheme case-insensitive, credential
/// trimmed), or `None` when there is no such header or it is not a bearer credential.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, credential) = headers.get(AUTHORIZATION)?.to_str().ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(credential.trim())
}

/// A JSON body; malformed JSON is 400, a wrong media type 415, invalid fields 422.
///
/// Well-formedness is checked before the fields, so a truncated or malformed body is always
/// 400, even when its beginning already names a field the type refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json".to_owned(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            // A field error may come before a syntax error further on (`{"a":` names `a`):
            // only a body that is well-formed as a whole gets the field error. Decoded whole,
            // because skipping over strings would not check their UTF-8 or escapes.
            Err(JsonRejection::JsonDataError(_))
                if serde_json::from_slice::<serde_json::Value>(&bytes).is_err() =>
            {
                Err(malformed())
            }
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// The request's media type, lowercased and without its parameters (`application/json`).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default();
    Some(essence.trim().to_ascii_lowercase())
}

/// Whether the request says its body is form-encoded (`application/x-www-form-urlencoded`).
pub fn is_form(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("application/x-www-form-urlencoded")
}

/// The request's body, read whole within the configured limit (over it: 413).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// Whether the request says its body is JSON: `application/json` or `application/*+json`,
/// with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(essence) = media_type(headers) else {
        return false;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn malformed() -> ApiError {
    ApiError::BadRequest("the body is not well-formed JSON".to_owned())
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let (field, message) = field_of(&e.body_text());
            ApiError::field(field, message)
        }
        JsonRejection::JsonSyntaxError(_) => malformed(),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("send the body as application/json".to_owned())
        }
        other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// The field a deserialisation error is about, and what is wrong with it. axum reports
/// `…target type: PATH: MESSAGE`, and serde names missing and unknown fields in backticks.
fn field_of(text: &str) -> (String, String) {
    let rest = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest);
    let (path, message) = match rest.split_once(": ") {
        Some((path, message)) if !path.is_empty() && !path.contains(' ') => (Some(path), message),
        _ => (None, rest),
    };
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|after| after.split('`').next());
    let field = match (path.filter(|p| *p != "."), named) {
        // An unknown field is already the last segment of its path.
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (Some(path), Some(name)) => format!("{path}.{name}"),
        (None, Some(name)) => name.to_owned(),
        (Some(path), None) => path.to_owned(),
        (None, None) => "body".to_owned(),
    };
    (field, message.to_owned())
}

/// A query string; unknown or malformed parameters are 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::BadRequest(e.body_text()))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn deserialisation_errors_name_their_field() {
        let prefix = "Failed to deserialize the JSON body into the target type: ";
        for (text, field) in [
            ("missing field `owner` at line 1 column 20", "owner"),
            (
                "unknown field `colour`, expected one of `id` at line 1 column 9",
                "colour",
            ),
            (
                "colour: unknown field `colour`, expected one of `id`",
                "colour",
            ),
            (
                "ceiling[0].hue: unknown field `hue`, expected `tool`",
                "ceiling[0].hue",
            ),
            (
                "max_ttl_seconds: invalid type: string \"x\", expected i64 at line 1 column 30",
                "max_ttl_seconds",
            ),
            (
                "ceiling[0]: missing field `tool` at line 1 column 40",
                "ceiling[0].tool",
            ),
            (
                "kind: unknown variant `robot`, expected `orchestrator` or `sub_agent`",
                "kind",
            ),
            (
                "invalid type: integer `3`, expected struct NewAgent",
                "body",
            ),
        ] {
            assert_eq!(field_of(&format!("{prefix}{text}")).0, field, "{text}");
        }
    }
}
