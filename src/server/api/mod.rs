//! The HTTP API, one module per resource. Each route is declared once, with its OpenAPI
//! description, through `utoipa_axum::routes!`.

pub mod health;
pub mod keys;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::app::AppState;

/// The document-level parts of the OpenAPI description; paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mandate",
        description = "Task-scoped Biscuit credentials for AI agents acting on behalf of humans."
    ),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "keys", description = "Root public keys for offline verification")
    )
)]
pub struct ApiDoc;

/// Every API route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(keys::mandate_keys))
}

/// The OpenAPI description of the whole API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}
