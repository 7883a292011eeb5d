//! Fixtures shared by mandate's fuzz targets: a fixed root key (so the checked-in corpus stays
//! valid), a mandate minted with it, and the inputs' decoding helpers.

use std::collections::HashMap;

use base64::Engine as _;
use biscuit_auth::{Algorithm, KeyPair, PrivateKey};
use chrono::{DateTime, TimeZone, Utc};
use mandate::token::keys::KeySet;
use mandate::token::mint::{mint, MandateSpec};
use mandate::token::verify::AgentKeys;
use mandate::token::Right;

/// The root key's id.
pub const KID: u32 = 1;

/// The fixed root key pair.
pub fn root() -> KeyPair {
    match PrivateKey::from_bytes(&[7; 32], Algorithm::Ed25519) {
        Ok(key) => KeyPair::from(&key),
        Err(error) => panic!("fixed root key: {error}"),
    }
}

/// The registered key of agent `helper`.
pub fn helper() -> KeyPair {
    match PrivateKey::from_bytes(&[9; 32], Algorithm::Ed25519) {
        Ok(key) => KeyPair::from(&key),
        Err(error) => panic!("fixed agent key: {error}"),
    }
}

/// The published root keys.
pub fn keys() -> KeySet {
    KeySet::from([(KID, root().public())])
}

/// Registered agents' keys: `helper` only.
pub fn agent_keys() -> AgentKeys {
    HashMap::from([("helper".to_owned(), vec![helper().public()])])
}

/// When verification happens: an hour before [`expires`].
pub fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default()
}

/// When the fixture mandate expires.
pub fn expires() -> DateTime<Utc> {
    now() + chrono::Duration::hours(1)
}

/// A right.
pub fn right(tool: &str, operation: &str) -> Right {
    Right {
        tool: tool.to_owned(),
        operation: operation.to_owned(),
    }
}

/// The rights of the fixture mandate.
pub fn granted() -> Vec<Right> {
    vec![
        right("crm", "read"),
        right("crm", "write"),
        right("github", "issues.read"),
    ]
}

/// Every (tool, operation) the targets ask about: the granted ones and some that are not.
pub fn asked() -> Vec<Right> {
    let mut all = granted();
    all.extend([right("crm", "delete"), right("github", "issues.create")]);
    all
}

/// A mandate for agent `bot`, minted with the fixed root key.
pub fn mandate() -> String {
    let spec = MandateSpec {
        approvals: vec![],
        mandate_id: "0192f3c0-0000-7000-8000-000000000001".to_owned(),
        task_id: "task-1".to_owned(),
        task_digest: vec![0xab; 32],
        principal_subject: "alice".to_owned(),
        principal_issuer: "https://idp.example.com/".to_owned(),
        agent_id: "bot".to_owned(),
        rights: granted(),
        expires_at: expires(),
        constraints: vec![],
        holder_key: None,
    };
    match mint(&spec, &root(), KID) {
        Ok(minted) => minted.token,
        Err(error) => panic!("fixture mandate: {error}"),
    }
}

/// A token from fuzz input: the first byte chooses whether the rest is the token's text or its
/// raw bytes (then base64url-encoded, so the fuzzer reaches the Biscuit decoder directly).
pub fn token_text(data: &[u8]) -> String {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            base64::engine::general_purpose::URL_SAFE.encode(rest)
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

/// The raw bytes of a base64url token, for writing seeds in [`token_text`]'s raw mode.
pub fn token_bytes(token: &str) -> Vec<u8> {
    let mut seed = vec![1];
    seed.extend(
        base64::engine::general_purpose::URL_SAFE
            .decode(token)
            .unwrap_or_default(),
    );
    seed
}

/// A runtime with one worker thread, for the targets that drive mandate's async code.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    }
}

/// Serves `router` on an ephemeral loopback port from `runtime`; returns its base URL.
pub fn serve(runtime: &tokio::runtime::Runtime, router: axum::Router) -> String {
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(error) => panic!("bind: {error}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(error) => panic!("local address: {error}"),
        };
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    })
}
