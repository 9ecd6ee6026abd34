//! replication (issue 17): the cluster series, read at scrape time from each cluster node's
//! view (nothing for a single node): Raft term, leadership, applied index, leader changes, and
//! on the leader the replication lag of each follower.

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

use super::live_sources;
use crate::broker::ClusterMetadata;

/// The cluster view of every live broker that is a cluster node.
fn nodes() -> Vec<ClusterMetadata> {
    live_sources()
        .into_iter()
        .map(|(b, _)| b.cluster_metadata())
        .filter(|m| !m.nodes.is_empty())
        .collect()
}

fn node(m: &ClusterMetadata) -> [KeyValue; 1] {
    [KeyValue::new("node", m.node_id.to_string())]
}

pub(super) fn register(meter: &Meter) {
    meter
        .u64_observable_gauge("obelisk_raft_term")
        .with_description("The Raft term this cluster node is in")
        .with_callback(|o| {
            for m in nodes() {
                o.observe(m.term, &node(&m));
            }
        })
        .build();
    meter
        .u64_observable_gauge("obelisk_raft_leader")
        .with_description("1 while this cluster node is the leader, else 0")
        .with_callback(|o| {
            for m in nodes() {
                o.observe(u64::from(m.leader == Some(m.node_id)), &node(&m));
            }
        })
        .build();
    meter
        .u64_observable_gauge("obelisk_raft_applied_index")
        .with_description("The last Raft log index this cluster node applied")
        .with_callback(|o| {
            for m in nodes() {
                o.observe(m.applied.unwrap_or(0), &node(&m));
            }
        })
        .build();
    meter
        .u64_observable_counter("obelisk_raft_leader_changes")
        .with_description("Leader changes this cluster node saw since it started")
        .with_callback(|o| {
            for m in nodes() {
                o.observe(m.leader_changes, &node(&m));
            }
        })
        .build();
    meter
        .u64_observable_gauge("obelisk_raft_replication_lag_entries")
        .with_description(
            "On the leader: Raft log entries a follower has not acknowledged yet (commit lag per replica)",
        )
        .with_callback(|o| {
            for m in nodes() {
                for (follower, lag) in &m.replication_lag {
                    o.observe(
                        *lag,
                        &[
                            KeyValue::new("node", m.node_id.to_string()),
                            KeyValue::new("follower", follower.to_string()),
                        ],
                    );
                }
            }
        })
        .build();
}
