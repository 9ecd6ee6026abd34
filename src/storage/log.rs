//! A partition's log: its segments in offset order, appends with rolling, reads by offset and by
//! timestamp, and retention.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchMeta, Compression, Encoder};
use super::error::{IoContext, StorageError};
use super::files::LogFiles;
use super::layout;
use super::producers::{Pending, ProducerStates};
use super::record::Record;
use super::segment::{ReadPlan, Segment, sync_dir};
use super::verify::Damage;

/// Sizing of a partition's segments.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// A segment rolls when the next batch would take its log past this many bytes.
    pub segment_bytes: u64,
    /// How new batches are compressed (the topic's `compression`).
    pub compression: Compression,
    /// Write format v1 (one frame per record) instead of v2 batches: only for benchmarks that
    /// compare the two, and tests that need v1 data.
    pub write_v1: bool,
}

/// The segments of one partition; the last one takes appends.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    files: Arc<LogFiles>,
    segments: Vec<Segment>,
    buf: Vec<u8>,
    frames: Vec<(u32, i64)>,
    encoder: Encoder,
    /// Idempotent producers' state as of the acknowledged end (see [`super::producers`]).
    producers: ProducerStates,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir`; sealed segments' logs are opened on demand
    /// through `files`.
    ///
    /// # Errors
    /// I/O errors reading or repairing the files.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        files: &Arc<LogFiles>,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let bases = layout::segment_bases(dir).context(|| format!("listing {}", dir.display()))?;
        let mut segments = Vec::with_capacity(bases.len() + 1);
        for (i, &base) in bases.iter().enumerate() {
            let seg = match bases.get(i + 1) {
                Some(&next) => Segment::open_sealed(dir, base, next, files)?,
                None => Segment::open_active(dir, base, files)?,
            };
            segments.push(seg);
        }
        let mut log = Self {
            dir: dir.to_path_buf(),
            config,
            files: Arc::clone(files),
            segments,
            buf: Vec::new(),
            frames: Vec::new(),
            encoder: Encoder::default(),
            producers: ProducerStates::default(),
        };
        // No segment yet, or the last one came back sealed (damage): appends need a new one. If
        // it cannot be created now (a full disk), the first append tries again.
        if log.segments.last().is_none_or(Segment::is_sealed)
            && let Err(e) = log.start_segment()
        {
            if log.segments.is_empty() {
                return Err(e);
            }
            tracing::warn!(dir = %dir.display(), error = %e, "could not start a new segment after a damaged one; the next append retries");
        }
        log.producers = log.rebuild_producers()?;
        Ok(log)
    }

    /// The producers' state: the newest snapshot, then the batches of every segment after it.
    fn rebuild_producers(&mut self) -> Result<ProducerStates, StorageError> {
        let end = self.end_offset();
        let (from, mut states) = ProducerStates::load_snapshot(&self.dir, end).unwrap_or_default();
        let mut applied = 0usize;
        for i in 0..self.segments.len() {
            let seg_end = self
                .segments
                .get(i + 1)
                .map_or_else(|| self.segments[i].next_offset(), |s| s.base);
            if seg_end <= from || self.segments[i].holds_v1() {
                continue;
            }
            for (meta, count, first) in self.segments[i].take_producer_batches()? {
                if first >= from {
                    states.apply(&meta, count, first);
                    applied += 1;
                }
            }
        }
        if applied > 0 || !states.is_empty() {
            tracing::debug!(dir = %self.dir.display(), snapshot = from, batches = applied, producers = states.len(), "rebuilt idempotent producer state");
        }
        // Sealed segments had to be read (no snapshot since they sealed: data from before format
        // v2, or a lost snapshot): a snapshot as of the end keeps the next start from reading them.
        if from < self.last().base
            && let Err(e) = states.save_snapshot(&self.dir, end)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the producer state snapshot");
        }
        Ok(states)
    }

    /// The idempotent producers' state as of the acknowledged end.
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// Makes producer state changes part of the log's state once their appends are durable.
    pub fn commit_producers(&mut self, pending: Pending) {
        self.producers.commit(pending);
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
        self.last().next_offset()
    }

    /// Every unreadable stretch found when the segments were opened, in offset order.
    pub fn damage(&self) -> impl Iterator<Item = &Damage> {
        self.segments.iter().flat_map(Segment::damage)
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::len_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn last(&self) -> &Segment {
        self.segments.last().expect("a log always has a segment")
    }

    fn last_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has a segment")
    }

    /// The active segment's file, to fsync after appends (`None` while a roll waits to be retried:
    /// the sealed segment was fsynced).
    pub fn active_file(&self) -> Option<Arc<File>> {
        self.last().active_file()
    }

    /// Appends records whose offsets continue the log, with one write, as v2 batches from no
    /// idempotent producer. See [`PartitionLog::append_batches`].
    ///
    /// # Errors
    /// As [`PartitionLog::append_batches`].
    #[cfg(test)]
    pub fn append(&mut self, records: &[Record]) -> Result<Arc<File>, StorageError> {
        self.append_batches(records, &[(records.len(), BatchMeta::NONE)])
    }

    /// Appends records whose offsets continue the log, with one write: `groups` splits them (in
    /// order) into the appends they came from, each with its producer's identity, and each group
    /// is stored as one or more v2 batches (at most [`batch::MAX_BATCH_RECORDS`] records each and,
    /// when compressed, about [`batch::COMPRESS_CHUNK_BYTES`] of records). Rolls to a new segment
    /// first when they would not fit (or when an earlier roll could not finish, or the active
    /// segment holds v1 records). Returns the file to fsync for durability.
    ///
    /// # Errors
    /// I/O errors; on error nothing of the batch is in the log, and a roll that failed halfway is
    /// finished by the next append.
    pub fn append_batches(
        &mut self,
        records: &[Record],
        groups: &[(usize, BatchMeta)],
    ) -> Result<Arc<File>, StorageError> {
        debug_assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == self.end_offset() + i as u64)
        );
        debug_assert_eq!(groups.iter().map(|g| g.0).sum::<usize>(), records.len());
        self.buf.clear();
        self.frames.clear();
        let compression = self.config.compression;
        let mut at = 0usize;
        if self.config.write_v1 {
            for r in records {
                self.frames.push((self.buf.len() as u32, r.timestamp));
                super::record::encode(r, &mut self.buf);
            }
        }
        for &(n, meta) in groups.iter().filter(|_| !self.config.write_v1) {
            let group = &records[at..at + n];
            at += n;
            let mut done = 0usize;
            while done < group.len() {
                let mut take = 0usize;
                let mut bytes = 0usize;
                // An idempotent producer's append is one batch, so a retry matches it whole.
                if meta.has_producer() {
                    take = group.len();
                }
                while done + take < group.len() && take < batch::MAX_BATCH_RECORDS {
                    bytes += batch::record_len(&group[done + take]);
                    if take > 0
                        && compression != Compression::None
                        && bytes > batch::COMPRESS_CHUNK_BYTES
                    {
                        break;
                    }
                    take += 1;
                }
                let chunk = &group[done..done + take];
                let chunk_meta = if meta.has_producer() {
                    BatchMeta {
                        base_sequence: meta.base_sequence.wrapping_add(done as i32),
                        ..meta
                    }
                } else {
                    meta
                };
                let start = self.buf.len() as u32;
                self.encoder
                    .encode(chunk, compression, &chunk_meta, &mut self.buf);
                self.frames
                    .extend(chunk.iter().map(|r| (start, r.timestamp)));
                done += take;
            }
        }
        let last = self.last();
        if last.is_sealed()
            || (last.holds_v1() && !self.config.write_v1)
            || last.is_full(self.buf.len() as u64, self.config.segment_bytes)
        {
            self.roll()?;
        }
        let (buf, frames) = (
            std::mem::take(&mut self.buf),
            std::mem::take(&mut self.frames),
        );
        let res = self.last_mut().append(&buf, &frames);
        self.buf = buf;
        self.frames = frames;
        res?;
        self.last().active_file().ok_or_else(|| {
            StorageError::io("appending", std::io::Error::other("no active segment"))
        })
    }

    /// Seals the active segment (if not sealed yet) and starts the next. Each step either finishes
    /// or leaves the log as it was, so a failed roll is simply tried again.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.last_mut().seal()?;
        let next = self.last().next_offset();
        if let Err(e) = self.producers.save_snapshot(&self.dir, next) {
            // Only a cost at the next start: the state is rebuilt from more of the log.
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the producer state snapshot");
        }
        self.start_segment()
    }

    fn start_segment(&mut self) -> Result<(), StorageError> {
        let next = self.segments.last().map_or(0, Segment::next_offset);
        self.segments
            .push(Segment::create(&self.dir, next, &self.files)?);
        tracing::debug!(dir = %self.dir.display(), base = next, "started a new segment");
        Ok(())
    }

    /// Takes back every record from `offset` on, if they are still in the active segment (records
    /// written but not acknowledged, after a failed fsync).
    ///
    /// # Errors
    /// I/O errors cutting the log.
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), StorageError> {
        self.last_mut().truncate_to(offset)
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
        self.segments[i].plan_read(offset, max_records, max_bytes, limit)
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
            // Damaged offsets have no timestamp: skip them.
            if let Some(d) = self.damage().find(|d| d.offsets.contains(&offset)) {
                offset = d.offsets.end;
                continue;
            }
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

    fn files() -> Arc<LogFiles> {
        Arc::new(LogFiles::new(4))
    }

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
        let cfg = LogConfig {
            segment_bytes: 300,
            compression: Compression::None,
            write_v1: false,
        };
        let mut log = PartitionLog::open(dir.path(), cfg, &files()).unwrap();
        for i in 0..20u64 {
            log.append(&[rec(i, i as i64 * 10, &format!("value-{i}"))])
                .unwrap();
        }
        assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
        let all = read_all(&log);
        assert_eq!(all.len(), 20);
        drop(log);
        let mut log = PartitionLog::open(dir.path(), cfg, &files()).unwrap();
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
                compression: Compression::None,
                write_v1: false,
            },
            &files(),
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
        let mut log = PartitionLog::open(
            dir.path(),
            LogConfig {
                segment_bytes: 200,
                compression: Compression::None,
                write_v1: false,
            },
            &files(),
        )
        .unwrap();
        for i in 0..30u64 {
            log.append(&[rec(i, i as i64, "xxxxxxxxxxxxxxxxxxxxxxxxx")])
                .unwrap();
        }
        let segs = log.segment_count();
        // Segments whose newest record is older than 5 go: those before the one holding 5.
        let removed = log.retain(Some(5), None).unwrap();
        assert!(removed >= 1);
        assert_eq!(log.segment_count(), segs - removed);
        assert!(log.start_offset() > 0 && log.start_offset() <= 5);
        assert!(matches!(
            log.plan_read(0, 1, 100, 30),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.retain(None, Some(250)).unwrap();
        assert!(log.size_bytes() <= 250 || log.segment_count() == 1);
        assert_eq!(log.end_offset(), 30);
        let start = log.start_offset();
        drop(log);
        let log = PartitionLog::open(
            dir.path(),
            LogConfig {
                segment_bytes: 200,
                compression: Compression::None,
                write_v1: false,
            },
            &files(),
        )
        .unwrap();
        assert_eq!(log.start_offset(), start);
        assert_eq!(log.end_offset(), 30);
    }

    #[test]
    fn the_active_segment_is_read_from_its_map_before_and_after_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 64 << 20,
            compression: Compression::None,
            write_v1: false,
        };
        let big = |i: u64, tag: &str| rec(i, 0, &format!("{tag}{i:06}").repeat(8 << 10));
        let mut log = PartitionLog::open(dir.path(), cfg, &files()).unwrap();
        for i in 0..40u64 {
            log.append(&[big(i, "a")]).unwrap();
        }
        assert!(log.plan_read(0, 10, 1 << 20, 40).unwrap().slices_a_map());
        assert!(
            !log.plan_read(39, 1, 1 << 20, 40).unwrap().slices_a_map(),
            "the tail past the map is read from the file"
        );
        let first = read_all(&log);
        assert_eq!(first.len(), 40);
        assert!(first.iter().all(|r| r.value == big(r.offset, "a").value));
        // A failed write is cut back below the map: the map goes, and reads past the cut see
        // the records written after it, never the old bytes.
        log.truncate_to(5).unwrap();
        for i in 5..45u64 {
            log.append(&[big(i, "b")]).unwrap();
        }
        assert!(log.plan_read(0, 10, 1 << 20, 45).unwrap().slices_a_map());
        let check = |log: &PartitionLog| {
            let all = read_all(log);
            assert_eq!(all.len(), 45);
            for r in &all {
                let tag = if r.offset < 5 { "a" } else { "b" };
                assert_eq!(r.value, big(r.offset, tag).value, "offset {}", r.offset);
            }
        };
        check(&log);
        drop(log);
        let log = PartitionLog::open(dir.path(), cfg, &files()).unwrap();
        assert!(
            log.plan_read(0, 10, 1 << 20, 45).unwrap().slices_a_map(),
            "mapped again at open"
        );
        check(&log);
    }

    #[test]
    fn a_read_of_a_sealed_segment_outlives_its_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(
            dir.path(),
            LogConfig {
                segment_bytes: 200,
                compression: Compression::None,
                write_v1: false,
            },
            &files(),
        )
        .unwrap();
        for i in 0..30u64 {
            log.append(&[rec(i, i as i64, "xxxxxxxxxxxxxxxxxxxxxxxxx")])
                .unwrap();
        }
        let plan = log.plan_read(0, 100, 1 << 20, 30).unwrap();
        assert!(plan.slices_a_map(), "a sealed log is read from its map");
        let held = plan.execute().unwrap();
        assert!(log.retain(Some(i64::MAX), None).unwrap() >= 1);
        assert!(held.iter().all(|r| r.value == "xxxxxxxxxxxxxxxxxxxxxxxxx"));
        assert_eq!(held[0].offset, 0);
    }
}
