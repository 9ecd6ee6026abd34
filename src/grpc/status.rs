//! The one table from broker errors to gRPC status codes (DESIGN.md). No catch-all arm: a new
//! error kind does not compile until it is mapped here.

use tonic::{Code, Status};

use crate::broker::BrokerError;

/// The gRPC code for a broker error.
pub fn code_of(err: &BrokerError) -> Code {
    match err {
        BrokerError::InvalidName { .. }
        | BrokerError::InvalidArgument(_)
        | BrokerError::RecordTooLarge { .. } => Code::InvalidArgument,
        BrokerError::TopicNotFound(_) | BrokerError::GroupNotFound(_) => Code::NotFound,
        BrokerError::TopicExists(_) => Code::AlreadyExists,
        BrokerError::OffsetOutOfRange { .. } => Code::OutOfRange,
        BrokerError::Overloaded(_) => Code::ResourceExhausted,
        BrokerError::Unavailable(_) => Code::Unavailable,
        BrokerError::DataLoss(_) => Code::DataLoss,
        BrokerError::Unauthenticated(_) => Code::Unauthenticated,
        BrokerError::PermissionDenied(_) => Code::PermissionDenied,
        BrokerError::Fenced { .. } | BrokerError::GroupHasMembers { .. } => {
            Code::FailedPrecondition
        }
        BrokerError::GroupExists(_) => Code::AlreadyExists,
        BrokerError::MemberNotFound { .. } => Code::NotFound,
        BrokerError::ProducerSequence { .. } => Code::FailedPrecondition,
        BrokerError::NotLeader { .. } => Code::Unavailable,
    }
}

/// The status sent for a broker error: its code and its message (which never carries internals).
pub fn to_status(err: &BrokerError) -> Status {
    let mut status = Status::new(code_of(err), err.to_string());
    // formatv2: where an idempotent producer's sequence should continue, machine-readable.
    if let BrokerError::ProducerSequence {
        expected: Some(n), ..
    } = err
        && let Ok(v) = n.to_string().parse()
    {
        status.metadata_mut().insert("obelisk-expected-sequence", v);
    }
    // replication (issue 17): "not the leader" (nothing was stored: safe to send elsewhere) and
    // where the leader is, for clients that follow it.
    if let BrokerError::NotLeader { .. } = err {
        status.metadata_mut().insert(
            "obelisk-not-leader",
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    if let BrokerError::NotLeader {
        leader: Some(leader),
    } = err
    {
        if let Ok(v) = leader.grpc_addr.parse() {
            status.metadata_mut().insert("obelisk-leader", v);
        }
        if let Ok(v) = leader.node_id.to_string().parse() {
            status.metadata_mut().insert("obelisk-leader-id", v);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::NameKind;

    #[test]
    fn table_matches_the_design() {
        let cases = [
            (
                BrokerError::InvalidName {
                    kind: NameKind::Topic,
                    name: "a/b".into(),
                    reason: "x",
                },
                Code::InvalidArgument,
            ),
            (
                BrokerError::RecordTooLarge { size: 2, max: 1 },
                Code::InvalidArgument,
            ),
            (BrokerError::TopicNotFound("t".into()), Code::NotFound),
            (BrokerError::GroupNotFound("g".into()), Code::NotFound),
            (BrokerError::TopicExists("t".into()), Code::AlreadyExists),
            (BrokerError::Overloaded("q".into()), Code::ResourceExhausted),
            (BrokerError::Unavailable("u".into()), Code::Unavailable),
            (BrokerError::DataLoss("d".into()), Code::DataLoss),
            (
                BrokerError::Unauthenticated("u".into()),
                Code::Unauthenticated,
            ),
            (
                BrokerError::PermissionDenied("p".into()),
                Code::PermissionDenied,
            ),
            (
                BrokerError::Fenced {
                    group: "g".into(),
                    reason: "r".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                BrokerError::GroupHasMembers {
                    group: "g".into(),
                    what: "w".into(),
                },
                Code::FailedPrecondition,
            ),
            (BrokerError::GroupExists("g".into()), Code::AlreadyExists),
            (
                BrokerError::MemberNotFound {
                    group: "g".into(),
                    member: "m".into(),
                },
                Code::NotFound,
            ),
        ];
        for (err, code) in cases {
            let status = to_status(&err);
            assert_eq!(status.code(), code, "{err}");
            assert_eq!(status.message(), err.to_string());
        }
    }
}
