//! The HTTP surface (axum): health probes, `/stats`, topic and group views, REST produce and
//! consume, and `/metrics`. Handlers translate JSON to Broker calls and back; errors map to JSON
//! in one table ([`error`]).
//!
//! - [`health`]: `/health`, `/health/live`, `/health/ready`, `/metrics`.
//! - [`stats`]: `/stats`, `/topics`, `/topics/{topic}`, `/groups`, `/groups/{group}`.
//! - [`rest`]: produce, fetch, poll, commit, reset under `/topics/{topic}/…`.
//! - [`records`]: the JSON shapes of records; [`extract`]: extractors with JSON rejections.
//!
//! Every route runs under: a trace span per request, request metrics, JSON bodies for every error,
//! a request timeout (503 `timeout`), and a body limit (413 `payload_too_large`).

pub mod error;
pub mod extract;
pub mod health;
mod layers;
pub mod records;
pub mod rest;
pub mod stats;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::broker::Broker;
use crate::status::ServerStatus;
use error::{codes, error_response};
use extract::BodyLimit;

/// Limits of the HTTP surface.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// A request still running after this is answered 503 `timeout` (its outcome is unknown).
    pub request_timeout: Duration,
    /// Largest request body. The default fits one maximum-size record (10 MiB) even when sent as
    /// base64 (4/3 larger), plus 1 MiB for JSON and headers.
    pub body_limit_bytes: usize,
    /// Longest long-poll wait a fetch or poll may ask for (kept below the request timeout).
    pub max_wait: Duration,
    /// Most records one fetch or poll returns.
    pub max_records: usize,
    /// Most bytes one fetch or poll asks the broker for.
    pub max_read_bytes: usize,
}

impl HttpConfig {
    /// Default body limit for a broker whose largest record is `max_record_bytes`.
    pub const fn body_limit_for(max_record_bytes: usize) -> usize {
        max_record_bytes.div_ceil(3) * 4 + (1 << 20)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            body_limit_bytes: Self::body_limit_for(10 << 20),
            max_wait: Duration::from_secs(30),
            max_records: 10_000,
            max_read_bytes: 16 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct HttpState {
    pub broker: Broker,
    pub status: Arc<ServerStatus>,
    pub config: HttpConfig,
    /// Cancelled when the server starts stopping: readiness turns false. (Long polls end on the
    /// broker's drain, as on every protocol.) Pass the token given to [`serve`] with
    /// [`HttpState::with_shutdown`].
    pub shutdown: CancellationToken,
}

impl HttpState {
    /// State with the default [`HttpConfig`] (body limit derived from the broker's record
    /// limit). Registers the broker with the metrics, so `/metrics` reports its state.
    pub fn new(broker: Broker, status: Arc<ServerStatus>) -> Self {
        let config = HttpConfig {
            body_limit_bytes: HttpConfig::body_limit_for(broker.config().max_record_bytes),
            ..HttpConfig::default()
        };
        Self::with_config(broker, status, config)
    }

    pub fn with_config(broker: Broker, status: Arc<ServerStatus>, config: HttpConfig) -> Self {
        crate::metrics::observe_broker(&broker, &status);
        Self {
            broker,
            status,
            config,
            shutdown: CancellationToken::new(),
        }
    }

    /// Turns readiness false when `shutdown` is cancelled (the token given to [`serve`]).
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// The router of every endpoint, with its middleware.
pub fn router(state: HttpState) -> Router {
    let cfg = state.config;
    Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/stats", get(stats::stats))
        .route("/topics", get(stats::list_topics).post(stats::create_topic))
        .route(
            "/topics/{topic}",
            get(stats::describe_topic).delete(stats::delete_topic),
        )
        .route(
            "/topics/{topic}/messages",
            post(rest::produce).get(rest::fetch),
        )
        .route("/topics/{topic}/poll", post(rest::poll))
        .route("/topics/{topic}/commit", post(rest::commit))
        .route("/topics/{topic}/reset", post(rest::reset))
        .route("/groups", get(stats::list_groups))
        .route("/groups/{group}", get(stats::describe_group))
        .fallback(no_route)
        // Innermost first: the last layer added runs first.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(cfg.body_limit_bytes))
        .layer(axum::Extension(BodyLimit(cfg.body_limit_bytes)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            cfg.request_timeout,
        ))
        .layer(axum::middleware::map_response(layers::json_errors))
        .layer(axum::middleware::from_fn(layers::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn no_route() -> axum::response::Response {
    error_response(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such endpoint")
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// in-flight requests finish (long polls end at their wait or the broker's shutdown) and returns.
/// Connections are counted in the `protocol="http"` connection metrics.
///
/// # Errors
/// I/O errors of the server itself (accept errors are logged and retried).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    axum::serve(CountedListener(listener), router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A TCP listener whose connections count themselves in the metrics while open.
struct CountedListener(TcpListener);

impl axum::serve::Listener for CountedListener {
    type Io = CountedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        crate::metrics::connection_opened("http");
        (CountedStream(stream), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// An accepted connection; dropping it counts it closed.
struct CountedStream(TcpStream);

impl Drop for CountedStream {
    fn drop(&mut self) {
        crate::metrics::connection_closed("http");
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
