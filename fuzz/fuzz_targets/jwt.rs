//! A human principal's token, as mandate checks it at every mint: `IdentityVerifier::verify`
//! with the issuer's keys fetched over HTTP from an in-process JWKS endpoint. Inputs are either
//! any text, or a fuzzed header and claims signed with the issuer's real ES256 key, so the
//! fuzzer gets past the signature to the header, time and claim checks. A token is accepted only
//! with an allowed algorithm, the issuer's `iss` and audience, an unexpired `exp`, and a bounded
//! subject.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use mandate::server::idp::{IdentityVerifier, IdpSettings};
use mandate::server::model::issuer::{Issuer, IssuerStatus};
use mandate_fuzz as fixture;
use serde_json::{json, Map, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/idp");

struct World {
    runtime: tokio::runtime::Runtime,
    verifier: IdentityVerifier,
    issuer: Issuer,
    key: EncodingKey,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let read = |name: &str| match std::fs::read(format!("{FIXTURES}/{name}")) {
        Ok(bytes) => bytes,
        Err(error) => panic!("fixture {name}: {error}"),
    };
    let jwks: Value = serde_json::from_slice(&read("jwks.json")).unwrap_or_default();
    let published = json!({"keys": [jwks["ec-1"], jwks["rsa-1"]]});
    let runtime = fixture::runtime();
    let jwks = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let published = published.clone();
            async move { axum::Json(published) }
        }),
    );
    let base = fixture::serve(&runtime, jwks);
    let at = Utc
        .timestamp_opt(1_700_000_000, 0)
        .single()
        .unwrap_or_default();
    let issuer = Issuer {
        id: "idp".to_owned(),
        issuer_url: "https://idp.example.com/".to_owned(),
        audiences: vec!["mandate".to_owned()],
        jwks_uri: Some(format!("{base}/jwks")),
        discovery: false,
        allowed_algorithms: vec!["ES256".to_owned(), "RS256".to_owned()],
        subject_claim: "sub".to_owned(),
        groups_claim: Some("groups".to_owned()),
        client_claim: None,
        single_use_tokens: false,
        status: IssuerStatus::Active,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let verifier = match IdentityVerifier::new(IdpSettings::default()) {
        Ok(verifier) => verifier,
        Err(error) => panic!("verifier: {error}"),
    };
    let key = match EncodingKey::from_ec_pem(&read("ec-1.pem")) {
        Ok(key) => key,
        Err(error) => panic!("ec-1.pem: {error}"),
    };
    World {
        runtime,
        verifier,
        issuer,
        key,
    }
});

/// The verifier's clock: fixed, so fetched keys stay fresh and `exp` means the same every run.
fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default()
}

/// The token from fuzz input: odd first byte, a header and claims (split at the first 0xff
/// byte) signed with the issuer's ES256 key; otherwise the rest as text.
fn token(data: &[u8], world: &World) -> String {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let (header, claims) = match rest.iter().position(|b| *b == 0xff) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            match jsonwebtoken::crypto::sign(input.as_bytes(), &world.key, Algorithm::ES256) {
                Ok(signature) => format!("{input}.{signature}"),
                Err(error) => panic!("signing: {error}"),
            }
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

/// The token's claims, decoded without any check.
fn claims_of(token: &str) -> Map<String, Value> {
    token
        .split('.')
        .nth(1)
        .and_then(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let token = token(data, world);
    let verified = world.runtime.block_on(world.verifier.verify(
        &token,
        &[&world.issuer],
        Some("bot"),
        now(),
    ));
    let Ok(principal) = verified else {
        return;
    };
    let claims = claims_of(&token);
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some("https://idp.example.com/")
    );
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == "mandate",
        Some(Value::Array(auds)) => auds.iter().any(|a| a == "mandate"),
        _ => false,
    };
    assert!(audience_ok, "accepted without the audience: {claims:?}");
    let exp = claims.get("exp").and_then(Value::as_f64);
    assert!(
        exp.is_some_and(|exp| exp >= (now().timestamp() - 60) as f64),
        "accepted an expired or exp-less token: {claims:?}"
    );
    assert_eq!(
        claims.get("sub").and_then(Value::as_str),
        Some(principal.subject.as_str())
    );
    assert!(!principal.subject.is_empty() && principal.subject.len() <= 256);
    assert!(principal
        .groups
        .iter()
        .all(|g| !g.is_empty() && g.len() <= 256));
});
