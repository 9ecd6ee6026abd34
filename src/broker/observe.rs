//! What the broker shows the layers above it, without knowing them: [`BrokerEvents`], a hook
//! called as things happen (produces, subscriptions, batches, fsyncs, failures), and
//! [`PartitionSnapshot`], a partition's state read on demand. Metrics, health and `/stats` are
//! built on these two; the core imports none of them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::Broker;
use super::error::BrokerError;
use crate::storage::{Partition, StorageEvents, Topic};

/// Events of the broker, for whoever counts them (the metrics). Every method has an empty default,
/// so an observer implements only what it reports. Called on the request's task or the batcher's
/// thread, at most once per request, batch or fsync (never per record): keep them cheap and never
/// block.
pub trait BrokerEvents: Send + Sync {
    /// A produce request of `records` records ended: stored (`Ok`) or not. `topic` is `None` when
    /// the topic does not exist (a bad or unknown name).
    fn produced(&self, topic: Option<&str>, records: u64, outcome: Result<(), &BrokerError>) {
        let _ = (topic, records, outcome);
    }
    /// A subscription on `topic` started; [`BrokerEvents::subscription_closed`] follows when it is
    /// dropped.
    fn subscription_opened(&self, topic: &str) {
        let _ = topic;
    }
    fn subscription_closed(&self, topic: &str) {
        let _ = topic;
    }
    /// A partition wrote a batch of `records` and made it durable (per the durability mode).
    fn batch_flushed(&self, records: u64, took: Duration) {
        let _ = (records, took);
    }
    /// One fdatasync covering `records` records finished.
    fn fsync_done(&self, records: u64, took: Duration) {
        let _ = (records, took);
    }
    /// A partition turned read-only after a failed write or fsync.
    fn storage_failed(&self) {}
    // security (issue 15):
    /// A request was refused by the ACLs (once per refused request).
    fn access_denied(
        &self,
        operation: crate::auth::Operation,
        resource: crate::auth::ResourceKind,
    ) {
        let _ = (operation, resource);
    }
    /// A request came without valid credentials while authentication is on.
    fn unauthenticated(&self) {}
    /// A rebalance of `group` completed (every partition with its target owner), `took` after
    /// the membership change that started it (groups, issue 13).
    fn rebalance_completed(&self, group: &str, took: Duration) {
        let _ = (group, took);
    }
}

/// One partition's state at one instant, for health, stats and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: u32,
    /// First offset still stored (after retention).
    pub log_start: u64,
    /// End of what has been acknowledged: the next offset.
    pub log_end: u64,
    /// Bytes of the log on disk, all segments.
    pub size_bytes: u64,
    pub segments: usize,
    /// Why the partition refuses writes, if it does.
    pub failure: Option<String>,
    /// Records held in memory by the ring buffer.
    pub ring_records: usize,
    /// Acknowledged records not yet fsynced (`interval` mode; always 0 in `fsync` mode).
    pub unsynced_records: u64,
    /// Offset ranges known to be damaged on disk (found when the partition was opened, or by a
    /// read since) and not yet deleted by retention: reads of them fail with DATA_LOSS,
    /// everything else stays readable.
    pub damaged: Vec<std::ops::Range<u64>>,
    pub writes: WriteCounters,
}

/// What a partition's batcher has done since the broker opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounters {
    /// Batches written (one write call each).
    pub batches: u64,
    pub records: u64,
    /// Bytes appended to the log (framed records).
    pub bytes: u64,
    pub fsyncs: u64,
    /// Duration of the last fsync.
    pub last_fsync: Duration,
    /// Unix nanoseconds of the last successful flush; `None` before the first.
    pub last_flush_unix_ns: Option<i64>,
}

/// The broker's observer: unset until [`Broker::observe`], then fixed. Partitions report through
/// it (as their [`StorageEvents`]), so an observer set after open still sees every partition.
#[derive(Default)]
pub(crate) struct Observer {
    events: OnceLock<Arc<dyn BrokerEvents>>,
}

impl Observer {
    pub(super) fn events(&self) -> Option<&Arc<dyn BrokerEvents>> {
        self.events.get()
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("set", &self.events.get().is_some())
            .finish()
    }
}

impl StorageEvents for Observer {
    fn batch_flushed(&self, records: u64, took: Duration) {
        if let Some(e) = self.events() {
            e.batch_flushed(records, took);
        }
    }

    fn fsync_done(&self, records: u64, took: Duration) {
        if let Some(e) = self.events() {
            e.fsync_done(records, took);
        }
    }

    fn storage_failed(&self) {
        if let Some(e) = self.events() {
            e.storage_failed();
        }
    }
}

/// Counts one subscription open, with the observer that saw it open, until dropped.
pub(super) struct OpenSubscription {
    events: Option<Arc<dyn BrokerEvents>>,
    topic: String,
}

impl OpenSubscription {
    pub(super) fn start(observer: &Observer, topic: &str) -> Self {
        let events = observer.events().cloned();
        if let Some(e) = &events {
            e.subscription_opened(topic);
        }
        Self {
            events,
            topic: topic.to_string(),
        }
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        if let Some(e) = &self.events {
            e.subscription_closed(&self.topic);
        }
    }
}

impl Broker {
    /// Sends the broker's events to `events` from now on. A broker has one observer: the first
    /// one set stays, and a later call returns `false` and changes nothing.
    pub fn observe(&self, events: Arc<dyn BrokerEvents>) -> bool {
        self.inner.observer.events.set(events).is_ok()
    }

    /// Every partition of every topic, sorted by topic then partition.
    pub fn partition_snapshots(&self) -> Vec<PartitionSnapshot> {
        let mut topics = self.topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| snapshot(t, p)))
            .collect()
    }

    /// The partitions of `topic`, in order.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`.
    pub fn topic_snapshot(&self, topic: &str) -> Result<Vec<PartitionSnapshot>, BrokerError> {
        let t = self.existing_topic(topic)?;
        Ok(t.partitions().iter().map(|p| snapshot(&t, p)).collect())
    }

    /// Makes the storage of `topic`/`partition` fail as a broken disk would, until
    /// [`Broker::repair_injected_failure`]: the next batch write fails (nothing of it is
    /// acknowledged, the partition turns read-only) and so do its retries. For tests of failure
    /// handling (health, readiness, error mapping, recovery). Returns `false` when there is no
    /// such partition.
    #[doc(hidden)]
    pub fn inject_write_failure(&self, topic: &str, partition: u32) -> bool {
        self.topic(topic)
            .and_then(|t| {
                t.partition(partition)
                    .map(|p| p.core().inject_write_failure())
            })
            .is_some()
    }

    /// Ends a failure injected by [`Broker::inject_write_failure`]: the partition's next retry
    /// finds its storage working and it takes writes again. Returns `false` when there is no such
    /// partition.
    #[doc(hidden)]
    pub fn repair_injected_failure(&self, topic: &str, partition: u32) -> bool {
        self.topic(topic)
            .and_then(|t| {
                t.partition(partition)
                    .map(|p| p.core().repair_injected_failure())
            })
            .is_some()
    }
}

/// Reads one partition's state: the one place a snapshot is taken from storage.
pub(super) fn snapshot(topic: &Topic, p: &Partition) -> PartitionSnapshot {
    let core = p.core();
    let (log_start, size_bytes, segments) = core.log_summary();
    let s = &core.stats;
    let last_flush = s.last_flush_unix_ns.load(Ordering::Relaxed);
    PartitionSnapshot {
        topic: topic.name.clone(),
        partition: p.id(),
        log_start,
        log_end: core.acked_end(),
        size_bytes,
        segments,
        failure: core.failure(),
        ring_records: core.ring_len(),
        unsynced_records: core.unsynced_records(),
        // Damage that retention deleted since is no longer there to report.
        damaged: core
            .damaged_offsets()
            .into_iter()
            .filter(|r| r.end > log_start)
            .collect(),
        writes: WriteCounters {
            batches: s.batches.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            bytes: s.bytes_written.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            last_fsync: Duration::from_micros(s.last_fsync_micros.load(Ordering::Relaxed)),
            last_flush_unix_ns: (last_flush > 0)
                .then(|| i64::try_from(last_flush).unwrap_or(i64::MAX)),
        },
    }
}
