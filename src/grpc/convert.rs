//! Conversions between the generated protobuf types and the broker's types.

use std::collections::HashMap;

use bytes::Bytes;

use crate::broker::Record;
use crate::broker::{
    ConsumedRecord, GroupPartition, PartitionDescription, Position, ProduceRecord, RecordAck,
    StartPosition, TopicConfig, TopicDescription,
};
use crate::proto as pb;

pub fn producer_record(r: pb::ProducerRecord) -> ProduceRecord {
    ProduceRecord {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().collect(),
        timestamp: r.timestamp_ns,
        partition: r.partition,
    }
}

pub fn producer_records(rs: Vec<pb::ProducerRecord>) -> Vec<ProduceRecord> {
    rs.into_iter().map(producer_record).collect()
}

pub fn ack(a: RecordAck) -> pb::RecordAck {
    pb::RecordAck {
        partition: a.partition,
        offset: a.offset,
    }
}

pub fn acks(a: Vec<RecordAck>) -> Vec<pb::RecordAck> {
    a.into_iter().map(ack).collect()
}

fn headers(h: Vec<(String, Bytes)>) -> HashMap<String, Bytes> {
    h.into_iter().collect()
}

pub fn record(partition: u32, r: Record) -> pb::Record {
    pb::Record {
        partition,
        offset: r.offset,
        timestamp_ns: r.timestamp,
        key: r.key,
        value: r.value,
        headers: headers(r.headers),
    }
}

pub fn consumed(rs: Vec<ConsumedRecord>) -> Vec<pb::Record> {
    rs.into_iter()
        .map(|c| record(c.partition, c.record))
        .collect()
}

pub fn start_position(p: pb::StartPosition) -> StartPosition {
    match p {
        pb::StartPosition::Earliest => StartPosition::Earliest,
        pb::StartPosition::Latest => StartPosition::Latest,
    }
}

/// `None` when no target is set.
pub fn position(p: Option<pb::Position>) -> Option<Position> {
    Some(match p?.target? {
        pb::position::Target::Earliest(_) => Position::Earliest,
        pb::position::Target::Latest(_) => Position::Latest,
        pb::position::Target::Offset(o) => Position::Offset(o),
        pb::position::Target::TimestampNs(t) => Position::Timestamp(t),
    })
}

/// # Errors
/// `InvalidArgument` for a compression this broker does not know.
pub fn topic_config(c: Option<pb::TopicConfig>) -> Result<TopicConfig, crate::broker::BrokerError> {
    let c = c.unwrap_or_default();
    Ok(TopicConfig {
        partitions: c.partitions,
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        compression: compression_from_pb(c.compression)?,
    })
}

/// formatv2: the identity of an idempotent produce.
///
/// # Errors
/// `InvalidArgument` for an epoch outside 0..=32767.
pub fn producer_identity(
    p: Option<pb::IdempotentProduce>,
) -> Result<Option<crate::broker::ProducerIdentity>, crate::broker::BrokerError> {
    let Some(p) = p else { return Ok(None) };
    let producer_epoch = i16::try_from(p.producer_epoch)
        .ok()
        .filter(|e| *e >= 0)
        .ok_or_else(|| {
            crate::broker::BrokerError::InvalidArgument(format!(
                "producer epoch {} is out of range (0 to 32767)",
                p.producer_epoch
            ))
        })?;
    Ok(Some(crate::broker::ProducerIdentity {
        producer_id: p.producer_id,
        producer_epoch,
        sequences: p.sequences.into_iter().collect(),
    }))
}

/// formatv2: the topic's on-disk compression from its proto enum value.
///
/// # Errors
/// `InvalidArgument` for a value outside the enum.
pub fn compression_from_pb(
    value: i32,
) -> Result<crate::storage::batch::Compression, crate::broker::BrokerError> {
    use crate::storage::batch::Compression;
    match pb::Compression::try_from(value) {
        Ok(pb::Compression::None) => Ok(Compression::None),
        Ok(pb::Compression::Lz4) => Ok(Compression::Lz4),
        Ok(pb::Compression::Zstd) => Ok(Compression::Zstd),
        Err(_) => Err(crate::broker::BrokerError::InvalidArgument(format!(
            "unknown compression {value} (0 none, 1 lz4, 2 zstd)"
        ))),
    }
}

/// formatv2: the proto enum value of a topic's compression.
pub fn compression_to_pb(c: crate::storage::batch::Compression) -> i32 {
    use crate::storage::batch::Compression;
    match c {
        Compression::None => pb::Compression::None as i32,
        Compression::Lz4 => pb::Compression::Lz4 as i32,
        Compression::Zstd => pb::Compression::Zstd as i32,
    }
}

fn partition(p: PartitionDescription) -> pb::PartitionDescription {
    pb::PartitionDescription {
        partition: p.partition,
        log_start_offset: p.log_start,
        log_end_offset: p.log_end,
        size_bytes: p.size_bytes,
        segments: p.segments as u32,
        read_only: p.read_only,
    }
}

pub fn topic(t: TopicDescription) -> pb::TopicDescription {
    pb::TopicDescription {
        name: t.name,
        config: Some(pb::TopicConfig {
            partitions: t.config.partitions,
            retention_ms: t.config.retention_ms,
            retention_bytes: t.config.retention_bytes,
            compression: compression_to_pb(t.config.compression),
        }),
        partitions: t.partitions.into_iter().map(partition).collect(),
    }
}

pub fn group_partition(g: GroupPartition) -> pb::GroupPartition {
    pb::GroupPartition {
        topic: g.topic,
        partition: g.partition,
        committed_offset: g.committed,
        log_end_offset: g.log_end,
        lag: g.lag,
    }
}

pub fn offsets(o: &[pb::PartitionOffset]) -> Vec<(u32, u64)> {
    o.iter().map(|p| (p.partition, p.offset)).collect()
}

pub fn partition_offsets(o: Vec<(u32, u64)>) -> Vec<pb::PartitionOffset> {
    o.into_iter()
        .map(|(partition, offset)| pb::PartitionOffset { partition, offset })
        .collect()
}

/// The member a call carries (groups, issue 13): none when the member id is empty.
pub fn member(id: String, epoch: u64) -> Option<crate::broker::MemberRef> {
    (!id.is_empty()).then_some(crate::broker::MemberRef { id, epoch })
}
