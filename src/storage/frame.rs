//! The frames a segment log holds: v1 records ([`super::record`]) and v2 batches
//! ([`super::batch`]), told apart by bit 31 of their length field. A log may hold both: segments
//! written before format v2 hold v1 frames, new ones v2 batches.

use bytes::Bytes;

use super::batch::{self, BatchHeader};
use super::record::{self, DecodeError, RECORD_OVERHEAD, Record};

/// One decoded frame.
#[derive(Debug)]
pub enum Frame {
    V1(Record),
    V2(BatchHeader, Vec<Record>),
}

impl Frame {
    /// The offset of the frame's first record.
    pub fn base_offset(&self) -> u64 {
        match self {
            Self::V1(r) => r.offset,
            Self::V2(h, _) => h.base_offset,
        }
    }

    /// How many offsets the frame holds.
    pub fn count(&self) -> u64 {
        match self {
            Self::V1(_) => 1,
            Self::V2(h, _) => u64::from(h.record_count),
        }
    }

    pub fn records(&self) -> &[Record] {
        match self {
            Self::V1(r) => std::slice::from_ref(r),
            Self::V2(_, rs) => rs,
        }
    }

    pub fn into_records(self) -> Vec<Record> {
        match self {
            Self::V1(r) => vec![r],
            Self::V2(_, rs) => rs,
        }
    }
}

/// Decodes the frame at `buf[pos..]`; returns it and its length in bytes.
///
/// # Errors
/// [`DecodeError::Incomplete`] when the frame is cut short; the others when it is corrupt.
pub fn decode(buf: &Bytes, pos: usize) -> Result<(Frame, usize), DecodeError> {
    if batch::is_batch(buf, pos) {
        let (h, records) = batch::decode(buf, pos)?;
        let len = h.frame_len;
        Ok((Frame::V2(h, records), len))
    } else {
        let (r, len) = record::decode(buf, pos)?;
        Ok((Frame::V1(r), len))
    }
}

/// The smallest frame of either version.
pub const MIN_FRAME: usize = RECORD_OVERHEAD;

/// The most offsets `bytes` bytes of log can hold, in either version (see
/// [`batch::MIN_STORED_BYTES_PER_RECORD`]).
pub fn max_offsets_in(bytes: usize) -> u64 {
    (bytes / batch::MIN_STORED_BYTES_PER_RECORD).max(1) as u64
}

/// Screens a candidate frame start at `q` by its length and offset fields without checksumming
/// it: the frame's first offset when it could be a frame ending inside `buf`.
pub fn screen(buf: &[u8], q: usize) -> Option<u64> {
    let u32_at = |p: usize| {
        buf.get(p..p + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let raw = u32_at(q)?;
    if raw & batch::V2_FLAG != 0 {
        let len = (raw & !batch::V2_FLAG) as usize;
        if len < batch::HEADER_LEN - 4 || q + 4 + len > buf.len() || buf[q + 8] != batch::MAGIC {
            return None;
        }
        Some(u64::from(u32_at(q + 12)?) | (u64::from(u32_at(q + 16)?) << 32))
    } else {
        let len = raw as usize;
        if len < RECORD_OVERHEAD - 4 || q + 4 + len > buf.len() {
            return None;
        }
        Some(u64::from(u32_at(q + 8)?) | (u64::from(u32_at(q + 12)?) << 32))
    }
}
