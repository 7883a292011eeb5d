//! What every request of the gateway shares: its configuration, the verifier with mandate's
//! keys and revocation feed, the receipt sender, the assertion key, the upstream clients.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::answers;
use super::assertion::AssertionKey;
use super::config::{GatewayConfig, Route};
use super::upstream::StdioSessions;
use crate::clock::SharedClock;
use crate::token::pop::proof::ProofError;
use crate::token::TokenError;
use crate::verifier::layer::presented;
use crate::verifier::receipts::{ReceiptSender, UseReport};
use crate::verifier::revocations::RevocationSync;
use crate::verifier::{Entry, Presentation, Verifier};

/// The gateway.
pub struct Gateway {
    /// Its configuration.
    pub config: GatewayConfig,
    /// Verifies mandates with mandate's keys and the revocation feed.
    pub verifier: Verifier,
    /// The copy of the revocation feed.
    pub revocations: Arc<RevocationSync>,
    /// Reports every call to mandate.
    pub receipts: ReceiptSender,
    /// Signs assertions to upstreams.
    pub key: AssertionKey,
    /// The HTTP client for upstreams.
    pub http: reqwest::Client,
    /// Per route, its stdio sessions (HTTP routes have none).
    pub stdio: Vec<Option<StdioSessions>>,
    /// The tools mandate knows, with their operations (as the gateway started).
    pub tools: BTreeMap<String, Vec<String>>,
    /// The time.
    pub clock: SharedClock,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// A request's mandate, checked and alive, with the holder's key it proved (a bound mandate).
pub struct Held {
    /// The checked token.
    pub entry: Arc<Entry>,
    /// The token as presented.
    pub token: String,
    /// The thumbprint of the key whose proof came with it (`None`: an unbound mandate).
    pub proven: Option<String>,
}

/// Why the one call an argument-bound approval is for was not recorded with mandate.
pub enum UseRefused {
    /// Its one call was made already: refuse this one (mandate's detail).
    Used(String),
    /// mandate could not record it: refuse, the call may be retried.
    Unavailable(String),
}

/// Why a request's mandate was not accepted, as the answer to give.
pub enum Refused {
    /// None sent.
    Missing,
    /// It does not verify (or is revoked, or expired): 401 with the reason code.
    Invalid(TokenError),
    /// The gateway cannot tell now: 503.
    Unavailable(String),
}

impl Gateway {
    /// Records with mandate that the call of `operation` of `tool` with arguments of
    /// `arguments_sha256` uses the mandate's one-call approval of it, before the call goes
    /// through: whichever gateway records it first lets it through, and every other use is
    /// refused. Fails closed.
    pub async fn use_approval(
        &self,
        token: &str,
        tool: &str,
        operation: &str,
        arguments_sha256: &str,
    ) -> Result<(), UseRefused> {
        let url = format!("{}/v1/approvals/uses", self.config.mandate_url);
        let body = serde_json::json!({
            "token": token, "tool": tool, "operation": operation,
            "arguments_sha256": arguments_sha256,
        });
        let sent = self
            .http
            .post(&url)
            .bearer_auth(self.config.credential.as_str())
            .json(&body)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| UseRefused::Unavailable(format!("cannot reach mandate: {e}")))?;
        let status = sent.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = sent
            .json::<Value>()
            .await
            .ok()
            .and_then(|p| p.get("detail").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        match status.as_u16() {
            409 => Err(UseRefused::Used(detail)),
            _ => Err(UseRefused::Unavailable(format!(
                "mandate did not record the approval's use: {detail}"
            ))),
        }
    }

    /// The RFC 9728 metadata URL of `route`.
    pub fn metadata_url(&self, path: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource{path}",
            self.config.public_url
        )
    }

    /// How much of an upstream's answer is read, and how long it may take.
    pub fn bounds(&self) -> super::upstream::Bounds {
        super::upstream::Bounds {
            max_bytes: self.config.max_body_bytes,
            timeout: self.config.upstream_timeout,
        }
    }

    /// The stdio sessions of route `index`, if it is a stdio route.
    pub fn stdio(&self, index: usize) -> Option<&StdioSessions> {
        self.stdio.get(index).and_then(Option::as_ref)
    }

    /// The checked mandate of a request, alive now: `Authorization: Bearer`, or `Authorization:
    /// DPoP` with a proof for `method` on `url` by the key the mandate is bound to.
    pub async fn mandate(
        &self,
        headers: &HeaderMap,
        method: &str,
        url: &str,
    ) -> Result<Held, Refused> {
        let (token, proof) = match presented(headers) {
            None => return Err(Refused::Missing),
            Some(Err(error)) => return Err(refusal(error.into())),
            Some(Ok(presented)) => presented,
        };
        let entry = self.verifier.checked(&token).await.map_err(refusal)?;
        self.verifier.alive(&entry).map_err(refusal)?;
        let presentation = Presentation {
            token: &token,
            proof: proof.as_deref(),
            method,
            url,
        };
        let proven = self
            .verifier
            .prove(&entry, &presentation)
            .map_err(refusal)?;
        Ok(Held {
            entry,
            token,
            proven,
        })
    }

    /// Whether a request's `Origin` (sent by browsers) is one the configuration allows.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        match headers.get("origin").and_then(|v| v.to_str().ok()) {
            None => true,
            Some(origin) => self.config.allowed_origins.iter().any(|o| o == origin),
        }
    }

    /// Queues a receipt for a call made (or refused) with `token`.
    pub fn report(&self, token: &str, tool: &str, operation: &str, outcome: Outcome) {
        self.receipts.report(UseReport {
            token: token.to_owned(),
            tool: tool.to_owned(),
            operation: operation.to_owned(),
            resource: None,
            outcome: outcome.outcome.to_owned(),
            occurred_at: self.clock.now(),
            arguments_sha256: outcome.arguments_sha256,
            reason: outcome.reason.map(|r| r.chars().take(512).collect()),
            output: outcome.output.map(str::to_owned),
            latency_ms: outcome.latency_ms,
        });
    }
}

/// How one call ended, as its receipt says.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    /// Why it was denied or failed.
    pub reason: Option<String>,
    /// `redacted` or `blocked`.
    pub output: Option<&'static str>,
    /// SHA-256 of the canonical arguments.
    pub arguments_sha256: Option<String>,
    /// How long it took.
    pub latency_ms: Option<u64>,
}

fn refusal(error: TokenError) -> Refused {
    match error {
        TokenError::RevocationsStale(reason) => Refused::Unavailable(format!(
            "the gateway's copy of the revocation feed is stale ({reason}); retry shortly"
        )),
        TokenError::Busy => {
            Refused::Unavailable("too many mandates being verified; retry shortly".into())
        }
        TokenError::Proof(ProofError::Busy) => {
            Refused::Unavailable("too many proofs in flight; retry shortly".into())
        }
        other => Refused::Invalid(other),
    }
}

impl Refused {
    /// The answer on an MCP route.
    pub fn answer(
        &self,
        gateway: &Gateway,
        route: &Route,
        id: Option<&Value>,
    ) -> axum::response::Response {
        let metadata = gateway.metadata_url(&route.path);
        match self {
            Refused::Missing => answers::unauthorized(
                &metadata,
                None,
                id,
                "send a mandate for this tool as `Authorization: Bearer <token>`",
            ),
            Refused::Invalid(TokenError::Proof(error)) => {
                let mut answer = answers::refused_proof(
                    &metadata,
                    error,
                    id,
                    &format!("the proof of possession is refused: {error}"),
                );
                if matches!(error, ProofError::Nonce) {
                    if let Ok(nonce) = HeaderValue::from_str(&gateway.verifier.nonce()) {
                        answer.headers_mut().insert("dpop-nonce", nonce);
                    }
                }
                answer
            }
            Refused::Invalid(error) => answers::unauthorized(
                &metadata,
                Some(("invalid_token", error.code())),
                id,
                &format!("the mandate is not accepted: {}", error.code()),
            ),
            Refused::Unavailable(message) => answers::unavailable(id, message),
        }
    }
}
