//! OpenTelemetry export as an operator sees it: the real binary, configured only by the standard
//! `OTEL_*` variables, sends its spans and metrics over OTLP/HTTP to a collector (here one in
//! the test, decoding the protobuf it receives). One mint is one trace continuing the caller's
//! `traceparent`, with a span for each step under the request span; a refused mint's problem
//! names its trace; the log lines carry the trace id; and no token or secret is in anything
//! exported or logged.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use mandate::clock::Clock;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost14::Message as _;
use serde_json::{json, Value};

use crate::cli::{seed_inventory, Running};
use crate::helpers::callers::MANDATES;
use crate::helpers::idp::TestIdp;

type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An OTLP/HTTP collector that keeps every export it receives.
struct Collector {
    base: String,
    received: Received,
}

impl Collector {
    async fn start() -> Collector {
        let received = Received::default();
        let app =
            Router::new()
                .route(
                    "/v1/{signal}",
                    post(
                        |State(received): State<Received>,
                         Path(signal): Path<String>,
                         body: Bytes| async move {
                            received
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((signal, body));
                            (
                                [("content-type", "application/x-protobuf")],
                                Vec::<u8>::new(),
                            )
                        },
                    ),
                )
                .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { base, received }
    }

    fn bodies(&self, signal: &str) -> Vec<Bytes> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(s, _)| s == signal)
            .map(|(_, body)| body.clone())
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        self.bodies("traces")
            .iter()
            .flat_map(|body| {
                ExportTraceServiceRequest::decode(body.as_ref())
                    .unwrap()
                    .resource_spans
            })
            .inspect(|resource| {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"));
                assert_eq!(service.as_deref(), Some("mandate"));
            })
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    /// The last value exported of the counter `name` at `label=value`.
    fn counter(&self, name: &str, label: &str, value: &str) -> Option<i64> {
        self.bodies("metrics")
            .iter()
            .flat_map(|body| {
                ExportMetricsServiceRequest::decode(body.as_ref())
                    .unwrap()
                    .resource_metrics
            })
            .flat_map(|resource| resource.scope_metrics)
            .flat_map(|scope| scope.metrics)
            .filter(|metric| metric.name == name)
            .filter_map(|metric| match metric.data {
                Some(Data::Sum(sum)) => Some(sum.data_points),
                _ => None,
            })
            .flatten()
            .filter(|point| attribute(&point.attributes, label).as_deref() == Some(value))
            .filter_map(|point| match point.value {
                Some(Number::AsInt(n)) => Some(n),
                _ => None,
            })
            .last()
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            AnyValue::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn with_an_otlp_endpoint_a_mint_is_exported_as_one_trace_and_no_secret_leaves() {
    let collector = Collector::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let admin = "mnd_adm_otlp-export-0123456789abcdefghijklmnopqrstuvwxyz";
    let env = [
        ("MANDATE_DATA_DIR", data.to_str().unwrap()),
        ("MANDATE_ADMIN_TOKEN", admin),
        ("MANDATE_LOG", "trace"),
        ("MANDATE_LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.base.as_str()),
    ];
    let running = Running::start(tmp.path(), &[], &env).await;
    let idp = TestIdp::start().await;
    let secret = seed_inventory(&running, admin, &idp).await;
    let jwt = idp.sign(
        "rsa-1",
        &idp.claims("alice", &["support"], mandate::clock::SystemClock.now()),
    );
    let client = reqwest::Client::new();
    let mint = |scope: Value| {
        client
            .post(running.url(MANDATES))
            .bearer_auth(&secret)
            .json(
                &json!({"subject_token": jwt, "task": {"description": "Summarise tickets"},
                          "scope": scope}),
            )
    };
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let minted = mint(json!([{"tool": "crm", "operations": ["read"]}]))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    let token = minted["token"].as_str().unwrap().to_owned();
    // A refused mint names its trace, so the operator can find it.
    let refused = mint(json!([{"tool": "crm", "operations": ["write"]}]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let problem: Value = refused.json().await.unwrap();
    let refused_trace = problem["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(refused_trace.len(), 32, "{problem}");
    assert_ne!(refused_trace, caller_trace);
    // Stopping flushes what is pending: every span and a last metrics export.
    let stderr = running.stderr.clone();
    assert!(running.stop().await.success());
    let log = std::fs::read_to_string(stderr).unwrap();

    let spans = collector.spans();
    let hex = |bytes: &[u8]| hex::encode(bytes);
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == caller_trace)
        .collect();
    let request = in_trace
        .iter()
        .find(|s| s.name == "request")
        .expect("the mint's request span continues the caller's trace");
    assert_eq!(hex(&request.parent_span_id), caller_span);
    assert_eq!(
        attribute(&request.attributes, "path").as_deref(),
        Some(MANDATES)
    );
    assert_eq!(
        attribute(&request.attributes, "agent").as_deref(),
        Some("bot")
    );
    let parent_of = |span: &Span| {
        in_trace
            .iter()
            .find(|s| s.span_id == span.parent_span_id)
            .copied()
    };
    for step in [
        "jwt.validate",
        "policy.evaluate",
        "token.sign",
        "store.commit",
    ] {
        let span = in_trace
            .iter()
            .find(|s| s.name == step)
            .unwrap_or_else(|| panic!("no {step} span in the mint's trace"));
        let mut ancestor = parent_of(span);
        while let Some(a) = ancestor.filter(|a| a.name != "request") {
            ancestor = parent_of(a);
        }
        assert!(ancestor.is_some(), "{step} is not under the request span");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    assert!(
        spans
            .iter()
            .any(|s| s.name == "request" && hex(&s.trace_id) == refused_trace),
        "the refused mint's problem names an exported trace"
    );

    // Metrics went over OTLP too.
    assert_eq!(
        collector.counter("mandate.mints", "outcome", "issued"),
        Some(1)
    );
    assert_eq!(
        collector.counter("mandate.mints", "outcome", "denied"),
        Some(1)
    );

    // The logs are correlated by the same trace id; nothing secret was exported or logged.
    assert!(
        log.contains(caller_trace),
        "the log lines carry the trace id"
    );
    assert!(log.contains("TRACE"), "trace logging was on");
    let exported: Vec<u8> = collector
        .bodies("traces")
        .into_iter()
        .chain(collector.bodies("metrics"))
        .flat_map(|body| body.to_vec())
        .collect();
    for (what, value) in [
        ("mandate", token.as_str()),
        ("principal's JWT", jwt.as_str()),
        ("agent secret", secret.as_str()),
        ("admin token", admin),
    ] {
        // The signature end of each: the part that must never leak.
        let tail = &value[value.len() - 24..];
        assert!(
            !exported.windows(tail.len()).any(|w| w == tail.as_bytes()),
            "an export holds the {what}"
        );
        assert!(!log.contains(tail), "a log line holds the {what}");
    }
}
