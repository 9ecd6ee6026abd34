//! The gRPC surface: `obelisk.v1.Broker` (tonic), the standard health service and server
//! reflection, served with connection, stream, size and time limits.

pub mod acl;
mod cluster; // replication (issue 17)
mod convert;
mod groups;
mod h2;
mod incoming;
mod layers;
mod service;
mod shared; // shared groups (issue 14)
mod shared_stream; // shared groups (issue 14)
pub mod status;

// formatv2: the CLI converts a topic's compression too.
pub use convert::{compression_from_pb, compression_to_pb};

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::broker::Broker;
use crate::proto::broker_server::BrokerServer;
use crate::server::connections::ConnectionLimits;
use crate::status::ServerStatus;
pub use service::BrokerService;

/// Limits of the gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    /// Deadline for unary calls (streams are not cut by it).
    pub request_timeout: Duration,
    /// A new connection must send the HTTP/2 preface within this, or it is closed.
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 ping interval (`None`: no pings) ...
    pub keepalive_interval: Option<Duration>,
    /// ... and how long an unanswered ping keeps the connection.
    pub keepalive_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 << 20,
            max_connections: 1024,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// The health service name clients check for the broker itself.
pub const HEALTH_SERVICE: &str = "obelisk.v1.Broker";

/// Serves gRPC on `listener` until `shutdown` fires, then stops accepting, lets in-flight calls
/// finish and ends streams. Health reports NOT_SERVING while any partition is read-only.
///
/// # Errors
/// The transport's error if the server fails.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    config: GrpcConfig,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, broker, config, None, status, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given (security, issue 15).
///
/// # Errors
/// The transport's error if the server fails.
pub async fn serve_tls(
    listener: TcpListener,
    broker: Broker,
    config: GrpcConfig,
    tls: Option<crate::server::tls::Tls>,
    status: Arc<ServerStatus>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(HEALTH_SERVICE, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    tokio::spawn(watch_health(broker.clone(), reporter, shutdown.clone()));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            tracing::error!(error = %e, "reflection setup failed");
            e
        });
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let service = BrokerServer::new(BrokerService::new(
        broker,
        shutdown.clone(),
        config.request_timeout,
    ))
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes)
    // formatv2: transport compression, gzip and zstd, for clients that send or accept it.
    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    .send_compressed(tonic::codec::CompressionEncoding::Zstd);
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
    };
    let incoming = tokio_stream::StreamExt::filter_map(
        incoming::limited(listener, limits, tls, status, shutdown.clone()),
        |conn| {
            conn.ok().map(|io| {
                let info = tonic::transport::server::Connected::connect_info(&io);
                (io, info)
            })
        },
    );
    // Every request stream is served in its connection's task (issue 12, see `h2`), with the
    // request layer and tonic's per-request steps around the services.
    let mut routes = tonic::service::Routes::new(health).add_service(service);
    if let Ok(r) = reflection_v1 {
        routes = routes.add_service(r);
    }
    if let Ok(r) = reflection_v1alpha {
        routes = routes.add_service(r);
    }
    let routes = tower::Layer::layer(&layers::RequestLayer, routes.prepare());
    let settings = h2::H2Settings {
        max_concurrent_streams: config.max_concurrent_streams,
        keepalive_interval: config.keepalive_interval,
        keepalive_timeout: config.keepalive_timeout,
        request_timeout: config.request_timeout,
    };
    h2::serve(incoming, routes, settings, shutdown).await;
    Ok(())
}

/// Keeps the health status in step with storage: NOT_SERVING while a partition is read-only or
/// once the server is stopping.
async fn watch_health(
    broker: Broker,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    let mut last = ServingStatus::Serving;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => {
                reporter.set_service_status(HEALTH_SERVICE, ServingStatus::NotServing).await;
                reporter.set_service_status("", ServingStatus::NotServing).await;
                return;
            }
        }
        let now = if broker.failed_partitions().is_empty() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if now != last {
            reporter.set_service_status(HEALTH_SERVICE, now).await;
            reporter.set_service_status("", now).await;
            last = now;
        }
    }
}
