//! Checking one segment, read-only, with the storage's own verifier (`storage::verify`, the code
//! the broker runs when it opens the segment, so both always agree on what is damaged): every
//! record's frame and CRC32C, offsets counting up from the segment's base, the offset index entry
//! by entry, and a sealed segment's time index.

use std::fs;
use std::path::Path;

use bytes::Bytes;

use crate::storage::layout::{SegmentFile, segment_path};
use crate::storage::record::Record;
use crate::storage::verify::{self, LogScan};
pub use crate::storage::verify::{Finding, Role, Severity};

/// What a segment holds and what is wrong with it.
pub struct SegmentReport {
    pub bytes: u64,
    /// Offsets the segment accounts for, readable or not.
    pub offsets: u64,
    /// Records that read back.
    pub readable: u64,
    pub findings: Vec<Finding>,
    /// Readable frames by format (v1 records, v2 batches).
    pub frames: verify::FrameCounts,
}

/// Checks `<dir>/<base>.log` and its indexes; `each` sees every readable record.
///
/// # Errors
/// The log file cannot be read at all.
pub fn check(
    dir: &Path,
    base: u64,
    role: Role,
    each: &mut dyn FnMut(&Record),
) -> std::io::Result<SegmentReport> {
    let path = segment_path(dir, base, SegmentFile::Log);
    let bytes = Bytes::from(fs::read(&path)?);
    // The largest timestamp up to each relative offset, for the time index check.
    let mut running_max: Vec<i64> = Vec::new();
    let scan: LogScan = verify::scan_log(&bytes, base, role, &mut |r| {
        let rel = (r.offset - base) as usize;
        let prev = running_max.last().copied().unwrap_or(i64::MIN);
        running_max.resize(rel, prev);
        running_max.push(prev.max(r.timestamp));
        each(r);
    });
    let mut findings = verify::log_findings(&path, &scan);
    findings.extend(verify::check_offset_index(dir, base, role, &scan));
    if matches!(role, Role::Sealed { .. }) {
        findings.extend(verify::check_time_index(dir, base, &running_max));
    }
    Ok(SegmentReport {
        bytes: bytes.len() as u64,
        offsets: scan.records(),
        readable: scan.readable(),
        frames: scan.frames,
        findings,
    })
}
