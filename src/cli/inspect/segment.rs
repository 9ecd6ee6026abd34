//! Checking one segment, read-only: every record's frame and CRC32C, offsets counting up from the
//! segment's base, the offset index entry by entry, and a sealed segment's time index.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::storage::record::{self, DecodeError, Record};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Data that cannot be read back, or an index that disagrees with its sealed log.
    Damage,
    /// Something the broker repairs on its next start without losing acknowledged data (a torn
    /// tail of the active segment, a stale or missing index).
    Warning,
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

/// What a segment holds and what is wrong with it.
pub struct SegmentReport {
    pub bytes: u64,
    /// Readable records (from `base`, in order).
    pub records: u64,
    /// True when reading stopped before the end of the log because of damage.
    pub damaged: bool,
    pub findings: Vec<Finding>,
}

/// Whether the segment is the partition's last one, which takes appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sealed,
    Active,
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
    let log = dir.join(format!("{base:020}.log"));
    let bytes = Bytes::from(fs::read(&log)?);
    let mut report = SegmentReport {
        bytes: bytes.len() as u64,
        records: 0,
        damaged: false,
        findings: Vec::new(),
    };
    let finding = |severity, position, message: String| Finding {
        severity,
        file: log.clone(),
        position,
        message,
    };
    let mut positions: Vec<u64> = Vec::new();
    let mut running_max: Vec<i64> = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let expected = base + positions.len() as u64;
        match record::decode(&bytes, pos) {
            Ok((rec, len)) if rec.offset == expected => {
                positions.push(pos as u64);
                let prev = running_max.last().copied().unwrap_or(i64::MIN);
                running_max.push(prev.max(rec.timestamp));
                each(&rec);
                pos += len;
            }
            Ok((rec, _)) => {
                report.damaged = true;
                report.findings.push(finding(
                    Severity::Damage,
                    Some(pos as u64),
                    format!(
                        "record has offset {}, expected {expected}; offsets from {expected} on \
                         are unreadable",
                        rec.offset
                    ),
                ));
                break;
            }
            Err(e) => {
                let next = next_whole_record(&bytes, pos, expected);
                // An unfinished record at the very end of the active segment is what a crash
                // mid-write leaves; anything followed by whole records is damage.
                if role == Role::Active
                    && next.is_none()
                    && matches!(e, DecodeError::Incomplete { .. })
                {
                    report.findings.push(finding(
                        Severity::Warning,
                        Some(pos as u64),
                        format!(
                            "torn tail: the last {} bytes are an unfinished record ({e}); it was \
                             never acknowledged and is cut off at the next start",
                            bytes.len() - pos
                        ),
                    ));
                    break;
                }
                report.damaged = true;
                let after = match next {
                    Some((at, offset)) if offset == expected + 1 => format!(
                        "; the next whole record is offset {offset} at byte {at}, so offset \
                         {expected} is unreadable"
                    ),
                    Some((at, offset)) => format!(
                        "; the next whole record is offset {offset} at byte {at}, so offsets \
                         {expected} to {} are unreadable",
                        offset.saturating_sub(1)
                    ),
                    None => format!(
                        "; offsets from {expected} on ({} bytes) are unreadable",
                        bytes.len() - pos
                    ),
                };
                report.findings.push(finding(
                    Severity::Damage,
                    Some(pos as u64),
                    format!("{e}{after}"),
                ));
                break;
            }
        }
    }
    report.records = positions.len() as u64;
    report.findings.extend(check_offset_index(
        dir,
        base,
        role,
        &positions,
        report.damaged,
    ));
    if role == Role::Sealed {
        report
            .findings
            .extend(check_time_index(dir, base, &running_max, report.damaged));
    }
    Ok(report)
}

/// The first whole, valid record after byte `from` whose offset is at least `expected`: where
/// reading could resume after damage. Candidates are screened by their length and offset fields
/// before the checksum is computed, so this stays linear in practice.
fn next_whole_record(bytes: &Bytes, from: usize, expected: u64) -> Option<(usize, u64)> {
    let min_body = record::RECORD_OVERHEAD - 4;
    let max_offset = expected + (bytes.len() - from) as u64 / record::RECORD_OVERHEAD as u64;
    let u32_at =
        |q: usize| u32::from_le_bytes([bytes[q], bytes[q + 1], bytes[q + 2], bytes[q + 3]]);
    for q in from + 1..bytes.len().saturating_sub(record::RECORD_OVERHEAD - 1) {
        let len = u32_at(q) as usize;
        if len < min_body || q + 4 + len > bytes.len() {
            continue;
        }
        let offset = u64::from(u32_at(q + 8)) | (u64::from(u32_at(q + 12)) << 32);
        if offset < expected || offset > max_offset {
            continue;
        }
        if let Ok((rec, _)) = record::decode(bytes, q) {
            return Some((q, rec.offset));
        }
    }
    None
}

fn check_offset_index(
    dir: &Path,
    base: u64,
    role: Role,
    positions: &[u64],
    damaged: bool,
) -> Vec<Finding> {
    let path = dir.join(format!("{base:020}.index"));
    // The active index is not fsynced and is rebuilt from the log at every start, so a mismatch
    // there is stale, not damaged; a sealed index was fsynced when the segment sealed.
    let severity = match role {
        Role::Sealed => Severity::Damage,
        Role::Active => Severity::Warning,
    };
    let finding = |severity, position, message: String| Finding {
        severity,
        file: path.clone(),
        position,
        message,
    };
    let index = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![finding(
                Severity::Warning,
                None,
                "missing (rebuilt from the log at the next start)".into(),
            )];
        }
        Err(e) => return vec![finding(severity, None, format!("cannot be read: {e}"))],
    };
    if index.len() % 4 != 0 {
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
    // A sealed index holds exactly one entry per record; an active one is preallocated.
    let too_short = entries < positions.len();
    let wrong_len = role == Role::Sealed && !damaged && entries != positions.len();
    if too_short || wrong_len {
        return vec![finding(
            severity,
            None,
            format!(
                "has {entries} entries but the log has {} records",
                positions.len()
            ),
        )];
    }
    for (i, &expected) in positions.iter().enumerate() {
        let e = &index[i * 4..i * 4 + 4];
        let got = u64::from(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
        if got != expected {
            return vec![finding(
                severity,
                Some(i as u64 * 4),
                format!(
                    "entry {i} (offset {}) points at byte {got}, but that record starts at \
                     byte {expected} of the log",
                    base + i as u64
                ),
            )];
        }
    }
    Vec::new()
}

fn check_time_index(dir: &Path, base: u64, running_max: &[i64], damaged: bool) -> Vec<Finding> {
    let path = dir.join(format!("{base:020}.timeindex"));
    let finding = |severity, position, message: String| Finding {
        severity,
        file: path.clone(),
        position,
        message,
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![finding(
                Severity::Warning,
                None,
                "missing (rebuilt from the log at the next start)".into(),
            )];
        }
        Err(e) => {
            return vec![finding(
                Severity::Damage,
                None,
                format!("cannot be read: {e}"),
            )];
        }
    };
    if bytes.len() % 12 != 0 {
        return vec![finding(
            Severity::Damage,
            None,
            format!(
                "{} bytes is not a whole number of 12-byte entries",
                bytes.len()
            ),
        )];
    }
    let mut previous = 0u32;
    for (k, entry) in bytes.chunks_exact(12).enumerate() {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&entry[..8]);
        let max_timestamp = i64::from_le_bytes(ts);
        let rel = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
        let problem = if rel < previous {
            Some(format!("entry {k} goes back to relative offset {rel}"))
        } else {
            match running_max.get(rel as usize) {
                Some(&m) if m != max_timestamp => Some(format!(
                    "entry {k} says the newest timestamp up to offset {} is {max_timestamp}, \
                     the log says {m}",
                    base + u64::from(rel)
                )),
                None if !damaged => Some(format!(
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
