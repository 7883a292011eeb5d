//! The gateway's cost, side by side in one run: the latency a `tools/call` gains through the
//! gateway (p50, p99) against the same call straight to the upstream, with a cached mandate;
//! and the authorization throughput of one caller (verify from the cache, the argument checks,
//! the scan of a 1 KiB answer).
//!
//! Everything runs in this process on loopback: a real mandate (development mode, embedded
//! store), a minimal JSON-RPC upstream answering 1 KiB, and the gateway.
//!
//! `cargo bench --bench gateway` (`GATEWAY_BENCH_CALLS`, default 4000 per side).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use mandate::clock::{SharedClock, SystemClock};
use mandate::gateway::config::GatewayConfig;
use mandate::gateway::serve;
use mandate::server::config::{AdminTokenSource, Config};
use mandate::server::secrets::Secret;
use mandate::server::startup::{Options, Server};
use mandate::verifier::Access;
use serde_json::{json, Value};

const ADMIN: &str = "mnd_adm_gateway-bench-0123456789abcdefghijklmnopqrstuvwxyz";

fn answer_text() -> String {
    "lorem ipsum dolor sit amet, ".repeat(37)[..1024].to_owned()
}

/// The upstream: every `tools/call` answered with 1 KiB of text.
async fn upstream() -> String {
    let text = answer_text();
    let app = axum::Router::new().route(
        "/mcp",
        post(move |Json(request): Json<Value>| {
            let text = text.clone();
            async move {
                Json(json!({"jsonrpc": "2.0", "id": request["id"],
                            "result": {"content": [{"type": "text", "text": text}], "isError": false}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/mcp")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("GATEWAY_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.admin_token = Some(AdminTokenSource::Value(Secret::new(ADMIN.to_owned())));
    let clock: SharedClock = Arc::new(SystemClock);
    let server = Server::prepare(
        config,
        Options {
            dev: true,
            dev_seed: true,
        },
        Arc::clone(&clock),
    )
    .await
    .unwrap();
    let listen = server.local_addr().unwrap();
    let base = format!("http://{listen}");
    tokio::spawn(server.run(std::future::pending()));
    let http = reqwest::Client::new();

    // A registered gateway, and a mandate for alice: crm write, tickets starting with `T-`.
    let gateway: Value = http
        .post(format!("{base}/v1/admin/reporters"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"id": "bench-gw", "display_name": "Bench", "kind": "gateway", "owner": "ops"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let credential = gateway["secret"].as_str().unwrap().to_owned();
    let jwt = mandate::server::dev::login(
        dir.path(),
        listen,
        "alice",
        &["staff".to_owned()],
        clock.now(),
        chrono::Duration::minutes(10),
    )
    .unwrap();
    let secret = std::fs::read_to_string(dir.path().join("dev-orchestrator.secret")).unwrap();
    let minted: Value = http
        .post(format!("{base}/v1/mandates"))
        .bearer_auth(secret.trim())
        .json(
            &json!({"subject_token": jwt, "task": {"description": "bench"},
                      "scope": [{"tool": "crm", "operations": ["write"],
                                 "constraints": {"ticket": {"prefix": "T-"}}}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();

    let upstream = upstream().await;
    let toml = format!(
        "mandate_url = \"{base}\"\nassertion_key_file = \"{}\"\n\
         [[route]]\npath = \"/mcp/crm\"\ntool = \"crm\"\nupstream = \"{upstream}\"\n",
        dir.path().join("assertion.pem").display()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut gateway_config = GatewayConfig::parse(&toml, Some(&credential)).unwrap();
    gateway_config.public_url = format!("http://{}", listener.local_addr().unwrap());
    let through = format!("{}/mcp/crm", gateway_config.public_url);
    let prepared = serve::prepare(gateway_config, Arc::clone(&clock))
        .await
        .unwrap();
    tokio::spawn(serve::run(
        Arc::clone(&prepared),
        listener,
        std::future::pending(),
    ));

    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "write", "arguments": {"ticket": "T-1042", "body": "x"}}});
    let send = |url: String, authorized: bool| {
        let mut request = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .json(&call);
        if authorized {
            request = request.bearer_auth(&token);
        }
        let clock = Arc::clone(&clock);
        async move {
            let started = clock.instant();
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["result"]["isError"], false, "{body}");
            clock.instant().saturating_duration_since(started)
        }
    };
    // Warm both paths (connections, the mandate cache), then alternate blocks of 100 so both
    // sides see the same machine.
    for _ in 0..200 {
        send(upstream.clone(), false).await;
        send(through.clone(), true).await;
    }
    let (mut direct, mut gated) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    while direct.len() < calls {
        for _ in 0..100 {
            direct.push(send(upstream.clone(), false).await);
        }
        for _ in 0..100 {
            gated.push(send(through.clone(), true).await);
        }
    }
    direct.sort();
    gated.sort();
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (g50, g99) = (percentile(&gated, 0.5), percentile(&gated, 0.99));
    println!("tools/call latency, {calls} calls per side, sequential, keep-alive:");
    println!(
        "  direct    p50 {:8.1} µs   p99 {:8.1} µs",
        micros(d50),
        micros(d99)
    );
    println!(
        "  gateway   p50 {:8.1} µs   p99 {:8.1} µs",
        micros(g50),
        micros(g99)
    );
    println!(
        "  added     p50 {:8.1} µs   p99 {:8.1} µs   (p50 ratio {:.2}×)",
        micros(g50.saturating_sub(d50)),
        micros(g99.saturating_sub(d99)),
        g50.as_secs_f64() / d50.as_secs_f64()
    );

    // Authorization throughput of one caller: what the gateway does per call besides HTTP.
    let access = Access {
        tool: "crm".into(),
        operation: "write".into(),
        resource: None,
    };
    let arguments = json!({"ticket": "T-1042", "body": "x"});
    let answer = json!({"jsonrpc": "2.0", "id": 7,
                        "result": {"content": [{"type": "text", "text": answer_text()}]}});
    let rounds = 20_000;
    let started = clock.instant();
    for _ in 0..rounds {
        let entry = prepared.verifier.checked(&token).await.unwrap();
        prepared
            .verifier
            .authorize(&entry, &access, Some(arguments.clone()))
            .await
            .unwrap();
        let mut scanned = answer.clone();
        let findings = prepared.config.scanners.scan(&mut scanned);
        assert!(findings.redacted.is_empty() && findings.blocked.is_none());
    }
    let pooled = clock.instant().saturating_duration_since(started);
    // The same work inline, without the hop to the verification pool.
    let entry = prepared.verifier.checked(&token).await.unwrap();
    let request = mandate::token::verify::AccessRequest {
        tool: "crm".into(),
        operation: "write".into(),
        now: clock.now(),
    };
    let options = mandate::token::verify::VerifyOptions::default();
    let started = clock.instant();
    for _ in 0..rounds {
        entry
            .checked
            .authorize_call(&|_| false, &request, None, Some(&arguments), &options)
            .unwrap();
        let mut scanned = answer.clone();
        prepared.config.scanners.scan(&mut scanned);
    }
    let inline = clock.instant().saturating_duration_since(started);
    let per_second = |elapsed: Duration| rounds as f64 / elapsed.as_secs_f64();
    println!("authorization (cached mandate + argument checks + scan of 1 KiB), one caller:");
    println!(
        "  through the pool  {:8.0} calls/s ({:.1} µs each)",
        per_second(pooled),
        micros(pooled) / rounds as f64
    );
    println!(
        "  inline            {:8.0} calls/s ({:.1} µs each)",
        per_second(inline),
        micros(inline) / rounds as f64
    );
}
