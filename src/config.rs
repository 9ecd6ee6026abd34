//! Server configuration, declared once: each field of [`Config`] is at the same time a TOML key,
//! a `serve` flag, an `OBELISK_*` environment variable, its help text and its default (clap's
//! derive reads the attributes, serde the field names). Layering: embedded defaults < TOML file
//! < environment < flags ([`Config::layered`]), then [`Config::validate`] checks everything once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, Args, FromArgMatches};
use serde::{Deserialize, Serialize};

use crate::broker::{BatchConfig, BrokerConfig, Durability, FsyncWriter};
use crate::grpc::GrpcConfig;
use crate::http::HttpConfig;
use crate::telemetry::LogFormat;

/// When a produce is acknowledged, as an operator names it (the resolved policy, with its fsync
/// period, is [`Durability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Ack after the write is fdatasync'ed.
    #[default]
    Fsync,
    /// Ack after the write reaches the OS; fsync every `fsync_interval_ms`.
    Interval,
}

impl DurabilityMode {
    /// The name used in the TOML file, on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fsync => "fsync",
            Self::Interval => "interval",
        }
    }
}

/// Where each partition's batches are written in `fsync` mode (the setting; the core's enum is
/// [`FsyncWriter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncWriterMode {
    /// A thread per partition writes, fdatasyncs and acknowledges (lowest latency).
    #[default]
    Thread,
    /// A runtime task hands each batch to the blocking pool (no thread per partition).
    Task,
}

impl std::fmt::Display for DurabilityMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything `obelisk serve` can be told. Field names are the TOML keys; each flag is the
/// field name in kebab case.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    #[arg(long, env = "OBELISK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "OBELISK_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: String,
    /// Legacy binary TCP listen address, or "off".
    #[arg(long, env = "OBELISK_TCP_ADDR", default_value = "127.0.0.1:8080")]
    pub tcp_addr: String,
    /// HTTP (health, stats, REST, metrics) listen address, or "off".
    #[arg(long, env = "OBELISK_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: String,
    /// When a produce is acknowledged.
    #[arg(long, env = "OBELISK_DURABILITY", value_enum, default_value_t = DurabilityMode::Fsync)]
    pub durability: DurabilityMode,
    /// fsync period in `interval` mode, in ms.
    #[arg(long, env = "OBELISK_FSYNC_INTERVAL_MS", default_value_t = 100)]
    pub fsync_interval_ms: u64,
    /// Partitions of auto-created topics.
    #[arg(long, env = "OBELISK_DEFAULT_PARTITIONS",
          default_value_t = BrokerConfig::default().default_partitions)]
    pub default_partitions: u32,
    /// Create topics on first produce.
    #[arg(long, env = "OBELISK_AUTO_CREATE_TOPICS", action = ArgAction::Set,
          default_value_t = BrokerConfig::default().auto_create_topics)]
    pub auto_create_topics: bool,
    /// Default retention by age in ms, 0 = forever.
    #[arg(long, env = "OBELISK_RETENTION_MS", default_value_t = 0)]
    pub retention_ms: u64,
    /// Default retention by size per partition in bytes, 0 = unlimited.
    #[arg(long, env = "OBELISK_RETENTION_BYTES", default_value_t = 0)]
    pub retention_bytes: u64,
    /// Segment size before rolling, in bytes.
    #[arg(long, env = "OBELISK_SEGMENT_BYTES",
          default_value_t = BrokerConfig::default().segment_bytes)]
    pub segment_bytes: u64,
    /// Sealed segment logs kept open for reads, at most (the least recently read are closed; an
    /// active segment always keeps its own log open).
    #[arg(long, env = "OBELISK_OPEN_SEGMENT_FILES",
          default_value_t = BrokerConfig::default().open_segment_files)]
    pub open_segment_files: usize,
    /// Ring buffer of recent records per partition, in bytes.
    #[arg(long, env = "OBELISK_RING_BUFFER_BYTES",
          default_value_t = BrokerConfig::default().ring_buffer_bytes)]
    pub ring_buffer_bytes: usize,
    /// Most records in one group commit.
    #[arg(long, env = "OBELISK_BATCH_MAX_RECORDS",
          default_value_t = BatchConfig::default().max_records)]
    pub batch_max_records: usize,
    /// Most bytes in one group commit.
    #[arg(long, env = "OBELISK_BATCH_MAX_BYTES",
          default_value_t = BatchConfig::default().max_bytes)]
    pub batch_max_bytes: usize,
    /// How long a batch waits for more records before writing, in ms.
    #[arg(long, env = "OBELISK_LINGER_MS", default_value_t = 0)]
    pub linger_ms: u64,
    /// `fsync` mode: `thread` gives each partition a writer thread (fewest hand-offs per
    /// produce), `task` writes from a runtime task through the blocking pool (no thread per
    /// partition).
    #[arg(long, env = "OBELISK_FSYNC_WRITER", value_enum, default_value_t = FsyncWriterMode::Thread)]
    pub fsync_writer: FsyncWriterMode,
    /// Largest record (key + value + headers) in bytes.
    #[arg(long, env = "OBELISK_MAX_RECORD_BYTES",
          default_value_t = BrokerConfig::default().max_record_bytes)]
    pub max_record_bytes: usize,
    /// Largest gRPC message in bytes.
    #[arg(long, env = "OBELISK_MAX_MESSAGE_BYTES",
          default_value_t = GrpcConfig::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// Most open connections per listener.
    #[arg(long, env = "OBELISK_MAX_CONNECTIONS",
          default_value_t = GrpcConfig::default().max_connections)]
    pub max_connections: usize,
    /// Most concurrent gRPC streams per connection.
    #[arg(long, env = "OBELISK_MAX_CONCURRENT_STREAMS",
          default_value_t = GrpcConfig::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Deadline of unary calls, in ms.
    #[arg(long, env = "OBELISK_REQUEST_TIMEOUT_MS",
          default_value_t = GrpcConfig::default().request_timeout.as_millis() as u64)]
    pub request_timeout_ms: u64,
    /// Close legacy TCP connections idle this long, in ms.
    #[arg(
        long,
        env = "OBELISK_LEGACY_IDLE_TIMEOUT_MS",
        default_value_t = 300_000
    )]
    pub legacy_idle_timeout_ms: u64,
    /// Connection limit of the legacy listener; 0: `max_connections`.
    #[arg(long, env = "OBELISK_MAX_LEGACY_CONNECTIONS", default_value_t = 0)]
    pub max_legacy_connections: usize,
    /// Connection limit of the HTTP listener; 0: `max_connections`.
    #[arg(long, env = "OBELISK_MAX_HTTP_CONNECTIONS", default_value_t = 0)]
    pub max_http_connections: usize,
    /// A new connection must send its first bytes (HTTP/2: its preface) within this, in ms.
    #[arg(long, env = "OBELISK_HANDSHAKE_TIMEOUT_MS",
          default_value_t = GrpcConfig::default().handshake_timeout.as_millis() as u64)]
    pub handshake_timeout_ms: u64,
    /// gRPC and HTTP connections with no request in flight this long are closed, in ms.
    #[arg(long, env = "OBELISK_CONNECTION_IDLE_TIMEOUT_MS",
          default_value_t = GrpcConfig::default().idle_timeout.as_millis() as u64)]
    pub connection_idle_timeout_ms: u64,
    /// HTTP/2 keepalive ping interval on gRPC and HTTP, in ms; 0 turns pings off.
    #[arg(long, env = "OBELISK_KEEPALIVE_INTERVAL_MS",
          default_value_t = GrpcConfig::default().keepalive_interval.map_or(0, |d| d.as_millis() as u64))]
    pub keepalive_interval_ms: u64,
    /// A connection whose ping is not answered within this is closed, in ms.
    #[arg(long, env = "OBELISK_KEEPALIVE_TIMEOUT_MS",
          default_value_t = GrpcConfig::default().keepalive_timeout.as_millis() as u64)]
    pub keepalive_timeout_ms: u64,
    /// File descriptors kept out of the connection budget (for segments and the rest); 0: a
    /// quarter of the open-file limit, at least 128.
    #[arg(long, env = "OBELISK_FD_RESERVE", default_value_t = 0)]
    pub fd_reserve: u64,
    // ==== groups (issue 13) ====
    /// A consumer-group member not heard from for this long (no heartbeat on its JoinGroup
    /// stream, no poll of an HTTP member) is removed and its partitions move, in ms.
    #[arg(long, env = "OBELISK_GROUP_SESSION_TIMEOUT_MS",
          default_value_t = BrokerConfig::default().group_session_timeout.as_millis() as u64)]
    pub group_session_timeout_ms: u64,
    // ==== end groups (issue 13) ====
    /// Log format.
    #[arg(long, env = "OBELISK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. "info" or "obelisk=debug" (RUST_LOG wins).
    #[arg(long, env = "OBELISK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    // ==== security ====
    /// PEM certificate chain for TLS on the gRPC and HTTP listeners (with `tls_key`); reloaded
    /// on SIGHUP and when the file changes.
    #[arg(long, env = "OBELISK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[arg(long, env = "OBELISK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: every client must present a certificate they signed (mTLS); its
    /// subject CN (else first DNS SAN) is the client's principal. Turns authentication on.
    #[arg(long, env = "OBELISK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Bearer token file (`sha256:<hex> <principal>` lines, see `obelisk token new`); turns
    /// authentication on. Reloaded on SIGHUP and when the file changes.
    #[arg(long, env = "OBELISK_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Where ACLs are stored (default: `acls.json` in the data directory).
    #[arg(long, env = "OBELISK_ACL_FILE")]
    pub acl_file: Option<PathBuf>,
    /// The principal legacy TCP connections act as when authentication is on.
    #[arg(long, env = "OBELISK_LEGACY_PRINCIPAL")]
    pub legacy_principal: Option<String>,
    /// TLS on the legacy TCP listener too, with `tls_cert` (the original clients cannot speak it).
    #[arg(long, env = "OBELISK_LEGACY_TLS", action = ArgAction::Set, default_value_t = false)]
    pub legacy_tls: bool,
    /// Principals allowed everything whatever the ACLs (comma-separated), e.g. to add the first
    /// ACLs.
    #[arg(long, env = "OBELISK_SUPER_USERS", value_delimiter = ',')]
    pub super_users: Vec<String>,
    /// With authentication on, `/health*` and `/metrics` need credentials too.
    #[arg(long, env = "OBELISK_PROBES_REQUIRE_AUTH", action = ArgAction::Set, default_value_t = false)]
    pub probes_require_auth: bool,
    /// Listen on non-loopback addresses without TLS and authentication (warned at start).
    #[arg(long, env = "OBELISK_INSECURE", action = ArgAction::Set, default_value_t = false,
          num_args = 0..=1, default_missing_value = "true")]
    pub insecure: bool,
    // ==== end security ====
    // ==== replication (issue 17) ====
    /// This node's id in a cluster (1, 2, ...; with `peers`). Unset: a single node, no
    /// replication.
    #[arg(long, env = "OBELISK_NODE_ID")]
    pub node_id: Option<u64>,
    /// Every node of the cluster, this one included, by node-to-node address:
    /// `1=IP:PORT,2=IP:PORT,...` (this node listens on its own entry).
    #[arg(long, env = "OBELISK_PEERS", default_value = "")]
    pub peers: String,
    /// Where this node listens for node-to-node traffic, when not on its own `peers` entry
    /// (which is then only the address the others are told, e.g. behind a proxy or NAT).
    #[arg(long, env = "OBELISK_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,
    /// How this node reaches some others, when not at their `peers` address:
    /// `2=IP:PORT,3=IP:PORT` (a proxy in between; the fault tests put theirs there).
    #[arg(long, env = "OBELISK_RAFT_VIA", default_value = "")]
    pub raft_via: String,
    /// Start as a new node of a running cluster: do not initialize a cluster of `peers`, wait
    /// to be added (`obelisk cluster add-node`) and catch up from the leader.
    #[arg(long, env = "OBELISK_JOIN", action = ArgAction::Set, default_value_t = false,
          num_args = 0..=1, default_missing_value = "true")]
    pub join: bool,
    /// Take a snapshot of the state machine every this many Raft log entries and purge the log
    /// behind it (keeping as many again for followers a little behind); 0: never.
    #[arg(long, env = "OBELISK_RAFT_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub raft_snapshot_every: u64,
    // ==== end replication (issue 17) ====
    // ==== formatv2 ====
    /// Write the on-disk format v1 (a frame per record) instead of v2 batches: only to compare
    /// the two (`obelisk bench --storage-format 1`) or to make v1 test data.
    #[arg(long, hide = true)]
    pub write_format_v1: bool,
    // ==== end formatv2 ====
}

impl Default for Config {
    /// The embedded defaults: the ones declared on the fields above, read by parsing an empty
    /// command line with the environment ignored.
    fn default() -> Self {
        let command = Self::augment_args(clap::Command::new("defaults").no_binary_name(true))
            .mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::empty::<&str>())
            .expect("every setting declares a default");
        Self::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

/// A configuration that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot combine the settings: {0}")]
    Combine(#[source] serde_json::Error),
    #[error("invalid setting {key} = {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A non-loopback listener without TLS and authentication (security).
    #[error("{0}")]
    Insecure(String),
    /// replication (issue 17): `node_id` and `peers` do not describe a cluster.
    #[error("{0}")]
    Cluster(String),
}

/// The settings after validation, ready to start a server with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub broker: BrokerConfig,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub grpc_addr: SocketAddr,
    pub tcp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub legacy_idle_timeout: Duration,
    pub legacy_max_connections: usize,
    /// The legacy listener's first-frame timeout (see `Config::handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// 0: derived from the open-file limit (see `server::descriptors`).
    pub fd_reserve: u64,
    /// TLS, authentication and ACL settings (security).
    pub security: SecuritySettings,
    /// replication (issue 17): this node's cluster, if it is one node of a cluster.
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

/// The security settings, checked (issue 15).
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// TLS on the gRPC and HTTP listeners.
    pub tls: Option<crate::server::tls::TlsFiles>,
    pub token_file: Option<PathBuf>,
    pub acl_file: PathBuf,
    pub legacy_principal: Option<String>,
    /// TLS on the legacy listener (needs `tls`).
    pub legacy_tls: bool,
    pub super_users: Vec<String>,
    /// Non-loopback listeners that lack TLS or authentication, allowed by `insecure`.
    pub insecure_listeners: Vec<String>,
}

impl SecuritySettings {
    /// Whether callers must authenticate: a token file or a client CA is configured.
    pub fn authentication(&self) -> bool {
        self.token_file.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }
}

impl Config {
    /// The security settings; refuses a non-loopback listener without TLS and authentication
    /// unless `insecure` is set.
    fn security(
        &self,
        grpc: SocketAddr,
        tcp: Option<SocketAddr>,
        http: Option<SocketAddr>,
    ) -> Result<SecuritySettings, ConfigError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(ConfigError::Invalid {
                    key: "tls_client_ca",
                    value: self
                        .tls_client_ca
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: "needs tls_cert and tls_key (client certificates are checked in TLS)",
                });
            }
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert",
                    value: String::new(),
                    reason: "tls_cert and tls_key go together",
                });
            }
        };
        if let Some(p) = &self.legacy_principal
            && (p.is_empty() || p.len() > crate::auth::acl::MAX_PRINCIPAL_LEN || p == "*")
        {
            return Err(ConfigError::Invalid {
                key: "legacy_principal",
                value: p.clone(),
                reason: "must be 1 to 255 bytes and not \"*\"",
            });
        }
        let mut settings = SecuritySettings {
            tls,
            token_file: self.auth_token_file.clone(),
            acl_file: self
                .acl_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join("acls.json")),
            legacy_principal: self.legacy_principal.clone(),
            legacy_tls: self.legacy_tls,
            super_users: self.super_users.clone(),
            insecure_listeners: Vec::new(),
        };
        if self.legacy_tls && settings.tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "legacy_tls",
                value: "true".into(),
                reason: "needs tls_cert and tls_key",
            });
        }
        let authenticated = settings.authentication();
        let secured = settings.tls.is_some() && authenticated;
        // The legacy protocol's original clients have no TLS: off loopback it needs legacy_tls.
        let listeners = [
            ("gRPC", Some(grpc), secured),
            ("HTTP", http, secured),
            ("legacy TCP", tcp, secured && self.legacy_tls),
        ];
        for (what, addr, ok) in listeners {
            if let Some(addr) = addr
                && !addr.ip().is_loopback()
                && !ok
            {
                settings
                    .insecure_listeners
                    .push(format!("{what} on {addr}"));
            }
        }
        if !settings.insecure_listeners.is_empty() && !self.insecure {
            return Err(ConfigError::Insecure(format!(
                "refusing to listen on {} without TLS and authentication: anyone who can reach \
                 it could read and write every topic. Set tls_cert and tls_key, and \
                 auth_token_file or tls_client_ca (and legacy_tls for the legacy TCP listener, or keep it \
                 on loopback or \"off\"), or pass --insecure to accept the risk",
                settings.insecure_listeners.join(", ")
            )));
        }
        Ok(settings)
    }
}

impl Config {
    /// replication (issue 17): the cluster settings, if `node_id` and `peers` are given. The
    /// node-to-node service has no TLS yet: an address off loopback needs `insecure`.
    fn cluster(
        &self,
        security: &mut SecuritySettings,
    ) -> Result<Option<crate::cluster::ClusterSettings>, ConfigError> {
        let peers = crate::cluster::settings::parse_peers(&self.peers).map_err(|reason| {
            ConfigError::Cluster(format!(
                "invalid setting peers = {:?}: {reason}",
                self.peers
            ))
        })?;
        let node_id = match (self.node_id, peers.is_empty()) {
            (None, true) => return Ok(None),
            (Some(id), false) => id,
            (None, false) => {
                return Err(ConfigError::Cluster(
                    "peers is set but node_id is not: give this node's id (--node-id)".into(),
                ));
            }
            (Some(_), true) => {
                return Err(ConfigError::Cluster(
                    "node_id is set but peers is not: list every node (--peers 1=IP:PORT,...)"
                        .into(),
                ));
            }
        };
        if !peers.contains_key(&node_id) {
            return Err(ConfigError::Cluster(format!(
                "node_id {node_id} is not in peers {:?}: list every node, this one included",
                self.peers
            )));
        }
        let off_loopback: Vec<String> = peers
            .iter()
            .chain(self.raft_listen.as_ref().map(|a| (&node_id, a)))
            .filter(|(_, a)| !a.ip().is_loopback())
            .map(|(id, a)| format!("cluster node {id} on {a}"))
            .collect();
        if !off_loopback.is_empty() {
            if !self.insecure {
                return Err(ConfigError::Insecure(format!(
                    "refusing node-to-node traffic off loopback ({}): it has no TLS or \
                     authentication yet; keep the cluster on loopback or pass --insecure",
                    off_loopback.join(", ")
                )));
            }
            security.insecure_listeners.extend(off_loopback);
        }
        let via = crate::cluster::settings::parse_peers(&self.raft_via).map_err(|reason| {
            ConfigError::Cluster(format!(
                "invalid setting raft_via = {:?}: {reason}",
                self.raft_via
            ))
        })?;
        Ok(Some(crate::cluster::ClusterSettings {
            node_id,
            peers,
            listen: self.raft_listen,
            via,
            join: self.join,
            snapshot_every: self.raft_snapshot_every,
        }))
    }

    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// The file cannot be read or holds unknown keys or wrong types.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The settings in force: the TOML file at `file` (if any) over the embedded defaults, then
    /// the settings named in `explicit` (those the environment or the command line gave) taken
    /// from `given`.
    ///
    /// # Errors
    /// The file cannot be read or parsed (see [`Config::from_file`]).
    pub fn layered<'a>(
        file: Option<&Path>,
        given: &Config,
        explicit: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        let base = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let fields = |c: &Config| -> Result<serde_json::Map<String, serde_json::Value>, _> {
            serde_json::to_value(c)
                .and_then(serde_json::from_value)
                .map_err(ConfigError::Combine)
        };
        let mut merged = fields(&base)?;
        let given = fields(given)?;
        for key in explicit {
            if let Some(value) = given.get(key) {
                merged.insert(key.to_string(), value.clone());
            }
        }
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(ConfigError::Combine)
    }

    /// Checks every setting and builds the parts' configurations.
    ///
    /// # Errors
    /// The first invalid setting, named with the reason.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        fn invalid(key: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
            ConfigError::Invalid {
                key,
                value: value.to_string(),
                reason,
            }
        }
        let addr = |key: &'static str, v: &str| -> Result<SocketAddr, ConfigError> {
            v.parse()
                .map_err(|_| invalid(key, v, "expected IP:PORT, e.g. 127.0.0.1:50051"))
        };
        let optional = |key: &'static str, v: &str| -> Result<Option<SocketAddr>, ConfigError> {
            if v.eq_ignore_ascii_case("off") {
                Ok(None)
            } else {
                addr(key, v).map(Some)
            }
        };
        let durability = match self.durability {
            DurabilityMode::Fsync => Durability::Fsync,
            DurabilityMode::Interval => {
                if self.fsync_interval_ms == 0 {
                    return Err(invalid("fsync_interval_ms", 0, "must be at least 1"));
                }
                Durability::Interval(Duration::from_millis(self.fsync_interval_ms))
            }
        };
        if self.default_partitions == 0 || self.default_partitions > 1024 {
            return Err(invalid(
                "default_partitions",
                self.default_partitions,
                "must be 1 to 1024",
            ));
        }
        if !(4096..=1 << 30).contains(&self.segment_bytes) {
            return Err(invalid(
                "segment_bytes",
                self.segment_bytes,
                "must be 4 KiB to 1 GiB",
            ));
        }
        if !(100..=3_600_000).contains(&self.group_session_timeout_ms) {
            return Err(invalid(
                "group_session_timeout_ms",
                self.group_session_timeout_ms,
                "must be 100 ms to 1 hour",
            ));
        }
        if self.open_segment_files == 0 {
            return Err(invalid(
                "open_segment_files",
                self.open_segment_files,
                "must be at least 1",
            ));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > 256 << 20 {
            return Err(invalid(
                "max_record_bytes",
                self.max_record_bytes,
                "must be 1 byte to 256 MiB",
            ));
        }
        if self.max_message_bytes < self.max_record_bytes {
            return Err(invalid(
                "max_message_bytes",
                self.max_message_bytes,
                "must be at least max_record_bytes",
            ));
        }
        if self.batch_max_records == 0 || self.batch_max_bytes == 0 {
            return Err(invalid(
                "batch_max_records",
                self.batch_max_records,
                "batch limits must be positive",
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", 0, "must be at least 1"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(invalid("max_concurrent_streams", 0, "must be at least 1"));
        }
        if self.request_timeout_ms == 0 {
            return Err(invalid("request_timeout_ms", 0, "must be at least 1"));
        }
        for (key, v) in [
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            (
                "connection_idle_timeout_ms",
                self.connection_idle_timeout_ms,
            ),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(key, 0, "must be at least 1"));
            }
        }
        let ms = Duration::from_millis;
        let or_default = |v: usize| if v == 0 { self.max_connections } else { v };
        let keepalive_interval =
            (self.keepalive_interval_ms > 0).then(|| ms(self.keepalive_interval_ms));
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "", "must not be empty"));
        }
        let broker = BrokerConfig {
            data_dir: self.data_dir.clone(),
            durability,
            default_partitions: self.default_partitions,
            auto_create_topics: self.auto_create_topics,
            default_retention_ms: self.retention_ms,
            default_retention_bytes: self.retention_bytes,
            segment_bytes: self.segment_bytes,
            ring_buffer_bytes: self.ring_buffer_bytes,
            open_segment_files: self.open_segment_files,
            batch: BatchConfig {
                max_records: self.batch_max_records,
                max_bytes: self.batch_max_bytes,
                linger: Duration::from_millis(self.linger_ms),
                fsync_writer: match self.fsync_writer {
                    FsyncWriterMode::Thread => FsyncWriter::Thread,
                    FsyncWriterMode::Task => FsyncWriter::Task,
                },
            },
            max_record_bytes: self.max_record_bytes,
            group_session_timeout: Duration::from_millis(self.group_session_timeout_ms),
            write_v1: self.write_format_v1,
            ..BrokerConfig::default()
        };
        let grpc = GrpcConfig {
            max_message_bytes: self.max_message_bytes,
            max_connections: self.max_connections,
            max_concurrent_streams: self.max_concurrent_streams,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            handshake_timeout: ms(self.handshake_timeout_ms),
            idle_timeout: ms(self.connection_idle_timeout_ms),
            keepalive_interval,
            keepalive_timeout: ms(self.keepalive_timeout_ms),
        };
        let http = HttpConfig {
            body_limit_bytes: HttpConfig::body_limit_for(self.max_record_bytes),
            max_connections: or_default(self.max_http_connections),
            handshake_timeout: ms(self.handshake_timeout_ms),
            idle_timeout: ms(self.connection_idle_timeout_ms),
            keepalive_interval,
            keepalive_timeout: ms(self.keepalive_timeout_ms),
            probes_require_auth: self.probes_require_auth,
            ..HttpConfig::default()
        };
        let grpc_addr = addr("grpc_addr", &self.grpc_addr)?;
        let tcp_addr = optional("tcp_addr", &self.tcp_addr)?;
        let http_addr = optional("http_addr", &self.http_addr)?;
        let mut security = self.security(grpc_addr, tcp_addr, http_addr)?;
        let cluster = self.cluster(&mut security)?;
        Ok(Validated {
            cluster,
            broker,
            grpc,
            http,
            grpc_addr,
            tcp_addr,
            http_addr,
            security,
            legacy_idle_timeout: Duration::from_millis(self.legacy_idle_timeout_ms.max(1)),
            legacy_max_connections: or_default(self.max_legacy_connections),
            handshake_timeout: ms(self.handshake_timeout_ms),
            fd_reserve: self.fd_reserve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_need_both_node_id_and_peers_and_stay_on_loopback() {
        assert!(Config::default().validate().unwrap().cluster.is_none());
        let peers = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003".to_string();
        let c = Config {
            node_id: Some(2),
            peers: peers.clone(),
            ..Config::default()
        };
        let cluster = c.validate().unwrap().cluster.unwrap();
        assert_eq!((cluster.node_id, cluster.peers.len()), (2, 3));
        assert_eq!(cluster.listen_addr().to_string(), "127.0.0.1:7002");
        assert_eq!(cluster.route(3, "127.0.0.1:7003"), "127.0.0.1:7003");
        let c = Config {
            node_id: Some(2),
            peers: peers.clone(),
            raft_listen: Some("127.0.0.1:9002".parse().unwrap()),
            raft_via: "3=127.0.0.1:9103".into(),
            ..Config::default()
        };
        let cluster = c.validate().unwrap().cluster.unwrap();
        assert_eq!(cluster.listen_addr().to_string(), "127.0.0.1:9002");
        assert_eq!(cluster.route(3, "127.0.0.1:7003"), "127.0.0.1:9103");
        assert_eq!(cluster.route(1, "127.0.0.1:7001"), "127.0.0.1:7001");
        let bad = Config {
            node_id: Some(2),
            peers: peers.clone(),
            raft_via: "3=nowhere".into(),
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("raft_via"));
        for (node_id, peers, why) in [
            (None, peers.clone(), "node_id is not"),
            (Some(1), String::new(), "peers is not"),
            (Some(4), peers.clone(), "not in peers"),
            (Some(1), "1=10.0.0.1:7001".to_string(), "--insecure"),
            (Some(1), "1=nowhere".to_string(), "IP:PORT"),
        ] {
            let err = Config {
                node_id,
                peers,
                ..Config::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let v = Config::default().validate().unwrap();
        assert_eq!(v.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(v.tcp_addr.unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(v.http_addr.unwrap().to_string(), "127.0.0.1:8081");
        assert_eq!(v.broker.durability, Durability::Fsync);
        assert_eq!(v.broker.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obelisk.toml");
        std::fs::write(&path, "durability = \"interval\"\ntcp_addr = \"off\"\n").unwrap();
        let c = Config::from_file(&path).unwrap();
        let v = c.validate().unwrap();
        assert!(matches!(v.broker.durability, Durability::Interval(_)));
        assert!(v.tcp_addr.is_none());
        std::fs::write(&path, "durabilty = \"fsync\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("durabilty"), "{err}");
    }

    #[test]
    fn the_fsync_writer_defaults_to_a_thread_and_the_file_can_ask_for_the_task() {
        let v = Config::default().validate().unwrap();
        assert_eq!(v.broker.batch.fsync_writer, FsyncWriter::Thread);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obelisk.toml");
        std::fs::write(&path, "fsync_writer = \"task\"\n").unwrap();
        let v = Config::from_file(&path).unwrap().validate().unwrap();
        assert_eq!(v.broker.batch.fsync_writer, FsyncWriter::Task);
        std::fs::write(&path, "fsync_writer = \"pool\"\n").unwrap();
        assert!(
            Config::from_file(&path).is_err(),
            "an unknown writer is refused"
        );
    }

    #[test]
    fn connection_settings_default_to_max_connections_and_reject_zero_timeouts() {
        let v = Config {
            max_connections: 7,
            max_http_connections: 3,
            keepalive_interval_ms: 0,
            ..Config::default()
        }
        .validate()
        .unwrap();
        assert_eq!(v.grpc.max_connections, 7);
        assert_eq!(v.legacy_max_connections, 7, "0 means max_connections");
        assert_eq!(v.http.max_connections, 3);
        assert_eq!(v.grpc.keepalive_interval, None, "0 turns pings off");
        assert_eq!(v.http.keepalive_interval, None);
        let c = Config {
            handshake_timeout_ms: 0,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("handshake_timeout_ms"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obelisk.toml");
        std::fs::write(&path, "durability = \"sometimes\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("durability") && err.contains("fsync"), "{err}");
        let c = Config {
            grpc_addr: "localhost".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("grpc_addr"));
        let c = Config {
            default_partitions: 0,
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting default_partitions = \"0\": must be 1 to 1024"
        );
    }

    #[test]
    fn embedded_defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.durability, DurabilityMode::Fsync);
        assert_eq!(c.fsync_interval_ms, 100);
        assert_eq!(c.default_partitions, 4);
        assert!(c.auto_create_topics);
        assert_eq!(c.segment_bytes, 64 << 20);
        assert_eq!(c.ring_buffer_bytes, 4 << 20);
        assert_eq!((c.batch_max_records, c.batch_max_bytes), (10_000, 4 << 20));
        assert_eq!(c.max_record_bytes, 10 << 20);
        assert_eq!(c.max_message_bytes, 64 << 20);
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.max_concurrent_streams, 256);
        assert_eq!(c.request_timeout_ms, 30_000);
        assert_eq!(c.legacy_idle_timeout_ms, 300_000);
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Text, "info")
        );
    }

    #[test]
    fn explicit_settings_win_over_the_file_and_the_rest_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obelisk.toml");
        std::fs::write(
            &path,
            "durability = \"interval\"\nlinger_ms = 7\nsegment_bytes = 8192\n",
        )
        .unwrap();
        let given = Config {
            linger_ms: 3,
            durability: DurabilityMode::Fsync,
            ..Config::default()
        };
        // Only linger_ms was given: the file's durability stays, though `given` holds the default.
        let c = Config::layered(Some(&path), &given, ["linger_ms"]).unwrap();
        assert_eq!(c.linger_ms, 3);
        assert_eq!(c.durability, DurabilityMode::Interval);
        assert_eq!(c.segment_bytes, 8192);
        assert_eq!(c.max_connections, 1024);
        let c = Config::layered(None, &given, ["linger_ms", "durability"]).unwrap();
        assert_eq!((c.linger_ms, c.durability), (3, DurabilityMode::Fsync));
        assert_eq!(c.segment_bytes, 64 << 20);
    }
}
