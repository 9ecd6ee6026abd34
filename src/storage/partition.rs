//! A partition: its log, its ring buffer, its acknowledged end, and the handle of its batcher.
//!
//! Readers see only acknowledged records, `[log start, acknowledged end)`: a record becomes
//! visible, enters the ring buffer and wakes waiters only after the durability step for its batch
//! has finished, so a consumer never sees a record that a crash could take back.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sync::lock;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::batcher::{self, AppendRequest, BatchConfig, Durability};
use super::error::{IoContext, StorageError};
use super::log::{LogConfig, PartitionLog};
use super::record::Record;
use super::ring::RingBuffer;

/// Everything a partition needs at open.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub log: LogConfig,
    pub ring_bytes: usize,
    pub batch: BatchConfig,
    pub durability: Durability,
    /// Appends waiting for the batcher; beyond this a produce waits (and times out).
    pub queue_depth: usize,
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
    failure: OnceLock<String>,
    dirty: AtomicBool,
    /// Records written since the last fsync in `interval` mode (for the records-per-fsync metric).
    unsynced_records: AtomicU64,
    /// Test-only fault injection: the next batch write fails as an I/O error would.
    inject_fault: AtomicBool,
    durability: Durability,
    pub stats: PartitionStats,
    /// Bumped on every publish, shared by all partitions of a topic (long polls wait on it).
    topic_changes: Arc<watch::Sender<u64>>,
}

/// A partition: its core and the sender half of its batcher queue.
pub struct Partition {
    core: Arc<PartitionCore>,
    tx: mpsc::Sender<AppendRequest>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
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
        let log = PartitionLog::open(&dir, config.log)?;
        let end = log.end_offset();
        let core = Arc::new(PartitionCore {
            id,
            log: Mutex::new(log),
            ring: Mutex::new(RingBuffer::new(config.ring_bytes)),
            acked_end: watch::Sender::new(end),
            failure: OnceLock::new(),
            dirty: AtomicBool::new(false),
            unsynced_records: AtomicU64::new(0),
            inject_fault: AtomicBool::new(false),
            durability: config.durability,
            stats: PartitionStats::default(),
            topic_changes,
        });
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let stop = CancellationToken::new();
        let writer = tokio::spawn(batcher::run(
            Arc::clone(&core),
            rx,
            config.batch,
            stop.clone(),
        ));
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

    /// Queues records for the batcher; the receiver yields the first offset once they are durable.
    ///
    /// # Errors
    /// `ReadOnly` after a storage failure, `Closed` when the partition is stopping.
    pub async fn append(
        &self,
        records: Vec<Record>,
        wait: std::time::Duration,
    ) -> Result<oneshot::Receiver<Result<u64, StorageError>>, AppendError> {
        if let Some(reason) = self.core.failure() {
            return Err(AppendError::Storage(StorageError::ReadOnly { reason }));
        }
        let (ack, rx) = oneshot::channel();
        match self
            .tx
            .send_timeout(AppendRequest::new(records, ack), wait)
            .await
        {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(AppendError::QueueFull),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                Err(AppendError::Storage(StorageError::Closed))
            }
        }
    }

    /// Stops taking appends, lets the batcher finish what is queued, and syncs the log.
    pub async fn close(&self) {
        self.stop.cancel();
        let writer = lock(&self.writer).take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        let core = Arc::clone(&self.core);
        let _ = tokio::task::spawn_blocking(move || core.sync()).await;
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
        self.failure.get().cloned()
    }

    /// Makes the next batch written to this partition fail with an I/O error, exactly as a failed
    /// `write` would: nothing of it is acknowledged and the partition turns read-only. For tests
    /// of failure handling (health, readiness, error mapping); costs one atomic swap per batch.
    #[doc(hidden)]
    pub fn inject_write_failure(&self) {
        self.inject_fault.store(true, Ordering::Release);
    }

    fn fail(&self, err: &StorageError) {
        if self.failure.set(err.to_string()).is_ok() {
            crate::metrics::storage_failed();
            tracing::error!(partition = self.id, error = %err, "storage failure: partition is now read-only");
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
        plan.execute()
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
        let written: u64 = requests.iter().map(|r| r.bytes as u64).sum();
        let mut log = lock(&self.log);
        let base = log.end_offset();
        for req in requests {
            let first = base + records.len() as u64;
            for mut rec in req.records {
                rec.offset = base + records.len() as u64;
                records.push(rec);
            }
            acks.push((first, req.ack));
        }
        let started = std::time::Instant::now();
        let result = if self.inject_fault.swap(false, Ordering::AcqRel) {
            Err(StorageError::io(
                "appending to the log",
                std::io::Error::other("injected write failure"),
            ))
        } else {
            log.append(&records)
        };
        drop(log);
        let result = result.and_then(|file| self.make_durable(&file, records.len() as u64));
        match result {
            Ok(()) => {
                crate::metrics::batch_flushed(records.len() as u64, started.elapsed());
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
                for (first, ack) in acks {
                    let _ = ack.send(Ok(first));
                }
            }
            Err(err) => {
                self.fail(&err);
                let reason = err.to_string();
                for (_, ack) in acks {
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
        crate::metrics::fsync_done(records, took);
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_fsync_micros
            .store(took.as_micros() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.stats.last_flush_unix_ns.store(now, Ordering::Relaxed);
    }

    /// fsyncs the active segment if writes are pending (`interval` mode and shutdown). A failure
    /// makes the partition read-only.
    pub fn sync(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let records = self.unsynced_records.swap(0, Ordering::Relaxed);
        let file = lock(&self.log).active_file();
        let started = std::time::Instant::now();
        match file.sync_data() {
            Ok(()) => self.note_flush(started, records),
            Err(e) => self.fail(&StorageError::io("periodic fdatasync of the log", e)),
        }
    }
}
