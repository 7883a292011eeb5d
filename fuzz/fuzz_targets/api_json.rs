//! The JSON body of every public endpoint, through mandate's whole HTTP application (router,
//! middleware, extractors, validation and an SQLite store) with real credentials: whatever the
//! body, the answer is a success or a 4xx problem document, never a 5xx, and never a panic.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use libfuzzer_sys::fuzz_target;
use mandate::clock::{ManualClock, SharedClock};
use mandate::server::app;
use mandate::server::config::{AdminTokenSource, Config, Database};
use mandate::server::secrets::Secret;
use mandate::server::startup::{Options, Server};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const ADMIN: &str = "mnd_adm_fuzz-bootstrap-0123456789abcdefghijklmnopqrstuvwxyz";

struct World {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    agent_secret: String,
    reporter_secret: String,
}

/// Who calls an endpoint.
#[derive(Clone, Copy)]
enum Caller {
    Nobody,
    Admin,
    Agent,
    Reporter,
}

/// Every endpoint that takes a body.
const ENDPOINTS: &[(&str, &str, Caller)] = &[
    ("POST", "/v1/mandates", Caller::Agent),
    ("POST", "/v1/introspect", Caller::Agent),
    (
        "POST",
        "/v1/mandates/0192f3c0-0000-7000-8000-000000000001/revoke",
        Caller::Admin,
    ),
    ("POST", "/v1/receipts", Caller::Reporter),
    ("POST", "/v1/revocations", Caller::Nobody),
    ("POST", "/oauth2/token", Caller::Nobody),
    ("POST", "/v1/admin/tools", Caller::Admin),
    ("PATCH", "/v1/admin/tools/crm", Caller::Admin),
    ("POST", "/v1/admin/issuers", Caller::Admin),
    ("PATCH", "/v1/admin/issuers/idp", Caller::Admin),
    ("POST", "/v1/admin/agents", Caller::Admin),
    ("PATCH", "/v1/admin/agents/helper", Caller::Admin),
    ("POST", "/v1/admin/agents/helper/keys", Caller::Admin),
    ("POST", "/v1/admin/policies", Caller::Admin),
    ("PATCH", "/v1/admin/policies/p1", Caller::Admin),
    ("POST", "/v1/admin/tokens", Caller::Admin),
    ("POST", "/v1/admin/revocations", Caller::Admin),
];

/// The content types a body is sent as.
const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("text/plain"),
    None,
];

async fn call(router: &axum::Router, request: Request<Body>) -> (u16, Vec<u8>, Option<String>) {
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match axum::body::to_bytes(response.into_body(), 1 << 20).await {
        Ok(body) => body.to_vec(),
        Err(error) => panic!("response body: {error}"),
    };
    (status, body, content_type)
}

fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST))
        .uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    match builder.body(Body::from(body)) {
        Ok(request) => request,
        Err(error) => panic!("request: {error}"),
    }
}

/// Creates the inventory the endpoints' paths name, and returns bot's agent secret.
/// The seeded inventory; returns the orchestrator's secret and the reporter's credential.
async fn seed(router: &axum::Router) -> (String, String) {
    let posts = [
        (
            "/v1/admin/tools",
            json!({"id": "crm", "display_name": "CRM", "kind": "api",
            "owner": "bob@example.com", "operations": ["read", "write"]}),
        ),
        (
            "/v1/admin/issuers",
            json!({"id": "idp", "issuer_url": "https://idp.example.com/",
            "audiences": ["mandate"], "jwks_uri": "http://127.0.0.1:9/jwks",
            "allowed_algorithms": ["RS256"], "groups_claim": "groups"}),
        ),
        (
            "/v1/admin/agents",
            json!({"id": "bot", "display_name": "Bot", "kind": "orchestrator",
            "owner": "alice@example.com", "ceiling": [{"tool": "crm", "operations": ["read"]}]}),
        ),
        (
            "/v1/admin/agents",
            json!({"id": "helper", "display_name": "Helper", "kind": "sub_agent",
            "owner": "alice@example.com", "ceiling": [{"tool": "crm", "operations": ["read"]}]}),
        ),
        (
            "/v1/admin/policies",
            json!({"id": "p1", "issuer": "idp", "groups": ["support"],
            "agents": ["bot"], "grants": [{"tool": "crm", "operations": ["read"]}],
            "max_ttl_seconds": 300}),
        ),
    ];
    for (path, body) in posts {
        let (status, answer, _) = call(
            router,
            request(
                "POST",
                path,
                Some(ADMIN),
                Some("application/json"),
                body.to_string().into_bytes(),
            ),
        )
        .await;
        assert_eq!(status, 201, "{path}: {}", String::from_utf8_lossy(&answer));
    }
    let (status, answer, _) = call(
        router,
        request(
            "POST",
            "/v1/admin/agents/bot/secret",
            Some(ADMIN),
            None,
            Vec::new(),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
    let agent = answer["secret"].as_str().unwrap_or_default().to_owned();
    let reporter = json!({"id": "crm-api", "display_name": "CRM API", "kind": "verifier",
        "owner": "bob@example.com"});
    let (status, answer, _) = call(
        router,
        request(
            "POST",
            "/v1/admin/reporters",
            Some(ADMIN),
            Some("application/json"),
            reporter.to_string().into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
    (
        agent,
        answer["secret"].as_str().unwrap_or_default().to_owned(),
    )
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = mandate_fuzz::runtime();
    let data_dir = std::env::temp_dir().join(format!("mandate-fuzz-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let (router, (agent_secret, reporter_secret)) = runtime.block_on(async {
        let mut config = Config::defaults();
        config.listen = ([127, 0, 0, 1], 0).into();
        config.database = Database::Embedded;
        config.data_dir = data_dir;
        config.admin_token = Some(AdminTokenSource::Value(Secret::new(ADMIN.to_owned())));
        config.mint_rate_per_agent = 1_000_000;
        config.mint_rate_per_principal = 1_000_000;
        let start = chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_800_000_000, 0)
            .single()
            .unwrap_or_default();
        let clock: SharedClock = Arc::new(ManualClock::new(start));
        let server = match Server::prepare(
            config,
            Options {
                dev: false,
                dev_seed: false,
            },
            clock,
        )
        .await
        {
            Ok(server) => server,
            Err(error) => panic!("server: {error}"),
        };
        let router = app::router(server.state().clone());
        let secret = seed(&router).await;
        (router, secret)
    });
    World {
        runtime,
        router,
        agent_secret,
        reporter_secret,
    }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let [endpoint, content_type, body @ ..] = data else {
        return;
    };
    let (method, path, caller) = ENDPOINTS[usize::from(*endpoint) % ENDPOINTS.len()];
    let content_type = CONTENT_TYPES[usize::from(*content_type) % CONTENT_TYPES.len()];
    let token = match caller {
        Caller::Nobody => None,
        Caller::Admin => Some(ADMIN),
        Caller::Agent => Some(world.agent_secret.as_str()),
        Caller::Reporter => Some(world.reporter_secret.as_str()),
    };
    let (status, answer, answer_type) = world.runtime.block_on(call(
        &world.router,
        request(method, path, token, content_type, body.to_vec()),
    ));
    let text = String::from_utf8_lossy(&answer);
    // The issuer's keys sit at a closed loopback port: a well-formed subject token reaches the
    // key fetch, which fails, and that is the one 5xx allowed (503, saying so).
    let keys_unavailable = status == 503 && text.contains("issuer's keys cannot be fetched");
    assert!(
        status < 500 || keys_unavailable,
        "{method} {path} answered {status}: {text}"
    );
    if status >= 400 && path != "/oauth2/token" {
        assert_eq!(
            answer_type.as_deref(),
            Some("application/problem+json"),
            "{method} {path} {status}: {text}"
        );
        let problem: Value = serde_json::from_slice(&answer).unwrap_or_default();
        assert_eq!(problem["status"], status, "{text}");
    }
});
