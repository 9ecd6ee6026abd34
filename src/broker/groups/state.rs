//! One group's membership as a synchronous state machine: members, their epochs, who owns which
//! partition, and where each partition should go ([`super::assign`]).
//!
//! The one invariant: a partition is in at most one member's `owned` set. A partition reaches
//! its target owner only once nobody owns it: its old owner released it (after committing) or
//! was removed. Every change bumps the group epoch; a member's epoch is the group epoch of its
//! join, so a zombie (a replaced static member, a removed member) is fenced by it.
//!
//! No I/O and no clock here: time is passed in, persistence is [`GroupState::snapshot`] and
//! [`GroupState::restore`], so a property test drives it directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::assign::{TopicPartition, assign};

/// How a member stays alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// A JoinGroup stream: alive while the stream is open and heartbeating.
    Stream,
    /// An HTTP member: alive while it polls within the session timeout.
    Http,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    /// Static membership: a member that comes back with it gets its partitions back.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub address: String,
    pub topics: BTreeSet<String>,
    /// The group epoch of this incarnation's join.
    pub epoch: u64,
    pub owned: BTreeSet<TopicPartition>,
    pub joined_at_ns: i64,
    pub kind: MemberKind,
    /// False for a static member whose stream ended (its session timeout runs).
    pub connected: bool,
    pub last_seen: Instant,
}

/// What joins.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// HTTP members name themselves; stream members get `fresh_id`.
    pub member_id: Option<String>,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub address: String,
    /// Empty: the group's declared topics.
    pub topics: BTreeSet<String>,
    pub kind: MemberKind,
}

/// Why a call carrying a member id and epoch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    UnknownMember(String),
    StaleEpoch {
        member: String,
        epoch: u64,
        current: u64,
    },
    NotOwned(TopicPartition),
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownMember(m) => {
                write!(f, "member {m:?} is not in the group (removed or expired)")
            }
            Self::StaleEpoch {
                member,
                epoch,
                current,
            } => write!(
                f,
                "member {member:?} epoch {epoch} is stale (current {current})"
            ),
            Self::NotOwned(tp) => write!(f, "partition {tp} is not assigned to this member"),
        }
    }
}

/// What a member is told: its assignment and what to release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberView {
    pub member_id: String,
    pub epoch: u64,
    pub group_epoch: u64,
    /// Owned and staying: consume these.
    pub assigned: Vec<TopicPartition>,
    /// Owned but moving: stop, commit, then release them.
    pub revoking: Vec<TopicPartition>,
    /// Set once the member is gone (removed, expired, replaced, group deleted).
    pub ended: Option<String>,
}

/// The group's state as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    Empty,
    Stable,
    Reconciling,
}

impl GroupPhase {
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Stable => "stable",
            Self::Reconciling => "reconciling",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GroupState {
    pub epoch: u64,
    /// Topics named when the group was created (HTTP), the default of members that name none.
    pub declared_topics: BTreeSet<String>,
    pub members: BTreeMap<String, Member>,
    target: BTreeMap<TopicPartition, String>,
    /// Rebalances started (membership or subscription changes).
    pub rebalances: u64,
    reconciling_since: Option<Instant>,
    /// Durations of rebalances that completed since last taken ([`GroupState::take_completed`]).
    completed: Vec<Duration>,
    pub last_rebalance_ns: i64,
}

/// The durable part of a group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: u64,
    pub declared_topics: BTreeSet<String>,
    pub members: Vec<StoredMember>,
    #[serde(default)]
    pub last_rebalance_ns: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub address: String,
    pub topics: BTreeSet<String>,
    pub epoch: u64,
    pub owned: BTreeSet<TopicPartition>,
    pub joined_at_ns: i64,
    pub kind: MemberKind,
}

/// Partition counts of the topics a group names (`None`: no such topic).
pub type Counts<'a> = &'a (dyn Fn(&str) -> Option<u32> + Sync);

impl GroupState {
    pub fn phase(&self) -> GroupPhase {
        if self.members.is_empty() {
            GroupPhase::Empty
        } else if self.settled() {
            GroupPhase::Stable
        } else {
            GroupPhase::Reconciling
        }
    }

    /// Every partition is with its target owner.
    fn settled(&self) -> bool {
        let owned: usize = self.members.values().map(|m| m.owned.len()).sum();
        owned == self.target.len()
            && self
                .target
                .iter()
                .all(|(tp, m)| self.members.get(m).is_some_and(|m| m.owned.contains(tp)))
    }

    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.owned.contains(tp))
            .map(|m| m.id.as_str())
    }

    fn bump(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// The member, if `epoch` is its current one.
    ///
    /// # Errors
    /// The fence when it is not.
    pub fn check(&self, member: &str, epoch: u64) -> Result<&Member, Fence> {
        let m = self
            .members
            .get(member)
            .ok_or_else(|| Fence::UnknownMember(member.to_string()))?;
        if m.epoch != epoch {
            return Err(Fence::StaleEpoch {
                member: member.to_string(),
                epoch,
                current: m.epoch,
            });
        }
        Ok(m)
    }

    /// Adds a member, or brings a static member (same `instance_id`) back as a new incarnation
    /// with the partitions it owned. Returns its id and epoch.
    ///
    /// # Errors
    /// A message when an HTTP member id is taken by a stream member.
    pub fn join(
        &mut self,
        spec: JoinSpec,
        fresh_id: String,
        now: Instant,
        counts: Counts<'_>,
    ) -> Result<(String, u64), String> {
        let topics = if spec.topics.is_empty() {
            self.declared_topics.clone()
        } else {
            spec.topics
        };
        if topics.is_empty() {
            return Err("a member must name at least one topic (the group declares none)".into());
        }
        let existing = match (&spec.instance_id, &spec.member_id) {
            (Some(instance), _) => self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance))
                .map(|m| m.id.clone()),
            (None, Some(id)) => match self.members.get(id) {
                Some(m) if m.kind != spec.kind || m.instance_id.is_some() => {
                    return Err(format!("member id {id:?} is taken by another member"));
                }
                Some(_) => Some(id.clone()),
                None => None,
            },
            (None, None) => None,
        };
        let epoch = self.bump();
        if let Some(id) = existing {
            let m = self.members.get_mut(&id).expect("found above");
            m.epoch = epoch;
            m.connected = true;
            m.last_seen = now;
            m.client_id = spec.client_id;
            m.address = spec.address;
            m.kind = spec.kind;
            let resubscribed = m.topics != topics;
            m.topics = topics;
            if resubscribed {
                self.rebalance(now, counts);
            } else {
                self.grant(now);
            }
            return Ok((id, epoch));
        }
        let id = spec.member_id.unwrap_or(fresh_id);
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: spec.instance_id,
                client_id: spec.client_id,
                address: spec.address,
                topics,
                epoch,
                owned: BTreeSet::new(),
                joined_at_ns: crate::clock::now_ns(),
                kind: spec.kind,
                connected: true,
                last_seen: now,
            },
        );
        self.rebalance(now, counts);
        Ok((id, epoch))
    }

    /// Removes a member; its partitions are free for their next owners at once.
    pub fn remove(&mut self, member: &str, now: Instant, counts: Counts<'_>) -> bool {
        if self.members.remove(member).is_none() {
            return false;
        }
        self.bump();
        self.rebalance(now, counts);
        true
    }

    /// The member's stream ended: a dynamic member is removed; a static one keeps its partitions
    /// for the session timeout.
    pub fn disconnect(
        &mut self,
        member: &str,
        epoch: u64,
        now: Instant,
        counts: Counts<'_>,
    ) -> bool {
        let Ok(m) = self.check(member, epoch) else {
            return false;
        };
        if m.instance_id.is_none() {
            return self.remove(member, now, counts);
        }
        let m = self.members.get_mut(member).expect("checked");
        m.connected = false;
        m.last_seen = now;
        self.bump();
        true
    }

    /// Notes the member alive.
    ///
    /// # Errors
    /// The fence when the member or epoch is not current.
    pub fn heartbeat(&mut self, member: &str, epoch: u64, now: Instant) -> Result<(), Fence> {
        self.check(member, epoch)?;
        if let Some(m) = self.members.get_mut(member) {
            m.last_seen = now;
        }
        Ok(())
    }

    /// The member gives up partitions it is asked to release (others are ignored: a member never
    /// drops a partition it is meant to keep). Returns whether anything moved.
    ///
    /// # Errors
    /// The fence when the member or epoch is not current.
    pub fn release(
        &mut self,
        member: &str,
        epoch: u64,
        partitions: &[TopicPartition],
        now: Instant,
    ) -> Result<bool, Fence> {
        self.check(member, epoch)?;
        let target = &self.target;
        let m = self.members.get_mut(member).expect("checked");
        m.last_seen = now;
        let before = m.owned.len();
        for tp in partitions {
            if target.get(tp).map(String::as_str) != Some(member) {
                m.owned.remove(tp);
            }
        }
        if m.owned.len() == before {
            return Ok(false);
        }
        self.bump();
        self.grant(now);
        Ok(true)
    }

    /// Removes the members not seen for `timeout`; returns their ids.
    pub fn expire(&mut self, now: Instant, timeout: Duration, counts: Counts<'_>) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| now.saturating_duration_since(m.last_seen) > timeout)
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.bump();
            self.rebalance(now, counts);
        }
        gone
    }

    /// Sets the topics a group without members consumes by default.
    pub fn declare_topics(&mut self, topics: BTreeSet<String>) {
        self.declared_topics = topics;
        self.bump();
    }

    /// Recomputes every partition's target after a change of membership or subscriptions, then
    /// grants what is free.
    pub fn rebalance(&mut self, now: Instant, counts: Counts<'_>) {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let partitions: BTreeMap<String, u32> = topics
            .into_iter()
            .map(|t| (t.clone(), counts(t).unwrap_or(0)))
            .collect();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.topics.clone()))
            .collect();
        let current: BTreeMap<TopicPartition, String> = self
            .members
            .values()
            .flat_map(|m| m.owned.iter().map(|tp| (tp.clone(), m.id.clone())))
            .collect();
        self.target = assign(&partitions, &subscriptions, &current);
        self.rebalances += 1;
        self.last_rebalance_ns = crate::clock::now_ns();
        self.reconciling_since.get_or_insert(now);
        self.grant(now);
    }

    /// Hands every free partition to its target owner.
    fn grant(&mut self, now: Instant) {
        let owned: BTreeSet<TopicPartition> = self
            .members
            .values()
            .flat_map(|m| m.owned.iter().cloned())
            .collect();
        let mut granted = false;
        for (tp, id) in &self.target {
            if !owned.contains(tp)
                && let Some(m) = self.members.get_mut(id)
            {
                m.owned.insert(tp.clone());
                granted = true;
            }
        }
        if granted {
            self.epoch += 1;
        }
        if self.settled()
            && let Some(since) = self.reconciling_since.take()
        {
            self.completed.push(now.saturating_duration_since(since));
        }
    }

    /// Durations of rebalances completed since the last call.
    pub fn take_completed(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.completed)
    }

    /// What `member` is told.
    pub fn view(&self, member: &str) -> Option<MemberView> {
        let m = self.members.get(member)?;
        let (assigned, revoking) = m
            .owned
            .iter()
            .cloned()
            .partition(|tp| self.target.get(tp).map(String::as_str) == Some(member));
        Some(MemberView {
            member_id: m.id.clone(),
            epoch: m.epoch,
            group_epoch: self.epoch,
            assigned,
            revoking,
            ended: None,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            epoch: self.epoch,
            declared_topics: self.declared_topics.clone(),
            last_rebalance_ns: self.last_rebalance_ns,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    address: m.address.clone(),
                    topics: m.topics.clone(),
                    epoch: m.epoch,
                    owned: m.owned.clone(),
                    joined_at_ns: m.joined_at_ns,
                    kind: m.kind,
                })
                .collect(),
        }
    }

    /// The group after a broker restart: static and HTTP members are back (their session
    /// timeout starts now; static ones disconnected until they rejoin), dynamic stream members
    /// are gone (they rejoin). The epoch moves on, so every pre-restart incarnation of a
    /// dynamic member is fenced.
    pub fn restore(snapshot: Snapshot, now: Instant, counts: Counts<'_>) -> Self {
        let mut state = Self {
            epoch: snapshot.epoch,
            declared_topics: snapshot.declared_topics,
            last_rebalance_ns: snapshot.last_rebalance_ns,
            ..Self::default()
        };
        let mut seen = BTreeSet::new();
        for m in snapshot.members {
            if m.kind == MemberKind::Stream && m.instance_id.is_none() {
                continue;
            }
            // A file edited by hand must not yield two owners: the first member keeps it.
            let owned: BTreeSet<TopicPartition> = m
                .owned
                .into_iter()
                .filter(|tp| seen.insert(tp.clone()))
                .collect();
            state.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    address: m.address,
                    topics: m.topics,
                    epoch: m.epoch,
                    owned,
                    joined_at_ns: m.joined_at_ns,
                    kind: m.kind,
                    connected: m.kind == MemberKind::Http,
                    last_seen: now,
                },
            );
        }
        state.bump();
        state.rebalance(now, counts);
        state
    }
}
