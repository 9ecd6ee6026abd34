//! Unit tests of the legacy codec: round trips, every malformed case, and arbitrary bytes.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

fn message(topic: &str, key: &[u8], value: &[u8], timestamp: i64) -> Message {
    Message {
        timestamp,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
    }
}

fn frame_of(m: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    m.encode_frame(&mut out);
    out
}

/// A frame with this body (any bytes).
fn raw_frame(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32_le(body.len() as u32);
    out.put_slice(body);
    out
}

#[test]
fn encodes_the_original_bytes() {
    // "basic" from tests/fixtures/legacy/vectors.json.
    let m = message(
        "vectors",
        b"user-123",
        b"hello obelisk",
        1_700_000_000_123_456_789,
    );
    let hex: String = frame_of(&m).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "3000000015cd853dfe9c971707000000766563746f727308000000757365722d3132330d00000068656c6c6f206f62656c69736b"
    );
    assert_eq!(m.encoded_len(), 48);
}

#[test]
fn round_trip_and_no_copies() {
    let m = message("t", b"k", b"value", -1);
    let mut buf = frame_of(&m);
    let base = buf.as_ptr() as usize;
    let Ok(Some(Frame::Message(got))) = decode_frame(&mut buf) else {
        panic!("expected a message");
    };
    assert_eq!(got, m);
    assert!(buf.is_empty());
    // The value is a slice of the receive buffer, not a copy.
    let at = got.value.as_ptr() as usize;
    assert_eq!(at, base + 4 + 8 + 4 + 1 + 4 + 1 + 4);
}

#[test]
fn waits_for_a_whole_frame() {
    let full = frame_of(&message("topic", b"key", b"value", 7));
    for cut in 0..full.len() {
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(decode_frame(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed");
        let missing = missing_bytes(&buf);
        if cut < 4 {
            assert_eq!(missing, None);
        } else {
            assert_eq!(missing, Some(full.len() - cut));
        }
    }
}

#[test]
fn zero_length_is_empty_and_the_next_frame_decodes() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    buf.extend_from_slice(&frame_of(&message("a", b"", b"v", 1)));
    assert_eq!(decode_frame(&mut buf), Ok(Some(Frame::Empty)));
    assert!(matches!(
        decode_frame(&mut buf),
        Ok(Some(Frame::Message(_)))
    ));
    assert_eq!(decode_frame(&mut buf), Ok(None));
}

#[test]
fn max_length_is_allowed_and_one_more_is_not() {
    let mut buf = BytesMut::new();
    buf.put_u32_le(MAX_FRAME_LEN);
    assert_eq!(
        decode_frame(&mut buf),
        Ok(None),
        "waits for the 10 MiB body"
    );
    assert_eq!(missing_bytes(&buf), Some(MAX_FRAME_LEN as usize));

    let mut buf = BytesMut::new();
    buf.put_u32_le(MAX_FRAME_LEN + 1);
    assert_eq!(
        decode_frame(&mut buf),
        Err(FrameError::TooLarge(MAX_FRAME_LEN + 1))
    );
    assert_eq!(missing_bytes(&buf), Some(0));
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert_eq!(decode_frame(&mut buf), Err(FrameError::TooLarge(u32::MAX)));
}

#[test]
fn a_full_size_frame_decodes() {
    let value = vec![7u8; MAX_FRAME_LEN as usize - MESSAGE_HEADER_LEN - 1];
    let m = message("t", b"", &value, 3);
    let mut buf = frame_of(&m);
    assert_eq!(buf.len(), 4 + MAX_FRAME_LEN as usize);
    assert_eq!(decode_frame(&mut buf), Ok(Some(Frame::Message(m))));
}

#[test]
fn every_truncation_of_a_body_is_malformed() {
    let m = message("topic", b"key", b"value", 9);
    let mut full = BytesMut::new();
    m.encode(&mut full);
    let fields = [
        (0, Field::Timestamp),
        (8, Field::TopicLength),
        (12, Field::Topic),
        (17, Field::KeyLength),
        (21, Field::Key),
        (24, Field::ValueLength),
        (28, Field::Value),
    ];
    for cut in 1..full.len() {
        let mut buf = raw_frame(&full[..cut]);
        let Ok(Some(Frame::Malformed(MessageError::Truncated {
            field, position, ..
        }))) = decode_frame(&mut buf)
        else {
            panic!("cut at {cut} should be malformed");
        };
        let expected = fields.iter().rev().find(|(at, _)| *at <= cut).unwrap();
        // A cut exactly at a field boundary fails on that field.
        assert_eq!((position, field), *expected, "cut at {cut}");
        assert!(buf.is_empty(), "the bad frame is consumed");
    }
}

#[test]
fn garbage_body_is_malformed() {
    // "garbage_body" from the vectors: a 3-byte body.
    let mut buf = raw_frame(&[1, 2, 3]);
    assert_eq!(
        decode_frame(&mut buf),
        Ok(Some(Frame::Malformed(MessageError::Truncated {
            field: Field::Timestamp,
            position: 0,
            needed: 8,
            available: 3
        })))
    );
}

#[test]
fn topic_longer_than_255_is_malformed() {
    let ok = message(&"t".repeat(255), b"", b"", 0);
    assert!(matches!(
        decode_frame(&mut frame_of(&ok)),
        Ok(Some(Frame::Message(_)))
    ));
    let long = message(&"t".repeat(256), b"", b"", 0);
    assert_eq!(
        decode_frame(&mut frame_of(&long)),
        Ok(Some(Frame::Malformed(MessageError::TopicTooLong(256))))
    );
    // The topic length is checked before the frame is known to hold the topic.
    let mut body = BytesMut::new();
    body.put_i64_le(0);
    body.put_u32_le(u32::MAX);
    assert_eq!(
        decode_frame(&mut raw_frame(&body)),
        Ok(Some(Frame::Malformed(MessageError::TopicTooLong(u32::MAX))))
    );
}

#[test]
fn lengths_past_the_frame_end_are_malformed() {
    for (field, lens) in [
        (Field::Topic, [5u32, 0, 0]),
        (Field::Key, [1, u32::MAX, 0]),
        (Field::Value, [1, 0, 50]),
    ] {
        let mut body = BytesMut::new();
        body.put_i64_le(0);
        body.put_u32_le(lens[0]);
        if field != Field::Topic {
            body.put_u8(b't');
            body.put_u32_le(lens[1]);
            if field == Field::Value {
                body.put_u32_le(lens[2]);
                body.put_slice(b"short");
            }
        }
        let got = decode_frame(&mut raw_frame(&body));
        let Ok(Some(Frame::Malformed(MessageError::Truncated { field: f, .. }))) = got else {
            panic!("{field}: {got:?}");
        };
        assert_eq!(f, field);
    }
}

#[test]
fn trailing_bytes_are_ignored() {
    let m = message("vectors-trailing", b"t", b"trailing bytes follow", 5);
    let mut body = BytesMut::new();
    m.encode(&mut body);
    body.put_slice(&[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        decode_frame(&mut raw_frame(&body)),
        Ok(Some(Frame::Message(m)))
    );
}

#[test]
fn replies_have_the_original_bytes_and_parse_back() {
    assert_eq!(Reply::Ok.as_bytes(), b"OK\n");
    assert_eq!(Reply::Corrupted.as_bytes(), b"NACK:CORRUPTED\n");
    assert_eq!(Reply::InvalidFormat.as_bytes(), b"NACK:INVALID_FORMAT\n");
    assert_eq!(Reply::PublishFailed.as_bytes(), b"NACK:PUBLISH_FAILED\n");
    assert_eq!(Reply::ProtocolError.as_bytes(), b"NACK:PROTOCOL_ERROR\n");
    let mut buf = BytesMut::new();
    for r in Reply::ALL {
        assert!(r.as_bytes().len() <= MAX_REPLY_LEN);
        buf.extend_from_slice(r.as_bytes());
    }
    buf.extend_from_slice(b"NACK:COR");
    for r in Reply::ALL {
        assert_eq!(decode_reply(&mut buf), Ok(Some(r)));
    }
    assert_eq!(decode_reply(&mut buf), Ok(None));
    assert!(decode_reply(&mut BytesMut::from(&b"NOPE\n"[..])).is_err());
    assert!(decode_reply(&mut BytesMut::from(&[b'x'; 64][..])).is_err());
    assert_eq!(
        Reply::ALL.iter().filter(|r| r.closes_connection()).count(),
        1
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = decode_message(&Bytes::from(data.clone())) {
            // What decodes is exactly the encoding of the message, plus ignored trailing bytes.
            let mut again = Vec::new();
            m.encode(&mut again);
            prop_assert_eq!(&again[..], &data[..again.len()]);
        }
        let _ = missing_bytes(&data);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf) {}
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode_reply(&mut buf) {}
    }

    #[test]
    fn small_lengths_never_panic(
        ts in any::<i64>(),
        lens in proptest::array::uniform3(0u32..300),
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut body = BytesMut::new();
        body.put_i64_le(ts);
        for len in lens {
            body.put_u32_le(len);
            body.put_slice(&tail[..tail.len().min(len as usize)]);
        }
        if let Ok(Some(Frame::Message(m))) = decode_frame(&mut raw_frame(&body)) {
            let mut again = Vec::new();
            m.encode(&mut again);
            prop_assert_eq!(&again[..], &body[..again.len()]);
        }
    }

    #[test]
    fn messages_round_trip(
        ts in any::<i64>(),
        topic in "[a-z]{0,255}",
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::collection::vec(any::<u8>(), 0..256),
        pipelined in 1usize..4,
    ) {
        let m = message(&topic, &key, &value, ts);
        let mut buf = BytesMut::new();
        for _ in 0..pipelined {
            m.encode_frame(&mut buf);
        }
        for _ in 0..pipelined {
            prop_assert_eq!(decode_frame(&mut buf), Ok(Some(Frame::Message(m.clone()))));
        }
        prop_assert!(buf.is_empty());
    }
}
