//! Finding the broker: `--server` / `OBELISK_SERVER`, and connecting to it.

use std::path::PathBuf;

use clap::Args;

use crate::client::{self, Client, ClientError, ConnectOptions};

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
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// TLS and authentication of a client command (security, issue 15).
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// PEM CA certificate to trust for the broker's TLS certificate (turns TLS on).
    #[arg(
        id = "tls_ca",
        long = "ca",
        value_name = "PATH",
        env = "OBELISK_CA",
        global = true
    )]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for a broker that requires one (mTLS; with --cert-key).
    #[arg(
        id = "tls_cert",
        long = "cert",
        value_name = "PATH",
        env = "OBELISK_CERT",
        global = true
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert (`--key` is the record key of `produce`).
    #[arg(
        id = "tls_key",
        long = "cert-key",
        value_name = "PATH",
        env = "OBELISK_KEY",
        global = true
    )]
    pub key: Option<PathBuf>,
    /// Bearer token (see `obelisk token new`).
    #[arg(
        id = "auth_token",
        long = "token",
        env = "OBELISK_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl SecurityArgs {
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            token: self.token.clone(),
            // The CLI does not route: a cluster follower forwards its writes (issue 17).
            forward: true,
        }
    }
}

impl ServerArgs {
    /// Connects to the broker, with TLS and a token when given.
    ///
    /// # Errors
    /// "cannot reach the broker at …" when the address is malformed or nothing answers there.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let c = client::connect_with(&normalize(&self.server), &self.security.options()).await?;
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
