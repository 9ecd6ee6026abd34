//! Shared by the connection fault tests: bounded waits, raw sockets and HTTP/1.1 requests, a gRPC
//! codec that sends arbitrary bytes, and the built binary in a child process (with a chosen
//! `RLIMIT_NOFILE`).
#![allow(dead_code)]

#[path = "../ports/mod.rs"]
mod ports;
pub use ports::free_port;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut};
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// How long any condition is waited for before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// Pause between two checks of a condition.
pub const POLL: Duration = Duration::from_millis(20);

pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub async fn silent_sockets(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connects"));
    }
    out
}

/// Reads until the peer closes (bounded by [`PATIENCE`]).
pub async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await {
        Ok(_) => out,
        Err(_) => panic!("the server never closed the connection (got {out:?})"),
    }
}

/// One HTTP/1.1 request on a new connection: status and JSON body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .await?;
    let raw = read_to_close(&mut s).await;
    Ok(parse_http(&raw))
}

pub fn parse_http(raw: &[u8]) -> (u16, Value) {
    let (code, body) = split_http(raw);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A whole HTTP/1.1 response: its status and its body (a chunked body is joined).
pub fn split_http(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (code, body.to_string());
    }
    let mut joined = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        joined.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (code, joined)
}

/// Sends raw bytes as the request message of a gRPC method, and decodes the reply as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

/// A gRPC client of `server` that sends and receives raw message bytes (with [`RawCodec`]).
pub async fn raw_grpc(server: &RunningServer) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc
}

pub async fn raw_call(server: &RunningServer, method: &str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = raw_grpc(server).await;
    let path = format!("/obelisk.v1.Broker/{method}").parse().unwrap();
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .expect_err("the server refuses the request")
}

/// A running `obelisk serve` and its listeners.
pub struct Child3 {
    pub child: Child,
    pub grpc: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
}

/// `obelisk serve` with every listener on, `nofile` as its soft and hard `RLIMIT_NOFILE` when
/// given, stderr captured.
pub fn spawn(dir: &std::path::Path, nofile: Option<u64>, extra: &[&str]) -> Child3 {
    let [grpc, tcp, http] =
        [free_port(), free_port(), free_port()].map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_obelisk"));
    cmd.args(["serve", "--grpc-addr", &grpc.to_string()])
        .args(["--tcp-addr", &tcp.to_string()])
        .args(["--http-addr", &http.to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env("OBELISK_LOG_LEVEL", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
    if let Some(n) = nofile {
        with_nofile(&mut cmd, n);
    }
    Child3 {
        child: cmd.spawn().expect("the obelisk binary starts"),
        grpc,
        tcp,
        http,
    }
}

#[allow(unsafe_code)]
fn with_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

pub async fn connect_child(c: &Child3) -> obelisk::client::BrokerClient<tonic::transport::Channel> {
    connect_when_served(c.grpc).await
}

/// A client connected to `addr` once a call there succeeds (bounded by [`PATIENCE`]).
pub async fn connect_when_served(
    addr: SocketAddr,
) -> obelisk::client::BrokerClient<tonic::transport::Channel> {
    let mut client = None;
    wait_until("a real client is served", async || {
        if client.is_none() {
            client = obelisk::client::connect(&format!("http://{addr}"))
                .await
                .ok();
        }
        match &mut client {
            Some(cl) => cl.list_topics(pb::ListTopicsRequest {}).await.is_ok(),
            None => false,
        }
    })
    .await;
    client.expect("connected")
}

pub fn sigterm(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    #[allow(unsafe_code)]
    // SAFETY: kill only sends a signal to our own child.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM sent");
}

pub async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not exit within {within:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
