//! The HTTP surface (axum): health probes, `/stats`, topic and group views, REST produce and
//! consume, and `/metrics`. Handlers translate JSON to Broker calls and back; errors map to JSON
//! in one table ([`error`]).
//!
//! - [`health`]: `/health`, `/health/live`, `/health/ready`, `/metrics`.
//! - [`stats`]: `/stats`, `/topics/{topic}`, `/groups`, `/groups/{group}`.
//! - Console (issue 18): [`browse`] (`/topics` paged, `/topics/{topic}/offsets`,
//!   `/stats/overview`), [`history`] (`/stats/history`, `/groups/{group}/history`), [`ui`] (`/ui`).
//! - [`rest`]: produce, fetch, poll, commit, reset under `/topics/{topic}/…`.
//! - [`groups`]: the original's `/consumer-groups` endpoints (groups with members).
//! - [`records`]: the JSON shapes of records; [`extract`]: extractors with JSON rejections.
//!
//! Every route runs under: a trace span per request, request metrics, JSON bodies for every error,
//! a request timeout (503 `timeout`), and a body limit (413 `payload_too_large`).

pub mod auth;
pub mod error;
pub mod extract;
pub mod groups;
pub mod health;
mod layers;
pub mod records;
pub mod rest;
pub mod shared; // shared groups (issue 14)
pub mod stats;
// Console (issue 18): the web UI at /ui and the views it needs.
pub mod browse;
pub mod history;
pub mod ui;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::broker::Broker;
use crate::server::connections::{self, ConnectionLimits, TrackedBody};
use crate::status::{Protocol, ServerStatus};
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
    /// Connections open at once; more are answered 429 and closed.
    pub max_connections: usize,
    /// A new connection must send its first bytes within this (and an HTTP/1 request its headers).
    pub handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 ping interval (`None`: no pings) ...
    pub keepalive_interval: Option<Duration>,
    /// ... and how long an unanswered ping keeps the connection.
    pub keepalive_timeout: Duration,
    /// With authentication on, the probes and `/metrics` need credentials too (security).
    pub probes_require_auth: bool,
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
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            probes_require_auth: false,
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
    /// Recent rates and lags for the console's charts (sampled while the broker runs).
    pub history: Arc<history::History>,
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
        let history = Arc::new(history::History::default());
        history.spawn_sampler(&broker);
        Self {
            broker,
            status,
            config,
            shutdown: CancellationToken::new(),
            history,
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
    let probes = Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/ready", get(health::ready)) // replication (issue 17): the usual probe path
        .route("/metrics", get(health::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::probe_guard,
        ));
    Router::new()
        .merge(probes)
        .route("/stats", get(stats::stats))
        .route(
            "/topics",
            get(browse::list_topics).post(stats::create_topic),
        )
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
        .route("/topics/{topic}/acks", post(shared::acks)) // shared groups (issue 14)
        .route("/groups", get(stats::list_groups))
        .route("/groups/{group}", get(stats::describe_group))
        // Console (issue 18).
        .route("/stats/overview", get(browse::overview))
        .route("/stats/history", get(history::rates))
        .route("/groups/{group}/history", get(history::group_lag))
        .route("/topics/{topic}/offsets", get(browse::topic_offsets))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        // groups (issue 13): the original's consumer-group endpoints.
        .route("/consumer-groups", post(groups::create))
        .route(
            "/consumer-groups/{group}",
            get(groups::describe).delete(groups::delete),
        )
        .route("/consumer-groups/{group}/members", post(groups::join))
        .route(
            "/consumer-groups/{group}/members/{member}",
            axum::routing::delete(groups::leave),
        )
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
/// in-flight requests finish (long polls end at their wait or the broker's shutdown) and returns;
/// idle connections are closed at once. Connections are admitted within the limits of `config`
/// (see [`crate::server::connections`]) and counted in `status.http` and the `protocol="http"`
/// connection metrics. HTTP/1 requests must send their headers within the handshake timeout;
/// HTTP/2 connections are pinged every keepalive interval and closed when a ping goes unanswered.
///
/// # Errors
/// None at present: accept errors are logged and retried. The `Result` leaves room for listener
/// failures a caller must see.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_tls(listener, router, config, None, status, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given (security, issue 15); a verified client
/// certificate's principal reaches handlers as [`auth::PeerPrincipal`].
///
/// # Errors
/// As [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    tls: Option<crate::server::tls::Tls>,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
    };
    let admitted = connections::accept(listener, Protocol::Http, limits, status, shutdown.clone());
    let mut admitted = crate::server::tls::secure(
        admitted,
        tls,
        "http",
        config.handshake_timeout,
        shutdown.clone(),
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.handshake_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout);
    let tracker = TaskTracker::new();
    loop {
        let conn = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            conn = admitted.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        let activity = Arc::clone(conn.activity());
        let peer = auth::PeerPrincipal(conn.principal().cloned());
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
            let in_flight = activity.begin();
            req.extensions_mut().insert(peer.clone());
            let mut router = router.clone();
            // A Router is always ready: no poll_ready needed.
            let response = tower::Service::call(&mut router, req);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(
                    response.map(|b| axum::body::Body::new(TrackedBody::new(b, Some(in_flight)))),
                )
            }
        });
        let (builder, shutdown) = (builder.clone(), shutdown.clone());
        tracker.spawn(async move {
            let served = builder.serve_connection(TokioIo::new(conn), service);
            tokio::pin!(served);
            let res = tokio::select! {
                res = served.as_mut() => res,
                () = shutdown.cancelled() => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}
