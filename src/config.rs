//! Server configuration: embedded defaults, overridden by an optional TOML file, then by
//! `OBELISK_*` environment variables and `serve` flags (flags win; clap reads both), validated once
//! at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::broker::{BatchConfig, BrokerConfig, Durability};
use crate::grpc::GrpcConfig;
use crate::http::HttpConfig;
use crate::telemetry::LogFormat;

/// Everything `obelisk serve` can be told. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc_addr: String,
    /// The legacy binary protocol; "off" disables it.
    pub tcp_addr: String,
    /// Health, stats, REST and metrics; "off" disables it.
    pub http_addr: String,
    /// "fsync" (ack after fdatasync) or "interval" (ack after write, fsync every `fsync_interval_ms`).
    pub durability: String,
    pub fsync_interval_ms: u64,
    pub default_partitions: u32,
    pub auto_create_topics: bool,
    pub retention_ms: u64,
    pub retention_bytes: u64,
    pub segment_bytes: u64,
    pub ring_buffer_bytes: usize,
    pub batch_max_records: usize,
    pub batch_max_bytes: usize,
    pub linger_ms: u64,
    pub max_record_bytes: usize,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub request_timeout_ms: u64,
    pub legacy_idle_timeout_ms: u64,
    /// Connection limit of the legacy listener; 0: `max_connections`.
    pub max_legacy_connections: usize,
    /// Connection limit of the HTTP listener; 0: `max_connections`.
    pub max_http_connections: usize,
    /// A new connection must send its first bytes (HTTP/2: its preface) within this, in ms.
    pub handshake_timeout_ms: u64,
    /// gRPC and HTTP connections with no request in flight this long are closed, in ms.
    pub connection_idle_timeout_ms: u64,
    /// HTTP/2 keepalive ping interval on gRPC and HTTP, in ms; 0 turns pings off.
    pub keepalive_interval_ms: u64,
    /// A connection whose ping is not answered within this is closed, in ms.
    pub keepalive_timeout_ms: u64,
    /// File descriptors kept out of the connection budget (for segments and the rest); 0: a
    /// quarter of the open-file limit, at least 128.
    pub fd_reserve: u64,
    /// "text" or "json".
    pub log_format: LogFormat,
    /// A tracing filter such as "info" or "obelisk=debug"; RUST_LOG wins when set.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        let broker = BrokerConfig::default();
        let grpc = GrpcConfig::default();
        Self {
            data_dir: broker.data_dir,
            grpc_addr: "127.0.0.1:50051".into(),
            tcp_addr: "127.0.0.1:8080".into(),
            http_addr: "127.0.0.1:8081".into(),
            durability: "fsync".into(),
            fsync_interval_ms: 100,
            default_partitions: broker.default_partitions,
            auto_create_topics: broker.auto_create_topics,
            retention_ms: 0,
            retention_bytes: 0,
            segment_bytes: broker.segment_bytes,
            ring_buffer_bytes: broker.ring_buffer_bytes,
            batch_max_records: broker.batch.max_records,
            batch_max_bytes: broker.batch.max_bytes,
            linger_ms: 0,
            max_record_bytes: broker.max_record_bytes,
            max_message_bytes: grpc.max_message_bytes,
            max_connections: grpc.max_connections,
            max_concurrent_streams: grpc.max_concurrent_streams,
            request_timeout_ms: grpc.request_timeout.as_millis() as u64,
            legacy_idle_timeout_ms: 300_000,
            max_legacy_connections: 0,
            max_http_connections: 0,
            handshake_timeout_ms: grpc.handshake_timeout.as_millis() as u64,
            connection_idle_timeout_ms: grpc.idle_timeout.as_millis() as u64,
            keepalive_interval_ms: grpc.keepalive_interval.map_or(0, |d| d.as_millis() as u64),
            keepalive_timeout_ms: grpc.keepalive_timeout.as_millis() as u64,
            fd_reserve: 0,
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
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
    #[error("invalid setting {key} = {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
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
}

impl Config {
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
        let durability = match self.durability.as_str() {
            "fsync" => Durability::Fsync,
            "interval" => {
                if self.fsync_interval_ms == 0 {
                    return Err(invalid("fsync_interval_ms", 0, "must be at least 1"));
                }
                Durability::Interval(Duration::from_millis(self.fsync_interval_ms))
            }
            other => {
                return Err(invalid(
                    "durability",
                    other,
                    "expected \"fsync\" or \"interval\"",
                ));
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
            batch: BatchConfig {
                max_records: self.batch_max_records,
                max_bytes: self.batch_max_bytes,
                linger: Duration::from_millis(self.linger_ms),
            },
            max_record_bytes: self.max_record_bytes,
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
            ..HttpConfig::default()
        };
        Ok(Validated {
            broker,
            grpc,
            http,
            grpc_addr: addr("grpc_addr", &self.grpc_addr)?,
            tcp_addr: optional("tcp_addr", &self.tcp_addr)?,
            http_addr: optional("http_addr", &self.http_addr)?,
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
        let c = Config {
            durability: "sometimes".into(),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("durability") && err.contains("fsync"), "{err}");
        let c = Config {
            grpc_addr: "localhost".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("grpc_addr"));
    }
}
