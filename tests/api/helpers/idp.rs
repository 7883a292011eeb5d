//! A real OpenID provider for the tests: serves a JWKS (RSA and EC keys) and discovery over HTTP
//! on 127.0.0.1:0, signs human principals' tokens, and rotates its keys on request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/idp");

#[derive(Clone)]
struct IdpState {
    issuer: String,
    published: Arc<Mutex<Vec<String>>>,
    jwks_hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

/// A running test identity provider.
pub struct TestIdp {
    /// Its issuer URL (`iss`).
    pub issuer: String,
    published: Arc<Mutex<Vec<String>>>,
    jwks_hits: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    _shutdown: oneshot::Sender<()>,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn all_jwks() -> Value {
    serde_json::from_slice(&fixture("jwks.json")).unwrap()
}

async fn jwks(State(state): State<IdpState>) -> Result<Json<Value>, axum::http::StatusCode> {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    if state.failing.load(Ordering::SeqCst) {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let all = all_jwks();
    let keys: Vec<Value> = state
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|kid| all[kid.as_str()].clone())
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn discovery(State(state): State<IdpState>) -> Json<Value> {
    Json(json!({
        "issuer": state.issuer,
        "jwks_uri": format!("{}/jwks.json", state.issuer),
    }))
}

impl TestIdp {
    /// Starts a provider publishing `rsa-1` and `ec-1`.
    pub async fn start() -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = IdpState {
            issuer: issuer.clone(),
            published: Arc::new(Mutex::new(vec!["rsa-1".into(), "ec-1".into()])),
            jwks_hits: Arc::new(AtomicUsize::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestIdp {
            issuer,
            published: state.published,
            jwks_hits: state.jwks_hits,
            delay_ms: state.delay_ms,
            failing: state.failing,
            _shutdown: tx,
        }
    }

    /// Where its keys are published.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.issuer)
    }

    /// Publishes exactly these keys from now on (a rotation).
    pub fn publish(&self, kids: &[&str]) {
        *self.published.lock().unwrap() = kids.iter().map(|k| k.to_string()).collect();
    }

    /// Answers JWKS requests only after `delay` from now on.
    pub fn slow_down(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answers JWKS requests with 503 from now on (`true`), or normally again (`false`).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times its JWKS was fetched.
    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Standard claims for `subject` in `groups`, valid for ten minutes from `now`.
    pub fn claims(&self, subject: &str, groups: &[&str], now: DateTime<Utc>) -> Value {
        let now = now.timestamp();
        json!({
            "iss": self.issuer, "sub": subject, "aud": "mandate", "groups": groups,
            "iat": now, "nbf": now - 5, "exp": now + 600,
        })
    }

    /// `claims` signed with key `kid` (RS256 for `rsa-*`, ES256 for `ec-*`).
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        sign_with(kid, kid, claims)
    }
}

/// Signs with the key of `key_kid` but names `header_kid` in the header.
pub fn sign_with(header_kid: &str, key_kid: &str, claims: &Value) -> String {
    let pem = fixture(&format!("{key_kid}.pem"));
    let (algorithm, key) = if key_kid.starts_with("ec") {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap())
    } else {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap())
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(header_kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The classic confusion attack: HS256 with the issuer's RSA public key as the HMAC secret.
pub fn sign_hs256_with_public_key(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".to_owned());
    let key = EncodingKey::from_secret(&fixture("rsa-1.pub.pem"));
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}
