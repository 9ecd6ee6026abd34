//! replication (issue 17): a cluster of brokers on openraft (the consensus is openraft's, never
//! our own).
//!
//! This version runs **one Raft group for the whole cluster**: every topic and every partition
//! is replicated to every node, and the group's leader leads every partition. Its log entries
//! are the broker's writes ([`types::Command`]: produce, create and delete topic); each node
//! applies the committed ones to its own broker ([`state_machine`]), so readers see only
//! committed records. A produce is acknowledged once its entry is on a majority of the nodes'
//! Raft logs (fdatasync'ed there in `fsync` mode, see [`log_store`]) and applied on the leader.
//!
//! - [`settings`]: `--node-id` and `--peers`.
//! - [`log_store`]: the Raft log on disk; [`state_machine`]: applying to the broker.
//! - [`network`] and [`service`]: openraft's messages over the node-to-node gRPC service
//!   (`proto/obelisk/cluster/v1/raft.proto`), on the node's own port.
//! - [`Cluster`]: starts it all and is the broker's replicator (`broker::replication`):
//!   proposes writes on the leader, forwards them from a follower, and names the leader.
//!
//! A broker started without cluster settings never touches this module.

// openraft's traits fix their error type (`openraft::StorageError`, over 200 bytes).
#![allow(clippy::result_large_err)]

pub mod durability;
pub mod log_store;
pub mod membership;
pub mod meta; // cluster metadata
pub mod network;
pub mod ordering;
pub mod readiness;
pub mod service;
pub mod settings;
pub mod snapshot;
pub mod state_machine;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::replication::{Proposal, Replicator, Share};
use crate::broker::{
    Broker, BrokerError, ClusterMetadata, Durability, LeaderHint, NodeDescription, ProducerGrant,
};
use crate::proto::cluster::NodeInfo;
use crate::storage::TopicConfig;
use crate::sync::lock;
pub use settings::ClusterSettings;
use types::{Command, CommandReply, NodeId, Raft, Refusal, WireRecord, decode, encode};

/// How long a write waits for a leader to be elected before failing.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded write may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How often what was applied is saved (`raft/applied`).
const SAVE_PERIOD: Duration = Duration::from_secs(1);

/// What a node answers to a forwarded proposal: the reply and the entry's log index, or why not.
pub(crate) type ProposeResult = Result<(CommandReply, u64), String>;

/// A running cluster node; clones share it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Node>,
}

struct Node {
    id: NodeId,
    raft: Raft,
    settings: ClusterSettings,
    me: NodeInfo,
    /// The client addresses of the other nodes, as they told us (`Describe`).
    infos: Mutex<HashMap<u64, NodeInfo>>,
    clients: network::Peers,
    proposals: mpsc::UnboundedSender<(Command, oneshot::Sender<ProposeResult>)>,
    state: state_machine::StateMachine,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Leader changes seen since start (metrics).
    leader_changes: std::sync::atomic::AtomicU64,
    /// readiness: the highest leader commit index heard in AppendEntries, plus one (0: none).
    leader_commit: std::sync::atomic::AtomicU64,
    /// back-pressure: produce proposals in flight on this node (`queue_depth` permits).
    produce_room: Arc<tokio::sync::Semaphore>,
    /// Whether this node, leading, heard from a majority lately (see [`membership::Quorum`]).
    quorum: membership::Quorum,
}

/// Why a cluster node did not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("node {0} is not in the peer list (--peers must list every node, this one included)")]
    NotAPeer(u64),
    #[error("cannot listen on {addr} for node-to-node traffic: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the Raft log in {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("openraft refused to start: {0}")]
    Raft(String),
}

/// The node-to-node listener's connections, each with TCP_NODELAY. tonic's
/// `Server::tcp_nodelay` applies only to listeners tonic binds itself; without it here small
/// replies (AppendEntries answers) waited out Nagle's algorithm against the peer's delayed ACK,
/// about 40 ms each: replicated produce ran at a third of its rate, with a p99 of 48 ms.
fn nodelay_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            conn.inspect(|s| {
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY on a node-to-node connection");
                }
            })
        },
    )
}

/// The openraft settings: elections within about a second of a leader's death.
fn raft_config(settings: &ClusterSettings) -> Result<openraft::Config, ClusterError> {
    let (snapshot_policy, keep) = match settings.snapshot_every {
        0 => (SnapshotPolicy::Never, u64::MAX),
        n => (SnapshotPolicy::LogsSinceLast(n), n),
    };
    openraft::Config {
        cluster_name: "obelisk".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // A snapshot of the partitions (see `snapshot`), the log purged behind it.
        snapshot_policy,
        max_in_snapshot_log_to_keep: keep,
        max_payload_entries: 256,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ClusterError::Raft(e.to_string()))
}

impl Cluster {
    /// Starts this node: its Raft log and state machine over `broker`, the node-to-node
    /// listener, the first election; then makes `broker` replicate through it.
    ///
    /// # Errors
    /// The node is not in its peer list, its port is taken, or its Raft log cannot be opened.
    pub async fn start(
        settings: &ClusterSettings,
        broker: &Broker,
        me: NodeInfo,
    ) -> Result<Self, ClusterError> {
        let id = settings.node_id;
        if !settings.peers.contains_key(&id) {
            return Err(ClusterError::NotAPeer(id));
        }
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ClusterError::Bind { addr, source })?;
        let dir = broker.config().data_dir.join("raft");
        let storage = |source| ClusterError::Storage {
            path: dir.display().to_string(),
            source,
        };
        let fsync = matches!(broker.config().durability, Durability::Fsync);
        let log = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || log_store::LogStore::open(&dir, fsync))
                .await
                .map_err(|e| storage(std::io::Error::other(e.to_string())))?
                .map_err(storage)?
        };
        let state =
            state_machine::StateMachine::open(broker.clone(), dir.clone()).map_err(storage)?;
        let network = network::Network::new(settings.via.clone());
        let clients = network.peers.clone();
        let synced_log = log.clone();
        let raft = Raft::new(
            id,
            Arc::new(raft_config(settings)?),
            network,
            log,
            state.clone(),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let me = NodeInfo { node_id: id, ..me };
        let cluster = Self {
            inner: Arc::new(Node {
                id,
                raft,
                settings: settings.clone(),
                me,
                infos: Mutex::new(HashMap::new()),
                clients,
                proposals: tx,
                state,
                stop: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                leader_changes: std::sync::atomic::AtomicU64::new(0),
                leader_commit: std::sync::atomic::AtomicU64::new(0),
                produce_room: Arc::new(tokio::sync::Semaphore::new(
                    broker.config().queue_depth.max(1),
                )),
                quorum: membership::Quorum::default(),
            }),
        };
        cluster.spawn_tasks(listener, rx);
        if let Durability::Interval(period) = broker.config().durability {
            cluster.spawn_log_sync(synced_log, period);
        }
        let members: BTreeMap<u64, BasicNode> = settings
            .peers
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a.to_string())))
            .collect();
        // Every node initializes with the same membership (safe in openraft); one that already
        // holds a log refuses, which is what a restart wants.
        match cluster.inner.raft.is_initialized().await {
            // A joining node waits for the leader to add it (`obelisk cluster add-node`).
            Ok(false) if settings.join => {}
            Ok(false) => {
                if let Err(e) = cluster.inner.raft.initialize(members).await {
                    tracing::info!(error = %e, "cluster already initialized");
                }
            }
            Ok(true) => {}
            Err(e) => return Err(ClusterError::Raft(e.to_string())),
        }
        let replicator: Arc<dyn Replicator> = Arc::new(cluster.clone());
        broker.replicate_through(replicator);
        tracing::info!(node_id = id, %addr, peers = settings.peers.len(), "cluster node started");
        Ok(cluster)
    }

    fn spawn_tasks(
        &self,
        listener: TcpListener,
        rx: mpsc::UnboundedReceiver<(Command, oneshot::Sender<ProposeResult>)>,
    ) {
        let mut tasks = lock(&self.inner.tasks);
        let stop = self.inner.stop.clone();
        let svc =
            crate::proto::cluster::cluster_server::ClusterServer::new(service::ClusterService {
                cluster: self.clone(),
            })
            .max_decoding_message_size(1 << 30)
            .max_encoding_message_size(1 << 30);
        tasks.push(tokio::spawn(async move {
            let incoming = nodelay_incoming(listener);
            let served = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "node-to-node listener failed");
            }
        }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.run_proposals(rx).await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.learn_nodes().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.count_leader_changes().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move { me.watch_quorum().await }));
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAVE_PERIOD);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = me.inner.stop.cancelled() => break,
                }
                let state = me.inner.state.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || state.save()).await {
                    tracing::warn!(error = %e, "saving the applied state failed (a restart re-applies more)");
                }
            }
        }));
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    pub(crate) fn me(&self) -> &NodeInfo {
        &self.inner.me
    }

    pub(crate) fn broker(&self) -> &Broker {
        self.inner.state.broker()
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    /// The leader, as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Stops the node: Raft, the listener and the background tasks; saves what was applied.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        let state = self.inner.state.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || state.save()).await {
            tracing::warn!(error = %e, "saving the applied state failed");
        }
    }

    /// Asks every node for its client addresses until all answered (they name the leader in
    /// not-leader errors and in Metadata).
    async fn learn_nodes(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.inner.stop.cancelled() => return,
            }
            // The members, as the Raft membership has them (nodes come and go).
            let missing: Vec<(u64, String)> = {
                let members = self.members();
                let infos = lock(&self.inner.infos);
                members
                    .into_iter()
                    .filter(|(id, _)| *id != self.inner.id && !infos.contains_key(id))
                    .collect()
            };
            for (id, addr) in missing {
                let Ok(mut client) = self.inner.clients.client(&addr) else {
                    continue;
                };
                let mut req = tonic::Request::new(crate::proto::cluster::DescribeRequest {});
                req.set_timeout(Duration::from_secs(1));
                if let Ok(info) = client.describe(req).await {
                    lock(&self.inner.infos).insert(id, info.into_inner());
                }
            }
        }
    }

    /// Counts changes of the known leader (metrics: `obelisk_raft_leader_changes`).
    async fn count_leader_changes(&self) {
        let mut metrics = self.inner.raft.metrics();
        let mut leader = metrics.borrow().current_leader;
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = self.inner.stop.cancelled() => return,
            }
            let now = metrics.borrow().current_leader;
            if now.is_some() && now != leader {
                self.inner
                    .leader_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(leader = ?now, "cluster leader changed");
            }
            leader = now;
        }
    }

    fn grpc_addr_of(&self, id: u64) -> Option<String> {
        if id == self.inner.id {
            return Some(self.inner.me.grpc_addr.clone());
        }
        lock(&self.inner.infos)
            .get(&id)
            .map(|i| i.grpc_addr.clone())
    }

    /// Proposes in arrival order: on the leader each command enters the Raft log in the order
    /// it was proposed; from a follower it is forwarded to the leader.
    async fn run_proposals(
        &self,
        mut rx: mpsc::UnboundedReceiver<(Command, oneshot::Sender<ProposeResult>)>,
    ) {
        let forwarder = self.ordered_forwarder();
        while let Some((cmd, tx)) = rx.recv().await {
            if self.leader() == Some(self.inner.id) {
                // A reset queued on a follower that has become the leader since.
                let cmd = match self.entering_log(cmd) {
                    Ok(cmd) => cmd,
                    Err(e) => {
                        let _ = tx.send(Ok((CommandReply::Refused(Refusal::from_broker(e)), 0)));
                        continue;
                    }
                };
                match self.inner.raft.client_write_ff(cmd.clone()).await {
                    Ok(pending) => {
                        let me = self.clone();
                        tokio::spawn(async move {
                            let result = match pending.await {
                                Ok(Ok(resp)) => Ok((resp.data, resp.log_id.index)),
                                Ok(Err(ClientWriteError::ForwardToLeader(_))) => {
                                    me.forward(cmd).await
                                }
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(_) => Err("the Raft node stopped".to_string()),
                            };
                            let _ = tx.send(result);
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("the Raft node stopped: {e}")));
                    }
                }
            } else {
                let _ = forwarder.send((cmd, tx));
            }
        }
    }

    /// Waits (a while) for a leader to be known.
    async fn await_leader(&self) -> Option<u64> {
        let waited = self
            .inner
            .raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
        waited.ok().and_then(|m| m.current_leader)
    }

    /// Sends a command to the leader.
    pub(crate) async fn forward(&self, cmd: Command) -> ProposeResult {
        let Some(leader) = self.await_leader().await else {
            return Err("no leader was elected in time".into());
        };
        if leader == self.inner.id {
            return self.propose_here(cmd).await;
        }
        let Some(addr) = self.route_to(leader) else {
            return Err(format!("the leader (node {leader}) is not a known member"));
        };
        let payload = encode(&cmd).map_err(|e| e.to_string())?;
        let mut client = self
            .inner
            .clients
            .client(&addr)
            .map_err(|e| e.to_string())?;
        let mut req = tonic::Request::new(crate::proto::cluster::RaftPayload {
            group: 0,
            payload: payload.into(),
        });
        req.set_timeout(FORWARD_TIMEOUT);
        let reply = client.propose(req).await.map_err(|s| {
            format!(
                "forwarding to the leader (node {leader}) failed: {}",
                s.message()
            )
        })?;
        decode::<ProposeResult>(&reply.into_inner().payload).map_err(|e| e.to_string())?
    }

    /// Proposes a command on this node, which should be the leader.
    pub(crate) async fn propose_here(&self, cmd: Command) -> ProposeResult {
        match self.inner.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.data, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(format!(
                "node {} is not the leader (leader: {:?})",
                self.inner.id, f.leader_id
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Queues `cmd` and waits for its reply; on a follower, also until it is applied here.
    pub(crate) fn submit(&self, cmd: Command, applied_here: bool) -> Proposal<CommandReply> {
        let (tx, rx) = oneshot::channel();
        let queued = self.inner.proposals.send((cmd, tx)).is_ok();
        let me = self.clone();
        Box::pin(async move {
            if !queued {
                return Err(BrokerError::Unavailable(
                    "the cluster node is stopping".into(),
                ));
            }
            // A leader cut off from its majority cannot commit: the caller hears so (the
            // outcome is unknown: the entry may still commit if contact returns in time).
            let outcome = tokio::select! {
                o = rx => o,
                () = me.lost_quorum() => return Err(BrokerError::Unavailable(
                    "this node lost contact with the majority before the write was committed; \
                     its outcome is unknown: retry on the new leader".into(),
                )),
            };
            let (reply, index) = outcome
                .map_err(|_| BrokerError::Unavailable("the cluster node is stopping".into()))?
                .map_err(|why| {
                    BrokerError::Unavailable(format!("the write was not replicated: {why}; retry"))
                })?;
            if applied_here {
                let _ = me
                    .inner
                    .raft
                    .wait(Some(FORWARD_TIMEOUT))
                    .applied_index_at_least(Some(index), "applied here")
                    .await;
            }
            match reply {
                CommandReply::Refused(r) => Err(r.into()),
                other => Ok(other),
            }
        })
    }
}

impl Replicator for Cluster {
    fn check_leader(&self) -> Result<(), BrokerError> {
        let leader = self.leader();
        if leader == Some(self.inner.id) {
            // A leader cut off from the majority cannot commit: refuse instead of hanging (its
            // successor, elected by the majority, takes the writes).
            if !self.inner.quorum.fresh() {
                return Err(BrokerError::NotLeader { leader: None });
            }
            return Ok(());
        }
        Err(BrokerError::NotLeader {
            leader: leader.and_then(|id| {
                self.grpc_addr_of(id).map(|grpc_addr| LeaderHint {
                    node_id: id,
                    grpc_addr,
                })
            }),
        })
    }

    fn create_topic(&self, name: String, config: TopicConfig) -> Proposal<()> {
        let p = self.submit(Command::CreateTopic { name, config }, true);
        Box::pin(async move { p.await.map(|_| ()) })
    }

    fn delete_topic(&self, name: String) -> Proposal<()> {
        let p = self.submit(Command::DeleteTopic { name }, true);
        Box::pin(async move { p.await.map(|_| ()) })
    }

    fn produce(&self, topic: String, shares: Vec<Share>) -> Proposal<Vec<u64>> {
        let shares = shares
            .into_iter()
            .map(|(partition, recs, producer)| types::WireShare {
                partition,
                records: recs.into_iter().map(WireRecord::from).collect(),
                producer: producer.map(|p| (p.id, p.epoch, p.sequence)),
            })
            .collect();
        let p = self.submit(Command::Produce { topic, shares }, false);
        Box::pin(async move {
            match p.await? {
                CommandReply::Produced(firsts) => Ok(firsts),
                other => Err(BrokerError::Unavailable(format!(
                    "unexpected reply to a produce: {other:?}"
                ))),
            }
        })
    }

    fn init_producer(&self, existing: Option<i64>) -> Proposal<ProducerGrant> {
        // Applied here before it is answered: this node checks the identity of the produces
        // that follow (before forwarding them), so it must know the grant.
        let p = self.submit(Command::InitProducer { existing }, true);
        Box::pin(async move {
            match p.await? {
                CommandReply::Granted(producer_id, producer_epoch) => Ok(ProducerGrant {
                    producer_id,
                    producer_epoch,
                }),
                other => Err(BrokerError::Unavailable(format!(
                    "unexpected reply to a producer grant: {other:?}"
                ))),
            }
        })
    }

    fn meta(&self, write: crate::broker::meta::MetaWrite) -> Proposal<bool> {
        self.propose_meta(write)
    }

    fn readiness(&self) -> crate::broker::replication::NodeReadiness {
        self.node_readiness()
    }

    fn produce_room(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::clone(&self.inner.produce_room)
    }

    fn applied_past(
        &self,
        index: Option<u64>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let me = self.clone();
        Box::pin(async move {
            let next = index.map_or(0, |i| i + 1);
            let _ = me
                .inner
                .raft
                .wait(Some(timeout))
                .applied_index_at_least(Some(next), "applied past")
                .await;
        })
    }

    fn metadata(&self) -> ClusterMetadata {
        let m = self.inner.raft.metrics().borrow().clone();
        let voters: std::collections::BTreeSet<u64> =
            m.membership_config.membership().voter_ids().collect();
        let nodes = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| NodeDescription {
                node_id: *id,
                cluster_addr: node.addr.clone(),
                grpc_addr: self.grpc_addr_of(*id),
                voter: voters.contains(id),
            })
            .collect();
        ClusterMetadata {
            node_id: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            committed: None,
            applied: m.last_applied.map(|l| l.index),
            nodes,
            leader_changes: self
                .inner
                .leader_changes
                .load(std::sync::atomic::Ordering::Relaxed),
            replication_lag: m
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| **id != self.inner.id)
                .map(|(id, matched)| {
                    let last = m.last_log_index.unwrap_or(0);
                    let acked = matched.map_or(0, |l| l.index + 1);
                    (*id, (last + 1).saturating_sub(acked))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn node_to_node_connections_are_accepted_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = std::pin::pin!(nodelay_incoming(listener));
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = tokio_stream::StreamExt::next(&mut incoming)
            .await
            .expect("a connection")
            .unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set");
    }
}
