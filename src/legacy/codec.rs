//! The original Obelisk's wire format: bytes ↔ frames, and the reply lines. No I/O.
//!
//! ```text
//! frame   = length u32 LE | message            (length ≤ 10 MiB; 0 is "corrupted")
//! message = timestamp i64 LE (Unix ns)
//!         | topic_len u32 LE | topic           (topic_len ≤ 255)
//!         | key_len u32 LE   | key
//!         | value_len u32 LE | value
//!         | anything else up to the frame end is ignored
//! reply   = "OK\n" | "NACK:CORRUPTED\n" | "NACK:INVALID_FORMAT\n" | "NACK:PUBLISH_FAILED\n"
//!         | "NACK:PROTOCOL_ERROR\n"
//! ```
//! Decoding slices the caller's buffer ([`Bytes`]), so topics, keys and values are never copied.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest frame length accepted (the original's limit: 10 MiB is allowed, one byte more is not).
pub const MAX_FRAME_LEN: u32 = 10 * 1024 * 1024;
/// Longest topic field the original accepts.
pub const MAX_TOPIC_LEN: u32 = 255;
/// Bytes of the frame's length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;
/// Bytes of a message with an empty topic, key and value: the timestamp and three lengths.
pub const MESSAGE_HEADER_LEN: usize = 8 + 4 + 4 + 4;
/// Longest reply line, newline included.
pub const MAX_REPLY_LEN: usize = 20;

/// One produce message as the original encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unix nanoseconds, signed (the original allows −1).
    pub timestamp: i64,
    /// Raw topic bytes: the original checks neither UTF-8 nor the characters.
    pub topic: Bytes,
    pub key: Bytes,
    pub value: Bytes,
}

impl Message {
    /// The message's encoded size, without the frame's length prefix.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.topic.len() + self.key.len() + self.value.len()
    }

    /// Appends the encoded message (no length prefix).
    ///
    /// The caller keeps each field below 4 GiB (any frame that can be sent is far smaller).
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_i64_le(self.timestamp);
        for field in [&self.topic, &self.key, &self.value] {
            out.put_u32_le(field.len() as u32);
            out.put_slice(field);
        }
    }

    /// Appends the whole frame: the length prefix, then the message.
    pub fn encode_frame(&self, out: &mut impl BufMut) {
        out.put_u32_le(self.encoded_len() as u32);
        self.encode(out);
    }
}

/// A field of a message, to say where decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Timestamp,
    TopicLength,
    Topic,
    KeyLength,
    Key,
    ValueLength,
    Value,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Timestamp => "timestamp",
            Self::TopicLength => "topic length",
            Self::Topic => "topic",
            Self::KeyLength => "key length",
            Self::Key => "key",
            Self::ValueLength => "value length",
            Self::Value => "value",
        })
    }
}

/// Why a frame's body is not a message (the reply is `NACK:INVALID_FORMAT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error(
        "the message ends inside its {field}: {needed} bytes needed at byte {position}, {available} left"
    )]
    Truncated {
        field: Field,
        /// Where the field starts, from the start of the message.
        position: usize,
        needed: u64,
        available: usize,
    },
    #[error("topic length {0} exceeds the maximum of {MAX_TOPIC_LEN} bytes")]
    TopicTooLong(u32),
}

/// Decodes one message from a frame's body. Bytes after the value are ignored, as the original
/// does.
///
/// # Errors
/// [`MessageError`] when the body is too short for a field or the topic is longer than 255 bytes.
pub fn decode_message(body: &Bytes) -> Result<Message, MessageError> {
    let mut pos = 0usize;
    let mut take = |field: Field, len: u64| -> Result<Bytes, MessageError> {
        let available = body.len() - pos;
        if len > available as u64 {
            return Err(MessageError::Truncated {
                field,
                position: pos,
                needed: len,
                available,
            });
        }
        let slice = body.slice(pos..pos + len as usize);
        pos += len as usize;
        Ok(slice)
    };
    let timestamp = take(Field::Timestamp, 8)?.get_i64_le();
    let topic_len = take(Field::TopicLength, 4)?.get_u32_le();
    if topic_len > MAX_TOPIC_LEN {
        return Err(MessageError::TopicTooLong(topic_len));
    }
    let topic = take(Field::Topic, u64::from(topic_len))?;
    let key_len = take(Field::KeyLength, 4)?.get_u32_le();
    let key = take(Field::Key, u64::from(key_len))?;
    let value_len = take(Field::ValueLength, 4)?.get_u32_le();
    let value = take(Field::Value, u64::from(value_len))?;
    Ok(Message {
        timestamp,
        topic,
        key,
        value,
    })
}

/// One complete frame, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Message),
    /// A length prefix of 0 (the original's "corrupted" case; the connection stays open).
    Empty,
    /// A body that is not a message (the connection stays open).
    Malformed(MessageError),
}

/// A frame the connection cannot survive: the stream cannot be resynchronised after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} exceeds the maximum of {MAX_FRAME_LEN} bytes")]
    TooLarge(u32),
}

/// The length prefix at the front of `buf`, if all four bytes are there.
fn peek_length(buf: &[u8]) -> Option<u32> {
    let prefix: [u8; LENGTH_PREFIX_LEN] = buf.get(..LENGTH_PREFIX_LEN)?.try_into().ok()?;
    Some(u32::from_le_bytes(prefix))
}

/// Bytes the frame at the front of `buf` still lacks (0 when it is complete or too large to
/// wait for), or `None` while its length prefix is incomplete. Readers use it to reserve space.
pub fn missing_bytes(buf: &[u8]) -> Option<usize> {
    let len = peek_length(buf)?;
    if len > MAX_FRAME_LEN {
        return Some(0);
    }
    Some((LENGTH_PREFIX_LEN + len as usize).saturating_sub(buf.len()))
}

/// Takes the frame at the front of `buf` once it is complete.
///
/// Returns `Ok(None)` while more bytes are needed. An oversized length is reported as soon as
/// the prefix is read, without waiting for (or buffering) its body.
///
/// # Errors
/// [`FrameError::TooLarge`] for a length above [`MAX_FRAME_LEN`]; `buf` is left as it was.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    let Some(len) = peek_length(buf) else {
        return Ok(None);
    };
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    let total = LENGTH_PREFIX_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_LEN);
    let body = buf.split_to(len as usize).freeze();
    if body.is_empty() {
        return Ok(Some(Frame::Empty));
    }
    Ok(Some(match decode_message(&body) {
        Ok(message) => Frame::Message(message),
        Err(e) => Frame::Malformed(e),
    }))
}

/// The server's answer to one frame: one ASCII line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Stored (in Obelisk: durably).
    Ok,
    /// The frame's length was 0.
    Corrupted,
    /// The body was not a message, or the broker refused it as invalid.
    InvalidFormat,
    /// The broker could not store it.
    PublishFailed,
    /// The frame was too large; the server closes the connection after this reply.
    ProtocolError,
    // security (issue 15): replies the original server never sent (its clients read any
    // `NACK:` line as a refusal).
    /// Security is on and the listener has no principal configured.
    Unauthenticated,
    /// The listener's principal may not produce to the topic (an ACL is missing).
    PermissionDenied,
}

impl Reply {
    pub const ALL: [Reply; 7] = [
        Self::Ok,
        Self::Corrupted,
        Self::InvalidFormat,
        Self::PublishFailed,
        Self::ProtocolError,
        Self::Unauthenticated,
        Self::PermissionDenied,
    ];

    /// The exact bytes on the wire.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Ok => b"OK\n",
            Self::Corrupted => b"NACK:CORRUPTED\n",
            Self::InvalidFormat => b"NACK:INVALID_FORMAT\n",
            Self::PublishFailed => b"NACK:PUBLISH_FAILED\n",
            Self::ProtocolError => b"NACK:PROTOCOL_ERROR\n",
            Self::Unauthenticated => b"NACK:UNAUTHORIZED\n",
            Self::PermissionDenied => b"NACK:FORBIDDEN\n",
        }
    }

    /// Whether the server closes the connection after sending this reply.
    pub const fn closes_connection(self) -> bool {
        matches!(self, Self::ProtocolError)
    }
}

/// Reply bytes a client did not recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised reply line {0:?}")]
pub struct UnknownReply(pub String);

/// Takes the reply line at the front of `buf` once its newline has arrived.
///
/// # Errors
/// [`UnknownReply`] for a line that is not one of the replies, or for more than
/// [`MAX_REPLY_LEN`] bytes without a newline.
pub fn decode_reply(buf: &mut BytesMut) -> Result<Option<Reply>, UnknownReply> {
    let Some(end) = buf.iter().take(MAX_REPLY_LEN).position(|&b| b == b'\n') else {
        if buf.len() >= MAX_REPLY_LEN {
            return Err(UnknownReply(
                String::from_utf8_lossy(&buf[..MAX_REPLY_LEN]).into_owned(),
            ));
        }
        return Ok(None);
    };
    let line = buf.split_to(end + 1);
    Reply::ALL
        .into_iter()
        .find(|r| r.as_bytes() == &line[..])
        .map(Some)
        .ok_or_else(|| UnknownReply(String::from_utf8_lossy(&line).into_owned()))
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
