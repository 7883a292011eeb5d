//! Metrics and docs as an operator sees them: `/metrics` counts outcomes without naming anyone,
//! the verifier reports its sync lag, and `/docs` renders the served spec without loading anything. (A mint's trace is
//! checked in `tests/trace.rs`, a test binary of its own.)

use mandate::clock::Clock;
use mandate::verifier::revocations::{RevocationSync, SyncSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::{Backend, TestApp};

fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_mints_denials_revocations_and_store_latency_without_naming_anyone() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let agent = app.agent(&secret);
    let mint = |scope: Value, subject: String| agent.mint_body(mint_body(&subject, scope));
    let read = json!([{"tool": "crm", "operations": ["read"]}]);
    let (status, minted) = mint(read.clone(), jwt.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(mint(read.clone(), jwt.clone()).await.0, 201);
    let delete = json!([{"tool": "crm", "operations": ["delete"]}]);
    assert_eq!(mint(delete, jwt.clone()).await.0, 403);
    assert_eq!(mint(read.clone(), "not-a-jwt".to_owned()).await.0, 401);
    assert_eq!(mint(json!([]), jwt.clone()).await.0, 422);
    let id = minted["mandate_id"].as_str().unwrap();
    app.admin_ok(
        Method::POST,
        &format!("/v1/mandates/{id}/revoke"),
        Some(json!({"reason": "done"})),
        200,
    )
    .await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let metrics = response.text().await.unwrap();
    let value = |series: &str| {
        metric_value(&metrics, series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    assert_eq!(value(r#"mandate_mints_total{outcome="issued"}"#), 2.0);
    assert_eq!(value(r#"mandate_mints_total{outcome="denied"}"#), 2.0);
    assert_eq!(value(r#"mandate_mints_total{outcome="invalid"}"#), 1.0);
    assert_eq!(
        value(r#"mandate_mint_denials_total{reason="scope_denied"}"#),
        1.0
    );
    assert_eq!(
        value(r#"mandate_mint_denials_total{reason="malformed_token"}"#),
        1.0
    );
    assert_eq!(
        value(r#"mandate_mint_duration_seconds_count{outcome="issued"}"#),
        2.0
    );
    assert_eq!(
        value(r#"mandate_revocations_total{action="mandate.revoked"}"#),
        1.0
    );
    assert_eq!(
        value(r#"mandate_store_duration_seconds_count{operation="insert_mandate"}"#),
        2.0
    );
    assert_eq!(
        value(r#"mandate_store_duration_seconds_count{operation="revoke"}"#),
        1.0
    );
    assert_eq!(value("mandate_store_pool_max_connections"), 5.0);
    assert!(value(r#"mandate_store_pool_connections{state="idle"}"#) >= 1.0);
    for name in ["alice", "bot", "test-idp", &secret[secret.len() - 16..]] {
        assert!(!metrics.contains(name), "a metric names {name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_docs_page_renders_the_served_spec_under_a_strict_content_policy() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.get("/docs").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        csp.matches("'unsafe-inline'").count(),
        1,
        "only inline style: {csp}"
    );
    assert!(
        !csp.contains("script-src") && !csp.contains("http"),
        "{csp}"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("<title>mandate API</title>"));
    // Rendered here: the page loads nothing, so it reads the same offline.
    for loads in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(loads), "the page loads something: {loads}");
    }
    // Every operation of the served spec is on the page, by method and path.
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() > 20);
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let heading = format!("<code>{} {}</code>", method.to_uppercase(), path);
            assert!(page.contains(&heading), "{heading} is missing");
        }
    }
    for schema in spec["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{schema}\"")),
            "{schema}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_verifier_reports_its_sync_lag_through_the_global_meter_provider() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(exporter)
        .build();
    opentelemetry::global::set_meter_provider(provider);
    let sync = RevocationSync::new(SyncSettings::new(app.base.clone()), app.clock.clone()).unwrap();
    let gather = || {
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    };
    let series = format!(r#"mandate_verifier_sync_lag_seconds{{feed="{}""#, app.base);
    assert!(
        !gather().contains(&series),
        "a copy that never synced reports no lag"
    );
    sync.sync_once().await.unwrap();
    // The lag is measured on the injected clock.
    app.clock.advance(chrono::Duration::seconds(7));
    let metrics = gather();
    let lag: f64 = metrics
        .lines()
        .find(|line| line.starts_with(&series))
        .and_then(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse().unwrap())
        .unwrap_or_else(|| panic!("no lag for this feed in:\n{metrics}"));
    assert!(
        (lag - 7.0).abs() < 1e-6,
        "lag {lag} s, yet 7 s passed since the sync"
    );
    app.stop().await;
}
