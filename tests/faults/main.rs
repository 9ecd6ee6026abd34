//! Faults a single broker must survive, injected on purpose against the built binary: flipped
//! bytes, kill -9 during topic creation and deletion, damaged topic and group files, a full
//! filesystem, a low descriptor limit. After each: the broker starts, every acknowledged record
//! that is not physically damaged is readable at its original offset, no offset is reused, and
//! what was damaged is reported. (Connection faults are in `tests/faults_connections.rs`.)
//!
//! Rounds of the randomised tests default to a CI-sized number; `OBELISK_FAULT_ROUNDS` raises it
//! (`scripts/faults.sh` runs the long version).

mod child;
mod damage;
mod descriptors;
mod disk;
mod groups;
mod producers;
mod shared; // shared groups (issue 14)
#[path = "../faults_support/mod.rs"]
mod support;
mod topics;

use obelisk::client::BrokerClient;
use obelisk::proto as pb;
use tonic::transport::Channel;

pub type Grpc = BrokerClient<Channel>;

/// Rounds for a randomised test: `OBELISK_FAULT_ROUNDS` or `default`.
pub fn rounds(default: u64) -> u64 {
    std::env::var("OBELISK_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn create_topic(c: &mut Grpc, name: &str, partitions: u32) {
    c.create_topic(pb::CreateTopicRequest {
        name: name.into(),
        config: Some(pb::TopicConfig {
            partitions,
            retention_ms: 0,
            retention_bytes: 0,
            compression: 0,
        }),
    })
    .await
    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

/// Produces `values` to partition 0 of `topic` in one request; returns their offsets.
pub async fn produce_values(c: &mut Grpc, topic: &str, values: Vec<Vec<u8>>) -> Vec<u64> {
    try_produce(c, topic, values)
        .await
        .unwrap_or_else(|e| panic!("producing to {topic}: {e}"))
}

pub async fn try_produce(
    c: &mut Grpc,
    topic: &str,
    values: Vec<Vec<u8>>,
) -> Result<Vec<u64>, tonic::Status> {
    let records = values
        .into_iter()
        .map(|v| pb::ProducerRecord {
            value: v.into(),
            partition: Some(0),
            ..Default::default()
        })
        .collect();
    let acks = c
        .produce(pb::ProduceRequest {
            topic: topic.into(),
            records,
            idempotence: None,
        })
        .await?
        .into_inner()
        .acks;
    Ok(acks.iter().map(|a| a.offset).collect())
}

pub async fn try_fetch(
    c: &mut Grpc,
    topic: &str,
    partition: u32,
    offset: u64,
    max_records: u32,
) -> Result<Vec<pb::Record>, tonic::Status> {
    Ok(c.fetch(pb::FetchRequest {
        topic: topic.into(),
        partition,
        offset,
        max_records,
        max_bytes: 0,
        max_wait_ms: 0,
    })
    .await?
    .into_inner()
    .records)
}

pub async fn fetch(
    c: &mut Grpc,
    topic: &str,
    partition: u32,
    offset: u64,
    max_records: u32,
) -> Vec<pb::Record> {
    try_fetch(c, topic, partition, offset, max_records)
        .await
        .unwrap_or_else(|e| panic!("fetching {topic}/{partition} at {offset}: {e}"))
}

/// Reads `topic`/`partition` from `from` until `to` (exclusive), however many fetches it takes (a
/// fetch stops at a segment's end).
pub async fn read_range(
    c: &mut Grpc,
    topic: &str,
    partition: u32,
    from: u64,
    to: u64,
) -> Vec<pb::Record> {
    let mut out: Vec<pb::Record> = Vec::new();
    let mut next = from;
    while next < to {
        let got = fetch(c, topic, partition, next, 1000).await;
        let Some(last) = got.last() else {
            panic!("{topic}/{partition}: nothing to read at {next}, expected records up to {to}")
        };
        next = last.offset + 1;
        out.extend(got);
    }
    out.truncate(out.iter().take_while(|r| r.offset < to).count());
    out
}

pub async fn fetch_err(c: &mut Grpc, topic: &str, partition: u32, offset: u64) -> tonic::Status {
    match try_fetch(c, topic, partition, offset, 10).await {
        Ok(r) => panic!("fetching {topic}/{partition} at {offset} should fail, got {r:?}"),
        Err(e) => e,
    }
}

pub async fn commit(c: &mut Grpc, topic: &str, group: &str, partition: u32, offset: u64) {
    c.commit(pb::CommitRequest {
        topic: topic.into(),
        group: group.into(),
        offsets: vec![pb::PartitionOffset { partition, offset }],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("committing {group} on {topic}: {e}"));
}

pub async fn topic_names(c: &mut Grpc) -> Vec<String> {
    c.list_topics(pb::ListTopicsRequest {})
        .await
        .expect("list topics")
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect()
}

/// The segment logs of a partition directory, in offset order.
pub fn segment_logs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("partition directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}
