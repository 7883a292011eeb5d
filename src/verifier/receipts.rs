//! Reporting uses of mandates back to mandate (`POST /v1/receipts`), asynchronously and in
//! batches, so a downstream service never waits on mandate to answer its own callers. The
//! service must be registered as a reporter (`POST /v1/admin/reporters`): its credential goes
//! with every batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

/// One use of a mandate.
#[derive(Debug, Clone, Serialize)]
pub struct UseReport {
    /// The token presented.
    pub token: String,
    /// The tool called.
    pub tool: String,
    /// The operation performed.
    pub operation: String,
    /// The resource, if named.
    pub resource: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// SHA-256, hex, of the call's arguments in RFC 8785 canonical JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// Why the call was denied, or how it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What became of the output: `redacted` or `blocked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How long the call took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Most receipts queued before new ones are dropped (and logged).
const QUEUE: usize = 10_000;
/// Most receipts per request (mandate's limit).
const BATCH: usize = 100;

/// Queues receipts and sends them in batches from a background task.
#[derive(Debug, Clone)]
pub struct ReceiptSender {
    queue: mpsc::Sender<UseReport>,
}

impl ReceiptSender {
    /// Starts the sender for mandate at `base_url`, reporting as the reporter whose credential
    /// (`mnd_rep_…`) is `credential`; batches leave when full or every `flush`.
    pub fn spawn(
        base_url: impl Into<String>,
        credential: impl Into<String>,
        flush: Duration,
    ) -> ReceiptSender {
        let credential = Credential(credential.into());
        let (queue, mut rx) = mpsc::channel::<UseReport>(QUEUE);
        let url = format!("{}/v1/receipts", base_url.into().trim_end_matches('/'));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let deadline = tokio::time::sleep(flush);
                tokio::pin!(deadline);
                let closed = loop {
                    tokio::select! {
                        report = rx.recv() => match report {
                            Some(report) => {
                                batch.push(report);
                                if batch.len() == BATCH {
                                    break false;
                                }
                            }
                            None => break true,
                        },
                        () = &mut deadline => break false,
                    }
                };
                if !batch.is_empty() {
                    send(&http, &url, &credential, &batch).await;
                    batch.clear();
                }
                if closed {
                    return;
                }
            }
        });
        ReceiptSender { queue }
    }

    /// Queues a receipt; never waits. A full queue drops it (and says so in the log).
    pub fn report(&self, report: UseReport) {
        if self.queue.try_send(report).is_err() {
            tracing::warn!("receipt queue full: a receipt was dropped");
        }
    }
}

/// A reporter credential, kept out of debug output.
struct Credential(String);

/// Sends one batch, retrying a few times with backoff.
async fn send(http: &reqwest::Client, url: &str, credential: &Credential, batch: &[UseReport]) {
    let body = serde_json::json!({ "receipts": batch });
    for attempt in 0..4u32 {
        match http
            .post(url)
            .bearer_auth(&credential.0)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => return,
            Ok(response) if response.status().is_client_error() => {
                tracing::warn!(status = %response.status(), "mandate refused a batch of receipts");
                return;
            }
            Ok(response) => tracing::warn!(status = %response.status(), "cannot send receipts"),
            Err(error) => tracing::warn!(%error, "cannot send receipts"),
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::error!(receipts = batch.len(), "receipts dropped after retries");
}
