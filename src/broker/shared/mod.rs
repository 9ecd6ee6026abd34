//! Shared groups (issue 14): many members take records of the same partitions, each record is
//! settled on its own (accept, release with an optional delay, reject, extend), a record is
//! redelivered after its lock expires or it was released, and after `max_deliveries` (or a
//! reject) it is written once to the group's dead-letter topic and counts as done.
//!
//! - [`window`]: one partition's in-flight window (pure); [`config`]: the group's settings;
//!   `log`: its state log with the group commit (`shared-groups/<group>.log`: each call
//!   appends its changes as one frame, and concurrent calls share one fsync); `store`: its
//!   snapshot (`shared-groups/<group>.json`, written at creation and when the log is compacted).
//! - Here: [`Broker::create_shared_group`], [`Broker::shared_poll`] (hand-out),
//!   [`Broker::settle`] (a batch), [`Broker::shared_group_state`], and the dead-letter writes.
//!
//! # No duplicate dead letters
//! A record going to the dead-letter topic is first stored as `dead_lettering` with the
//! dead-letter partition's end offset at that moment (the intent), then written, then stored
//! as done. After a crash between the two, the next call on the group scans the dead-letter
//! partition from the stored offset for a record with the same origin headers: found, it is
//! done; not found, it is written now. The scan is bounded by what was written since the intent.

pub mod config;
mod log;
mod stats;
mod store;
#[cfg(test)]
mod tests;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::{Backoff, SharedGroupConfig};
pub use stats::SharedGroupStats;
use window::Window;
pub use window::{SettleAction, SettleRefused, Settled};

use super::error::{BrokerError, NameKind};
use super::types::{ProduceRecord, ReadLimits, Record};
use super::{Broker, names};
use crate::storage::{StorageError, TopicConfig};
use crate::sync::lock;

/// Headers of a dead letter.
pub const HEADER_ORIGIN_TOPIC: &str = "obelisk-origin-topic";
pub const HEADER_ORIGIN_PARTITION: &str = "obelisk-origin-partition";
pub const HEADER_ORIGIN_OFFSET: &str = "obelisk-origin-offset";
pub const HEADER_DELIVERIES: &str = "obelisk-deliveries";
pub const HEADER_REASON: &str = "obelisk-reason";

/// A hand-out request.
#[derive(Debug, Clone)]
pub struct SharedPollRequest {
    pub group: String,
    pub topic: String,
    /// Who takes the records (any non-empty id the member chooses, stable while it works).
    pub member: String,
    pub limits: ReadLimits,
}

/// A handed-out record, locked to the member until `lock_deadline_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub partition: u32,
    pub record: Record,
    /// 1 for the first hand-out.
    pub deliveries: u32,
    /// Unix ns.
    pub lock_deadline_ns: i64,
}

#[derive(Debug, Clone)]
pub struct Settlement {
    pub partition: u32,
    pub offset: u64,
    pub action: SettleAction,
}

/// One settlement's outcome: what happened, or why it was refused.
pub type SettleOutcome = Result<Settled, SettleRefused>;

/// One partition's window, for describing a shared group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPartitionState {
    pub topic: String,
    pub partition: u32,
    /// The first offset not done.
    pub position: u64,
    /// The first offset never handed out.
    pub next: u64,
    /// Records not done (available, locked or going to the dead-letter topic).
    pub in_flight: usize,
    pub locked: usize,
    /// offset → deliveries of the records not done.
    pub deliveries: BTreeMap<u64, u32>,
}

struct GroupState {
    topics: HashMap<(String, u32), Window>,
}

struct SharedGroup {
    name: String,
    config: SharedGroupConfig,
    state: tokio::sync::Mutex<GroupState>,
    /// The state log every change goes through (group commit).
    log: Arc<log::StateLog>,
    /// Woken by settles that made records available.
    changed: Notify,
    /// Set (under `state`'s lock) when the group is deleted: nothing stores it again.
    deleted: std::sync::atomic::AtomicBool,
    counters: stats::Counters,
    last_stats: Mutex<stats::Snapshot>,
}

/// Every shared group, in memory, backed by `shared-groups/`.
pub(crate) struct SharedGroups {
    dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<SharedGroup>>>,
    /// Groups whose state file did not parse at start, with why: their calls fail (they never
    /// silently start over) until the group is created again.
    damaged: Mutex<HashMap<String, String>>,
    /// Held while a group's files are created, so two first calls do not both create them.
    creating: tokio::sync::Mutex<()>,
    /// A state log at least this long is compacted ([`log::COMPACT_AT`]; tests lower it).
    compact_at: std::sync::atomic::AtomicU64,
}

impl SharedGroups {
    /// Loads the stored groups.
    ///
    /// # Errors
    /// I/O errors, or a state file that does not parse.
    pub fn open(dir: &std::path::Path) -> Result<Self, StorageError> {
        let mut groups = HashMap::new();
        let (stored, damaged) = store::load_all(dir)?;
        let mut damaged: HashMap<String, String> = damaged.into_iter().collect();
        for (name, g) in stored {
            let mut topics = g
                .topics
                .into_iter()
                .flat_map(|(t, ps)| {
                    ps.into_iter()
                        .map(move |(p, w)| ((t.clone(), p), w.into_window()))
                })
                .collect();
            let path = log::path(dir, &name);
            let opened = log::replay(&path, &mut topics, g.seq)
                .and_then(|r| log::StateLog::open(path.clone(), r.last_seq, r.len));
            let log = match opened {
                Ok(log) => log,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::error!(file = %path.display(), error = %e, "a shared group's state log does not decode; its calls fail until it is created again");
                    damaged.insert(name, e.to_string());
                    continue;
                }
                Err(e) => {
                    return Err(StorageError::Io {
                        context: format!("opening {}", path.display()),
                        source: e,
                    });
                }
            };
            groups.insert(
                name.clone(),
                Arc::new(SharedGroup {
                    name,
                    config: g.config,
                    state: tokio::sync::Mutex::new(GroupState { topics }),
                    log: Arc::new(log),
                    changed: Notify::new(),
                    deleted: std::sync::atomic::AtomicBool::new(false),
                    counters: stats::Counters::default(),
                    last_stats: Mutex::default(),
                }),
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            groups: Mutex::new(groups),
            damaged: Mutex::new(damaged),
            creating: tokio::sync::Mutex::new(()),
            compact_at: std::sync::atomic::AtomicU64::new(log::COMPACT_AT),
        })
    }

    fn get(&self, group: &str) -> Option<Arc<SharedGroup>> {
        lock(&self.groups).get(group).cloned()
    }

    /// `DataLoss` for a group whose state file was damaged.
    fn check_damaged(&self, group: &str) -> Result<(), BrokerError> {
        match lock(&self.damaged).get(group) {
            None => Ok(()),
            Some(why) => Err(BrokerError::DataLoss(format!(
                "shared group {group:?}: its state file did not parse ({why}) and was set aside; \
                 create the group again (CreateSharedGroup) to start it over"
            ))),
        }
    }

    /// Whether `group` is a shared group.
    pub fn contains(&self, group: &str) -> bool {
        lock(&self.groups).contains_key(group) || lock(&self.damaged).contains_key(group)
    }

    /// The group's snapshot through state log frame `seq`.
    fn snapshot(g: &SharedGroup, st: &GroupState, seq: u64) -> store::StoredGroup {
        let mut topics: BTreeMap<String, BTreeMap<u32, store::StoredWindow>> = BTreeMap::new();
        for ((t, p), w) in &st.topics {
            topics
                .entry(t.clone())
                .or_default()
                .insert(*p, store::StoredWindow::from_window(w));
        }
        store::StoredGroup {
            config: g.config.clone(),
            topics,
            seq,
        }
    }

    /// Stages the changes of a call as one state log frame (under the group's lock); returns
    /// the sequence number to wait for with [`SharedGroups::durable`] once the lock is released.
    fn stage(g: &SharedGroup, st: &mut GroupState) -> Result<u64, BrokerError> {
        if g.deleted.load(std::sync::atomic::Ordering::Acquire) {
            return Err(BrokerError::GroupNotFound(g.name.clone()));
        }
        Ok(g.log.stage(st.topics.iter_mut()))
    }

    /// Waits until frame `seq` of the group's log is durable (sharing the fsync with the
    /// other calls that wait at the same time), then schedules a compaction when it is due.
    async fn durable(&self, g: &Arc<SharedGroup>, seq: u64) -> Result<(), BrokerError> {
        g.log.wait(seq).await.map_err(|e| {
            BrokerError::Unavailable(format!("storing shared group {:?}: {e}", g.name))
        })?;
        let threshold = self.compact_at.load(std::sync::atomic::Ordering::Relaxed);
        if g.log.begin_compaction(threshold) {
            let (g, dir) = (Arc::clone(g), self.dir.clone());
            tokio::spawn(async move {
                compact(&dir, &g).await;
                g.log
                    .compacting
                    .store(false, std::sync::atomic::Ordering::Release);
            });
        }
        Ok(())
    }

    /// Stages and waits, with the group's lock held (the dead-letter intent must be durable
    /// before the dead letter is written).
    async fn commit_locked(
        &self,
        g: &Arc<SharedGroup>,
        st: &mut GroupState,
    ) -> Result<(), BrokerError> {
        let seq = Self::stage(g, st)?;
        g.log.wait(seq).await.map_err(|e| {
            BrokerError::Unavailable(format!("storing shared group {:?}: {e}", g.name))
        })
    }
}

/// Writes a snapshot of the group through its last frame and empties its log. It holds the
/// group's lock throughout, so no frame is staged meanwhile; it runs in its own task, so a
/// caller that goes away does not cut it in half.
async fn compact(dir: &std::path::Path, g: &Arc<SharedGroup>) {
    let st = g.state.lock().await;
    if g.deleted.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    let seq = g.log.last_seq();
    if g.log.wait(seq).await.is_err() {
        return;
    }
    let stored = SharedGroups::snapshot(g, &st, seq);
    let (dir, name, log) = (dir.to_path_buf(), g.name.clone(), Arc::clone(&g.log));
    let res = tokio::task::spawn_blocking(move || {
        store::save(&dir, &name, &stored).map_err(|e| e.to_string())?;
        log.truncate().map_err(|e| e.to_string())
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(group = %g.name, error = %e, "compacting a shared group's state log failed");
        }
        Err(e) => {
            tracing::warn!(group = %g.name, error = %e, "compacting a shared group's state log failed");
        }
    }
    drop(st);
}

fn validate_member(member: &str) -> Result<(), BrokerError> {
    if member.is_empty() || member.len() > names::MAX_NAME_LEN {
        return Err(BrokerError::InvalidArgument(
            "a shared group call needs a member id of 1 to 249 bytes".into(),
        ));
    }
    Ok(())
}

fn validate_config(c: &SharedGroupConfig) -> Result<(), BrokerError> {
    names::validate(NameKind::Topic, &c.dead_letter_topic)?;
    if c.max_deliveries == 0 || c.max_deliveries > window::MAX_DELIVERIES {
        return Err(BrokerError::InvalidArgument(format!(
            "max_deliveries must be 1 to {}",
            window::MAX_DELIVERIES
        )));
    }
    if c.max_in_flight == 0 {
        return Err(BrokerError::InvalidArgument(
            "max_in_flight must be at least 1".into(),
        ));
    }
    if c.ack_timeout.is_zero() {
        return Err(BrokerError::InvalidArgument(
            "the ack timeout must be positive".into(),
        ));
    }
    Ok(())
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_ref())
}

fn unix_of(at: Instant) -> i64 {
    let now = Instant::now();
    let ahead = i64::try_from(at.saturating_duration_since(now).as_nanos()).unwrap_or(i64::MAX);
    super::now_ns().saturating_add(ahead)
}

impl Broker {
    /// Refuses to use a shared group as a group with members, or to commit or reset its offsets.
    pub(crate) fn not_shared(&self, group: &str) -> Result<(), BrokerError> {
        if self.inner.shared.contains(group) {
            return Err(BrokerError::InvalidArgument(format!(
                "consumer group {group:?} is a shared group: use SharedPoll and Settle \
                 (or another group name)"
            )));
        }
        Ok(())
    }

    /// Creates a shared group with its dead-letter topic (one partition; an existing topic of
    /// that name is used as it is).
    ///
    /// # Errors
    /// `InvalidName`, `InvalidArgument` (bad settings), `GroupExists` (a shared group, or a group
    /// with members, of that name), `Unavailable`.
    pub async fn create_shared_group(
        &self,
        group: &str,
        config: SharedGroupConfig,
    ) -> Result<SharedGroupConfig, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): shared groups live on the leader
        names::validate(NameKind::Group, group)?;
        validate_config(&config)?;
        let damaged = lock(&self.inner.shared.damaged).contains_key(group);
        if !damaged
            && (self.inner.shared.contains(group)
                || self.inner.groups.read(group, |_| ()).is_some())
        {
            return Err(BrokerError::GroupExists(group.to_string()));
        }
        let g = self.create_group_entry(group, config).await?;
        lock(&self.inner.shared.damaged).remove(group);
        Ok(g.config.clone())
    }

    async fn create_group_entry(
        &self,
        group: &str,
        config: SharedGroupConfig,
    ) -> Result<Arc<SharedGroup>, BrokerError> {
        if self.topic(&config.dead_letter_topic).is_none() {
            let dlq = TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            };
            match self.create_topic(&config.dead_letter_topic, dlq).await {
                Ok(_) | Err(BrokerError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let _creating = self.inner.shared.creating.lock().await;
        let damaged = lock(&self.inner.shared.damaged).contains_key(group);
        if !damaged && let Some(g) = self.inner.shared.get(group) {
            return Ok(g);
        }
        let stored = store::StoredGroup {
            config: config.clone(),
            topics: BTreeMap::new(),
            seq: 0,
        };
        let (dir, name) = (self.inner.shared.dir.clone(), group.to_string());
        let log = tokio::task::spawn_blocking(move || -> Result<log::StateLog, StorageError> {
            let path = log::path(&dir, &name);
            let io = |e| StorageError::Io {
                context: format!("creating {}", path.display()),
                source: e,
            };
            // The log first (empty), then the snapshot: a snapshot always has its log.
            std::fs::File::create(&path)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            store::save(&dir, &name, &stored)?;
            log::StateLog::open(path.clone(), 0, 0).map_err(io)
        })
        .await
        .map_err(|e| BrokerError::Unavailable(format!("creating shared group {group:?}: {e}")))?
        .map_err(|e| BrokerError::Unavailable(format!("creating shared group {group:?}: {e}")))?;
        let g = Arc::new(SharedGroup {
            name: group.to_string(),
            config,
            state: tokio::sync::Mutex::new(GroupState {
                topics: HashMap::new(),
            }),
            log: Arc::new(log),
            changed: Notify::new(),
            deleted: std::sync::atomic::AtomicBool::new(false),
            counters: stats::Counters::default(),
            last_stats: Mutex::default(),
        });
        lock(&self.inner.shared.groups).insert(group.to_string(), Arc::clone(&g));
        Ok(g)
    }

    /// The shared group, created with the defaults on first use.
    async fn shared_group(&self, group: &str) -> Result<Arc<SharedGroup>, BrokerError> {
        names::validate(NameKind::Group, group)?;
        self.inner.shared.check_damaged(group)?;
        if let Some(g) = self.inner.shared.get(group) {
            return Ok(g);
        }
        if self.inner.groups.read(group, |_| ()).is_some() {
            return Err(BrokerError::InvalidArgument(format!(
                "consumer group {group:?} is a group with members, not a shared group"
            )));
        }
        self.create_group_entry(group, SharedGroupConfig::new(group))
            .await
    }

    /// Deletes a shared group's state (its dead-letter topic stays: dead letters are data);
    /// returns whether there was one. Calls in progress finish first; later ones see no group.
    ///
    /// # Errors
    /// `Unavailable` when its file cannot be removed.
    pub(crate) async fn delete_shared_group(&self, group: &str) -> Result<bool, BrokerError> {
        let damaged = lock(&self.inner.shared.damaged).remove(group).is_some();
        let Some(g) = self.inner.shared.get(group) else {
            return Ok(damaged);
        };
        let _st = g.state.lock().await;
        g.deleted.store(true, std::sync::atomic::Ordering::Release);
        lock(&self.inner.shared.groups).remove(group);
        g.log.fail(format!("shared group {group:?} was deleted"));
        let dir = self.inner.shared.dir.clone();
        let (path, log_path) = (store::path(&dir, group), log::path(&dir, group));
        tokio::task::spawn_blocking(move || {
            std::fs::remove_file(&path)?;
            match std::fs::remove_file(&log_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| BrokerError::Unavailable(format!("deleting shared group {group:?}: {e}")))?
        .map_err(|e| BrokerError::Unavailable(format!("deleting shared group {group:?}: {e}")))?;
        Ok(true)
    }

    /// The names of the shared groups.
    pub fn shared_group_names(&self) -> Vec<String> {
        lock(&self.inner.shared.groups).keys().cloned().collect()
    }

    /// A shared group's settings (`None`: no such shared group).
    pub fn shared_group_config(&self, group: &str) -> Option<SharedGroupConfig> {
        self.inner.shared.get(group).map(|g| g.config.clone())
    }

    /// Hands out records of `topic` to a member of a shared group: records available again
    /// (released, or whose lock expired) first, then records never handed out, each locked to
    /// the member for the group's ack timeout and counted as a delivery. Waits up to
    /// `limits.max_wait` when none is available. Creates the group with the defaults on first
    /// use.
    ///
    /// # Errors
    /// `InvalidName`, `InvalidArgument` (no member), `TopicNotFound`, `DataLoss`, `Unavailable`.
    pub async fn shared_poll(&self, req: SharedPollRequest) -> Result<Vec<Delivery>, BrokerError> {
        self.shared_poll_until(req, &tokio_util::sync::CancellationToken::new())
            .await
    }

    /// [`Broker::shared_poll`] whose wait also ends (with nothing) when `stop` is cancelled:
    /// a stream's hand-out stops without dropping a pass in the middle (which would leave
    /// records locked that nobody received).
    ///
    /// # Errors
    /// As [`Broker::shared_poll`].
    pub async fn shared_poll_until(
        &self,
        req: SharedPollRequest,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<Delivery>, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): shared groups live on the leader
        validate_member(&req.member)?;
        let topic = self.existing_topic(&req.topic)?;
        let g = self.shared_group(&req.group).await?;
        let deadline = Instant::now() + req.limits.max_wait;
        let mut changes = topic.watch_changes();
        loop {
            changes.borrow_and_update();
            let notified = g.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (out, due) = self.hand_out(&g, &topic, &req).await?;
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            let wake = due.map_or(deadline, |d| d.min(deadline));
            let _waiting = self.inner.drain.waiting();
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Ok(out) },
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
                () = self.inner.drain.fired() => return Ok(out),
                () = topic.closed() => return Ok(out),
                () = stop.cancelled() => return Ok(out),
            }
        }
    }

    /// One hand-out pass under the group's lock; returns the deliveries and when something
    /// next falls due.
    async fn hand_out(
        &self,
        g: &Arc<SharedGroup>,
        topic: &crate::storage::Topic,
        req: &SharedPollRequest,
    ) -> Result<(Vec<Delivery>, Option<Instant>), BrokerError> {
        let cfg = &g.config;
        let member: Arc<str> = req.member.as_str().into();
        let deadline_ns = unix_of(Instant::now() + cfg.ack_timeout);
        let mut st = g.state.lock().await;
        self.finish_dead_letters(g, &mut st).await?;
        let now = Instant::now();
        let until = now + cfg.ack_timeout;
        let mut dead = Vec::new();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let max = req.limits.max_records;
        for p in topic.partitions() {
            let core = p.core();
            let key = (topic.name.clone(), p.id());
            let w = st
                .topics
                .entry(key)
                .or_insert_with(|| Window::new(core.start_offset(), now));
            w.clamp_to(core.start_offset());
            for o in w.expire(now, cfg) {
                dead.push((p.id(), o));
            }
            if out.len() >= max || bytes >= req.limits.max_bytes {
                continue;
            }
            for o in w.due(now, max - out.len()) {
                let recs = core
                    .read(o, 1, req.limits.max_bytes)
                    .map_err(|e| BrokerError::from_storage(&topic.name, p.id(), e))?;
                let Some(r) = recs.into_iter().next().filter(|r| r.offset == o) else {
                    w.finish(o);
                    continue;
                };
                let deliveries = w.lock(o, &member, until);
                g.counters.add_redeliveries(u64::from(deliveries > 1));
                bytes += r.encoded_len();
                out.push(Delivery {
                    partition: p.id(),
                    record: r,
                    deliveries,
                    lock_deadline_ns: deadline_ns,
                });
                if bytes >= req.limits.max_bytes {
                    break;
                }
            }
            let room = w.room(cfg.max_in_flight).min(max - out.len());
            if room == 0 || bytes >= req.limits.max_bytes || w.next() >= core.acked_end() {
                continue;
            }
            let recs = core
                .read(w.next(), room, req.limits.max_bytes - bytes)
                .map_err(|e| BrokerError::from_storage(&topic.name, p.id(), e))?;
            for r in recs {
                let deliveries = w.lock(r.offset, &member, until);
                bytes += r.encoded_len();
                out.push(Delivery {
                    partition: p.id(),
                    record: r,
                    deliveries,
                    lock_deadline_ns: deadline_ns,
                });
            }
        }
        if !dead.is_empty() {
            self.dead_letter(g, &mut st, &topic.name, &dead).await?;
        }
        let due = st
            .topics
            .iter()
            .filter(|((t, _), _)| *t == topic.name)
            .filter_map(|(_, w)| w.next_due())
            .min();
        // The records go out only once their locks and delivery counts are durable.
        let seq = SharedGroups::stage(g, &mut st)?;
        drop(st);
        self.inner.shared.durable(g, seq).await?;
        Ok((out, due))
    }

    /// Settles a batch of a member's records, stored as one state log frame (whose fsync is
    /// shared with the other calls of the group at the same time). Each settlement has its own
    /// outcome; one refused (not locked to the member any more) changes nothing else. When it
    /// returns, every outcome it reports is durable (and so is every earlier change of the
    /// group).
    ///
    /// # Errors
    /// `InvalidName`, `InvalidArgument` (no member, empty batch, no such partition),
    /// `TopicNotFound`, `GroupNotFound`, `Unavailable` (nothing of the batch is then known
    /// stored: settle it again).
    pub async fn settle(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        settlements: &[Settlement],
    ) -> Result<Vec<SettleOutcome>, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): shared groups live on the leader
        names::validate(NameKind::Group, group)?;
        validate_member(member)?;
        let t = self.existing_topic(topic)?;
        if settlements.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a settle needs at least one record".into(),
            ));
        }
        for s in settlements {
            super::consume::partition_of(&t, s.partition)?;
        }
        self.inner.shared.check_damaged(group)?;
        let g = self
            .inner
            .shared
            .get(group)
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?;
        let cfg = &g.config;
        let mut st = g.state.lock().await;
        self.finish_dead_letters(&g, &mut st).await?;
        let now = Instant::now();
        let mut out = Vec::with_capacity(settlements.len());
        let mut dead = Vec::new();
        let mut wake = false;
        let mut key = (topic.to_string(), 0u32);
        for s in settlements {
            key.1 = s.partition;
            let res = match st.topics.get_mut(&key) {
                None => Err(SettleRefused::NotHandedOut(s.offset)),
                Some(w) => w.settle(s.offset, member, &s.action, now, cfg),
            };
            // A record available again, or one done (the position may move, opening the
            // window's span for records never handed out): members waiting may get records.
            match res {
                Ok(Settled::DeadLetter) => {
                    dead.push((s.partition, s.offset));
                    wake = true;
                }
                Ok(Settled::Available | Settled::Done) => wake = true,
                _ => {}
            }
            out.push(res);
        }
        if !dead.is_empty() {
            self.dead_letter(&g, &mut st, topic, &dead).await?;
        }
        let seq = SharedGroups::stage(&g, &mut st)?;
        drop(st);
        self.inner.shared.durable(&g, seq).await?;
        if wake {
            g.changed.notify_waiters();
        }
        Ok(out)
    }

    /// The windows of a shared group in `topic` (all topics when `None`).
    ///
    /// # Errors
    /// `GroupNotFound`.
    pub async fn shared_group_state(
        &self,
        group: &str,
        topic: Option<&str>,
    ) -> Result<Vec<SharedPartitionState>, BrokerError> {
        let g = self
            .inner
            .shared
            .get(group)
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?;
        let st = g.state.lock().await;
        let mut out: Vec<_> = st
            .topics
            .iter()
            .filter(|((t, _), _)| topic.is_none_or(|want| want == t))
            .map(|((t, p), w)| SharedPartitionState {
                topic: t.clone(),
                partition: *p,
                position: w.position(),
                next: w.next(),
                in_flight: w.in_flight(),
                locked: w.locked(),
                deliveries: w.deliveries(),
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Writes the records `dead` of `topic` to the group's dead-letter topic once: the intent
    /// is stored first, then the records are written, then they are done (stored by the caller).
    async fn dead_letter(
        &self,
        g: &Arc<SharedGroup>,
        st: &mut GroupState,
        topic: &str,
        dead: &[(u32, u64)],
    ) -> Result<(), BrokerError> {
        let dlq = self.existing_topic(&g.config.dead_letter_topic)?;
        let dlq_from = dlq.partitions().first().map_or(0, |p| p.core().acked_end());
        for &(p, o) in dead {
            if let Some(w) = st.topics.get_mut(&(topic.to_string(), p)) {
                w.set_dead_lettering(o, dlq_from);
            }
        }
        self.inner.shared.commit_locked(g, st).await?;
        self.finish_dead_letters(g, st).await.map(|_| ())
    }

    /// Writes every dead letter whose intent is stored and that is not in the dead-letter topic
    /// yet (checked by scanning it from the intent's offset), and marks them done. Returns
    /// whether anything changed (the caller stores it).
    async fn finish_dead_letters(
        &self,
        g: &SharedGroup,
        st: &mut GroupState,
    ) -> Result<bool, BrokerError> {
        let mut pending: Vec<(String, u32, u64, u64)> = Vec::new();
        for ((t, p), w) in &st.topics {
            for (o, dlq_from) in w.dead_lettering() {
                pending.push((t.clone(), *p, o, dlq_from));
            }
        }
        if pending.is_empty() {
            return Ok(false);
        }
        let dlq = self.existing_topic(&g.config.dead_letter_topic)?;
        let from = pending.iter().map(|x| x.3).min().unwrap_or(0);
        let written = self.dead_letters_since(&dlq, from)?;
        let mut records = Vec::new();
        let mut done = Vec::new();
        for (t, p, o, _) in pending {
            done.push((t.clone(), p, o));
            if written.contains(&(t.clone(), p, o)) {
                continue;
            }
            let e = st.topics[&(t.clone(), p)].view(o);
            let source = self.existing_topic(&t)?;
            let core = super::consume::partition_of(&source, p)?.core();
            let Some(r) = core
                .read(o, 1, usize::MAX)
                .map_err(|e| BrokerError::from_storage(&t, p, e))?
                .into_iter()
                .next()
                .filter(|r| r.offset == o)
            else {
                continue;
            };
            let mut headers = r.headers;
            headers.extend([
                (HEADER_ORIGIN_TOPIC.to_string(), Bytes::from(t.clone())),
                (
                    HEADER_ORIGIN_PARTITION.to_string(),
                    Bytes::from(p.to_string()),
                ),
                (HEADER_ORIGIN_OFFSET.to_string(), Bytes::from(o.to_string())),
                (
                    HEADER_DELIVERIES.to_string(),
                    Bytes::from(e.deliveries.to_string()),
                ),
                (HEADER_REASON.to_string(), Bytes::from(e.reason.to_string())),
            ]);
            records.push(ProduceRecord {
                key: r.key,
                value: r.value,
                headers,
                timestamp: Some(r.timestamp),
                partition: Some(0),
            });
        }
        if !records.is_empty() {
            let n = records.len() as u64;
            self.produce(&dlq.name, records).await?;
            g.counters
                .dead_lettered
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        for (t, p, o) in done {
            if let Some(w) = st.topics.get_mut(&(t, p)) {
                w.finish(o);
            }
        }
        Ok(true)
    }

    /// Origins (topic, partition, offset) of the dead letters in `dlq` from offset `from`.
    fn dead_letters_since(
        &self,
        dlq: &crate::storage::Topic,
        from: u64,
    ) -> Result<std::collections::HashSet<(String, u32, u64)>, BrokerError> {
        let mut seen = std::collections::HashSet::new();
        let Some(p) = dlq.partitions().first() else {
            return Ok(seen);
        };
        let core = p.core();
        let mut at = from.max(core.start_offset());
        while at < core.acked_end() {
            let recs = core
                .read(at, 1000, 4 << 20)
                .map_err(|e| BrokerError::from_storage(&dlq.name, 0, e))?;
            let Some(last) = recs.last() else { break };
            at = last.offset + 1;
            for r in &recs {
                let parse = |h: &str| {
                    header(r, h).and_then(|v| std::str::from_utf8(v).ok().map(str::to_string))
                };
                if let (Some(t), Some(p), Some(o)) = (
                    parse(HEADER_ORIGIN_TOPIC),
                    parse(HEADER_ORIGIN_PARTITION).and_then(|v| v.parse().ok()),
                    parse(HEADER_ORIGIN_OFFSET).and_then(|v| v.parse().ok()),
                ) {
                    seen.insert((t, p, o));
                }
            }
        }
        Ok(seen)
    }
}

/// Durations on the wire: 0 means the default.
pub fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}
