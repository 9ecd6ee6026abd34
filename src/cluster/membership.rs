//! Membership of the cluster (issue 17, operations): adding and removing nodes through
//! openraft's `add_learner` and `change_membership`, where each member is reached, and whether
//! this node, leading, still hears from a majority.
//!
//! - **Add**: the new node is started with `--join` (it does not initialize a cluster of its
//!   own); the leader adds it as a learner and waits until it has caught up, then makes it a
//!   voter. It catches up from the leader's log, or from a snapshot when the log it needs was
//!   purged.
//! - **Remove**: the node stops being a voter and a member (`retain = false`): the others stop
//!   replicating to it and it no longer counts towards a majority. Its process keeps running
//!   until stopped; it takes no writes (it is no one's leader and knows no leader).
//!
//! Any node takes the request on its node-to-node port (`ChangeMembership`) and forwards it to
//! the leader. The node-to-node port has no authentication yet (like the rest of it): keep it
//! on a network only the cluster's nodes reach.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::types::{decode, encode};
use crate::sync::lock;

/// A leader that has not heard from a majority for this long stops taking writes (more than
/// the election timeout: by then the majority may have elected another leader).
const QUORUM_LEASE: Duration = Duration::from_millis(1500);
/// How long a membership change may take (adding waits for the new node to catch up).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// A change of the cluster's members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add node `node_id`, reached at `addr` (its node-to-node address), as a voter.
    Add { node_id: u64, addr: String },
    /// Remove node `node_id` (voter or learner).
    Remove { node_id: u64 },
}

/// A member after a change: id, node-to-node address, voter.
pub type Member = (u64, String, bool);

/// The members after the change, or why it was not made.
pub type MembershipResult = Result<Vec<Member>, String>;

/// When this node, leading, last heard from a majority, as openraft's metrics said.
#[derive(Default)]
pub struct Quorum {
    /// When the metrics were seen, and how old the majority's last ack was then; `None`
    /// when not leading.
    acked: Mutex<Option<(Instant, u64)>>,
}

impl Quorum {
    fn record(&self, millis_since_ack: Option<u64>) {
        *lock(&self.acked) = millis_since_ack.map(|ms| (Instant::now(), ms));
    }

    /// False when this node leads but has not heard from a majority within the lease.
    pub fn fresh(&self) -> bool {
        lock(&self.acked)
            .is_none_or(|(seen, ms)| seen.elapsed() + Duration::from_millis(ms) < QUORUM_LEASE)
    }
}

impl Cluster {
    /// Follows openraft's metrics: how long ago a majority acknowledged this leader.
    pub(super) async fn watch_quorum(&self) {
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let m = metrics.borrow();
                let leading = m.current_leader == Some(self.inner.id);
                self.inner
                    .quorum
                    .record(leading.then_some(m.millis_since_quorum_ack.unwrap_or(0)));
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// Resolves once this node leads but has not heard from a majority within the lease.
    pub(super) async fn lost_quorum(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.leader() == Some(self.inner.id) && !self.inner.quorum.fresh() {
                return;
            }
        }
    }

    /// Every member (voters and learners) and where this node reaches it: its own route
    /// (`--raft-via`) or the address in the membership.
    /// The configured `--peers` count too, until the membership (replicated after start) has
    /// them: a node learns the others' client addresses from its first moments.
    pub(super) fn members(&self) -> BTreeMap<u64, String> {
        let settings = &self.inner.settings;
        let mut out: BTreeMap<u64, String> = settings
            .peers
            .iter()
            .map(|(id, a)| (*id, settings.route(*id, &a.to_string())))
            .collect();
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        out.extend(
            m.membership()
                .nodes()
                .map(|(id, node)| (*id, settings.route(*id, &node.addr))),
        );
        out
    }

    /// Where this node reaches member `id`.
    pub(super) fn route_to(&self, id: u64) -> Option<String> {
        self.members().remove(&id)
    }

    /// Makes a membership change on the leader (forwarding it there from a follower).
    pub(crate) async fn change_membership(&self, change: MembershipChange) -> MembershipResult {
        let Some(leader) = self.await_leader().await else {
            return Err("no leader was elected in time".into());
        };
        if leader != self.inner.id {
            return self.forward_membership(leader, &change).await;
        }
        let raft = &self.inner.raft;
        match change {
            MembershipChange::Add { node_id, addr } => {
                tracing::info!(node_id, %addr, "adding a node: as a learner until it caught up");
                raft.add_learner(node_id, BasicNode::new(addr), true)
                    .await
                    .map_err(|e| format!("adding node {node_id} as a learner: {e}"))?;
                raft.change_membership(
                    ChangeMembers::AddVoterIds([node_id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| format!("making node {node_id} a voter: {e}"))?;
            }
            MembershipChange::Remove { node_id } => {
                let m = raft.metrics().borrow().membership_config.clone();
                let voter = m.membership().voter_ids().any(|v| v == node_id);
                let changes = if voter {
                    ChangeMembers::RemoveVoters([node_id].into_iter().collect())
                } else {
                    ChangeMembers::RemoveNodes([node_id].into_iter().collect())
                };
                tracing::info!(node_id, voter, "removing a node");
                raft.change_membership(changes, false)
                    .await
                    .map_err(|e| format!("removing node {node_id}: {e}"))?;
            }
        }
        let m = raft.metrics().borrow().membership_config.clone();
        let voters: std::collections::BTreeSet<u64> = m.membership().voter_ids().collect();
        Ok(m.membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect())
    }

    async fn forward_membership(&self, leader: u64, change: &MembershipChange) -> MembershipResult {
        let addr = self
            .route_to(leader)
            .ok_or_else(|| format!("the leader (node {leader}) is not a known member"))?;
        let mut client = self
            .inner
            .clients
            .client(&addr)
            .map_err(|e| e.to_string())?;
        let payload = encode(change).map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(crate::proto::cluster::RaftPayload {
            group: 0,
            payload: payload.into(),
        });
        req.set_timeout(CHANGE_TIMEOUT);
        let reply = client.change_membership(req).await.map_err(|s| {
            format!(
                "forwarding to the leader (node {leader}) failed: {}",
                s.message()
            )
        })?;
        decode::<MembershipResult>(&reply.into_inner().payload).map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_fresh_only_while_a_majority_acked_within_the_lease() {
        let q = Quorum::default();
        assert!(q.fresh(), "not leading: nothing to refuse");
        q.record(Some(0));
        assert!(q.fresh());
        q.record(Some(QUORUM_LEASE.as_millis() as u64));
        assert!(!q.fresh(), "a majority has not acked for a whole lease");
        q.record(None);
        assert!(q.fresh());
    }
}
