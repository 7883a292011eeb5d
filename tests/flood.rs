//! Hostile blocks appended to a real mandate (anyone holding one can append a block): every
//! path that reads a token refuses them as not mandate/v1 before any Datalog runs, quickly,
//! and a flood of them does not hold up the service's other requests.
//!
//! A test binary of its own, sharing the api binary's harness: cargo runs test binaries one
//! after another, so the load of the other tests does not decide these timings.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]
#![expect(
    dead_code,
    reason = "the shared harness serves the api binary's tests too"
)]

#[path = "api/helpers/mod.rs"]
mod helpers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
use mandate::clock::Clock;
use mandate::token::TokenError;
use mandate::verifier::{Access, NoRevocations, Verifier, VerifierSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::downstream::start_downstream;
use crate::helpers::fixtures::{mint_read, mint_setup};
use crate::helpers::{Backend, TestApp};

/// One block of each hostile family, as Datalog a holder could append.
fn hostile_blocks() -> Vec<(&'static str, String)> {
    let facts: String = (0..40).map(|i| format!("f({i});")).collect();
    let join = "r($a) <- f($a), f($b), f($c), f($d), $a + $b + $c + $d < 0;";
    let long = (0..300)
        .map(|i| format!("$t == \"t{i}\""))
        .collect::<Vec<_>>()
        .join(" || ");
    let set = (0..500)
        .map(|i| format!("\"r{i}\""))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        ("a k-way join", format!("{facts} {join}")),
        (
            "a rule that generates facts",
            "g($x) <- time($x); g($x) <- g($x);".into(),
        ),
        (
            "a long expression",
            format!("check if tool($t), operation($o), {long};"),
        ),
        (
            "a large set",
            format!("check if resource($r), {{{set}}}.contains($r);"),
        ),
        (
            "a huge string",
            format!("delegate(\"{}\");", "x".repeat(6000)),
        ),
    ]
}

fn append(token: &str, source: &str) -> String {
    let block = BlockBuilder::new().code(source).unwrap();
    UnverifiedBiscuit::from_base64(token)
        .unwrap()
        .append(block)
        .unwrap()
        .to_base64()
        .unwrap()
}

/// Each hostile family appended to `token`, and a token of 17 blocks.
fn hostile_tokens(token: &str) -> Vec<(&'static str, String)> {
    let mut tokens: Vec<_> = hostile_blocks()
        .into_iter()
        .map(|(family, source)| (family, append(token, &source)))
        .collect();
    let mut many = token.to_owned();
    for i in 0..16 {
        many = append(&many, &format!("delegate(\"agent-{i}\");"));
    }
    tokens.push(("many blocks", many));
    tokens
}

/// The timing tests of this module run one at a time: the flood would be the other's noise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn refused(reason: &str) -> bool {
    reason.contains("not_mandate_block") || reason.contains("too_many_blocks")
}

/// What a hostile token costs a path beyond any other refused token: the fastest of ten
/// refusals of `hostile`, less the fastest of ten of a token that is not one at all (the same
/// request, routing and authentication, refused at its first byte). The machine's noise and
/// the debug build's HTTP cost are in both; the hostile block's work is in the difference.
async fn added_cost<F, Fut>(mut call: F, hostile: &str) -> (Duration, Duration)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..10 {
        let started = real_now();
        call(hostile.to_owned()).await;
        best.0 = best.0.min(started.elapsed());
        let started = real_now();
        call("not-a-token".to_owned()).await;
        best.1 = best.1.min(started.elapsed());
    }
    (best.0, best.0.saturating_sub(best.1))
}

#[tokio::test]
async fn every_path_refuses_each_hostile_family_as_not_a_mandate_block_in_under_5_ms() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let (status, minted) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let clock: mandate::clock::SharedClock = app.clock.clone();
    let verifier = Arc::new(
        Verifier::new(
            VerifierSettings::new(app.base.clone()),
            Arc::new(NoRevocations),
            clock,
        )
        .unwrap(),
    );
    verifier.refresh().await.unwrap();
    let downstream = start_downstream(Arc::clone(&verifier), None).await;
    let http = reqwest::Client::new();
    let reporter = crate::helpers::fixtures::reporter(&app, "crm-api").await;
    let read = Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    let before = app.audit_len().await;
    let budget = Duration::from_millis(5);
    for (family, hostile) in hostile_tokens(token) {
        let receipts = |token: String| {
            let (app, reporter) = (&app, &reporter);
            async move {
                let receipt = json!({"receipts": [{"token": token, "tool": "crm",
                    "operation": "read", "outcome": "success", "occurred_at": app.clock.now()}]});
                let response = app
                    .call(Method::POST, "/v1/receipts", Some(reporter), Some(&receipt))
                    .await;
                let problem = crate::helpers::assert_problem(response, 422).await;
                assert_eq!(problem["errors"][0]["field"], "receipts[0].token");
                if token != "not-a-token" {
                    assert!(refused(&problem.to_string()), "{problem}");
                }
            }
        };
        let branch = |token: String| {
            let app = &app;
            async move {
                let body = json!({"token": token, "reason": "hostile"});
                let response = app
                    .call(Method::POST, "/v1/revocations", None, Some(&body))
                    .await;
                crate::helpers::assert_problem(response, 401).await;
            }
        };
        let introspect = |token: String| {
            let (app, secret) = (&app, &secret);
            async move {
                let (status, body) = app
                    .as_token(
                        secret,
                        Method::POST,
                        "/v1/introspect",
                        Some(json!({"token": token})),
                    )
                    .await;
                assert_eq!((status, &body["active"]), (200, &json!(false)));
            }
        };
        let library = |token: String| {
            let (verifier, read) = (&verifier, &read);
            async move {
                match verifier.verify(&token, read).await {
                    Err(TokenError::NotMandateBlock { .. } | TokenError::TooManyBlocks) => {}
                    Err(TokenError::Malformed) if token == "not-a-token" => {}
                    other => panic!("{other:?}"),
                }
            }
        };
        let layer = |token: String| {
            let (http, downstream) = (&http, &downstream);
            async move {
                let response = http
                    .get(format!("{downstream}/tickets"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 401);
                let problem: Value = response.json().await.unwrap();
                if token != "not-a-token" {
                    assert!(refused(&problem.to_string()), "{problem}");
                }
            }
        };
        let costs = [
            ("receipts", added_cost(receipts, &hostile).await),
            ("branch revocation", added_cost(branch, &hostile).await),
            ("introspection", added_cost(introspect, &hostile).await),
            ("library verifier", added_cost(library, &hostile).await),
            ("tower layer", added_cost(layer, &hostile).await),
        ];
        for (path, (took, added)) in costs {
            eprintln!("{family}: refused by {path} in {took:?} ({added:?} more than junk)");
            assert!(added < budget, "{path}, {family}: {added:?} of {took:?}");
            assert!(took < 10 * budget, "{path}, {family}: {took:?} in all");
        }
    }
    assert_eq!(app.audit_len().await, before, "nothing was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_keeps_a_p99_under_50_ms_while_8_clients_send_hostile_tokens() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let (_, minted) = mint_read(&app, &idp, &secret).await;
    let token = minted["token"].as_str().unwrap();
    let reporter = crate::helpers::fixtures::reporter(&app, "crm-api").await;
    let tokens = Arc::new(hostile_tokens(token));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for client in 0..8 {
        let (tokens, stop, sent) = (Arc::clone(&tokens), Arc::clone(&stop), Arc::clone(&sent));
        let reporter = reporter.clone();
        let url = app.url("/v1/receipts");
        let now = app.clock.now();
        flood.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = client;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, hostile) = &tokens[i % tokens.len()];
                let body = json!({"receipts": [{"token": hostile, "tool": "crm",
                    "operation": "read", "outcome": "success", "occurred_at": now}]});
                let response = http
                    .post(&url)
                    .bearer_auth(&reporter)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 422);
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let started = real_now();
        let response = http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in flood {
        client.await.unwrap();
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "/healthz p99 {p99:?} (max {:?}) under {sent} hostile reports",
        latencies[latencies.len() - 1]
    );
    assert!(sent > 200, "the flood was sent ({sent} hostile reports)");
    assert!(
        p99 < Duration::from_millis(50),
        "/healthz p99 {p99:?} under {sent} hostile reports"
    );
}

/// The real monotonic time: this binary times real work (the service reads its clock).
#[expect(clippy::disallowed_methods, reason = "this binary times real work")]
fn real_now() -> Instant {
    Instant::now()
}
