//! A DPoP proof, as every verifier checks one (`Proofs::check`) for a call of `POST` on a fixed
//! URL with a fixed mandate bound to a fixed key. Inputs are either any text, or a fuzzed header
//! and claims signed with the holder's real Ed25519 key, so the fuzzer gets past the signature
//! to the header, method, URL, time, token-hash and replay checks. A proof is accepted only with
//! `typ` dpop+jwt, the holder's key, the call's method and URL, a fresh `iat` and the token's
//! hash, and only once.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mandate::token::pop::proof::{self, normalize_url, token_hash, Expected, ProofError};
use mandate::token::pop::replay::{ProofSettings, Proofs};
use mandate::token::pop::HolderSecret;
use serde_json::{json, Value};

const TOKEN: &str = "the-mandate";
const URL: &str = "https://crm.example.com/tickets";

/// RFC 8037's Ed25519 key: the holder the mandate is bound to.
static HOLDER: LazyLock<HolderSecret> = LazyLock::new(|| {
    let jwk = json!({"kty": "OKP", "crv": "Ed25519",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    match HolderSecret::from_jwk(&jwk) {
        Ok(holder) => holder,
        Err(error) => panic!("holder key: {error}"),
    }
});

/// The proof from fuzz input: odd first byte, a header and claims (split at the first 0xff
/// byte) signed with the holder's key; otherwise the rest as text.
fn proof(data: &[u8]) -> String {
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
            let signature = URL_SAFE_NO_PAD.encode(HOLDER.sign(input.as_bytes()));
            format!("{input}.{signature}")
        }
        Some((_, rest)) => String::from_utf8_lossy(rest).into_owned(),
        None => String::new(),
    }
}

fn part(proof: &str, index: usize) -> Value {
    proof
        .split('.')
        .nth(index)
        .and_then(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let proof = proof(data);
    let now = Utc
        .timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default();
    let holder = HOLDER.public().thumbprint();
    let ath = token_hash(TOKEN);
    let expected = Expected {
        method: "POST",
        url: URL,
        ath: Some(&ath),
        holder: Some(&holder),
        now,
        max_age: Duration::seconds(60),
        max_ahead: Duration::seconds(30),
    };
    // Parsing alone never panics, whatever it is given.
    let _ = proof::parse(&proof);
    let proofs = Proofs::new(ProofSettings::default(), [0; 32]);
    let Ok(checked) = proofs.check(&proof, &expected) else {
        return;
    };
    let (header, claims) = (part(&proof, 0), part(&proof, 1));
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(checked.jkt, holder);
    assert_eq!(claims["htm"], "POST", "{claims}");
    let htu = claims["htu"].as_str().and_then(normalize_url);
    assert_eq!(htu, normalize_url(URL), "{claims}");
    let iat = claims["iat"].as_f64().unwrap_or(f64::NAN);
    let now = now.timestamp() as f64;
    assert!(iat >= now - 61.0 && iat < now + 31.0, "{claims}");
    assert_eq!(claims["ath"], token_hash(TOKEN).as_str(), "{claims}");
    assert_eq!(
        proofs.check(&proof, &expected).err(),
        Some(ProofError::Replayed)
    );
});
