//! The observable series: broker state read at scrape time from every broker registered with
//! [`super::observe_broker`]. Nothing here runs on the produce path.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::live_sources;
use crate::broker::{GroupPartition, PartitionSnapshot};
use crate::status::health::{self, Health};

pub(super) fn register(meter: &Meter) {
    partition_counter(
        meter,
        "obelisk_batch_flushes",
        "Batches written by a partition's batcher (one write each)",
        |s| s.writes.batches,
    );
    partition_counter(
        meter,
        "obelisk_disk_writes",
        "Write calls to a partition log (one per batch)",
        |s| s.writes.batches,
    );
    partition_counter(
        meter,
        "obelisk_disk_write_bytes",
        "Bytes appended to a partition log (framed records)",
        |s| s.writes.bytes,
    );
    partition_counter(
        meter,
        "obelisk_fsyncs",
        "fdatasync calls on a partition log",
        |s| s.writes.fsyncs,
    );
    partition_gauge(
        meter,
        "obelisk_log_size_bytes",
        "Bytes of a partition log on disk (all segments)",
        |s| s.size_bytes,
    );
    partition_gauge(
        meter,
        "obelisk_log_segments",
        "Segments of a partition log",
        |s| s.segments as u64,
    );
    partition_gauge(
        meter,
        "obelisk_log_start_offset",
        "First offset still stored in a partition (after retention)",
        |s| s.log_start,
    );
    partition_gauge(
        meter,
        "obelisk_log_end_offset",
        "Next offset of a partition: the end of what has been acknowledged",
        |s| s.log_end,
    );
    partition_gauge(
        meter,
        "obelisk_partition_read_only",
        "1 when a partition refuses writes after a storage failure",
        |s| u64::from(s.failure.is_some()),
    );
    partition_gauge(
        meter,
        "obelisk_partition_damaged_offsets",
        "Offsets of a partition found damaged on disk when it was opened (reads of them fail with DATA_LOSS)",
        |s| s.damaged.iter().map(|r| r.end - r.start).sum(),
    );
    meter
        .u64_observable_gauge("obelisk_buffer_messages")
        .with_description("Records held in the in-memory ring buffers, by topic")
        .with_callback(|o| {
            for (broker, _) in live_sources() {
                let mut per_topic: BTreeMap<String, u64> = BTreeMap::new();
                for s in broker.partition_snapshots() {
                    *per_topic.entry(s.topic).or_default() += s.ring_records as u64;
                }
                for (topic, n) in per_topic {
                    o.observe(n, &[KeyValue::new("topic", topic)]);
                }
            }
        })
        .build();
    group_gauge(
        meter,
        "obelisk_consumer_committed_offset",
        "A consumer group's committed (next) offset",
        |p| p.committed,
    );
    group_gauge(
        meter,
        "obelisk_consumer_lag_messages",
        "Records between a group's committed offset and the log end",
        |p| p.lag,
    );
    meter
        .f64_observable_gauge("obelisk_health_status")
        .with_description("Overall health: 1 healthy, 0.5 degraded, 0 unhealthy")
        .with_callback(|o| {
            for (broker, status) in live_sources() {
                if let Some(status) = status {
                    o.observe(score(health::evaluate(&broker, &status).status), &[]);
                }
            }
        })
        .build();
    meter
        .f64_observable_gauge("obelisk_component_health")
        .with_description(
            "Health by component: 1 healthy, 0.5 degraded, 0 unhealthy (disabled ones omitted)",
        )
        .with_callback(|o| {
            for (broker, status) in live_sources() {
                let Some(status) = status else { continue };
                for (name, c) in health::evaluate(&broker, &status).components {
                    if c.status != Health::Disabled {
                        o.observe(score(c.status), &[KeyValue::new("component", name)]);
                    }
                }
            }
        })
        .build();
}

fn score(h: Health) -> f64 {
    match h {
        Health::Healthy | Health::Disabled => 1.0,
        Health::Degraded => 0.5,
        Health::Unhealthy => 0.0,
    }
}

fn partition_labels(s: PartitionSnapshot) -> [KeyValue; 2] {
    [
        KeyValue::new("topic", s.topic),
        KeyValue::new("partition", i64::from(s.partition)),
    ]
}

/// Reports `read` of every partition of every live broker.
fn observe_partitions(
    o: &dyn opentelemetry::metrics::AsyncInstrument<u64>,
    read: fn(&PartitionSnapshot) -> u64,
) {
    for (broker, _) in live_sources() {
        for s in broker.partition_snapshots() {
            o.observe(read(&s), &partition_labels(s));
        }
    }
}

fn partition_counter(
    meter: &Meter,
    name: &'static str,
    help: &'static str,
    read: fn(&PartitionSnapshot) -> u64,
) {
    meter
        .u64_observable_counter(name)
        .with_description(help)
        .with_callback(move |o| observe_partitions(o, read))
        .build();
}

fn partition_gauge(
    meter: &Meter,
    name: &'static str,
    help: &'static str,
    read: fn(&PartitionSnapshot) -> u64,
) {
    meter
        .u64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |o| observe_partitions(o, read))
        .build();
}

fn group_gauge(
    meter: &Meter,
    name: &'static str,
    help: &'static str,
    read: fn(&GroupPartition) -> u64,
) {
    meter
        .u64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |o| {
            for (broker, _) in live_sources() {
                for group in broker.list_groups() {
                    let Ok(parts) = broker.describe_group(&group) else {
                        continue;
                    };
                    for p in parts {
                        o.observe(
                            read(&p),
                            &[
                                KeyValue::new("group", group.clone()),
                                KeyValue::new("topic", p.topic),
                                KeyValue::new("partition", i64::from(p.partition)),
                            ],
                        );
                    }
                }
            }
        })
        .build();
}
