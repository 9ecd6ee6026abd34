//! replication (issue 17): a client of a cluster that follows its leader. A write sent to a
//! node that is not the leader fails with UNAVAILABLE and the leader's address in the
//! `obelisk-leader` metadata; [`LeaderClient`] then reconnects there and sends it again. When
//! the node it talks to is unreachable (it died) it tries the other nodes it knows, until one
//! answers or names the leader.

use std::time::Duration;

use tonic::transport::Channel;

use super::{BrokerClient, ClientError, connect};
use crate::proto as pb;

/// The metadata key naming the leader's gRPC address (host:port) in a not-leader status.
pub const LEADER_METADATA: &str = "obelisk-leader";

/// The metadata key marking a not-leader status: the node stored nothing.
pub const NOT_LEADER_METADATA: &str = "obelisk-not-leader";

/// Whether a failed call never reached a server (the connection could not be made).
pub(super) fn never_sent(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && {
        let m = status.message().to_ascii_lowercase();
        m.contains("connect") || m.contains("connection refused")
    }
}

/// The leader's address a not-leader status names, as `http://host:port`.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    let addr = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
    Some(format!("http://{addr}"))
}

/// A unary client of a cluster that sends writes to its leader.
pub struct LeaderClient {
    /// Every node's gRPC address (`http://host:port`) the client may try.
    nodes: Vec<String>,
    current: Option<(String, BrokerClient<Channel>)>,
    /// How long one write may take, redirects and failovers included.
    patience: Duration,
}

impl LeaderClient {
    /// A client of the cluster whose nodes listen (gRPC) at `nodes`. Connects on first use.
    pub fn new(nodes: Vec<String>, patience: Duration) -> Self {
        Self {
            nodes,
            current: None,
            patience,
        }
    }

    /// The node the last write went to (the leader then).
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|(a, _)| a.as_str())
    }

    /// Sends `req` to the leader: follows not-leader answers (the node stored nothing) and,
    /// while no node can be reached, tries the others. Any other failure is returned at once:
    /// a request that reached a node which then failed may or may not have been stored, and
    /// sending it again could store it twice (use the idempotent [`super::Producer`] for safe
    /// retries).
    ///
    /// # Errors
    /// Any error but "not the leader" and "cannot connect"; and the last of those when
    /// `patience` ran out.
    pub async fn produce(
        &mut self,
        req: pb::ProduceRequest,
    ) -> Result<pb::ProduceResponse, ClientError> {
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut next_node = 0usize;
        let mut backoff = Duration::from_millis(20);
        loop {
            let last = match self.client(&mut next_node).await {
                Ok(client) => match client.produce(req.clone()).await {
                    Ok(resp) => return Ok(resp.into_inner()),
                    Err(status) if status.metadata().contains_key(NOT_LEADER_METADATA) => {
                        self.current = None;
                        if let Some(leader) = leader_hint(&status)
                            && tokio::time::Instant::now() < deadline
                            && let Ok(c) = connect(&leader).await
                        {
                            self.current = Some((leader, c));
                            continue;
                        }
                        ClientError::from(status)
                    }
                    Err(status) if never_sent(&status) => {
                        self.current = None;
                        ClientError::from(status)
                    }
                    Err(status) => {
                        self.current = None;
                        return Err(status.into());
                    }
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(last);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// The current connection, or one to the next node that answers.
    async fn client(
        &mut self,
        next: &mut usize,
    ) -> Result<&mut BrokerClient<Channel>, ClientError> {
        if self.current.is_none() {
            let mut last = ClientError::Closed;
            for _ in 0..self.nodes.len() {
                let addr = self.nodes[*next % self.nodes.len()].clone();
                *next += 1;
                match connect(&addr).await {
                    Ok(c) => {
                        self.current = Some((addr, c));
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if self.current.is_none() {
                return Err(last);
            }
        }
        Ok(&mut self.current.as_mut().expect("connected").1)
    }
}
