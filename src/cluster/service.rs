//! The node-to-node gRPC service: hands openraft's messages to the local Raft node, takes writes
//! forwarded by followers, and says where this node's client listeners are.

use tonic::{Request, Response, Status};

use super::Cluster;
use super::types::{Command, NodeId, decode, encode};
use crate::proto::cluster::cluster_server::Cluster as ClusterRpc;
use crate::proto::cluster::{DescribeRequest, NodeInfo, RaftPayload};

pub struct ClusterService {
    pub cluster: Cluster,
}

fn undecodable(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable Raft message: {e}"))
}

fn payload<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let bytes = encode(value).map_err(|e| Status::internal(format!("encoding a reply: {e}")))?;
    Ok(Response::new(RaftPayload {
        group: 0,
        payload: bytes.into(),
    }))
}

#[tonic::async_trait]
impl ClusterRpc for ClusterService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<super::types::TypeConfig> =
            decode(&req.into_inner().payload).map_err(undecodable)?;
        if let Some(c) = rpc.leader_commit {
            self.cluster.saw_leader_commit(c.index); // readiness
        }
        payload(&self.cluster.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: openraft::raft::VoteRequest<NodeId> =
            decode(&req.into_inner().payload).map_err(undecodable)?;
        payload(&self.cluster.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(&req.into_inner().payload).map_err(undecodable)?;
        payload(&self.cluster.raft().install_snapshot(rpc).await)
    }

    async fn propose(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let cmd: Command = decode(&req.into_inner().payload).map_err(undecodable)?;
        payload(&self.cluster.propose_forwarded(cmd).await)
    }

    async fn change_membership(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let change: super::membership::MembershipChange =
            decode(&req.into_inner().payload).map_err(undecodable)?;
        payload(&self.cluster.change_membership(change).await)
    }

    async fn describe(&self, _req: Request<DescribeRequest>) -> Result<Response<NodeInfo>, Status> {
        Ok(Response::new(self.cluster.me().clone()))
    }
}
