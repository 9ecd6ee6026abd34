//! openraft's network over the node-to-node gRPC service: each RPC is openraft's own request,
//! bincode-encoded, and the peer answers with openraft's own `Result`, so remote errors stay
//! remote errors. Channels connect lazily and reconnect by themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use super::types::{NodeId, TypeConfig, decode, encode};
use crate::proto::cluster::RaftPayload;
use crate::proto::cluster::cluster_client::ClusterClient;
use crate::sync::lock;

/// How long a node-to-node connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Clients of the other nodes, by node-to-node address; clones share them.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// A client of the node at `addr` (host:port), connecting on first use.
    ///
    /// # Errors
    /// `addr` is not a valid address.
    pub fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, tonic::transport::Error> {
        let mut channels = lock(&self.channels);
        if let Some(c) = channels.get(addr) {
            return Ok(ClusterClient::new(c.clone()));
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(ClusterClient::new(channel))
    }
}

/// Makes a [`Connection`] per target node (openraft's factory).
#[derive(Clone, Default)]
pub struct Network {
    pub peers: Peers,
    /// This node's own routes to some nodes (`--raft-via`), instead of their advertised
    /// (membership) address.
    via: Arc<std::collections::BTreeMap<u64, std::net::SocketAddr>>,
}

impl Network {
    pub fn new(via: std::collections::BTreeMap<u64, std::net::SocketAddr>) -> Self {
        Self {
            peers: Peers::default(),
            via: Arc::new(via),
        }
    }
}

pub struct Connection {
    target: NodeId,
    addr: String,
    peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: self
                .via
                .get(&target)
                .map_or_else(|| node.addr.clone(), ToString::to_string),
            peers: self.peers.clone(),
        }
    }
}

type Rpc<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, Rpc<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = tonic::Request::new(RaftPayload {
            group: 0,
            payload: payload.into(),
        });
        request.set_timeout(timeout);
        let reply = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|status| {
            if status.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&status))
            } else {
                RPCError::Network(NetworkError::new(&status))
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        self.call(Method::Append, &req, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<InstallSnapshotError>> {
        self.call(Method::Snapshot, &req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        self.call(Method::Vote, &req, option.hard_ttl()).await
    }
}
