//! The table: scenario × protocol → outcome class, and what each class looks like on each
//! protocol's wire (DESIGN.md's error table).

use tonic::Code;

use obelisk::legacy::codec::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Legacy,
    Http,
}

pub const PROTOCOLS: [Protocol; 3] = [Protocol::Grpc, Protocol::Legacy, Protocol::Http];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Records produced one per request to an existing topic, then read back.
    ProduceThenRead,
    /// A topic name the naming rules refuse (several of them).
    BadTopicName,
    /// The largest record the broker takes (found through the core), then one byte more: the
    /// size is counted the same way whatever the protocol.
    RecordAtMax,
    /// A record over the broker's `max_record_bytes`, in a request every transport accepts.
    RecordOverMax,
    /// A request over the transport's own size limit.
    FrameOverTransportLimit,
    /// A topic that does not exist, auto-creation off.
    UnknownTopic,
    /// A topic that does not exist, auto-creation on: created, with the default partitions.
    AutoCreate,
    /// The partition's storage failed: it is read-only.
    StorageReadOnly,
    /// Reads (the legacy protocol has none): a fetch past the log end.
    FetchBeyondEnd,
    /// A fetch from a partition the topic does not have.
    FetchMissingPartition,
    /// A fetch or a poll of a topic that does not exist.
    ReadUnknownTopic,
    /// A poll with a group name the naming rules refuse.
    PollBadGroupName,
    /// A commit past the log end.
    CommitBeyondEnd,
    /// Describing a group that never committed.
    DescribeUnknownGroup,
}

/// An outcome class: what DESIGN.md's error table calls the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Invalid,
    NotFound,
    Unavailable,
    TooLargeForTransport,
    OutOfRange,
    /// The protocol has no such operation (the legacy protocol only produces).
    NotOffered,
}

/// Scenario × protocol → outcome. Every row is the same across: that is the point.
pub const TABLE: &[(Scenario, [(Protocol, Outcome); 3])] = {
    use Outcome::*;
    use Protocol::*;
    &[
        (
            Scenario::ProduceThenRead,
            [(Grpc, Accepted), (Legacy, Accepted), (Http, Accepted)],
        ),
        (
            Scenario::BadTopicName,
            [(Grpc, Invalid), (Legacy, Invalid), (Http, Invalid)],
        ),
        (
            Scenario::RecordAtMax,
            [(Grpc, Accepted), (Legacy, Accepted), (Http, Accepted)],
        ),
        (
            Scenario::RecordOverMax,
            [(Grpc, Invalid), (Legacy, Invalid), (Http, Invalid)],
        ),
        (
            Scenario::FrameOverTransportLimit,
            [
                (Grpc, TooLargeForTransport),
                (Legacy, TooLargeForTransport),
                (Http, TooLargeForTransport),
            ],
        ),
        (
            Scenario::AutoCreate,
            [(Grpc, Accepted), (Legacy, Accepted), (Http, Accepted)],
        ),
        (
            Scenario::UnknownTopic,
            [(Grpc, NotFound), (Legacy, NotFound), (Http, NotFound)],
        ),
        (
            Scenario::StorageReadOnly,
            [
                (Grpc, Unavailable),
                (Legacy, Unavailable),
                (Http, Unavailable),
            ],
        ),
        (
            Scenario::FetchBeyondEnd,
            [(Grpc, OutOfRange), (Legacy, NotOffered), (Http, OutOfRange)],
        ),
        (
            Scenario::FetchMissingPartition,
            [(Grpc, Invalid), (Legacy, NotOffered), (Http, Invalid)],
        ),
        (
            Scenario::ReadUnknownTopic,
            [(Grpc, NotFound), (Legacy, NotOffered), (Http, NotFound)],
        ),
        (
            Scenario::PollBadGroupName,
            [(Grpc, Invalid), (Legacy, NotOffered), (Http, Invalid)],
        ),
        (
            Scenario::CommitBeyondEnd,
            [(Grpc, OutOfRange), (Legacy, NotOffered), (Http, OutOfRange)],
        ),
        (
            Scenario::DescribeUnknownGroup,
            [(Grpc, NotFound), (Legacy, NotOffered), (Http, NotFound)],
        ),
    ]
};

pub fn expected(scenario: Scenario, protocol: Protocol) -> Outcome {
    let (_, row) = TABLE
        .iter()
        .find(|(s, _)| *s == scenario)
        .unwrap_or_else(|| panic!("{scenario:?} has a row in TABLE"));
    row.iter()
        .find(|(p, _)| *p == protocol)
        .map(|(_, o)| *o)
        .unwrap_or_else(|| panic!("{scenario:?} has a {protocol:?} column"))
}

/// Whether a legacy connection is still usable after the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    Open,
    Closed,
}

/// What a call looked like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Grpc(Code),
    Legacy(Reply, Conn),
    Http(u16),
}

/// The error table of DESIGN.md: what each outcome looks like on each protocol (more than one
/// where the transport may answer either way).
pub fn wire(outcome: Outcome, protocol: Protocol) -> Vec<Wire> {
    use Outcome::*;
    match (protocol, outcome) {
        (Protocol::Grpc, Accepted) => vec![Wire::Grpc(Code::Ok)],
        (Protocol::Grpc, Invalid) => vec![Wire::Grpc(Code::InvalidArgument)],
        (Protocol::Grpc, NotFound) => vec![Wire::Grpc(Code::NotFound)],
        (Protocol::Grpc, Unavailable) => vec![Wire::Grpc(Code::Unavailable)],
        (Protocol::Grpc, OutOfRange) => vec![Wire::Grpc(Code::OutOfRange)],
        // tonic's decoder refuses the message before the service runs; the server maps its
        // answer to INVALID_ARGUMENT, as the error table says for a request too large.
        (Protocol::Grpc, TooLargeForTransport) => vec![Wire::Grpc(Code::InvalidArgument)],
        (Protocol::Legacy, Accepted) => vec![Wire::Legacy(Reply::Ok, Conn::Open)],
        (Protocol::Legacy, Invalid) => vec![Wire::Legacy(Reply::InvalidFormat, Conn::Open)],
        // Out of range cannot happen on a produce ("—" in DESIGN.md); the adapter's table says
        // PUBLISH_FAILED.
        (Protocol::Legacy, NotFound | Unavailable | OutOfRange) => {
            vec![Wire::Legacy(Reply::PublishFailed, Conn::Open)]
        }
        (_, NotOffered) => vec![],
        (Protocol::Legacy, TooLargeForTransport) => {
            vec![Wire::Legacy(Reply::ProtocolError, Conn::Closed)]
        }
        (Protocol::Http, Accepted) => vec![Wire::Http(201)],
        (Protocol::Http, Invalid) => vec![Wire::Http(400)],
        (Protocol::Http, OutOfRange) => vec![Wire::Http(416)],
        (Protocol::Http, NotFound) => vec![Wire::Http(404)],
        (Protocol::Http, Unavailable) => vec![Wire::Http(503)],
        (Protocol::Http, TooLargeForTransport) => vec![Wire::Http(413)],
    }
}
