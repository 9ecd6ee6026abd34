//! Reading: poll (group position, long poll), fetch (stateless), commit and reset.

use std::sync::Arc;

use tokio::time::Instant;

use super::Broker;
use super::error::{BrokerError, NameKind};
use super::names;
use super::types::{
    ConsumedRecord, FetchRequest, FetchResponse, PollRequest, Position, StartPosition,
};
use crate::storage::Topic;

impl Broker {
    /// Records from the group's committed offsets, up to the limits, waiting up to
    /// `limits.max_wait` when none are available (not once the broker drains: then it answers
    /// with what there is). Does not move the committed offsets.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `OffsetOutOfRange` (committed offset below the log start
    /// after retention: Reset the group), `DataLoss`, `Unavailable`.
    pub async fn poll(&self, req: PollRequest) -> Result<Vec<ConsumedRecord>, BrokerError> {
        names::validate(NameKind::Group, &req.group)?;
        let topic = self.existing_topic(&req.topic)?;
        let deadline = Instant::now() + req.limits.max_wait;
        let mut changes = topic.watch_changes();
        // Positions are taken once: a new group starting at "latest" must get what arrives while
        // it waits, not a fresh "latest" on every wake-up.
        let positions = self.group_positions(&topic, &req.group, req.start_if_new)?;
        // A member reads only its assigned partitions (groups, issue 13).
        let lease = self
            .read_lease(&req.group, req.member.as_ref(), &topic.name)
            .await?;
        loop {
            changes.borrow_and_update();
            let out = read_from(
                &topic,
                &positions,
                lease.as_ref(),
                req.limits.max_records,
                req.limits.max_bytes,
            )?;
            if !out.is_empty() || Instant::now() >= deadline {
                return self.keep_assigned(&req, &topic.name, out);
            }
            let _waiting = self.inner.drain.waiting();
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Ok(out) },
                () = tokio::time::sleep_until(deadline) => return Ok(out),
                () = self.inner.drain.fired() => return Ok(out),
                () = topic.closed() => return deleted_or_stopping(self, &topic, out),
            }
        }
    }

    /// Records of one partition from an explicit offset; waits up to `max_wait` at the log end
    /// (not once the broker drains).
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `InvalidArgument` (no such partition), `OffsetOutOfRange`,
    /// `DataLoss`, `Unavailable`.
    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, BrokerError> {
        let topic = self.existing_topic(&req.topic)?;
        let p = partition_of(&topic, req.partition)?;
        let core = p.core();
        let deadline = Instant::now() + req.limits.max_wait;
        let mut end = core.watch_end();
        loop {
            end.borrow_and_update();
            let records = core
                .read(req.offset, req.limits.max_records, req.limits.max_bytes)
                .map_err(|e| BrokerError::from_storage(&topic.name, req.partition, e))?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(FetchResponse {
                    records,
                    log_start: core.start_offset(),
                    log_end: core.acked_end(),
                });
            }
            let _waiting = self.inner.drain.waiting();
            tokio::select! {
                _ = end.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = topic.closed() => {
                    deleted_or_stopping(self, &topic, Vec::new())?;
                    return Ok(FetchResponse { records, log_start: core.start_offset(), log_end: core.acked_end() });
                }
                () = self.inner.drain.fired() => {
                    return Ok(FetchResponse { records, log_start: core.start_offset(), log_end: core.acked_end() });
                }
            }
        }
    }

    /// A member's records of partitions it still may read: what a long poll read before a
    /// revocation is not handed out after it.
    fn keep_assigned(
        &self,
        req: &PollRequest,
        topic: &str,
        mut out: Vec<ConsumedRecord>,
    ) -> Result<Vec<ConsumedRecord>, BrokerError> {
        if let Some(m) = &req.member {
            let assigned = self.still_assigned(&req.group, m, topic)?;
            out.retain(|r| assigned.contains(&r.partition));
        }
        Ok(out)
    }

    /// Stores the group's next offset for some partitions, durably. For a group without
    /// members; members commit with [`Broker::commit_as`].
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `InvalidArgument` (no such partition or no offsets),
    /// `OffsetOutOfRange` (beyond the log end), `GroupHasMembers`, `Unavailable`.
    pub async fn commit(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(u32, u64)],
    ) -> Result<(), BrokerError> {
        self.commit_as(topic, group, offsets, None).await
    }

    /// Stores the group's next offset for some partitions, durably, as `member` when it is
    /// given: a member commits only partitions it owns, and a fenced commit changes nothing.
    ///
    /// # Errors
    /// As [`Broker::commit`], plus `Fenced`.
    pub async fn commit_as(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(u32, u64)],
        member: Option<&super::MemberRef>,
    ) -> Result<(), BrokerError> {
        self.check_commit_offsets(topic, group, offsets, member)?;
        // cluster metadata (issue 17): in a cluster the commit is a write every node applies.
        if let Some(p) = self.replicate_meta(super::meta::MetaWrite::Commit {
            group: group.to_string(),
            topic: topic.to_string(),
            offsets: offsets.to_vec(),
        }) {
            return p.await.map(|_| ());
        }
        self.inner
            .offsets
            .commit(group, topic, offsets)
            .await
            .map_err(|e| BrokerError::from_storage(topic, 0, e))
    }

    /// Checks a commit before it is made: names, partitions, offsets within the log, and the
    /// member's ownership (a member's commit runs on the cluster leader, which holds members).
    ///
    /// # Errors
    /// As [`Broker::commit_as`].
    pub(super) fn check_commit_offsets(
        &self,
        topic: &str,
        group: &str,
        offsets: &[(u32, u64)],
        member: Option<&super::MemberRef>,
    ) -> Result<(), BrokerError> {
        names::validate(NameKind::Group, group)?;
        // A shared group's position moves as its records are settled: a commit (or a reset)
        // would be stored and never used.
        self.not_shared(group)?;
        if member.is_some() {
            self.check_leader()?;
        }
        if offsets.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a commit needs at least one partition offset".into(),
            ));
        }
        // cluster metadata (issue 17): a follower's partitions may be behind the leader's (an
        // offset the leader acknowledged may be past this node's end), so the leader checks the
        // rest when the follower forwards the commit (`check_meta`).
        if self.replicator().is_some() && self.check_leader().is_err() {
            return names::validate(NameKind::Topic, topic);
        }
        let t = self.existing_topic(topic)?;
        for &(partition, offset) in offsets {
            let core = partition_of(&t, partition)?.core();
            let end = core.acked_end();
            if offset > end {
                return Err(BrokerError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    start: core.start_offset(),
                    end,
                });
            }
        }
        self.check_commit(group, member, topic, offsets.iter().map(|&(p, _)| p))
    }

    /// Sets the group's offsets in every partition to `to`; returns them.
    ///
    /// # Errors
    /// As [`Broker::commit`], plus `DataLoss` when a timestamp search meets damage.
    pub async fn reset(
        &self,
        topic: &str,
        group: &str,
        to: Position,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        names::validate(NameKind::Group, group)?;
        names::validate(NameKind::Topic, topic)?;
        // cluster metadata (issue 17): on a follower, whose partitions may be behind, the leader
        // resolves the position; the offsets it committed are read back once applied here.
        if self.replicator().is_some() && self.check_leader().is_err() {
            let write = super::meta::MetaWrite::Reset {
                group: group.to_string(),
                topic: topic.to_string(),
                to,
            };
            if let Some(p) = self.replicate_meta(write) {
                p.await?;
                let committed = self
                    .inner
                    .offsets
                    .topic_offsets(group, topic)
                    .map_err(|e| BrokerError::group_damaged(group, &e))?;
                return Ok(committed.into_iter().collect());
            }
        }
        let offsets = self.reset_offsets(topic, group, to)?;
        self.commit(topic, group, &offsets).await?;
        Ok(offsets)
    }

    /// The offsets a reset of `group` to `to` means in this node's partitions of `topic`.
    pub(super) fn reset_offsets(
        &self,
        topic: &str,
        group: &str,
        to: Position,
    ) -> Result<Vec<(u32, u64)>, BrokerError> {
        names::validate(NameKind::Group, group)?;
        let t = self.existing_topic(topic)?;
        resolve_positions(&t, to)
    }

    /// The group's next offset in each partition of `topic`: its committed offset, or `new` where
    /// it has none.
    pub(super) fn group_positions(
        &self,
        topic: &Topic,
        group: &str,
        new: StartPosition,
    ) -> Result<Vec<u64>, BrokerError> {
        let committed = self
            .inner
            .offsets
            .topic_offsets(group, &topic.name)
            .map_err(|e| BrokerError::group_damaged(group, &e))?;
        Ok(topic
            .partitions()
            .iter()
            .map(|p| match committed.get(&p.id()) {
                Some(&offset) => offset,
                None => match new {
                    StartPosition::Earliest => p.core().start_offset(),
                    StartPosition::Latest => p.core().acked_end(),
                },
            })
            .collect())
    }
}

/// What a waiting read answers when its topic closes: what it has while the broker drains or
/// stops, else NOT_FOUND (the topic was deleted under it).
fn deleted_or_stopping(
    broker: &Broker,
    topic: &Topic,
    out: Vec<ConsumedRecord>,
) -> Result<Vec<ConsumedRecord>, BrokerError> {
    if broker.is_draining() {
        Ok(out)
    } else {
        Err(BrokerError::TopicNotFound(topic.name.clone()))
    }
}

pub(super) fn partition_of(
    topic: &Topic,
    partition: u32,
) -> Result<&crate::storage::Partition, BrokerError> {
    topic.partition(partition).ok_or_else(|| {
        BrokerError::InvalidArgument(format!(
            "partition {partition} does not exist: topic {:?} has partitions 0 to {}",
            topic.name,
            topic.config.partitions - 1
        ))
    })
}

/// Each partition's offset for `to`.
pub(super) fn resolve_positions(
    topic: &Arc<Topic>,
    to: Position,
) -> Result<Vec<(u32, u64)>, BrokerError> {
    topic
        .partitions()
        .iter()
        .map(|p| {
            let core = p.core();
            let (start, end) = (core.start_offset(), core.acked_end());
            let offset = match to {
                Position::Earliest => start,
                Position::Latest => end,
                Position::Offset(o) => o.clamp(start, end),
                Position::Timestamp(ts) => core
                    .offset_for_timestamp(ts)
                    .map_err(|e| BrokerError::from_storage(&topic.name, p.id(), e))?,
            };
            Ok((p.id(), offset))
        })
        .collect()
}

/// Reads from each partition at its position until the limits are reached. The partition read
/// first rotates from call to call, so one busy partition cannot starve the others.
pub(super) fn read_from(
    topic: &Topic,
    positions: &[u64],
    only: Option<&std::collections::BTreeSet<u32>>,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<ConsumedRecord>, BrokerError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let n = positions.len();
    let first = topic.next_read_start();
    for k in 0..n {
        let i = (first + k) % n;
        let (p, pos) = (&topic.partitions()[i], positions[i]);
        if only.is_some_and(|o| !o.contains(&p.id())) {
            continue;
        }
        if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
            break;
        }
        let budget = max_bytes.saturating_sub(bytes).max(1);
        let records = p
            .core()
            .read(pos, max_records - out.len(), budget)
            .map_err(|e| BrokerError::from_storage(&topic.name, p.id(), e))?;
        for record in records {
            bytes += record.key.len() + record.value.len();
            out.push(ConsumedRecord {
                partition: p.id(),
                record,
            });
        }
    }
    Ok(out)
}
