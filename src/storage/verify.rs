//! Checking what is on disk against the format: the one scanner of segment logs (used when a
//! segment opens and by `obelisk inspect`) and the checks of the index files against it.
//!
//! A scan reads a log frame by frame (length, CRC32C, offsets counting up from the base). When a
//! frame does not decode it looks for the next whole record after it and goes on from there, so
//! one damaged record costs its own offsets and no more:
//! - a **torn tail** is only what a crash can leave, an unfinished last write: a frame cut short
//!   by the end of the file with nothing whole after it, or a run of zero bytes to the end. It was
//!   never acknowledged, and recovery cuts it off;
//! - anything else is **damage**: the bytes are kept, the offsets they held are remembered as
//!   unreadable (reads of them fail with a data-loss error), and the offsets after them keep
//!   their records. When the damage reaches the end of the active segment, the number of records
//!   it held is unknown; it is bounded by the bytes it spans, so the partition's next offset is
//!   placed after every offset the damaged bytes could have held and no offset is ever reused.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::frame::{self, Frame};
use super::index::{TIME_INDEX_INTERVAL, TimeEntry, TimeIndex};
use super::layout::{SegmentFile, segment_path};
#[cfg(test)]
use super::record;
use super::record::{DecodeError, RECORD_OVERHEAD, Record};

/// Which segment of its partition a log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sealed, holding offsets up to `end` (exclusive): the next segment's base.
    Sealed { end: u64 },
    /// The partition's last segment, which takes appends.
    Active,
}

/// A stretch of a log that holds no readable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The offsets it held (may be empty when only stray bytes lie between two good records).
    pub offsets: Range<u64>,
    /// Where it lies in the log file.
    pub bytes: Range<u64>,
    pub reason: String,
}

/// An unfinished last write at the end of an active segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub at: u64,
    pub bytes: u64,
    pub reason: String,
}

/// What a scan of one log found.
#[derive(Debug)]
pub struct LogScan {
    /// Entry `i` is where offset `base + i` lives in the log: its record's first byte, or, for an
    /// unreadable offset, the first byte of the damage that holds it. So the entries never go
    /// down, and a read of good records stops at the damage's first byte.
    pub positions: Vec<u32>,
    pub times: TimeIndex,
    pub max_timestamp: i64,
    pub damage: Vec<Damage>,
    pub torn: Option<TornTail>,
    /// Bytes of the log to keep: the whole file, or up to a torn tail.
    pub kept_len: u64,
    /// Some readable frame is a v1 record.
    pub v1_frames: bool,
    /// Readable frames by format: v1 records, v2 batches, and v2 batches stored compressed.
    pub frames: FrameCounts,
    /// The readable batches of idempotent producers: who wrote them, their record count and
    /// first offset (to rebuild the producers' state).
    pub producer_batches: Vec<(super::batch::BatchMeta, u32, u64)>,
}

/// Readable frames of a log by format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    pub v1_records: u64,
    pub v2_batches: u64,
    pub compressed_batches: u64,
}

impl FrameCounts {
    pub fn add(&mut self, other: Self) {
        self.v1_records += other.v1_records;
        self.v2_batches += other.v2_batches;
        self.compressed_batches += other.compressed_batches;
    }
}

impl LogScan {
    /// Offsets the log accounts for, readable or damaged.
    pub fn records(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Offsets whose records can be read back.
    pub fn readable(&self) -> u64 {
        self.records()
            - self
                .damage
                .iter()
                .map(|d| d.offsets.end - d.offsets.start)
                .sum::<u64>()
    }
}

/// Scans a log whose first record has offset `base`; `each` sees every readable record in order.
pub fn scan_log(bytes: &Bytes, base: u64, role: Role, each: &mut dyn FnMut(&Record)) -> LogScan {
    let mut s = LogScan {
        positions: Vec::new(),
        times: TimeIndex::default(),
        max_timestamp: i64::MIN,
        damage: Vec::new(),
        torn: None,
        kept_len: bytes.len() as u64,
        v1_frames: false,
        frames: FrameCounts::default(),
        producer_batches: Vec::new(),
    };
    let end = match role {
        Role::Sealed { end } => Some(end),
        Role::Active => None,
    };
    let mut pos = 0usize;
    let mut last_time_entry = 0u64;
    let mut last_rel = None;
    while pos < bytes.len() {
        let expected = base + s.positions.len() as u64;
        if end.is_some_and(|e| expected >= e) {
            s.damage.push(Damage {
                offsets: expected..expected,
                bytes: pos as u64..bytes.len() as u64,
                reason: format!("bytes after the segment's last offset {}", expected - 1),
            });
            break;
        }
        let (problem, next) = match frame::decode(bytes, pos) {
            Ok((f, len))
                if f.base_offset() == expected
                    && pos <= u32::MAX as usize
                    && end.is_none_or(|e| expected + f.count() <= e) =>
            {
                // Every offset of a batch points at the batch: a read of one inside it decodes
                // the batch and skips the records before it.
                match &f {
                    Frame::V1(_) => {
                        s.v1_frames = true;
                        s.frames.v1_records += 1;
                    }
                    Frame::V2(h, _) => {
                        if h.meta.has_producer() {
                            s.producer_batches
                                .push((h.meta, h.record_count, h.base_offset));
                        }
                        s.frames.v2_batches += 1;
                        if h.compression != super::batch::Compression::None {
                            s.frames.compressed_batches += 1;
                        }
                    }
                }
                for rec in f.records() {
                    s.positions.push(pos as u32);
                    s.max_timestamp = s.max_timestamp.max(rec.timestamp);
                    if s.times.entries.is_empty()
                        || pos as u64 - last_time_entry >= TIME_INDEX_INTERVAL
                    {
                        s.times.entries.push(TimeEntry {
                            max_timestamp: s.max_timestamp,
                            relative_offset: (rec.offset - base) as u32,
                        });
                        last_time_entry = pos as u64;
                    }
                    each(rec);
                    last_rel = Some((rec.offset - base) as u32);
                }
                pos += len;
                continue;
            }
            Ok((f, _)) if f.base_offset() == expected => (
                format!(
                    "batch holds offsets {} to {}, past the segment's last offset",
                    expected,
                    expected + f.count() - 1
                ),
                next_whole_record(bytes, pos, expected, end),
            ),
            Ok((f, _)) => (
                format!("record has offset {}, expected {expected}", f.base_offset()),
                next_whole_record(bytes, pos, expected, end),
            ),
            Err(e) => {
                let next = next_whole_record(bytes, pos, expected, end);
                if role == Role::Active && next.is_none() && unfinished_write(&bytes[pos..], &e) {
                    s.torn = Some(TornTail {
                        at: pos as u64,
                        bytes: (bytes.len() - pos) as u64,
                        reason: e.to_string(),
                    });
                    s.kept_len = pos as u64;
                    break;
                }
                (e.to_string(), next)
            }
        };
        let (resume, lost_until) = match next {
            Some((at, offset)) => (at, offset),
            None => {
                let most = frame::max_offsets_in(bytes.len() - pos);
                (bytes.len(), end.unwrap_or(expected + most))
            }
        };
        s.damage.push(Damage {
            offsets: expected..lost_until,
            bytes: pos as u64..resume as u64,
            reason: problem,
        });
        s.positions
            .extend((expected..lost_until).map(|_| pos.min(u32::MAX as usize) as u32));
        pos = resume;
    }
    if let (Some(rel), Role::Sealed { .. }) = (last_rel, role) {
        s.times.close(rel, s.max_timestamp);
    }
    if let Some(e) = end {
        let expected = base + s.positions.len() as u64;
        if expected < e {
            // The log ends before the segment's last offset: those records are gone.
            s.damage.push(Damage {
                offsets: expected..e,
                bytes: s.kept_len..s.kept_len,
                reason: format!(
                    "the log ends after offset {}; offsets up to {} are missing",
                    expected.wrapping_sub(1),
                    e - 1
                ),
            });
            let at = s.kept_len.min(u64::from(u32::MAX)) as u32;
            s.positions.extend((expected..e).map(|_| at));
        }
    }
    s
}

/// Whether the bytes from a frame that failed to decode to the end of the file (with no whole
/// record after them) are what an unfinished write leaves: a frame cut short by the end of the
/// file, or zeros. A frame whose length field was damaged but whose bytes to the end of the file
/// check out is damage, not a torn write: its checksum could not match if the write had been cut.
fn unfinished_write(rest: &[u8], e: &DecodeError) -> bool {
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    if !matches!(e, DecodeError::Incomplete { .. }) {
        return false;
    }
    if rest.len() >= RECORD_OVERHEAD {
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        return crc32c::crc32c(&rest[8..]) != stored;
    }
    true
}

/// The first whole, valid frame (record or batch) after byte `from` whose first offset is at
/// least `expected` (and below `end`), that either ends the file or is followed by its successor:
/// where reading resumes after damage. Returns its byte position and first offset. Candidates are
/// screened by their length and offset fields before the checksum is computed, so this stays
/// linear in practice; the successor check keeps a frame stored inside some record's value from
/// being taken for a real one.
fn next_whole_record(
    bytes: &Bytes,
    from: usize,
    expected: u64,
    end: Option<u64>,
) -> Option<(usize, u64)> {
    let max_offset = end
        .unwrap_or(u64::MAX)
        .min(expected.saturating_add(frame::max_offsets_in(bytes.len() - from) + 1));
    for q in from + 1..bytes.len().saturating_sub(frame::MIN_FRAME - 1) {
        let Some(offset) = frame::screen(bytes, q) else {
            continue;
        };
        if offset < expected || offset >= max_offset {
            continue;
        }
        let Ok((f, len)) = frame::decode(bytes, q) else {
            continue;
        };
        let next = q + len;
        let after = f.base_offset() + f.count();
        if end.is_some_and(|e| after > e) {
            continue;
        }
        let chained = next == bytes.len()
            || matches!(frame::decode(bytes, next), Ok((g, _)) if g.base_offset() == after);
        if chained {
            return Some((q, f.base_offset()));
        }
    }
    None
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something the broker repairs on its next start without losing acknowledged data (a torn
    /// tail of the active segment, a stale or missing index).
    Warning,
    /// Data that cannot be read back, or an index that disagrees with its sealed log.
    Damage,
}

/// One problem, with where it is.
#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub file: PathBuf,
    /// Byte position in `file`, when the problem has one.
    pub position: Option<u64>,
    pub message: String,
}

/// What a scan found, as findings about the log file at `path`.
pub fn log_findings(path: &Path, scan: &LogScan) -> Vec<Finding> {
    let mut out: Vec<Finding> = scan
        .damage
        .iter()
        .map(|d| Finding {
            severity: Severity::Damage,
            file: path.to_path_buf(),
            position: Some(d.bytes.start),
            message: describe_damage(d),
        })
        .collect();
    if let Some(t) = &scan.torn {
        out.push(Finding {
            severity: Severity::Warning,
            file: path.to_path_buf(),
            position: Some(t.at),
            message: format!(
                "torn tail: the last {} bytes are an unfinished record ({}); it was never \
                 acknowledged and is cut off at the next start",
                t.bytes, t.reason
            ),
        });
    }
    out
}

/// A person's description of one damaged stretch.
pub fn describe_damage(d: &Damage) -> String {
    let span = d.bytes.end - d.bytes.start;
    match d.offsets.end - d.offsets.start {
        0 => format!("{}: {span} stray bytes between two good records", d.reason),
        1 => format!(
            "{}: offset {} is unreadable ({span} bytes)",
            d.reason, d.offsets.start
        ),
        _ => format!(
            "{}: offsets {} to {} are unreadable ({span} bytes)",
            d.reason,
            d.offsets.start,
            d.offsets.end - 1
        ),
    }
}

/// The fields of a frame's start that [`sealed_index_fits`] checks an index against.
#[derive(Debug, Clone, Copy)]
pub struct FrameHead {
    /// Bytes of the whole frame.
    pub len: u64,
    /// A v2 batch (else a v1 record).
    pub batch: bool,
    pub base_offset: u64,
    /// Records in the frame (1 for a v1 record).
    pub count: u64,
}

/// Bytes [`FrameHead::parse`] needs.
pub const FRAME_HEAD_LEN: usize = 24;

impl FrameHead {
    /// Parses the first [`FRAME_HEAD_LEN`] bytes of a frame (fewer for a v1 frame at the end of a
    /// log are fine: only its length is read then).
    pub fn parse(b: &[u8]) -> Option<Self> {
        let u32_at = |p: usize| {
            b.get(p..p + 4)
                .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
        };
        let raw = u32_at(0)?;
        let flag = super::batch::V2_FLAG;
        if raw & flag == 0 {
            return Some(Self {
                len: 4 + u64::from(raw),
                batch: false,
                base_offset: u32_at(8).map_or(u64::MAX, |lo| {
                    u64::from(lo) | (u64::from(u32_at(12).unwrap_or(0)) << 32)
                }),
                count: 1,
            });
        }
        Some(Self {
            len: 4 + u64::from(raw & !flag),
            batch: true,
            base_offset: u64::from(u32_at(12)?) | (u64::from(u32_at(16)?) << 32),
            count: u64::from(u32_at(20)?),
        })
    }
}

/// Whether a sealed index (its entries) fits a log of `log_len` bytes holding `expected` records
/// from offset `base`: a walk over the index that catches stale or scribbled entries without
/// scanning the log. `frame_at` reads the head of the frame at a position. A log of v1 records
/// (each offset its own frame, at least [`frame::MIN_FRAME`] apart) costs one read, of its last
/// frame; a log of v2 batches one read per batch, whose base offset, record count and length
/// must match the run of entries pointing at it.
pub fn sealed_index_fits(
    entries: impl ExactSizeIterator<Item = u32>,
    base: u64,
    expected: usize,
    log_len: u64,
    mut frame_at: impl FnMut(u64) -> Option<FrameHead>,
) -> bool {
    if entries.len() != expected {
        return false;
    }
    if expected == 0 {
        return log_len == 0;
    }
    let Some(first) = frame_at(0) else {
        return false;
    };
    let mut entries = entries.map(u64::from).peekable();
    if entries.peek() != Some(&0) {
        return false;
    }
    if !first.batch {
        let mut prev: Option<u64> = None;
        for p in entries {
            let ok = match prev {
                None => p == 0,
                Some(q) => p >= q + frame::MIN_FRAME as u64 && p < log_len,
            };
            if !ok {
                return false;
            }
            prev = Some(p);
        }
        let last = prev.unwrap_or(0);
        return frame_at(last).is_some_and(|h| !h.batch && last + h.len == log_len);
    }
    let mut i = 0u64;
    while let Some(p) = entries.next() {
        let mut run = 1u64;
        while entries.peek() == Some(&p) {
            entries.next();
            run += 1;
        }
        let next = entries.peek().copied().unwrap_or(log_len);
        let fits = frame_at(p).is_some_and(|h| {
            h.batch && h.base_offset == base + i && h.count == run && p + h.len == next
        });
        if !fits {
            return false;
        }
        i += run;
    }
    true
}

/// Reads an index file to check it; the findings instead when it cannot be read (`missing`: how a
/// missing file counts, if at all).
fn read_index_file(path: &Path, missing: Option<Severity>) -> Result<Vec<u8>, Vec<Finding>> {
    let finding = |severity, message: String| Finding {
        severity,
        file: path.to_path_buf(),
        position: None,
        message,
    };
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing
            .map(|sev| {
                finding(
                    sev,
                    "missing (rebuilt from the log at the next start)".into(),
                )
            })
            .into_iter()
            .collect()),
        Err(e) => Err(vec![finding(
            Severity::Damage,
            format!("cannot be read: {e}"),
        )]),
    }
}

/// Checks the offset index of a segment against its scanned log.
pub fn check_offset_index(dir: &Path, base: u64, role: Role, scan: &LogScan) -> Vec<Finding> {
    let path = segment_path(dir, base, SegmentFile::Index);
    let finding = |severity, position, message: String| Finding {
        severity,
        file: path.clone(),
        position,
        message,
    };
    // The active index lives in memory and is written when the segment seals: no file is fine.
    let missing = match role {
        Role::Sealed { .. } => Some(Severity::Warning),
        Role::Active => None,
    };
    let index = match read_index_file(&path, missing) {
        Ok(b) => b,
        Err(findings) => return findings,
    };
    // An active segment's index file is one left by an older version (or a crash while sealing):
    // the broker rebuilds it from the log, so a mismatch is stale, not damage.
    let severity = match role {
        Role::Sealed { .. } => Severity::Damage,
        Role::Active => Severity::Warning,
    };
    if !index.len().is_multiple_of(4) {
        return vec![finding(
            severity,
            None,
            format!(
                "{} bytes is not a whole number of 4-byte entries",
                index.len()
            ),
        )];
    }
    let entries = index.len() / 4;
    let records = scan.positions.len();
    let wrong_len = match role {
        Role::Sealed { .. } => entries != records,
        Role::Active => entries < records,
    };
    if wrong_len {
        return vec![finding(
            severity,
            None,
            format!("has {entries} entries but the log accounts for {records} offsets"),
        )];
    }
    for (i, &expected) in scan.positions.iter().enumerate() {
        let e = &index[i * 4..i * 4 + 4];
        let got = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        if got != expected {
            return vec![finding(
                severity,
                Some(i as u64 * 4),
                format!(
                    "entry {i} (offset {}) points at byte {got}, but that offset starts at byte \
                     {expected} of the log",
                    base + i as u64
                ),
            )];
        }
    }
    Vec::new()
}

/// Checks a sealed segment's time index; `running_max[i]` is the largest timestamp among the
/// readable records up to relative offset `i`.
pub fn check_time_index(dir: &Path, base: u64, running_max: &[i64]) -> Vec<Finding> {
    let path = segment_path(dir, base, SegmentFile::TimeIndex);
    let finding = |severity, position, message: String| Finding {
        severity,
        file: path.clone(),
        position,
        message,
    };
    let bytes = match read_index_file(&path, Some(Severity::Warning)) {
        Ok(b) => b,
        Err(findings) => return findings,
    };
    let Some(index) = TimeIndex::parse(&bytes) else {
        return vec![finding(
            Severity::Damage,
            None,
            format!(
                "{} bytes is not a whole number of 12-byte entries",
                bytes.len()
            ),
        )];
    };
    let mut previous = 0u32;
    for (k, entry) in index.entries.iter().enumerate() {
        let rel = entry.relative_offset;
        let problem = if rel < previous {
            Some(format!("entry {k} goes back to relative offset {rel}"))
        } else {
            match running_max.get(rel as usize) {
                Some(&m) if m != entry.max_timestamp => Some(format!(
                    "entry {k} says the newest timestamp up to offset {} is {}, the log says {m}",
                    base + u64::from(rel),
                    entry.max_timestamp
                )),
                None => Some(format!(
                    "entry {k} points at offset {} beyond the log's last record",
                    base + u64::from(rel)
                )),
                _ => None,
            }
        };
        if let Some(message) = problem {
            return vec![finding(Severity::Damage, Some(k as u64 * 12), message)];
        }
        previous = rel;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: u64, base: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 0..n {
            let r = Record {
                offset: base + i,
                timestamp: i as i64,
                key: Bytes::new(),
                value: Bytes::from(format!("value-{i:04}")),
                headers: Vec::new(),
            };
            record::encode(&r, &mut buf);
        }
        buf
    }

    fn frame_len() -> usize {
        log_of(1, 0).len()
    }

    fn scan(bytes: Vec<u8>, role: Role) -> LogScan {
        scan_log(&Bytes::from(bytes), 0, role, &mut |_| {})
    }

    #[test]
    fn clean_log() {
        let s = scan(log_of(10, 0), Role::Active);
        assert_eq!(s.records(), 10);
        assert_eq!(s.readable(), 10);
        assert!(s.damage.is_empty() && s.torn.is_none());
        assert_eq!(s.kept_len, 10 * frame_len() as u64);
    }

    #[test]
    fn cut_last_record_is_a_torn_tail() {
        let mut b = log_of(10, 0);
        b.truncate(b.len() - 3);
        let s = scan(b, Role::Active);
        assert_eq!(s.records(), 9);
        assert!(s.damage.is_empty());
        assert_eq!(s.torn.as_ref().map(|t| t.at), Some(9 * frame_len() as u64));
        assert_eq!(s.kept_len, 9 * frame_len() as u64);
    }

    #[test]
    fn zeros_at_the_end_are_a_torn_tail() {
        let mut b = log_of(5, 0);
        b.extend_from_slice(&[0u8; 300]);
        let s = scan(b, Role::Active);
        assert_eq!(s.records(), 5);
        assert!(s.torn.is_some() && s.damage.is_empty());
    }

    #[test]
    fn a_flipped_byte_in_the_middle_loses_one_offset_only() {
        let f = frame_len();
        let mut b = log_of(10, 0);
        b[3 * f + 20] ^= 0x40;
        let s = scan(b, Role::Active);
        assert!(s.torn.is_none());
        assert_eq!(s.records(), 10, "offsets after the damage keep their place");
        assert_eq!(s.readable(), 9);
        assert_eq!(s.damage.len(), 1);
        assert_eq!(s.damage[0].offsets, 3..4);
        assert_eq!(s.damage[0].bytes, 3 * f as u64..4 * f as u64);
        assert_eq!(s.positions[3], (3 * f) as u32);
        assert_eq!(s.positions[4], (4 * f) as u32);
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_damage_not_a_torn_tail() {
        let f = frame_len();
        let mut b = log_of(10, 0);
        b[9 * f + 20] ^= 0x01;
        let s = scan(b, Role::Active);
        assert!(s.torn.is_none());
        assert_eq!(s.damage.len(), 1);
        assert_eq!(s.damage[0].offsets.start, 9);
        assert!(s.records() >= 10, "offset 9 is never given out again");
    }

    #[test]
    fn a_damaged_length_of_the_last_record_is_damage_not_a_torn_tail() {
        let f = frame_len();
        let mut b = log_of(10, 0);
        b[9 * f + 1] ^= 0x10; // the length now reaches past the end of the file
        let s = scan(b, Role::Active);
        assert!(s.torn.is_none(), "its bytes to the end still check out");
        assert!(s.records() >= 10);
    }

    #[test]
    fn sealed_damage_uses_the_known_end() {
        let f = frame_len();
        let mut b = log_of(10, 0);
        b[9 * f + 20] ^= 0x01;
        let s = scan(b, Role::Sealed { end: 10 });
        assert_eq!(s.records(), 10);
        assert_eq!(s.damage[0].offsets, 9..10);
        let mut b = log_of(10, 0);
        b.truncate(7 * f);
        let s = scan(b, Role::Sealed { end: 10 });
        assert_eq!(
            s.damage[0].offsets,
            7..10,
            "a short sealed log lost its last records"
        );
    }

    #[test]
    fn every_single_flip_keeps_every_other_record_and_never_reuses_an_offset() {
        let f = frame_len();
        let clean = log_of(6, 0);
        for at in 0..clean.len() {
            let mut b = clean.clone();
            b[at] ^= 0xff;
            let mut seen = Vec::new();
            let s = scan_log(&Bytes::from(b), 0, Role::Active, &mut |r| {
                seen.push(r.offset)
            });
            assert!(s.torn.is_none(), "flip at {at} taken for a torn tail");
            assert!(s.records() >= 6, "flip at {at}: offsets would be reused");
            let hit = (at / f) as u64;
            for o in (0..6).filter(|&o| o != hit) {
                assert!(
                    seen.contains(&o),
                    "flip at {at}: offset {o} lost, read {seen:?}"
                );
            }
        }
    }

    #[test]
    fn a_frame_inside_a_value_is_not_taken_for_a_record() {
        // Record 1's value holds a whole frame claiming offset 2; record 1's header is damaged.
        let mut inner = Vec::new();
        record::encode(
            &Record {
                offset: 2,
                timestamp: 0,
                key: Bytes::new(),
                value: Bytes::from_static(b"inner"),
                headers: Vec::new(),
            },
            &mut inner,
        );
        let mut buf = Vec::new();
        for (offset, value) in [
            (0u64, Bytes::from_static(b"a")),
            (1, Bytes::from(inner)),
            (2, Bytes::from_static(b"b")),
        ] {
            record::encode(
                &Record {
                    offset,
                    timestamp: 0,
                    key: Bytes::new(),
                    value,
                    headers: Vec::new(),
                },
                &mut buf,
            );
        }
        let first = log_of(1, 0).len() - "value-0000".len() + 1;
        buf[first + 5] ^= 0x55; // record 1's checksum
        let mut seen = Vec::new();
        let s = scan_log(&Bytes::from(buf), 0, Role::Active, &mut |r| {
            seen.push((r.offset, r.value.clone()))
        });
        assert_eq!(s.damage[0].offsets, 1..2);
        assert_eq!(
            seen.last().map(|(o, v)| (*o, v.as_ref())),
            Some((2, &b"b"[..]))
        );
    }
}
