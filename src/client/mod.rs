//! A Rust client for Obelisk: the generated tonic client, plus a [`Producer`] (batching and linger
//! over ProduceStream, acks as futures), a [`Consumer`] (poll or subscribe, commit) and a
//! [`GroupConsumer`] (a member of a consumer group: the server assigns its partitions).

mod consumer;
mod group;
mod leader; // replication (issue 17)
mod producer;
mod secure;
mod shared; // shared groups (issue 14)
mod shared_stream; // shared groups (issue 14)

use tonic::transport::{Channel, Endpoint};

pub use crate::proto::broker_client::BrokerClient;
pub use consumer::Consumer;
pub use group::{GroupConfig, GroupConsumer, NoListener, Partition, RebalanceListener};
pub use leader::{LEADER_METADATA, LeaderClient, NOT_LEADER_METADATA, leader_hint}; // replication (issue 17)
pub use producer::{AckFuture, Producer, ProducerConfig};
pub use secure::{ConnectOptions, SecureChannel, Transport};
pub use shared::{SharedConsumer, settlement}; // shared groups (issue 14)
pub use shared_stream::{SharedEvent, SharedStream}; // shared groups (issue 14)

/// A client over a [`SecureChannel`] (what [`connect_with`] returns).
pub type Client = BrokerClient<SecureChannel>;

/// What went wrong talking to the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error.
    #[error("{code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    /// The broker could not be reached.
    #[error("cannot reach the broker at {addr}: {message}")]
    Connect { addr: String, message: String },
    /// The producer stopped before the record was acknowledged.
    #[error("the producer stopped before an acknowledgement arrived")]
    Closed,
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl ClientError {
    /// The gRPC code, when the broker answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            Self::Connect { .. } | Self::Closed => None,
        }
    }
}

/// gRPC transport compression a client can ask for (formatv2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCompression {
    Gzip,
    Zstd,
}

impl std::str::FromStr for TransportCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Self::Gzip),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!(
                "unknown transport compression {other:?} (expected gzip or zstd)"
            )),
        }
    }
}

/// `client` sending its requests compressed with `c`, and accepting compressed responses.
pub fn compressed<T: Transport>(
    client: BrokerClient<T>,
    c: TransportCompression,
) -> BrokerClient<T> {
    let encoding = match c {
        TransportCompression::Gzip => tonic::codec::CompressionEncoding::Gzip,
        TransportCompression::Zstd => tonic::codec::CompressionEncoding::Zstd,
    };
    client.send_compressed(encoding).accept_compressed(encoding)
}

/// Connects to a broker, e.g. `http://127.0.0.1:50051`.
///
/// # Errors
/// `Connect` when the address is malformed or nothing answers there.
pub async fn connect(addr: &str) -> Result<BrokerClient<Channel>, ClientError> {
    let channel = channel(addr, &ConnectOptions::default()).await?;
    Ok(BrokerClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

/// Connects to a broker with TLS and a token as `options` say (`http://` addresses become
/// `https://` when TLS is asked for).
///
/// # Errors
/// `Connect` when the address is malformed, a file cannot be read, the TLS handshake fails, or
/// nothing answers there.
pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
    let fail = |message: String| ClientError::Connect {
        addr: addr.to_string(),
        message,
    };
    let authorization = options.authorization().map_err(fail)?;
    let channel = channel(addr, options).await?;
    Ok(
        BrokerClient::new(SecureChannel::new(channel, authorization).forwarding(options.forward))
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
    )
}

async fn channel(addr: &str, options: &ConnectOptions) -> Result<Channel, ClientError> {
    let fail = |message: String| ClientError::Connect {
        addr: addr.to_string(),
        message,
    };
    let tls = options.tls(addr);
    let target = match addr.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => addr.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(target)
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    if tls {
        endpoint = endpoint
            .tls_config(options.tls_config().map_err(fail)?)
            .map_err(|e| fail(e.to_string()))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        // tonic's own message is "transport error"; the causes below it say what happened.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if causes.last() != Some(&text) {
                causes.push(text);
            }
            source = s.source();
        }
        fail(if causes.is_empty() {
            e.to_string()
        } else {
            causes.join(": ")
        })
    })?;
    Ok(channel)
}
