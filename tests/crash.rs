//! Crash safety of the built binary: clients record every acknowledgement under load over gRPC,
//! the server is killed with SIGKILL at a random moment, restarted on the same data directory, and
//! every acknowledged record must be readable.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use obelisk::client::{self, BrokerClient};
use obelisk::proto as pb;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(dir: &Path, port: u16) -> Child {
    spawn_server_with_legacy(dir, port, None)
}

fn spawn_server_with_legacy(dir: &Path, port: u16, legacy: Option<u16>) -> Child {
    let tcp = legacy.map_or("off".to_string(), |p| format!("127.0.0.1:{p}"));
    Command::new(env!("CARGO_BIN_EXE_obelisk"))
        .args([
            "serve",
            "--grpc-addr",
            &format!("127.0.0.1:{port}"),
            "--tcp-addr",
            &tcp,
            "--http-addr",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("OBELISK_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the obelisk binary starts")
}

/// Connects, retrying while the server starts (bounded).
/// Connects once the server has recovered (gRPC health SERVING), retrying while it starts
/// (bounded).
async fn connect(port: u16) -> BrokerClient<Channel> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let addr = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(addr.clone())
            .unwrap()
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let serving = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "obelisk.v1.Broker".into(),
                })
                .await
                .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
            if serving && let Ok(c) = client::connect(&addr).await {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let acked: Arc<Mutex<Vec<(u32, u64, Bytes)>>> = Arc::default();
    for round in 0..3 {
        let port = free_port();
        let mut server = spawn_server(dir.path(), port);
        let client = connect(port).await;
        let mut producers = Vec::new();
        for p in 0..4 {
            let mut c = client.clone();
            let acked = Arc::clone(&acked);
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
                        })
                        .await
                    else {
                        return; // The server died: unacknowledged, so nothing is owed.
                    };
                    let mut a = acked.lock().unwrap();
                    for (ack, v) in resp.into_inner().acks.into_iter().zip(values) {
                        a.push((ack.partition, ack.offset, v));
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1200))).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for p in producers {
            p.await.unwrap();
        }

        let port = free_port();
        let mut server = spawn_server(dir.path(), port);
        let mut c = connect(port).await;
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
        server.kill().unwrap();
        server.wait().unwrap();
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
        let (port, legacy) = (free_port(), free_port());
        let mut server = spawn_server_with_legacy(dir.path(), port, Some(legacy));
        let _ready = connect(port).await;
        let mut conns = Vec::new();
        for conn in 0..4 {
            // Each connection pipelines frames and records, in order, which ones were OK'd.
            let client = LegacyClient::connect(("127.0.0.1", legacy)).await.unwrap();
            let (mut writer, mut reader) = client.into_split();
            let values: Vec<Bytes> = (0..200_000)
                .map(|i| Bytes::from(format!("legacy-r{round}-c{conn}-{i}")))
                .collect();
            let to_send = values.clone();
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
                        Ok(Reply::Ok) => ok.push(value),
                        Ok(other) => panic!("unexpected reply {other:?}"),
                        Err(_) => break, // The server died.
                    }
                }
                ok
            });
            conns.push((write, read));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1200))).await;
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        let before = oked.len();
        for (write, read) in conns {
            write.abort();
            oked.extend(read.await.unwrap());
        }
        assert!(oked.len() > before, "round {round}: no OK before the kill");

        let port = free_port();
        let mut server = spawn_server(dir.path(), port);
        let mut c = connect(port).await;
        let stored: std::collections::HashSet<Bytes> = read_all_of(&mut c, "legacy-crash")
            .await
            .into_iter()
            .flatten()
            .collect();
        for v in &oked {
            assert!(stored.contains(v), "round {round}: OK'd record {v:?} lost");
        }
        server.kill().unwrap();
        server.wait().unwrap();
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
