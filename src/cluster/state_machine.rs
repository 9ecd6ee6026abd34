//! The state machine: every node applies the committed commands, in log order, to its own
//! broker through the single-node write path (the partition's batcher: one write and one
//! fdatasync per group commit). So a partition holds only committed records, and readers of any
//! node never see a record that may vanish.
//!
//! # Exactly once across restarts
//! What was applied is saved now and then (`raft/applied`: the last applied log id, the
//! membership, and each partition's end at that point), not with every write. After a restart
//! openraft applies again the entries after the saved point; a produce share is skipped when
//! its partition already holds it (the partition's end is at least the share's expected end:
//! the state machine is a partition's only writer and a share is stored whole, as one batch).

use std::collections::HashMap;
use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, Snapshot, SnapshotMeta, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::types::{
    Command, CommandReply, Entry, LogId, Membership, NodeId, Refusal, StorageError, TypeConfig,
    decode, encode,
};
use crate::broker::{Broker, BrokerError};
use crate::storage::StorageError as PartitionError;
use crate::storage::producers::ProducerAppend;
use crate::sync::lock;

/// An append queued by `apply`: its entry, the offset it must land at, and its ack.
type Queued = (LogId, u64, oneshot::Receiver<Result<u64, PartitionError>>);

/// What has been applied, as saved in `raft/applied`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: Membership,
    /// Each partition's end after `last_applied`, by (topic, partition).
    pub ends: Vec<((String, u32), u64)>,
}

/// The broker as a Raft state machine; clones share it.
#[derive(Clone)]
pub struct StateMachine {
    broker: Broker,
    dir: PathBuf,
    state: Arc<Mutex<State>>,
}

struct State {
    last_applied: Option<LogId>,
    membership: Membership,
    ends: HashMap<(String, u32), u64>,
    /// The last applied id when `raft/applied` was last written.
    saved: Option<LogId>,
}

fn apply_error(log_id: LogId, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::apply(log_id, &io::Error::other(e.to_string())).into()
}

impl StateMachine {
    /// The state machine over `broker`, resuming from `dir/applied` when it exists.
    ///
    /// # Errors
    /// `applied` exists but cannot be read.
    pub fn open(broker: Broker, dir: PathBuf) -> io::Result<Self> {
        let applied: Applied = match std::fs::read(dir.join("applied")) {
            Ok(b) => decode(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Applied::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            broker,
            dir,
            state: Arc::new(Mutex::new(State {
                last_applied: applied.last_applied,
                membership: applied.membership,
                ends: applied.ends.into_iter().collect(),
                saved: applied.last_applied,
            })),
        })
    }

    /// Writes `raft/applied` if anything was applied since the last time. Everything counted
    /// in it is durable: the state is updated only after the partitions acknowledged.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self) -> io::Result<()> {
        let applied = {
            let st = lock(&self.state);
            if st.saved == st.last_applied {
                return Ok(());
            }
            Applied {
                last_applied: st.last_applied,
                membership: st.membership.clone(),
                ends: st.ends.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            }
        };
        let bytes = encode(&applied).map_err(io::Error::other)?;
        let tmp = self.dir.join("applied.tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_data()?;
        std::fs::rename(&tmp, self.dir.join("applied"))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        lock(&self.state).saved = applied.last_applied;
        Ok(())
    }

    /// The broker it applies to.
    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    pub(super) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The last applied log index.
    pub fn last_applied(&self) -> Option<u64> {
        lock(&self.state).last_applied.map(|l| l.index)
    }

    /// Waits for queued appends; each must land where the log order put it.
    async fn settle(pending: &mut Vec<Queued>) -> Result<(), StorageError> {
        for (log_id, expected, rx) in pending.drain(..) {
            match rx.await {
                Ok(Ok(first)) if first == expected => {}
                Ok(Ok(first)) => {
                    tracing::error!(
                        %log_id,
                        expected,
                        first,
                        "a replicated share landed at another offset: this replica diverged"
                    );
                    return Err(apply_error(log_id, "replica diverged"));
                }
                Ok(Err(e)) => return Err(apply_error(log_id, e)),
                Err(_) => return Err(apply_error(log_id, "partition closed")),
            }
        }
        Ok(())
    }

    async fn apply_command(
        &self,
        log_id: LogId,
        cmd: Command,
        ends: &mut HashMap<(String, u32), u64>,
        pending: &mut Vec<Queued>,
    ) -> Result<CommandReply, StorageError> {
        let fatal = |e: BrokerError| apply_error(log_id, e);
        match cmd {
            Command::CreateTopic { name, config } => {
                Self::settle(pending).await?;
                self.broker
                    .apply_create_topic(&name, config)
                    .await
                    .map_err(fatal)?;
                Ok(CommandReply::Done)
            }
            Command::DeleteTopic { name } => {
                Self::settle(pending).await?;
                self.broker.apply_delete_topic(&name).await.map_err(fatal)?;
                ends.retain(|(t, _), _| *t != name);
                Ok(CommandReply::Done)
            }
            Command::InitProducer { existing } => {
                Self::settle(pending).await?;
                match self
                    .broker
                    .apply_init_producer(existing, log_id.index)
                    .await
                {
                    Ok(Some(g)) => Ok(CommandReply::Granted(g.producer_id, g.producer_epoch)),
                    Ok(None) => Ok(CommandReply::Refused(Refusal::Unavailable(
                        "granted before a restart".into(),
                    ))),
                    Err(BrokerError::InvalidArgument(m)) => {
                        Ok(CommandReply::Refused(Refusal::InvalidArgument(m)))
                    }
                    Err(e) => Err(fatal(e)),
                }
            }
            // cluster metadata: offsets, groups, ACLs (their own files; no partition waits).
            Command::Meta(write) => self
                .broker
                .apply_meta(write)
                .await
                .map(CommandReply::Changed)
                .map_err(fatal),
            Command::Produce { topic, shares } => {
                if let Some(share) = shares
                    .iter()
                    .find(|s| self.broker.partition_end(&topic, s.partition).is_none())
                {
                    // Deleted meanwhile (the same on every node).
                    let p = share.partition;
                    return Ok(CommandReply::Refused(if !self.broker.has_topic(&topic) {
                        Refusal::TopicNotFound(topic)
                    } else {
                        Refusal::InvalidArgument(format!(
                            "partition {p} of {topic:?} does not exist"
                        ))
                    }));
                }
                let mut firsts = Vec::with_capacity(shares.len());
                for share in shares {
                    let p = share.partition;
                    let records: Vec<_> = share.records.into_iter().map(Into::into).collect();
                    let key = (topic.clone(), p);
                    if let Some((id, epoch, sequence)) = share.producer {
                        // The partition's producer state decides (the same on every node, and
                        // again after a restart: a share stored before is answered, not stored).
                        Self::settle(pending).await?;
                        let append = ProducerAppend {
                            id,
                            epoch,
                            sequence,
                        };
                        let records_len = records.len();
                        let rx = self
                            .broker
                            .apply_append(&topic, p, records, Some(append))
                            .await
                            .map_err(fatal)?;
                        let n = records_len as u64;
                        let before = ends.get(&key).copied().unwrap_or(0);
                        match rx.await {
                            Ok(Ok(first)) => {
                                firsts.push(first);
                                // Stored here (at the end, so at `before`), or a duplicate
                                // answered with its original place (before `before`).
                                ends.insert(key, if first >= before { first + n } else { before });
                            }
                            Ok(Err(PartitionError::Sequence(e))) => {
                                return Ok(CommandReply::Refused(Refusal::ProducerSequence {
                                    message: format!("{topic}/{p}: {e}"),
                                    expected: e.expected(),
                                }));
                            }
                            Ok(Err(e)) => return Err(apply_error(log_id, e)),
                            Err(_) => return Err(apply_error(log_id, "partition closed")),
                        }
                        continue;
                    }
                    let n = records.len() as u64;
                    let expected = ends.get(&key).copied().unwrap_or(0);
                    let stored = self.broker.partition_end(&topic, p).unwrap_or(0);
                    firsts.push(expected);
                    ends.insert(key, expected + n);
                    if stored >= expected + n {
                        continue; // stored before a restart
                    }
                    let rx = self
                        .broker
                        .apply_append(&topic, p, records, None)
                        .await
                        .map_err(fatal)?;
                    pending.push((log_id, expected, rx));
                }
                Ok(CommandReply::Produced(firsts))
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = super::snapshot::Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let st = lock(&self.state);
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandReply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let (mut ends, mut membership) = {
            let st = lock(&self.state);
            (st.ends.clone(), st.membership.clone())
        };
        let mut replies = Vec::new();
        let mut pending = Vec::new();
        let mut last = None;
        for entry in entries {
            let log_id = entry.log_id;
            let reply = match entry.payload {
                EntryPayload::Blank => CommandReply::Done,
                EntryPayload::Membership(m) => {
                    membership = Membership::new(Some(log_id), m);
                    CommandReply::Done
                }
                EntryPayload::Normal(cmd) => {
                    self.apply_command(log_id, cmd, &mut ends, &mut pending)
                        .await?
                }
            };
            replies.push(reply);
            last = Some(log_id);
        }
        Self::settle(&mut pending).await?;
        let mut st = lock(&self.state);
        if last.is_some() {
            st.last_applied = last;
        }
        st.membership = membership;
        st.ends = ends;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the image is of exactly what is applied (see `snapshot`).
        let applied = {
            let st = lock(&self.state);
            (
                st.last_applied,
                st.membership.clone(),
                st.ends.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            )
        };
        super::snapshot::Builder {
            taken: self.take(applied),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let ends = self.install(meta, snapshot.get_ref()).await?;
        {
            let mut st = lock(&self.state);
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.ends = ends.into_iter().collect();
        }
        self.save()
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        super::snapshot::load(&self.dir).map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}
