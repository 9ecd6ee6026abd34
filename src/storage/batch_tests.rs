use super::*;
use proptest::prelude::*;

const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

fn rec(offset: u64, ts: i64, key: &[u8], value: &[u8], headers: &[(&str, &[u8])]) -> Record {
    Record {
        offset,
        timestamp: ts,
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), Bytes::copy_from_slice(v)))
            .collect(),
    }
}

fn json_event(i: u64) -> Vec<u8> {
    format!(
        r#"{{"event":"page_view","user_id":"user-{:05}","session":"s-{}","path":"/products/{}","ts":{}}}"#,
        i % 977,
        i / 10,
        i % 50,
        1_700_000_000_000u64 + i
    )
    .into_bytes()
}

fn round_trip(records: &[Record], codec: Compression, meta: BatchMeta) -> usize {
    let mut out = vec![0xAA; 3]; // a frame need not start at 0
    let len = Encoder::default().encode(records, codec, &meta, &mut out);
    assert_eq!(out.len(), 3 + len);
    let buf = Bytes::from(out);
    let (h, back) = decode(&buf, 3).unwrap();
    assert_eq!(back, records, "{codec}");
    assert_eq!(h.base_offset, records[0].offset);
    assert_eq!(h.record_count as usize, records.len());
    assert_eq!(h.meta, meta);
    assert_eq!(h.frame_len, len);
    assert_eq!(
        h.max_timestamp,
        records.iter().map(|r| r.timestamp).max().unwrap()
    );
    len
}

#[test]
fn every_codec_round_trips_every_shape() {
    let meta = BatchMeta {
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 1000,
        leader_epoch: 7,
    };
    for codec in CODECS {
        // one record, empty key and value
        round_trip(&[rec(0, 5, b"", b"", &[])], codec, BatchMeta::NONE);
        // headers, negative and extreme timestamps, a large offset
        round_trip(
            &[
                rec(
                    u64::MAX - 2,
                    i64::MIN,
                    b"k",
                    b"v",
                    &[("trace", b"\x00\x01"), ("", b"")],
                ),
                rec(u64::MAX - 1, i64::MAX, b"", b"value", &[("h", b"x")]),
            ],
            codec,
            meta,
        );
        // 10,000 records
        let many: Vec<Record> = (0..10_000)
            .map(|i| rec(500 + i, 1_000 + i as i64 * 3, b"key", &json_event(i), &[]))
            .collect();
        round_trip(&many, codec, meta);
    }
}

#[test]
fn compression_shrinks_json_and_none_is_smaller_than_v1() {
    let json: Vec<Record> = (0..100)
        .map(|i| rec(i, 1, b"", &json_event(i), &[]))
        .collect();
    let raw: usize = json.iter().map(|r| r.value.len()).sum();
    let zstd = round_trip(&json, Compression::Zstd, BatchMeta::NONE);
    let lz4 = round_trip(&json, Compression::Lz4, BatchMeta::NONE);
    assert!(zstd * 100 <= raw * 30, "zstd {zstd} of {raw}");
    assert!(lz4 < raw, "lz4 {lz4} of {raw}");
    // 100 records of 100 bytes, as `obelisk bench` sends them: v1 stores 136 bytes each.
    let bench: Vec<Record> = (0..100)
        .map(|i| {
            rec(
                i,
                1_700_000_000_000_000_000 + i as i64 * 1000,
                b"",
                &[7u8; 100],
                &[],
            )
        })
        .collect();
    let len = round_trip(&bench, Compression::None, BatchMeta::NONE);
    assert!(len <= 100 * 115, "{len} bytes for 100 records");
}

#[test]
fn incompressible_or_too_dense_batches_are_stored_uncompressed() {
    // Empty records compress to almost nothing: never more than one record per two bytes stored.
    let empty: Vec<Record> = (0..5000).map(|i| rec(i, 0, b"", b"", &[])).collect();
    // Random values do not compress: stored plain rather than larger.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let random: Vec<Record> = (0..50u64)
        .map(|i| {
            let v: Vec<u8> = (0..200).map(|_| rand::Rng::r#gen::<u8>(&mut rng)).collect();
            rec(i, 0, b"", &v, &[])
        })
        .collect();
    for codec in CODECS {
        for (records, plain) in [(&empty, false), (&random, true)] {
            let mut out = Vec::new();
            Encoder::default().encode(records, codec, &BatchMeta::NONE, &mut out);
            let h = decode_header(&out, 0).unwrap();
            assert!(h.record_count as usize * MIN_STORED_BYTES_PER_RECORD <= h.frame_len);
            if plain {
                assert_eq!(h.compression, Compression::None, "{codec}");
            }
            assert_eq!(&decode(&Bytes::from(out), 0).unwrap().1, records);
        }
    }
}

#[test]
fn every_truncation_is_incomplete() {
    for codec in CODECS {
        let records: Vec<Record> = (0..20)
            .map(|i| rec(i, i as i64, b"k", &json_event(i), &[("a", b"b")]))
            .collect();
        let mut out = Vec::new();
        Encoder::default().encode(&records, codec, &BatchMeta::NONE, &mut out);
        for cut in 0..out.len() {
            let buf = Bytes::copy_from_slice(&out[..cut]);
            assert!(
                matches!(decode(&buf, 0), Err(DecodeError::Incomplete { .. })),
                "{codec}: cut at {cut}"
            );
        }
    }
}

#[test]
fn every_bit_flip_is_detected() {
    for codec in CODECS {
        let records: Vec<Record> = (0..4)
            .map(|i| rec(i, i as i64, b"k", &json_event(i), &[("a", b"b")]))
            .collect();
        let mut out = Vec::new();
        Encoder::default().encode(&records, codec, &BatchMeta::NONE, &mut out);
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let res = decode(&Bytes::from(bad), 0);
                assert!(res.is_err(), "{codec}: flip of byte {i} bit {bit} decoded");
            }
        }
    }
}

/// Recomputes the CRC of a frame (so a test can damage fields behind the checksum).
fn reseal(frame: &mut [u8]) {
    let crc = crc32c::crc32c(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_huge_declared_size_is_refused_before_allocating() {
    for codec in [Compression::Lz4, Compression::Zstd] {
        let records: Vec<Record> = (0..50)
            .map(|i| rec(i, 0, b"", &json_event(i), &[]))
            .collect();
        let mut out = Vec::new();
        Encoder::default().encode(&records, codec, &BatchMeta::NONE, &mut out);
        assert_eq!(decode_header(&out, 0).unwrap().compression, codec);
        out[58..62].copy_from_slice(&u32::MAX.to_le_bytes());
        reseal(&mut out);
        assert_eq!(
            decode(&Bytes::from(out), 0).unwrap_err(),
            DecodeError::Malformed
        );
    }
}

#[test]
fn a_wrong_declared_size_or_count_behind_a_valid_crc_is_refused() {
    for codec in CODECS {
        let records: Vec<Record> = (0..50)
            .map(|i| rec(i, 0, b"", &json_event(i), &[]))
            .collect();
        let mut out = Vec::new();
        Encoder::default().encode(&records, codec, &BatchMeta::NONE, &mut out);
        for (at, value) in [(58usize, 1u32), (20, 49), (20, 51), (20, 0), (20, u32::MAX)] {
            let mut bad = out.clone();
            let declared = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap());
            let value = if at == 58 { declared - value } else { value };
            bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
            reseal(&mut bad);
            assert!(
                decode(&Bytes::from(bad), 0).is_err(),
                "{codec}: field at {at} set to {value}"
            );
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024), pos in 0usize..1100) {
        let buf = Bytes::from(data);
        let _ = decode(&buf, pos);
        let _ = crate::storage::frame::decode(&buf, pos);
    }

    /// Arbitrary bytes behind a valid length, flag and CRC still never decode into garbage
    /// without every check passing, and never panic.
    #[test]
    fn arbitrary_sealed_frames_never_panic(mut data in proptest::collection::vec(any::<u8>(), 62..600), codec in 0u8..4) {
        let len = (data.len() - 4) as u32 | V2_FLAG;
        data[0..4].copy_from_slice(&len.to_le_bytes());
        data[8] = MAGIC;
        data[9] = codec;
        reseal(&mut data);
        let _ = decode(&Bytes::from(data), 0);
    }

    #[test]
    fn arbitrary_batches_round_trip(
        base in 0u64..u64::MAX / 2,
        codec in 0usize..3,
        records in proptest::collection::vec(
            (any::<i64>(),
             proptest::collection::vec(any::<u8>(), 0..32),
             proptest::collection::vec(any::<u8>(), 0..200),
             proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..3)),
            1..40),
    ) {
        let records: Vec<Record> = records.into_iter().enumerate().map(|(i, (ts, k, v, h))| Record {
            offset: base + i as u64,
            timestamp: ts,
            key: k.into(),
            value: v.into(),
            headers: h.into_iter().map(|(n, v)| (n, Bytes::from(v))).collect(),
        }).collect();
        let mut out = Vec::new();
        let meta = BatchMeta { producer_id: 1, producer_epoch: 0, base_sequence: 9, leader_epoch: 0 };
        Encoder::default().encode(&records, CODECS[codec], &meta, &mut out);
        let (h, back) = decode(&Bytes::from(out), 0).unwrap();
        prop_assert_eq!(back, records);
        prop_assert_eq!(h.meta, meta);
    }
}
