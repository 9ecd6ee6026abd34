//! Readiness per node (issue 17): a node is ready for traffic when it knows a leader and its
//! client address (to name it in a redirect), and has applied what the leader had committed when it last heard from it (within one batch of
//! entries, so a follower keeping up under load stays ready).

use std::sync::atomic::Ordering;

use openraft::ServerState;

use super::Cluster;
use crate::broker::replication::NodeReadiness;

/// How many committed entries a follower may have left to apply and still be ready (one
/// AppendEntries payload: a follower that keeps up is within it).
const READY_LAG: u64 = 256;

impl Cluster {
    /// Remembers the leader's commit index an AppendEntries carried.
    pub(crate) fn saw_leader_commit(&self, index: u64) {
        self.inner
            .leader_commit
            .fetch_max(index + 1, Ordering::Relaxed);
    }

    /// This node's role and readiness.
    pub(crate) fn node_readiness(&self) -> NodeReadiness {
        let m = self.inner.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index);
        let leader_commit = match self.inner.leader_commit.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        };
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let not_ready = if m.state == ServerState::Shutdown {
            Some("the Raft node stopped (see the log)".to_string())
        } else if m.current_leader.is_none() {
            Some("no cluster leader is known (an election is under way)".to_string())
        } else if m.state == ServerState::Leader {
            None
        } else if m
            .current_leader
            .is_some_and(|l| self.grpc_addr_of(l).is_none())
        {
            // It could neither name the leader to a client nor be of use to one.
            Some("the leader's client address is not known yet".to_string())
        } else {
            match leader_commit {
                None => Some("has not heard from the leader yet".to_string()),
                Some(c) if c.saturating_sub(applied.unwrap_or(0)) > READY_LAG => Some(format!(
                    "catching up: applied up to entry {} of the {c} the leader committed",
                    applied.unwrap_or(0)
                )),
                Some(_) => None,
            }
        };
        NodeReadiness {
            node_id: self.inner.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            applied,
            leader_commit: if m.state == ServerState::Leader {
                applied
            } else {
                leader_commit
            },
            not_ready,
        }
    }
}
