//! The Broker: the one service every protocol calls (produce, poll, fetch, subscribe, commit,
//! reset, topic and group admin). Validation, defaults and semantics live here, once; the gRPC,
//! legacy TCP and HTTP layers only translate.

mod admin;
mod caller;
mod consume;
mod drain;
pub mod error;
pub mod groups;
pub mod idempotence;
pub mod meta; // cluster metadata (issue 17)
pub mod names;
pub(crate) mod observe;
mod produce;
mod recovery;
pub(crate) mod replication; // replication (issue 17)
mod seek; // console (issue 18)
pub mod shared; // shared groups (issue 14)
pub(crate) mod snapshot_image; // replication (issue 17, snapshots)
mod subscription;
pub mod types;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::clock::now_ns;
pub use crate::storage::{BatchConfig, Durability, FsyncWriter};
use crate::storage::{LogConfig, LogFiles, OffsetStore, PartitionConfig, StorageError, Topic};
use crate::sync::{lock, read};
use observe::Observer;

pub use crate::storage::batch::Compression;
pub use admin::MAX_PARTITIONS;
pub use caller::{Caller, Routing};
pub use error::{BrokerError, LeaderHint, NameKind};
pub use groups::{
    GroupMembership, GroupPhase, JoinRequest, MemberDescription, MemberKind, MemberRef, MemberView,
    Membership, TopicPartition,
};
pub use idempotence::{ProducerGrant, ProducerIdentity};
pub use observe::{BrokerEvents, PartitionSnapshot, WriteCounters};
pub use produce::PendingProduce;
pub use subscription::Subscription;
pub use types::*;

/// Everything the broker core is configured with.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub default_partitions: u32,
    pub auto_create_topics: bool,
    /// Retention for auto-created topics and topics created without one (0: keep forever).
    pub default_retention_ms: u64,
    pub default_retention_bytes: u64,
    pub segment_bytes: u64,
    pub ring_buffer_bytes: usize,
    pub batch: BatchConfig,
    /// Largest record (key + value + headers) accepted.
    pub max_record_bytes: usize,
    /// Appends queued per partition before producers wait.
    pub queue_depth: usize,
    /// How long a produce waits for room in a full queue before RESOURCE_EXHAUSTED.
    pub enqueue_timeout: Duration,
    pub retention_check_interval: Duration,
    /// Sealed segment logs kept open for reads at most (least recently used ones are closed).
    pub open_segment_files: usize,
    /// Descriptors storage may hold, when known (the server sets it to its `fd_reserve`, the part
    /// of the open-file limit kept out of the connection budget): topic creation keeps what every
    /// partition and the read cache need within it.
    pub storage_descriptors: Option<u64>,
    /// A group member not heard from for this long is removed (groups, issue 13).
    pub group_session_timeout: Duration,
    /// formatv2: write on-disk format v1 instead of v2 batches (benchmarks comparing the two, and
    /// tests that need v1 data; never needed otherwise).
    pub write_v1: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            durability: Durability::Fsync,
            default_partitions: 4,
            auto_create_topics: true,
            default_retention_ms: 0,
            default_retention_bytes: 0,
            segment_bytes: 64 << 20,
            ring_buffer_bytes: 4 << 20,
            batch: BatchConfig::default(),
            max_record_bytes: 10 << 20,
            queue_depth: 4096,
            enqueue_timeout: Duration::from_secs(5),
            retention_check_interval: Duration::from_secs(30),
            open_segment_files: 256,
            storage_descriptors: None,
            group_session_timeout: Duration::from_secs(10),
            write_v1: false,
        }
    }
}

impl BrokerConfig {
    /// Partitions report their writes to `observer` and share the broker's cache of open
    /// sealed-segment logs.
    fn partition_config(&self, files: &Arc<LogFiles>, observer: &Arc<Observer>) -> PartitionConfig {
        PartitionConfig {
            files: Arc::clone(files),
            events: Arc::clone(observer) as Arc<dyn crate::storage::StorageEvents>,
            log: LogConfig {
                segment_bytes: self.segment_bytes,
                // formatv2: each topic sets its own when its partitions open.
                compression: crate::storage::batch::Compression::None,
                write_v1: self.write_v1,
            },
            ring_bytes: self.ring_buffer_bytes,
            batch: self.batch,
            durability: self.durability,
            queue_depth: self.queue_depth,
        }
    }

    /// Sealed logs the read cache may keep open: as configured, but at most a quarter of the
    /// descriptors storage has, so that a low limit leaves room for partitions.
    fn read_cache_capacity(&self) -> usize {
        let quarter = self
            .storage_descriptors
            .map_or(usize::MAX, |l| usize::try_from(l / 4).unwrap_or(usize::MAX));
        self.open_segment_files.min(quarter).max(1)
    }

    fn topics_dir(&self) -> PathBuf {
        self.data_dir.join("topics")
    }
}

pub(crate) struct Inner {
    config: BrokerConfig,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises topic creation and deletion.
    admin: tokio::sync::Mutex<()>,
    offsets: OffsetStore,
    /// Groups with members: membership, assignments, fencing.
    groups: groups::coordinator::Coordinator,
    /// Open handles on sealed segment logs, shared by every partition.
    files: Arc<LogFiles>,
    /// Topics whose directory could not be opened at start, with why: they stay offline (and
    /// their names taken) instead of keeping every other topic offline too.
    unavailable: RwLock<HashMap<String, String>>,
    /// The broker's events go here once someone observes it (the metrics).
    observer: Arc<Observer>,
    /// Fired when the broker drains: every wait for records ends.
    drain: drain::Drain,
    /// Fired when the broker shuts down (after draining): background tasks stop.
    shutdown: CancellationToken,
    background: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The data directory's lock file, held (flock) from open to shutdown: two brokers (or an
    /// import and a broker) never write one directory.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// Authentication and ACLs, once set (see [`Broker::secure`]); unset: everything allowed.
    security: std::sync::OnceLock<Arc<crate::auth::Security>>,
    /// formatv2: idempotent producer ids handed out (`producers.json`).
    producer_ids: idempotence::ProducerIds,
    /// Shared groups: per-record settling, redelivery, dead letters (issue 14).
    shared: shared::SharedGroups,
    /// replication (issue 17): set when this broker is one node of a cluster.
    replicator: std::sync::OnceLock<Arc<dyn replication::Replicator>>,
}

/// A handle on the broker; clones share one broker.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

/// A handle that does not keep the broker alive (metrics observe brokers through it, so a
/// dropped broker stops being reported instead of leaking).
#[derive(Clone)]
pub struct WeakBroker {
    inner: Weak<Inner>,
}

impl WeakBroker {
    /// The broker, if it still exists.
    pub fn upgrade(&self) -> Option<Broker> {
        self.inner.upgrade().map(|inner| Broker { inner })
    }

    /// Whether both handles refer to the same broker.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.inner.ptr_eq(&other.inner)
    }
}

impl Broker {
    /// Opens the data directory, recovering every topic, and starts the background tasks (each
    /// partition's writer, retention, and the periodic fsync in `interval` mode) on `runtime`.
    ///
    /// It blocks while it reads and checks the files (a large data directory takes a while): call
    /// it from a blocking thread (`spawn_blocking`), or directly where blocking is fine (tools,
    /// tests). Any thread works, since the runtime is named rather than found.
    ///
    /// # Errors
    /// `Unavailable` when the data directory cannot be opened or recovered.
    pub fn open(config: BrokerConfig, runtime: &Handle) -> Result<Self, BrokerError> {
        // Partitions spawn their writers as they open; they and ours land on `runtime`.
        let _runtime = runtime.enter();
        let startup = |e: StorageError| {
            BrokerError::Unavailable(format!("cannot open the data directory: {e}"))
        };
        let topics_dir = config.topics_dir();
        std::fs::create_dir_all(&topics_dir).map_err(|e| {
            startup(StorageError::io(
                format!("creating {}", topics_dir.display()),
                e,
            ))
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let trash = config.data_dir.join("trash");
        if trash.exists() {
            let _ = std::fs::remove_dir_all(&trash);
        }
        let offsets = OffsetStore::open(&config.data_dir.join("groups")).map_err(startup)?;
        let producer_ids =
            idempotence::ProducerIds::open(&config.data_dir).map_err(BrokerError::Unavailable)?;
        let files = Arc::new(LogFiles::new(config.read_cache_capacity()));
        let observer = Arc::new(Observer::default());
        let pconfig = config.partition_config(&files, &observer);
        let (topics, unavailable) =
            recovery::open_topics(&topics_dir, &pconfig).map_err(startup)?;
        match offsets.prune_topics(|t| topics.contains_key(t) || unavailable.contains_key(t)) {
            Ok(dropped) => {
                for (group, topic) in dropped {
                    tracing::info!(group, topic, "dropped the offsets of a deleted topic");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not drop the offsets of deleted topics"),
        }
        let groups = groups::coordinator::Coordinator::open(
            &config.data_dir.join("group-members"),
            config.group_session_timeout,
            &|t: &str| topics.get(t).map(|t| t.config.partitions),
            Arc::clone(&observer),
        )
        .map_err(startup)?;
        let shared =
            shared::SharedGroups::open(&config.data_dir.join("shared-groups")).map_err(startup)?; // shared groups (issue 14)
        let broker = Self {
            inner: Arc::new(Inner {
                config,
                topics: RwLock::new(topics),
                admin: tokio::sync::Mutex::new(()),
                offsets,
                groups,
                files,
                unavailable: RwLock::new(unavailable),
                observer,
                drain: drain::Drain::default(),
                shutdown: CancellationToken::new(),
                background: std::sync::Mutex::new(Vec::new()),
                lock: std::sync::Mutex::new(Some(lock)),
                security: std::sync::OnceLock::new(),
                producer_ids,
                shared,
                replicator: std::sync::OnceLock::new(),
            }),
        };
        broker.start_background();
        Ok(broker)
    }

    /// A handle that does not keep the broker alive.
    pub fn downgrade(&self) -> WeakBroker {
        WeakBroker {
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// A token cancelled when the broker starts shutting down, after it drained (waits and
    /// streams end on [`Broker::drain`] instead).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    fn start_background(&self) {
        let mut tasks = Vec::new();
        if let Durability::Interval(period) = self.inner.config.durability {
            let broker = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        _ = tick.tick() => broker.sync_all().await,
                        () = broker.inner.shutdown.cancelled() => break,
                    }
                }
            }));
        }
        let broker = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(STORAGE_RETRY_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => broker.retry_failed_partitions().await,
                    () = broker.inner.shutdown.cancelled() => break,
                }
            }
        }));
        let broker = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(broker.inner.config.retention_check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => broker.enforce_retention().await,
                    () = broker.inner.shutdown.cancelled() => break,
                }
            }
        }));
        let broker = self.clone();
        tasks.push(tokio::spawn(async move {
            // Members expire within a quarter of the session timeout after it passes.
            let period = (broker.inner.config.group_session_timeout / 4)
                .clamp(Duration::from_millis(20), Duration::from_secs(1));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => broker.expire_members().await,
                    () = broker.inner.shutdown.cancelled() => break,
                }
            }
        }));
        *lock(&self.inner.background) = tasks;
    }

    fn topics(&self) -> Vec<Arc<Topic>> {
        read(&self.inner.topics).values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        read(&self.inner.topics).get(name).cloned()
    }

    /// The topic, validating its name first.
    fn existing_topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        names::validate(NameKind::Topic, name)?;
        self.topic(name).ok_or_else(|| {
            self.offline(name)
                .unwrap_or_else(|| BrokerError::TopicNotFound(name.to_string()))
        })
    }

    /// fsyncs every partition with unsynced writes.
    pub async fn sync_all(&self) {
        let topics = self.topics();
        let _ = tokio::task::spawn_blocking(move || {
            for t in topics {
                for p in t.partitions() {
                    p.core().sync();
                }
            }
        })
        .await;
    }

    /// Lets every read-only partition whose retry is due try to take writes again.
    async fn retry_failed_partitions(&self) {
        let failed: Vec<_> = self
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| Arc::clone(p.core())))
            .filter(|c| c.failure().is_some())
            .collect();
        if failed.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for core in failed {
                core.retry_writes();
            }
        })
        .await;
    }

    /// Applies each topic's retention now.
    pub async fn enforce_retention(&self) {
        let now = now_ns();
        let topics = self.topics();
        let _ = tokio::task::spawn_blocking(move || {
            for t in topics {
                let TopicConfig {
                    retention_ms,
                    retention_bytes,
                    ..
                } = t.config;
                if retention_ms == 0 && retention_bytes == 0 {
                    continue;
                }
                let min_ts = (retention_ms > 0).then(|| {
                    let ms = i64::try_from(retention_ms).unwrap_or(i64::MAX);
                    now.saturating_sub(ms.saturating_mul(1_000_000))
                });
                let max_bytes = (retention_bytes > 0).then_some(retention_bytes);
                for p in t.partitions() {
                    if let Err(e) = p.core().retain(min_ts, max_bytes) {
                        tracing::error!(topic = t.name, partition = p.id(), error = %e, "retention failed");
                    }
                }
            }
        })
        .await;
    }

    /// Stops the broker: drains (ends waits and subscriptions), stops background tasks, lets
    /// every batcher write what is queued (those produces are acknowledged), and fsyncs every
    /// partition.
    pub async fn shutdown(&self) {
        self.drain();
        self.inner.shutdown.cancel();
        let tasks = std::mem::take(&mut *lock(&self.inner.background));
        for t in tasks {
            let _ = t.await;
        }
        for t in self.topics() {
            t.close().await;
        }
        let held = lock(&self.inner.lock).take();
        if let Some(file) = held {
            let _ = file.unlock();
        }
        tracing::info!("broker stopped; all partitions flushed");
    }
}

/// How often read-only partitions are checked for a retry that is due (each has its own backoff).
const STORAGE_RETRY_TICK: Duration = Duration::from_millis(250);

/// Takes the data directory's exclusive lock, creating the directory if needed.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, BrokerError> {
    let fail = |e: std::io::Error| {
        BrokerError::Unavailable(format!(
            "cannot open the data directory {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BrokerError::Unavailable(format!(
            "the data directory {} is in use by another obelisk process",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e)),
    }
}
