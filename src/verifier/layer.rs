//! A tower layer for axum services: takes the mandate from `Authorization: Bearer` (or
//! `Authorization: DPoP` with a `DPoP` proof, for a mandate bound to its holder's key), maps the
//! request to a tool operation with a function of the service's own, verifies, and puts the
//! [`Verified`] read-out into the request's extensions. Otherwise it answers 401 (no or an
//! invalid mandate, or a refused proof) or 403 (a valid mandate that does not grant this call)
//! as problem+json.
//!
//! A proof names the URL it was made for, so the layer must know the URL its clients address:
//! [`MandateLayer::with_public_url`]. Without one, bound mandates are refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::receipts::{ReceiptSender, UseReport};
use super::{Access, Presentation, Verifier};
use crate::token::pop::proof::ProofError;
use crate::token::pop::ALGORITHMS;
use crate::token::verify::Verified;
use crate::token::TokenError;

/// Maps a request to the tool operation it performs; `None` refuses the request (403).
pub type AccessMap = Arc<dyn Fn(&Request<Body>) -> Option<Access> + Send + Sync>;

/// Verifies a mandate on every request before the inner service sees it.
#[derive(Clone)]
pub struct MandateLayer {
    verifier: Arc<Verifier>,
    map: AccessMap,
    receipts: Option<ReceiptSender>,
    public_url: Option<Arc<str>>,
}

impl MandateLayer {
    /// A layer verifying with `verifier`, mapping requests with `map`.
    pub fn new(
        verifier: Arc<Verifier>,
        map: impl Fn(&Request<Body>) -> Option<Access> + Send + Sync + 'static,
    ) -> Self {
        Self {
            verifier,
            map: Arc::new(map),
            receipts: None,
            public_url: None,
        }
    }

    /// The URL clients address this service at (`https://crm.internal`): a proof's `htu` must
    /// be it followed by the request's path. Bound mandates are refused until it is set.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').into());
        self
    }

    /// Also reports every verified call to mandate: success for a 2xx answer, denied for 403,
    /// failure otherwise.
    pub fn with_receipts(mut self, receipts: ReceiptSender) -> Self {
        self.receipts = Some(receipts);
        self
    }
}

impl<S> Layer<S> for MandateLayer {
    type Service = MandateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MandateService {
            inner,
            verifier: Arc::clone(&self.verifier),
            map: Arc::clone(&self.map),
            receipts: self.receipts.clone(),
            public_url: self.public_url.clone(),
        }
    }
}

/// The service [`MandateLayer`] wraps around the inner one.
#[derive(Clone)]
pub struct MandateService<S> {
    inner: S,
    verifier: Arc<Verifier>,
    map: AccessMap,
    receipts: Option<ReceiptSender>,
    public_url: Option<Arc<str>>,
}

/// A problem+json answer with a reason code.
fn problem(status: StatusCode, reason: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("urn:mandate:problem:{}", reason.replace('_', "-")),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "reason": reason,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        let challenge = challenge(reason);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// The `WWW-Authenticate` challenge of a 401 with reason code `reason`: a refused proof is
/// a DPoP challenge naming its error, anything else offers both schemes.
pub fn challenge(reason: &str) -> String {
    let algs = ALGORITHMS.join(" ");
    match reason {
        "invalid_dpop_proof" | "use_dpop_nonce" => {
            format!("DPoP error=\"{reason}\", algs=\"{algs}\"")
        }
        _ => format!("Bearer realm=\"mandate\", DPoP algs=\"{algs}\""),
    }
}

/// How a request presents its mandate: the token, and the `DPoP` proof under the DPoP
/// scheme (`Err` for a second `DPoP` header, or a proof sent with a Bearer token).
pub fn presented(
    headers: &axum::http::HeaderMap,
) -> Option<Result<(String, Option<String>), ProofError>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    let mut proofs = headers.get_all("dpop").iter();
    let proof = proofs
        .next()
        .map(|p| p.to_str().unwrap_or_default().to_owned());
    if proofs.next().is_some() {
        return Some(Err(ProofError::Malformed("more than one DPoP header")));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(match proof {
            None => Ok((token.to_owned(), None)),
            Some(_) => Err(ProofError::Malformed(
                "a DPoP proof comes with `Authorization: DPoP`, not Bearer",
            )),
        });
    }
    if scheme.eq_ignore_ascii_case("dpop") {
        return Some(match proof {
            Some(proof) => Ok((token.to_owned(), Some(proof))),
            None => Err(ProofError::Missing),
        });
    }
    None
}

/// 403 for a valid mandate that does not grant the call, 503 when this service's revocation list
/// is too old to rely on, 401 for anything else. The body names the reason, never the token's
/// own checks.
fn refusal(error: &TokenError) -> Response<Body> {
    let (status, detail) = match error {
        TokenError::NotAuthorized(_) => (
            StatusCode::FORBIDDEN,
            "the mandate does not grant this call".to_owned(),
        ),
        TokenError::RevocationsStale(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason.clone()),
        TokenError::Busy | TokenError::Proof(ProofError::Busy) => {
            (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        other => (StatusCode::UNAUTHORIZED, other.to_string()),
    };
    problem(status, error.code(), &detail)
}

impl<S> Service<Request<Body>> for MandateService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        let map = Arc::clone(&self.map);
        let receipts = self.receipts.clone();
        let public_url = self.public_url.clone();
        Box::pin(async move {
            let (token, proof) = match presented(request.headers()) {
                None => {
                    return Ok(problem(
                        StatusCode::UNAUTHORIZED,
                        "missing_mandate",
                        "send a mandate as `Authorization: Bearer <token>`",
                    ))
                }
                Some(Err(error)) => return Ok(refusal(&error.into())),
                Some(Ok(presented)) => presented,
            };
            let Some(access) = map(&request) else {
                return Ok(problem(
                    StatusCode::FORBIDDEN,
                    "unmapped_request",
                    "this request performs no operation a mandate can grant",
                ));
            };
            let url = format!(
                "{}{}",
                public_url.as_deref().unwrap_or_default(),
                request.uri().path()
            );
            let presentation = Presentation {
                token: &token,
                proof: proof.as_deref(),
                method: request.method().as_str(),
                url: &url,
            };
            let verified = match (&proof, &public_url) {
                (Some(_), None) => Err(TokenError::Proof(ProofError::NoPublicUrl)),
                _ => {
                    verifier
                        .verify_presented(&presentation, &access, None)
                        .await
                }
            };
            match verified {
                Ok(verified) => {
                    request.extensions_mut().insert::<Verified>(verified);
                    request.extensions_mut().insert::<Access>(access.clone());
                    let response = inner.call(request).await?;
                    if let Some(receipts) = receipts {
                        let status = response.status();
                        let outcome = if status.is_success() {
                            "success"
                        } else if status == StatusCode::FORBIDDEN {
                            "denied"
                        } else {
                            "failure"
                        };
                        receipts.report(UseReport {
                            token,
                            tool: access.tool,
                            operation: access.operation,
                            resource: access.resource,
                            outcome: outcome.to_owned(),
                            occurred_at: verifier.now(),
                            arguments_sha256: None,
                            reason: None,
                            output: None,
                            latency_ms: None,
                        });
                    }
                    Ok(response)
                }
                Err(error) => {
                    let mut answer = refusal(&error);
                    if error.code() == "use_dpop_nonce" {
                        if let Ok(nonce) = HeaderValue::from_str(&verifier.nonce()) {
                            answer.headers_mut().insert("dpop-nonce", nonce);
                        }
                    }
                    Ok(answer)
                }
            }
        })
    }
}
