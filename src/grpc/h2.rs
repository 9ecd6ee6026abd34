//! Serving the gRPC listener's HTTP/2 connections ourselves (issue 12): hyper's HTTP/2 server,
//! with every request stream polled inside its connection's task instead of a task of its own.
//!
//! tonic's server (`Server::serve_with_incoming_shutdown`) gives hyper tokio's executor, so each
//! request stream is a spawned task and a unary Produce crosses four task hand-offs (connection
//! task → stream task → batcher → stream task → connection task), each of which may wake a parked
//! worker thread. Here hyper's executor queues the stream's future with its connection
//! ([`StreamQueue`]) and the connection's task polls it next to the connection: a unary Produce
//! costs two hand-offs (connection → batcher → connection), as a legacy frame does. Wake-ups that
//! happen while the connection's task is polling (a stream queueing a response frame, the
//! connection delivering a stream's body) are noted and served in the same poll instead of
//! rescheduling the task ([`LocalWake`]).
//!
//! What tonic's server did around each request is kept: the connection's [`ConnectionInfo`] in
//! the request's extensions, the `grpc` span, the request timeout (the shorter of the server's and
//! the client's `grpc-timeout`, answered as tonic does: CANCELLED "Timeout expired"), and at
//! shutdown: stop accepting, GOAWAY on every connection, let their streams finish. The HTTP/2
//! settings are tonic's (`GrpcConfig` sets the stream limit and keepalive).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tower::Service;
use tracing::Instrument;

use super::incoming::ConnectionInfo;
use crate::sync::lock;

/// Rounds of (connection, streams) in one poll of a connection's task before it yields to the
/// runtime's other tasks.
const MAX_ROUNDS: usize = 32;

/// How the listener's connections are served.
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// Deadline of a call's response (streams are not cut by it once they answered).
    pub request_timeout: Duration,
}

/// Serves every connection `incoming` yields with `routes`, until `shutdown` fires; then stops
/// accepting, asks each connection to finish (GOAWAY) and waits until all have.
pub async fn serve<I, IO, S>(
    incoming: I,
    routes: S,
    settings: H2Settings,
    shutdown: CancellationToken,
) where
    I: Stream<Item = (IO, ConnectionInfo)>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let connections = TaskTracker::new();
    {
        let mut incoming = pin!(incoming);
        loop {
            let (io, info) = tokio::select! {
                () = shutdown.cancelled() => break,
                next = incoming.next() => match next {
                    Some(next) => next,
                    None => break,
                },
            };
            let service = PerRequest {
                inner: routes.clone(),
                info,
                timeout: settings.request_timeout,
            };
            connections.spawn(connection(io, service, settings, shutdown.clone()));
        }
    }
    connections.close();
    connections.wait().await;
}

/// One connection, and every stream of it, in this task.
async fn connection<IO, S>(
    io: IO,
    service: PerRequest<S>,
    settings: H2Settings,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let queue = StreamQueue::default();
    let mut builder = hyper::server::conn::http2::Builder::new(queue.clone());
    builder
        .timer(TokioTimer::new())
        .initial_connection_window_size(None)
        .initial_stream_window_size(None)
        .max_concurrent_streams(Some(settings.max_concurrent_streams))
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .adaptive_window(false)
        .max_pending_accept_reset_streams(None)
        .max_local_error_reset_streams(None)
        .max_frame_size(None);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut conn = pin!(conn);
    let mut stop = pin!(shutdown.cancelled());
    let mut stopping = false;
    let mut conn_done = false;
    let mut streams: FuturesUnordered<StreamFuture> = FuturesUnordered::new();
    let wake = Arc::new(LocalWake::default());
    let waker = Waker::from(Arc::clone(&wake));
    std::future::poll_fn(|cx| {
        wake.task.register(cx.waker());
        let mut local = Context::from_waker(&waker);
        wake.state.store(POLLING, Ordering::SeqCst);
        for _ in 0..MAX_ROUNDS {
            wake.state.fetch_and(!WOKEN, Ordering::SeqCst);
            if !stopping && stop.as_mut().poll(&mut local).is_ready() {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            if !conn_done && let Poll::Ready(res) = conn.as_mut().poll(&mut local) {
                conn_done = true;
                if let Err(e) = res {
                    tracing::debug!(error = %e, "gRPC connection ended with an error");
                }
            }
            streams.extend(queue.take());
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(&mut local) {}
            if !queue.is_empty() {
                continue;
            }
            // Something woken while we polled (a stream queued frames for the connection, the
            // connection gave a stream its body) runs in the next round, not in a new poll.
            if wake.state.load(Ordering::SeqCst) & WOKEN == 0 {
                // Wakes from now on go to the runtime.
                if wake.state.swap(0, Ordering::SeqCst) & WOKEN == 0 {
                    return if conn_done && streams.is_empty() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    };
                }
                wake.state.store(POLLING, Ordering::SeqCst);
            }
        }
        // Busy: let other tasks run, then come back.
        wake.state.store(0, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// The waker of a connection's connection and streams: while the task polls them a wake-up is
/// only noted (the task serves it in its next round); otherwise it wakes the task.
#[derive(Default)]
struct LocalWake {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for LocalWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.fetch_or(WOKEN, Ordering::SeqCst) & POLLING == 0 {
            self.task.wake();
        }
    }
}

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection: the streams it starts wait here until the connection's
/// task takes them (hyper starts streams only while that task polls the connection).
#[derive(Clone, Default)]
struct StreamQueue(Arc<Mutex<Vec<StreamFuture>>>);

impl StreamQueue {
    fn take(&self) -> Vec<StreamFuture> {
        std::mem::take(&mut *lock(&self.0))
    }

    fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }
}

impl<F> hyper::rt::Executor<F> for StreamQueue
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // A panicking call ends its own stream, not its connection's other streams.
        let fut = AssertUnwindSafe(fut).catch_unwind().map(|res| {
            if res.is_err() {
                tracing::error!("a gRPC call panicked; its stream is reset");
            }
        });
        lock(&self.0).push(Box::pin(fut));
    }
}

/// What tonic's server does around every request of a connection: its [`ConnectionInfo`] in
/// the extensions, the `grpc` span, the request timeout.
#[derive(Clone)]
struct PerRequest<S> {
    inner: S,
    info: ConnectionInfo,
    timeout: Duration,
}

impl<S> Service<Request<Incoming>> for PerRequest<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        let span = tracing::info_span!("grpc", method = %req.uri().path());
        let timeout = match grpc_timeout(req.headers()) {
            Some(client) => client.min(self.timeout),
            None => self.timeout,
        };
        req.extensions_mut().insert(self.info.clone());
        let response = self.inner.call(req).instrument(span);
        Box::pin(async move {
            match tokio::time::timeout(timeout, response).await {
                Ok(res) => res,
                Err(_) => {
                    Ok(tonic::Status::from_error(Box::new(tonic::TimeoutExpired(()))).into_http())
                }
            }
        })
    }
}

/// The client's `grpc-timeout` header (as tonic reads it: at most 8 digits and a unit), if valid.
fn grpc_timeout(headers: &tonic::codegen::http::HeaderMap) -> Option<Duration> {
    let s = headers.get("grpc-timeout")?.to_str().ok()?;
    if s.len() < 2 {
        return None;
    }
    let (value, unit) = s.split_at(s.len() - 1);
    if value.len() > 8 {
        return None;
    }
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::http::{HeaderMap, HeaderValue};

    fn parsed(v: &'static str) -> Option<Duration> {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", HeaderValue::from_static(v));
        grpc_timeout(&h)
    }

    #[test]
    fn grpc_timeout_header_as_tonic_reads_it() {
        assert_eq!(parsed("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parsed("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parsed("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parsed("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parsed("123456789S"), None, "more than 8 digits");
        assert_eq!(parsed("5x"), None);
        assert_eq!(parsed("S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }
}
