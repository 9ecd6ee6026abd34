//! `obelisk serve`: flags and `OBELISK_*` variables over the TOML file over the defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with '_' for '-').
    #[arg(long, env = "OBELISK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, env = "OBELISK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "OBELISK_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Legacy binary TCP listen address, or "off" [default: 127.0.0.1:8080].
    #[arg(long, env = "OBELISK_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// HTTP (health, stats, REST, metrics) listen address, or "off" [default: 127.0.0.1:8081].
    #[arg(long, env = "OBELISK_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// When a produce is acknowledged: "fsync" (after fdatasync) or "interval" [default: fsync].
    #[arg(long, env = "OBELISK_DURABILITY")]
    pub durability: Option<String>,
    /// fsync period in `interval` mode, in ms [default: 100].
    #[arg(long, env = "OBELISK_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Partitions of auto-created topics [default: 4].
    #[arg(long, env = "OBELISK_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<u32>,
    /// Create topics on first produce: true or false [default: true].
    #[arg(long, env = "OBELISK_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Default retention by age in ms, 0 = forever [default: 0].
    #[arg(long, env = "OBELISK_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    /// Default retention by size per partition in bytes, 0 = unlimited [default: 0].
    #[arg(long, env = "OBELISK_RETENTION_BYTES")]
    pub retention_bytes: Option<u64>,
    /// Segment size before rolling, in bytes [default: 67108864].
    #[arg(long, env = "OBELISK_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Ring buffer of recent records per partition, in bytes [default: 4194304].
    #[arg(long, env = "OBELISK_RING_BUFFER_BYTES")]
    pub ring_buffer_bytes: Option<usize>,
    /// Most records in one group commit [default: 10000].
    #[arg(long, env = "OBELISK_BATCH_MAX_RECORDS")]
    pub batch_max_records: Option<usize>,
    /// Most bytes in one group commit [default: 4194304].
    #[arg(long, env = "OBELISK_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,
    /// How long a batch waits for more records before writing, in ms [default: 0].
    #[arg(long, env = "OBELISK_LINGER_MS")]
    pub linger_ms: Option<u64>,
    /// Largest record (key + value + headers) in bytes [default: 10485760].
    #[arg(long, env = "OBELISK_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Largest gRPC message in bytes [default: 67108864].
    #[arg(long, env = "OBELISK_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most open connections per listener [default: 1024].
    #[arg(long, env = "OBELISK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent gRPC streams per connection [default: 256].
    #[arg(long, env = "OBELISK_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    /// Deadline of unary calls, in ms [default: 30000].
    #[arg(long, env = "OBELISK_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Close legacy TCP connections idle this long, in ms [default: 300000].
    #[arg(long, env = "OBELISK_LEGACY_IDLE_TIMEOUT_MS")]
    pub legacy_idle_timeout_ms: Option<u64>,
    /// Most open legacy TCP connections, 0 = --max-connections [default: 0].
    #[arg(long, env = "OBELISK_MAX_LEGACY_CONNECTIONS")]
    pub max_legacy_connections: Option<usize>,
    /// Most open HTTP connections, 0 = --max-connections [default: 0].
    #[arg(long, env = "OBELISK_MAX_HTTP_CONNECTIONS")]
    pub max_http_connections: Option<usize>,
    /// Time for a new connection to send its first bytes (HTTP/2: its preface), in ms [default: 10000].
    #[arg(long, env = "OBELISK_HANDSHAKE_TIMEOUT_MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Close gRPC and HTTP connections with no request in flight this long, in ms [default: 300000].
    #[arg(long, env = "OBELISK_CONNECTION_IDLE_TIMEOUT_MS")]
    pub connection_idle_timeout_ms: Option<u64>,
    /// HTTP/2 keepalive ping interval on gRPC and HTTP in ms, 0 = off [default: 30000].
    #[arg(long, env = "OBELISK_KEEPALIVE_INTERVAL_MS")]
    pub keepalive_interval_ms: Option<u64>,
    /// Close a connection whose keepalive ping is unanswered this long, in ms [default: 10000].
    #[arg(long, env = "OBELISK_KEEPALIVE_TIMEOUT_MS")]
    pub keepalive_timeout_ms: Option<u64>,
    /// File descriptors kept for storage outside the connection budget, 0 = a quarter of the
    /// open-file limit, at least 128 [default: 0].
    #[arg(long, env = "OBELISK_FD_RESERVE")]
    pub fd_reserve: Option<u64>,
    /// Log format: "text" or "json" [default: text].
    #[arg(long, env = "OBELISK_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// Log filter, e.g. "info" or "obelisk=debug" (RUST_LOG wins) [default: info].
    #[arg(long, env = "OBELISK_LOG_LEVEL")]
    pub log_level: Option<String>,
}

macro_rules! overlay {
    ($config:ident, $args:ident, $($field:ident),*) => {
        $(if let Some(v) = $args.$field { $config.$field = v; })*
    };
}

impl ServeArgs {
    /// Defaults < file < environment and flags.
    ///
    /// # Errors
    /// The config file cannot be read or parsed.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let args = self;
        overlay!(
            config,
            args,
            data_dir,
            grpc_addr,
            tcp_addr,
            http_addr,
            durability,
            fsync_interval_ms,
            default_partitions,
            auto_create_topics,
            retention_ms,
            retention_bytes,
            segment_bytes,
            ring_buffer_bytes,
            batch_max_records,
            batch_max_bytes,
            linger_ms,
            max_record_bytes,
            max_message_bytes,
            max_connections,
            max_concurrent_streams,
            request_timeout_ms,
            legacy_idle_timeout_ms,
            max_legacy_connections,
            max_http_connections,
            handshake_timeout_ms,
            connection_idle_timeout_ms,
            keepalive_interval_ms,
            keepalive_timeout_ms,
            fd_reserve,
            log_format,
            log_level
        );
        Ok(config)
    }
}

/// Runs the server until SIGINT or SIGTERM.
///
/// # Errors
/// Invalid configuration, a port in use, or an unreadable data directory.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let validated = config.validate()?;
    crate::telemetry::init_tracing(config.log_format, &config.log_level)?;
    tracing::info!(
        data_dir = %validated.broker.data_dir.display(),
        durability = %config.durability,
        grpc = %validated.grpc_addr,
        legacy_tcp = ?validated.tcp_addr,
        http = ?validated.http_addr,
        "starting obelisk"
    );
    let server = crate::server::start(validated)
        .await
        .context("the server did not start")?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    server.wait().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
