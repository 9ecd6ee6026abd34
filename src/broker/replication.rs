//! replication (issue 17): the one narrow point where a cluster plugs into the broker.
//!
//! A broker without a [`Replicator`] (every `obelisk serve` without cluster settings) never
//! reaches this module on its produce path: a single `OnceLock` read decides. With one, the
//! writes that must agree on every node (produce, topic creation and deletion) become commands
//! the replicator proposes to the cluster; every node then applies the committed commands in log
//! order through the `apply_*` methods below, which are the single-node operations.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Broker, BrokerError, TopicConfig};
use crate::storage::producers::ProducerAppend;
use crate::storage::{AppendError, Record, StorageError};

/// The answer to a proposal, once committed on a majority and applied on the leader.
pub(crate) type Proposal<T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send>>;

/// One partition's records of a produce, and the idempotent producer's place, if any.
pub(crate) type Share = (u32, Vec<Record>, Option<ProducerAppend>);

/// A node's place in a cluster, as the broker needs it (implemented by `crate::cluster`).
pub(crate) trait Replicator: Send + Sync {
    /// Ok when this node leads the cluster (and so answers redirecting callers itself);
    /// `NotLeader` naming the leader otherwise.
    fn check_leader(&self) -> Result<(), BrokerError>;
    /// Proposes a topic; resolves once this node has applied it.
    fn create_topic(&self, name: String, config: TopicConfig) -> Proposal<()>;
    /// Proposes the deletion of a topic; resolves once this node has applied it.
    fn delete_topic(&self, name: String) -> Proposal<()>;
    /// Proposes records, per partition; resolves to the first offset of each share. The
    /// proposal is queued before this returns: proposals made one after another on the leader
    /// are committed in that order.
    fn produce(&self, topic: String, shares: Vec<Share>) -> Proposal<Vec<u64>>;
    /// Proposes an idempotent producer grant (every node hands out the same ids).
    fn init_producer(&self, existing: Option<i64>) -> Proposal<super::ProducerGrant>;
    /// Nodes, leader and replicas.
    fn metadata(&self) -> super::ClusterMetadata;
    /// cluster metadata: proposes an offsets, group or ACL write; resolves once this node has
    /// applied it, to whether it changed anything on the leader.
    fn meta(&self, write: super::meta::MetaWrite) -> Proposal<bool>;
    /// Readiness (issue 17): this node's role, and whether it should get traffic.
    fn readiness(&self) -> NodeReadiness;
}

/// A cluster node's role and whether it is ready for traffic (`/health/ready`, `/health`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeReadiness {
    pub node_id: u64,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied: Option<u64>,
    /// The leader's commit index as this node last heard it (on the leader: what it applied).
    pub leader_commit: Option<u64>,
    /// Why the node is not ready, if it is not: no leader known, or behind the leader.
    pub not_ready: Option<String>,
}

impl Broker {
    /// Makes this broker one node of a cluster. Set once, before serving; false if already set.
    pub(crate) fn replicate_through(&self, replicator: Arc<dyn Replicator>) -> bool {
        self.inner.replicator.set(replicator).is_ok()
    }

    pub(crate) fn replicator(&self) -> Option<&Arc<dyn Replicator>> {
        self.inner.replicator.get()
    }

    /// Whether this node takes writes itself; `NotLeader` (with the leader) on a cluster
    /// follower. Always Ok on a single node.
    ///
    /// # Errors
    /// `NotLeader`.
    pub fn check_leader(&self) -> Result<(), BrokerError> {
        self.replicator().map_or(Ok(()), |r| r.check_leader())
    }

    /// The cluster's nodes, leader and replicas (a single node: itself).
    pub fn cluster_metadata(&self) -> super::ClusterMetadata {
        match self.replicator() {
            Some(r) => r.metadata(),
            None => super::ClusterMetadata::default(),
        }
    }

    /// This node's place in its cluster (`None` on a single node).
    pub fn cluster_readiness(&self) -> Option<NodeReadiness> {
        self.replicator().map(|r| r.readiness())
    }

    /// Applies a committed topic creation: the single-node creation, where "exists" means
    /// "already applied".
    pub(crate) async fn apply_create_topic(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<(), BrokerError> {
        match self.create_topic_here(name, config).await {
            Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies a committed topic deletion; "not found" means "already applied".
    pub(crate) async fn apply_delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        match self.delete_topic_here(name).await {
            Ok(()) | Err(BrokerError::TopicNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the topic exists here.
    pub(crate) fn has_topic(&self, topic: &str) -> bool {
        self.topic(topic).is_some()
    }

    /// The acknowledged end of a partition (`None`: no such topic or partition).
    pub(crate) fn partition_end(&self, topic: &str, partition: u32) -> Option<u64> {
        self.topic(topic)
            .and_then(|t| t.partition(partition).map(|p| p.core().acked_end()))
    }

    /// Queues committed records on a partition's batcher (the single-node write path: one
    /// write and, in `fsync` mode, one fdatasync per group commit); the receiver gets the first
    /// offset once they are durable.
    ///
    /// # Errors
    /// `TopicNotFound`, `InvalidArgument` (no such partition), `Overloaded`, `Unavailable`.
    pub(crate) async fn apply_append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        producer: Option<ProducerAppend>,
    ) -> Result<oneshot::Receiver<Result<u64, StorageError>>, BrokerError> {
        let t = self
            .topic(topic)
            .ok_or_else(|| BrokerError::TopicNotFound(topic.to_string()))?;
        let part = t.partition(partition).ok_or_else(|| {
            BrokerError::InvalidArgument(format!(
                "partition {partition} of {topic:?} does not exist"
            ))
        })?;
        let slot = part
            .reserve(self.inner.config.enqueue_timeout)
            .await
            .map_err(|e| match e {
                AppendError::QueueFull => BrokerError::Overloaded(format!(
                    "the write queue of {topic}/{partition} is full"
                )),
                AppendError::Storage(e) => BrokerError::from_storage(topic, partition, e),
            })?;
        Ok(slot.send_from(records, producer))
    }
}
