//! Request and response types of the broker's calls (transport-free).

use std::time::Duration;

use bytes::Bytes;

pub use crate::storage::record::{RECORD_OVERHEAD, encoded_len};
pub use crate::storage::{Record, TopicConfig};

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct ProduceRecord {
    pub key: Bytes,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
    /// Unix nanoseconds; `None` stamps the arrival time.
    pub timestamp: Option<i64>,
    /// Explicit partition; `None` chooses by key.
    pub partition: Option<u32>,
}

/// Where a produced record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAck {
    pub partition: u32,
    pub offset: u64,
}

/// A record read back, with its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: u32,
    pub record: Record,
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

/// An explicit position in every partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Position {
    Earliest,
    Latest,
    /// The same offset in every partition, clamped to each partition's range.
    Offset(u64),
    /// The first record at or after this Unix time (ns).
    Timestamp(i64),
}

/// Read limits shared by poll, fetch and subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

impl ReadLimits {
    pub const DEFAULT_MAX_RECORDS: usize = 500;
    pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
    /// Builds limits from protocol values where 0 means "default".
    pub fn from_wire(max_records: u32, max_bytes: u32, max_wait_ms: u32) -> Self {
        Self {
            max_records: if max_records == 0 {
                Self::DEFAULT_MAX_RECORDS
            } else {
                max_records as usize
            },
            max_bytes: if max_bytes == 0 {
                Self::DEFAULT_MAX_BYTES
            } else {
                max_bytes as usize
            },
            max_wait: Duration::from_millis(u64::from(max_wait_ms)),
        }
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self::from_wire(0, 0, 0)
    }
}

#[derive(Debug, Clone)]
pub struct PollRequest {
    pub topic: String,
    pub group: String,
    pub limits: ReadLimits,
    pub start_if_new: StartPosition,
    /// The member polling, for a group with members (fenced when it is not current).
    pub member: Option<crate::broker::MemberRef>,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub limits: ReadLimits,
}

#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub records: Vec<Record>,
    pub log_start: u64,
    pub log_end: u64,
}

#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    /// Group whose committed offsets are the start when `start` is `None`.
    pub group: Option<String>,
    pub start: Option<Position>,
    pub max_records_per_batch: usize,
    /// The member subscribing, for a group with members: the subscription reads the member's
    /// partitions and follows its assignment (revoked ones stop; new ones start at the group's
    /// committed offsets).
    pub member: Option<crate::broker::MemberRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub log_start: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: usize,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    pub log_end: u64,
    pub lag: u64,
}

/// A partition that refuses writes, for health reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPartition {
    pub topic: String,
    pub partition: u32,
    pub reason: String,
}

// ==== replication (issue 17) ====
/// The cluster as one node sees it (a single node: `nodes` is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// This node's id (0 on a single node).
    pub node_id: u64,
    /// The current leader, when known. Every partition is led by it (one Raft group).
    pub leader: Option<u64>,
    /// The Raft term this node is in.
    pub term: u64,
    /// The last log index this node knows committed, and the last it applied.
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub nodes: Vec<NodeDescription>,
    /// Times this node saw the leader change (since it started).
    pub leader_changes: u64,
    /// On the leader: per follower, log entries it has not acknowledged yet.
    pub replication_lag: Vec<(u64, u64)>,
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    pub node_id: u64,
    /// host:port of its node-to-node listener.
    pub cluster_addr: String,
    /// host:port of its gRPC listener, once it told us.
    pub grpc_addr: Option<String>,
    /// Whether it votes (a replica of every partition); false for a learner.
    pub voter: bool,
}
// ==== end replication (issue 17) ====
