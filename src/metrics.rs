//! Metrics: OpenTelemetry instruments, exported in the Prometheus text format by
//! `opentelemetry-prometheus` into a private `prometheus::Registry`.
//!
//! Two kinds of series:
//! - **Events** (requests, produces, connections, batches, fsyncs) are recorded by synchronous
//!   instruments: the transports call the helpers below, and the core reports through the
//!   [`BrokerEvents`] hook that [`observe_broker`] gives each broker (the core never calls here).
//! - **State** (log sizes, offsets, consumer lag, ring buffers, health, per-partition write
//!   counters) is read at scrape time by observable instruments from every broker registered
//!   with [`observe_broker`]; nothing is recorded on the hot path for it.
//!
//! [`metrics()`] initialises lazily, so transports and tests can record without any setup. Labels
//! are bounded: topic, partition, group, protocol, call, kind, component — never keys or client
//! addresses. `docs/http.md` lists every series with its type and labels.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};

use crate::broker::{Broker, BrokerError, BrokerEvents, WeakBroker};
use crate::status::ServerStatus;
use crate::sync::{lock, read, write};

mod cluster; // replication (issue 17)
mod groups;
mod observed;
mod shared; // shared groups (issue 14)

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label value for produces whose topic does not exist (bad or unknown names never become labels).
pub const UNKNOWN_TOPIC: &str = "<none>";

/// Topic label values cached; beyond this the cache is cleared (topics come and go).
const TOPIC_LABEL_CACHE: usize = 10_000;

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// The instruments recorded by events. Reach them through [`metrics()`] or the helpers.
pub struct Metrics {
    registry: prometheus::Registry,
    /// Kept alive: dropping the provider would shut the pipeline down.
    _provider: SdkMeterProvider,
    pub messages_received: Counter<u64>,
    pub messages_stored: Counter<u64>,
    pub messages_failed: Counter<u64>,
    pub batch_size: Histogram<u64>,
    pub flush_duration: Histogram<f64>,
    pub records_per_fsync: Histogram<u64>,
    pub fsync_duration: Histogram<f64>,
    pub storage_failures: Counter<u64>,
    pub active_connections: UpDownCounter<i64>,
    pub connections: Counter<u64>,
    pub connection_errors: Counter<u64>,
    pub request_duration: Histogram<f64>,
    pub errors: Counter<u64>,
    pub active_subscriptions: UpDownCounter<i64>,
    /// groups (issue 13): time from a membership change to every partition with its owner.
    pub rebalance_duration: Histogram<f64>,
    /// `topic=<name>` label values, shared so a produce does not allocate one.
    topic_labels: RwLock<HashMap<String, KeyValue>>,
    // security:
    /// Requests refused by the ACLs, by operation and resource type.
    pub access_denied: Counter<u64>,
    /// Requests without valid credentials while authentication is on.
    pub unauthenticated: Counter<u64>,
}

/// The process-wide metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The current values of every series, in the Prometheus text exposition format
/// ([`CONTENT_TYPE`]).
pub fn render() -> String {
    let families = metrics().registry.gather();
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Metrics {
    fn new() -> Self {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_units()
            .build();
        let mut provider = SdkMeterProvider::builder().with_resource(
            Resource::builder_empty()
                .with_service_name("obelisk")
                .build(),
        );
        match exporter {
            Ok(exporter) => provider = provider.with_reader(exporter),
            // Instruments still work (as no-ops for export); the page says why it is empty.
            Err(e) => tracing::error!(error = %e, "the Prometheus exporter could not be built"),
        }
        let provider = provider.build();
        let meter = provider.meter("obelisk");
        let counter = |name: &'static str, help: &'static str| {
            meter.u64_counter(name).with_description(help).build()
        };
        let metrics = Self {
            messages_received: counter(
                "obelisk_messages_received",
                "Records received by produce requests, by topic (<none> when the topic does not exist)",
            ),
            messages_stored: counter(
                "obelisk_messages_stored",
                "Records acknowledged (durable per the durability mode), by topic",
            ),
            messages_failed: counter(
                "obelisk_messages_failed",
                "Records of produce requests that failed, by topic and error kind",
            ),
            batch_size: meter
                .u64_histogram("obelisk_batch_size")
                .with_description("Records per batch written by a partition's batcher")
                .with_boundaries(COUNT_BUCKETS.to_vec())
                .build(),
            flush_duration: meter
                .f64_histogram("obelisk_flush_duration_seconds")
                .with_description(
                    "Time to write a batch and make it durable (fsync mode: write + fdatasync)",
                )
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            records_per_fsync: meter
                .u64_histogram("obelisk_records_per_fsync")
                .with_description("Records made durable by one fdatasync")
                .with_boundaries(COUNT_BUCKETS.to_vec())
                .build(),
            fsync_duration: meter
                .f64_histogram("obelisk_fsync_duration_seconds")
                .with_description("Duration of one fdatasync of a partition log")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            storage_failures: counter(
                "obelisk_storage_failures",
                "Partitions turned read-only by a failed write or fsync",
            ),
            active_connections: meter
                .i64_up_down_counter("obelisk_active_connections")
                .with_description("Open client connections, by protocol")
                .build(),
            connections: counter(
                "obelisk_connections",
                "Client connections accepted, by protocol",
            ),
            connection_errors: counter(
                "obelisk_connection_errors",
                "Connection-level errors, by protocol and error type",
            ),
            request_duration: meter
                .f64_histogram("obelisk_request_duration_seconds")
                .with_description("Time to answer a request, by protocol and call")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            errors: counter(
                "obelisk_errors",
                "Requests answered with an error, by protocol and kind",
            ),
            active_subscriptions: meter
                .i64_up_down_counter("obelisk_active_subscriptions")
                .with_description("Open subscriptions (live record streams), by topic")
                .build(),
            rebalance_duration: meter
                .f64_histogram("obelisk_group_rebalance_duration_seconds")
                .with_description(
                    "Time from a group's membership change to every partition with its new owner, by group",
                )
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            topic_labels: RwLock::new(HashMap::new()),
            access_denied: counter(
                "obelisk_access_denied",
                "Requests refused by the ACLs, by operation and resource type",
            ),
            unauthenticated: counter(
                "obelisk_unauthenticated",
                "Requests without valid credentials while authentication is on",
            ),
            registry,
            _provider: provider,
        };
        observed::register(&meter);
        groups::register(&meter);
        shared::register(&meter);
        cluster::register(&meter);
        metrics
    }

    /// The `topic` label for `name`, cached.
    fn topic_label(&self, name: &str) -> KeyValue {
        if let Some(kv) = read(&self.topic_labels).get(name) {
            return kv.clone();
        }
        let kv = KeyValue::new("topic", Arc::<str>::from(name));
        let mut cache = write(&self.topic_labels);
        if cache.len() >= TOPIC_LABEL_CACHE {
            cache.clear();
        }
        cache.insert(name.to_string(), kv.clone());
        kv
    }
}

/// Records one request answered by a transport: its latency in
/// `obelisk_request_duration_seconds{protocol,call}`, and on error `obelisk_errors_total`.
/// `protocol` is `grpc`, `legacy` or `http`; `call` a fixed name such as `produce`.
pub fn record_request(
    protocol: &'static str,
    call: &'static str,
    started: Instant,
    outcome: Result<(), &BrokerError>,
) {
    record_request_kind(
        protocol,
        call,
        started,
        outcome.err().map(BrokerError::kind),
    );
}

/// As [`record_request`], for errors that are not a [`BrokerError`] (malformed input, timeouts):
/// `error_kind` is a fixed snake_case name.
pub fn record_request_kind(
    protocol: &'static str,
    call: &'static str,
    started: Instant,
    error_kind: Option<&'static str>,
) {
    let m = metrics();
    m.request_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("protocol", protocol),
            KeyValue::new("call", call),
        ],
    );
    if let Some(kind) = error_kind {
        m.errors.add(
            1,
            &[
                KeyValue::new("protocol", protocol),
                KeyValue::new("kind", kind),
            ],
        );
    }
}

/// Counts a connection accepted by a transport. Pair it with [`connection_closed`] (or use
/// [`ServerStatus::connection_opened`], whose guard does both and also feeds `/health`).
pub fn connection_opened(protocol: &'static str) {
    let m = metrics();
    let attrs = [KeyValue::new("protocol", protocol)];
    m.connections.add(1, &attrs);
    m.active_connections.add(1, &attrs);
}

/// Counts a connection closed (see [`connection_opened`]).
pub fn connection_closed(protocol: &'static str) {
    metrics()
        .active_connections
        .add(-1, &[KeyValue::new("protocol", protocol)]);
}

/// Counts a connection-level error (`error_type`: a fixed name such as `frame_too_large`).
pub fn connection_error(protocol: &'static str, error_type: &'static str) {
    metrics().connection_errors.add(
        1,
        &[
            KeyValue::new("protocol", protocol),
            KeyValue::new("error_type", error_type),
        ],
    );
}

/// The metrics' side of [`BrokerEvents`]: what the core reports, recorded into the instruments.
/// [`observe_broker`] hands one to each broker.
struct Recorder;

impl BrokerEvents for Recorder {
    /// `records` received, then stored or failed; labelled `<none>` when the topic does not exist.
    fn produced(&self, topic: Option<&str>, records: u64, outcome: Result<(), &BrokerError>) {
        let m = metrics();
        let topic = match topic {
            Some(name) => m.topic_label(name),
            None => KeyValue::new("topic", UNKNOWN_TOPIC),
        };
        m.messages_received
            .add(records, std::slice::from_ref(&topic));
        match outcome {
            Ok(()) => m.messages_stored.add(records, &[topic]),
            Err(e) => m
                .messages_failed
                .add(records, &[topic, KeyValue::new("reason", e.kind())]),
        }
    }

    fn subscription_opened(&self, topic: &str) {
        let m = metrics();
        m.active_subscriptions.add(1, &[m.topic_label(topic)]);
    }

    fn subscription_closed(&self, topic: &str) {
        let m = metrics();
        m.active_subscriptions.add(-1, &[m.topic_label(topic)]);
    }

    fn batch_flushed(&self, records: u64, took: Duration) {
        let m = metrics();
        m.batch_size.record(records, &[]);
        m.flush_duration.record(took.as_secs_f64(), &[]);
    }

    fn fsync_done(&self, records: u64, took: Duration) {
        let m = metrics();
        m.records_per_fsync.record(records, &[]);
        m.fsync_duration.record(took.as_secs_f64(), &[]);
    }

    fn storage_failed(&self) {
        metrics().storage_failures.add(1, &[]);
    }

    fn access_denied(
        &self,
        operation: crate::auth::Operation,
        resource: crate::auth::ResourceKind,
    ) {
        metrics().access_denied.add(
            1,
            &[
                KeyValue::new("operation", operation.as_str()),
                KeyValue::new("resource", resource.as_str()),
            ],
        );
    }

    fn unauthenticated(&self) {
        metrics().unauthenticated.add(1, &[]);
    }
    fn rebalance_completed(&self, group: &str, took: Duration) {
        metrics().rebalance_duration.record(
            took.as_secs_f64(),
            &[KeyValue::new("group", group.to_string())],
        );
    }
}

/// A broker (and the status of the server around it) whose state the observable series report.
struct Source {
    broker: WeakBroker,
    status: Weak<ServerStatus>,
}

fn sources() -> &'static Mutex<Vec<Source>> {
    static SOURCES: OnceLock<Mutex<Vec<Source>>> = OnceLock::new();
    SOURCES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Records `broker`'s events (produces, subscriptions, batches, fsyncs, failures) and reports its
/// state (log sizes, offsets, lag, buffers, health) in the metrics until the broker is dropped.
/// Idempotent per broker; the HTTP state calls it. A process normally has one broker; with several
/// (tests), series of equal labels are reported once, by the last one.
pub fn observe_broker(broker: &Broker, status: &Arc<ServerStatus>) {
    metrics();
    // A broker keeps its first observer; every observer set here is the same recorder.
    let _ = broker.observe(Arc::new(Recorder));
    let weak = broker.downgrade();
    let mut all = lock(sources());
    all.retain(|s| s.broker.upgrade().is_some() && !s.broker.ptr_eq(&weak));
    all.push(Source {
        broker: weak,
        status: Arc::downgrade(status),
    });
}

/// The brokers still alive, with their server status when it is still alive.
fn live_sources() -> Vec<(Broker, Option<Arc<ServerStatus>>)> {
    let mut all = lock(sources());
    all.retain(|s| s.broker.upgrade().is_some());
    all.iter()
        .filter_map(|s| Some((s.broker.upgrade()?, s.status.upgrade())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_setup_and_renders_text() {
        record_request_kind(
            "http",
            "unit_test_call",
            Instant::now(),
            Some("unit_test_kind"),
        );
        connection_opened("unit_test");
        connection_closed("unit_test");
        let page = render();
        assert!(
            page.contains("# TYPE obelisk_request_duration_seconds histogram"),
            "{page}"
        );
        assert!(
            page.contains(r#"obelisk_errors_total{kind="unit_test_kind",protocol="http"} 1"#),
            "{page}"
        );
        assert!(
            page.contains(r#"obelisk_connections_total{protocol="unit_test"} 1"#),
            "{page}"
        );
        assert!(
            page.contains(r#"obelisk_active_connections{protocol="unit_test"} 0"#),
            "{page}"
        );
        assert!(!page.contains("otel_scope"), "{page}");
    }
}
