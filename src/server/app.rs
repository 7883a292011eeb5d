//! The router and its middleware, kept apart from serving so tests can bind port 0 and shut down
//! cleanly.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::{middleware, Json, Router};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::api;
use super::config::Config;
use super::dev::{self, DevIdp};
use super::error::{problem_for_bare_errors, ApiError};
use super::idp::IdentityVerifier;
use super::keys::KeyRing;
use super::limits::MintLimits;
use super::secrets::SecretHash;
use super::store::batch::Writers;
use super::store::snapshot::InventoryCache;
use super::store::SharedStore;
use super::telemetry::{self, Metrics};
use crate::clock::SharedClock;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Where records live.
    pub store: SharedStore,
    /// The root keys.
    pub keys: Arc<KeyRing>,
    /// The source of time.
    pub clock: SharedClock,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Hash of the configured admin token, if any (compared in constant time, never stored).
    pub bootstrap_admin: Option<SecretHash>,
    /// Validates human principals' tokens against the trusted issuers.
    pub idp: Arc<IdentityVerifier>,
    /// The built-in identity provider (development mode only).
    pub dev_idp: Option<Arc<DevIdp>>,
    /// Bounds the revocation streams open at once (each reads the feed on every commit).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// Group-committing writers for issuances and receipts.
    pub writers: Arc<Writers>,
    /// The inventory mints read, kept between changes.
    pub inventory: Arc<InventoryCache>,
    /// Mint rate limits.
    pub limits: Arc<MintLimits>,
}

/// The `/docs` page: the spec inline (`$spec`), rendered by Scalar.
const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <title>mandate API</title>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <script id="api-reference" type="application/json">
    $spec
  </script>
  <script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
</body>
</html>
"#;

/// What `/docs` may load: the page's inline spec, the Scalar viewer from its CDN, and nothing
/// else (it reads no cookies and calls only this origin).
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; \
    style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; \
    font-src https://fonts.gstatic.com https://cdn.jsdelivr.net data:; img-src data: https:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The whole HTTP application: API routes, `/openapi.json`, `/docs`, `/metrics`, and the
/// middleware stack.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.request_body_limit;
    let timeout = state.config.request_timeout;
    let (mut routes, spec) = api::routes().split_for_parts();
    let docs = utoipa_scalar::Scalar::new(spec.clone())
        .custom_html(DOCS_HTML)
        .to_html();
    let spec = Arc::new(spec);
    if let Some(idp) = &state.dev_idp {
        routes = routes.merge(dev::routes(Arc::clone(idp)));
    }
    routes
        .route(
            "/openapi.json",
            get(move || {
                let spec = Arc::clone(&spec);
                async move { Json(spec.as_ref().clone()) }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let docs = docs.clone();
                async move {
                    (
                        [
                            (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        ],
                        Html(docs),
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .with_state(state)
        // Router::layer wraps outward: the body limit runs innermost, request ids outermost.
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// The span of one request: method, path (never the query string), request id and trace id.
fn request_span(request: &Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        trace_id = tracing::field::Empty,
        admin = tracing::field::Empty,
        agent = tracing::field::Empty,
    );
    telemetry::continue_trace(&span, request.headers());
    span
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
