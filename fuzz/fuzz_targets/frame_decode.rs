//! Fuzzes the on-disk format (v1 records and v2 batches, with every codec): arbitrary bytes, as
//! one frame and as a whole segment log, must never panic nor allocate beyond the bounded
//! decompression size (run with `-malloc_limit_mb=128`), and whatever decodes must agree with its
//! header: damage is reported, never returned as records.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use obelisk::fuzzing::{Frame, Role, decode_frame, decode_header, scan_log};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok((frame, len)) = decode_frame(&buf, 0) {
        assert!(len <= data.len());
        if let Frame::V2(h, records) = &frame {
            assert_eq!(records.len() as u64, u64::from(h.record_count));
            assert_eq!(decode_header(data, 0).map(|x| x.frame_len), Ok(len));
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.offset, h.base_offset.wrapping_add(i as u64));
            }
        }
    }
    // As a segment log: every record the scan hands out has the offset it expects.
    let base = 1000;
    let mut next = base;
    let scan = scan_log(&buf, base, Role::Active, &mut |r| {
        assert!(r.offset >= next);
        next = r.offset + 1;
    });
    assert!(scan.kept_len <= data.len() as u64);
    assert!(scan.readable() <= scan.records());
});
