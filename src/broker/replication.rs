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
    /// Back-pressure: permits for produce proposals in flight on this node (`queue_depth`).
    fn produce_room(&self) -> Arc<tokio::sync::Semaphore>;
    /// Resolves once this node has applied an entry past `index` (`None`: past nothing), or
    /// after `timeout`: a follower behind the leader waits for what the leader committed.
    fn applied_past(
        &self,
        index: Option<u64>,
        timeout: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
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

    /// Back-pressure for a replicated produce, as a single node's queue-room check: waits up to
    /// `enqueue_timeout` for room among this node's proposals in flight, then refuses, so the
    /// caller gets the single node's RESOURCE_EXHAUSTED / NACK. The permit is held until the
    /// proposal resolves.
    ///
    /// # Errors
    /// `Overloaded`.
    pub(crate) async fn replicated_room(
        &self,
        r: &Arc<dyn Replicator>,
        topic: &str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, BrokerError> {
        let wait = self.inner.config.enqueue_timeout;
        match tokio::time::timeout(wait, r.produce_room().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(BrokerError::Unavailable(
                "the cluster node is stopping".into(),
            )),
            Err(_) => Err(BrokerError::Overloaded(format!(
                "the replication queue of this node is full (writing {topic})"
            ))),
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
        // A committed entry must be applied: wait for room however long it takes (admission
        // was checked before proposing, see `replicated_room`).
        let slot = loop {
            match part.reserve(self.inner.config.enqueue_timeout).await {
                Ok(slot) => break slot,
                Err(AppendError::QueueFull) => {
                    tracing::warn!(topic, partition, "applying waits for room in a full queue");
                }
                Err(AppendError::Storage(e)) => {
                    return Err(BrokerError::from_storage(topic, partition, e));
                }
            }
        };
        Ok(slot.send_from(records, producer))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::{BrokerConfig, ProduceRecord};

    /// A cluster whose proposals never commit (a leader cut off from its followers).
    struct Stuck(Arc<tokio::sync::Semaphore>);

    impl Replicator for Stuck {
        fn check_leader(&self) -> Result<(), BrokerError> {
            Ok(())
        }
        fn create_topic(&self, _: String, _: TopicConfig) -> Proposal<()> {
            Box::pin(std::future::pending())
        }
        fn delete_topic(&self, _: String) -> Proposal<()> {
            Box::pin(std::future::pending())
        }
        fn produce(&self, _: String, _: Vec<Share>) -> Proposal<Vec<u64>> {
            Box::pin(std::future::pending())
        }
        fn init_producer(&self, _: Option<i64>) -> Proposal<super::super::ProducerGrant> {
            Box::pin(std::future::pending())
        }
        fn metadata(&self) -> super::super::ClusterMetadata {
            super::super::ClusterMetadata::default()
        }
        fn meta(&self, _: super::super::meta::MetaWrite) -> Proposal<bool> {
            Box::pin(std::future::pending())
        }
        fn readiness(&self) -> NodeReadiness {
            NodeReadiness {
                node_id: 1,
                role: "leader",
                term: 1,
                leader: Some(1),
                applied: None,
                leader_commit: None,
                not_ready: None,
            }
        }
        fn produce_room(&self) -> Arc<tokio::sync::Semaphore> {
            Arc::clone(&self.0)
        }
        fn applied_past(
            &self,
            _: Option<u64>,
            _: std::time::Duration,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(std::future::pending())
        }
    }

    /// Replicated produce gets the single node's back-pressure: with `queue_depth` proposals in
    /// flight the next waits `enqueue_timeout` and is refused as overloaded (RESOURCE_EXHAUSTED,
    /// legacy NACK), instead of queueing without bound.
    #[tokio::test]
    async fn a_full_replication_queue_refuses_a_produce_as_overloaded() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            queue_depth: 2,
            enqueue_timeout: Duration::from_millis(20),
            ..BrokerConfig::default()
        };
        let broker = Broker::open(config, &tokio::runtime::Handle::current()).unwrap();
        broker
            .create_topic(
                "t",
                TopicConfig {
                    partitions: 1,
                    retention_ms: 0,
                    retention_bytes: 0,
                    compression: crate::storage::batch::Compression::None,
                },
            )
            .await
            .unwrap();
        assert!(
            broker.replicate_through(Arc::new(Stuck(Arc::new(tokio::sync::Semaphore::new(2)))))
        );
        let record = || ProduceRecord {
            key: bytes::Bytes::new(),
            value: bytes::Bytes::from_static(b"v"),
            headers: Vec::new(),
            timestamp: None,
            partition: Some(0),
        };
        let first = broker.enqueue("t", vec![record()]).await.unwrap();
        let second = broker.enqueue("t", vec![record()]).await.unwrap();
        let third = broker.enqueue("t", vec![record()]).await;
        assert!(
            matches!(third, Err(BrokerError::Overloaded(_))),
            "{:?}",
            third.err()
        );
        // Room again once a proposal is given up.
        drop(first);
        assert!(broker.enqueue("t", vec![record()]).await.is_ok());
        drop(second);
    }
}
