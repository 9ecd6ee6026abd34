//! One segment of a partition log: `<base>.log`, `<base>.index`, `<base>.timeindex`, named by the
//! offset of the first record (20 digits, so names sort like offsets).
//!
//! Opening a segment is where recovery happens: the active segment's log is scanned and checked
//! record by record, a torn or corrupt tail is cut off, and both indexes are rebuilt from what
//! survives. A sealed segment keeps its index when it matches the log, and is rescanned otherwise;
//! damage found inside it is remembered so that reads of it fail closed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{IoContext, StorageError};
use super::index::{OffsetIndex, TIME_INDEX_INTERVAL, TimeEntry, TimeIndex};
use super::record::{self, DecodeError, RECORD_OVERHEAD, Record};

pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
fn time_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// What a scan of a log file found.
struct Scan {
    positions: Vec<u32>,
    times: TimeIndex,
    max_timestamp: i64,
    /// Bytes of whole, valid records from the start.
    valid_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    stopped: Option<DecodeError>,
}

fn scan(bytes: &Bytes, base: u64) -> Scan {
    let mut s = Scan {
        positions: Vec::new(),
        times: TimeIndex::default(),
        max_timestamp: i64::MIN,
        valid_len: 0,
        stopped: None,
    };
    let mut pos = 0usize;
    let mut last_time_entry = 0u64;
    while pos < bytes.len() {
        match record::decode(bytes, pos) {
            Ok((rec, len)) => {
                let expected = base + s.positions.len() as u64;
                if rec.offset != expected || pos > u32::MAX as usize {
                    s.stopped = Some(DecodeError::Malformed);
                    break;
                }
                s.positions.push(pos as u32);
                s.max_timestamp = s.max_timestamp.max(rec.timestamp);
                if s.times.entries.is_empty() || pos as u64 - last_time_entry >= TIME_INDEX_INTERVAL
                {
                    s.times.entries.push(TimeEntry {
                        max_timestamp: s.max_timestamp,
                        relative_offset: (rec.offset - base) as u32,
                    });
                    last_time_entry = pos as u64;
                }
                pos += len;
            }
            Err(e) => {
                s.stopped = Some(e);
                break;
            }
        }
    }
    s.valid_len = pos as u64;
    s
}

/// One segment, sealed or active.
pub struct Segment {
    pub base: u64,
    dir: PathBuf,
    log: Arc<File>,
    log_len: u64,
    index: OffsetIndex,
    times: TimeIndex,
    max_timestamp: i64,
    last_time_entry_pos: u64,
    /// Offsets from here on could not be read back when the segment was opened (damage).
    damaged_from: Option<u64>,
    sealed: bool,
}

impl Segment {
    /// Creates a new, empty active segment.
    ///
    /// # Errors
    /// I/O errors creating the files.
    pub fn create(dir: &Path, base: u64, index_capacity: usize) -> Result<Self, StorageError> {
        let path = log_path(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        let index = OffsetIndex::create_active(&index_path(dir, base), index_capacity, &[])
            .context(|| format!("creating index for {}", path.display()))?;
        sync_dir(dir)?;
        Ok(Self {
            base,
            dir: dir.to_path_buf(),
            log: Arc::new(log),
            log_len: 0,
            index,
            times: TimeIndex::default(),
            max_timestamp: i64::MIN,
            last_time_entry_pos: 0,
            damaged_from: None,
            sealed: false,
        })
    }

    /// Opens the active (last) segment: scans the log, truncates a torn or corrupt tail, rebuilds the
    /// indexes.
    ///
    /// # Errors
    /// I/O errors reading, truncating or creating files.
    pub fn open_active(dir: &Path, base: u64, index_capacity: usize) -> Result<Self, StorageError> {
        let path = log_path(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        let bytes = Bytes::from(fs::read(&path).context(|| format!("reading {}", path.display()))?);
        let s = scan(&bytes, base);
        if s.valid_len < bytes.len() as u64 {
            tracing::warn!(
                file = %path.display(),
                kept = s.valid_len,
                dropped = bytes.len() as u64 - s.valid_len,
                reason = ?s.stopped,
                "truncating the unfinished tail of the active segment"
            );
            log.set_len(s.valid_len)
                .context(|| format!("truncating {}", path.display()))?;
            log.sync_all()
                .context(|| format!("syncing {}", path.display()))?;
        }
        let capacity = index_capacity.max(s.positions.len());
        let index = OffsetIndex::create_active(&index_path(dir, base), capacity, &s.positions)
            .context(|| format!("rebuilding index for {}", path.display()))?;
        let last_time_entry_pos = s
            .times
            .entries
            .last()
            .and_then(|e| s.positions.get(e.relative_offset as usize))
            .map_or(0, |p| u64::from(*p));
        Ok(Self {
            base,
            dir: dir.to_path_buf(),
            log: Arc::new(log),
            log_len: s.valid_len,
            index,
            times: s.times,
            max_timestamp: s.max_timestamp,
            last_time_entry_pos,
            damaged_from: None,
            sealed: false,
        })
    }

    /// Opens a sealed segment expected to hold offsets `base..end`. A missing or mismatched index is
    /// rebuilt; damage is remembered, not repaired.
    ///
    /// # Errors
    /// I/O errors opening or writing files.
    pub fn open_sealed(dir: &Path, base: u64, end: u64) -> Result<Self, StorageError> {
        let path = log_path(dir, base);
        let log = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let log_len = log
            .metadata()
            .context(|| format!("reading metadata of {}", path.display()))?
            .len();
        let expected = (end - base) as usize;
        let index = OffsetIndex::open_sealed(&index_path(dir, base))
            .ok()
            .filter(|idx| index_matches(idx, &log, log_len, expected));
        let times = TimeIndex::load(&time_path(dir, base));
        let (index, times, max_timestamp, damaged_from) = match (index, times) {
            (Some(index), Some(times)) => {
                let max = times.entries.last().map_or(i64::MIN, |e| e.max_timestamp);
                (index, times, max, None)
            }
            _ => {
                let bytes =
                    Bytes::from(fs::read(&path).context(|| format!("reading {}", path.display()))?);
                let s = scan(&bytes, base);
                let damaged = (s.positions.len() < expected || s.stopped.is_some()).then(|| {
                    tracing::error!(
                        file = %path.display(),
                        at_byte = s.valid_len,
                        reason = ?s.stopped,
                        "damage inside a sealed segment: reads past it will fail"
                    );
                    base + s.positions.len() as u64
                });
                let index = OffsetIndex::write_sealed(&index_path(dir, base), &s.positions)
                    .context(|| format!("rebuilding index for {}", path.display()))?;
                s.times
                    .save(&time_path(dir, base))
                    .context(|| format!("rebuilding time index for {}", path.display()))?;
                (index, s.times, s.max_timestamp, damaged)
            }
        };
        Ok(Self {
            base,
            dir: dir.to_path_buf(),
            log: Arc::new(log),
            log_len,
            index,
            times,
            max_timestamp,
            last_time_entry_pos: 0,
            damaged_from,
            sealed: true,
        })
    }

    /// The offset the next record appended here would get.
    pub fn next_offset(&self) -> u64 {
        self.base + self.index.len() as u64
    }

    /// Bytes in the log file.
    pub fn len_bytes(&self) -> u64 {
        self.log_len
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// True when appending `extra_records` records of `extra_bytes` must go to a new segment: this
    /// one is not empty, and the bytes would pass `max_bytes` or the records overflow the index.
    pub fn is_full(&self, extra_bytes: u64, extra_records: usize, max_bytes: u64) -> bool {
        !self.index.is_empty()
            && (self.log_len + extra_bytes > max_bytes
                || self.index.len() + extra_records > self.index.capacity())
    }

    /// Appends encoded records (`frames`: each record's length and timestamp, in order) with one
    /// write. On failure the file is cut back to where it was.
    ///
    /// # Errors
    /// The write's I/O error.
    pub fn append(&mut self, buf: &[u8], frames: &[(u32, i64)]) -> Result<(), StorageError> {
        debug_assert!(!self.sealed);
        if let Err(e) = (&*self.log).write_all(buf) {
            let _ = self.log.set_len(self.log_len);
            return Err(StorageError::io(
                format!("writing {}", log_path(&self.dir, self.base).display()),
                e,
            ));
        }
        let mut pos = self.log_len;
        for &(len, ts) in frames {
            let rel = self.index.len() as u32;
            if !self.index.push(pos as u32) {
                // Capacity is checked before every append; reaching this is a bug, and the log
                // would no longer match its index, so refuse loudly rather than serve wrong data.
                let _ = self.log.set_len(self.log_len);
                return Err(StorageError::io(
                    "offset index full",
                    std::io::Error::other("index capacity exceeded"),
                ));
            }
            self.max_timestamp = self.max_timestamp.max(ts);
            if rel == 0 || pos - self.last_time_entry_pos >= TIME_INDEX_INTERVAL {
                self.times.entries.push(TimeEntry {
                    max_timestamp: self.max_timestamp,
                    relative_offset: rel,
                });
                self.last_time_entry_pos = pos;
            }
            pos += u64::from(len);
        }
        self.log_len = pos;
        Ok(())
    }

    /// A handle on the log file, for fsync or reads outside the partition lock.
    pub fn log_file(&self) -> Arc<File> {
        Arc::clone(&self.log)
    }

    /// Byte range `[start, end)` holding records from `offset` on: at most `max_records`, not past
    /// `limit` (exclusive offset), and not more than `max_bytes` unless a single record is larger.
    /// Returns the range and the number of records in it.
    ///
    /// # Errors
    /// `Corrupt` when the range reaches damage found at open.
    pub fn plan_read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: u64,
        limit: u64,
    ) -> Result<ReadPlan, StorageError> {
        let limit = limit.min(self.next_offset());
        if let Some(d) = self.damaged_from
            && offset >= d
        {
            return Err(StorageError::Corrupt {
                path: log_path(&self.dir, self.base),
                position: self.log_len,
                reason: format!("offset {offset} lies in a damaged part of this segment"),
            });
        }
        let first = (offset - self.base) as usize;
        let last = ((limit - self.base) as usize).min(first.saturating_add(max_records));
        let start = u64::from(self.index.position(first).unwrap_or(0));
        let pos_of = |i: usize| -> u64 { self.index.position(i).map_or(self.log_len, u64::from) };
        // Largest count n in 1..=last-first with pos(first+n) - start <= max_bytes.
        let (mut lo, mut hi) = (1usize, last - first);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if pos_of(first + mid) - start <= max_bytes {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let count = if last > first { lo } else { 0 };
        Ok(ReadPlan {
            file: self.log_file(),
            path: log_path(&self.dir, self.base),
            first_offset: offset,
            start,
            end: pos_of(first + count),
            count,
        })
    }

    /// The first offset in this segment whose timestamp may be at or after `ts` (scan from there).
    pub fn time_scan_start(&self, ts: i64) -> u64 {
        self.base + u64::from(self.times.scan_start(ts))
    }

    /// Seals the segment: indexes shrunk and written, log fsynced.
    ///
    /// # Errors
    /// I/O errors syncing or writing.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        let path = log_path(&self.dir, self.base);
        self.log
            .sync_data()
            .context(|| format!("syncing {}", path.display()))?;
        self.index
            .seal()
            .context(|| format!("sealing index of {}", path.display()))?;
        self.times
            .save(&time_path(&self.dir, self.base))
            .context(|| format!("writing time index of {}", path.display()))?;
        self.sealed = true;
        Ok(())
    }

    /// Deletes the segment's files.
    ///
    /// # Errors
    /// I/O errors removing the log.
    pub fn delete(self) -> Result<(), StorageError> {
        let path = log_path(&self.dir, self.base);
        let _ = fs::remove_file(index_path(&self.dir, self.base));
        let _ = fs::remove_file(time_path(&self.dir, self.base));
        fs::remove_file(&path).context(|| format!("removing {}", path.display()))
    }
}

fn index_matches(idx: &OffsetIndex, log: &File, log_len: u64, expected: usize) -> bool {
    if idx.len() != expected {
        return false;
    }
    if expected == 0 {
        return log_len == 0;
    }
    if idx.position(0) != Some(0) {
        return false;
    }
    // Every entry must start a frame after the previous one (a frame is at least
    // RECORD_OVERHEAD bytes) and inside the log: a cheap walk over the mapped index that catches
    // stale or scribbled entries without reading the log.
    let mut prev = 0u64;
    for i in 1..expected {
        let Some(p) = idx.position(i).map(u64::from) else {
            return false;
        };
        if p < prev + RECORD_OVERHEAD as u64 || p >= log_len {
            return false;
        }
        prev = p;
    }
    let Some(last) = idx.position(expected - 1) else {
        return false;
    };
    let mut len = [0u8; 4];
    if log.read_exact_at(&mut len, u64::from(last)).is_err() {
        return false;
    }
    u64::from(last) + 4 + u64::from(u32::from_le_bytes(len)) == log_len
}

/// fsyncs a directory so that files created or removed in it survive a crash.
///
/// # Errors
/// I/O errors opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing directory {}", dir.display()))
}

/// A planned read: a byte range of one log file.
pub struct ReadPlan {
    file: Arc<File>,
    path: PathBuf,
    first_offset: u64,
    start: u64,
    end: u64,
    pub count: usize,
}

impl ReadPlan {
    /// Reads and decodes the planned records (without holding any lock).
    ///
    /// # Errors
    /// I/O errors, or `Corrupt` when a record fails its checksum or has the wrong offset.
    pub fn execute(self) -> Result<Vec<Record>, StorageError> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (self.end - self.start) as usize];
        self.file
            .read_exact_at(&mut buf, self.start)
            .context(|| format!("reading {}", self.path.display()))?;
        let buf = Bytes::from(buf);
        let mut out = Vec::with_capacity(self.count);
        let mut pos = 0usize;
        for i in 0..self.count {
            let (rec, len) = record::decode(&buf, pos)
                .map_err(|e| StorageError::corrupt(&self.path, self.start + pos as u64, &e))?;
            if rec.offset != self.first_offset + i as u64 {
                return Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    position: self.start + pos as u64,
                    reason: format!(
                        "expected offset {}, found {}",
                        self.first_offset + i as u64,
                        rec.offset
                    ),
                });
            }
            out.push(rec);
            pos += len;
        }
        Ok(out)
    }
}
