//! Groups with members: the server assigns a group's partitions to its members, balanced,
//! sticky and cooperatively (a partition moves only after its old owner released it or was
//! removed), and fences calls of members that no longer own what they ask for.
//!
//! - [`assign`]: the pure assignor; [`state`]: one group's state machine (join, leave, release,
//!   expire, restore); `coordinator`: every group in memory, the members' channels, and
//!   `store`: the durable membership (`group-members/<group>.json`).
//! - Here: the Broker calls every protocol makes: [`Broker::join_group`] (a stream member, held
//!   by its [`Membership`]), HTTP members ([`Broker::join_http_member`],
//!   [`Broker::leave_group`]), [`Broker::create_group`], [`Broker::group_membership`],
//!   [`Broker::delete_group`], and the fencing checks poll, subscribe and commit run.

pub mod assign;
pub(crate) mod coordinator;
pub mod state;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::Instant;

use tokio::sync::watch;

pub use assign::TopicPartition;
use coordinator::fenced_unknown;
use state::{Fence, JoinSpec};
pub use state::{GroupPhase, MemberKind, MemberView};

use super::error::{BrokerError, NameKind};
use super::{Broker, names};

/// A stream member's join.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub group: String,
    /// Topics to consume; empty: the topics the group was created with.
    pub topics: Vec<String>,
    /// Static membership: a member coming back with the same id within the session timeout
    /// gets its partitions back without a rebalance.
    pub instance_id: Option<String>,
    pub client_id: String,
    /// The member's network address, for DescribeGroup.
    pub address: String,
}

/// A member id and epoch, carried by the calls of a member (fencing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub id: String,
    pub epoch: u64,
}

/// A group's membership as DescribeGroup shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    pub group: String,
    pub phase: GroupPhase,
    pub epoch: u64,
    /// Topics the group consumes: those it was created with and its members'.
    pub topics: Vec<String>,
    pub members: Vec<MemberDescription>,
    pub rebalances: u64,
    pub last_rebalance_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub address: String,
    pub epoch: u64,
    pub kind: MemberKind,
    pub connected: bool,
    pub joined_at_ns: i64,
    /// Owned partitions (including those being revoked).
    pub partitions: Vec<TopicPartition>,
    /// Owned partitions the member is asked to release.
    pub revoking: Vec<TopicPartition>,
    /// Records in its partitions after the group's committed offsets.
    pub lag: u64,
}

/// A stream member's membership: it exists while this value does. Dropping it ends the
/// membership (a static member keeps its partitions for the session timeout);
/// [`Membership::leave`] ends it for good.
pub struct Membership {
    broker: Broker,
    group: String,
    member: MemberRef,
    view: watch::Receiver<MemberView>,
    left: bool,
}

impl Membership {
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn member(&self) -> &MemberRef {
        &self.member
    }

    /// The member's current view.
    pub fn view(&self) -> MemberView {
        self.view.borrow().clone()
    }

    /// Waits for the next change of the view. A view with `ended` set is the last.
    pub async fn changed(&mut self) -> MemberView {
        if self.view.changed().await.is_err() {
            let mut v = self.view();
            v.ended
                .get_or_insert_with(|| "the membership ended".to_string());
            return v;
        }
        self.view.borrow_and_update().clone()
    }

    /// Notes the member alive.
    ///
    /// # Errors
    /// `Fenced` once the member was removed or replaced.
    pub fn heartbeat(&self) -> Result<(), BrokerError> {
        self.broker
            .inner
            .groups
            .heartbeat(&self.group, &self.member.id, self.member.epoch)
    }

    /// Gives back partitions the member was asked to release (after committing them).
    ///
    /// # Errors
    /// `Fenced` once the member was removed or replaced; `Unavailable` (not stored).
    pub async fn release(&self, partitions: &[TopicPartition]) -> Result<(), BrokerError> {
        self.broker
            .release_partitions(&self.group, &self.member, partitions)
            .await
    }

    /// Leaves the group for good (a static member too): its partitions move at once.
    ///
    /// # Errors
    /// `Unavailable` when the change cannot be stored.
    pub async fn leave(mut self) -> Result<(), BrokerError> {
        self.left = true;
        let (group, member) = (self.group.clone(), self.member.clone());
        let counts = self.broker.partition_counts();
        self.broker
            .inner
            .groups
            .change(&group, false, |live| {
                if live.state.check(&member.id, member.epoch).is_ok() {
                    live.state.remove(&member.id, Instant::now(), &counts);
                }
                Ok(())
            })
            .await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (broker, group, member) =
            (self.broker.clone(), self.group.clone(), self.member.clone());
        runtime.spawn(async move {
            let counts = broker.partition_counts();
            let res = broker
                .inner
                .groups
                .change(&group, false, |live| {
                    live.state
                        .disconnect(&member.id, member.epoch, Instant::now(), &counts);
                    Ok(())
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(group, member = member.id, error = %e, "ending a membership failed");
            }
        });
    }
}

fn fence(group: &str, f: Fence) -> BrokerError {
    BrokerError::Fenced {
        group: group.to_string(),
        reason: f.to_string(),
    }
}

fn member_required(group: &str) -> BrokerError {
    BrokerError::GroupHasMembers {
        group: group.to_string(),
        what:
            "calls on it must carry the member id and epoch of a member (join the group), or use \
               another group name for memberless consumption"
                .into(),
    }
}

/// A new member id: random, 128 bits, hex.
fn fresh_member_id() -> String {
    format!("m-{:032x}", rand::random::<u128>())
}

impl Broker {
    /// Partition counts of existing topics, for the assignor.
    fn partition_counts(&self) -> impl Fn(&str) -> Option<u32> + Sync + '_ {
        move |t| self.topic(t).map(|t| t.config.partitions)
    }

    fn member_topics(&self, topics: &[String]) -> Result<BTreeSet<String>, BrokerError> {
        for t in topics {
            self.existing_topic(t)?;
        }
        Ok(topics.iter().cloned().collect())
    }

    /// Joins a group as a stream member. The membership lasts as long as the returned value.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `InvalidArgument` (no topics), `Unavailable`.
    pub async fn join_group(&self, req: JoinRequest) -> Result<Membership, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): members live on the leader
        names::validate(NameKind::Group, &req.group)?;
        self.not_shared(&req.group)?; // shared groups (issue 14)
        let topics = self.member_topics(&req.topics)?;
        if topics.is_empty()
            && !self
                .inner
                .groups
                .read(&req.group, |s| !s.declared_topics.is_empty())
                .unwrap_or(false)
        {
            return Err(BrokerError::InvalidArgument(
                "a join must name at least one topic (the group was not created with any)".into(),
            ));
        }
        let spec = JoinSpec {
            member_id: None,
            instance_id: req.instance_id.filter(|i| !i.is_empty()),
            client_id: req.client_id,
            address: req.address,
            topics,
            kind: MemberKind::Stream,
        };
        let counts = self.partition_counts();
        let (member, view) = self
            .inner
            .groups
            .change(&req.group, true, |live| {
                let (id, epoch) = live
                    .state
                    .join(spec, fresh_member_id(), Instant::now(), &counts)
                    .map_err(BrokerError::InvalidArgument)?;
                let view = live.state.view(&id).unwrap_or_default();
                let (tx, rx) = watch::channel(view);
                if let Some(old) = live.senders.insert(id.clone(), tx) {
                    old.send_modify(|v| {
                        v.ended = Some("replaced by a new member with the same instance id".into());
                    });
                }
                Ok((MemberRef { id, epoch }, rx))
            })
            .await?;
        tracing::info!(
            group = req.group,
            member = member.id,
            epoch = member.epoch,
            "group member joined"
        );
        Ok(Membership {
            broker: self.clone(),
            group: req.group,
            member,
            view,
            left: false,
        })
    }

    async fn release_partitions(
        &self,
        group: &str,
        member: &MemberRef,
        partitions: &[TopicPartition],
    ) -> Result<(), BrokerError> {
        self.inner
            .groups
            .change(group, false, |live| {
                live.state
                    .release(&member.id, member.epoch, partitions, Instant::now())
                    .map(|_| ())
                    .map_err(|f| fence(group, f))
            })
            .await
            .map_err(|e| match e {
                BrokerError::GroupNotFound(_) => fenced_unknown(group, &member.id),
                e => e,
            })
    }

    /// Creates a group that consumes `topics` (the original's `POST /consumer-groups`); members
    /// that name no topics consume these.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `InvalidArgument` (no topics), `GroupExists`,
    /// `Unavailable`.
    pub async fn create_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<GroupMembership, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): members live on the leader
        names::validate(NameKind::Group, group)?;
        self.not_shared(group)?; // shared groups (issue 14)
        let topics = self.member_topics(topics)?;
        if topics.is_empty() {
            return Err(BrokerError::InvalidArgument(
                "a group needs at least one topic".into(),
            ));
        }
        if self.inner.groups.read(group, |_| ()).is_some()
            || self.list_groups().iter().any(|g| g == group)
        {
            return Err(BrokerError::GroupExists(group.to_string()));
        }
        self.inner
            .groups
            .change(group, true, |live| {
                if live.state.epoch != 0 {
                    return Err(BrokerError::GroupExists(group.to_string()));
                }
                live.state.declare_topics(topics);
                Ok(())
            })
            .await?;
        self.membership_or_not_found(group)
    }

    /// Adds (or refreshes) an HTTP member named `member_id`: it stays while it polls within the
    /// session timeout; its revoked partitions are released at its next poll.
    ///
    /// # Errors
    /// `InvalidName`, `GroupNotFound` (create the group first), `InvalidArgument`,
    /// `Unavailable`.
    pub async fn join_http_member(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<GroupMembership, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): members live on the leader
        names::validate(NameKind::Group, group)?;
        if member_id.is_empty() || member_id.len() > 249 {
            return Err(BrokerError::InvalidArgument(
                "member_id must be 1 to 249 bytes".into(),
            ));
        }
        let counts = self.partition_counts();
        let spec = JoinSpec {
            member_id: Some(member_id.to_string()),
            instance_id: None,
            client_id: "http".into(),
            address: String::new(),
            topics: BTreeSet::new(),
            kind: MemberKind::Http,
        };
        self.inner
            .groups
            .change(group, false, |live| {
                live.state
                    .join(spec, String::new(), Instant::now(), &counts)
                    .map(|_| ())
                    .map_err(BrokerError::InvalidArgument)
            })
            .await?;
        self.membership_or_not_found(group)
    }

    /// Removes a member (any kind) at once; its partitions move.
    ///
    /// # Errors
    /// `InvalidName`, `GroupNotFound`, `MemberNotFound`, `Unavailable`.
    pub async fn leave_group(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<GroupMembership, BrokerError> {
        self.check_leader()?; // cluster metadata (issue 17): members live on the leader
        names::validate(NameKind::Group, group)?;
        let counts = self.partition_counts();
        self.inner
            .groups
            .change(group, false, |live| {
                if live.state.remove(member_id, Instant::now(), &counts) {
                    Ok(())
                } else {
                    Err(BrokerError::MemberNotFound {
                        group: group.to_string(),
                        member: member_id.to_string(),
                    })
                }
            })
            .await?;
        self.membership_or_not_found(group)
    }

    fn membership_or_not_found(&self, group: &str) -> Result<GroupMembership, BrokerError> {
        self.group_membership(group)
            .ok_or_else(|| BrokerError::GroupNotFound(group.to_string()))
    }

    /// The group's members, state and epoch, if it ever had members or was created.
    pub fn group_membership(&self, group: &str) -> Option<GroupMembership> {
        let mut out = self.inner.groups.read(group, |s| {
            let mut topics: BTreeSet<String> = s.declared_topics.clone();
            let members: Vec<MemberDescription> = s
                .members
                .values()
                .map(|m| {
                    topics.extend(m.topics.iter().cloned());
                    let view = s.view(&m.id).unwrap_or_default();
                    MemberDescription {
                        id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        address: m.address.clone(),
                        epoch: m.epoch,
                        kind: m.kind,
                        connected: m.connected,
                        joined_at_ns: m.joined_at_ns,
                        partitions: m.owned.iter().cloned().collect(),
                        revoking: view.revoking,
                        lag: 0,
                    }
                })
                .collect();
            GroupMembership {
                group: group.to_string(),
                phase: s.phase(),
                epoch: s.epoch,
                topics: topics.into_iter().collect(),
                members,
                rebalances: s.rebalances,
                last_rebalance_ns: s.last_rebalance_ns,
            }
        })?;
        for m in &mut out.members {
            m.lag = self.lag_of(group, &m.partitions);
        }
        Some(out)
    }

    /// Records after the group's committed offsets in `partitions`.
    fn lag_of(&self, group: &str, partitions: &[TopicPartition]) -> u64 {
        let mut lag = 0;
        for tp in partitions {
            let Some(t) = self.topic(&tp.topic) else {
                continue;
            };
            let Some(p) = t.partition(tp.partition) else {
                continue;
            };
            let committed = self
                .inner
                .offsets
                .topic_offsets(group, &tp.topic)
                .ok()
                .and_then(|o| o.get(&tp.partition).copied())
                .unwrap_or_else(|| p.core().start_offset());
            lag += p.core().acked_end().saturating_sub(committed);
        }
        lag
    }

    /// Deletes a group: its membership and committed offsets. Refused while members are
    /// connected (static members whose stream ended do not count).
    ///
    /// # Errors
    /// `InvalidName`, `GroupNotFound`, `GroupHasMembers`, `Unavailable`.
    pub async fn delete_group(&self, group: &str) -> Result<(), BrokerError> {
        self.check_group_deletable(group)?;
        // cluster metadata (issue 17): in a cluster the deletion is a write every node applies.
        let existed = match self.replicate_meta(super::meta::MetaWrite::DeleteGroup {
            group: group.to_string(),
        }) {
            Some(p) => p.await?,
            None => self.delete_group_here(group).await?,
        };
        if !existed {
            return Err(BrokerError::GroupNotFound(group.to_string()));
        }
        tracing::info!(group, "group deleted");
        Ok(())
    }

    /// Whether a group may be deleted now: not while members are connected.
    ///
    /// # Errors
    /// `InvalidName`, `GroupHasMembers`.
    pub(crate) fn check_group_deletable(&self, group: &str) -> Result<(), BrokerError> {
        names::validate(NameKind::Group, group)?;
        let connected = self
            .inner
            .groups
            .read(group, |s| {
                s.members.values().filter(|m| m.connected).count()
            })
            .unwrap_or(0);
        if connected > 0 {
            return Err(BrokerError::GroupHasMembers {
                group: group.to_string(),
                what: format!(
                    "{connected} connected; stop them (or remove them) before deleting the group"
                ),
            });
        }
        Ok(())
    }

    /// Deletes a group's membership, offsets and shared-group state on this node; returns
    /// whether it had any.
    ///
    /// # Errors
    /// `Unavailable`.
    pub(crate) async fn delete_group_here(&self, group: &str) -> Result<bool, BrokerError> {
        let had_members = self.inner.groups.delete(group).await?;
        let had_offsets = self
            .inner
            .offsets
            .delete_group(group)
            .await
            .map_err(|e| BrokerError::from_storage(group, 0, e))?;
        let had_shared = self.delete_shared_group(group).await?; // shared groups (issue 14)
        Ok(had_members || had_offsets || had_shared)
    }

    /// The partitions of `topic` a poll or subscribe may read: every partition for a memberless
    /// call on a group without members, else those assigned to the member and not being
    /// revoked. A call carrying a member is a sign of life; an HTTP member's revoked partitions
    /// are released here (it has no other way to give them back).
    ///
    /// # Errors
    /// `GroupHasMembers` (memberless call on a group with members), `Fenced`, `Unavailable`.
    pub(crate) async fn read_lease(
        &self,
        group: &str,
        member: Option<&MemberRef>,
        topic: &str,
    ) -> Result<Option<BTreeSet<u32>>, BrokerError> {
        let Some(m) = member else {
            if self.inner.groups.has_members(group) {
                return Err(member_required(group));
            }
            return Ok(None);
        };
        self.inner.groups.heartbeat(group, &m.id, m.epoch)?;
        let (kind, view) = self
            .inner
            .groups
            .read(group, |s| {
                s.check(&m.id, m.epoch)
                    .map(|mem| (mem.kind, s.view(&m.id).unwrap_or_default()))
                    .map_err(|f| fence(group, f))
            })
            .ok_or_else(|| fenced_unknown(group, &m.id))??;
        if kind == MemberKind::Http && !view.revoking.is_empty() {
            self.release_partitions(group, m, &view.revoking).await?;
        }
        Ok(Some(
            view.assigned
                .iter()
                .filter(|tp| tp.topic == topic)
                .map(|tp| tp.partition)
                .collect(),
        ))
    }

    /// The member's partitions of `topic` that it may still read (the lease re-checked after a
    /// read), without side effects.
    pub(crate) fn still_assigned(
        &self,
        group: &str,
        member: &MemberRef,
        topic: &str,
    ) -> Result<BTreeSet<u32>, BrokerError> {
        self.inner
            .groups
            .read(group, |s| {
                s.check(&member.id, member.epoch)
                    .map_err(|f| fence(group, f))?;
                Ok(s.view(&member.id)
                    .unwrap_or_default()
                    .assigned
                    .into_iter()
                    .filter(|tp| tp.topic == topic)
                    .map(|tp| tp.partition)
                    .collect())
            })
            .ok_or_else(|| fenced_unknown(group, &member.id))?
    }

    /// Checks a commit: a member may commit only partitions it owns (being revoked included:
    /// it commits before it releases); a memberless commit only on a group without members.
    ///
    /// # Errors
    /// `GroupHasMembers`, `Fenced`.
    pub(crate) fn check_commit(
        &self,
        group: &str,
        member: Option<&MemberRef>,
        topic: &str,
        partitions: impl Iterator<Item = u32>,
    ) -> Result<(), BrokerError> {
        let Some(m) = member else {
            if self.inner.groups.has_members(group) {
                return Err(member_required(group));
            }
            return Ok(());
        };
        self.inner
            .groups
            .read(group, |s| {
                let mem = s.check(&m.id, m.epoch).map_err(|f| fence(group, f))?;
                for p in partitions {
                    let tp = TopicPartition::new(topic, p);
                    if !mem.owned.contains(&tp) {
                        return Err(fence(group, Fence::NotOwned(tp)));
                    }
                }
                Ok(())
            })
            .ok_or_else(|| fenced_unknown(group, &m.id))?
    }

    /// The member's view channel, for a subscription that follows its assignment.
    pub(crate) fn member_watch(
        &self,
        group: &str,
        member: &MemberRef,
    ) -> Result<watch::Receiver<MemberView>, BrokerError> {
        self.inner.groups.watch(group, &member.id, member.epoch)
    }

    /// Removes members not seen within the session timeout (the broker runs it periodically).
    pub(crate) async fn expire_members(&self) {
        let counts = self.partition_counts();
        self.inner.groups.expire(&counts).await;
    }

    /// A member's current epoch.
    pub fn member_epoch(&self, group: &str, member: &str) -> Option<u64> {
        self.inner
            .groups
            .read(group, |s| s.members.get(member).map(|m| m.epoch))
            .flatten()
    }

    /// Per group with members (or created): its members, rebalances so far and each member's
    /// lag, for the metrics.
    pub fn group_memberships(&self) -> Vec<GroupMembership> {
        self.member_group_names()
            .iter()
            .filter_map(|g| self.group_membership(g))
            .collect()
    }

    /// Names of groups that have (or had) members or were created.
    pub fn member_group_names(&self) -> Vec<String> {
        self.inner.groups.group_names()
    }
}
