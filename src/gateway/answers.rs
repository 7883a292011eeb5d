//! The gateway's refusals, in the shapes the protocols define: RFC 6750 / RFC 9728
//! `WWW-Authenticate` challenges with a JSON-RPC error body on MCP routes, and RFC 9457
//! problem details on proxy checks.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::token::TokenError;

/// JSON-RPC: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request (a batch, say).
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: a method the gateway does not pass.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: bad params; MCP answers an unknown tool with it, and so does the gateway for a
/// tool or arguments the mandate does not grant (so refusals cannot be told from absences).
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: an internal error (the upstream failed, or its answer was withheld).
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP: a header disagrees with the body (`Mcp-Name` against `params.name`).
pub const HEADER_MISMATCH: i64 = -32020;

/// A JSON-RPC error message for request `id`.
pub fn rpc_error(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error })
}

/// `status` with a JSON body.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A quoted-string for a challenge parameter (RFC 9110 §5.6.4): quotes and backslashes
/// escaped, controls dropped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A `Bearer` challenge with these parameters, in order.
pub fn challenge(params: &[(&str, &str)]) -> HeaderValue {
    scheme_challenge("Bearer", params)
}

/// A challenge of `scheme` with these parameters, in order.
fn scheme_challenge(scheme: &'static str, params: &[(&str, &str)]) -> HeaderValue {
    let text = std::iter::once(scheme.to_owned())
        .chain(
            params
                .iter()
                .enumerate()
                .map(|(i, (k, v))| format!("{}{k}={}", if i == 0 { " " } else { ", " }, quoted(v))),
        )
        .collect::<String>();
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(scheme))
}

/// The DPoP challenge offered beside every Bearer one: the algorithms proofs may use.
fn dpop_offer() -> HeaderValue {
    scheme_challenge(
        "DPoP",
        &[("algs", &crate::token::pop::ALGORITHMS.join(" "))],
    )
}

/// 401 for a refused proof of possession (RFC 9449 section 7.1): a DPoP challenge naming
/// `invalid_dpop_proof` or `use_dpop_nonce`.
pub fn refused_proof(
    metadata: &str,
    error: &crate::token::pop::proof::ProofError,
    id: Option<&Value>,
    message: &str,
) -> Response {
    let description = error.to_string();
    let algs = crate::token::pop::ALGORITHMS.join(" ");
    let params = [
        ("error", error.code()),
        ("error_description", description.as_str()),
        ("algs", algs.as_str()),
        ("resource_metadata", metadata),
    ];
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &rpc_error(id, INVALID_REQUEST, message, None),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, scheme_challenge("DPoP", &params));
    response
}

/// 401: no mandate, or one that does not verify (RFC 6750 §3.1, MCP authorization).
pub fn unauthorized(
    metadata: &str,
    error: Option<(&str, &str)>,
    id: Option<&Value>,
    message: &str,
) -> Response {
    let mut params = Vec::new();
    if let Some((code, description)) = error {
        params.push(("error", code));
        params.push(("error_description", description));
    }
    params.push(("resource_metadata", metadata));
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &rpc_error(id, INVALID_REQUEST, message, None),
    );
    let headers = response.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, challenge(&params));
    headers.append(header::WWW_AUTHENTICATE, dpop_offer());
    response
}

/// 403 `insufficient_scope`: the mandate does not grant `scope`; the body names what was
/// missing.
pub fn forbidden(
    metadata: &str,
    scope: &str,
    id: Option<&Value>,
    message: &str,
    data: Value,
) -> Response {
    let mut response = json_response(
        StatusCode::FORBIDDEN,
        &rpc_error(id, INVALID_PARAMS, message, Some(data)),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        challenge(&[
            ("error", "insufficient_scope"),
            ("scope", scope),
            ("error_description", message),
            ("resource_metadata", metadata),
        ]),
    );
    response
}

/// 503: the gateway cannot decide now (revocations stale, verification busy).
pub fn unavailable(id: Option<&Value>, message: &str) -> Response {
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &rpc_error(id, INTERNAL_ERROR, message, None),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// An RFC 9457 problem (proxy checks).
pub fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = json!({ "type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The refusal of a call: 401 for a token no longer good, 503 when the gateway cannot tell,
/// 403 naming the operation or the argument otherwise.
pub fn call_refused(
    metadata: &str,
    tool: &str,
    id: Option<&Value>,
    name: &str,
    error: &TokenError,
) -> Response {
    let scope = format!("{tool}:{name}");
    match error {
        TokenError::Revoked | TokenError::Expired => unauthorized(
            metadata,
            Some(("invalid_token", error.code())),
            id,
            &format!("the mandate is not accepted: {}", error.code()),
        ),
        TokenError::RevocationsStale(_) | TokenError::Busy => {
            unavailable(id, "the gateway cannot verify mandates now; retry shortly")
        }
        TokenError::ArgumentNotAllowed {
            argument,
            requirement,
        } => forbidden(
            metadata,
            &scope,
            id,
            &format!("the mandate does not allow this call of `{name}`: argument `{argument}` {requirement}"),
            json!({
                "reason": "argument_not_allowed", "tool": tool, "operation": name,
                "argument": argument, "requirement": requirement,
            }),
        ),
        TokenError::ArgumentsNotApproved { .. } => forbidden(
            metadata,
            &scope,
            id,
            &format!("the mandate's approval of `{name}` is for other arguments than this call's"),
            json!({
                "reason": "arguments_not_approved", "tool": tool, "operation": name,
            }),
        ),
        other => forbidden(
            metadata,
            &scope,
            id,
            &format!("the mandate does not grant `{name}` of `{tool}`"),
            json!({
                "reason": other.code(), "tool": tool, "operation": name,
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_quote_their_parameters() {
        let value = challenge(&[
            ("error", "insufficient_scope"),
            (
                "error_description",
                "argument `repo` must start with \"acme/\"",
            ),
        ]);
        assert_eq!(
            value.to_str().unwrap_or_default(),
            "Bearer error=\"insufficient_scope\", error_description=\"argument `repo` must start with \\\"acme/\\\"\""
        );
    }
}
