//! Health and readiness, evaluated from the broker and the server status (transport-free: the
//! HTTP layer serialises the report, the metrics turn it into gauges).
//!
//! Components, as the original named them: `storage` (read-only partitions make it unhealthy),
//! `batcher` (a slow last fsync makes it degraded), `buffer` (ring buffers), `grpc_server`,
//! `tcp_server` (the legacy listener) and `http_server` (each: down when enabled but not serving,
//! "disabled" when turned off, degraded while at its connection limit, when new connections are
//! refused). The overall status is the worst component; only "unhealthy" turns `/health` into 503.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::{ListenerState, ListenerStatus, ServerStatus};
use crate::broker::{Broker, Durability, PartitionSnapshot, now_ns};
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
    let partitions = broker.partition_snapshots();
    let mut components = BTreeMap::new();
    components.insert("storage", component(storage(broker, &partitions)));
    components.insert("batcher", component(batcher(broker, &partitions)));
    components.insert("buffer", component(buffer(broker, &partitions)));
    components.insert("grpc_server", component(listener(&status.grpc)));
    components.insert("tcp_server", component(listener(&status.legacy)));
    components.insert("http_server", component(listener(&status.http)));
    // replication (issue 17): role, term and leader; degraded while not ready.
    if let Some(r) = broker.cluster_readiness() {
        let health = if r.not_ready.is_some() {
            Health::Degraded
        } else {
            Health::Healthy
        };
        components.insert(
            "cluster",
            component((health, serde_json::to_value(&r).unwrap_or_default())),
        );
    }
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
/// The reason: recovery running, the broker draining or stopping, a read-only partition, or an enabled
/// listener that is not serving.
pub fn readiness(broker: &Broker, status: &ServerStatus) -> Result<(), String> {
    if status.is_recovering() {
        return Err("recovering the data directory".into());
    }
    if broker.is_draining() {
        return Err("shutting down".into());
    }
    if let Some(f) = broker.failed_partitions().first() {
        return Err(format!(
            "partition {}/{} is read-only after a storage failure",
            f.topic, f.partition
        ));
    }
    // replication (issue 17): a cluster node without a leader, or behind it, is not ready.
    if let Some(why) = broker.cluster_readiness().and_then(|r| r.not_ready) {
        return Err(why);
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

fn storage(broker: &Broker, partitions: &[PartitionSnapshot]) -> (Health, Value) {
    let failed: Vec<Value> = partitions
        .iter()
        .filter_map(|p| {
            let reason = p.failure.as_ref()?;
            Some(json!({"topic": p.topic, "partition": p.partition, "reason": reason}))
        })
        .collect();
    let size: u64 = partitions.iter().map(|p| p.size_bytes).sum();
    let segments: usize = partitions.iter().map(|p| p.segments).sum();
    let damage = damage_report(broker, partitions);
    let health = if !failed.is_empty() {
        Health::Unhealthy
    } else if !damage.is_empty() {
        Health::Degraded
    } else {
        Health::Healthy
    };
    let damaged: Vec<Value> = partitions
        .iter()
        .filter(|p| !p.damaged.is_empty())
        .map(|p| {
            let ranges: Vec<Value> = p
                .damaged
                .iter()
                .map(|r| json!({"first": r.start, "last": r.end - 1}))
                .collect();
            json!({"topic": p.topic, "partition": p.partition, "damaged_offsets": ranges})
        })
        .collect();
    let offline: Vec<Value> = broker
        .offline_topics()
        .into_iter()
        .map(|(topic, reason)| json!({"topic": topic, "reason": reason}))
        .collect();
    let groups: Vec<Value> = broker
        .damaged_groups()
        .into_iter()
        .map(|(group, reason)| json!({"group": group, "reason": reason}))
        .collect();
    let details = json!({
        "topics": broker.list_topics().len(),
        "partitions": partitions.len(),
        "segments": segments,
        "size_bytes": size,
        "read_only_partitions": failed,
        "damaged_partitions": damaged,
        "offline_topics": offline,
        "damaged_groups": groups,
        "accepting_writes": !broker.shutdown_token().is_cancelled(),
    });
    (health, details)
}

/// What is damaged on disk, one sentence each: partitions with unreadable offsets, topics that
/// could not be opened, groups whose offsets could not be read. None of it stops the broker from
/// serving everything else, so it degrades health and is listed by readiness without failing it:
/// taking the broker out of rotation would turn one bad record into an outage.
pub fn damage_report(broker: &Broker, partitions: &[PartitionSnapshot]) -> Vec<String> {
    let mut out = Vec::new();
    for p in partitions {
        for r in &p.damaged {
            out.push(format!(
                "partition {}/{} has damaged records at offsets {} to {} (reads of them fail \
                 with DATA_LOSS; the rest is readable)",
                p.topic,
                p.partition,
                r.start,
                r.end - 1
            ));
        }
    }
    for (topic, reason) in broker.offline_topics() {
        out.push(format!("topic {topic} is offline: {reason}"));
    }
    for (group, _) in broker.damaged_groups() {
        out.push(format!(
            "the committed offsets of group {group} were damaged and must be reset"
        ));
    }
    out
}

fn batcher(broker: &Broker, partitions: &[PartitionSnapshot]) -> (Health, Value) {
    let (mut batches, mut records, mut fsyncs) = (0u64, 0u64, 0u64);
    // The partition flushed most recently tells the last flush time and fsync latency.
    let mut last: Option<(i64, Duration)> = None;
    let mut slowest_recent_fsync = Duration::ZERO;
    for p in partitions {
        let w = &p.writes;
        batches += w.batches;
        records += w.records;
        fsyncs += w.fsyncs;
        slowest_recent_fsync = slowest_recent_fsync.max(w.last_fsync);
        if let Some(at) = w.last_flush_unix_ns
            && last.is_none_or(|(t, _)| at > t)
        {
            last = Some((at, w.last_fsync));
        }
    }
    let durability = match broker.config().durability {
        Durability::Fsync => "fsync".to_string(),
        Durability::Interval(p) => format!("interval ({} ms)", p.as_millis()),
    };
    let health = if slowest_recent_fsync > SLOW_FSYNC {
        Health::Degraded
    } else {
        Health::Healthy
    };
    let details = json!({
        "durability": durability,
        "batches": batches,
        "records": records,
        "fsyncs": fsyncs,
        "last_flush": last.map(|(t, _)| format_unix_ns(t)),
        "last_fsync_ms": last.map(|(_, d)| millis(d)),
        "slowest_last_fsync_ms": millis(slowest_recent_fsync),
    });
    (health, details)
}

/// Milliseconds with microsecond precision, as the original reported fsync times.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn buffer(broker: &Broker, partitions: &[PartitionSnapshot]) -> (Health, Value) {
    let records: usize = partitions.iter().map(|p| p.ring_records).sum();
    let details = json!({
        "ring_buffer_records": records,
        "partitions": partitions.len(),
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
