//! The legacy TCP listener: the original Obelisk's binary produce protocol, byte for byte, as one
//! translation step into the same [`Broker`] calls every other protocol uses.
//!
//! - [`codec`]: bytes ↔ frames and reply lines (no I/O);
//! - [`replies`]: the one table from broker and codec errors to `NACK:*` replies;
//! - `connection`: the per-connection loop (pipelining, in-order replies, idle timeout);
//! - [`serve`] (here): the accept loop, the connection limit and draining on shutdown;
//! - [`import`]: importing an original data directory (`partition-N.log`/`.idx`, consumer offsets);
//! - [`client`]: a small pipelining producer client, for tests and the benchmark.
//!
//! The protocol as implemented, and where it departs from the original, is described in
//! `docs/legacy-protocol.md`.

pub mod client;
pub mod codec;
mod connection;
pub mod import;
pub mod replies;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::broker::Broker;
use crate::server::connections::{self, LogGate, Refusal, RefusalLog};
use crate::status::Protocol;
pub use client::{ClientError, FrameWriter, LegacyClient, ReplyReader};
pub use import::{ImportError, ImportReport, import};
pub use stats::LegacyStats;

/// Settings of the legacy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConfig {
    /// Connections served at once; one more is answered `NACK:PUBLISH_FAILED` (overloaded) and
    /// closed, with a warning at most every few seconds. The original declared this limit but
    /// never enforced it.
    pub max_connections: usize,
    /// A connection that sends no complete frame for this long is closed.
    pub idle_timeout: Duration,
    /// A new connection must send its first complete frame within this (or the idle timeout, if
    /// shorter), so silent sockets cannot hold the connection slots.
    pub handshake_timeout: Duration,
    /// Frames of one connection handed to the broker and not yet answered. Beyond it the
    /// connection stops reading, which pushes back on the client through TCP.
    pub max_in_flight: usize,
    /// On shutdown, how long a connection may take to write its in-flight replies (to a client
    /// that does not read them) before it is dropped.
    pub shutdown_grace: Duration,
    /// The principal every connection acts as when authentication is on (the protocol has no
    /// place for credentials); `None` then refuses every produce `NACK:UNAUTHORIZED`.
    pub principal: Option<String>,
    /// TLS on this listener (its original clients cannot speak it: off by default). Under mTLS
    /// a client certificate's principal replaces `principal` for its connection.
    pub tls: Option<crate::server::tls::Tls>,
}

impl Default for LegacyConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            shutdown_grace: Duration::from_secs(5),
            principal: None,
            tls: None,
        }
    }
}

/// Pause after an accept error that is not about one connection (out of file descriptors...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the legacy protocol on `listener` until `shutdown` is cancelled, then stops accepting,
/// lets every connection write the replies of the frames it already handed to the broker, and
/// returns once all connections are closed. Idle connections close at once on shutdown.
///
/// Call `Broker::shutdown` after this returns, so in-flight produces can still complete.
///
/// # Errors
/// None at present: accept errors are logged and retried. The `Result` leaves room for listener
/// failures a caller must see.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    config: LegacyConfig,
    stats: Arc<LegacyStats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limit = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let tracker = TaskTracker::new();
    let listener_broker = broker.clone();
    let caller = broker
        .authenticate(crate::auth::Credentials {
            token: None,
            verified: config.principal.as_deref(),
        })
        .inspect_err(|_| {
            tracing::warn!(
                "authentication is on and the legacy listener has no principal \
                 (legacy_principal): every produce is refused NACK:UNAUTHORIZED"
            );
        })
        .ok();
    let ctx = connection::ConnectionContext {
        caller,
        idle_timeout: config.idle_timeout,
        first_frame_timeout: config.handshake_timeout.min(config.idle_timeout),
        max_in_flight: config.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
        shutdown_grace: config.shutdown_grace,
        shutdown: shutdown.clone(),
        stats: Arc::clone(&stats),
    };
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "legacy TCP listener serving"),
        Err(e) => tracing::info!(error = %e, "legacy TCP listener serving"),
    }
    let refusals = RefusalLog::new(Protocol::Legacy);
    let accept_errors = LogGate::default();
    let lingering = Arc::new(Semaphore::new(connections::MAX_LINGERING));
    if let Some(server) = stats.server() {
        server.legacy.set_max_connections(config.max_connections);
    }
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) if connections::is_per_connection(&e) => {
                tracing::debug!(error = %e, "a connection failed while being accepted");
                continue;
            }
            Err(e) => {
                if let Some(suppressed) = accept_errors.open() {
                    let what = "accepting legacy connections failed; retrying";
                    tracing::error!(error = %e, failures_since_last_error = suppressed, "{what}");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            stats.note_rejected();
            refusals.refused(peer, config.max_connections);
            connections::refuse(stream, Refusal::Legacy, &lingering);
            continue;
        };
        next_id += 1;
        let span = tracing::info_span!("legacy_connection", id = next_id, %peer);
        let mut ctx = ctx.clone();
        let open = stats.open_guard();
        let tls = config.tls.clone();
        let (broker, handshake) = (listener_broker.clone(), config.handshake_timeout);
        tracker.spawn(
            async move {
                tracing::debug!("connection accepted");
                match tls {
                    None => connection::run(stream, ctx).await,
                    Some(tls) => {
                        let _ = stream.set_nodelay(true);
                        let Some((stream, principal)) =
                            tls.accept(stream, handshake, "legacy").await
                        else {
                            return;
                        };
                        if let Some(p) = principal {
                            ctx.caller = broker
                                .authenticate(crate::auth::Credentials {
                                    token: None,
                                    verified: Some(&p),
                                })
                                .ok();
                        }
                        connection::run_tls(stream, ctx).await;
                    }
                }
                drop(open);
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracker.close();
    tracing::info!(
        open = tracker.len(),
        "legacy listener stopped accepting; draining connections"
    );
    tracker.wait().await;
    tracing::info!("legacy listener stopped");
    Ok(())
}
