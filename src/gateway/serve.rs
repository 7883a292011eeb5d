//! Starting the gateway: every check that can fail is made before the socket is bound (the
//! configuration, mandate reachable, the credential a registered gateway's, every routed tool
//! registered, keys and a first revocation sync), each failure one line naming the problem.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::assertion::AssertionKey;
use super::config::{GatewayConfig, Upstream};
use super::state::Gateway;
use super::upstream::StdioSessions;
use super::{check, mcp};
use crate::clock::SharedClock;
use crate::verifier::receipts::ReceiptSender;
use crate::verifier::revocations::{RevocationSync, SyncSettings};
use crate::verifier::{Verifier, VerifierSettings};

/// Why the gateway cannot start: one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// What mandate answers a gateway at `GET /v1/gateway/tools`.
#[derive(Debug, Deserialize)]
struct Registered {
    gateway: String,
    tools: Vec<RegisteredTool>,
}

#[derive(Debug, Deserialize)]
struct RegisteredTool {
    id: String,
    operations: Vec<String>,
}

/// Checks everything the gateway needs, in order, and builds it.
pub async fn prepare(
    config: GatewayConfig,
    clock: SharedClock,
) -> Result<Arc<Gateway>, StartError> {
    let fail = |message: String| StartError(message);
    let key = AssertionKey::load_or_create(&config.assertion_key_file)
        .map_err(|e| fail(format!("assertion_key_file: {e}")))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
    let url = format!("{}/v1/gateway/tools", config.mandate_url);
    let response = http
        .get(&url)
        .bearer_auth(config.credential.as_str())
        .send()
        .await
        .map_err(|_| {
            fail(format!(
                "mandate_url: cannot reach mandate at {}",
                config.mandate_url
            ))
        })?;
    match response.status().as_u16() {
        200 => {}
        401 | 403 => {
            return Err(fail(
                "credential: mandate does not know it as an active gateway's (register one with \
                 POST /v1/admin/reporters, kind gateway)"
                    .into(),
            ))
        }
        status => {
            return Err(fail(format!(
                "mandate_url: {} answered HTTP {status} for the gateway's inventory",
                config.mandate_url
            )))
        }
    }
    let registered: Registered = response.json().await.map_err(|_| {
        fail(format!(
            "mandate_url: {} is not mandate",
            config.mandate_url
        ))
    })?;
    let tools: BTreeMap<String, Vec<String>> = registered
        .tools
        .into_iter()
        .map(|t| (t.id, t.operations))
        .collect();
    for (path, tool) in config.tools() {
        if !tools.contains_key(tool) {
            return Err(fail(format!(
                "route {path}: tool `{tool}` is not an active tool of mandate's inventory"
            )));
        }
    }
    let mut sync = SyncSettings::new(config.mandate_url.clone());
    sync.max_staleness = config.max_revocation_age;
    sync.poll_interval =
        (config.max_revocation_age / 3).clamp(Duration::from_secs(1), Duration::from_secs(5));
    sync.credential = Some(config.credential.to_string());
    let revocations = RevocationSync::new(sync, Arc::clone(&clock))
        .map_err(|e| fail(format!("revocation feed: {e}")))?;
    revocations
        .sync_once()
        .await
        .map_err(|e| fail(format!("revocation feed: {e}")))?;
    revocations.spawn();
    let verifier = Verifier::new(
        VerifierSettings::new(config.mandate_url.clone()),
        Arc::clone(&revocations) as Arc<dyn crate::verifier::RevocationCheck>,
        Arc::clone(&clock),
    )
    .map_err(|e| fail(format!("keys: {e}")))?;
    verifier
        .refresh()
        .await
        .map_err(|e| fail(format!("keys: {e}")))?;
    let receipts = ReceiptSender::spawn(
        config.mandate_url.clone(),
        config.credential.to_string(),
        Duration::from_secs(1),
    );
    let stdio = config
        .routes
        .iter()
        .map(|r| match &r.upstream {
            Upstream::Stdio(command) => {
                Some(StdioSessions::new(command.clone(), Arc::clone(&clock)))
            }
            Upstream::Http(_) => None,
        })
        .collect();
    let upstream_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
    tracing::info!(gateway = %registered.gateway, routes = config.routes.len(), "gateway ready");
    Ok(Arc::new(Gateway {
        config,
        verifier,
        revocations,
        receipts,
        key,
        http: upstream_http,
        stdio,
        tools,
        clock,
    }))
}

/// The gateway's routes: each MCP route with its RFC 9728 metadata, the proxy checks, the
/// assertion key set, and a health check.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut router = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(health));
    for (index, route) in gateway.config.routes.iter().enumerate() {
        let post_gateway = Arc::clone(&gateway);
        let delete_gateway = Arc::clone(&gateway);
        router = router
            .route(
                &route.path,
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    mcp::post(Arc::clone(&post_gateway), index, headers, body)
                })
                .delete(move |headers: HeaderMap| {
                    mcp::delete(Arc::clone(&delete_gateway), index, headers)
                })
                // No server-initiated stream: its messages could not be scanned per request.
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
            )
            .route(
                &format!("/.well-known/oauth-protected-resource{}", route.path),
                get(move |State(gateway): State<Arc<Gateway>>| async move {
                    protected_resource(&gateway, index)
                }),
            );
    }
    if !gateway.config.checks.is_empty() {
        let envoy_gateway = Arc::clone(&gateway);
        let nginx_gateway = Arc::clone(&gateway);
        router = router
            .route(
                "/check/envoy/{*path}",
                any(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        check::envoy(Arc::clone(&envoy_gateway), method, uri, headers, body)
                    },
                ),
            )
            .route(
                "/check/nginx",
                any(move |headers: HeaderMap| check::nginx(Arc::clone(&nginx_gateway), headers)),
            );
    }
    let limit = gateway.config.max_body_bytes;
    router
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

async fn jwks(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    Json(gateway.key.jwks())
}

async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    use crate::verifier::RevocationCheck as _;
    match gateway.revocations.fresh() {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stale", "reason": reason})),
        )
            .into_response(),
    }
}

/// RFC 9728 protected resource metadata of route `index`.
fn protected_resource(gateway: &Gateway, index: usize) -> Json<serde_json::Value> {
    let route = &gateway.config.routes[index];
    let scopes: Vec<String> = gateway
        .tools
        .get(&route.tool)
        .into_iter()
        .flatten()
        .map(|operation| format!("{}:{operation}", route.tool))
        .collect();
    Json(json!({
        "resource": format!("{}{}", gateway.config.public_url, route.path),
        "authorization_servers": [gateway.config.mandate_public_url],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": crate::token::pop::ALGORITHMS,
        "scopes_supported": scopes,
        "resource_name": format!("{} (through mandate's gateway)", route.tool),
        "jwks_uri": format!("{}/.well-known/jwks.json", gateway.config.public_url),
    }))
}

/// Serves `gateway` on `listener` until `shutdown` resolves.
pub async fn run(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(shutdown)
        .await
}
