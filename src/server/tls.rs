//! TLS for the listeners (rustls, with ring as the one crypto provider): the server certificate
//! and key come from PEM files and are reloaded without a restart (on SIGHUP, and when either
//! file changes; see [`watch`]): a resolver swaps the certified key, so new connections get the
//! new certificate and open ones keep theirs. With a client CA, every client must present a
//! certificate it signed (mTLS), and the certificate's name becomes the connection's principal
//! ([`principal_of`]: the subject CN, else the first DNS SAN).
//!
//! Accepted connections ([`super::connections::Connection`]) go through [`secure`], which runs
//! each TLS handshake on its own task within the handshake timeout and yields [`Secured`]
//! streams, plain or TLS, for tonic and hyper alike.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::connections::{Activity, Connection};

/// How often the certificate and key files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// ALPN for gRPC (HTTP/2 only).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for the HTTP listener (HTTP/2 or HTTP/1.1).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What TLS is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error("the certificate file", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("the certificate file", path, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "the certificate file",
            path,
            "no certificate in it",
        ));
    }
    Ok(certs)
}

fn load_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error("the key file", &files.key, e))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error("the key file", &files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        file_error(
            "the key file",
            &files.key,
            format!("{e} (does it belong to the certificate?)"),
        )
    })?;
    Ok(certified)
}

fn modified(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

/// The server certificate in force, swapped when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCert {
    /// Loads the certificate and key.
    ///
    /// # Errors
    /// A file cannot be read or parsed, or the key does not match the certificate.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        let seen = modified(&files);
        let key = load_key(&files, &provider)?;
        Ok(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        })
    }

    /// Reads the files again and swaps the certificate; on an error the old one stays.
    ///
    /// # Errors
    /// As [`ReloadingCert::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = modified(&self.files);
        let key = load_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        Ok(())
    }

    /// Reloads if either file's modification time changed since the last load. Returns whether
    /// it reloaded.
    ///
    /// # Errors
    /// As [`ReloadingCert::load`] (the next change is tried again).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = modified(&self.files);
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// A TLS acceptor for one listener, sharing the reloading certificate.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    /// Client certificates are required (and give the principal).
    pub mutual: bool,
}

/// The same acceptor (the same TLS settings object), not equal settings.
impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(self.acceptor.config(), other.acceptor.config())
    }
}

impl Eq for Tls {}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("mutual", &self.mutual).finish()
    }
}

impl Tls {
    /// An acceptor offering `alpn`, presenting `cert`, and verifying client certificates
    /// against `files.client_ca` if set.
    ///
    /// # Errors
    /// The CA file cannot be read, or rustls refuses the settings.
    pub fn new(cert: &Arc<ReloadingCert>, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let provider = Arc::clone(&cert.provider);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let builder = match &cert.files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| file_error("the client CA file", ca, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Setup(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(cert) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            mutual: cert.files.client_ca.is_some(),
        })
    }
}

impl Tls {
    /// Runs the TLS handshake of `io` within `timeout`; `None` (logged at debug and counted as a
    /// connection error of `protocol`) when it fails. Returns the stream and, under mTLS, the
    /// client certificate's principal.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
        protocol: &'static str,
    ) -> Option<(tokio_rustls::server::TlsStream<IO>, Option<Arc<str>>)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = match tokio::time::timeout(timeout, self.acceptor.accept(io)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(protocol, error = %e, "TLS handshake failed");
                crate::metrics::connection_error(protocol, "tls_handshake");
                return None;
            }
            Err(_) => {
                tracing::debug!(protocol, "TLS handshake timeout");
                crate::metrics::connection_error(protocol, "handshake_timeout");
                return None;
            }
        };
        let principal = if self.mutual {
            stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(principal_of)
        } else {
            None
        };
        Some((stream, principal))
    }
}

/// The principal named by a client certificate: its subject's common name, or else its first
/// DNS subject alternative name.
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Some(cn) = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
    {
        return Some(Arc::from(cn));
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(d) | GeneralName::RFC822Name(d) | GeneralName::URI(d) => {
            Some(Arc::from(*d))
        }
        _ => None,
    })
}

/// An admitted connection, in the clear or over TLS.
pub enum Secured {
    Plain(Connection),
    Tls {
        stream: Box<tokio_rustls::server::TlsStream<Connection>>,
        /// The verified client certificate's principal (mTLS).
        principal: Option<Arc<str>>,
    },
}

impl Secured {
    fn connection(&self) -> &Connection {
        match self {
            Self::Plain(c) => c,
            Self::Tls { stream, .. } => stream.get_ref().0,
        }
    }

    pub fn peer(&self) -> std::net::SocketAddr {
        self.connection().peer()
    }

    pub fn activity(&self) -> &Arc<Activity> {
        self.connection().activity()
    }

    /// The client certificate's principal, under mTLS.
    pub fn principal(&self) -> Option<&Arc<str>> {
        match self {
            Self::Plain(_) => None,
            Self::Tls { principal, .. } => principal.as_ref(),
        }
    }
}

impl AsyncRead for Secured {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Self::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Secured {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Self::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Self::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(c) => c.is_write_vectored(),
            Self::Tls { stream, .. } => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_flush(cx),
            Self::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Self::Tls { stream, .. } => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Turns admitted connections into [`Secured`] ones: as they are without `tls`, else each after
/// its TLS handshake (on its own task, within `handshake_timeout`; a failed or late handshake is
/// logged at debug, counted as a `tls_handshake` connection error, and closed).
pub fn secure(
    mut admitted: mpsc::Receiver<Connection>,
    tls: Option<Tls>,
    protocol: &'static str,
    handshake_timeout: Duration,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Secured> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = admitted.recv() => match c {
                    Some(c) => c,
                    None => break,
                },
                () = tx.closed() => break,
            };
            let Some(tls) = &tls else {
                if tx.send(Secured::Plain(conn)).await.is_err() {
                    break;
                }
                continue;
            };
            let (tls, tx, shutdown) = (tls.clone(), tx.clone(), shutdown.clone());
            tokio::spawn(async move {
                let accepted = tokio::select! {
                    r = tls.accept(conn, handshake_timeout, protocol) => r,
                    () = shutdown.cancelled() => return,
                };
                let Some((stream, principal)) = accepted else {
                    return;
                };
                let _ = tx
                    .send(Secured::Tls {
                        stream: Box::new(stream),
                        principal,
                    })
                    .await;
            });
        }
    });
    rx
}

/// Something reloadable from files (the certificate, the token file).
pub trait Reload: Send + Sync {
    /// What it is, for the log.
    fn what(&self) -> &'static str;
    /// Reloads if its files changed (`force`: in any case). Returns whether it reloaded.
    ///
    /// # Errors
    /// What was wrong with the files (the old state stays).
    fn reload(&self, force: bool) -> Result<bool, String>;
}

impl Reload for ReloadingCert {
    fn what(&self) -> &'static str {
        "TLS certificate"
    }
    fn reload(&self, force: bool) -> Result<bool, String> {
        if force {
            ReloadingCert::reload(self).map(|()| true)
        } else {
            self.reload_if_changed()
        }
        .map_err(|e| e.to_string())
    }
}

/// Reloads `items` when their files change (checked every `every`) and on SIGHUP, until
/// `shutdown` fires. Failures are logged and the old state kept.
pub async fn watch(items: Vec<Arc<dyn Reload>>, every: Duration, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let force = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            () = hangup => true,
        };
        for item in &items {
            match item.reload(force) {
                Ok(true) => tracing::info!(what = item.what(), "reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(what = item.what(), error = %e, "reload failed; keeping the old one")
                }
            }
        }
    }
}

/// The token file of the broker's security, reloaded when it changes.
pub struct TokenReload {
    security: Arc<crate::auth::Security>,
    seen: Mutex<Option<SystemTime>>,
}

impl TokenReload {
    /// `None` when `security` has no token file.
    pub fn new(security: Arc<crate::auth::Security>) -> Option<Self> {
        let path = security.tokens()?.path().to_path_buf();
        let seen = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Some(Self {
            security,
            seen: Mutex::new(seen),
        })
    }
}

impl Reload for TokenReload {
    fn what(&self) -> &'static str {
        "token file"
    }
    fn reload(&self, force: bool) -> Result<bool, String> {
        let Some(tokens) = self.security.tokens() else {
            return Ok(false);
        };
        let now = std::fs::metadata(tokens.path())
            .and_then(|m| m.modified())
            .ok();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !force && *seen == now {
            return Ok(false);
        }
        // Marked seen only once it loaded: a half-written file is tried again on the next tick.
        tokens.reload().map_err(|e| e.to_string())?;
        *seen = now;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(cn: Option<&str>, sans: &[&str]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(
            sans.iter().map(|s| (*s).to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_principal_is_the_common_name_else_the_first_san() {
        assert_eq!(
            principal_of(&der(Some("carol"), &["x.example"])).as_deref(),
            Some("carol")
        );
        assert_eq!(
            principal_of(&der(None, &["svc.example", "b"])).as_deref(),
            Some("svc.example")
        );
        assert_eq!(principal_of(&der(None, &[])), None);
        assert_eq!(principal_of(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn a_key_that_does_not_match_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let certs = super::super::devcert::write(dir.path(), &[]).unwrap();
        let files = TlsFiles {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: None,
        };
        let cert = ReloadingCert::load(files).unwrap();
        let before = cert.current.read().unwrap().cert[0].clone();
        let other = super::super::devcert::DevCa::new("other").unwrap();
        let (_, key) = other.issue("localhost", &["localhost"], true).unwrap();
        std::fs::write(&certs.server_key, key).unwrap();
        let err = cert.reload().unwrap_err().to_string();
        assert!(err.contains("key"), "{err}");
        assert_eq!(cert.current.read().unwrap().cert[0], before);
        assert!(
            ReloadingCert::load(TlsFiles {
                cert: dir.path().join("missing.pem"),
                key: certs.server_key,
                client_ca: None,
            })
            .unwrap_err()
            .to_string()
            .contains("missing.pem")
        );
    }
}
