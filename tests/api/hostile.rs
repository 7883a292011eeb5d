//! Hostile input over HTTP, on every endpoint that takes a body: malformed JSON, wrong content
//! types, oversized bodies and headers, deep nesting, unicode edge cases, numeric overflow, slow
//! bodies and replays. Each gets its exact status as a problem document, and nothing changes:
//! the audit trail, where every change writes exactly one event (issuances and revocations
//! included; see `every_successful_change_writes_exactly_one_audit_event`), does not grow.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use mandate::clock::Clock;

use crate::helpers::callers::MANDATES;
use crate::helpers::fixtures::{mint_read, mint_setup};
use crate::helpers::{Backend, TestApp, TestDatabase, ADMIN_TOKEN};

/// Who calls an endpoint.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Nobody,
    Admin,
    Agent,
    Reporter,
}

/// Every endpoint that takes a JSON body, with its caller.
fn endpoints(mandate_id: &str) -> Vec<(Method, String, Caller)> {
    let post = |path: &str, caller| (Method::POST, path.to_owned(), caller);
    let patch = |path: &str| (Method::PATCH, path.to_owned(), Caller::Admin);
    vec![
        post(MANDATES, Caller::Agent),
        post("/v1/introspect", Caller::Agent),
        post(&format!("/v1/mandates/{mandate_id}/revoke"), Caller::Admin),
        post("/v1/receipts", Caller::Reporter),
        post("/v1/revocations", Caller::Nobody),
        post("/v1/admin/tools", Caller::Admin),
        patch("/v1/admin/tools/crm"),
        post("/v1/admin/issuers", Caller::Admin),
        patch("/v1/admin/issuers/idp"),
        post("/v1/admin/agents", Caller::Admin),
        patch("/v1/admin/agents/helper"),
        post("/v1/admin/agents/bot/keys", Caller::Admin),
        post("/v1/admin/policies", Caller::Admin),
        patch("/v1/admin/policies/p1"),
        post("/v1/admin/tokens", Caller::Admin),
        post("/v1/admin/revocations", Caller::Admin),
    ]
}

/// Sends raw bytes with a content type; returns status, content type and body.
async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut request = app.client.request(method.clone(), app.url(path)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        kind,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn every_body_endpoint_refuses_hostile_bodies_with_the_exact_status_and_changes_nothing() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (idp, secret) = mint_setup(&app).await;
    let (status, minted) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 201, "{minted}");
    let mandate_id = minted["mandate_id"].as_str().unwrap();
    let reporter = crate::helpers::fixtures::reporter(&app, "crm-api").await;
    let before = app.audit_len().await;

    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let oversized = format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    // (what, content type, body, status)
    let hostile: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        (
            "truncated JSON",
            Some("application/json"),
            b"{\"a\":".to_vec(),
            400,
        ),
        (
            "not JSON",
            Some("application/json"),
            b"reason=done".to_vec(),
            400,
        ),
        (
            "trailing garbage",
            Some("application/json"),
            b"{} {}".to_vec(),
            400,
        ),
        (
            "invalid UTF-8 (an overlong '/')",
            Some("application/json"),
            b"{\"reason\": \"\xc0\xaf\"}".to_vec(),
            400,
        ),
        (
            "lone surrogate escape",
            Some("application/json"),
            br#"{"reason": "\udc00"}"#.to_vec(),
            400,
        ),
        (
            "5,000-deep nesting",
            Some("application/json"),
            deep.into_bytes(),
            400,
        ),
        (
            "a body over the 64 KiB limit",
            Some("application/json"),
            oversized.into_bytes(),
            413,
        ),
        ("text/plain", Some("text/plain"), b"{}".to_vec(), 415),
        (
            "a form",
            Some("application/x-www-form-urlencoded"),
            b"a=b".to_vec(),
            415,
        ),
        ("no content type", None, b"{}".to_vec(), 415),
        (
            "a JSON array",
            Some("application/json"),
            b"[]".to_vec(),
            422,
        ),
        (
            "a JSON string",
            Some("application/json"),
            b"\"x\"".to_vec(),
            422,
        ),
        ("null", Some("application/json"), b"null".to_vec(), 422),
    ];
    let calls = endpoints(mandate_id);
    assert_eq!(calls.len(), 16);
    for (method, path, caller) in &calls {
        let token = match caller {
            Caller::Nobody => None,
            Caller::Admin => Some(ADMIN_TOKEN),
            Caller::Agent => Some(secret.as_str()),
            Caller::Reporter => Some(reporter.as_str()),
        };
        for (what, content_type, body, expected) in &hostile {
            // Introspection takes RFC 7662 forms: there, `a=b` is a form naming an unknown
            // parameter (422), not a refused media type.
            let expected = if *path == "/v1/introspect" && *what == "a form" {
                &422
            } else {
                expected
            };
            let (status, kind, problem) =
                send(&app, method, path, token, *content_type, body.clone()).await;
            assert_eq!(status, *expected, "{method} {path} with {what}: {problem}");
            assert_eq!(
                kind, "application/problem+json",
                "{method} {path} with {what}"
            );
            assert_eq!(problem["status"], *expected, "{method} {path} with {what}");
        }
    }
    assert_eq!(
        app.audit_len().await,
        before,
        "no hostile body changed anything"
    );
}

#[tokio::test]
async fn hostile_values_in_well_formed_bodies_are_422_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let before = app.audit_len().await;
    let tool = |name: Value| {
        json!({"id": "wiki", "display_name": name, "kind": "api", "owner": "dan@example.com",
               "operations": ["read"]})
    };
    let mint = |ttl: Value| {
        json!({"subject_token": jwt, "task": {"description": "t"},
               "scope": [{"tool": "crm", "operations": ["read"]}], "ttl_seconds": ttl})
    };
    // (what, path, caller is the agent, body, the field named)
    let cases = vec![
        (
            "a NUL",
            "/v1/admin/tools",
            false,
            tool(json!("Wi\u{0}ki")),
            "display_name",
        ),
        (
            "a right-to-left override",
            "/v1/admin/tools",
            false,
            tool(json!("Wiki\u{202e}txt.exe")),
            "display_name",
        ),
        (
            "a zero-width joiner only",
            "/v1/admin/tools",
            false,
            tool(json!("\u{200d}")),
            "display_name",
        ),
        (
            "an escape sequence",
            "/v1/admin/tools",
            false,
            tool(json!("\u{1b}[31mWiki")),
            "display_name",
        ),
        (
            "a number for a string",
            "/v1/admin/tools",
            false,
            tool(json!(7)),
            "display_name",
        ),
        (
            "2^64 seconds",
            MANDATES,
            true,
            mint(json!(18_446_744_073_709_551_616_f64)),
            "ttl_seconds",
        ),
        (
            "i64::MAX seconds",
            MANDATES,
            true,
            mint(json!(i64::MAX)),
            "ttl_seconds",
        ),
        (
            "negative seconds",
            MANDATES,
            true,
            mint(json!(-1)),
            "ttl_seconds",
        ),
        (
            "fractional seconds",
            MANDATES,
            true,
            mint(json!(1.5)),
            "ttl_seconds",
        ),
        (
            "seconds as a string",
            MANDATES,
            true,
            mint(json!("60")),
            "ttl_seconds",
        ),
    ];
    for (what, path, as_agent, body, field) in cases {
        let token = if as_agent {
            secret.as_str()
        } else {
            ADMIN_TOKEN
        };
        let (status, kind, problem) = send(
            &app,
            &Method::POST,
            path,
            Some(token),
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 422, "{path} with {what}: {problem}");
        assert_eq!(kind, "application/problem+json");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{path} with {what} names {field}: {problem}"
        );
    }
    // A number JSON cannot hold in a double is refused as malformed, not rounded.
    let (status, _, problem) = send(
        &app,
        &Method::POST,
        MANDATES,
        Some(&secret),
        Some("application/json"),
        mint(json!(0))
            .to_string()
            .replace("\"ttl_seconds\":0", "\"ttl_seconds\":1e400")
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        app.audit_len().await,
        before,
        "no hostile value changed anything"
    );
}

#[tokio::test]
async fn oversized_headers_get_431_and_change_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    crate::helpers::fixtures::seed(&app).await;
    let before = app.audit_len().await;
    let body = json!({"id": "wiki", "display_name": "Wiki", "kind": "api",
                      "owner": "dan@example.com", "operations": ["read"]});
    let response = app
        .client
        .post(app.url("/v1/admin/tools"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-padding", "a".repeat(128 * 1024))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    let mut request = app
        .client
        .post(app.url("/v1/admin/tools"))
        .bearer_auth(ADMIN_TOKEN);
    for i in 0..200 {
        request = request.header(format!("x-h{i}"), "1");
    }
    let response = request.json(&body).send().await.unwrap();
    assert_eq!(response.status(), 431, "too many headers");
    assert_eq!(app.audit_len().await, before);
}

#[tokio::test]
async fn slow_bodies_get_408_and_slow_headers_a_closed_connection_after_the_request_timeout() {
    let app = TestApp::spawn_with(TestDatabase::new(Backend::Sqlite).await, |config| {
        config.request_timeout = Duration::from_millis(500);
    })
    .await;
    crate::helpers::fixtures::seed(&app).await;
    let before = app.audit_len().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/admin/tools HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 200\r\n\r\n{{\"id\": \"wi"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server answers and closes within the timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    // Headers that never finish: the connection is closed once the timeout passes.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = crate::helpers::real_now();
    stream
        .write_all(b"POST /v1/admin/tools HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "a connection whose headers never finish is closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.audit_len().await, before);
}

#[tokio::test]
async fn replayed_and_duplicated_requests_change_things_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (idp, secret) = mint_setup(&app).await;
    let tool = json!({"id": "wiki", "display_name": "Wiki", "kind": "api",
                      "owner": "dan@example.com", "operations": ["read"]});
    app.admin_ok(Method::POST, "/v1/admin/tools", Some(tool.clone()), 201)
        .await;
    let after_create = app.audit_len().await;
    let (status, problem) = app.admin(Method::POST, "/v1/admin/tools", Some(tool)).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        app.audit_len().await,
        after_create,
        "the duplicate wrote nothing"
    );

    let (_, minted) = mint_read(&app, &idp, &secret).await;
    let path = format!(
        "/v1/mandates/{}/revoke",
        minted["mandate_id"].as_str().unwrap()
    );
    let reason = json!({"reason": "done"});
    let first = app
        .as_token(&secret, Method::POST, &path, Some(reason.clone()))
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    let after_revoke = app.audit_len().await;
    let replay = app
        .as_token(&secret, Method::POST, &path, Some(reason))
        .await;
    assert_eq!(
        replay.0, 200,
        "revoking again answers as before: {}",
        replay.1
    );
    assert_eq!(replay.1["revoked_at"], first.1["revoked_at"]);
    assert_eq!(
        app.audit_len().await,
        after_revoke,
        "and records nothing new"
    );
}
