//! One verification of a conformance vector's token in Rust, the figure the Python and
//! TypeScript clients' verifiers are set beside (`bench/clients.sh` runs all three in one run).
//!
//! The token is case `narrowed` of `tests/vectors/mandate-v1.json` (2 blocks), verified for its
//! first call: `vector/cold` is the whole check of a token seen for the first time (vocabulary,
//! signatures, hops, authorizer), `vector/cached` a token already checked (revocation and
//! authorizer only), as the verifier's token cache does.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mandate::token::keys::{AgentKeysDocument, KeysDocument};
use mandate::token::verify::{check, verify_with, AccessRequest, Trust, VerifyOptions};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mandate-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let vectors = vectors();
    let keys: KeysDocument = serde_json::from_value(vectors["keys"].clone()).unwrap();
    let keys = keys.key_set().unwrap();
    let agents: AgentKeysDocument = serde_json::from_value(vectors["agent_keys"].clone()).unwrap();
    let agent_keys = agents.agent_keys().unwrap();
    let case = vectors["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["name"] == "narrowed")
        .unwrap();
    let token = case["token"].as_str().unwrap().to_owned();
    let call = &case["calls"][0];
    let request = AccessRequest {
        tool: call["tool"].as_str().unwrap().into(),
        operation: call["operation"].as_str().unwrap().into(),
        now: call["now"].as_str().unwrap().parse().unwrap(),
    };
    let resource = call["resource"].as_str();
    let trust = Trust {
        keys: &keys,
        agent_keys: &agent_keys,
        is_revoked: &|_| false,
    };
    let options = VerifyOptions::default();
    let mut group = c.benchmark_group("vector");
    group.bench_function("cold", |b| {
        b.iter(|| verify_with(black_box(&token), &trust, &request, resource, &options).unwrap())
    });
    let checked = check(&token, &trust, &options).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            checked
                .authorize(&|_| false, black_box(&request), resource, &options)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
