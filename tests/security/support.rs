//! A secured server in-process (TLS with throwaway certificates, a token file, ACLs) and clients
//! for each protocol: gRPC over TLS with a token, HTTPS with hyper over tokio-rustls, legacy TCP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use obelisk::auth::tokens;
use obelisk::client::{Client, ConnectOptions};
use obelisk::config::Config;
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use obelisk::server::devcert::{self, DevCerts};
use rustls::pki_types::ServerName;
use serde_json::Value;

/// Tokens written to the token file, by principal.
pub const ALICE: &str = "alice-token";
pub const BOB: &str = "bob-token";
pub const ROOT: &str = "root-token";

pub struct Secure {
    pub server: RunningServer,
    pub certs: DevCerts,
    pub config: Config,
    pub dir: tempfile::TempDir,
}

/// A config with TLS, tokens for alice, bob and root (a super user), every listener on
/// loopback ephemeral ports, the legacy listener acting as `legacy`.
pub fn secure_config(dir: &Path, certs: &DevCerts) -> Config {
    let tokens = dir.join("tokens");
    let lines = [
        tokens::line_for(ALICE, "alice"),
        tokens::line_for(BOB, "bob"),
        tokens::line_for(ROOT, "root"),
    ];
    std::fs::write(&tokens, lines.join("\n")).expect("token file");
    Config {
        data_dir: dir.join("data"),
        grpc_addr: "127.0.0.1:0".into(),
        tcp_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        log_level: "warn".into(),
        tls_cert: Some(certs.server_cert.clone()),
        tls_key: Some(certs.server_key.clone()),
        auth_token_file: Some(tokens),
        legacy_principal: Some("legacy".into()),
        super_users: vec!["root".into()],
        ..Config::default()
    }
}

impl Secure {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = devcert::write(&dir.path().join("certs"), &["carol", "dave"]).expect("certs");
        let mut config = secure_config(dir.path(), &certs);
        tune(&mut config);
        let server = obelisk::server::start(config.validate().expect("valid config"))
            .await
            .expect("server starts");
        Self {
            server,
            certs,
            config,
            dir,
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("https://{}", self.server.grpc_addr)
    }

    pub fn options(&self, token: Option<&str>) -> ConnectOptions {
        ConnectOptions {
            ca: Some(self.certs.ca.clone()),
            token: token.map(str::to_string),
            ..ConnectOptions::default()
        }
    }

    /// A gRPC client over TLS with `token`.
    pub async fn grpc(&self, token: Option<&str>) -> Client {
        obelisk::client::connect_with(&self.grpc_url(), &self.options(token))
            .await
            .expect("TLS client connects")
    }

    /// The super user's client (under mTLS with dave's certificate: the token names root).
    pub async fn root(&self) -> Client {
        let mut options = self.options(Some(ROOT));
        if self.config.tls_client_ca.is_some() {
            let (_, cert, key) = self.certs.clients.last().expect("a client cert").clone();
            options.cert = Some(cert);
            options.key = Some(key);
        }
        obelisk::client::connect_with(&self.grpc_url(), &options)
            .await
            .expect("TLS client connects")
    }

    /// Adds an ACL as root.
    pub async fn allow(&self, acl: pb::AclRule) {
        self.root()
            .await
            .add_acl(pb::AddAclRequest { acl: Some(acl) })
            .await
            .expect("root adds an ACL");
    }

    /// Records stored in `topic` (as root), 0 when it does not exist.
    pub async fn stored(&self, topic: &str) -> u64 {
        match self
            .root()
            .await
            .describe_topic(pb::DescribeTopicRequest { name: topic.into() })
            .await
        {
            Ok(r) => r
                .into_inner()
                .topic
                .map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| p.log_end_offset - p.log_start_offset)
                        .sum()
                })
                .unwrap_or(0),
            Err(s) if s.code() == tonic::Code::NotFound => 0,
            Err(s) => panic!("describe as root: {s}"),
        }
    }

    pub async fn https(&self) -> Https {
        Https::new(
            &self.certs.ca,
            self.server.http_addr.expect("http on"),
            None,
        )
    }
}

pub fn acl(
    principal: &str,
    kind: pb::AclResourceType,
    name: &str,
    pattern: pb::AclPattern,
    op: pb::AclOperation,
    effect: pb::AclEffect,
) -> pb::AclRule {
    pb::AclRule {
        principal: principal.into(),
        resource_type: kind as i32,
        name: name.into(),
        pattern: pattern as i32,
        operation: op as i32,
        effect: effect as i32,
    }
}

/// `principal` may `op` the topic `name` (literal).
pub fn allow_topic(principal: &str, name: &str, op: pb::AclOperation) -> pb::AclRule {
    acl(
        principal,
        pb::AclResourceType::Topic,
        name,
        pb::AclPattern::Literal,
        op,
        pb::AclEffect::Allow,
    )
}

pub fn record(value: &str) -> pb::ProducerRecord {
    pb::ProducerRecord {
        key: Bytes::from_static(b"k"),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..Default::default()
    }
}

pub fn produce(topic: &str, value: &str) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        records: vec![record(value)],
        idempotence: None,
    }
}

/// An HTTPS client: a new TLS connection per request.
pub struct Https {
    pub addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub json: Value,
}

pub fn client_config(ca: &Path, identity: Option<(&PathBuf, &PathBuf)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
    }
}

impl Https {
    pub fn new(
        ca: &Path,
        addr: std::net::SocketAddr,
        identity: Option<(&PathBuf, &PathBuf)>,
    ) -> Self {
        let mut config = client_config(ca, identity);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            addr,
            config: Arc::new(config),
        }
    }

    /// A TLS handshake with the server (`Err`: it failed).
    pub async fn handshake(
        &self,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await?;
        // TLS 1.3 reports a refused client certificate only with the first read: probe it.
        use tokio::io::AsyncWriteExt;
        tls.flush().await?;
        Ok(tls)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> HttpReply {
        let tls = self.handshake().await.expect("TLS handshake");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("http handshake");
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let resp = send
            .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        HttpReply {
            status,
            headers,
            json,
        }
    }
}
