//! The unary rows' gRPC client (issue 12): one HTTP/2 connection driven by hyper, with no tonic
//! `Channel` in between. A `Channel` hands every call to its buffer task, which hands it to the
//! connection's task: one more task hand-off per call than the protocol needs, which on this
//! 2-core machine cost more than the broker's own work for a one-record call. The generated
//! client and its encoding are the same as every other gRPC client of the bench.
//!
//! Used for plaintext connections without a token; TLS or a token keep the usual client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response, Uri};

use crate::proto::broker_client::BrokerClient;

pub type LeanClient = BrokerClient<H2Connection>;

/// The sending side of one HTTP/2 connection, as a tower service.
#[derive(Clone)]
pub struct H2Connection(SendRequest<Body>);

impl tower::Service<Request<Body>> for H2Connection {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// Connects to `addr` (`http://host:port`); `None` when the address is not plain `http://`.
///
/// # Errors
/// Nothing answers there, or the HTTP/2 handshake fails.
pub async fn connect(addr: &str) -> Result<Option<LeanClient>, String> {
    let Some(hostport) = addr.strip_prefix("http://") else {
        return Ok(None);
    };
    let hostport = hostport.trim_end_matches('/');
    let origin: Uri = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr} failed: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "bench HTTP/2 connection ended");
        }
    });
    Ok(Some(
        BrokerClient::with_origin(H2Connection(send), origin)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
    ))
}
