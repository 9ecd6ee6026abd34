//! Health and readiness, evaluated from the broker and the server status (transport-free: the
//! HTTP layer serialises the report, the metrics turn it into gauges).
//!
//! Components, as the original named them: `storage` (read-only partitions make it unhealthy),
//! `batcher` (a slow last fsync makes it degraded), `buffer` (ring buffers), `grpc_server`,
//! `tcp_server` (the legacy listener) and `http_server` (each: down when enabled but not serving,
//! "disabled" when turned off, degraded while at its connection limit, when new connections are
//! refused). The overall status is the worst component; only "unhealthy" turns `/health` into 503.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::{ListenerState, ListenerStatus, ServerStatus};
use crate::broker::{Broker, Durability, now_ns};
use crate::rfc3339::{format_duration, format_unix_ns};

/// A last fsync slower than this makes the batcher "degraded".
pub const SLOW_FSYNC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Disabled,
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentHealth {
    pub status: Health,
    /// A JSON object of facts about the component.
    pub details: Value,
    pub last_check: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub total_components: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub unhealthy: usize,
    pub disabled: usize,
}

/// The `/health` body: the original's shape, plus `uptime_seconds` and `summary.disabled`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub status: Health,
    pub timestamp: String,
    pub uptime: String,
    pub uptime_seconds: f64,
    pub components: BTreeMap<&'static str, ComponentHealth>,
    pub summary: Summary,
}

/// Evaluates every component now.
pub fn evaluate(broker: &Broker, status: &ServerStatus) -> HealthReport {
    let now = format_unix_ns(now_ns());
    let component = |(status, details): (Health, Value)| ComponentHealth {
        status,
        details,
        last_check: now.clone(),
    };
    let cores = broker.partition_cores();
    let mut components = BTreeMap::new();
    components.insert("storage", component(storage(broker, &cores)));
    components.insert("batcher", component(batcher(broker, &cores)));
    components.insert("buffer", component(buffer(broker, &cores)));
    components.insert("grpc_server", component(listener(&status.grpc)));
    components.insert("tcp_server", component(listener(&status.legacy)));
    components.insert("http_server", component(listener(&status.http)));
    let mut summary = Summary {
        total_components: components.len(),
        ..Summary::default()
    };
    for c in components.values() {
        match c.status {
            Health::Disabled => summary.disabled += 1,
            Health::Healthy => summary.healthy += 1,
            Health::Degraded => summary.degraded += 1,
            Health::Unhealthy => summary.unhealthy += 1,
        }
    }
    let overall = components
        .values()
        .map(|c| c.status)
        .max()
        .map_or(Health::Healthy, |worst| worst.max(Health::Healthy));
    let uptime = status.uptime();
    HealthReport {
        status: overall,
        timestamp: now,
        uptime: format_duration(uptime),
        uptime_seconds: uptime.as_secs_f64(),
        components,
        summary,
    }
}

/// `Ok` when the server should take traffic; else why not.
///
/// # Errors
/// The reason: recovery running, the broker stopping, a read-only partition, or an enabled
/// listener that is not serving.
pub fn readiness(broker: &Broker, status: &ServerStatus) -> Result<(), String> {
    if status.is_recovering() {
        return Err("recovering the data directory".into());
    }
    if broker.shutdown_token().is_cancelled() {
        return Err("shutting down".into());
    }
    if let Some(f) = broker.failed_partitions().first() {
        return Err(format!(
            "partition {}/{} is read-only after a storage failure",
            f.topic, f.partition
        ));
    }
    for (name, l) in [
        ("grpc", &status.grpc),
        ("legacy tcp", &status.legacy),
        ("http", &status.http),
    ] {
        if l.state() == ListenerState::Down {
            return Err(format!("the {name} listener is not serving"));
        }
    }
    Ok(())
}

type Cores = [(String, std::sync::Arc<crate::storage::PartitionCore>)];

fn storage(broker: &Broker, cores: &Cores) -> (Health, Value) {
    let failed: Vec<Value> = broker
        .failed_partitions()
        .into_iter()
        .map(|f| json!({"topic": f.topic, "partition": f.partition, "reason": f.reason}))
        .collect();
    let (mut size, mut segments) = (0u64, 0usize);
    for (_, core) in cores {
        let (_, s, n) = core.log_summary();
        size += s;
        segments += n;
    }
    let health = if failed.is_empty() {
        Health::Healthy
    } else {
        Health::Unhealthy
    };
    let details = json!({
        "topics": broker.list_topics().len(),
        "partitions": cores.len(),
        "segments": segments,
        "size_bytes": size,
        "read_only_partitions": failed,
        "accepting_writes": !broker.shutdown_token().is_cancelled(),
    });
    (health, details)
}

fn batcher(broker: &Broker, cores: &Cores) -> (Health, Value) {
    let (mut batches, mut records, mut fsyncs) = (0u64, 0u64, 0u64);
    // The partition flushed most recently tells the last flush time and fsync latency.
    let mut last: Option<(u64, u64)> = None;
    let mut slowest_recent_fsync_us = 0u64;
    for (_, core) in cores {
        let s = &core.stats;
        batches += s.batches.load(Ordering::Relaxed);
        records += s.records.load(Ordering::Relaxed);
        fsyncs += s.fsyncs.load(Ordering::Relaxed);
        let at = s.last_flush_unix_ns.load(Ordering::Relaxed);
        let us = s.last_fsync_micros.load(Ordering::Relaxed);
        slowest_recent_fsync_us = slowest_recent_fsync_us.max(us);
        if at > 0 && last.is_none_or(|(t, _)| at > t) {
            last = Some((at, us));
        }
    }
    let durability = match broker.config().durability {
        Durability::Fsync => "fsync".to_string(),
        Durability::Interval(p) => format!("interval ({} ms)", p.as_millis()),
    };
    let health = if Duration::from_micros(slowest_recent_fsync_us) > SLOW_FSYNC {
        Health::Degraded
    } else {
        Health::Healthy
    };
    let details = json!({
        "durability": durability,
        "batches": batches,
        "records": records,
        "fsyncs": fsyncs,
        "last_flush": last.map(|(t, _)| format_unix_ns(t as i64)),
        "last_fsync_ms": last.map(|(_, us)| us as f64 / 1000.0),
        "slowest_last_fsync_ms": slowest_recent_fsync_us as f64 / 1000.0,
    });
    (health, details)
}

fn buffer(broker: &Broker, cores: &Cores) -> (Health, Value) {
    let records: usize = cores.iter().map(|(_, c)| c.ring_len()).sum();
    let details = json!({
        "ring_buffer_records": records,
        "partitions": cores.len(),
        "capacity_bytes_per_partition": broker.config().ring_buffer_bytes,
    });
    (Health::Healthy, details)
}

fn listener(l: &ListenerStatus) -> (Health, Value) {
    let at_limit = l.at_connection_limit();
    let (health, state) = match l.state() {
        ListenerState::Disabled => (Health::Disabled, "disabled"),
        ListenerState::Down => (Health::Unhealthy, "down"),
        ListenerState::Up if at_limit => (Health::Degraded, "at the connection limit"),
        ListenerState::Up => (Health::Healthy, "up"),
    };
    let details = json!({
        "state": state,
        "open_connections": l.open_connections(),
        "max_connections": l.max_connections(),
        "refused_connections": l.refused_connections(),
    });
    (health, details)
}
