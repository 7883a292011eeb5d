//! One MCP route: every JSON-RPC message posted to it is checked against the presented mandate
//! before it reaches the upstream, and every answer is filtered and scanned before it reaches
//! the client.
//!
//! - `tools/call`: the MCP tool's name is the operation; the call must be a right of the
//!   mandate and its arguments within the mandate's constraints, or it never leaves the
//!   gateway (403 `insufficient_scope`, a JSON-RPC error naming what was missing).
//! - `tools/list`: the answer lists only the MCP tools the mandate grants.
//! - `initialize`, `ping`, `server/discover`, notifications and answers to the server's
//!   requests pass for any live mandate of the tool; other methods (resources, prompts, …)
//!   are refused: a mandate grants tool operations only.
//! - The upstream never sees the mandate: it gets a signed assertion instead.
//! - Every `tools/call` is reported to mandate as a receipt, allowed or not.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::answers::{self, rpc_error};
use super::assertion::{self, arguments_digest, Call};
use super::config::{Route, Upstream};
use super::once;
use super::scan::Findings;
use super::state::{Gateway, Held, Outcome};
use super::upstream::{self, Answer, Body};
use crate::token::Right;
use crate::verifier::{Access, Entry};

/// Methods any live mandate of the tool may send.
const LIFECYCLE: [&str; 4] = ["initialize", "ping", "server/discover", "tools/list"];

/// What the gateway learned of the request before sending it on.
struct Request<'a> {
    route: &'a Route,
    index: usize,
    token: String,
    entry: Arc<Entry>,
    /// The holder's key the request proved (a bound mandate).
    proven: Option<String>,
    id: Option<Value>,
    method: Option<String>,
}

/// `POST` on an MCP route.
pub async fn post(
    gateway: Arc<Gateway>,
    index: usize,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = &gateway.config.routes[index];
    if !gateway.origin_allowed(&headers) {
        return answers::json_response(
            StatusCode::FORBIDDEN,
            &rpc_error(
                None,
                answers::INVALID_REQUEST,
                "this Origin is not allowed",
                None,
            ),
        );
    }
    // The mandate first: nothing about the body is answered to a caller without one.
    let url = format!("{}{}", gateway.config.public_url, route.path);
    let Held {
        entry,
        token,
        proven,
    } = match gateway.mandate(&headers, "POST", &url).await {
        Ok(held) => held,
        Err(refused) => return refused.answer(&gateway, route, None),
    };
    let usable: Vec<Right> = entry
        .checked
        .usable_rights()
        .into_iter()
        .filter(|r| r.tool == route.tool)
        .collect();
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(_) => {
            return answers::json_response(
                StatusCode::BAD_REQUEST,
                &rpc_error(None, answers::PARSE_ERROR, "the body is not JSON", None),
            )
        }
    };
    let Value::Object(members) = &message else {
        return answers::json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(
                None,
                answers::INVALID_REQUEST,
                "post one JSON-RPC message per request; batches are not accepted",
                None,
            ),
        );
    };
    let id = members.get("id").cloned();
    let method = members
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if usable.is_empty() {
        let metadata = gateway.metadata_url(&route.path);
        return answers::forbidden(
            &metadata,
            &route.tool,
            id.as_ref(),
            &format!("the mandate grants no operation of `{}`", route.tool),
            json!({ "reason": "no_right", "tool": route.tool }),
        );
    }
    let request = Request {
        route,
        index,
        token,
        entry,
        proven,
        id,
        method: method.clone(),
    };
    match method.as_deref() {
        Some("tools/call") => call(&gateway, &request, &headers, message).await,
        Some(m) if LIFECYCLE.contains(&m) || m.starts_with("notifications/") => {
            let names: Vec<String> = usable.into_iter().map(|r| r.operation).collect();
            let call = Call {
                method: m.to_owned(),
                operation: None,
                arguments_sha256: None,
            };
            match forward(&gateway, &request, &headers, message, &call).await {
                Ok(answer) => deliver(&gateway, &request, answer, Some(&names)).0,
                Err(response) => response,
            }
        }
        Some(m) => answers::json_response(
            StatusCode::OK,
            &rpc_error(
                request.id.as_ref(),
                answers::METHOD_NOT_FOUND,
                &format!(
                    "`{m}` is not passed by this gateway: mandates grant tool operations only"
                ),
                None,
            ),
        ),
        // An answer to a request of the server's (sampling, elicitation).
        None => {
            let call = Call {
                method: "response".to_owned(),
                operation: None,
                arguments_sha256: None,
            };
            match forward(&gateway, &request, &headers, message, &call).await {
                Ok(answer) => deliver(&gateway, &request, answer, None).0,
                Err(response) => response,
            }
        }
    }
}

/// A `tools/call`: authorized against the mandate with its arguments, then sent on.
async fn call(
    gateway: &Gateway,
    request: &Request<'_>,
    headers: &HeaderMap,
    message: Value,
) -> Response {
    let route = request.route;
    let params = message.get("params");
    let Some(name) = params
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return answers::json_response(
            StatusCode::OK,
            &rpc_error(
                request.id.as_ref(),
                answers::INVALID_PARAMS,
                "tools/call needs `params.name`",
                None,
            ),
        );
    };
    let arguments = params.and_then(|p| p.get("arguments")).cloned();
    let name = name.as_str();
    if arguments.as_ref().is_some_and(|a| !a.is_object()) {
        return answers::json_response(
            StatusCode::OK,
            &rpc_error(
                request.id.as_ref(),
                answers::INVALID_PARAMS,
                "`params.arguments` must be an object",
                None,
            ),
        );
    }
    if let Some(header_name) = headers.get("mcp-name").and_then(|v| v.to_str().ok()) {
        if header_name != name {
            return answers::json_response(
                StatusCode::BAD_REQUEST,
                &rpc_error(
                    request.id.as_ref(),
                    answers::HEADER_MISMATCH,
                    "the Mcp-Name header does not match params.name",
                    None,
                ),
            );
        }
    }
    // MCP's arguments are optional: none are `{}`, as the digest has it.
    let arguments = Some(arguments.unwrap_or_else(|| json!({})));
    let digest = arguments_digest(arguments.as_ref());
    let access = Access {
        tool: route.tool.clone(),
        operation: name.to_owned(),
        resource: None,
    };
    let started = gateway.clock.instant();
    let verified = match gateway
        .verifier
        .authorize_held(&request.entry, &access, arguments, request.proven.clone())
        .await
    {
        Ok(verified) => verified,
        Err(error) => {
            let metadata = gateway.metadata_url(&route.path);
            let id = request.id.as_ref();
            let refused = answers::call_refused(&metadata, &route.tool, id, name, &error);
            gateway.report(
                &request.token,
                &route.tool,
                name,
                Outcome {
                    outcome: "denied",
                    reason: Some(error.to_string()),
                    arguments_sha256: Some(digest),
                    ..Outcome::default()
                },
            );
            return refused;
        }
    };
    let id = request.id.as_ref();
    let token = request.token.as_str();
    if let Err(refused) =
        once::use_approval(gateway, route, token, id, &verified, name, &digest).await
    {
        return refused;
    }
    let call = Call {
        method: "tools/call".to_owned(),
        operation: Some(name.to_owned()),
        arguments_sha256: Some(digest.clone()),
    };
    let answer = match forward(gateway, request, headers, message, &call).await {
        Ok(forwarded) => forwarded,
        Err(response) => {
            gateway.report(
                &request.token,
                &route.tool,
                name,
                Outcome {
                    outcome: "failure",
                    reason: Some("the upstream could not be reached".into()),
                    arguments_sha256: Some(digest),
                    latency_ms: Some(elapsed_ms(gateway, started)),
                    ..Outcome::default()
                },
            );
            return response;
        }
    };
    let upstream_failed = upstream_failure(&answer, request.id.as_ref());
    let (response, findings) = deliver(gateway, request, answer, None);
    let output = if findings.blocked.is_some() {
        Some("blocked")
    } else if !findings.redacted.is_empty() {
        Some("redacted")
    } else {
        None
    };
    let reason = match (&upstream_failed, &findings.blocked) {
        (Some(failure), _) => Some(failure.clone()),
        (None, Some(scanner)) => Some(format!("the output held a {scanner}: withheld")),
        (None, None) if output.is_some() => {
            Some(format!("redacted: {}", findings.redacted.join(", ")))
        }
        _ => None,
    };
    gateway.report(
        &request.token,
        &route.tool,
        name,
        Outcome {
            outcome: if upstream_failed.is_some() {
                "failure"
            } else {
                "success"
            },
            reason,
            output,
            arguments_sha256: Some(digest),
            latency_ms: Some(elapsed_ms(gateway, started)),
        },
    );
    response
}

fn elapsed_ms(gateway: &Gateway, started: Instant) -> u64 {
    let elapsed = gateway.clock.instant().saturating_duration_since(started);
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Sends `message` upstream with an assertion for `call`; an error is the answer to give.
async fn forward(
    gateway: &Gateway,
    request: &Request<'_>,
    headers: &HeaderMap,
    mut message: Value,
    call: &Call,
) -> Result<Answer, Response> {
    let route = request.route;
    let verified = request.entry.checked.verified();
    let signed = gateway.key.sign(
        &gateway.config.public_url,
        &route.tool,
        verified,
        call,
        gateway.clock.now(),
        gateway.config.assertion_ttl,
    );
    let failed = |error: upstream::UpstreamError| {
        tracing::warn!(route = %route.path, %error, "upstream failed");
        answers::json_response(
            StatusCode::BAD_GATEWAY,
            &rpc_error(request.id.as_ref(), answers::INTERNAL_ERROR, &error.0, None),
        )
    };
    match &route.upstream {
        Upstream::Http(url) => upstream::post(
            &gateway.http,
            url,
            reqwest::Method::POST,
            headers,
            &[(assertion::HEADER, signed)],
            message.to_string().into_bytes(),
            gateway.bounds(),
        )
        .await
        .map_err(failed),
        Upstream::Stdio(_) => {
            let Some(sessions) = gateway.stdio(request.index) else {
                return Err(failed(upstream::UpstreamError("no stdio upstream".into())));
            };
            // No headers on stdio: the assertion goes in the request's `_meta`.
            if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
                let meta = params.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("dev.mandate/assertion".into(), Value::String(signed));
                }
            }
            let mandate_id = &verified.mandate_id;
            let (session, opened) =
                match headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
                    Some(session) => (session.to_owned(), false),
                    None if request.method.as_deref() == Some("initialize") => {
                        (sessions.open(mandate_id).map_err(failed)?, true)
                    }
                    None => {
                        return Err(answers::json_response(
                            StatusCode::BAD_REQUEST,
                            &rpc_error(
                                request.id.as_ref(),
                                answers::INVALID_REQUEST,
                                "send the Mcp-Session-Id this route answered `initialize` with",
                                None,
                            ),
                        ))
                    }
                };
            let sent = sessions
                .send(&session, mandate_id, &message, gateway.bounds())
                .await;
            let answer = match sent {
                None => {
                    return Err(answers::json_response(
                        StatusCode::NOT_FOUND,
                        &rpc_error(
                            request.id.as_ref(),
                            answers::INVALID_REQUEST,
                            "no such session",
                            None,
                        ),
                    ))
                }
                Some(result) => result.map_err(failed)?,
            };
            let mut headers = Vec::new();
            if opened {
                headers.push((HeaderName::from_static("mcp-session-id"), session));
            }
            let (status, body) = match answer {
                Some(answer) => {
                    headers.push((header::CONTENT_TYPE, "application/json".to_owned()));
                    (StatusCode::OK, Body::Message(answer))
                }
                None => (StatusCode::ACCEPTED, Body::Empty),
            };
            Ok(Answer {
                status,
                headers,
                body,
            })
        }
    }
}

/// `DELETE` on an MCP route: ends a session (the upstream's, or a stdio process).
pub async fn delete(gateway: Arc<Gateway>, index: usize, headers: HeaderMap) -> Response {
    let route = &gateway.config.routes[index];
    let url = format!("{}{}", gateway.config.public_url, route.path);
    let entry = match gateway.mandate(&headers, "DELETE", &url).await {
        Ok(held) => held.entry,
        Err(refused) => return refused.answer(&gateway, route, None),
    };
    let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match &route.upstream {
        Upstream::Stdio(_) => {
            let closed = gateway
                .stdio(index)
                .is_some_and(|s| s.close(session, &entry.checked.verified().mandate_id));
            if closed {
                StatusCode::NO_CONTENT.into_response()
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        }
        Upstream::Http(url) => {
            match upstream::post(
                &gateway.http,
                url,
                reqwest::Method::DELETE,
                &headers,
                &[],
                Vec::new(),
                gateway.bounds(),
            )
            .await
            {
                Ok(answer) => answer.status.into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    }
}

/// What failed upstream, if the answer to request `id` is an error.
fn upstream_failure(answer: &Answer, id: Option<&Value>) -> Option<String> {
    if !answer.status.is_success() {
        return Some(format!(
            "the upstream answered HTTP {}",
            answer.status.as_u16()
        ));
    }
    let messages: Vec<&Value> = match &answer.body {
        Body::Message(m) => vec![m],
        Body::Events(events) => events.iter().filter_map(|e| e.message.as_ref()).collect(),
        _ => Vec::new(),
    };
    let reply = messages
        .into_iter()
        .find(|m| m.get("method").is_none() && m.get("id") == id)?;
    if let Some(error) = reply.get("error") {
        return Some(format!(
            "the upstream answered error {}: {}",
            error.get("code").unwrap_or(&Value::Null),
            error.get("message").and_then(Value::as_str).unwrap_or("")
        ));
    }
    (reply.pointer("/result/isError") == Some(&Value::Bool(true)))
        .then(|| "the tool reported an error".to_owned())
}

/// Filters (`tools/list`: only `allowed` names) and scans every message of `answer`, and
/// writes the response.
fn deliver(
    gateway: &Gateway,
    request: &Request<'_>,
    answer: Answer,
    allowed: Option<&[String]>,
) -> (Response, Findings) {
    let mut findings = Findings::default();
    let mut clean = |message: &mut Value| {
        if let (Some(allowed), Some("tools/list")) = (allowed, request.method.as_deref()) {
            if message.get("id") == request.id.as_ref() {
                if let Some(tools) = message
                    .pointer_mut("/result/tools")
                    .and_then(Value::as_array_mut)
                {
                    tools.retain(|t| {
                        t.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| allowed.iter().any(|a| a == n))
                    });
                }
            }
        }
        let found = gateway.config.scanners.scan(message);
        if let Some(scanner) = &found.blocked {
            *message = rpc_error(
                message.get("id"),
                answers::INTERNAL_ERROR,
                &format!("the upstream's answer was withheld: it held a {scanner}"),
                Some(json!({ "reason": "output_blocked", "scanner": scanner })),
            );
            findings.blocked.get_or_insert_with(|| scanner.clone());
        }
        for name in found.redacted {
            if !findings.redacted.contains(&name) {
                findings.redacted.push(name);
            }
        }
    };
    let mut body = answer.body;
    let text = match &mut body {
        Body::Empty => String::new(),
        Body::Message(message) => {
            clean(message);
            message.to_string()
        }
        Body::Events(events) => {
            for event in events.iter_mut() {
                if let Some(message) = &mut event.message {
                    clean(message);
                }
            }
            upstream::write_events(events)
        }
        Body::Text(text) => {
            let mut value = Value::String(std::mem::take(text));
            clean(&mut value);
            value.as_str().unwrap_or_default().to_owned()
        }
    };
    let mut response = (answer.status, text).into_response();
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    if matches!(body, Body::Events(_)) {
        response
            .headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    (response, findings)
}
