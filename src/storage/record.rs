//! One record on disk: its frame (length + CRC32C + fields), encoding and decoding.
//!
//! ```text
//! len u32 LE      bytes after this field (crc .. end of headers)
//! crc u32 LE      CRC32C of the bytes after this field
//! offset u64 LE
//! timestamp i64 LE   Unix nanoseconds
//! key_len u32 LE, key
//! value_len u32 LE, value
//! header_count u32 LE, then per header: name_len u16 LE, name (UTF-8), value_len u32 LE, value
//! ```
//! Decoding slices the caller's [`Bytes`], so keys and values are never copied.

use bytes::{BufMut, Bytes};

/// Bytes of framing around a record's key, value and headers.
pub const RECORD_OVERHEAD: usize = 4 + 4 + 8 + 8 + 4 + 4 + 4;
/// Bytes of framing per header beyond its name and value.
const HEADER_OVERHEAD: usize = 2 + 4;

/// A stored record, as read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    /// Unix time in nanoseconds.
    pub timestamp: i64,
    pub key: Bytes,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl Record {
    /// The size of this record's frame on disk.
    pub fn encoded_len(&self) -> usize {
        encoded_len(&self.key, &self.value, &self.headers)
    }
}

/// The size on disk of a record with these fields.
pub fn encoded_len(key: &[u8], value: &[u8], headers: &[(String, Bytes)]) -> usize {
    RECORD_OVERHEAD
        + key.len()
        + value.len()
        + headers
            .iter()
            .map(|(k, v)| HEADER_OVERHEAD + k.len() + v.len())
            .sum::<usize>()
}

/// Appends the frame of `record` to `out`.
///
/// The caller guarantees the lengths fit their fields (the broker caps record size far below 4 GiB
/// and header names below 64 KiB).
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = record.encoded_len() - 4;
    out.reserve(body_len + 4);
    out.put_u32_le(body_len as u32);
    out.put_u32_le(0); // CRC placeholder
    out.put_u64_le(record.offset);
    out.put_i64_le(record.timestamp);
    out.put_u32_le(record.key.len() as u32);
    out.put_slice(&record.key);
    out.put_u32_le(record.value.len() as u32);
    out.put_slice(&record.value);
    out.put_u32_le(record.headers.len() as u32);
    for (name, value) in &record.headers {
        out.put_u16_le(name.len() as u16);
        out.put_slice(name.as_bytes());
        out.put_u32_le(value.len() as u32);
        out.put_slice(value);
    }
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes did not decode as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends inside the frame: a torn write or a short read.
    #[error("incomplete record: need {needed} bytes, have {available}")]
    Incomplete { needed: usize, available: usize },
    #[error("record length {0} is impossible")]
    BadLength(u32),
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record fields overrun the frame")]
    Malformed,
    #[error("header name is not UTF-8")]
    HeaderName,
    /// A v2 batch of a format version this build does not know.
    #[error("batch has format version {0}, expected 2")]
    Version(u8),
    #[error("batch has unknown compression codec {0}")]
    Codec(u8),
    #[error("batch does not decompress: {0}")]
    Decompress(String),
}

/// Largest frame body accepted when decoding; anything larger is corruption.
pub const MAX_FRAME_BODY: u32 = 1 << 30;

/// Decodes the record whose frame starts at `buf[pos..]`; returns it and the frame's total length.
///
/// # Errors
/// [`DecodeError::Incomplete`] when the frame is cut short; the others when the bytes are corrupt.
pub fn decode(buf: &Bytes, pos: usize) -> Result<(Record, usize), DecodeError> {
    let available = buf.len().saturating_sub(pos);
    if available < 8 {
        return Err(DecodeError::Incomplete {
            needed: 8,
            available,
        });
    }
    let body_len = u32::from_le_bytes(le4(&buf[pos..]));
    if body_len > MAX_FRAME_BODY || (body_len as usize) < RECORD_OVERHEAD - 4 {
        return Err(DecodeError::BadLength(body_len));
    }
    let total = 4 + body_len as usize;
    if available < total {
        return Err(DecodeError::Incomplete {
            needed: total,
            available,
        });
    }
    let stored = u32::from_le_bytes(le4(&buf[pos + 4..]));
    let computed = crc32c::crc32c(&buf[pos + 8..pos + total]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let mut cur = Cursor {
        buf,
        pos: pos + 8,
        end: pos + total,
    };
    let offset = cur.u64()?;
    let timestamp = cur.u64()? as i64;
    let key_len = cur.u32()? as usize;
    let key = cur.bytes(key_len)?;
    let value_len = cur.u32()? as usize;
    let value = cur.bytes(value_len)?;
    let count = cur.u32()?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name_len = cur.u16()? as usize;
        let name = cur.bytes(name_len)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| DecodeError::HeaderName)?;
        let value_len = cur.u32()? as usize;
        headers.push((name, cur.bytes(value_len)?));
    }
    if cur.pos != cur.end {
        return Err(DecodeError::Malformed);
    }
    Ok((
        Record {
            offset,
            timestamp,
            key,
            value,
            headers,
        },
        total,
    ))
}

fn le4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let next = start.checked_add(n).ok_or(DecodeError::Malformed)?;
        if next > self.end {
            return Err(DecodeError::Malformed);
        }
        self.pos = next;
        Ok(start)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let at = self.take(2)?;
        Ok(u16::from_le_bytes([self.buf[at], self.buf[at + 1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.take(4)?;
        Ok(u32::from_le_bytes(le4(&self.buf[at..])))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let at = self.take(8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[at..at + 8]);
        Ok(u64::from_le_bytes(b))
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let at = self.take(n)?;
        Ok(self.buf.slice(at..at + n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(offset: u64) -> Record {
        Record {
            offset,
            timestamp: -1,
            key: Bytes::from_static(b"user-123"),
            value: Bytes::from_static(b"hello"),
            headers: vec![("trace".into(), Bytes::from_static(b"\x00\x01"))],
        }
    }

    #[test]
    fn round_trip_and_length() {
        let mut out = Vec::new();
        encode(&sample(7), &mut out);
        encode(&sample(8), &mut out);
        let buf = Bytes::from(out);
        let (a, n) = decode(&buf, 0).unwrap();
        assert_eq!(a, sample(7));
        assert_eq!(n, sample(7).encoded_len());
        let (b, m) = decode(&buf, n).unwrap();
        assert_eq!(b, sample(8));
        assert_eq!(n + m, buf.len());
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let mut out = Vec::new();
        encode(&sample(1), &mut out);
        for cut in 0..out.len() {
            let buf = Bytes::copy_from_slice(&out[..cut]);
            assert!(
                matches!(decode(&buf, 0), Err(DecodeError::Incomplete { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode(&sample(1), &mut out);
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let res = decode(&Bytes::from(bad), 0);
                assert!(
                    res.is_err(),
                    "flip of byte {i} bit {bit} decoded as {res:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), pos in 0usize..600) {
            let _ = decode(&Bytes::from(data), pos);
        }

        #[test]
        fn arbitrary_records_round_trip(
            offset in any::<u64>(), timestamp in any::<i64>(),
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::collection::vec(any::<u8>(), 0..256),
            headers in proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..4),
        ) {
            let rec = Record {
                offset, timestamp, key: key.into(), value: value.into(),
                headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
            };
            let mut out = Vec::new();
            encode(&rec, &mut out);
            prop_assert_eq!(out.len(), rec.encoded_len());
            let (back, n) = decode(&Bytes::from(out), 0).unwrap();
            prop_assert_eq!(n, rec.encoded_len());
            prop_assert_eq!(back, rec);
        }
    }
}
