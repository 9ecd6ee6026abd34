//! One segment of a partition log: `<base>.log`, `<base>.index`, `<base>.timeindex` (named in
//! [`super::layout`]).
//!
//! Opening a segment is where recovery happens, through the one scanner in [`super::verify`]: the
//! active segment's torn tail is cut off and its indexes are rebuilt in memory; a sealed segment
//! keeps its index when it fits the log and is rescanned otherwise. Damage found by a scan is kept
//! (the bytes stay, their offsets are remembered as unreadable and reads of them fail closed), and
//! an active segment with damage is sealed where it stands, so new records go to a new segment
//! after every offset the damage could have held.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{IoContext, StorageError};
use super::files::LogFiles;
use super::frame;
use super::index::{OffsetIndex, TIME_INDEX_INTERVAL, TimeEntry, TimeIndex};
use super::layout::{SegmentFile, segment_path};
use super::record::Record;
use super::verify::{self, Damage, Role};

/// The active log is mapped again once this many bytes were appended past its map.
const REMAP_BYTES: u64 = 1 << 20;

/// One segment, sealed or active.
pub struct Segment {
    pub base: u64,
    dir: PathBuf,
    /// The active segment's log, open for appends; a sealed segment opens its log through `files`
    /// when a read needs it.
    active_log: Option<Arc<File>>,
    /// The active log's first bytes mapped (empty until it holds [`REMAP_BYTES`]); reads below
    /// its length slice it instead of copying from the file (see `super::mmap`).
    mapped: Bytes,
    files: Arc<LogFiles>,
    log_len: u64,
    index: OffsetIndex,
    times: TimeIndex,
    max_timestamp: i64,
    last_time_entry_pos: u64,
    /// Stretches found unreadable when the segment was opened, in offset order.
    damage: Vec<Damage>,
    /// The log holds v1 records (see [`Segment::holds_v1`]).
    holds_v1: bool,
    /// The idempotent producers' batches found by the scan at open (`None`: not scanned).
    producer_batches: Option<Vec<(super::batch::BatchMeta, u32, u64)>>,
}

impl Segment {
    fn path(&self, file: SegmentFile) -> PathBuf {
        segment_path(&self.dir, self.base, file)
    }

    /// Creates a new, empty active segment.
    ///
    /// # Errors
    /// I/O errors creating the log file.
    pub fn create(dir: &Path, base: u64, files: &Arc<LogFiles>) -> Result<Self, StorageError> {
        let path = segment_path(dir, base, SegmentFile::Log);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        if let Err(e) = sync_dir(dir) {
            drop(log);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Self {
            base,
            dir: dir.to_path_buf(),
            active_log: Some(Arc::new(log)),
            mapped: Bytes::new(),
            files: Arc::clone(files),
            log_len: 0,
            index: OffsetIndex::active(Vec::new()),
            times: TimeIndex::default(),
            max_timestamp: i64::MIN,
            last_time_entry_pos: 0,
            damage: Vec::new(),
            holds_v1: false,
            producer_batches: Some(Vec::new()),
        })
    }

    /// Opens the partition's last segment: scans the log, cuts off a torn tail, and rebuilds the
    /// indexes in memory. When the scan finds damage the segment comes back sealed (see the
    /// module doc): the caller starts a new active segment at its [`Segment::next_offset`].
    ///
    /// # Errors
    /// I/O errors reading or truncating the log.
    pub fn open_active(dir: &Path, base: u64, files: &Arc<LogFiles>) -> Result<Self, StorageError> {
        let path = segment_path(dir, base, SegmentFile::Log);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        let bytes = Bytes::from(fs::read(&path).context(|| format!("reading {}", path.display()))?);
        let s = verify::scan_log(&bytes, base, Role::Active, &mut |_| {});
        if let Some(torn) = &s.torn {
            tracing::warn!(
                file = %path.display(),
                kept = torn.at,
                dropped = torn.bytes,
                reason = torn.reason,
                "cutting off the unfinished last write of the active segment"
            );
            log.set_len(s.kept_len)
                .context(|| format!("truncating {}", path.display()))?;
            log.sync_all()
                .context(|| format!("syncing {}", path.display()))?;
        }
        let last_time_entry_pos = s
            .times
            .entries
            .last()
            .and_then(|e| s.positions.get(e.relative_offset as usize))
            .map_or(0, |p| u64::from(*p));
        let damaged = !s.damage.is_empty();
        let mut seg = Self {
            base,
            dir: dir.to_path_buf(),
            active_log: Some(Arc::new(log)),
            mapped: Bytes::new(),
            files: Arc::clone(files),
            log_len: s.kept_len,
            index: OffsetIndex::active(s.positions),
            times: s.times,
            max_timestamp: s.max_timestamp,
            last_time_entry_pos,
            damage: s.damage,
            holds_v1: s.v1_frames,
            producer_batches: Some(s.producer_batches),
        };
        if damaged {
            seg.report_damage();
            // Nothing is appended after damage: the segment is sealed as it is. Should writing
            // its indexes fail (a full disk), they stay in memory and the next start rescans.
            if let Err(e) = seg.seal() {
                tracing::warn!(file = %path.display(), error = %e, "could not write the indexes of a damaged segment; keeping them in memory");
                seg.active_log = None;
            }
        } else {
            seg.remap_if_grown();
        }
        Ok(seg)
    }

    /// Opens a sealed segment expected to hold offsets `base..end`. A missing or mismatched index
    /// is rebuilt from the log; damage is remembered, not repaired.
    ///
    /// # Errors
    /// I/O errors opening or reading the log.
    pub fn open_sealed(
        dir: &Path,
        base: u64,
        end: u64,
        files: &Arc<LogFiles>,
    ) -> Result<Self, StorageError> {
        let path = segment_path(dir, base, SegmentFile::Log);
        let log = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let log_len = log
            .metadata()
            .context(|| format!("reading metadata of {}", path.display()))?
            .len();
        let expected = (end - base) as usize;
        let index_path = segment_path(dir, base, SegmentFile::Index);
        let index = OffsetIndex::open_sealed(&index_path).ok().filter(|idx| {
            verify::sealed_index_fits(idx.entries(), base, expected, log_len, |at| {
                let mut head = [0u8; verify::FRAME_HEAD_LEN];
                let n = log_len.saturating_sub(at).min(head.len() as u64) as usize;
                log.read_exact_at(&mut head[..n], at).ok()?;
                verify::FrameHead::parse(&head[..n])
            })
        });
        let time_path = segment_path(dir, base, SegmentFile::TimeIndex);
        let times = TimeIndex::load(&time_path);
        let mut seg = Self {
            base,
            dir: dir.to_path_buf(),
            active_log: None,
            mapped: Bytes::new(),
            files: Arc::clone(files),
            log_len,
            index: OffsetIndex::active(Vec::new()),
            times: TimeIndex::default(),
            max_timestamp: i64::MIN,
            last_time_entry_pos: 0,
            damage: Vec::new(),
            holds_v1: false,
            producer_batches: None,
        };
        if let (Some(index), Some(times)) = (index, times) {
            seg.max_timestamp = times.entries.last().map_or(i64::MIN, |e| e.max_timestamp);
            seg.index = index;
            seg.times = times;
            return Ok(seg);
        }
        drop(log);
        let bytes = Bytes::from(fs::read(&path).context(|| format!("reading {}", path.display()))?);
        let s = verify::scan_log(&bytes, base, Role::Sealed { end }, &mut |_| {});
        seg.max_timestamp = s.max_timestamp;
        seg.damage = s.damage;
        seg.producer_batches = Some(s.producer_batches);
        seg.report_damage();
        seg.index = match OffsetIndex::write_sealed(&index_path, &s.positions) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not write a rebuilt index; keeping it in memory");
                OffsetIndex::active(s.positions)
            }
        };
        if let Err(e) = s.times.save(&time_path) {
            tracing::warn!(file = %path.display(), error = %e, "could not write a rebuilt time index; keeping it in memory");
        }
        seg.times = s.times;
        Ok(seg)
    }

    fn report_damage(&self) {
        for d in &self.damage {
            tracing::error!(
                file = %self.path(SegmentFile::Log).display(),
                at_byte = d.bytes.start,
                first_offset = d.offsets.start,
                end_offset = d.offsets.end,
                "damaged records: {}; the data is kept, reads of these offsets fail with DATA_LOSS",
                verify::describe_damage(d)
            );
        }
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

    pub fn is_sealed(&self) -> bool {
        self.active_log.is_none()
    }

    /// The idempotent producers' batches in this segment: from the scan at open, or read now
    /// (a sealed segment whose index fitted was not scanned).
    ///
    /// # Errors
    /// I/O errors reading the log.
    pub fn take_producer_batches(
        &mut self,
    ) -> Result<Vec<(super::batch::BatchMeta, u32, u64)>, StorageError> {
        if let Some(b) = self.producer_batches.take() {
            return Ok(b);
        }
        let path = self.path(SegmentFile::Log);
        // A segment holds frames of one version, and v1 records carry no producer: one read of
        // the first frame's length field tells.
        let mut first = [0u8; 4];
        let v2 = self.files.get(&path).ok().is_some_and(|f| {
            f.read_exact_at(&mut first, 0).is_ok() && super::batch::is_batch(&first, 0)
        });
        if !v2 {
            return Ok(Vec::new());
        }
        let bytes = Bytes::from(fs::read(&path).context(|| format!("reading {}", path.display()))?);
        let role = if self.is_sealed() {
            Role::Sealed {
                end: self.next_offset(),
            }
        } else {
            Role::Active
        };
        Ok(verify::scan_log(&bytes, self.base, role, &mut |_| {}).producer_batches)
    }

    /// Unreadable stretches found when the segment was opened.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// True when appending `extra_bytes` must go to a new segment: this one is not empty, and the
    /// bytes would take it past `max_bytes` (or past what a u32 index entry can address).
    pub fn is_full(&self, extra_bytes: u64, max_bytes: u64) -> bool {
        !self.index.is_empty()
            && (self.log_len + extra_bytes > max_bytes
                || self.log_len + extra_bytes > u64::from(u32::MAX))
    }

    /// Appends encoded frames with one write. `records` holds each record's frame position
    /// (relative to the start of `buf`; the records of one v2 batch share their batch's) and
    /// timestamp, in offset order. On failure the file is cut back to where it was.
    ///
    /// # Errors
    /// The write's I/O error.
    pub fn append(&mut self, buf: &[u8], records: &[(u32, i64)]) -> Result<(), StorageError> {
        let Some(log) = &self.active_log else {
            return Err(StorageError::io(
                "appending to a sealed segment",
                std::io::Error::other("segment is sealed"),
            ));
        };
        if let Err(e) = (&**log).write_all(buf) {
            let _ = log.set_len(self.log_len);
            return Err(StorageError::io(
                format!("writing {}", self.path(SegmentFile::Log).display()),
                e,
            ));
        }
        for &(at, ts) in records {
            let pos = self.log_len + u64::from(at);
            let rel = self.index.len() as u32;
            self.index.push(pos as u32);
            self.max_timestamp = self.max_timestamp.max(ts);
            if rel == 0 || pos - self.last_time_entry_pos >= TIME_INDEX_INTERVAL {
                self.times.entries.push(TimeEntry {
                    max_timestamp: self.max_timestamp,
                    relative_offset: rel,
                });
                self.last_time_entry_pos = pos;
            }
        }
        self.log_len += buf.len() as u64;
        self.remap_if_grown();
        Ok(())
    }

    /// Maps the active log again, up to its length, once it has grown [`REMAP_BYTES`] past its
    /// map. A failed mapping only means reads keep copying from the file.
    fn remap_if_grown(&mut self) {
        let Some(log) = &self.active_log else {
            return;
        };
        if self.log_len < self.mapped.len() as u64 + REMAP_BYTES {
            return;
        }
        match super::mmap::map_log(log, self.log_len) {
            Ok(map) => self.mapped = map,
            Err(e) => {
                tracing::debug!(file = %self.path(SegmentFile::Log).display(), error = %e, "could not map the active log; reads copy from the file");
            }
        }
    }

    /// Whether the segment holds v1 records (written before format v2): the log rolls to a new
    /// segment before appending batches, so every segment holds frames of one version.
    pub fn holds_v1(&self) -> bool {
        self.holds_v1
    }

    /// Takes back every record from `offset` on (records written but never acknowledged, after a
    /// failed fsync): the log is cut and fsynced, the index forgets them.
    ///
    /// # Errors
    /// I/O errors cutting or syncing the log.
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), StorageError> {
        let Some(log) = &self.active_log else {
            return Ok(());
        };
        let rel = offset.saturating_sub(self.base) as usize;
        if rel >= self.index.len() {
            return Ok(());
        }
        let at = self.index.position(rel).map_or(self.log_len, u64::from);
        if at < self.mapped.len() as u64 {
            // The map must not reach past the cut (see `super::mmap`); the next append remaps.
            self.mapped = Bytes::new();
        }
        let path = self.path(SegmentFile::Log);
        log.set_len(at)
            .and_then(|()| log.sync_data())
            .context(|| format!("cutting {} back to byte {at}", path.display()))?;
        self.index.truncate(rel);
        self.times
            .entries
            .retain(|e| (e.relative_offset as usize) < rel);
        self.last_time_entry_pos = self
            .times
            .entries
            .last()
            .and_then(|e| self.index.position(e.relative_offset as usize))
            .map_or(0, u64::from);
        self.log_len = at;
        Ok(())
    }

    /// The active segment's log, for fsync; `None` once sealed (sealing fsynced it).
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.active_log.clone()
    }

    /// Byte range `[start, end)` holding records from `offset` on: at most `max_records`, not past
    /// `limit` (exclusive offset) nor into damage, and not more than `max_bytes` unless a single
    /// record is larger. Returns the range and the number of records in it.
    ///
    /// # Errors
    /// `Corrupt` when `offset` itself lies in damage found at open; I/O errors opening the log.
    pub fn plan_read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: u64,
        limit: u64,
    ) -> Result<ReadPlan, StorageError> {
        let mut limit = limit.min(self.next_offset());
        if let Some(d) = self.damage.iter().find(|d| d.offsets.contains(&offset)) {
            return Err(StorageError::Damaged {
                offsets: d.offsets.clone(),
                reason: format!(
                    "{} at byte {} of {}",
                    verify::describe_damage(d),
                    d.bytes.start,
                    self.path(SegmentFile::Log).display()
                ),
            });
        }
        if let Some(d) = self.damage.iter().find(|d| d.offsets.start > offset) {
            limit = limit.min(d.offsets.start);
        }
        let first = (offset - self.base) as usize;
        let last =
            ((limit.max(offset) - self.base) as usize).min(first.saturating_add(max_records));
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
        let end = if count == 0 {
            start
        } else {
            self.frame_end(first + count - 1)
        };
        let path = self.path(SegmentFile::Log);
        let source = if count == 0 {
            Source::Empty
        } else if let Some(f) = &self.active_log {
            if end <= self.mapped.len() as u64 {
                Source::Mapped(self.mapped.slice(start as usize..end as usize))
            } else {
                Source::File(Arc::clone(f))
            }
        } else {
            match self.files.mapped(&path) {
                Ok(map) if end <= map.len() as u64 => {
                    Source::Mapped(map.slice(start as usize..end as usize))
                }
                _ => Source::File(
                    self.files
                        .get(&path)
                        .context(|| format!("opening {}", path.display()))?,
                ),
            }
        };
        Ok(ReadPlan {
            source,
            path,
            first_offset: offset,
            start,
            end,
            count,
            max_bytes,
        })
    }

    /// Where the frame holding entry `i` ends: the first larger position of a later entry (the
    /// offsets of one batch share a position), or the end of the log.
    fn frame_end(&self, i: usize) -> u64 {
        let Some(p) = self.index.position(i) else {
            return self.log_len;
        };
        let (mut lo, mut hi) = (i + 1, self.index.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.index.position(mid).is_some_and(|q| q > p) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        self.index.position(lo).map_or(self.log_len, u64::from)
    }

    /// The first offset in this segment whose timestamp may be at or after `ts` (scan from there).
    pub fn time_scan_start(&self, ts: i64) -> u64 {
        self.base + u64::from(self.times.scan_start(ts))
    }

    /// Seals the segment: log fsynced, indexes written and the index mapped, the log closed (it
    /// reopens through the file cache when read). On error the segment stays active and
    /// unchanged, so sealing can be tried again.
    ///
    /// # Errors
    /// I/O errors syncing or writing.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        let Some(log) = &self.active_log else {
            return Ok(());
        };
        let path = self.path(SegmentFile::Log);
        log.sync_data()
            .context(|| format!("syncing {}", path.display()))?;
        if self.damage.is_empty() && !self.index.is_empty() {
            self.times
                .close(self.index.len() as u32 - 1, self.max_timestamp);
        }
        self.times
            .save(&self.path(SegmentFile::TimeIndex))
            .context(|| format!("writing time index of {}", path.display()))?;
        self.index
            .seal(&self.path(SegmentFile::Index))
            .context(|| format!("sealing index of {}", path.display()))?;
        self.active_log = None;
        self.mapped = Bytes::new();
        Ok(())
    }

    /// Deletes the segment's files.
    ///
    /// # Errors
    /// I/O errors removing the log.
    pub fn delete(self) -> Result<(), StorageError> {
        let path = self.path(SegmentFile::Log);
        self.files.forget(&path);
        let _ = fs::remove_file(self.path(SegmentFile::Index));
        let _ = fs::remove_file(self.path(SegmentFile::TimeIndex));
        fs::remove_file(&path).context(|| format!("removing {}", path.display()))
    }
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

/// Where a planned read's bytes come from.
enum Source {
    /// Nothing to read.
    Empty,
    /// Already in memory: a slice of the log's map (no copy).
    Mapped(Bytes),
    /// Read (copied) from the file.
    File(Arc<File>),
}

/// A planned read: a byte range of one log file.
pub struct ReadPlan {
    source: Source,
    path: PathBuf,
    first_offset: u64,
    start: u64,
    end: u64,
    pub count: usize,
    /// Records past this many bytes are left for the next read (at least one is returned).
    max_bytes: u64,
}

impl ReadPlan {
    /// Whether the plan slices a map rather than reading the file.
    #[cfg(test)]
    pub(crate) fn slices_a_map(&self) -> bool {
        matches!(self.source, Source::Mapped(_))
    }

    /// Reads and decodes the planned records (without holding any lock). A record that fails its
    /// checksum ends the read: the good records before it are returned, and a read that starts at
    /// it fails, so damage costs only the records it hit.
    ///
    /// # Errors
    /// I/O errors, or `Corrupt` when the first record fails its checksum or has the wrong offset.
    pub fn execute(self) -> Result<Vec<Record>, StorageError> {
        let buf = match &self.source {
            Source::Empty => return Ok(Vec::new()),
            Source::Mapped(bytes) => bytes.clone(),
            Source::File(file) => {
                let mut buf = vec![0u8; (self.end - self.start) as usize];
                file.read_exact_at(&mut buf, self.start)
                    .context(|| format!("reading {}", self.path.display()))?;
                Bytes::from(buf)
            }
        };
        let mut out: Vec<Record> = Vec::with_capacity(self.count);
        let mut pos = 0usize;
        let mut next = self.first_offset;
        let mut bytes = 0u64;
        'frames: while out.len() < self.count && pos < buf.len() {
            let problem = match frame::decode(&buf, pos) {
                // The first frame may be a batch holding the first offset past its start; every
                // later one starts where the previous ended.
                Ok((f, len))
                    if f.base_offset() == next
                        || (out.is_empty()
                            && f.base_offset() < next
                            && next - f.base_offset() < f.count()) =>
                {
                    for rec in f.into_records() {
                        if rec.offset < next {
                            continue;
                        }
                        bytes += rec.encoded_len() as u64;
                        if out.len() == self.count || (!out.is_empty() && bytes > self.max_bytes) {
                            break 'frames;
                        }
                        next = rec.offset + 1;
                        out.push(rec);
                    }
                    pos += len;
                    continue;
                }
                Ok((f, _)) => format!("expected offset {next}, found {}", f.base_offset()),
                Err(e) => e.to_string(),
            };
            let position = self.start + pos as u64;
            if out.is_empty() {
                return Err(StorageError::Corrupt {
                    path: self.path,
                    position,
                    reason: format!("offset {next}: {problem}"),
                });
            }
            tracing::error!(file = %self.path.display(), at_byte = position, offset = next, problem, "damaged record met while reading; returning the records before it");
            break;
        }
        Ok(out)
    }
}
