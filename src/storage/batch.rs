//! Format version 2: a record batch, one frame holding many records under one header and one
//! CRC32C, its records section optionally compressed as a unit (see `docs/storage.md`).
//!
//! ```text
//! 0  len u32 LE            bit 31 set (a v2 batch; a v1 record never sets it), bits 0..31:
//!                          bytes after this field
//! 4  crc u32 LE            CRC32C of every byte after this field
//! 8  magic u8 = 2          format version
//! 9  codec u8              0 none, 1 lz4, 2 zstd
//! 10 reserved u16 = 0
//! 12 base_offset u64 LE    offset of the first record; the others follow densely
//! 20 record_count u32 LE   at least 1
//! 24 first_timestamp i64   Unix ns of the first record
//! 32 max_timestamp i64     largest timestamp in the batch
//! 40 producer_id i64       -1: no idempotent producer
//! 48 producer_epoch i16    -1 without a producer
//! 50 base_sequence i32     the first record's sequence number, -1 without a producer
//! 54 leader_epoch u32      0 until replication exists
//! 58 records_len u32       bytes of the records section once decompressed
//! 62 records section       (compressed with `codec`)
//! ```
//! Each record in the section: varint offset delta (its index in the batch), zigzag varint
//! timestamp delta from `first_timestamp`, varint key length + key, varint value length + value,
//! varint header count, then per header varint name length + name (UTF-8), varint value length +
//! value.
//!
//! Decoding never trusts a length before checking it: the frame must fit the buffer and its CRC
//! must match before anything is decompressed, a compressed section may declare at most
//! [`MAX_DECOMPRESSED`] bytes, which is checked before allocating, and a batch holds at most one
//! record per [`MIN_STORED_BYTES_PER_RECORD`] bytes of its frame, so the offsets a stretch of log
//! can hold stay bounded by its size (what recovery needs after damage).

use bytes::{BufMut, Bytes};

use super::record::{DecodeError, MAX_FRAME_BODY, Record};

/// Set in the length field of a v2 batch.
pub const V2_FLAG: u32 = 0x8000_0000;
/// Format version carried in every batch.
pub const MAGIC: u8 = 2;
/// Bytes of a batch frame before its records section.
pub const HEADER_LEN: usize = 62;
/// The smallest encoding of one record in a records section.
const MIN_RECORD_LEN: usize = 5;
/// A batch never holds more records than its frame's bytes over this (the writer stores a batch
/// uncompressed when compression would beat it), so `n` bytes of log hold at most `n / 2`
/// offsets.
pub const MIN_STORED_BYTES_PER_RECORD: usize = 2;
/// Largest records section a compressed batch may declare: decompression allocates at most this.
/// The writer compresses chunks of at most [`COMPRESS_CHUNK_BYTES`] and stores anything larger
/// (one huge record) uncompressed.
pub const MAX_DECOMPRESSED: usize = 16 << 20;
/// Records section size the writer aims at per compressed batch.
pub const COMPRESS_CHUNK_BYTES: usize = 1 << 20;
/// Most records the writer puts in one batch.
pub const MAX_BATCH_RECORDS: usize = 1 << 16;

/// How a batch's records section is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Lz4 => 1,
            Self::Zstd => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Lz4),
            2 => Some(Self::Zstd),
            _ => None,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "none" => Ok(Self::None),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown compression {other:?} (expected none, lz4 or zstd)"
            )),
        }
    }
}

impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who wrote a batch: the idempotent producer's identity, and the leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// -1 when the batch came from no idempotent producer.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record (the others follow), -1 without a producer.
    pub base_sequence: i32,
    pub leader_epoch: u32,
}

impl BatchMeta {
    /// A batch from no idempotent producer.
    pub const NONE: Self = Self {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        leader_epoch: 0,
    };

    pub fn has_producer(&self) -> bool {
        self.producer_id >= 0
    }
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub compression: Compression,
    pub meta: BatchMeta,
    /// Bytes of the whole frame.
    pub frame_len: usize,
}

/// Reusable buffers (and compression contexts) of a writer.
#[derive(Default)]
pub struct Encoder {
    raw: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

/// zstd level of stored batches: level 1 already takes JSON to well under a third of its size,
/// at several times the speed of the default level.
const ZSTD_LEVEL: i32 = 1;

impl Encoder {
    /// Appends one batch frame holding `records` (whose offsets must count up by one from the
    /// first) to `out`, compressed with `compression` unless that would not pay (a section
    /// larger than [`MAX_DECOMPRESSED`], or a batch denser than [`MIN_STORED_BYTES_PER_RECORD`]).
    /// Returns the frame's length.
    ///
    /// The caller keeps a batch to at most [`MAX_BATCH_RECORDS`] records, and its records to the
    /// broker's size limits (far below 2 GiB).
    pub fn encode(
        &mut self,
        records: &[Record],
        compression: Compression,
        meta: &BatchMeta,
        out: &mut Vec<u8>,
    ) -> usize {
        debug_assert!(!records.is_empty());
        debug_assert!(records.len() <= MAX_BATCH_RECORDS);
        let base = records[0].offset;
        let first_ts = records[0].timestamp;
        self.raw.clear();
        let mut max_ts = i64::MIN;
        for (i, r) in records.iter().enumerate() {
            debug_assert_eq!(r.offset, base + i as u64);
            max_ts = max_ts.max(r.timestamp);
            put_varint(&mut self.raw, i as u64);
            put_varint(&mut self.raw, zigzag(r.timestamp.wrapping_sub(first_ts)));
            put_bytes(&mut self.raw, &r.key);
            put_bytes(&mut self.raw, &r.value);
            put_varint(&mut self.raw, r.headers.len() as u64);
            for (name, value) in &r.headers {
                put_bytes(&mut self.raw, name.as_bytes());
                put_bytes(&mut self.raw, value);
            }
        }
        let start = out.len();
        let header = |out: &mut Vec<u8>, codec: Compression| {
            out.put_u32_le(0); // length, once known
            out.put_u32_le(0); // CRC placeholder
            out.put_u8(MAGIC);
            out.put_u8(codec.code());
            out.put_u16_le(0);
            out.put_u64_le(base);
            out.put_u32_le(records.len() as u32);
            out.put_i64_le(first_ts);
            out.put_i64_le(max_ts);
            out.put_i64_le(meta.producer_id);
            out.put_i16_le(meta.producer_epoch);
            out.put_i32_le(meta.base_sequence);
            out.put_u32_le(meta.leader_epoch);
            out.put_u32_le(self.raw.len() as u32);
        };
        let compressed = if compression == Compression::None || self.raw.len() > MAX_DECOMPRESSED {
            None
        } else {
            header(out, compression);
            let ok = match compression {
                Compression::None => false,
                Compression::Lz4 => {
                    out.extend_from_slice(&lz4_flex::block::compress(&self.raw));
                    true
                }
                Compression::Zstd => {
                    let level_ok = self.zstd.is_some()
                        || zstd::bulk::Compressor::new(ZSTD_LEVEL)
                            .map(|c| self.zstd = Some(c))
                            .is_ok();
                    match self.zstd.as_mut().filter(|_| level_ok) {
                        Some(c) => match c.compress(&self.raw) {
                            Ok(z) => {
                                out.extend_from_slice(&z);
                                true
                            }
                            Err(_) => false,
                        },
                        None => false,
                    }
                }
            };
            let len = out.len() - start;
            if ok
                && records.len() * MIN_STORED_BYTES_PER_RECORD <= len
                && len < HEADER_LEN + self.raw.len()
            {
                Some(())
            } else {
                out.truncate(start);
                None
            }
        };
        if compressed.is_none() {
            header(out, Compression::None);
            out.extend_from_slice(&self.raw);
        }
        let len = out.len() - start;
        let body = (len - 4) as u32;
        out[start..start + 4].copy_from_slice(&(body | V2_FLAG).to_le_bytes());
        let crc = crc32c::crc32c(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        len
    }
}

/// Whether the frame at `buf[pos..]` is a v2 batch (by its length field's flag).
pub fn is_batch(buf: &[u8], pos: usize) -> bool {
    buf.get(pos..pos + 4)
        .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & V2_FLAG != 0)
}

/// Decodes the header of the batch frame at `buf[pos..]`, checking its length, CRC and fields
/// (not the records section).
///
/// # Errors
/// [`DecodeError::Incomplete`] when the frame is cut short; the others when it is corrupt.
pub fn decode_header(buf: &[u8], pos: usize) -> Result<BatchHeader, DecodeError> {
    let available = buf.len().saturating_sub(pos);
    if available < 8 {
        return Err(DecodeError::Incomplete {
            needed: 8,
            available,
        });
    }
    let b = &buf[pos..];
    let raw_len = le_u32(&b[0..]);
    let body_len = raw_len & !V2_FLAG;
    if raw_len & V2_FLAG == 0 || body_len > MAX_FRAME_BODY || (body_len as usize) < HEADER_LEN - 4 {
        return Err(DecodeError::BadLength(raw_len));
    }
    let total = 4 + body_len as usize;
    if available < total {
        return Err(DecodeError::Incomplete {
            needed: total,
            available,
        });
    }
    let stored = le_u32(&b[4..]);
    let computed = crc32c::crc32c(&b[8..total]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    if b[8] != MAGIC {
        return Err(DecodeError::Version(b[8]));
    }
    let compression = Compression::from_code(b[9]).ok_or(DecodeError::Codec(b[9]))?;
    let record_count = le_u32(&b[20..]);
    let records_len = le_u32(&b[58..]) as usize;
    let section = total - HEADER_LEN;
    let count_ok = record_count >= 1
        && (record_count as usize).saturating_mul(MIN_STORED_BYTES_PER_RECORD) <= total
        && (record_count as usize).saturating_mul(MIN_RECORD_LEN) <= records_len;
    let len_ok = match compression {
        Compression::None => records_len == section,
        _ => records_len <= MAX_DECOMPRESSED,
    };
    if !count_ok || !len_ok || b[10] != 0 || b[11] != 0 {
        return Err(DecodeError::Malformed);
    }
    Ok(BatchHeader {
        base_offset: le_u64(&b[12..]),
        record_count,
        first_timestamp: le_u64(&b[24..]) as i64,
        max_timestamp: le_u64(&b[32..]) as i64,
        compression,
        meta: BatchMeta {
            producer_id: le_u64(&b[40..]) as i64,
            producer_epoch: i16::from_le_bytes([b[48], b[49]]),
            base_sequence: le_u32(&b[50..]) as i32,
            leader_epoch: le_u32(&b[54..]),
        },
        frame_len: total,
    })
}

/// Decodes the batch frame at `buf[pos..]`: its header and every record. Keys and values slice
/// `buf` (uncompressed) or the one decompressed buffer of the batch.
///
/// # Errors
/// As [`decode_header`], and [`DecodeError::Malformed`] / [`DecodeError::Decompress`] when the
/// records section does not decode to exactly what the header declares.
pub fn decode(buf: &Bytes, pos: usize) -> Result<(BatchHeader, Vec<Record>), DecodeError> {
    let h = decode_header(buf, pos)?;
    let section_start = pos + HEADER_LEN;
    let section_end = pos + h.frame_len;
    let records_len = le_u32(&buf[pos + 58..]) as usize;
    let section = match h.compression {
        Compression::None => buf.slice(section_start..section_end),
        Compression::Lz4 => Bytes::from(
            lz4_flex::block::decompress(&buf[section_start..section_end], records_len)
                .map_err(|e| DecodeError::Decompress(e.to_string()))?,
        ),
        Compression::Zstd => Bytes::from(
            zstd::bulk::decompress(&buf[section_start..section_end], records_len)
                .map_err(|e| DecodeError::Decompress(e.to_string()))?,
        ),
    };
    if section.len() != records_len {
        return Err(DecodeError::Decompress(format!(
            "records section is {} bytes, the header says {records_len}",
            section.len()
        )));
    }
    let mut cur = VarCursor {
        buf: &section,
        pos: 0,
    };
    let mut records = Vec::with_capacity(h.record_count as usize);
    let mut max_ts = i64::MIN;
    for i in 0..u64::from(h.record_count) {
        if cur.varint()? != i {
            return Err(DecodeError::Malformed);
        }
        let timestamp = h.first_timestamp.wrapping_add(unzigzag(cur.varint()?));
        max_ts = max_ts.max(timestamp);
        let key = cur.bytes()?;
        let value = cur.bytes()?;
        let count = cur.varint()?;
        // Each header takes at least two bytes: a count beyond what is left is corrupt.
        if count > (section.len() - cur.pos) as u64 / 2 {
            return Err(DecodeError::Malformed);
        }
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = cur.bytes()?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| DecodeError::HeaderName)?;
            headers.push((name, cur.bytes()?));
        }
        records.push(Record {
            offset: h.base_offset.wrapping_add(i),
            timestamp,
            key,
            value,
            headers,
        });
    }
    if cur.pos != section.len()
        || max_ts != h.max_timestamp
        || records[0].timestamp != h.first_timestamp
    {
        return Err(DecodeError::Malformed);
    }
    Ok((h, records))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The stored size of a record inside an uncompressed batch (for sizing batches).
pub fn record_len(r: &Record) -> usize {
    fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }
    let bytes = |n: usize| varint_len(n as u64) + n;
    // Offset delta and timestamp delta: at most 3 and 10 bytes; count them as 3 + 4 on average.
    7 + bytes(r.key.len())
        + bytes(r.value.len())
        + varint_len(r.headers.len() as u64)
        + r.headers
            .iter()
            .map(|(k, v)| bytes(k.len()) + bytes(v.len()))
            .sum::<usize>()
}

struct VarCursor<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl VarCursor<'_> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(DecodeError::Malformed)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(DecodeError::Malformed);
        }
        let at = self.pos;
        self.pos += n as usize;
        Ok(self.buf.slice(at..self.pos))
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
