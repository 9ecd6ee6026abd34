//! Accepted gRPC connections, as tonic takes them: the shared admission
//! ([`crate::server::connections`]: limit, handshake timeout, idle close) yields
//! [`Connection`]s, and each carries its [`ConnectionInfo`] into every request's extensions, so
//! the request layer ([`super::layers`]) can count the requests in flight on it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::server::connections::{self, Activity, Connection, ConnectionLimits};
use crate::status::{Protocol, ServerStatus};

/// What a request knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            peer: self.peer(),
            activity: Arc::clone(self.activity()),
        }
    }
}

/// Accepts on `listener` until `stop` fires, yielding connections admitted within `limits`.
pub fn limited(
    listener: TcpListener,
    limits: ConnectionLimits,
    status: Arc<ServerStatus>,
    stop: CancellationToken,
) -> impl Stream<Item = io::Result<Connection>> {
    let rx = connections::accept(listener, Protocol::Grpc, limits, status, stop);
    ReceiverStream::new(rx).map(Ok)
}
