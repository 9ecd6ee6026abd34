//! Black-box tests of the legacy TCP listener over real sockets: the original's captured bytes
//! (`../shared/legacy/vectors.json`), what gets stored, pipelining, invalid topics, limits,
//! timeouts and shutdown.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use obelisk::broker::{Broker, BrokerConfig, FetchRequest, ReadLimits, Record};
use obelisk::legacy::codec::{MAX_FRAME_LEN, MESSAGE_HEADER_LEN, Message, Reply};
use obelisk::legacy::{LegacyClient, LegacyConfig, LegacyStats, serve};
use obelisk::storage::record::RECORD_OVERHEAD;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    broker: Broker,
    stats: Arc<LegacyStats>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(config: LegacyConfig) -> Self {
        Self::start_with(config, |_| {}).await
    }

    async fn start_with(config: LegacyConfig, tune: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker_config = BrokerConfig {
            data_dir: dir.path().join("data"),
            ..BrokerConfig::default()
        };
        tune(&mut broker_config);
        let broker = Broker::open(broker_config).await.expect("broker opens");
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

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Cancels the shutdown token and waits for `serve` to return, at most `limit`.
    async fn stop_serving(&mut self, limit: Duration) {
        self.shutdown.cancel();
        let task = self.task.take().expect("still serving");
        timeout(limit, task)
            .await
            .expect("serve returns in time")
            .expect("serve task")
            .expect("serve ok");
    }

    /// Stops serving (checking it stops promptly), then the broker.
    async fn stop(mut self) {
        if self.task.is_some() {
            self.stop_serving(PATIENCE).await;
        }
        self.broker.shutdown().await;
    }

    /// Every record of a partition, in offset order.
    async fn records(&self, topic: &str, partition: u32) -> Vec<Record> {
        let resp = self
            .broker
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

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }
}

fn vectors() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/legacy/vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors.json parses")
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {v}"))
}

fn message(topic: &str, key: &str, value: &[u8], timestamp: i64) -> Message {
    Message {
        timestamp,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value),
    }
}

fn frame(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode_frame(&mut out);
    out
}

/// Reads exactly `n` bytes (failing on EOF or after [`PATIENCE`]).
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .expect("reply bytes");
    buf
}

/// Reads until the server closes; returns what arrived. A reset counts as closed.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
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
async fn assert_open(stream: &mut TcpStream, context: &str) {
    let probe = frame(&message("vectors-edge", "probe", b"still open?", 1));
    stream.write_all(&probe).await.expect("write probe");
    assert_eq!(read_n(stream, 3).await, b"OK\n", "{context}: still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_every_message_vector_and_stores_it() {
    let server = Server::start(LegacyConfig::default()).await;
    let v = vectors();
    let messages = v["messages"].as_array().expect("messages");
    assert!(!messages.is_empty());
    // As the vectors were captured: one connection, each frame then its reply.
    let mut conn = server.connect().await;
    for m in messages {
        let name = str_of(m, "name");
        let reply = hex(str_of(m, "reply_hex"));
        conn.write_all(&hex(str_of(m, "framed_hex")))
            .await
            .expect("write");
        assert_eq!(read_n(&mut conn, reply.len()).await, reply, "{name}");
    }
    assert_open(&mut conn, "after the messages").await;

    // Stored: each message exactly once, with its key, value and timestamp, keyed ones in the
    // original's partition (fnv1a % 4), and in send order within a partition.
    let mut stored = Vec::new();
    for p in 0..4 {
        stored.push(server.records("vectors", p).await);
    }
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(total, messages.len());
    let mut last_index = [None::<usize>; 4];
    for m in messages {
        let name = str_of(m, "name");
        let key = hex(str_of(m, "key_hex"));
        let value = hex(str_of(m, "value_hex"));
        let ts = m["timestamp_unix_nano"].as_i64().expect("timestamp");
        let found: Vec<(usize, &Record)> = stored
            .iter()
            .enumerate()
            .flat_map(|(p, recs)| recs.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.timestamp == ts && r.key == key && r.value == value)
            .collect();
        assert_eq!(found.len(), 1, "{name} stored once");
        let (partition, record) = found[0];
        assert!(record.headers.is_empty());
        match m["partition_if_4_partitions"].as_u64() {
            Some(expected) => assert_eq!(partition as u64, expected, "{name}"),
            None => assert!(
                key.is_empty(),
                "{name}: only empty keys have no fixed partition"
            ),
        }
        // Offsets follow send order within the partition.
        let offset = record.offset as usize;
        if let Some(prev) = last_index[partition] {
            assert!(
                offset > prev,
                "{name} after the earlier one in partition {partition}"
            );
        }
        last_index[partition] = Some(offset);
    }
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_every_edge_case_vector() {
    let server = Server::start(LegacyConfig::default()).await;
    let v = vectors();
    let cases = v["edge_cases"].as_array().expect("edge_cases");
    assert!(!cases.is_empty());
    let before = tree(&server.data_dir());
    for case in cases {
        let name = str_of(case, "name");
        let mut conn = server.connect().await;
        let sent: Vec<Vec<u8>> = case["sent_hex_in_order"]
            .as_array()
            .expect("sent")
            .iter()
            .map(|s| hex(s.as_str().expect("hex")))
            .collect();
        let mut expected: Vec<u8> = case["replies_hex_in_order"]
            .as_array()
            .expect("replies")
            .iter()
            .flat_map(|s| hex(s.as_str().expect("hex")))
            .collect();
        if name == "empty_topic" {
            // Deliberate departure: the original replied OK to an empty topic and wrote the record
            // straight into its data directory. Obelisk refuses invalid topic names (see
            // docs/legacy-protocol.md), so the reply is NACK:INVALID_FORMAT.
            assert_eq!(expected, b"OK\n", "the original accepted it");
            expected = Reply::InvalidFormat.as_bytes().to_vec();
        }
        for bytes in &sent {
            conn.write_all(bytes).await.expect("write");
        }
        let state = str_of(case, "connection_state_after");
        if state.starts_with("client half-closed") {
            conn.shutdown().await.expect("half-close");
            assert_eq!(read_until_closed(&mut conn).await, expected, "{name}");
        } else if state.starts_with("closed by server") {
            assert_eq!(read_n(&mut conn, expected.len()).await, expected, "{name}");
            assert_eq!(read_until_closed(&mut conn).await, b"", "{name}: closed");
        } else {
            assert!(
                state.starts_with("still open"),
                "{name}: unknown state {state}"
            );
            assert_eq!(read_n(&mut conn, expected.len()).await, expected, "{name}");
            assert_open(&mut conn, name).await;
        }
    }
    // Trailing bytes inside a frame are dropped from the stored record, as the original did.
    let mut all = Vec::new();
    for p in 0..4 {
        all.extend(server.records("vectors-trailing", p).await);
    }
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key, b"t"[..]);
    assert_eq!(all[0].value, b"trailing bytes follow"[..]);
    // The empty topic created nothing: only the topics the cases name exist.
    let after = tree(&server.data_dir());
    let new: BTreeSet<_> = after.difference(&before).cloned().collect();
    assert!(
        new.iter()
            .all(|p| p.to_string_lossy().starts_with("topics/vectors-")),
        "unexpected files: {new:?}"
    );
    server.stop().await;
}

/// Every path under `dir`, relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pipelined_frames_are_answered_in_order() {
    const N: usize = 10_000;
    let server = Server::start(LegacyConfig::default()).await;
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    // Every frame is written before any reply is read.
    for i in 0..N {
        let m = message(
            "pipelined",
            &format!("key-{}", i % 16),
            &(i as u64).to_le_bytes(),
            i as i64,
        );
        client.writer().write_message(&m).await.expect("write");
    }
    client.writer().flush().await.expect("flush");
    for i in 0..N {
        let reply = timeout(PATIENCE, client.reader().expect_reply())
            .await
            .expect("reply in time")
            .expect("reply");
        assert_eq!(reply, Reply::Ok, "frame {i}");
    }
    // All stored, each partition in send order.
    let mut seen = 0;
    for p in 0..4 {
        let records = server.records("pipelined", p).await;
        let sent: Vec<u64> = records
            .iter()
            .map(|r| u64::from_le_bytes(r.value[..].try_into().expect("8-byte value")))
            .collect();
        let bad: Vec<_> = sent.windows(2).filter(|w| w[0] > w[1]).take(5).collect();
        assert!(bad.is_empty(), "partition {p} in order: {bad:?}");
        for r in &records {
            assert_eq!(
                r.timestamp as u64,
                u64::from_le_bytes(r.value[..].try_into().unwrap())
            );
        }
        seen += records.len();
    }
    assert_eq!(seen, N);
    // The frames reached the core together: fsyncs were shared (group commit).
    let (batches, records) = server
        .broker
        .partition_cores()
        .iter()
        .filter(|(t, _)| t == "pipelined")
        .fold((0, 0), |(b, r), (_, core)| {
            (
                b + core
                    .stats
                    .batches
                    .load(std::sync::atomic::Ordering::Relaxed),
                r + core
                    .stats
                    .records
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
        });
    assert_eq!(records, N as u64);
    assert!(
        batches * 4 <= records,
        "{batches} batches for {records} records"
    );
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topic_names_are_refused_without_touching_the_disk() {
    let server = Server::start(LegacyConfig::default()).await;
    let before = tree(&server.data_dir());
    let long = "x".repeat(250);
    let bad: Vec<&[u8]> = vec![
        b"",
        b".",
        b"..",
        b"../escape",
        b"a/b",
        b"/abs",
        b"with space",
        b"nul\0",
        b"\xff\xfe",
        "ключ".as_bytes(),
        long.as_bytes(),
    ];
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    for topic in bad {
        let m = Message {
            timestamp: 1,
            topic: Bytes::copy_from_slice(topic),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        let reply = client.produce(&m).await.expect("reply");
        assert_eq!(reply, Reply::InvalidFormat, "topic {topic:?}");
    }
    assert_eq!(tree(&server.data_dir()), before, "nothing written");
    assert!(!server.dir.path().join("escape").exists());
    // The connection is still usable.
    let ok = client
        .produce(&message("fine", "k", b"v", 1))
        .await
        .expect("reply");
    assert_eq!(ok, Reply::Ok);
    assert_eq!(server.stats.nacks(), 11);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_size_frame_is_stored_when_the_broker_allows_it() {
    // The broker's max_record_bytes counts its own 36 bytes of framing, so a 10 MiB legacy frame
    // needs a limit slightly above 10 MiB to be stored.
    let server = Server::start_with(LegacyConfig::default(), |c| {
        c.max_record_bytes = MAX_FRAME_LEN as usize + RECORD_OVERHEAD;
    })
    .await;
    let value = vec![b'v'; MAX_FRAME_LEN as usize - MESSAGE_HEADER_LEN - 3];
    let m = message("big", "", &value, 1);
    assert_eq!(m.encoded_len(), MAX_FRAME_LEN as usize);
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    let reply = timeout(PATIENCE, client.produce(&m))
        .await
        .expect("in time");
    assert_eq!(reply.expect("reply"), Reply::Ok);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() {
    let config = LegacyConfig {
        max_connections: 2,
        ..LegacyConfig::default()
    };
    let server = Server::start(config).await;
    let ok = message("limited", "k", b"v", 1);
    let mut first = LegacyClient::connect(server.addr).await.expect("connect");
    let mut second = LegacyClient::connect(server.addr).await.expect("connect");
    // Each got a reply, so each holds one of the two places.
    assert_eq!(first.produce(&ok).await.expect("reply"), Reply::Ok);
    assert_eq!(second.produce(&ok).await.expect("reply"), Reply::Ok);
    assert_eq!(server.stats.open_connections(), 2);

    let mut third = server.connect().await;
    assert_eq!(
        read_until_closed(&mut third).await,
        b"",
        "closed without a reply"
    );
    assert_eq!(server.stats.rejected_connections(), 1);

    // When one leaves, a new connection is served again.
    first.writer().shutdown().await.expect("half-close");
    assert_eq!(first.reader().read_reply().await.expect("eof"), None);
    let deadline = Instant::now() + PATIENCE;
    while server.stats.open_connections() > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed connection was never released"
        );
        tokio::task::yield_now().await;
    }
    let mut fourth = LegacyClient::connect(server.addr).await.expect("connect");
    assert_eq!(fourth.produce(&ok).await.expect("reply"), Reply::Ok);
    assert_eq!(server.stats.total_connections(), 3);
    drop((second, fourth));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_timeout() {
    let idle = Duration::from_millis(200);
    let config = LegacyConfig {
        idle_timeout: idle,
        ..LegacyConfig::default()
    };
    let server = Server::start(config).await;
    // Silent from the start.
    let started = Instant::now();
    let mut silent = server.connect().await;
    assert_eq!(read_until_closed(&mut silent).await, b"");
    assert!(started.elapsed() >= idle);
    // Silent after a frame: the reply comes, then the close.
    let mut client = server.connect().await;
    client
        .write_all(&frame(&message("idle", "k", b"v", 1)))
        .await
        .expect("write");
    assert_eq!(read_n(&mut client, 3).await, b"OK\n");
    let replied = Instant::now();
    assert_eq!(read_until_closed(&mut client).await, b"");
    assert!(replied.elapsed() + Duration::from_millis(50) >= idle);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_an_idle_client_is_prompt() {
    let server = Server::start(LegacyConfig::default()).await;
    let mut idle = LegacyClient::connect(server.addr).await.expect("connect");
    assert_eq!(
        idle.produce(&message("t", "k", b"v", 1))
            .await
            .expect("reply"),
        Reply::Ok
    );
    let mut server = server;
    // Idle connections close at once: well within a second, not after the idle timeout.
    server.stop_serving(Duration::from_secs(1)).await;
    assert_eq!(idle.reader().read_reply().await.expect("clean close"), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_is_in_flight_then_closes() {
    const N: usize = 2000;
    let server = Server::start(LegacyConfig::default()).await;
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    for i in 0..N {
        let m = message("draining", "", &(i as u64).to_le_bytes(), i as i64);
        client.writer().write_message(&m).await.expect("write");
    }
    client.writer().flush().await.expect("flush");
    // Wait until the server has answered at least one, so some are surely in flight.
    assert_eq!(
        client.reader().expect_reply().await.expect("reply"),
        Reply::Ok
    );
    let mut server = server;
    server.shutdown.cancel();
    let mut answered = 1;
    while let Some(reply) = timeout(PATIENCE, client.reader().read_reply())
        .await
        .expect("replies then close")
        .expect("clean close")
    {
        assert_eq!(
            reply,
            Reply::Ok,
            "only OKs: no frame is refused for the shutdown"
        );
        answered += 1;
    }
    assert!(answered <= N);
    server.stop_serving(PATIENCE).await;
    // Every acknowledged record is stored.
    let mut stored = 0;
    for p in 0..4 {
        stored += server.records("draining", p).await.len();
    }
    assert!(
        stored >= answered,
        "{stored} stored, {answered} acknowledged"
    );
    server.stop().await;
}
