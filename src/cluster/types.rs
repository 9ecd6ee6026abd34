//! The cluster's Raft types: openraft's type configuration, the commands every node applies in
//! log order, and their replies.

use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::broker::BrokerError;
pub use crate::broker::meta::MetaWrite;
use crate::storage::{Record, TopicConfig};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for the cluster: node ids are the operator's `--node-id`, nodes are
    /// known by their node-to-node address.
    pub TypeConfig:
        D = Command,
        R = CommandReply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// A write every node applies, in log order, once committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    CreateTopic {
        name: String,
        config: TopicConfig,
    },
    DeleteTopic {
        name: String,
    },
    /// Records for some partitions of a topic, each share stored as one batch.
    Produce {
        topic: String,
        shares: Vec<WireShare>,
    },
    /// An idempotent producer grant (a new id, or the next epoch of `existing`).
    InitProducer {
        existing: Option<i64>,
    },
    // ==== cluster metadata (issue 17, cluster-meta) ====
    /// A change of committed offsets, groups or ACLs (`broker::meta`).
    Meta(MetaWrite),
    // ==== end cluster metadata ====
}

/// One partition's records of a `Produce`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireShare {
    pub partition: u32,
    pub records: Vec<WireRecord>,
    /// The idempotent producer's id, epoch and first sequence number, if any.
    pub producer: Option<(i64, i16, i32)>,
}

/// The outcome of applying a command (the same on every node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandReply {
    Done,
    /// The first offset of each share of a `Produce`.
    Produced(Vec<u64>),
    /// The producer id and epoch of an `InitProducer`.
    Granted(i64, i16),
    /// The command did not apply (the same on every node), and why.
    Refused(Refusal),
    /// cluster metadata: whether a `Meta` write changed anything (on the leader).
    Changed(bool),
}

/// Why a command did not apply: what the proposer's caller gets back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Refusal {
    TopicNotFound(String),
    TopicExists(String),
    InvalidArgument(String),
    Unavailable(String),
    ProducerSequence {
        message: String,
        expected: Option<i32>,
    },
    // ==== cluster metadata (issue 17, cluster-meta) ====
    /// Refused by the leader's check of a forwarded `Meta` write.
    GroupNotFound(String),
    GroupHasMembers {
        group: String,
        what: String,
    },
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    Fenced {
        group: String,
        reason: String,
    },
    // ==== end cluster metadata ====
}

impl From<Refusal> for BrokerError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::TopicNotFound(t) => Self::TopicNotFound(t),
            Refusal::TopicExists(t) => Self::TopicExists(t),
            Refusal::InvalidArgument(m) => Self::InvalidArgument(m),
            Refusal::Unavailable(m) => Self::Unavailable(m),
            Refusal::ProducerSequence { message, expected } => {
                Self::ProducerSequence { message, expected }
            }
            Refusal::GroupNotFound(g) => Self::GroupNotFound(g),
            Refusal::GroupHasMembers { group, what } => Self::GroupHasMembers { group, what },
            Refusal::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            } => Self::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            },
            Refusal::Fenced { group, reason } => Self::Fenced { group, reason },
        }
    }
}

impl Refusal {
    /// cluster metadata: the refusal a leader sends back for a check of a forwarded write
    /// that failed (kinds without their own variant travel as their message).
    pub fn from_broker(e: BrokerError) -> Self {
        match e {
            BrokerError::TopicNotFound(t) => Self::TopicNotFound(t),
            BrokerError::GroupNotFound(g) => Self::GroupNotFound(g),
            BrokerError::GroupHasMembers { group, what } => Self::GroupHasMembers { group, what },
            BrokerError::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            } => Self::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            },
            BrokerError::Fenced { group, reason } => Self::Fenced { group, reason },
            BrokerError::InvalidArgument(m) => Self::InvalidArgument(m),
            other @ (BrokerError::InvalidName { .. } | BrokerError::PermissionDenied(_)) => {
                Self::InvalidArgument(other.to_string())
            }
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A record as it travels in a Raft entry (offsets are given by the log it lands in).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRecord {
    pub timestamp: i64,
    pub key: WireBytes,
    pub value: WireBytes,
    pub headers: Vec<(String, WireBytes)>,
}

impl From<Record> for WireRecord {
    fn from(r: Record) -> Self {
        Self {
            timestamp: r.timestamp,
            key: WireBytes(r.key),
            value: WireBytes(r.value),
            headers: r
                .headers
                .into_iter()
                .map(|(n, v)| (n, WireBytes(v)))
                .collect(),
        }
    }
}

impl From<WireRecord> for Record {
    fn from(r: WireRecord) -> Self {
        Self {
            offset: 0,
            timestamp: r.timestamp,
            key: r.key.0,
            value: r.value.0,
            headers: r.headers.into_iter().map(|(n, v)| (n, v.0)).collect(),
        }
    }
}

/// Bytes serialized as one byte string (bincode: a length and the bytes), not a sequence of
/// numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireBytes(pub Bytes);

impl Serialize for WireBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for WireBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = WireBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<WireBytes, E> {
                Ok(WireBytes(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<WireBytes, E> {
                Ok(WireBytes(Bytes::from(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireBytes, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(WireBytes(Bytes::from(v)))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

/// bincode, the encoding of every Raft message and entry.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

/// # Errors
/// Bytes that are not a `T`.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_bincode_with_bytes_as_byte_strings() {
        let cmd = Command::Produce {
            topic: "t".into(),
            shares: vec![WireShare {
                partition: 2,
                records: vec![WireRecord {
                    timestamp: -5,
                    key: WireBytes(Bytes::from_static(b"k")),
                    value: WireBytes(Bytes::from(vec![7u8; 100])),
                    headers: vec![("h".into(), WireBytes(Bytes::from_static(b"v")))],
                }],
                producer: Some((1, 0, 5)),
            }],
        };
        let bytes = encode(&cmd).unwrap();
        // 100 value bytes, a few of framing: not 100 numbers.
        assert!(bytes.len() < 200, "{}", bytes.len());
        let Command::Produce { topic, shares } = decode::<Command>(&bytes).unwrap() else {
            panic!("not a produce");
        };
        assert_eq!(topic, "t");
        assert_eq!(
            (shares[0].partition, shares[0].producer),
            (2, Some((1, 0, 5)))
        );
        let r = &shares[0].records[0];
        assert_eq!((r.timestamp, &r.key.0[..]), (-5, &b"k"[..]));
        assert_eq!(r.value.0.len(), 100);
        assert_eq!(r.headers[0].1.0, Bytes::from_static(b"v"));
        assert!(decode::<Command>(&bytes[..bytes.len() - 1]).is_err());
    }
}
