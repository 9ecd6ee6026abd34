//! The group coordinator: every group's [`GroupState`], the channel each member is told its
//! assignment on, and the store that makes each change durable.
//!
//! A change runs under the group's write lock (a tokio mutex, held while the snapshot is
//! written, so files are written in the order the changes happened); the state itself sits in
//! a std mutex that every poll's fencing check takes for a moment, never across an await.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::state::{Counts, GroupState, MemberView};
use super::store::GroupStore;
use crate::broker::BrokerError;
use crate::storage::StorageError;
use crate::sync::lock;

/// What one group holds in memory.
pub(crate) struct Live {
    pub state: GroupState,
    /// Each live member's channel; a member's stream, subscriptions and client watch it.
    pub senders: HashMap<String, watch::Sender<MemberView>>,
    /// Set when the group was deleted: late writers start over on a fresh group.
    deleted: bool,
}

impl Live {
    /// Tells every member its view; members no longer in the group are told they ended.
    fn publish(&mut self) {
        let state = &self.state;
        self.senders.retain(|id, tx| match state.view(id) {
            Some(v) => {
                tx.send_if_modified(|cur| {
                    if *cur == v {
                        false
                    } else {
                        *cur = v;
                        true
                    }
                });
                true
            }
            None => {
                tx.send_modify(|cur| {
                    cur.ended.get_or_insert_with(|| {
                        "removed from the group (session timeout, leave or restart)".into()
                    });
                });
                false
            }
        });
    }

    /// Ends every member's channel (group deleted).
    fn end_all(&mut self, why: &str) {
        for tx in self.senders.values() {
            tx.send_modify(|cur| cur.ended = Some(why.to_string()));
        }
        self.senders.clear();
    }
}

pub(crate) struct GroupCell {
    live: Mutex<Live>,
    write: tokio::sync::Mutex<()>,
}

impl GroupCell {
    fn new(state: GroupState) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::new(Live {
                state,
                senders: HashMap::new(),
                deleted: false,
            }),
            write: tokio::sync::Mutex::new(()),
        })
    }
}

pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Arc<GroupCell>>>,
    store: GroupStore,
    pub session_timeout: Duration,
    /// How many groups `groups` holds (read without its lock).
    known: AtomicUsize,
    /// Completed rebalances are reported to it (the metrics).
    observer: Arc<crate::broker::observe::Observer>,
}

impl Coordinator {
    /// Loads every group's membership from `dir` (see [`GroupState::restore`]).
    ///
    /// # Errors
    /// I/O errors reading the directory or writing a restored group.
    pub fn open(
        dir: &Path,
        session_timeout: Duration,
        counts: Counts<'_>,
        observer: Arc<crate::broker::observe::Observer>,
    ) -> Result<Self, StorageError> {
        let (store, snapshots) = GroupStore::open(dir)?;
        let now = Instant::now();
        let mut groups = HashMap::new();
        for (name, snapshot) in snapshots {
            let state = GroupState::restore(snapshot, now, counts);
            // Written at once: the next incarnations' epochs must be above every earlier one
            // even if the broker crashes again before the group changes.
            store.write_now(&name, &state.snapshot())?;
            groups.insert(name, GroupCell::new(state));
        }
        Ok(Self {
            known: AtomicUsize::new(groups.len()),
            groups: Mutex::new(groups),
            store,
            session_timeout,
            observer,
        })
    }

    fn cell(&self, group: &str) -> Option<Arc<GroupCell>> {
        // Memberless polls and commits ask on every call: without any group with members, one
        // atomic load answers instead of a global lock.
        if self.known.load(Ordering::Acquire) == 0 {
            return None;
        }
        lock(&self.groups).get(group).cloned()
    }

    pub fn group_names(&self) -> Vec<String> {
        lock(&self.groups).keys().cloned().collect()
    }

    /// Reads a group's state, if the coordinator knows the group.
    pub fn read<R>(&self, group: &str, f: impl FnOnce(&GroupState) -> R) -> Option<R> {
        let cell = self.cell(group)?;
        let live = lock(&cell.live);
        Some(f(&live.state))
    }

    /// Whether the group has members (connected or within their session timeout).
    pub fn has_members(&self, group: &str) -> bool {
        self.read(group, |s| !s.members.is_empty()).unwrap_or(false)
    }

    /// Changes a group (creating it when `create`), tells its members, and writes it durably
    /// before returning. `f` must leave the state unchanged when it fails.
    ///
    /// # Errors
    /// `f`'s error; `GroupNotFound` for an unknown group without `create`; `Unavailable` when
    /// the state cannot be written.
    pub async fn change<R>(
        &self,
        group: &str,
        create: bool,
        f: impl FnOnce(&mut Live) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut f = Some(f);
        loop {
            let cell = if create {
                {
                    let mut groups = lock(&self.groups);
                    let cell = Arc::clone(
                        groups
                            .entry(group.to_string())
                            .or_insert_with(|| GroupCell::new(GroupState::default())),
                    );
                    self.known.store(groups.len(), Ordering::Release);
                    cell
                }
            } else {
                self.cell(group)
                    .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))?
            };
            let _writing = cell.write.lock().await;
            let (snapshot, out) = {
                let mut live = lock(&cell.live);
                if live.deleted {
                    if !create {
                        return Err(BrokerError::GroupNotFound(group.to_string()));
                    }
                    continue;
                }
                let before = live.state.epoch;
                let out = (f.take().expect("runs once"))(&mut live);
                let changed = live.state.epoch != before;
                if changed {
                    live.publish();
                    let done = live.state.take_completed();
                    if let Some(events) = self.observer.events() {
                        for took in done {
                            events.rebalance_completed(group, took);
                        }
                    }
                }
                (changed.then(|| live.state.snapshot()), out)
            };
            if let Some(s) = snapshot {
                self.store.write(group, &s).await.map_err(|e| {
                    tracing::error!(group, error = %e, "writing a group's membership failed");
                    BrokerError::Unavailable(format!(
                        "consumer group {group:?}: its membership could not be stored; see the broker log"
                    ))
                })?;
            }
            return out;
        }
    }

    /// Notes a member alive (no write: liveness is not durable).
    ///
    /// # Errors
    /// `Fenced` when the member or epoch is not current.
    pub fn heartbeat(&self, group: &str, member: &str, epoch: u64) -> Result<(), BrokerError> {
        let cell = self
            .cell(group)
            .ok_or_else(|| fenced_unknown(group, member))?;
        let mut live = lock(&cell.live);
        live.state
            .heartbeat(member, epoch, Instant::now())
            .map_err(|f| BrokerError::Fenced {
                group: group.to_string(),
                reason: f.to_string(),
            })
    }

    /// A receiver of the member's view, if it is current.
    pub fn watch(
        &self,
        group: &str,
        member: &str,
        epoch: u64,
    ) -> Result<watch::Receiver<MemberView>, BrokerError> {
        let cell = self
            .cell(group)
            .ok_or_else(|| fenced_unknown(group, member))?;
        let mut live = lock(&cell.live);
        let Live { state, senders, .. } = &mut *live;
        state
            .check(member, epoch)
            .map_err(|f| BrokerError::Fenced {
                group: group.to_string(),
                reason: f.to_string(),
            })?;
        let view = state.view(member).unwrap_or_default();
        Ok(senders
            .entry(member.to_string())
            .or_insert_with(|| watch::channel(view).0)
            .subscribe())
    }

    /// Removes the group's membership (the caller checked nobody is connected).
    ///
    /// # Errors
    /// `Unavailable` when the file cannot be removed.
    pub async fn delete(&self, group: &str) -> Result<bool, BrokerError> {
        let Some(cell) = self.cell(group) else {
            return Ok(false);
        };
        let _writing = cell.write.lock().await;
        self.store.delete(group).await.map_err(|e| {
            tracing::error!(group, error = %e, "removing a group's membership failed");
            BrokerError::Unavailable(format!(
                "consumer group {group:?} could not be deleted: storage failed; see the broker log"
            ))
        })?;
        {
            let mut live = lock(&cell.live);
            live.deleted = true;
            live.end_all("the group was deleted");
        }
        let mut groups = lock(&self.groups);
        groups.remove(group);
        self.known.store(groups.len(), Ordering::Release);
        Ok(true)
    }

    /// Removes, in every group, the members not seen within the session timeout.
    pub async fn expire(&self, counts: Counts<'_>) {
        let now = Instant::now();
        let timeout = self.session_timeout;
        let due: Vec<String> = lock(&self.groups)
            .iter()
            .filter(|(_, c)| {
                lock(&c.live)
                    .state
                    .members
                    .values()
                    .any(|m| now.saturating_duration_since(m.last_seen) > timeout)
            })
            .map(|(g, _)| g.clone())
            .collect();
        for group in due {
            let res = self
                .change(&group, false, |live| {
                    let gone = live.state.expire(Instant::now(), timeout, counts);
                    for id in &gone {
                        tracing::info!(group, member = id, "group member removed: session timeout");
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(group, error = %e, "expiring group members failed");
            }
        }
    }
}

pub(crate) fn fenced_unknown(group: &str, member: &str) -> BrokerError {
    BrokerError::Fenced {
        group: group.to_string(),
        reason: format!("member {member:?} is not in the group (removed or expired)"),
    }
}
