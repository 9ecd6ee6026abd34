//! The broker's errors: one enum every protocol maps, each in one exhaustive table.

use crate::storage::StorageError;

/// Which kind of name was invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Topic,
    Group,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Topic => "topic",
            Self::Group => "consumer group",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: NameKind,
        name: String,
        reason: &'static str,
    },
    /// A request that cannot be valid (empty batch, bad partition, bad limits...).
    #[error("{0}")]
    InvalidArgument(String),
    #[error("record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    #[error(
        "topic {0:?} does not exist; create it first (produce creates topics only while auto-creation is on)"
    )]
    TopicNotFound(String),
    #[error("consumer group {0:?} does not exist")]
    GroupNotFound(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error(
        "offset {offset} is out of range for {topic}/{partition}: it holds offsets {start} to {end} (end exclusive)"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    #[error("broker overloaded: {0}; retry with backoff")]
    Overloaded(String),
    /// Storage failed, a partition is read-only, or the broker is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// Data on disk failed its checksum or framing.
    #[error("data loss: {0}")]
    DataLoss(String),
    // security (issue 15):
    /// Authentication is on and the request has no valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's principal may not do this (the message never says whether the resource
    /// exists).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    // ==== groups (issue 13) ====
    /// A member's call refused: it is not (any more) the member, or the owner, it claims.
    #[error("fenced: rejoin consumer group {group:?}: {reason}")]
    Fenced { group: String, reason: String },
    /// A group with members used without a member, or deleted while members are connected.
    #[error("consumer group {group:?} has members: {what}")]
    GroupHasMembers { group: String, what: String },
    #[error("consumer group {0:?} already exists")]
    GroupExists(String),
    #[error("consumer group {group:?} has no member {member:?}")]
    MemberNotFound { group: String, member: String },
    // ==== end groups (issue 13) ====
    /// formatv2: an idempotent producer's append was refused: fenced by a newer epoch, or a
    /// sequence number that neither continues its last append nor repeats a remembered one
    /// (`expected` says where to continue).
    #[error("{message}")]
    ProducerSequence {
        message: String,
        expected: Option<i32>,
    },
    /// replication (issue 17): a write reached a cluster node that is not the leader (a
    /// redirecting caller: gRPC); `leader` is where to send it, when known.
    #[error("{}", not_leader_message(leader.as_ref()))]
    NotLeader { leader: Option<LeaderHint> },
}

/// replication (issue 17): where the leader of a cluster is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub node_id: u64,
    /// host:port of the leader's gRPC listener.
    pub grpc_addr: String,
}

fn not_leader_message(leader: Option<&LeaderHint>) -> String {
    match leader {
        Some(l) => format!(
            "this node is not the cluster leader: send the request to node {} at {} (metadata \
             obelisk-leader)",
            l.node_id, l.grpc_addr
        ),
        None => "this node is not the cluster leader and no leader is known yet (an election \
                 is under way); retry shortly"
            .to_string(),
    }
}

impl BrokerError {
    /// A stable, snake_case name for the kind of error: the `code` in HTTP error bodies and the
    /// `kind`/`reason` label of error metrics. One name per variant; never a message.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::RecordTooLarge { .. } => "record_too_large",
            Self::TopicNotFound(_) => "topic_not_found",
            Self::GroupNotFound(_) => "group_not_found",
            Self::TopicExists(_) => "topic_exists",
            Self::OffsetOutOfRange { .. } => "offset_out_of_range",
            Self::Overloaded(_) => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::DataLoss(_) => "data_loss",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission_denied",
            Self::Fenced { .. } => "fenced",
            Self::GroupHasMembers { .. } => "group_has_members",
            Self::GroupExists(_) => "group_exists",
            Self::MemberNotFound { .. } => "member_not_found",
            Self::ProducerSequence { .. } => "producer_sequence",
            Self::NotLeader { .. } => "not_leader",
        }
    }

    /// The error for a group whose committed offsets were found damaged on disk.
    pub fn group_damaged(group: &str, err: &StorageError) -> Self {
        tracing::error!(group, error = %err, "read of a damaged group's offsets refused");
        Self::DataLoss(format!(
            "the committed offsets of consumer group {group:?} were damaged on disk (set aside as \
             groups/{group}.json.damaged); reset the group's offsets to choose where it resumes"
        ))
    }

    /// Maps a storage error met on `topic`/`partition`. I/O details go to the log; the message
    /// names the partition and what the client can do.
    pub fn from_storage(topic: &str, partition: u32, err: StorageError) -> Self {
        match err {
            StorageError::OffsetOutOfRange { offset, start, end } => Self::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                offset,
                start,
                end,
            },
            StorageError::Corrupt { .. } => {
                tracing::error!(topic, partition, error = %err, "corrupt data read");
                Self::DataLoss(format!(
                    "{topic}/{partition}: stored data failed verification; see the broker log"
                ))
            }
            StorageError::Damaged { ref offsets, .. } => {
                tracing::warn!(topic, partition, error = %err, "read of damaged records refused");
                Self::DataLoss(format!(
                    "{topic}/{partition}: offsets {} to {} were damaged on disk and cannot be read; \
                     the records after them are intact: continue from offset {} (commit or reset \
                     the group past them)",
                    offsets.start,
                    offsets.end.saturating_sub(1),
                    offsets.end
                ))
            }
            StorageError::ReadOnly { .. } => {
                tracing::warn!(topic, partition, error = %err, "write refused");
                Self::Unavailable(format!(
                    "{topic}/{partition} is read-only after a storage failure; see the broker log"
                ))
            }
            StorageError::Sequence(e) => Self::ProducerSequence {
                message: format!("{topic}/{partition}: {e}"),
                expected: e.expected(),
            },
            StorageError::Closed => Self::Unavailable(format!(
                "{topic}/{partition} is closed (topic deleted or broker stopping)"
            )),
            StorageError::Io { .. } => {
                tracing::error!(topic, partition, error = %err, "storage I/O error");
                Self::Unavailable(format!(
                    "{topic}/{partition}: storage I/O failed; see the broker log"
                ))
            }
        }
    }
}
