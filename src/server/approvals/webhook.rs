//! Approval webhooks: each new request and each decision is POSTed to the webhooks of the
//! policies that gate it, signed with mandate's active root key so that a receiver checks it
//! against the published keys (`GET /.well-known/mandate-keys`) and needs no shared secret:
//!
//! ```text
//! Mandate-Signature: t=<unix seconds>, kid=<root kid>, ed25519=<base64url signature>
//! signed bytes:      "mandate-webhook:v1:" + t + ":" + body
//! ```
//!
//! A receiver refuses a signature older than a few minutes. Delivery is in the background,
//! at most [`MAX_IN_FLIGHT`] at a time (more are dropped and logged), with three attempts; a
//! webhook is a notification, and the request's state stays in the store (approvers list what
//! waits for them with `GET /v1/approvals`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::server::state::AppState;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "mandate-signature";
/// Most deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// Attempts per delivery.
const ATTEMPTS: u32 = 3;

static IN_FLIGHT: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_IN_FLIGHT)));

/// The bytes a webhook signature covers.
pub fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("mandate-webhook:v1:{timestamp}:").into_bytes();
    message.extend_from_slice(body);
    message
}

/// The `Mandate-Signature` value of `body` sent at `now`, signed by the active root key.
pub fn signature(state: &AppState, body: &[u8], now: DateTime<Utc>) -> Option<String> {
    let root = state.keys.active();
    let timestamp = now.timestamp();
    let signed = root.keypair().sign(&signed_message(timestamp, body)).ok()?;
    Some(format!(
        "t={timestamp}, kid={}, ed25519={}",
        root.kid,
        URL_SAFE_NO_PAD.encode(signed.to_bytes())
    ))
}

/// POSTs `body` to `url` in the background.
pub fn deliver(state: &AppState, url: &str, body: &serde_json::Value, now: DateTime<Utc>) {
    let Some(url) = crate::server::model::approval::webhook_url(url) else {
        return;
    };
    let Ok(permit) = Arc::clone(&IN_FLIGHT).try_acquire_owned() else {
        tracing::warn!(%url, "too many approval webhooks in flight; this one is dropped");
        return;
    };
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let Some(signature) = signature(state, &bytes, now) else {
        tracing::error!("cannot sign an approval webhook");
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the webhook client");
                return;
            }
        };
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(bytes.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(%url, status = %response.status(), attempt, "approval webhook refused")
                }
                Err(error) => tracing::warn!(%url, %error, attempt, "approval webhook failed"),
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
    });
}
