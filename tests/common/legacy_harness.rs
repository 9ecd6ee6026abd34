//! The in-process server and helpers shared by the legacy protocol tests (`tests/legacy*.rs`):
//! a broker on a temp dir with `legacy::serve` on 127.0.0.1:0, the captured vectors, raw-socket
//! reads with time limits.
#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use obelisk::broker::{Broker, BrokerConfig, FetchRequest, ReadLimits, Record};
use obelisk::legacy::codec::Message;
use obelisk::legacy::{LegacyConfig, LegacyStats, serve};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for, so a bug fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Server {
    pub addr: SocketAddr,
    pub broker: Broker,
    pub stats: Arc<LegacyStats>,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(config: LegacyConfig) -> Self {
        Self::start_with(config, |_| {}).await
    }

    pub async fn start_with(config: LegacyConfig, tune: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker_config = BrokerConfig {
            data_dir: dir.path().join("data"),
            ..BrokerConfig::default()
        };
        tune(&mut broker_config);
        let broker =
            Broker::open(broker_config, &tokio::runtime::Handle::current()).expect("broker opens");
        // Bound before serving: connecting can never race the server's start.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(LegacyStats::new());
        let shutdown = CancellationToken::new();
        let task = Some(tokio::spawn(serve(
            listener,
            broker.clone(),
            config,
            Arc::clone(&stats),
            shutdown.clone(),
        )));
        Self {
            addr,
            broker,
            stats,
            shutdown,
            task,
            dir,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Cancels the shutdown token and waits for `serve` to return, at most `limit`.
    pub async fn stop_serving(&mut self, limit: Duration) {
        self.shutdown.cancel();
        let task = self.task.take().expect("still serving");
        timeout(limit, task)
            .await
            .expect("serve returns in time")
            .expect("serve task")
            .expect("serve ok");
    }

    /// Stops serving (checking it stops promptly), then the broker.
    pub async fn stop(mut self) {
        if self.task.is_some() {
            self.stop_serving(PATIENCE).await;
        }
        self.broker.shutdown().await;
    }

    /// Every record of a partition, in offset order.
    pub async fn records(&self, topic: &str, partition: u32) -> Vec<Record> {
        fetch_all(&self.broker, topic, partition).await
    }

    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }
}

/// Every record of a partition, in offset order.
pub async fn fetch_all(broker: &Broker, topic: &str, partition: u32) -> Vec<Record> {
    let resp = broker
        .fetch(FetchRequest {
            topic: topic.to_string(),
            partition,
            offset: 0,
            limits: ReadLimits {
                max_records: 1_000_000,
                max_bytes: 64 << 20,
                max_wait: Duration::ZERO,
            },
        })
        .await
        .expect("fetch");
    assert_eq!(
        resp.records.len() as u64,
        resp.log_end,
        "read the whole log"
    );
    resp.records
}

pub fn vectors() -> Value {
    // Captured from the original Go server; see tests/fixtures/legacy/README.md.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy/vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors.json parses")
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

pub fn message(topic: &str, key: &str, value: &[u8], timestamp: i64) -> Message {
    Message {
        timestamp,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value),
    }
}

pub fn frame(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode_frame(&mut out);
    out
}

/// Reads exactly `n` bytes (failing on EOF or after [`PATIENCE`]).
pub async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .expect("reply bytes");
    buf
}

/// Reads until the server closes; returns what arrived. A reset counts as closed.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    match timeout(PATIENCE, stream.read_to_end(&mut all)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "unexpected error: {e}"
        ),
        Err(_) => panic!("the server did not close the connection"),
    }
    all
}

/// Checks the connection is open and answering: a further valid frame gets `OK\n`, as the next
/// bytes on the connection.
pub async fn assert_open(stream: &mut TcpStream, context: &str) {
    let probe = frame(&message("vectors-edge", "probe", b"still open?", 1));
    stream.write_all(&probe).await.expect("write probe");
    assert_eq!(read_n(stream, 3).await, b"OK\n", "{context}: still open");
}

/// Every path under `dir`, relative to it.
pub fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}
