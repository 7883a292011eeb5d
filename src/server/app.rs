//! The router and its middleware, kept apart from serving so tests can bind port 0 and shut down
//! cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::{middleware, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use super::api;
use super::error::{problem_for_bare_errors, ApiError};
pub use super::state::AppState;
use super::telemetry;

/// The whole HTTP application: API routes, `/openapi.json`, `/docs`, `/metrics`, and the
/// middleware stack.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.request_body_limit;
    let timeout = state.config.request_timeout;
    let (mut routes, spec) = api::routes().split_for_parts();
    let docs = api::docs::render(&serde_json::to_value(&spec).unwrap_or_default());
    let spec = Arc::new(spec);
    if let Some(idp) = &state.dev_idp {
        routes = routes.merge(api::dev_idp::routes(Arc::clone(idp)));
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
                            (header::CONTENT_SECURITY_POLICY, api::docs::DOCS_CSP),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        ],
                        Html(docs),
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_owned()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forget_inventory_after_changes,
        ))
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

/// After an administrator's change succeeds, the inventory kept for mints is dropped, so this
/// replica's next mint sees the change from its start (a mint already deciding finds it at its
/// commit, as mints on other replicas do).
async fn forget_inventory_after_changes(
    State(state): State<AppState>,
    request: Request<Body>,
    next: middleware::Next,
) -> axum::response::Response {
    let changes = request.uri().path().starts_with("/v1/admin/")
        && !matches!(
            *request.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
    let response = next.run(request).await;
    if changes && response.status().is_success() {
        state.inventory.forget();
    }
    response
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

/// Most bytes of a request line and headers together; more is answered 431. Mandate's own
/// credentials (agent secrets, admin tokens) are under 100 bytes; tokens travel in bodies.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
/// A request's headers must arrive within `request_timeout` (its body is bounded by the same
/// timeout in the router) and fit in [`MAX_HEADER_BYTES`], at most 100 of them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    request_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tracing::trace!(%peer, "connection accepted");
        // Handlers can tell where a connection comes from (revocation streams are bounded
        // per caller).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
