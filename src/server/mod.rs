//! Running a whole server: bind every listener, recover the broker, serve, and shut down in order
//! (stop accepting, finish in-flight calls, end streams, flush and fsync).

pub mod connections;
pub mod descriptors;
pub mod devcert;
mod h2_refusal;
mod in_flight;
mod recovering;
mod refusal;
mod security;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerError};
use crate::config::Validated;
use crate::http::HttpState;
use crate::legacy::{LegacyConfig, LegacyStats};
use crate::status::{Recovery, ServerStatus};

/// How long shutdown waits for listeners to drain before cutting the rest.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// TLS, token or ACL files could not be used (security).
    #[error("{0}")]
    Security(String),
    /// replication (issue 17): the cluster node did not start.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A server that is up; dropping it does not stop it, [`RunningServer::stop`] does.
pub struct RunningServer {
    pub grpc_addr: SocketAddr,
    pub tcp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub broker: Broker,
    pub status: Arc<ServerStatus>,
    /// replication (issue 17): this node's cluster, when it is one node of a cluster.
    pub cluster: Option<crate::cluster::Cluster>,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Two handles on one listening socket: the real server's, and one for the recovery answers.
fn twin(
    what: &'static str,
    listener: TcpListener,
) -> Result<(TcpListener, TcpListener), ServerError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let fail = |source| ServerError::Bind { what, addr, source };
    let std = listener.into_std().map_err(fail)?;
    let clone = std.try_clone().map_err(fail)?;
    Ok((
        TcpListener::from_std(std).map_err(fail)?,
        TcpListener::from_std(clone).map_err(fail)?,
    ))
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

/// Binds the listeners (failing fast on a taken port), opens and recovers the data directory, and
/// starts serving.
///
/// # Errors
/// A listener cannot bind, or the data directory cannot be opened.
pub async fn start(mut config: Validated) -> Result<RunningServer, ServerError> {
    budget_descriptors(&mut config);
    let mut secure = security::prepare(&config.security)?;
    let grpc_listener = bind("gRPC", config.grpc_addr).await?;
    let legacy_listener = match config.tcp_addr {
        Some(addr) => Some(bind("legacy TCP", addr).await?),
        None => None,
    };
    let http_listener = match config.http_addr {
        Some(addr) => Some(bind("HTTP", addr).await?),
        None => None,
    };
    let grpc_addr = grpc_listener.local_addr().unwrap_or(config.grpc_addr);
    let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
    let tcp_addr = legacy_listener.as_ref().and_then(|l| l.local_addr().ok());

    let status = Arc::new(ServerStatus::new());
    status.grpc.enable();
    if legacy_listener.is_some() {
        status.legacy.enable();
    }
    if http_listener.is_some() {
        status.http.enable();
    }
    status.set_recovering(Recovery::Running);
    let (grpc_listener, grpc_during) = twin("gRPC", grpc_listener)?;
    let (http_listener, http_during) = match http_listener {
        Some(l) => {
            let (real, during) = twin("HTTP", l)?;
            (Some(real), Some(during))
        }
        None => (None, None),
    };
    let recovery = recovering::RecoveryServers::start(grpc_during, http_during);
    // Recovery reads and checks files: a blocking thread, so the recovery answers keep flowing.
    let broker_config = config.broker.clone();
    let handle = tokio::runtime::Handle::current();
    let opened = tokio::task::spawn_blocking(move || Broker::open(broker_config, &handle)).await;
    recovery.stop().await;
    let broker = match opened {
        Ok(res) => res?,
        Err(e) => {
            return Err(ServerError::Broker(BrokerError::Unavailable(format!(
                "recovery stopped unexpectedly: {e}"
            ))));
        }
    };
    status.set_recovering(Recovery::Done);
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    if let Some(watcher) = secure.install(&broker, shutdown.clone()) {
        tasks.push(("reload", watcher));
    }
    // Before any listener serves, so the metrics count every call (with or without HTTP).
    crate::metrics::observe_broker(&broker, &status);
    // replication (issue 17): one node of a cluster; without cluster settings nothing changes.
    let cluster = match &config.cluster {
        None => None,
        Some(settings) => {
            let me = crate::proto::cluster::NodeInfo {
                node_id: settings.node_id,
                grpc_addr: grpc_addr.to_string(),
                http_addr: http_addr.map(|a| a.to_string()).unwrap_or_default(),
                legacy_addr: tcp_addr.map(|a| a.to_string()).unwrap_or_default(),
            };
            Some(crate::cluster::Cluster::start(settings, &broker, me).await?)
        }
    };

    {
        let (broker, grpc, status, shutdown, tls) = (
            broker.clone(),
            config.grpc.clone(),
            Arc::clone(&status),
            shutdown.clone(),
            secure.grpc.clone(),
        );
        tasks.push((
            "gRPC",
            tokio::spawn(async move {
                let res = crate::grpc::serve_tls(
                    grpc_listener,
                    broker,
                    grpc,
                    tls,
                    Arc::clone(&status),
                    shutdown,
                )
                .await;
                status.grpc.mark_down();
                if let Err(e) = res {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            }),
        ));
    }
    // Each listener is bound before its task runs (connections wait in its backlog), so it is up
    // from here: health and readiness never see a listener "down" between start and its task.
    status.grpc.set_max_connections(config.grpc.max_connections);
    status.grpc.mark_up();
    tracing::info!(%grpc_addr, "gRPC listening");

    if let Some(listener) = legacy_listener {
        let legacy = LegacyConfig {
            max_connections: config.legacy_max_connections,
            idle_timeout: config.legacy_idle_timeout,
            handshake_timeout: config.handshake_timeout,
            principal: config.security.legacy_principal.clone(),
            tls: secure.legacy.clone(),
            ..LegacyConfig::default()
        };
        let stats = Arc::new(LegacyStats::for_server(Arc::clone(&status)));
        status.legacy.set_max_connections(legacy.max_connections);
        status.legacy.mark_up();
        let (broker, status, shutdown) = (broker.clone(), Arc::clone(&status), shutdown.clone());
        tasks.push((
            "legacy TCP",
            tokio::spawn(async move {
                let res = crate::legacy::serve(listener, broker, legacy, stats, shutdown).await;
                status.legacy.mark_down();
                if let Err(e) = res {
                    tracing::error!(error = %e, "legacy TCP listener failed");
                }
            }),
        ));
    }

    if let Some(listener) = http_listener {
        let state = HttpState::with_config(broker.clone(), Arc::clone(&status), config.http)
            .with_shutdown(shutdown.clone());
        let router = crate::http::router(state);
        status.http.set_max_connections(config.http.max_connections);
        status.http.mark_up();
        let (http, status, shutdown) = (config.http, Arc::clone(&status), shutdown.clone());
        let tls = secure.http.clone();
        tasks.push((
            "HTTP",
            tokio::spawn(async move {
                let res = crate::http::serve_tls(
                    listener,
                    router,
                    http,
                    tls,
                    Arc::clone(&status),
                    shutdown,
                )
                .await;
                status.http.mark_down();
                if let Err(e) = res {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }),
        ));
    }

    Ok(RunningServer {
        grpc_addr,
        tcp_addr,
        http_addr,
        broker,
        status,
        cluster,
        shutdown,
        tasks,
    })
}

/// Raises the open-file limit and fits the listeners' connection limits into it, leaving the
/// reserve for storage (see [`descriptors`]).
fn budget_descriptors(config: &mut Validated) {
    let limit = match descriptors::raise_nofile_limit() {
        Ok(l) => l.soft,
        Err(e) => {
            let what = "cannot read the open-file limit; connection limits are not budgeted";
            tracing::warn!(error = %e, "{what}");
            return;
        }
    };
    let reserve = limit.map_or(0, |l| descriptors::reserve_for(l, config.fd_reserve));
    config.broker.storage_descriptors = limit.map(|_| reserve);
    let mut wanted = [config.grpc.max_connections, 0, 0];
    if config.tcp_addr.is_some() {
        wanted[1] = config.legacy_max_connections;
    }
    if config.http_addr.is_some() {
        wanted[2] = config.http.max_connections;
    }
    let [grpc, legacy, http] = descriptors::budget(limit, reserve, wanted);
    if [grpc, legacy, http] != wanted {
        tracing::warn!(
            open_file_limit = ?limit,
            reserve,
            grpc = %format!("{} -> {grpc}", wanted[0]),
            legacy = %format!("{} -> {legacy}", wanted[1]),
            http = %format!("{} -> {http}", wanted[2]),
            "connection limits lowered to fit the open-file limit"
        );
    }
    config.grpc.max_connections = grpc;
    if config.tcp_addr.is_some() {
        config.legacy_max_connections = legacy;
    }
    if config.http_addr.is_some() {
        config.http.max_connections = http;
    }
    tracing::info!(
        open_file_limit = ?limit,
        reserve,
        grpc_max_connections = grpc,
        legacy_max_connections = legacy,
        http_max_connections = http,
        "descriptor budget"
    );
}

impl RunningServer {
    /// A token that stops the server when cancelled (see [`RunningServer::wait`]).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the shutdown token fires, then stops.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }

    /// Stops accepting, lets listeners drain (up to a few seconds), then flushes and fsyncs every
    /// partition.
    pub async fn stop(self) {
        // Waits end first (long polls answer, subscriptions end), so in-flight calls can finish.
        self.broker.drain();
        self.shutdown.cancel();
        for (what, mut task) in self.tasks {
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(
                    listener = what,
                    "listener did not drain in time; closing it"
                );
                task.abort();
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.shutdown().await;
        }
        self.broker.shutdown().await;
    }
}
