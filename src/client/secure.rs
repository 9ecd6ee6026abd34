//! Connecting with TLS and a token (security, issue 15): [`ConnectOptions`] (a CA to trust, a
//! client certificate and key for mTLS, a bearer token) and [`SecureChannel`], a channel that
//! sends the token with every call. [`super::Producer`], [`super::Consumer`] and the generated
//! client work over it as over a plain [`Channel`] (both are a [`Transport`]).

use std::path::PathBuf;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::channel::ResponseFuture;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A channel the generated client and the producer and consumer can use.
pub trait Transport:
    tonic::client::GrpcService<
        Body,
        ResponseBody = Body,
        Error = tonic::transport::Error,
        Future = ResponseFuture,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl Transport for Channel {}
impl Transport for SecureChannel {}

/// How to reach a broker that has TLS or authentication on.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PEM CA certificate(s) to trust for the server's certificate (implies TLS).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for a broker that requires them (mTLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// replication (issue 17): ask a cluster follower to forward writes to the leader (the
    /// `obelisk-forward` header) instead of refusing them with the leader's address. For clients
    /// that do not route, such as the CLI; [`crate::client::LeaderClient`] routes instead.
    pub forward: bool,
}

impl ConnectOptions {
    /// The options named by `OBELISK_CA`, `OBELISK_CERT`, `OBELISK_KEY` and `OBELISK_TOKEN`
    /// (unset or empty: not given), as the CLI and the Python and TypeScript clients read them.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            ca: var("OBELISK_CA").map(PathBuf::from),
            cert: var("OBELISK_CERT").map(PathBuf::from),
            key: var("OBELISK_KEY").map(PathBuf::from),
            token: var("OBELISK_TOKEN").and_then(|t| t.into_string().ok()),
            forward: false,
        }
    }

    /// Whether TLS is used: the address says `https://`, or a CA or client certificate is given.
    pub fn tls(&self, addr: &str) -> bool {
        addr.starts_with("https://") || self.ca.is_some() || self.cert.is_some()
    }

    /// The TLS settings of the channel.
    ///
    /// # Errors
    /// A file cannot be read, or only one of cert and key is given.
    pub fn tls_config(&self) -> Result<ClientTlsConfig, String> {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let mut tls = ClientTlsConfig::new();
        match &self.ca {
            Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => tls = tls.with_enabled_roots(),
        }
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
            (None, None) => {}
            _ => return Err("a client certificate needs its key (--cert with --key)".into()),
        }
        Ok(tls)
    }

    /// The `authorization` value, checked once.
    ///
    /// # Errors
    /// The token holds characters a header cannot carry.
    pub fn authorization(&self) -> Result<Option<http::HeaderValue>, String> {
        self.token
            .as_ref()
            .map(|t| {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()
    }
}

/// A channel (plain or TLS) that adds the bearer token, and the forwarding request when asked,
/// to every request.
#[derive(Clone, Debug)]
pub struct SecureChannel {
    channel: Channel,
    authorization: Option<http::HeaderValue>,
    forward: bool,
}

impl SecureChannel {
    pub fn new(channel: Channel, authorization: Option<http::HeaderValue>) -> Self {
        Self {
            channel,
            authorization,
            forward: false,
        }
    }

    /// As [`ConnectOptions::forward`].
    #[must_use]
    pub fn forwarding(mut self, forward: bool) -> Self {
        self.forward = forward;
        self
    }
}

impl tower::Service<http::Request<Body>> for SecureChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Some(v) = &self.authorization {
            req.headers_mut()
                .insert(http::header::AUTHORIZATION, v.clone());
        }
        if self.forward {
            req.headers_mut().insert(
                http::HeaderName::from_static("obelisk-forward"),
                http::HeaderValue::from_static("1"),
            );
        }
        tower::Service::call(&mut self.channel, req)
    }
}
