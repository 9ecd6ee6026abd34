//! A partition: its log, its ring buffer, its acknowledged end, and the handle of its batcher.
//!
//! Readers see only acknowledged records, `[log start, acknowledged end)`: a record becomes
//! visible, enters the ring buffer and wakes waiters only after the durability step for its batch
//! has finished, so a consumer never sees a record that a crash could take back.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::batcher::{self, AppendRequest, BatchConfig, Durability, WriteOn};
use super::error::{IoContext, StorageError};
use super::events::StorageEvents;
use super::files::LogFiles;
use super::log::{LogConfig, PartitionLog};
use super::record::Record;
use super::ring::RingBuffer;

/// Everything a partition needs at open.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// Where the partition reports its batches, fsyncs and failures.
    pub events: Arc<dyn StorageEvents>,
    pub log: LogConfig,
    pub ring_bytes: usize,
    pub batch: BatchConfig,
    pub durability: Durability,
    /// Appends waiting for the batcher; beyond this a produce waits (and times out).
    pub queue_depth: usize,
    /// The broker's cache of open sealed-segment logs.
    pub files: Arc<LogFiles>,
}

/// First wait before a read-only partition tries to write again; it doubles up to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Why a partition refuses writes, and when it next tries again.
struct Failure {
    reason: String,
    attempts: u32,
    next_retry: Instant,
}

/// Counters a partition keeps about itself, for health and metrics.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub bytes_written: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Duration of the last fsync, in microseconds.
    pub last_fsync_micros: AtomicU64,
    /// Unix nanoseconds of the last successful flush.
    pub last_flush_unix_ns: AtomicU64,
}

/// The state shared by a partition's readers and its batcher.
pub struct PartitionCore {
    pub id: u32,
    log: Mutex<PartitionLog>,
    ring: Mutex<RingBuffer>,
    acked_end: watch::Sender<u64>,
    /// Set while the partition refuses writes (checked on every append without a lock).
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// Held by a batch write from its first step to its acknowledgements, and by a retry after a
    /// failure, so a retry never cuts records a batch is about to acknowledge.
    writing: Mutex<()>,
    /// Offset ranges known to be unreadable: found when the partition was opened, or met by a
    /// read since (a record failing its checksum in a sealed segment whose index fitted).
    damaged: Mutex<Vec<Range<u64>>>,
    dirty: AtomicBool,
    /// Records written since the last fsync in `interval` mode (for the records-per-fsync metric).
    unsynced_records: AtomicU64,
    /// Test-only fault injection: the next batch write fails as an I/O error would.
    inject_fault: AtomicBool,
    durability: Durability,
    events: Arc<dyn StorageEvents>,
    pub stats: PartitionStats,
    /// Bumped on every publish, shared by all partitions of a topic (long polls wait on it).
    topic_changes: Arc<watch::Sender<u64>>,
}

/// A partition: its core and the sender half of its batcher queue.
pub struct Partition {
    core: Arc<PartitionCore>,
    tx: mpsc::Sender<AppendRequest>,
    writer: Mutex<Option<Writer>>,
    stop: CancellationToken,
}

/// The running batcher loop, and how to wait for its end.
enum Writer {
    Task(tokio::task::JoinHandle<()>),
    /// A thread of its own: the receiver completes (with an error: its sender is dropped) when
    /// the thread's loop has ended.
    Thread(oneshot::Receiver<()>),
}

/// Stack of a partition's writer thread: the loop and one batch write need little.
const WRITER_STACK_BYTES: usize = 256 << 10;

/// Starts the batcher loop of `core`. In `fsync` mode on a multi-threaded runtime it gets a
/// thread of its own, which blocks in fdatasync and completes the waiting requests directly (no
/// hop through a runtime worker and the blocking pool). On a current-thread runtime (tests, and
/// tokio's paused clock, which only knows that blocking-pool work is running) and in `interval`
/// mode (small writes go to the page cache inline) it stays a task, and so it does when the
/// configuration asks for [`batcher::FsyncWriter::Task`].
fn start_writer(
    core: &Arc<PartitionCore>,
    rx: mpsc::Receiver<AppendRequest>,
    batch: BatchConfig,
    stop: &CancellationToken,
) -> Result<Writer, StorageError> {
    let runtime = tokio::runtime::Handle::current();
    let own_thread = matches!(core.durability, Durability::Fsync)
        && batch.fsync_writer == batcher::FsyncWriter::Thread
        && runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
    if !own_thread {
        let run = batcher::run(Arc::clone(core), rx, batch, stop.clone(), WriteOn::Runtime);
        return Ok(Writer::Task(tokio::spawn(run)));
    }
    let (done, ended) = oneshot::channel::<()>();
    let run = batcher::run(
        Arc::clone(core),
        rx,
        batch,
        stop.clone(),
        WriteOn::OwnThread,
    );
    std::thread::Builder::new()
        .name(format!("obelisk-writer-{}", core.id))
        .stack_size(WRITER_STACK_BYTES)
        .spawn(move || {
            runtime.block_on(run);
            drop(done);
        })
        .context(|| "starting the partition's writer thread".into())?;
    Ok(Writer::Thread(ended))
}

impl Partition {
    /// Opens (recovering) the partition stored in `dir` and starts its batcher.
    ///
    /// # Errors
    /// I/O errors while opening or recovering the log.
    pub fn open(
        id: u32,
        dir: PathBuf,
        config: &PartitionConfig,
        topic_changes: Arc<watch::Sender<u64>>,
    ) -> Result<Self, StorageError> {
        let log = PartitionLog::open(&dir, config.log, &config.files)?;
        let end = log.end_offset();
        let damaged = log
            .damage()
            .filter(|d| !d.offsets.is_empty())
            .map(|d| d.offsets.clone())
            .collect();
        let core = Arc::new(PartitionCore {
            id,
            log: Mutex::new(log),
            ring: Mutex::new(RingBuffer::new(config.ring_bytes)),
            acked_end: watch::Sender::new(end),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            writing: Mutex::new(()),
            damaged: Mutex::new(damaged),
            dirty: AtomicBool::new(false),
            unsynced_records: AtomicU64::new(0),
            inject_fault: AtomicBool::new(false),
            durability: config.durability,
            events: Arc::clone(&config.events),
            stats: PartitionStats::default(),
            topic_changes,
        });
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let stop = CancellationToken::new();
        let writer = start_writer(&core, rx, config.batch, &stop)?;
        Ok(Self {
            core,
            tx,
            writer: Mutex::new(Some(writer)),
            stop,
        })
    }

    pub fn core(&self) -> &Arc<PartitionCore> {
        &self.core
    }

    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// Takes room for one append in the queue, waiting up to `wait`: a produce spanning
    /// partitions takes room in all of them before it hands any record over, so it queues all of
    /// its records or none.
    ///
    /// # Errors
    /// `ReadOnly` after a storage failure, `QueueFull` when no room came in time, `Closed` when
    /// the partition is stopping.
    pub async fn reserve(&self, wait: std::time::Duration) -> Result<AppendSlot<'_>, AppendError> {
        if let Some(reason) = self.core.failure() {
            return Err(AppendError::Storage(StorageError::ReadOnly { reason }));
        }
        match tokio::time::timeout(wait, self.tx.reserve()).await {
            Ok(Ok(permit)) => Ok(AppendSlot(permit)),
            Ok(Err(_)) => Err(AppendError::Storage(StorageError::Closed)),
            Err(_) => Err(AppendError::QueueFull),
        }
    }

    /// Stops taking appends, lets the batcher finish what is queued, and syncs the log.
    pub async fn close(&self) {
        self.stop.cancel();
        let writer = lock(&self.writer).take();
        match writer {
            Some(Writer::Task(task)) => {
                let _ = task.await;
            }
            Some(Writer::Thread(ended)) => {
                let _ = ended.await;
            }
            None => {}
        }
        let core = Arc::clone(&self.core);
        let _ = tokio::task::spawn_blocking(move || core.sync()).await;
    }
}

/// Room for one append in a partition's queue (see [`Partition::reserve`]).
pub struct AppendSlot<'a>(mpsc::Permit<'a, AppendRequest>);

impl AppendSlot<'_> {
    /// Queues `records`; the receiver yields the first offset once they are durable. For an
    /// idempotent producer (when `producer` is set) a retry of one of its
    /// last appends yields the original first offset and writes nothing; a gap or an older epoch
    /// yields `StorageError::Sequence`.
    pub fn send_from(
        self,
        records: Vec<Record>,
        producer: Option<super::producers::ProducerAppend>,
    ) -> oneshot::Receiver<Result<u64, StorageError>> {
        let (ack, rx) = oneshot::channel();
        let mut req = AppendRequest::new(records, ack);
        req.producer = producer;
        self.0.send(req);
        rx
    }
}

/// Why an append was not queued.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the partition's write queue stayed full")]
    QueueFull,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PartitionCore {
    /// The reason this partition refuses writes, if it does.
    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.failure).as_ref().map(|f| f.reason.clone())
    }

    /// Offset ranges known to be unreadable (reads of them fail with a data-loss error;
    /// everything else stays readable), in offset order.
    pub fn damaged_offsets(&self) -> Vec<Range<u64>> {
        lock(&self.damaged).clone()
    }

    /// Remembers that a read found `offset` damaged, and turns the error into one that says so.
    fn damaged_at(&self, offset: u64, err: StorageError) -> StorageError {
        let StorageError::Corrupt { .. } = err else {
            return err;
        };
        tracing::error!(partition = self.id, offset, error = %err, "a read met a damaged record");
        let mut known = lock(&self.damaged);
        if !known.iter().any(|r| r.contains(&offset)) {
            known.push(offset..offset + 1);
            known.sort_by_key(|r| r.start);
        }
        StorageError::Damaged {
            offsets: offset..offset + 1,
            reason: err.to_string(),
        }
    }

    /// Makes this partition's storage fail as a broken disk would, until
    /// [`PartitionCore::repair_injected_failure`]: the next batch write fails with an I/O error
    /// (nothing of it is acknowledged, the partition turns read-only) and so do its retries. For
    /// tests of failure handling (health, readiness, error mapping, recovery); costs one atomic
    /// load per batch.
    #[doc(hidden)]
    pub fn inject_write_failure(&self) {
        self.inject_fault.store(true, Ordering::Release);
    }

    /// Ends an injected failure: the next retry finds the storage working.
    #[doc(hidden)]
    pub fn repair_injected_failure(&self) {
        self.inject_fault.store(false, Ordering::Release);
    }

    fn injected_failure(&self) -> Result<(), StorageError> {
        if self.inject_fault.load(Ordering::Acquire) {
            return Err(StorageError::io(
                "appending to the log",
                std::io::Error::other("injected write failure"),
            ));
        }
        Ok(())
    }

    fn fail(&self, err: &StorageError) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            *failure = Some(Failure {
                reason: err.to_string(),
                attempts: 0,
                next_retry: Instant::now() + RETRY_FIRST,
            });
            self.failed.store(true, Ordering::Release);
            self.events.storage_failed();
            tracing::error!(partition = self.id, error = %err, "storage failure: partition is read-only until a write succeeds again");
        }
    }

    /// Tries to take writes again after a storage failure, once its backoff has passed: records
    /// written but never acknowledged are cut off the log, the log is fsynced, and a probe file is
    /// written and fsynced in the partition's directory. When all of that works the partition takes
    /// writes again; otherwise the wait doubles (up to 30 s). Returns true when it recovered.
    /// Runs on a blocking thread.
    pub fn retry_writes(&self) -> bool {
        if !self.failed.load(Ordering::Acquire) {
            return false;
        }
        if lock(&self.failure)
            .as_ref()
            .is_some_and(|f| Instant::now() < f.next_retry)
        {
            return false;
        }
        let _writing = lock(&self.writing);
        let acked = self.acked_end();
        let attempt = (|| {
            self.injected_failure()?;
            let mut log = lock(&self.log);
            log.truncate_to(acked)?;
            if let Some(file) = log.active_file() {
                file.sync_data().context(|| "fdatasync of the log".into())?;
            }
            probe_write(log.dir())
        })();
        let mut failure = lock(&self.failure);
        match attempt {
            Ok(()) => {
                let was = failure.take();
                self.failed.store(false, Ordering::Release);
                tracing::info!(
                    partition = self.id,
                    after = ?was.map(|f| f.reason),
                    "storage works again: the partition takes writes"
                );
                true
            }
            Err(e) => {
                if let Some(f) = failure.as_mut() {
                    f.attempts = f.attempts.saturating_add(1);
                    let wait = RETRY_FIRST
                        .saturating_mul(1u32 << f.attempts.min(6))
                        .min(RETRY_CAP);
                    f.next_retry = Instant::now() + wait;
                    tracing::warn!(partition = self.id, error = %e, retry_in = ?wait, "the partition's storage still fails");
                }
                false
            }
        }
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The end of what has been acknowledged: the next offset a reader can wait for.
    pub fn acked_end(&self) -> u64 {
        *self.acked_end.borrow()
    }

    pub fn start_offset(&self) -> u64 {
        lock(&self.log).start_offset()
    }

    /// A receiver that changes whenever the acknowledged end moves.
    pub fn watch_end(&self) -> watch::Receiver<u64> {
        self.acked_end.subscribe()
    }

    /// (log start, size in bytes, segment count).
    pub fn log_summary(&self) -> (u64, u64, usize) {
        let log = lock(&self.log);
        (log.start_offset(), log.size_bytes(), log.segment_count())
    }

    /// Records currently held by the ring buffer.
    pub fn ring_len(&self) -> usize {
        lock(&self.ring).len()
    }

    /// Records acknowledged but not yet fsynced (`interval` mode; always 0 in `fsync` mode).
    pub fn unsynced_records(&self) -> u64 {
        self.unsynced_records.load(Ordering::Relaxed)
    }

    /// Reads acknowledged records from `offset`: from the ring buffer when it holds them, else from
    /// disk. An offset equal to the acknowledged end reads nothing.
    ///
    /// # Errors
    /// `OffsetOutOfRange` below the log start or beyond the acknowledged end; `Corrupt` or I/O
    /// errors from disk.
    pub fn read(
        &self,
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let end = self.acked_end();
        if offset == end {
            return Ok(Vec::new());
        }
        if offset < end
            && let Some(records) = lock(&self.ring).read(offset, max_records, max_bytes)
        {
            return Ok(records);
        }
        let plan = lock(&self.log).plan_read(offset, max_records, max_bytes as u64, end)?;
        plan.execute().map_err(|e| self.damaged_at(offset, e))
    }

    /// The first acknowledged offset whose timestamp is at or after `ts` (the end if none).
    ///
    /// # Errors
    /// I/O errors or corruption met while scanning.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<u64, StorageError> {
        let end = self.acked_end();
        lock(&self.log).offset_for_timestamp(ts, end)
    }

    /// Applies retention; returns the number of segments deleted.
    ///
    /// # Errors
    /// I/O errors deleting files.
    pub fn retain(
        &self,
        min_timestamp: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<usize, StorageError> {
        let mut log = lock(&self.log);
        let removed = log.retain(min_timestamp, max_bytes)?;
        if removed > 0 {
            // Records below the new log start must not be served from memory either.
            lock(&self.ring).trim_before(log.start_offset());
        }
        Ok(removed)
    }

    /// Writes one batch of append requests (one write, and in `fsync` mode one fdatasync), then
    /// publishes and acknowledges them. Runs on a blocking thread.
    pub(super) fn write_batch(&self, requests: Vec<AppendRequest>) {
        let _writing = lock(&self.writing);
        if let Some(reason) = self.failure() {
            for r in requests {
                let _ = r.ack.send(Err(StorageError::ReadOnly {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let mut records = Vec::with_capacity(requests.iter().map(|r| r.records.len()).sum());
        let mut acks = Vec::with_capacity(requests.len());
        let mut groups = Vec::with_capacity(requests.len());
        let mut pending = super::producers::Pending::default();
        // Retries of appends already stored: answered with their first offset once this write
        // (which may hold the original) is durable.
        let mut duplicates = Vec::new();
        let mut log = lock(&self.log);
        let base = log.end_offset();
        for req in requests {
            let first = base + records.len() as u64;
            let meta = match req.producer {
                None => crate::storage::batch::BatchMeta::NONE,
                Some(p) => {
                    let count = req.records.len() as u32;
                    match log.producers().check(&mut pending, p, count, first) {
                        Ok(super::producers::Verdict::Append) => crate::storage::batch::BatchMeta {
                            producer_id: p.id,
                            producer_epoch: p.epoch,
                            base_sequence: p.sequence,
                            leader_epoch: 0,
                        },
                        Ok(super::producers::Verdict::Duplicate { first_offset }) => {
                            duplicates.push((first_offset, req.ack));
                            continue;
                        }
                        Err(e) => {
                            let _ = req.ack.send(Err(StorageError::Sequence(e)));
                            continue;
                        }
                    }
                }
            };
            groups.push((req.records.len(), meta));
            for mut rec in req.records {
                rec.offset = base + records.len() as u64;
                records.push(rec);
            }
            acks.push((first, req.ack));
        }
        if records.is_empty() {
            drop(log);
            for (first, ack) in duplicates {
                let _ = ack.send(Ok(first));
            }
            return;
        }
        let started = std::time::Instant::now();
        let size_before = log.size_bytes();
        let result = self
            .injected_failure()
            .and_then(|()| log.append_batches(&records, &groups));
        // What the write put on disk (frames and headers included).
        let written = log.size_bytes().saturating_sub(size_before);
        drop(log);
        let result = result.and_then(|file| self.make_durable(&file, records.len() as u64));
        if result.is_err() {
            // Written but not durable: never acknowledged, so take the records back now (a retry
            // after the failure cuts them too, should this fail as well).
            let _ = lock(&self.log).truncate_to(base);
        }
        match result {
            Ok(()) => {
                lock(&self.log).commit_producers(pending);
                self.events
                    .batch_flushed(records.len() as u64, started.elapsed());
                let end = base + records.len() as u64;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .records
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.stats
                    .bytes_written
                    .fetch_add(written, Ordering::Relaxed);
                lock(&self.ring).extend(records);
                self.acked_end.send_replace(end);
                self.topic_changes.send_modify(|n| *n = n.wrapping_add(1));
                for (first, ack) in acks.into_iter().chain(duplicates) {
                    let _ = ack.send(Ok(first));
                }
            }
            Err(err) => {
                self.fail(&err);
                let reason = err.to_string();
                for (_, ack) in acks.into_iter().chain(duplicates) {
                    let _ = ack.send(Err(StorageError::ReadOnly {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    fn make_durable(&self, file: &File, records: u64) -> Result<(), StorageError> {
        match self.durability {
            Durability::Fsync => {
                let started = std::time::Instant::now();
                file.sync_data().context(|| "fdatasync of the log".into())?;
                self.note_flush(started, records);
            }
            Durability::Interval(_) => {
                self.unsynced_records.fetch_add(records, Ordering::Relaxed);
                self.dirty.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    fn note_flush(&self, started: std::time::Instant, records: u64) {
        let took = started.elapsed();
        self.events.fsync_done(records, took);
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_fsync_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        let now = u64::try_from(crate::clock::now_ns()).unwrap_or(0);
        self.stats.last_flush_unix_ns.store(now, Ordering::Relaxed);
    }

    /// fsyncs the active segment if writes are pending (`interval` mode and shutdown). A failure
    /// makes the partition read-only.
    pub fn sync(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let records = self.unsynced_records.swap(0, Ordering::Relaxed);
        let Some(file) = lock(&self.log).active_file() else {
            return;
        };
        let started = std::time::Instant::now();
        match file.sync_data() {
            Ok(()) => self.note_flush(started, records),
            Err(e) => self.fail(&StorageError::io("periodic fdatasync of the log", e)),
        }
    }
}

/// Writes and fsyncs a small file in `dir`, then removes it: whether the filesystem takes writes.
fn probe_write(dir: &std::path::Path) -> Result<(), StorageError> {
    use std::io::Write;
    let path = dir.join(".write-probe");
    let result = std::fs::File::create(&path)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_data()
        })
        .context(|| format!("writing {}", path.display()));
    let _ = std::fs::remove_file(&path);
    result
}
