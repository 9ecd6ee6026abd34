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

use crate::server::connections::{self, Activity, ConnectionLimits};
use crate::server::tls::{Secured, Tls};
use crate::status::{Protocol, ServerStatus};

/// What a request knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
    /// The verified client certificate's principal (mTLS), if any (security, issue 15).
    pub principal: Option<Arc<str>>,
}

impl Connected for Secured {
    type ConnectInfo = ConnectionInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            peer: self.peer(),
            activity: Arc::clone(self.activity()),
            principal: self.principal().cloned(),
        }
    }
}

/// Accepts on `listener` until `stop` fires, yielding connections admitted within `limits`
/// (after their TLS handshake, with `tls`).
pub fn limited(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<Tls>,
    status: Arc<ServerStatus>,
    stop: CancellationToken,
) -> impl Stream<Item = io::Result<Secured>> {
    let rx = connections::accept(listener, Protocol::Grpc, limits, status, stop.clone());
    let rx = crate::server::tls::secure(rx, tls, "grpc", limits.handshake_timeout, stop);
    ReceiverStream::new(rx).map(Ok)
}
