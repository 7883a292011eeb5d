//! The example downstream service: a tiny CRM API guarded by mandates. Each route maps to one
//! tool operation; handlers read who is acting, for whom, through which hops.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use axum::{Extension, Json, Router};
use mandate::token::verify::Verified;
use mandate::verifier::layer::MandateLayer;
use mandate::verifier::receipts::ReceiptSender;
use mandate::verifier::{Access, Verifier};
use serde_json::{json, Value};

/// This service's tool id in mandate's inventory.
pub const TOOL: &str = "crm";

/// `GET /tickets` is `crm:read`, `POST /tickets` is `crm:write`; `/tickets/{id}` names the
/// ticket as the resource. Anything else is no operation a mandate grants.
pub fn access(request: &Request<Body>) -> Option<Access> {
    let path = request.uri().path();
    let operation = match *request.method() {
        Method::GET => "read",
        Method::POST => "write",
        _ => return None,
    };
    let resource = match path.strip_prefix("/tickets") {
        Some("") => None,
        Some(rest) => Some(rest.strip_prefix('/')?.to_owned()),
        None => return None,
    };
    Some(Access {
        tool: TOOL.to_owned(),
        operation: operation.to_owned(),
        resource,
    })
}

async fn who(
    Extension(verified): Extension<Verified>,
    Extension(access): Extension<Access>,
) -> Json<Value> {
    Json(json!({
        "operation": access.operation,
        "resource": access.resource,
        "principal": verified.principal_subject,
        "orchestrator": verified.agent_id,
        "hops": verified.hops,
        "holder_key": verified.holder_key,
        "mandate_id": verified.mandate_id,
    }))
}

/// The service's router, every route behind the mandate layer (reporting each call to
/// mandate when `receipts` is given). `public_url` is where clients reach it: DPoP proofs of
/// bound mandates are made for that URL.
pub fn router(
    verifier: Arc<Verifier>,
    receipts: Option<ReceiptSender>,
    public_url: &str,
) -> Router {
    let layer = MandateLayer::new(verifier, access).with_public_url(public_url);
    let layer = match receipts {
        Some(receipts) => layer.with_receipts(receipts),
        None => layer,
    };
    Router::new()
        .route("/tickets", get(who).post(who))
        .route("/tickets/{id}", get(who).post(who))
        .layer(layer)
}
