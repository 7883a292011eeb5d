//! Telemetry: logs, traces and metrics.
//!
//! - Logs: `tracing` to stderr as text or JSON lines, filtered by the `log` setting.
//! - Traces: every request is a span tree (request → `jwt.validate`, `policy.evaluate`,
//!   `token.sign`, `store.commit` for a mint). The trace id continues an incoming W3C
//!   `traceparent`, is logged with the request span and returned in problem documents. Spans are
//!   exported over OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_*` variables name an
//!   endpoint ([`otlp`]).
//! - Metrics: [`Metrics`], scraped at `/metrics` and exported over OTLP alongside traces.
//!
//! Nothing secret is a span field or a metric label: requests are described by method, path
//! and request id; callers by their agent id or admin token name; metrics by bounded outcome,
//! reason and operation names.

mod metrics;
pub mod otlp;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use metrics::{Metrics, MintOutcome};

use super::config::{Config, LogFormat};

pub use otlp::SCOPE;

/// Keeps the trace pipeline alive; dropping it flushes and stops the exporter.
#[must_use = "dropping the telemetry guard stops trace export"]
pub struct Telemetry {
    traces: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.traces.shutdown() {
            eprintln!("mandate: flushing traces: {error}");
        }
    }
}

/// Installs the global subscriber: logs to stderr, spans to OTLP when the environment names an
/// endpoint. Call once, from the binary.
pub fn init(config: &Config) -> Result<Telemetry, String> {
    let exporter = otlp::span_exporter()?;
    let exporting = exporter.is_some();
    let traces = tracer_provider(exporter);
    let subscriber = subscriber(
        &config.log,
        config.log_format,
        std::io::stderr,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        traces.tracer(SCOPE),
        exporting,
    )?;
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())?;
    Ok(Telemetry { traces })
}

/// A tracer provider sending finished spans to `exporter` in batches. Without an exporter,
/// spans still carry trace ids (for logs and problem documents) but are not recorded.
pub fn tracer_provider(exporter: Option<opentelemetry_otlp::SpanExporter>) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(otlp::resource());
    match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter).build(),
        None => builder.with_sampler(Sampler::AlwaysOff).build(),
    }
}

/// The subscriber [`init`] installs, writing log lines to `writer` (in colour only if `colours`:
/// a terminal, never a file or a log collector) and spans to `tracer` (`exporting` them, or
/// only giving requests their trace ids).
pub fn subscriber<W>(
    log: &str,
    format: LogFormat,
    writer: W,
    colours: bool,
    tracer: Tracer,
    exporting: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(log).map_err(|e| e.to_string())?;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colours);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    // Traces hold mandate's own spans at info and above, whatever the log filter says. With
    // nothing exporting them, only the request span is traced, for the trace id that its log
    // lines and problem documents carry: its children would be built and recorded nowhere.
    let spans = tracing_opentelemetry::layer().with_tracer(tracer);
    let spans = if exporting {
        spans
            .with_filter(Targets::new().with_target(SCOPE, LevelFilter::INFO))
            .boxed()
    } else {
        spans
            .with_filter(filter_fn(|meta| {
                meta.is_span() && meta.name() == "request" && meta.target().starts_with(SCOPE)
            }))
            .boxed()
    };
    Ok(Box::new(
        tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .with(spans),
    ))
}

/// Continues the W3C trace context of an incoming request (`traceparent`, `tracestate`) in
/// `span`, and records the trace id in the span's `trace_id` field for the logs.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer, when there is no trace to continue.
        let _ = span.set_parent(parent);
    }
    if let Some(trace_id) = trace_id(span) {
        span.record("trace_id", trace_id.as_str());
    }
}

/// The trace id of `span`, hex, when spans are being traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
