//! Finding the broker: `--server` / `OBELISK_SERVER`, and connecting to it.

use clap::Args;
use tonic::transport::Channel;

use crate::client::{self, BrokerClient, ClientError};

/// Where the broker is, shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The broker's gRPC address; "host:port" means "http://host:port".
    #[arg(
        long,
        env = "OBELISK_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// gRPC transport compression of requests and responses: gzip or zstd (default: none).
    #[arg(long, env = "OBELISK_GRPC_COMPRESSION", global = true)]
    pub grpc_compression: Option<client::TransportCompression>,
}

impl ServerArgs {
    /// Connects to the broker.
    ///
    /// # Errors
    /// "cannot reach the broker at …" when the address is malformed or nothing answers there.
    pub async fn connect(&self) -> anyhow::Result<BrokerClient<Channel>> {
        let c = client::connect(&normalize(&self.server)).await?;
        Ok(match self.grpc_compression {
            Some(t) => client::compressed(c, t),
            None => c,
        })
    }
}

/// The reply of a unary call, or its status as a [`ClientError`], which prints as
/// `Code: message` (tonic's own `Status` display carries metadata nobody asked for).
///
/// # Errors
/// The broker's status.
pub fn reply<T>(res: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ClientError> {
    res.map(tonic::Response::into_inner)
        .map_err(ClientError::from)
}

/// Adds `http://` to an address given without a scheme.
pub fn normalize(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(super::normalize("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(super::normalize("https://x:1"), "https://x:1");
    }
}
