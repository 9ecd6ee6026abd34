//! The one table from outcomes to legacy replies: broker errors and codec errors.
//!
//! Every [`BrokerError`] variant is named (no `_ =>` arm), so a new error kind fails to build
//! until it has a reply here. The mapping follows the error table of `DESIGN.md`:
//!
//! | outcome | reply |
//! |---|---|
//! | stored durably | `OK` |
//! | length prefix 0 | `NACK:CORRUPTED` |
//! | body not a message; invalid topic name, invalid argument, record too large | `NACK:INVALID_FORMAT` |
//! | unknown topic or group, topic exists, out of range, overloaded, unavailable, data loss | `NACK:PUBLISH_FAILED` |
//! | frame longer than 10 MiB (the connection is closed) | `NACK:PROTOCOL_ERROR` |
//! | security on and the listener has no principal | `NACK:UNAUTHORIZED` |
//! | the listener's principal may not produce to the topic | `NACK:FORBIDDEN` |

use super::codec::{FrameError, MessageError, Reply};
use crate::broker::BrokerError;

/// The reply to a produce the broker refused.
pub fn for_broker_error(err: &BrokerError) -> Reply {
    match err {
        BrokerError::InvalidName { .. }
        | BrokerError::InvalidArgument(_)
        | BrokerError::RecordTooLarge { .. } => Reply::InvalidFormat,
        BrokerError::TopicNotFound(_)
        | BrokerError::GroupNotFound(_)
        | BrokerError::TopicExists(_)
        | BrokerError::OffsetOutOfRange { .. }
        | BrokerError::Overloaded(_)
        | BrokerError::Unavailable(_)
        | BrokerError::DataLoss(_)
        | BrokerError::Fenced { .. }
        | BrokerError::GroupHasMembers { .. }
        | BrokerError::GroupExists(_)
        | BrokerError::MemberNotFound { .. }
        | BrokerError::ProducerSequence { .. }
        | BrokerError::NotLeader { .. } => Reply::PublishFailed,
        BrokerError::Unauthenticated(_) => Reply::Unauthenticated,
        BrokerError::PermissionDenied(_) => Reply::PermissionDenied,
    }
}

/// The reply to a frame whose body is not a message.
pub fn for_message_error(err: &MessageError) -> Reply {
    match err {
        MessageError::Truncated { .. } | MessageError::TopicTooLong(_) => Reply::InvalidFormat,
    }
}

/// The reply to a frame the connection cannot survive.
pub fn for_frame_error(err: &FrameError) -> Reply {
    match err {
        FrameError::TooLarge(_) => Reply::ProtocolError,
    }
}

/// The reply to a frame with a length of 0.
pub const EMPTY_FRAME: Reply = Reply::Corrupted;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::NameKind;

    #[test]
    fn broker_errors_map_as_the_design_says() {
        let invalid = [
            BrokerError::InvalidName {
                kind: NameKind::Topic,
                name: String::new(),
                reason: "a name must not be empty",
            },
            BrokerError::InvalidArgument("x".into()),
            BrokerError::RecordTooLarge { size: 2, max: 1 },
        ];
        for e in &invalid {
            assert_eq!(for_broker_error(e), Reply::InvalidFormat, "{e}");
        }
        let failed = [
            BrokerError::TopicNotFound("t".into()),
            BrokerError::GroupNotFound("g".into()),
            BrokerError::TopicExists("t".into()),
            BrokerError::OffsetOutOfRange {
                topic: "t".into(),
                partition: 0,
                offset: 9,
                start: 0,
                end: 1,
            },
            BrokerError::Overloaded("queue full".into()),
            BrokerError::Unavailable("disk".into()),
            BrokerError::DataLoss("crc".into()),
        ];
        for e in &failed {
            assert_eq!(for_broker_error(e), Reply::PublishFailed, "{e}");
        }
    }

    #[test]
    fn codec_errors_map_to_the_original_replies() {
        assert_eq!(
            for_message_error(&MessageError::TopicTooLong(256)),
            Reply::InvalidFormat
        );
        assert_eq!(
            for_frame_error(&FrameError::TooLarge(u32::MAX)),
            Reply::ProtocolError
        );
        assert_eq!(EMPTY_FRAME.as_bytes(), b"NACK:CORRUPTED\n");
    }
}
