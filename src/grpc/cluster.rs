//! replication (issue 17): the Metadata RPC: the core's cluster view in proto messages.

use crate::broker::{BrokerError, Caller, ClusterMetadata};
use crate::proto as pb;

/// Metadata for the topics asked (all the caller may describe when none are).
///
/// # Errors
/// `PermissionDenied`, `TopicNotFound` for a named topic that does not exist.
pub fn metadata(
    caller: Caller,
    req: pb::MetadataRequest,
) -> Result<pb::MetadataResponse, BrokerError> {
    let m: ClusterMetadata = caller.cluster_metadata()?;
    let topics = if req.topics.is_empty() {
        caller.list_topics()
    } else {
        req.topics
            .iter()
            .map(|t| caller.describe_topic(t))
            .collect::<Result<Vec<_>, _>>()?
    };
    let replicas: Vec<u64> = m
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.node_id)
        .collect();
    let partitions = topics
        .iter()
        .flat_map(|t| {
            let replicas = replicas.clone();
            (0..t.config.partitions).map(move |p| pb::PartitionPlacement {
                topic: t.name.clone(),
                partition: p,
                leader: m.leader.unwrap_or(0),
                replicas: replicas.clone(),
            })
        })
        .collect();
    Ok(pb::MetadataResponse {
        node_id: m.node_id,
        leader: m.leader,
        term: m.term,
        applied_index: m.applied,
        nodes: m
            .nodes
            .into_iter()
            .map(|n| pb::ClusterNode {
                node_id: n.node_id,
                grpc_addr: n.grpc_addr.unwrap_or_default(),
                cluster_addr: n.cluster_addr,
                voter: n.voter,
            })
            .collect(),
        partitions,
    })
}
