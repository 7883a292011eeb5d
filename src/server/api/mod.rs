//! The HTTP API, one module per resource. Each route is declared once, with its OpenAPI
//! description, through `utoipa_axum::routes!`.

pub mod admin;
pub mod agent_auth;
pub mod approvals;
pub mod dev_idp;
pub mod docs;
pub mod dpop;
pub mod extract;
pub mod gateways;
pub mod health;
pub mod introspect;
pub mod keys;
pub mod mandates;
pub mod oauth;
pub mod problems;
pub mod receipts;
pub mod revocations;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;

/// The document-level parts of the OpenAPI description; paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mandate",
        description = "Task-scoped Biscuit credentials for AI agents acting on behalf of humans."
    ),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "keys", description = "Root public keys for offline verification"),
        (name = "mandates", description = "Minting mandates (agent secret)"),
        (name = "revocations", description = "Revocation, the revocation feed, introspection"),
        (name = "receipts", description = "Verifiers' reports of what was done with mandates"),
        (name = "approvals", description = "Human approvals of gated operations (approvers' IdP tokens, agent secrets)"),
        (name = "admin", description = "Inventory, policies and audit for IAM teams (admin tokens)")
    ),
    components(schemas(crate::server::error::Problem, crate::server::error::FieldError)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// Declares the bearer schemes the paths refer to.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin token: `mnd_adm_…` (role admin or auditor)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "agent_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An orchestrator's agent secret: `mnd_agt_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "reporter_secret",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A registered verifier's or gateway's credential: `mnd_rep_…`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "approver_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The approver's own token from a trusted issuer, issued after the request was made",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "Agent id and agent secret (RFC 6749 client_secret_basic)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every API route with its OpenAPI description, grouped by who calls it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // Anyone: probes, metrics and the published keys.
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(keys::mandate_keys))
        .routes(routes!(keys::agent_keys))
        .routes(routes!(gateways::authorization_server))
        // Orchestrators (agent secret): minting, and ending their own mandates.
        .routes(routes!(mandates::create_mandate))
        .routes(routes!(oauth::token))
        .routes(routes!(revocations::revoke))
        .routes(routes!(revocations::complete))
        // Approvals: approvers decide (their IdP token); orchestrators wait and collect.
        .routes(routes!(approvals::waiting))
        .routes(routes!(approvals::show))
        .routes(routes!(approvals::approve))
        .routes(routes!(approvals::deny))
        .routes(routes!(approvals::collect_mandate))
        .routes(routes!(approvals::events))
        .routes(routes!(approvals::record_use))
        // A token's holder: revoking its own branch.
        .routes(routes!(revocations::revoke_branch))
        // Verifiers and gateways: the revocation feed, introspection, receipts.
        .routes(routes!(revocations::feed))
        .routes(routes!(revocations::stream))
        .routes(routes!(introspect::introspect))
        .routes(routes!(receipts::report))
        .routes(routes!(gateways::tools))
        // Administrators (admin token): bulk revocation, attribution and the admin API.
        .routes(routes!(revocations::bulk))
        .routes(routes!(receipts::attribution))
        .merge(admin::routes())
}

/// The OpenAPI description of the whole API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}
