//! Fuzzes the legacy codec: arbitrary bytes, as a stream of frames and as one message body,
//! must never panic, and whatever decodes must encode back to the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use obelisk::legacy::codec::{self, Frame};

fuzz_target!(|data: &[u8]| {
    // One message body.
    let body = Bytes::copy_from_slice(data);
    if let Ok(message) = codec::decode_message(&body) {
        let mut again = Vec::new();
        message.encode(&mut again);
        assert_eq!(&again[..], &data[..again.len()], "re-encoding gives the prefix back");
    }
    // A stream of frames, as a connection reads them.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec::decode_frame(&mut buf) {
        if let Frame::Message(m) = frame {
            assert!(m.topic.len() <= codec::MAX_TOPIC_LEN as usize);
        }
    }
    // Reply lines, as a client reads them.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec::decode_reply(&mut buf) {}
});
