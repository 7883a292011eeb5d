//! Proxy checks: the same verification for HTTP APIs behind Envoy or nginx, which ask the
//! gateway before forwarding a request.
//!
//! - Envoy's HTTP `ext_authz` filter (`path_prefix: /check/envoy`) sends the original method,
//!   path and headers (and the body, with `with_request_body`) to `/check/envoy/<path>`.
//! - nginx's `auth_request /check/nginx` sends a subrequest with the original headers; the
//!   location sets `X-Original-URI $request_uri` and `X-Original-Method $request_method`.
//!
//! A configured `[[check]]` maps a path prefix to a tool and each HTTP method to an operation;
//! the call's arguments are its query parameters, or its JSON body when the proxy sends one.
//! 200 allows the request and carries `Mandate-Assertion` (pass it upstream with Envoy's
//! `allowed_upstream_headers` or nginx's `auth_request_set`); 401 and 403 refuse it with a
//! `WWW-Authenticate` challenge and a problem body. Every decision is reported as a receipt.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::answers::{self, challenge};
use super::assertion::{self, arguments_digest, Call};
use super::config::Check;
use super::state::{Gateway, Outcome, Refused, UseRefused};
use crate::token::TokenError;
use crate::verifier::Access;

/// `/check/envoy/{*path}`: the request as Envoy forwards it.
pub async fn envoy(
    gateway: Arc<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/check/envoy")
        .unwrap_or("/")
        .to_owned();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let query = uri.query().unwrap_or("").to_owned();
    let call = Seen {
        method: method.as_str(),
        path: &path,
        query: &query,
        body: Some(&body),
    };
    decide(&gateway, &call, &headers).await
}

/// `/check/nginx`: the subrequest of `auth_request`.
pub async fn nginx(gateway: Arc<Gateway>, headers: HeaderMap) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(original) = header("x-original-uri") else {
        return answers::problem(
            StatusCode::BAD_REQUEST,
            "Missing X-Original-URI",
            "set `proxy_set_header X-Original-URI $request_uri;` in the auth_request location",
        );
    };
    let method = header("x-original-method").unwrap_or("GET").to_owned();
    let (path, query) = original.split_once('?').unwrap_or((original, ""));
    let call = Seen {
        method: &method,
        path,
        query,
        body: None,
    };
    decide(&gateway, &call, &headers).await
}

/// The call a proxy asks about, as far as the gateway sees it.
struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    /// The body as the proxy forwarded it (`None`: the proxy never forwards one).
    body: Option<&'a Bytes>,
}

/// Why the arguments a proxy check sees may not be the whole call, which a one-call approval's
/// digest must cover: nothing after the check's prefix may name the target, the arguments come
/// from the query or the body but not both, and a body must be seen (nginx never forwards one;
/// Envoy only with `with_request_body`).
fn not_whole_call(call: &Seen<'_>, check: &Check, headers: &HeaderMap) -> Option<&'static str> {
    let prefix = check.prefix.trim_end_matches('/');
    if call.path.trim_end_matches('/') != prefix {
        return Some("the path names more than the check's prefix");
    }
    let Some(body) = call.body else {
        return Some("nginx's auth_request does not show the gateway the request's body");
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if body.is_empty() && (declared > 0 || headers.contains_key("transfer-encoding")) {
        return Some("the proxy did not forward the request's body (Envoy: with_request_body)");
    }
    if !body.is_empty() && !call.query.is_empty() {
        return Some("the request has both a query and a body");
    }
    None
}

/// The longest configured prefix covering `path`.
fn covering<'a>(checks: &'a [Check], path: &str) -> Option<&'a Check> {
    checks
        .iter()
        .filter(|c| {
            path == c.prefix.trim_end_matches('/')
                || path.starts_with(&format!("{}/", c.prefix.trim_end_matches('/')))
        })
        .max_by_key(|c| c.prefix.len())
}

/// Query parameters as arguments: each a string, repeated ones a list.
fn query_arguments(query: &str) -> Value {
    let mut members: Map<String, Value> = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match members.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
            None => {
                members.insert(key.into_owned(), value);
            }
        }
    }
    Value::Object(members)
}

/// For an operation the mandate's approval allows once: that one call, seen whole and recorded
/// with mandate, or why not and the refusal to answer.
async fn one_call(
    gateway: &Gateway,
    call: &Seen<'_>,
    check: &Check,
    headers: &HeaderMap,
    token: &str,
    operation: &str,
    digest: &str,
) -> Option<(String, Response)> {
    if let Some(why) = not_whole_call(call, check, headers) {
        let detail =
            format!("the approval of `{operation}` is for one exact call, and {why}: refused");
        let refused = answers::problem(
            StatusCode::FORBIDDEN,
            "One-call approval not checkable here",
            &detail,
        );
        return Some((
            format!("a one-call approval cannot be checked: {why}"),
            refused,
        ));
    }
    match gateway
        .use_approval(token, &check.tool, operation, digest)
        .await
    {
        Ok(()) => None,
        Err(UseRefused::Used(detail)) => {
            let detail =
                format!("the approval of `{operation}` was for one call, made already: {detail}");
            let refused = answers::problem(StatusCode::FORBIDDEN, "Approval used", &detail);
            Some((detail, refused))
        }
        Err(UseRefused::Unavailable(detail)) => {
            let refused = answers::problem(StatusCode::SERVICE_UNAVAILABLE, "Try again", &detail);
            Some((detail, refused))
        }
    }
}

async fn decide(gateway: &Gateway, call: &Seen<'_>, headers: &HeaderMap) -> Response {
    let (method, path, query) = (call.method, call.path, call.query);
    let body = call.body.cloned().unwrap_or_default();
    let refuse = |status, title: &str, detail: &str| {
        let mut response = answers::problem(status, title, detail);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", challenge(&[("error", "invalid_token")]));
        }
        response
    };
    let Some(check) = covering(&gateway.config.checks, path) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "No check covers this path",
            "the gateway has no [[check]] for this path: refused",
        );
    };
    let Some(operation) = check.operations.get(&method.to_ascii_uppercase()) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "Method not mapped",
            &format!("no operation of `{}` is performed by {method}", check.tool),
        );
    };
    // The proxy forwards the original Host: a proof is for the URL the client addressed.
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("http") => "http",
        _ => "https",
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = format!("{scheme}://{host}{path}");
    let held = match gateway
        .mandate(headers, &method.to_ascii_uppercase(), &url)
        .await
    {
        Ok(held) => held,
        Err(Refused::Missing) => {
            let mut response = answers::problem(
                StatusCode::UNAUTHORIZED,
                "Missing mandate",
                "send a mandate as `Authorization: Bearer <token>`",
            );
            response
                .headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
            return response;
        }
        Err(Refused::Invalid(TokenError::Proof(error))) => {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "Proof of possession refused",
                &error.to_string(),
            );
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_str(&crate::verifier::layer::challenge(error.code()))
                    .unwrap_or_else(|_| HeaderValue::from_static("DPoP")),
            );
            return response;
        }
        Err(Refused::Invalid(error)) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Mandate not accepted",
                &format!("the mandate is not accepted: {}", error.code()),
            )
        }
        Err(Refused::Unavailable(message)) => {
            return answers::problem(StatusCode::SERVICE_UNAVAILABLE, "Try again", &message)
        }
    };
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let arguments = if is_json && !body.is_empty() {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "Body is not a JSON object",
                    "a JSON body is read as the call's arguments and must be an object",
                )
            }
        }
    } else {
        query_arguments(query)
    };
    let digest = arguments_digest(Some(&arguments));
    let token = held.token;
    let access = Access {
        tool: check.tool.clone(),
        operation: operation.clone(),
        resource: None,
    };
    match gateway
        .verifier
        .authorize_held(&held.entry, &access, Some(arguments), held.proven)
        .await
    {
        Ok(verified) => {
            let once = verified.approvals.iter().any(|a| {
                a.tool == check.tool && &a.operation == operation && a.arguments_sha256.is_some()
            });
            let refused = if once {
                one_call(gateway, call, check, headers, &token, operation, &digest).await
            } else {
                None
            };
            if let Some((reason, refused)) = refused {
                gateway.report(
                    &token,
                    &check.tool,
                    operation,
                    Outcome {
                        outcome: "denied",
                        reason: Some(reason),
                        arguments_sha256: Some(digest),
                        ..Outcome::default()
                    },
                );
                return refused;
            }
            let call = Call {
                method: method.to_ascii_uppercase(),
                operation: Some(operation.clone()),
                arguments_sha256: Some(digest.clone()),
            };
            let signed = gateway.key.sign(
                &gateway.config.public_url,
                &check.tool,
                &verified,
                &call,
                gateway.clock.now(),
                gateway.config.assertion_ttl,
            );
            gateway.report(
                &token,
                &check.tool,
                operation,
                Outcome {
                    outcome: "success",
                    reason: Some("allowed by the proxy check".into()),
                    arguments_sha256: Some(digest),
                    ..Outcome::default()
                },
            );
            let mut response = StatusCode::OK.into_response();
            if let Ok(value) = HeaderValue::from_str(&signed) {
                response.headers_mut().insert(assertion::HEADER, value);
            }
            response
        }
        Err(error) => {
            gateway.report(
                &token,
                &check.tool,
                operation,
                Outcome {
                    outcome: "denied",
                    reason: Some(error.to_string()),
                    arguments_sha256: Some(digest),
                    ..Outcome::default()
                },
            );
            match error {
                crate::token::TokenError::Revoked | crate::token::TokenError::Expired => refuse(
                    StatusCode::UNAUTHORIZED,
                    "Mandate not accepted",
                    &format!("the mandate is not accepted: {}", error.code()),
                ),
                crate::token::TokenError::RevocationsStale(_) | crate::token::TokenError::Busy => {
                    answers::problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again",
                        "the gateway cannot verify mandates now",
                    )
                }
                other => {
                    let scope = format!("{}:{operation}", check.tool);
                    let mut response =
                        answers::problem(StatusCode::FORBIDDEN, "Not granted", &other.to_string());
                    response.headers_mut().insert(
                        "www-authenticate",
                        challenge(&[("error", "insufficient_scope"), ("scope", &scope)]),
                    );
                    response
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_decides_and_query_parameters_become_arguments() {
        let check = |prefix: &str| Check {
            prefix: prefix.into(),
            tool: prefix.trim_matches('/').replace('/', "-"),
            operations: Default::default(),
        };
        let checks = [check("/crm"), check("/crm/admin/")];
        assert_eq!(
            covering(&checks, "/crm/tickets").map(|c| c.tool.as_str()),
            Some("crm")
        );
        assert_eq!(
            covering(&checks, "/crm/admin/users").map(|c| c.tool.as_str()),
            Some("crm-admin")
        );
        assert!(covering(&checks, "/crmx").is_none());
        assert_eq!(
            query_arguments("repo=acme%2Fweb&label=bug&label=p1"),
            serde_json::json!({"repo": "acme/web", "label": ["bug", "p1"]})
        );
    }
}
