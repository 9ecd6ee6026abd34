//! Admitting connections, shared by the gRPC and HTTP listeners (the legacy listener uses the
//! refusal and logging parts): a connection limit per listener, a handshake timeout, an idle
//! timeout, closing idle connections at once on shutdown, and a reply in the listener's protocol
//! to connections over the limit.
//!
//! A connection's life:
//! 1. **accepted**: it takes one of the listener's permits, or is refused ([`Refusal`]: a reply
//!    the protocol understands, then closed) with one rate-limited warning ([`RefusalLog`]);
//! 2. **handshake**: it must send its first bytes (for HTTP/2, the whole 24-byte client preface)
//!    within the handshake timeout, or it is closed. Silent sockets therefore hold a permit for at
//!    most that long. Only then is it handed to the server (tonic, hyper);
//! 3. **serving**: a [`Connection`] counts itself open (metrics and `/health`) and replays the
//!    bytes read during the handshake. Requests in flight are counted per connection
//!    ([`Activity`]); a connection with none for the idle timeout is closed, and at shutdown every
//!    connection with none is closed at once (its reads end), so idle HTTP/2 clients cannot hold
//!    the drain. Connections with requests in flight drain as the server allows.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

pub use super::in_flight::{Activity, InFlight, TrackedBody};
use crate::status::{ConnectionGuard, Protocol, ServerStatus};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often at most a refused connection is logged per listener; the refusals in between are
/// counted in the next line.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refused connections waiting for their reply to be read at once, per listener; beyond it a
/// refused connection is closed without waiting.
pub const MAX_LINGERING: usize = 8;
/// How long a refused connection may take to read its reply.
const LINGER: Duration = Duration::from_millis(500);
/// Pause after an accept error that is not about one connection (out of file descriptors...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (including those still in their handshake).
    pub max_connections: usize,
    /// Time from accept to the first bytes (for HTTP/2, the whole client preface).
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// What a connection over the limit is told before it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An HTTP/2 SETTINGS frame and a GOAWAY with `ENHANCE_YOUR_CALM` and a reason: the client
    /// fails its calls at once instead of waiting.
    Grpc,
    /// `HTTP/1.1 429 Too Many Requests` with the JSON error body of every other error.
    Http,
    /// The legacy protocol's `NACK:PUBLISH_FAILED` line (DESIGN.md: overloaded).
    Legacy,
}

const REFUSAL_REASON: &str = "too many connections; retry later";

impl Refusal {
    /// The bytes sent to a refused connection.
    pub fn reply(self) -> Vec<u8> {
        match self {
            Self::Grpc => {
                let mut out = Vec::with_capacity(9 + 9 + 8 + REFUSAL_REASON.len());
                // SETTINGS: length 0, type 4, no flags, stream 0.
                out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
                // GOAWAY: type 7; last stream 0, error ENHANCE_YOUR_CALM (0xb), the reason.
                let len = (8 + REFUSAL_REASON.len()) as u32;
                out.extend_from_slice(&len.to_be_bytes()[1..]);
                out.extend_from_slice(&[7, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&0xbu32.to_be_bytes());
                out.extend_from_slice(REFUSAL_REASON.as_bytes());
                out
            }
            Self::Http => {
                let body = format!(
                    r#"{{"error":{{"code":"too_many_connections","message":"{REFUSAL_REASON}"}}}}"#
                );
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
                     retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Self::Legacy => crate::legacy::codec::Reply::PublishFailed
                .as_bytes()
                .to_vec(),
        }
    }
}

/// One warning per [`REFUSAL_LOG_INTERVAL`] for refused connections, with the count of those not
/// logged since the last one.
#[derive(Debug)]
pub struct RefusalLog {
    protocol: Protocol,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RefusalLog {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs a refused connection from `peer`, unless one was logged within the interval.
    pub fn refused(&self, peer: SocketAddr, max_connections: usize) {
        let now = Instant::now();
        let mut last = crate::sync::lock(&self.last);
        if last.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            protocol = self.protocol.as_str(),
            %peer,
            max_connections,
            refused_since_last_warning = suppressed,
            "connection refused: the listener is at its connection limit"
        );
    }
}

/// Sends `refusal` on a connection over the limit and closes it. The write side is closed after
/// the reply and the peer's input is read briefly (in a task, at most [`MAX_LINGERING`] at once),
/// so closing does not reset the connection before the peer read the reply.
pub fn refuse(stream: TcpStream, refusal: Refusal, lingering: &Arc<Semaphore>) {
    // A fresh socket's send buffer is empty: the reply fits without waiting.
    let reply = refusal.reply();
    if stream.try_write(&reply).is_err() {
        return;
    }
    let Ok(permit) = Arc::clone(lingering).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(LINGER, drain(&stream)).await;
        drop(permit);
    });
}

async fn drain(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// An admitted connection, as handed to the server: it holds its permit and counts itself open
/// while it lives, replays the bytes read during the handshake, and ends its input when the
/// connection is closed for idleness or shutdown.
pub struct Connection {
    stream: TcpStream,
    replay: Bytes,
    peer: SocketAddr,
    activity: Arc<Activity>,
    close: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Stops this connection's idle watcher when the connection is dropped.
    _gone: DropGuard,
    _permit: OwnedSemaphorePermit,
    _open: ConnectionGuard,
}

impl Connection {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's request count, for the server's request layer.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Closed for idleness or shutdown: the server sees the end of the input and lets go.
        if self.close.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts on `listener` until `shutdown` fires and yields the connections admitted within
/// `limits` (after their handshake). Accept errors are logged and retried.
pub fn accept(
    listener: TcpListener,
    protocol: Protocol,
    limits: ConnectionLimits,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Connection> {
    let (tx, rx) = mpsc::channel(64);
    if let Some(l) = status.listener(protocol) {
        l.set_max_connections(limits.max_connections);
    }
    tokio::spawn(accept_loop(
        listener, protocol, limits, status, shutdown, tx,
    ));
    rx
}

async fn accept_loop(
    listener: TcpListener,
    protocol: Protocol,
    limits: ConnectionLimits,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Connection>,
) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let lingering = Arc::new(Semaphore::new(MAX_LINGERING));
    let log = RefusalLog::new(protocol);
    let refusal = match protocol {
        Protocol::Grpc => Refusal::Grpc,
        Protocol::Http => Refusal::Http,
        Protocol::Legacy => Refusal::Legacy,
    };
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: log, back off briefly, go on.
                tracing::warn!(protocol = protocol.as_str(), error = %e, "accepting a connection failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            log.refused(peer, limits.max_connections);
            status.connection_refused(protocol);
            crate::metrics::connection_error(protocol.as_str(), "too_many_connections");
            refuse(stream, refusal, &lingering);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = status.connection_opened(protocol);
        let (tx, shutdown) = (tx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let replay = tokio::select! {
                read = tokio::time::timeout(limits.handshake_timeout, handshake(&stream)) => read,
                () = shutdown.cancelled() => return,
            };
            let replay = match replay {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    tracing::debug!(protocol = protocol.as_str(), %peer, error = %e, "connection closed during its handshake");
                    return;
                }
                Err(_) => {
                    tracing::debug!(protocol = protocol.as_str(), %peer, "handshake timeout; closing the connection");
                    crate::metrics::connection_error(protocol.as_str(), "handshake_timeout");
                    return;
                }
            };
            let activity = Arc::new(Activity::default());
            let close = CancellationToken::new();
            let gone = CancellationToken::new();
            tokio::spawn(watch_idle(
                Arc::clone(&activity),
                limits.idle_timeout,
                shutdown,
                close.clone(),
                gone.clone(),
            ));
            let conn = Connection {
                stream,
                replay,
                peer,
                activity,
                close: Box::pin(close.cancelled_owned()),
                _gone: gone.drop_guard(),
                _permit: permit,
                _open: open,
            };
            let _ = tx.send(conn).await;
        });
    }
}

/// Reads the first bytes of a connection: at least one, and all 24 of the HTTP/2 preface while
/// what arrived could be its start. Returns them, to be replayed to the server.
async fn handshake(stream: &TcpStream) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
    loop {
        let done =
            !buf.is_empty() && (buf.len() >= H2_PREFACE.len() || !H2_PREFACE.starts_with(&buf));
        if done {
            return Ok(buf.freeze());
        }
        stream.readable().await?;
        let mut chunk = [0u8; 24];
        let want = H2_PREFACE.len() - buf.len();
        match stream.try_read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Closes a connection once it has had no request in flight for `idle_timeout`, or at once when
/// `shutdown` fires while it has none (or as soon as its last one ends). Ends when `gone` fires.
async fn watch_idle(
    activity: Arc<Activity>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    close: CancellationToken,
    gone: CancellationToken,
) {
    loop {
        let changed = activity.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if activity.in_flight() > 0 {
            tokio::select! {
                () = &mut changed => continue,
                () = gone.cancelled() => return,
            }
        }
        if shutdown.is_cancelled() {
            close.cancel();
            return;
        }
        tokio::select! {
            () = &mut changed => {}
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(idle_timeout) => {
                tracing::debug!(timeout = ?idle_timeout, "idle connection closed");
                close.cancel();
                return;
            }
            () = gone.cancelled() => return,
        }
    }
}

/// Accept errors that concern only the connection being accepted.
pub fn is_per_connection(e: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusal_is_a_settings_and_a_goaway_frame() {
        let r = Refusal::Grpc.reply();
        assert_eq!(&r[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let len = u32::from_be_bytes([0, r[9], r[10], r[11]]) as usize;
        assert_eq!(r[12], 7, "GOAWAY");
        assert_eq!(r.len(), 18 + len);
        assert_eq!(&r[22..26], &0xbu32.to_be_bytes(), "ENHANCE_YOUR_CALM");
        assert_eq!(&r[26..], REFUSAL_REASON.as_bytes());
    }

    #[test]
    fn http_refusal_is_a_complete_429() {
        let r = String::from_utf8(Refusal::Http.reply()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let log = RefusalLog::new(Protocol::Grpc);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..100 {
            log.refused(peer, 1);
        }
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 99);
    }
}
