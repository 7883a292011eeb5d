//! OTLP/HTTP export, configured by the standard OpenTelemetry environment variables:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
//!   `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) turns export on; unset, nothing is exported.
//! - `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`, `OTEL_METRICS_EXPORTER=none` turn it off.
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` may only be `http/protobuf` (the one mandate speaks); asking for
//!   another stops start-up rather than sending the wrong wire format.
//! - `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME` and
//!   `OTEL_RESOURCE_ATTRIBUTES` are read by the exporter and resource as usual.
//!
//! Export goes through mandate's own HTTP client (rustls, so `https://` collectors work).

use std::time::Duration;

/// The instrumentation scope of every span and metric mandate emits.
pub const SCOPE: &str = "mandate";

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithHttpConfig};
use opentelemetry_sdk::Resource;

/// Largest collector answer read (collectors answer with a small status message).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Which kind of telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
}

/// Whether `signal` is to be exported, from the variables `var` reads.
pub fn enabled(var: impl Fn(&str) -> Option<String>, signal: Signal) -> Result<bool, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let kind = signal.name();
    if let Some(exporter) = set(&format!("OTEL_{kind}_EXPORTER")) {
        match exporter.trim() {
            "none" => return Ok(false),
            "otlp" => {}
            other => {
                return Err(format!(
                    "OTEL_{kind}_EXPORTER={other} is not supported: use otlp or none"
                ))
            }
        }
    }
    let endpoint = set(&format!("OTEL_EXPORTER_OTLP_{kind}_ENDPOINT"))
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_none() {
        return Ok(false);
    }
    for name in [
        format!("OTEL_EXPORTER_OTLP_{kind}_PROTOCOL"),
        "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
    ] {
        if let Some(protocol) = set(&name) {
            if protocol.trim() != "http/protobuf" {
                return Err(format!(
                    "{name}={protocol} is not supported: mandate exports OTLP as http/protobuf"
                ));
            }
        }
    }
    Ok(true)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The resource every span and metric carries: `service.name` (default `mandate`, or
/// `OTEL_SERVICE_NAME`), `service.version`, and `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource() -> Resource {
    let builder = Resource::builder();
    let builder = if env("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty()) {
        builder
    } else {
        builder.with_service_name(SCOPE)
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The span exporter the environment asks for, if any.
pub fn span_exporter() -> Result<Option<SpanExporter>, String> {
    if !enabled(env, Signal::Traces)? {
        return Ok(None);
    }
    SpanExporter::builder()
        .with_http()
        .with_http_client(Client::new()?)
        .build()
        .map(Some)
        .map_err(|e| format!("OTLP trace exporter: {e}"))
}

/// The metric exporter the environment asks for, if any.
pub fn metric_exporter() -> Result<Option<MetricExporter>, String> {
    if !enabled(env, Signal::Metrics)? {
        return Ok(None);
    }
    MetricExporter::builder()
        .with_http()
        .with_http_client(Client::new()?)
        .build()
        .map(Some)
        .map_err(|e| format!("OTLP metric exporter: {e}"))
}

/// A blocking HTTP client: the SDK exports from its own threads, outside any async runtime.
#[derive(Debug, Clone)]
struct Client(reqwest::blocking::Client);

impl Client {
    fn new() -> Result<Self, String> {
        // A blocking client owns a runtime, which may not be created inside another one.
        std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .join()
        .map_err(|_| "the OTLP HTTP client could not be built".to_owned())?
        .map(Client)
        .map_err(|e| format!("OTLP HTTP client: {e}"))
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        use std::io::Read;
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        response.take(MAX_RESPONSE_BYTES).read_to_end(&mut bytes)?;
        let mut answer = Response::new(Bytes::from(bytes));
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn export_is_on_only_when_an_endpoint_is_named() {
        assert_eq!(enabled(vars(&[]), Signal::Traces), Ok(false));
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(enabled(vars(&[endpoint]), Signal::Traces), Ok(true));
        assert_eq!(enabled(vars(&[endpoint]), Signal::Metrics), Ok(true));
        let traces_only = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        );
        assert_eq!(enabled(vars(&[traces_only]), Signal::Traces), Ok(true));
        assert_eq!(enabled(vars(&[traces_only]), Signal::Metrics), Ok(false));
        assert_eq!(
            enabled(
                vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
                Signal::Traces
            ),
            Ok(false)
        );
    }

    #[test]
    fn export_can_be_switched_off_per_signal_or_entirely() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let off = vars(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(enabled(&off, Signal::Traces), Ok(false));
        assert_eq!(enabled(&off, Signal::Metrics), Ok(false));
        let no_metrics = vars(&[endpoint, ("OTEL_METRICS_EXPORTER", "none")]);
        assert_eq!(enabled(&no_metrics, Signal::Traces), Ok(true));
        assert_eq!(enabled(&no_metrics, Signal::Metrics), Ok(false));
    }

    #[test]
    fn a_wire_format_or_exporter_mandate_does_not_speak_is_refused() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let grpc = enabled(
            vars(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Signal::Traces,
        );
        assert_eq!(
            grpc,
            Err("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: mandate exports OTLP as http/protobuf".to_owned())
        );
        let zipkin = enabled(
            vars(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]),
            Signal::Traces,
        );
        assert!(zipkin.unwrap_err().contains("OTEL_TRACES_EXPORTER=zipkin"));
        assert_eq!(
            enabled(
                vars(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
                Signal::Traces
            ),
            Ok(true)
        );
    }
}
