//! The batcher: one task per partition that turns concurrent appends into group commits.
//!
//! Appends queue on a bounded channel. The task takes the first, waits up to `linger` for more
//! (when linger is set), then takes whatever else is queued, up to `max_records` / `max_bytes`,
//! and hands the whole batch to a blocking thread for one write and, in `fsync` mode, one
//! fdatasync. While that runs, new appends queue up and become the next batch: the slower the
//! disk, the larger the batches, so durability costs latency rather than throughput.
//!
//! In `fsync` mode on a multi-threaded runtime the loop runs on a thread of its own
//! ([`WriteOn::OwnThread`], started by the partition), which writes, fdatasyncs and acknowledges
//! each batch itself: a one-record produce then crosses request → writer thread → request, instead
//! of request → batcher task → blocking pool → batcher task and request (issue 12, goal 5).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::StorageError;
use super::partition::PartitionCore;
use super::record::Record;

/// Largest batch written on the batcher's own (async) thread in `interval` mode.
const INLINE_WRITE_BYTES: usize = 256 << 10;

/// When an acknowledgement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the batch is written and fdatasync'ed.
    Fsync,
    /// After the batch is written to the OS; fsync runs on this period.
    Interval(Duration),
}

/// Where a partition's batcher runs in `fsync` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncWriter {
    /// A thread per partition that writes, fdatasyncs and acknowledges (fewest hand-offs; on a
    /// current-thread runtime the task is used instead).
    #[default]
    Thread,
    /// A task of the runtime that sends each batch to the blocking pool (no thread per
    /// partition: for brokers with a great many partitions).
    Task,
}

/// When a batch closes, and where it is written.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_bytes: usize,
    /// How long the first append of a batch waits for company (zero: write at once).
    pub linger: Duration,
    pub fsync_writer: FsyncWriter,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_bytes: 4 << 20,
            linger: Duration::ZERO,
            fsync_writer: FsyncWriter::Thread,
        }
    }
}

/// Records to append and where to send the first offset once they are durable.
pub struct AppendRequest {
    pub records: Vec<Record>,
    /// The records' size on disk, computed once by the appending task (batch limits, metrics).
    pub bytes: usize,
    pub ack: oneshot::Sender<Result<u64, StorageError>>,
    /// formatv2: the idempotent producer the records come from, if any.
    pub producer: Option<super::producers::ProducerAppend>,
}

impl AppendRequest {
    pub fn new(records: Vec<Record>, ack: oneshot::Sender<Result<u64, StorageError>>) -> Self {
        let bytes = records.iter().map(Record::encoded_len).sum();
        Self {
            records,
            bytes,
            ack,
            producer: None,
        }
    }
}

/// Where the batcher loop writes its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOn {
    /// The loop is a task of the async runtime: a batch that must wait for the disk (any batch
    /// in `fsync` mode, a large one in `interval` mode) goes to a blocking thread.
    Runtime,
    /// The loop has a thread of its own (it is driven by `Handle::block_on`): every batch is
    /// written, synced and acknowledged right there.
    OwnThread,
}

/// The batcher loop of one partition. Ends when `stop` fires (after writing everything queued)
/// or when every sender is gone.
pub async fn run(
    core: Arc<PartitionCore>,
    mut rx: mpsc::Receiver<AppendRequest>,
    config: BatchConfig,
    stop: CancellationToken,
    write_on: WriteOn,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                r = rx.recv() => r,
                () = stop.cancelled() => {
                    rx.close();
                    stopping = true;
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        let mut records = first.records.len();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        let full = |records: usize, bytes: usize| {
            records >= config.max_records || bytes >= config.max_bytes
        };
        if !config.linger.is_zero() && !stopping {
            let deadline = tokio::time::Instant::now() + config.linger;
            while !full(records, bytes) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(req)) => {
                        records += req.records.len();
                        bytes += req.bytes;
                        batch.push(req);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while !full(records, bytes) {
            match rx.try_recv() {
                Ok(req) => {
                    records += req.records.len();
                    bytes += req.bytes;
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        if write_on == WriteOn::OwnThread {
            // A panicking write drops its acks (callers see an error), as on the blocking pool;
            // the loop goes on with the next batch.
            let write = std::panic::AssertUnwindSafe(|| core.write_batch(batch));
            if std::panic::catch_unwind(write).is_err() {
                tracing::error!(partition = core.id, "batch writer panicked");
            }
        } else if matches!(core.durability(), Durability::Fsync) || bytes > INLINE_WRITE_BYTES {
            // fdatasync takes a millisecond or more, and so may a large write: off the async
            // threads.
            let core = Arc::clone(&core);
            if let Err(e) = tokio::task::spawn_blocking(move || core.write_batch(batch)).await {
                // The write panicked: its acks were dropped (callers see the partition as closed).
                tracing::error!(error = %e, "batch writer panicked");
            }
        } else {
            // In `interval` mode a small batch is one copy into the page cache, cheaper than the
            // two thread hand-offs of spawn_blocking (measured: +17% gRPC produce throughput).
            core.write_batch(batch);
        }
    }
}
