//! The service's metrics, as OpenTelemetry instruments read two ways: scraped in the Prometheus
//! text format at `/metrics`, and pushed over OTLP when the environment names a collector.
//!
//! | Instrument (Prometheus name)                      | Labels                    |
//! |---------------------------------------------------|---------------------------|
//! | `mandate_mints_total`                             | `outcome`                 |
//! | `mandate_mint_denials_total`                      | `reason`                  |
//! | `mandate_mint_duration_seconds` (histogram)       | `outcome`                 |
//! | `mandate_revocations_total`                       | `action`                  |
//! | `mandate_store_duration_seconds` (histogram)      | `operation`               |
//! | `mandate_store_pool_connections`                  | `state` (`idle`, `in_use`)|
//! | `mandate_store_pool_max_connections`              |                           |
//! | `mandate_audit_verified_seq`                      |                           |
//! | `mandate_audit_broken_at` (0 while intact)        |                           |
//!
//! Every label takes values from a fixed set, so no caller can grow the series count, and none
//! names a principal, an agent or a token. The verifier library reports its own sync lag
//! (`mandate.verifier.sync.lag`) through the downstream service's global meter provider.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::server::store::SharedStore;

/// Bucket bounds for latencies, in seconds: 0.5 ms to 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How one mint request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintOutcome {
    /// A mandate was issued.
    Issued,
    /// A requested operation waits for human approval: an approval request was recorded.
    Pending,
    /// The principal's token or the requested scope was refused.
    Denied,
    /// The request itself was invalid.
    Invalid,
    /// The orchestrator or the principal had used its mint allowance.
    RateLimited,
    /// A dependency (the store, an issuer's keys) was unavailable.
    Unavailable,
    /// Anything else.
    Error,
}

impl MintOutcome {
    fn label(self) -> &'static str {
        match self {
            MintOutcome::Issued => "issued",
            MintOutcome::Pending => "pending_approval",
            MintOutcome::Denied => "denied",
            MintOutcome::Invalid => "invalid",
            MintOutcome::RateLimited => "rate_limited",
            MintOutcome::Unavailable => "unavailable",
            MintOutcome::Error => "error",
        }
    }
}

/// The service's instruments and the readers behind them.
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    mints: Counter<u64>,
    denials: Counter<u64>,
    mint_duration: Histogram<f64>,
    revocations: Counter<u64>,
    store_duration: Histogram<f64>,
    audit_verified: Gauge<i64>,
    audit_broken: Gauge<i64>,
    clock: SharedClock,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Instruments read by a Prometheus registry of their own, and by `otlp` when given. The
    /// pool gauges read `store` while it lives.
    pub fn new(
        store: &SharedStore,
        clock: SharedClock,
        otlp: Option<MetricExporter>,
    ) -> Result<Self, String> {
        let registry = prometheus::Registry::new();
        let scrape = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|e| format!("metrics: {e}"))?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(super::otlp::resource())
            .with_reader(scrape);
        if let Some(exporter) = otlp {
            builder = builder.with_periodic_exporter(exporter);
        }
        let provider = builder.build();
        let meter = provider.meter(super::otlp::SCOPE);
        let weak = Arc::downgrade(store);
        meter
            .u64_observable_gauge("mandate.store.pool.connections")
            .with_description("Open database connections by state")
            .with_callback(move |gauge| {
                if let Some(store) = weak.upgrade() {
                    let usage = store.pool_usage();
                    let in_use = usage.size.saturating_sub(usage.idle);
                    gauge.observe(u64::from(usage.idle), &[KeyValue::new("state", "idle")]);
                    gauge.observe(u64::from(in_use), &[KeyValue::new("state", "in_use")]);
                }
            })
            .build();
        let weak = Arc::downgrade(store);
        meter
            .u64_observable_gauge("mandate.store.pool.max_connections")
            .with_description("The most database connections the pool opens")
            .with_callback(move |gauge| {
                if let Some(store) = weak.upgrade() {
                    gauge.observe(u64::from(store.pool_usage().max), &[]);
                }
            })
            .build();
        Ok(Self {
            mints: meter
                .u64_counter("mandate.mints")
                .with_description("Mint requests by outcome")
                .build(),
            denials: meter
                .u64_counter("mandate.mint.denials")
                .with_description("Refused mints by reason")
                .build(),
            mint_duration: meter
                .f64_histogram("mandate.mint.duration")
                .with_unit("s")
                .with_description("Time to answer a mint request")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            revocations: meter
                .u64_counter("mandate.revocations")
                .with_description("Mandates revoked, by how")
                .build(),
            store_duration: meter
                .f64_histogram("mandate.store.duration")
                .with_unit("s")
                .with_description("Time to commit a write to the store")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            audit_verified: meter
                .i64_gauge("mandate.audit.verified_seq")
                .with_description("The last audit event this replica found authentic")
                .build(),
            audit_broken: meter
                .i64_gauge("mandate.audit.broken_at")
                .with_description("The first audit event that does not hold (0 while intact)")
                .build(),
            provider,
            registry,
            clock,
        })
    }

    /// Counts one mint request and its duration.
    pub fn minted(&self, outcome: MintOutcome, reason: Option<&str>, took: Duration) {
        let label = [KeyValue::new("outcome", outcome.label())];
        self.mints.add(1, &label);
        self.mint_duration.record(took.as_secs_f64(), &label);
        if let Some(reason) = reason {
            self.denials
                .add(1, &[KeyValue::new("reason", reason.to_owned())]);
        }
    }

    /// Counts `count` revocations recorded by `action`, the audit action naming how (one
    /// mandate, a branch, or a bulk selection; a fixed set in code, never caller input).
    pub fn revoked(&self, action: &str, count: u64) {
        self.revocations
            .add(count, &[KeyValue::new("action", action.to_owned())]);
    }

    /// Records what this replica's last walk of the audit chain found.
    pub fn audit_walked(&self, status: &crate::server::audit::ReplicaAudit) {
        self.audit_verified.record(status.verified_seq, &[]);
        self.audit_broken.record(status.broken_at.unwrap_or(0), &[]);
    }

    /// Runs the store write `commit` in a `store.commit` span named by `operation`, and records
    /// how long it took (failed or not).
    pub async fn commit<T, E>(
        &self,
        operation: &'static str,
        commit: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = self.clock.instant();
        let result = commit
            .instrument(tracing::info_span!("store.commit", operation))
            .await;
        let took = self.clock.instant().saturating_duration_since(started);
        self.store_duration
            .record(took.as_secs_f64(), &[KeyValue::new("operation", operation)]);
        result
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, String> {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .map_err(|e| e.to_string())
    }

    /// Pushes what is pending to the OTLP collector and stops the readers.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing metrics");
        }
    }
}
