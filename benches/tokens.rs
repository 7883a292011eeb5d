//! CPU costs of mandate's token work, each beside the raw cost it cannot go below:
//!
//! - `mint`: signing a mandate's authority block (what `POST /v1/mandates` spends CPU on),
//!   beside one raw Ed25519 signature;
//! - `attenuate`: appending a delegation block offline;
//! - `verify/cold/N`: the full check of an N-block token (parse, N signatures, attestations,
//!   authorizer), beside `raw_signatures/N`, the signature work it must do (N strict Ed25519
//!   verifications, the N - 1 block keys the token carries decoded for them, and the proof-key
//!   check);
//! - `verify/parse/N` and `verify/check/N`: the parts of a cold verification (signatures; then
//!   attestations and hops);
//! - `verify/cached/N`: a token the verifier has seen (revocation check and authorizer only);
//! - `policy/evaluate`: scope evaluation over 50 policies and 20 tools;
//! - `call/unbound` and `call/bound/{EdDSA,ES256}`: authorizing one call of a cached 2-block
//!   mandate, without binding, and bound with the holder's DPoP proof checked (parse, signature,
//!   method, URL, `iat`, `ath`, replay cache), beside `call/raw_signature_verify/{EdDSA,ES256}`,
//!   one proof-sized signature verification: the proof's floor.
//!
//! `cargo bench --bench tokens`; the figures and ratios are recorded in BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use biscuit_auth::KeyPair;
use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use mandate::server::model::agent::Agent;
use mandate::server::model::policy::Policy;
use mandate::server::model::tool::Tool;
use mandate::server::model::Grant;
use mandate::server::policy::{evaluate, Principal};
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::keys::KeySet;
use mandate::token::mint::{mint, MandateSpec};
use mandate::token::verify::{
    check, parse, verify_with, AccessRequest, AgentKeys, Trust, VerifyOptions,
};
use mandate::token::Right;
use serde_json::json;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).unwrap()
}

fn spec() -> MandateSpec {
    MandateSpec {
        approvals: vec![],
        holder_key: None,
        mandate_id: "0194f3c2-6f1e-7c3a-9d2b-5e8f1a2b3c4d".into(),
        task_id: "task-42".into(),
        task_digest: vec![7; 32],
        principal_subject: "alice@example.com".into(),
        principal_issuer: "https://idp.example.com".into(),
        agent_id: "support-orchestrator".into(),
        rights: ["read", "write", "comment", "close"]
            .into_iter()
            .map(|op| Right {
                tool: "crm".into(),
                operation: op.into(),
            })
            .collect(),
        expires_at: now() + Duration::minutes(15),
        constraints: vec![],
    }
}

/// A mandate with `blocks` blocks: the authority and `blocks - 1` delegation hops.
fn token(root: &KeyPair, blocks: usize) -> String {
    let mut token = mint(&spec(), root, 1).unwrap().token;
    for hop in 1..blocks {
        token = attenuate(
            &token,
            &Attenuation {
                delegate: Some(format!("agent-{hop}")),
                ..Attenuation::default()
            },
        )
        .unwrap();
    }
    token
}

fn tokens(c: &mut Criterion) {
    let root = KeyPair::new();
    let keys = KeySet::from([(1, root.public())]);
    let agent_keys = AgentKeys::new();
    let trust = Trust {
        keys: &keys,
        agent_keys: &agent_keys,
        is_revoked: &|_| false,
    };
    let options = VerifyOptions::default();
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: now(),
    };

    let signer = SigningKey::from_bytes(&[9; 32]);
    let message = [1u8; 200];
    let signature = signer.sign(&message);
    let verifying = signer.verifying_key();

    c.bench_function("mint", |b| {
        b.iter(|| mint(black_box(&spec()), &root, 1).unwrap())
    });
    c.bench_function("raw_signature/sign", |b| {
        b.iter(|| signer.sign(black_box(&message)))
    });
    let one = token(&root, 1);
    c.bench_function("attenuate", |b| {
        b.iter(|| {
            attenuate(
                black_box(&one),
                &Attenuation {
                    delegate: Some("summariser".into()),
                    ..Attenuation::default()
                },
            )
            .unwrap()
        })
    });

    let mut group = c.benchmark_group("verify");
    for blocks in [1, 2, 5] {
        let token = token(&root, blocks);
        // What any verifier must do for an N-block token: N strict Ed25519 verifications, the
        // first with the root key it holds and each later one with the key the block before
        // carries (32 bytes to decode, as RFC 8032's verification does), and the proof (the
        // last block's next secret key) checked against the last next public key.
        group.bench_with_input(
            BenchmarkId::new("raw_signatures", blocks),
            &blocks,
            |b, &n| {
                b.iter(|| {
                    verifying
                        .verify_strict(black_box(&message), &signature)
                        .unwrap();
                    for _ in 1..n {
                        VerifyingKey::from_bytes(black_box(verifying.as_bytes()))
                            .unwrap()
                            .verify_strict(black_box(&message), &signature)
                            .unwrap();
                    }
                    assert_eq!(
                        SigningKey::from_bytes(black_box(&[9; 32])).verifying_key(),
                        verifying
                    );
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("parse", blocks), &token, |b, token| {
            b.iter(|| parse(black_box(token), &keys, &options).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("check", blocks), &token, |b, token| {
            b.iter(|| check(black_box(token), &trust, &options).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("cold", blocks), &token, |b, token| {
            b.iter(|| verify_with(black_box(token), &trust, &request, None, &options).unwrap())
        });
        let checked = check(&token, &trust, &options).unwrap();
        group.bench_with_input(
            BenchmarkId::new("cached", blocks),
            &checked,
            |b, checked| {
                b.iter(|| {
                    checked
                        .authorize(&|_| false, black_box(&request), None, &options)
                        .unwrap()
                })
            },
        );
    }
    group.finish();
}

fn policies(c: &mut Criterion) {
    let at = now();
    let tools: Vec<Tool> = (0..20)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("tool-{i}"), "display_name": "T", "kind": "api", "owner": "o",
                "description": null,
                "operations": ["read", "write", "comment", "close", "admin"],
                "status": "active", "version": 1, "created_at": at, "updated_at": at,
            }))
            .unwrap()
        })
        .collect();
    let grants = |n: usize| -> Vec<Grant> {
        (0..n)
            .map(|i| Grant {
                tool: format!("tool-{i}"),
                operations: vec!["read".into(), "write".into()],
                constraints: Default::default(),
                approval: None,
                arguments: None,
            })
            .collect()
    };
    let agent: Agent = serde_json::from_value(json!({
        "id": "support-orchestrator", "display_name": "S", "kind": "orchestrator", "owner": "o",
        "team": null, "description": null, "ceiling": grants(20), "max_ttl_seconds": 900,
        "status": "active", "version": 1, "created_at": at, "updated_at": at,
    }))
    .unwrap();
    let policies: Vec<Policy> = (0..50)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("policy-{i}"), "name": "P", "description": null,
                "issuer": "corp-idp", "subjects": [], "groups": [format!("group-{}", i % 10)],
                "agents": ["support-orchestrator"], "grants": grants(1 + i % 20),
                "max_ttl_seconds": 900, "enabled": true, "version": 1,
                "created_at": at, "updated_at": at,
            }))
            .unwrap()
        })
        .collect();
    let principal = Principal {
        issuer_id: "corp-idp".into(),
        issuer_url: "https://idp.example.com".into(),
        subject: "alice".into(),
        groups: vec!["group-3".into(), "group-7".into()],
        issued_at: None,
        single_use: None,
        client: None,
    };
    let requested = grants(4);
    let evaluation = evaluate(&principal, &agent, &requested, &policies, &tools);
    assert!(evaluation.denied.is_empty(), "{:?}", evaluation.denied);
    c.bench_function("policy/evaluate", |b| {
        b.iter(|| evaluate(black_box(&principal), &agent, &requested, &policies, &tools))
    });
}

/// What refusing each family of hostile block costs (the vocabulary check alone, which every
/// path runs before any Datalog), and what sealing one audit event with its MAC costs.
fn hostile(c: &mut Criterion) {
    let root = KeyPair::new();
    let mandate = token(&root, 1);
    let append = |source: &str| {
        let block = biscuit_auth::BlockBuilder::new().code(source).unwrap();
        biscuit_auth::UnverifiedBiscuit::from_base64(&mandate)
            .unwrap()
            .append(block)
            .unwrap()
            .to_base64()
            .unwrap()
    };
    let facts: String = (0..40).map(|i| format!("f({i});")).collect();
    let long = (0..300)
        .map(|i| format!("$t == \"t{i}\""))
        .collect::<Vec<_>>()
        .join(" || ");
    let set = (0..500)
        .map(|i| format!("\"r{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let families = [
        (
            "join",
            format!("{facts} r($a) <- f($a), f($b), f($c), f($d), $a + $b + $c + $d < 0;"),
        ),
        (
            "generating_rule",
            "g($x) <- time($x); g($x) <- g($x);".to_owned(),
        ),
        (
            "long_expression",
            format!("check if tool($t), operation($o), {long};"),
        ),
        (
            "large_set",
            format!("check if resource($r), {{{set}}}.contains($r);"),
        ),
        (
            "huge_string",
            format!("delegate(\"{}\");", "x".repeat(6000)),
        ),
    ];
    let mut group = c.benchmark_group("refuse");
    for (family, source) in &families {
        let hostile = append(source);
        assert!(mandate::token::vocabulary::read(&hostile, 16).is_err());
        group.bench_with_input(BenchmarkId::new("vocabulary", family), &hostile, |b, t| {
            b.iter(|| mandate::token::vocabulary::read(black_box(t), 16).unwrap_err())
        });
    }
    group.finish();
    let seal = mandate::server::audit_seal::AuditSeal::from_keys(&[(1, root)], 1);
    let hash = [7u8; 32];
    c.bench_function("audit/seal_event", |b| {
        b.iter(|| seal.seal(black_box(42), black_box(&hash)).unwrap())
    });
}

/// One call of a cached mandate: unbound, then bound with the holder's proof checked.
fn proofs(c: &mut Criterion) {
    use mandate::token::pop::proof::{create, Expected};
    use mandate::token::pop::replay::{ProofSettings, Proofs};
    use mandate::token::pop::HolderSecret;
    let root = KeyPair::new();
    let keys = KeySet::from([(1, root.public())]);
    let agents = AgentKeys::new();
    let trust = Trust {
        keys: &keys,
        agent_keys: &agents,
        is_revoked: &|_| false,
    };
    let options = VerifyOptions::default();
    let request = AccessRequest {
        tool: "crm".into(),
        operation: "read".into(),
        now: now(),
    };
    let url = "https://crm.example.com/tickets";
    let unbound = check(&token(&root, 2), &trust, &options).unwrap();
    let mut group = c.benchmark_group("call");
    group.bench_function("unbound", |b| {
        b.iter(|| unbound.authorize_held(&|_| false, &request, None, None, None, &options))
    });
    for alg in ["EdDSA", "ES256"] {
        let holder = HolderSecret::generate(alg).unwrap();
        let jkt = holder.public().thumbprint();
        let bound_token = {
            let bound = MandateSpec {
                approvals: vec![],
                holder_key: Some(jkt.clone()),
                ..spec()
            };
            let minted = mint(&bound, &root, 1).unwrap().token;
            attenuate(
                &minted,
                &Attenuation {
                    delegate: Some("agent-1".into()),
                    ..Attenuation::default()
                },
            )
            .unwrap()
        };
        let bound = check(&bound_token, &trust, &options).unwrap();
        let proofs = Proofs::new(
            ProofSettings {
                replay_capacity: 50_000_000,
                ..ProofSettings::default()
            },
            [0; 32],
        );
        let ath = mandate::token::pop::proof::token_hash(&bound_token);
        let expected = Expected {
            method: "GET",
            url,
            ath: Some(&ath),
            holder: Some(&jkt),
            now: now(),
            max_age: Duration::seconds(60),
            max_ahead: Duration::seconds(30),
        };
        group.bench_function(BenchmarkId::new("bound", alg), |b| {
            b.iter_batched(
                || create(&holder, "GET", url, Some(&bound_token), None, now()),
                |proof| {
                    let proven = proofs.check(&proof, &expected).unwrap().jkt;
                    bound.authorize_held(&|_| false, &request, None, None, Some(&proven), &options)
                },
                criterion::BatchSize::SmallInput,
            )
        });
        // One signature verification over a proof's signing input: what no proof check avoids.
        let proof = create(&holder, "GET", url, Some(&bound_token), None, now());
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        let public = holder.public().clone();
        group.bench_function(BenchmarkId::new("raw_signature_verify", alg), |b| {
            b.iter(|| assert!(public.verifies(black_box(input.as_bytes()), &signature)))
        });
    }
    group.finish();
}

criterion_group!(benches, tokens, policies, hostile, proofs);
criterion_main!(benches);
