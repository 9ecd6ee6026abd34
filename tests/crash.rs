//! Crash safety of the built binary: clients record every acknowledgement under load over gRPC,
//! the server is killed with SIGKILL at a random moment, restarted on the same data directory, and
//! every acknowledged record must be readable.

mod ports;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use obelisk::client::{self, BrokerClient};
use obelisk::proto as pb;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use ports::free_port;

/// Upper bound for anything these tests wait for, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `obelisk serve` and the address its gRPC listener bound.
struct Server {
    child: Child,
    grpc_addr: SocketAddr,
}

impl Server {
    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

async fn spawn_server(dir: &Path) -> Server {
    spawn_server_with_legacy(dir, None).await
}

/// Starts the binary on `dir` with gRPC on port 0, and returns once it logged that gRPC is
/// listening (after recovery), with the address it bound. Its log is read to the end by a thread
/// of its own, so the child never blocks on a full pipe.
async fn spawn_server_with_legacy(dir: &Path, legacy: Option<u16>) -> Server {
    let tcp = legacy.map_or("off".to_string(), |p| format!("127.0.0.1:{p}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_obelisk"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--tcp-addr",
            &tcp,
            "--http-addr",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("OBELISK_LOG_LEVEL", "warn,obelisk::server=info")
        .env("OBELISK_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the obelisk binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "gRPC listening"
                && let Some(addr) = event["fields"]["grpc_addr"].as_str()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.parse::<SocketAddr>().expect("a socket address"));
            }
        }
    });
    let grpc_addr = tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("the server starts in time")
        .expect("the server logs its gRPC address before exiting");
    Server { child, grpc_addr }
}

/// Connects to a server that is listening, and checks it is serving.
async fn connect(server: &Server) -> BrokerClient<Channel> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let addr = format!("http://{}", server.grpc_addr);
    let channel = tonic::transport::Endpoint::from_shared(addr.clone())
        .unwrap()
        .connect()
        .await
        .expect("connects");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "obelisk.v1.Broker".into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(
        status,
        ServingStatus::Serving as i32,
        "serving once listening"
    );
    client::connect(&addr).await.expect("client connects")
}

/// Counts acknowledgements, so the kill can wait for a number of them rather than for a time.
#[derive(Clone)]
struct AckCount(Arc<tokio::sync::watch::Sender<usize>>);

impl AckCount {
    fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }

    fn add(&self, n: usize) {
        self.0.send_modify(|count| *count += n);
    }

    async fn reached(&self, n: usize) {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(PATIENCE, rx.wait_for(|count| *count >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} acknowledgements in time"))
            .expect("the counter lives");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let acked: Arc<Mutex<Vec<(u32, u64, Bytes)>>> = Arc::default();
    for round in 0..3 {
        let server = spawn_server(dir.path()).await;
        let client = connect(&server).await;
        let count = AckCount::new();
        let mut producers = Vec::new();
        for p in 0..4 {
            let mut c = client.clone();
            let acked = Arc::clone(&acked);
            let count = count.clone();
            producers.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let records: Vec<pb::ProducerRecord> = (0..20)
                        .map(|k| pb::ProducerRecord {
                            key: Bytes::from(format!("producer-{p}")),
                            value: Bytes::from(format!("r{round}-p{p}-{i}-{k}")),
                            ..Default::default()
                        })
                        .collect();
                    let values: Vec<Bytes> = records.iter().map(|r| r.value.clone()).collect();
                    let Ok(resp) = c
                        .produce(pb::ProduceRequest {
                            topic: "crash".into(),
                            records,
                            idempotence: None,
                        })
                        .await
                    else {
                        return; // The server died: unacknowledged, so nothing is owed.
                    };
                    let acks = resp.into_inner().acks;
                    let n = acks.len();
                    let mut a = acked.lock().unwrap();
                    for (ack, v) in acks.into_iter().zip(values) {
                        a.push((ack.partition, ack.offset, v));
                    }
                    drop(a);
                    count.add(n);
                }
            }));
        }
        // SIGKILL at a random moment: after a random number of acknowledgements, while the
        // producers are mid-flight.
        count.reached(rng.gen_range(20..4000)).await;
        server.kill();
        for p in producers {
            p.await.unwrap();
        }

        let server = spawn_server(dir.path()).await;
        let mut c = connect(&server).await;
        let acked_now = acked.lock().unwrap().clone();
        assert!(
            !acked_now.is_empty(),
            "round {round}: no acks before the kill"
        );
        let stored = read_all(&mut c).await;
        for (partition, offset, value) in &acked_now {
            let got = stored
                .get(*partition as usize)
                .and_then(|p| p.get(*offset as usize));
            assert_eq!(
                got,
                Some(value),
                "round {round}: acked {partition}/{offset} lost or changed"
            );
        }
        server.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_oks_survive_kill_9() {
    use obelisk::legacy::LegacyClient;
    use obelisk::legacy::codec::{Message, Reply};
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut oked: Vec<Bytes> = Vec::new();
    for round in 0..3 {
        let legacy = free_port();
        let server = spawn_server_with_legacy(dir.path(), Some(legacy)).await;
        let _ready = connect(&server).await;
        let count = AckCount::new();
        let mut conns = Vec::new();
        for conn in 0..4 {
            // Each connection pipelines frames and records, in order, which ones were OK'd.
            let client = LegacyClient::connect(("127.0.0.1", legacy)).await.unwrap();
            let (mut writer, mut reader) = client.into_split();
            let values: Vec<Bytes> = (0..200_000)
                .map(|i| Bytes::from(format!("legacy-r{round}-c{conn}-{i}")))
                .collect();
            let to_send = values.clone();
            let count = count.clone();
            let write = tokio::spawn(async move {
                for (i, value) in to_send.into_iter().enumerate() {
                    let m = Message {
                        timestamp: i as i64,
                        topic: Bytes::from_static(b"legacy-crash"),
                        key: Bytes::from(format!("c{conn}")),
                        value,
                    };
                    if writer.write_message(&m).await.is_err() {
                        return;
                    }
                    if i % 64 == 63 && writer.flush().await.is_err() {
                        return;
                    }
                }
                let _ = writer.flush().await;
            });
            let read = tokio::spawn(async move {
                let mut ok = Vec::new();
                for value in values {
                    match reader.expect_reply().await {
                        Ok(Reply::Ok) => {
                            ok.push(value);
                            count.add(1);
                        }
                        Ok(other) => panic!("unexpected reply {other:?}"),
                        Err(_) => break, // The server died.
                    }
                }
                ok
            });
            conns.push((write, read));
        }
        // SIGKILL after a random number of OKs, with frames still in flight.
        count.reached(rng.gen_range(100..20_000)).await;
        server.kill();
        let before = oked.len();
        for (write, read) in conns {
            write.abort();
            oked.extend(read.await.unwrap());
        }
        assert!(oked.len() > before, "round {round}: no OK before the kill");

        let server = spawn_server(dir.path()).await;
        let mut c = connect(&server).await;
        let stored: std::collections::HashSet<Bytes> = read_all_of(&mut c, "legacy-crash")
            .await
            .into_iter()
            .flatten()
            .collect();
        for v in &oked {
            assert!(stored.contains(v), "round {round}: OK'd record {v:?} lost");
        }
        server.kill();
    }
}

/// Every record of every partition of the topic, by partition and offset.
async fn read_all(c: &mut BrokerClient<Channel>) -> Vec<Vec<Bytes>> {
    read_all_of(c, "crash").await
}

async fn read_all_of(c: &mut BrokerClient<Channel>, name: &str) -> Vec<Vec<Bytes>> {
    let topic = c
        .describe_topic(pb::DescribeTopicRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    let mut out = Vec::new();
    for p in topic.partitions {
        let mut values = Vec::new();
        while (values.len() as u64) < p.log_end_offset {
            let resp = c
                .fetch(pb::FetchRequest {
                    topic: name.into(),
                    partition: p.partition,
                    offset: values.len() as u64,
                    max_records: 10_000,
                    max_bytes: 8 << 20,
                    max_wait_ms: 0,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(!resp.records.is_empty());
            for r in resp.records {
                assert_eq!(r.offset, values.len() as u64, "offsets are dense");
                values.push(r.value);
            }
        }
        out.push(values);
    }
    out
}
