//! A partition's log: its segments in offset order, appends with rolling, reads by offset and by
//! timestamp, and retention.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{IoContext, StorageError};
use super::record::{self, RECORD_OVERHEAD, Record};
use super::segment::{ReadPlan, Segment, sync_dir};

/// Sizing of a partition's segments.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take its log past this many bytes.
    pub segment_bytes: u64,
}

impl LogConfig {
    /// Index entries an active segment reserves: enough for a full segment of the smallest records.
    fn index_capacity(&self) -> usize {
        (self.segment_bytes as usize / RECORD_OVERHEAD).max(1024)
    }
}

/// The segments of one partition; the last one takes appends.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment>,
    buf: Vec<u8>,
    frames: Vec<(u32, i64)>,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir`.
    ///
    /// # Errors
    /// I/O errors reading or repairing the files.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log")
                && let Ok(base) = stem.parse::<u64>()
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let seg = match bases.get(i + 1) {
                Some(&next) => Segment::open_sealed(dir, base, next)?,
                None => Segment::open_active(dir, base, config.index_capacity())?,
            };
            segments.push(seg);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0, config.index_capacity())?);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            segments,
            buf: Vec::new(),
            frames: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first offset still stored.
    pub fn start_offset(&self) -> u64 {
        self.segments[0].base
    }

    /// The offset the next record will get.
    pub fn end_offset(&self) -> u64 {
        self.active().next_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::len_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// The active segment's file, to fsync after appends.
    pub fn active_file(&self) -> Arc<File> {
        self.active().log_file()
    }

    /// Appends records whose offsets continue the log, with one write. Rolls to a new segment first
    /// when they would not fit. Returns the file to fsync for durability.
    ///
    /// # Errors
    /// I/O errors; on error nothing of the batch is visible in the log.
    pub fn append(&mut self, records: &[Record]) -> Result<Arc<File>, StorageError> {
        debug_assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == self.end_offset() + i as u64)
        );
        self.buf.clear();
        self.frames.clear();
        for r in records {
            let before = self.buf.len();
            record::encode(r, &mut self.buf);
            self.frames
                .push(((self.buf.len() - before) as u32, r.timestamp));
        }
        if self.active().is_full(
            self.buf.len() as u64,
            records.len(),
            self.config.segment_bytes,
        ) {
            self.roll(records.len())?;
        }
        let (buf, frames) = (
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.frames),
        );
        let res = self.active_mut().append(&buf, &frames);
        self.buf = buf;
        self.frames = frames;
        res?;
        Ok(self.active_file())
    }

    fn roll(&mut self, batch_records: usize) -> Result<(), StorageError> {
        let next = self.end_offset();
        self.active_mut().seal()?;
        let capacity = self.config.index_capacity().max(batch_records);
        self.segments
            .push(Segment::create(&self.dir, next, capacity)?);
        tracing::debug!(dir = %self.dir.display(), base = next, "rolled a new segment");
        Ok(())
    }

    /// Plans a read of records from `offset`, not past `limit` (the acknowledged end).
    ///
    /// # Errors
    /// `OffsetOutOfRange` below the log start or beyond `limit`; `Corrupt` for known damage.
    pub fn plan_read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: u64,
        limit: u64,
    ) -> Result<ReadPlan, StorageError> {
        let start = self.start_offset();
        if offset < start || offset > limit {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start,
                end: limit,
            });
        }
        let i = self.segments.partition_point(|s| s.base <= offset) - 1;
        let seg = &self.segments[i];
        // An empty tail of a segment (possible only after damage) moves the read to the next one.
        seg.plan_read(offset, max_records, max_bytes, limit)
    }

    /// The first offset whose record has a timestamp at or after `ts`, or the end of the log (up to
    /// `limit`) when there is none.
    ///
    /// # Errors
    /// I/O errors or corruption met while scanning.
    pub fn offset_for_timestamp(&self, ts: i64, limit: u64) -> Result<u64, StorageError> {
        let Some(seg) = self.segments.iter().find(|s| s.max_timestamp() >= ts) else {
            return Ok(limit);
        };
        let mut offset = seg.time_scan_start(ts).max(self.start_offset());
        while offset < limit {
            let records = self.plan_read(offset, 1024, 1 << 20, limit)?.execute()?;
            if records.is_empty() {
                break;
            }
            if let Some(r) = records.iter().find(|r| r.timestamp >= ts) {
                return Ok(r.offset);
            }
            offset += records.len() as u64;
        }
        Ok(limit)
    }

    /// Deletes whole sealed segments whose newest record is older than `min_timestamp`, then the
    /// oldest sealed segments while the log is larger than `max_bytes`. Returns how many went.
    ///
    /// # Errors
    /// I/O errors deleting files (the segment is already out of the log by then).
    pub fn retain(
        &mut self,
        min_timestamp: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StorageError> {
        let mut removed = 0;
        let mut size = self.size_bytes();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_old = min_timestamp.is_some_and(|t| oldest.max_timestamp() < t);
            let too_big = max_bytes.is_some_and(|m| size > m);
            if !(too_old || too_big) {
                break;
            }
            let seg = self.segments.remove(0);
            size -= seg.len_bytes();
            tracing::info!(dir = %self.dir.display(), base = seg.base, "retention deleted a segment");
            seg.delete()?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rec(offset: u64, ts: i64, value: &str) -> Record {
        Record {
            offset,
            timestamp: ts,
            key: Bytes::new(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            headers: Vec::new(),
        }
    }

    fn read_all(log: &PartitionLog) -> Vec<Record> {
        let mut out = Vec::new();
        let mut off = log.start_offset();
        while off < log.end_offset() {
            let got = log
                .plan_read(off, 1000, 1 << 20, log.end_offset())
                .unwrap()
                .execute()
                .unwrap();
            assert!(!got.is_empty());
            off += got.len() as u64;
            out.extend(got);
        }
        out
    }

    #[test]
    fn rolls_reopens_and_reads_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 300 };
        let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
        for i in 0..20u64 {
            log.append(&[rec(i, i as i64 * 10, &format!("value-{i}"))])
                .unwrap();
        }
        assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
        let all = read_all(&log);
        assert_eq!(all.len(), 20);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
        assert_eq!(log.end_offset(), 20);
        assert_eq!(read_all(&log), all);
        assert_eq!(log.offset_for_timestamp(55, 20).unwrap(), 6);
        assert_eq!(log.offset_for_timestamp(-5, 20).unwrap(), 0);
        assert_eq!(log.offset_for_timestamp(10_000, 20).unwrap(), 20);
        log.append(&[rec(20, 200, "after reopen")]).unwrap();
        assert_eq!(read_all(&log).len(), 21);
    }

    #[test]
    fn max_bytes_returns_at_least_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            dir.path(),
            LogConfig {
                segment_bytes: 1 << 20,
            },
        )
        .unwrap();
        let batch: Vec<_> = (0..10).map(|i| rec(i, 0, "0123456789")).collect();
        log.append(&batch).unwrap();
        let one = log.plan_read(0, 100, 1, 10).unwrap().execute().unwrap();
        assert_eq!(one.len(), 1);
        let some = log.plan_read(2, 100, 150, 10).unwrap().execute().unwrap();
        assert_eq!(some.len(), 3, "each frame is 46 bytes");
        assert_eq!(some[0].offset, 2);
        let limited = log
            .plan_read(0, 100, 1 << 20, 4)
            .unwrap()
            .execute()
            .unwrap();
        assert_eq!(limited.len(), 4);
        assert!(matches!(
            log.plan_read(11, 1, 1, 10),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(
            log.plan_read(10, 1, 1, 10)
                .unwrap()
                .execute()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn retention_by_age_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig { segment_bytes: 200 }).unwrap();
        for i in 0..30u64 {
            log.append(&[rec(i, i as i64, "xxxxxxxxxxxxxxxxxxxxxxxxx")])
                .unwrap();
        }
        let segs = log.segment_count();
        assert_eq!(log.retain(Some(5), None).unwrap(), 1);
        assert_eq!(log.segment_count(), segs - 1);
        assert!(log.start_offset() > 0);
        assert!(matches!(
            log.plan_read(0, 1, 100, 30),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.retain(None, Some(250)).unwrap();
        assert!(log.size_bytes() <= 250 || log.segment_count() == 1);
        assert_eq!(log.end_offset(), 30);
        let start = log.start_offset();
        drop(log);
        let log = PartitionLog::open(dir.path(), LogConfig { segment_bytes: 200 }).unwrap();
        assert_eq!(log.start_offset(), start);
        assert_eq!(log.end_offset(), 30);
    }
}
