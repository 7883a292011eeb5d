//! Approvals for one call: a `tools/call` of an operation the mandate's approval allows once
//! (bound to the call's exact arguments) goes through only after mandate has recorded it as
//! that one call (`POST /v1/approvals/uses`), so no gateway lets a second one through.

use axum::response::Response;
use serde_json::{json, Value};

use super::answers;
use super::config::Route;
use super::state::{Gateway, Outcome, UseRefused};

/// For an operation the mandate's approval allows once: that one call, recorded with mandate
/// before it goes through; a second use is refused (403), and so is every use while mandate
/// cannot record it (503).
pub(super) async fn use_approval(
    gateway: &Gateway,
    route: &Route,
    token: &str,
    id: Option<&Value>,
    verified: &crate::token::verify::Verified,
    name: &str,
    digest: &str,
) -> Result<(), Response> {
    let once = verified
        .approvals
        .iter()
        .any(|a| a.tool == route.tool && a.operation == name && a.arguments_sha256.is_some());
    if !once {
        return Ok(());
    }
    let refused = match gateway.use_approval(token, &route.tool, name, digest).await {
        Ok(()) => return Ok(()),
        Err(refused) => refused,
    };
    let (reason, response) = match refused {
        UseRefused::Used(detail) => {
            let metadata = gateway.metadata_url(&route.path);
            let scope = format!("{}:{name}", route.tool);
            let message =
                format!("the approval of `{name}` was for one call, made already: {detail}");
            let data = json!({"reason": "approval_used"});
            let response = answers::forbidden(&metadata, &scope, id, &message, data);
            (message, response)
        }
        UseRefused::Unavailable(detail) => {
            let response = answers::unavailable(id, &detail);
            (detail, response)
        }
    };
    gateway.report(
        token,
        &route.tool,
        name,
        Outcome {
            outcome: "denied",
            reason: Some(reason),
            arguments_sha256: Some(digest.to_owned()),
            ..Outcome::default()
        },
    );
    Err(response)
}
