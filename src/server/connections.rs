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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

pub use super::in_flight::{Activity, InFlight, TrackedBody};
pub use super::refusal::{LogGate, MAX_LINGERING, Refusal, RefusalLog, refuse};
use crate::status::{ConnectionGuard, Protocol, ServerStatus};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// At shutdown, how long a connection whose last request just ended stays open for the last
/// frames of its response to go out (a connection idle before stays not at all).
const FINAL_WRITES: Duration = Duration::from_millis(100);
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
    let accept_errors = LogGate::default();
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
                if let Some(since_last) = accept_errors.open() {
                    let protocol = protocol.as_str();
                    let what = "accepting a connection failed; retrying";
                    tracing::warn!(protocol, error = %e, since_last, "{what}");
                }
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
            let p = protocol.as_str();
            let replay = tokio::select! {
                read = tokio::time::timeout(limits.handshake_timeout, handshake(&stream)) => read,
                () = shutdown.cancelled() => return,
            };
            let replay = match replay {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    tracing::debug!(protocol = p, %peer, error = %e, "closed during its handshake");
                    return;
                }
                Err(_) => {
                    tracing::debug!(protocol = p, %peer, "handshake timeout; closing it");
                    crate::metrics::connection_error(p, "handshake_timeout");
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
    // When the last request ended: its final frames (a stream's trailers) may still be on their
    // way out, so a shutdown closes such a connection only after `FINAL_WRITES`.
    let mut last_request_ended: Option<tokio::time::Instant> = None;
    loop {
        let changed = activity.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if activity.in_flight() > 0 {
            tokio::select! {
                () = &mut changed => {
                    last_request_ended = Some(tokio::time::Instant::now());
                    continue;
                }
                () = gone.cancelled() => return,
            }
        }
        if shutdown.is_cancelled() {
            if let Some(ended) = last_request_ended {
                tokio::select! {
                    () = tokio::time::sleep_until(ended + FINAL_WRITES) => {}
                    () = gone.cancelled() => return,
                }
            }
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

    struct Watched {
        activity: Arc<Activity>,
        shutdown: CancellationToken,
        close: CancellationToken,
    }

    fn watched(idle: Duration) -> Watched {
        let activity = Arc::new(Activity::default());
        let (shutdown, close) = (CancellationToken::new(), CancellationToken::new());
        tokio::spawn(watch_idle(
            Arc::clone(&activity),
            idle,
            shutdown.clone(),
            close.clone(),
            CancellationToken::new(),
        ));
        Watched {
            activity,
            shutdown,
            close,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_idle_connections_close_at_once_and_busy_ones_after_their_last_request() {
        let idle = watched(Duration::from_secs(300));
        let busy = watched(Duration::from_secs(300));
        let request = busy.activity.begin();
        tokio::time::sleep(Duration::from_millis(1)).await;
        idle.shutdown.cancel();
        busy.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(idle.close.is_cancelled(), "idle: closed at once");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!busy.close.is_cancelled(), "a request in flight is not cut");
        drop(request);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            !busy.close.is_cancelled(),
            "its last frames may still go out"
        );
        tokio::time::sleep(FINAL_WRITES).await;
        assert!(
            busy.close.is_cancelled(),
            "closed once its last request ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closes_after_the_idle_timeout_without_requests() {
        let w = watched(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!w.close.is_cancelled());
        let request = w.activity.begin();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!w.close.is_cancelled(), "a long request keeps it open");
        drop(request);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(
            !w.close.is_cancelled(),
            "the idle time starts again after the request"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(w.close.is_cancelled());
    }
}
