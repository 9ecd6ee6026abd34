//! formatv2: the idempotent producer. InitProducer, retries answered with the original offsets,
//! gaps and older epochs refused, the state surviving restarts and segment rolls; and an ack lost
//! on the way back (a proxy that drops the broker's answer and cuts the connection) retried by
//! the Rust client's producer and stored once, also when the broker restarts before the retry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use obelisk::client::{self, BrokerClient, Producer, ProducerConfig};
use obelisk::proto as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic::transport::Channel;

use super::common::server::TestServer;
use super::record;

fn request(
    topic: &str,
    values: &[&str],
    producer: (i64, i32),
    sequence: i32,
) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        records: values
            .iter()
            .map(|v| pb::ProducerRecord {
                partition: Some(0),
                ..record("", v)
            })
            .collect(),
        idempotence: Some(pb::IdempotentProduce {
            producer_id: producer.0,
            producer_epoch: producer.1,
            sequences: HashMap::from([(0, sequence)]),
        }),
    }
}

async fn offsets(
    c: &mut BrokerClient<Channel>,
    req: pb::ProduceRequest,
) -> Result<Vec<u64>, tonic::Status> {
    Ok(c.produce(req)
        .await?
        .into_inner()
        .acks
        .iter()
        .map(|a| a.offset)
        .collect())
}

async fn log_end(c: &mut BrokerClient<Channel>, topic: &str) -> u64 {
    c.describe_topic(pb::DescribeTopicRequest { name: topic.into() })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap()
        .partitions[0]
        .log_end_offset
}

async fn init(c: &mut BrokerClient<Channel>, id: Option<i64>) -> (i64, i32) {
    let g = c
        .init_producer(pb::InitProducerRequest { producer_id: id })
        .await
        .unwrap()
        .into_inner();
    (g.producer_id, g.producer_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_with_the_original_offsets_gaps_and_old_epochs_are_refused() {
    let mut s = TestServer::start_with(|c| c.segment_bytes = 4096).await;
    s.create_topic("t", Some(1)).await;
    let p = init(&mut s.client, None).await;
    assert_eq!(p.1, 0);
    let a = request("t", &["a0", "a1", "a2"], p, 0);
    assert_eq!(offsets(&mut s.client, a.clone()).await.unwrap(), [0, 1, 2]);
    assert_eq!(offsets(&mut s.client, a.clone()).await.unwrap(), [0, 1, 2]);
    let b = request("t", &["b0", "b1"], p, 3);
    assert_eq!(offsets(&mut s.client, b.clone()).await.unwrap(), [3, 4]);
    assert_eq!(offsets(&mut s.client, a.clone()).await.unwrap(), [0, 1, 2]);
    assert_eq!(
        log_end(&mut s.client, "t").await,
        5,
        "retries are not stored"
    );

    let gap = offsets(&mut s.client, request("t", &["x"], p, 9))
        .await
        .unwrap_err();
    assert_eq!(gap.code(), Code::FailedPrecondition, "{gap:?}");
    assert!(gap.message().contains("expected 5"), "{}", gap.message());
    assert_eq!(
        gap.metadata()
            .get("obelisk-expected-sequence")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let unknown = offsets(&mut s.client, request("t", &["x"], (999, 0), 0))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");

    // Many more batches, so the partition rolls segments (and snapshots the producers' state).
    let mut seq = 5;
    let mut last = None;
    let value = "v".repeat(200);
    for _ in 0..60 {
        let req = request("t", &[&value, &value], p, seq);
        last = Some((req.clone(), offsets(&mut s.client, req).await.unwrap()));
        seq += 2;
    }
    let (last_req, last_offsets) = last.unwrap();
    let end = log_end(&mut s.client, "t").await;
    let partition_dir = s.dir.path().join("topics/t/0");
    let snapshots = std::fs::read_dir(&partition_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".producers")
        })
        .count();
    assert!(snapshots >= 1, "a roll writes a snapshot");

    // After a restart the broker still knows the last batches.
    let mut s = s.restart().await;
    assert_eq!(
        offsets(&mut s.client, last_req.clone()).await.unwrap(),
        last_offsets
    );
    assert_eq!(log_end(&mut s.client, "t").await, end);
    let next = request("t", &["n"], p, seq);
    assert_eq!(offsets(&mut s.client, next).await.unwrap(), [end]);

    // A new epoch fences the old one.
    let p1 = init(&mut s.client, Some(p.0)).await;
    assert_eq!(p1, (p.0, 1));
    let fenced = offsets(&mut s.client, request("t", &["old"], p, seq + 1))
        .await
        .unwrap_err();
    assert_eq!(fenced.code(), Code::FailedPrecondition);
    assert!(fenced.message().contains("fenced"), "{}", fenced.message());
    assert_eq!(
        offsets(&mut s.client, request("t", &["new"], p1, 0))
            .await
            .unwrap(),
        [end + 1]
    );
    // Ids are durable: a new producer after a restart gets a new id.
    let mut s = s.restart().await;
    assert_ne!(init(&mut s.client, None).await.0, p.0);
    s.stop().await;
}

/// A TCP proxy to the broker that, once armed, drops the first gRPC message the broker sends
/// back (an HTTP/2 DATA frame: the ack of a batch it has stored) and cuts the connection.
struct AckDropper {
    addr: SocketAddr,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl AckDropper {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            target: Arc::new(std::sync::Mutex::new(target)),
            armed: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicUsize::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let (target, armed, dropped, connections) = (
            Arc::clone(&proxy.target),
            Arc::clone(&proxy.armed),
            Arc::clone(&proxy.dropped),
            Arc::clone(&proxy.connections),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                let Ok(server) = TcpStream::connect(to).await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&armed),
                    Arc::clone(&dropped),
                ));
            }
        });
        proxy
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
    });
    // Broker to client, frame by frame (the broker sends no preface, only frames).
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    'relay: while let Ok(n) = sr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..9 + len).collect();
            let is_data = frame[3] == 0 && len > 0;
            if is_data && armed.swap(false, Ordering::SeqCst) {
                dropped.fetch_add(1, Ordering::SeqCst);
                break 'relay;
            }
            if cw.write_all(&frame).await.is_err() {
                break 'relay;
            }
        }
    }
    up.abort();
    let _ = cw.shutdown().await;
}

async fn read_values(c: &mut BrokerClient<Channel>, topic: &str) -> Vec<String> {
    let records = c
        .fetch(pb::FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            max_records: 1000,
            max_bytes: 0,
            max_wait_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    records
        .iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect()
}

async fn send(producer: &Producer, value: &str) -> u64 {
    let ack = producer.send("t", record("k", value)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), ack)
        .await
        .expect("acknowledged in time")
        .expect("ack arrives")
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ack_is_retried_by_the_producer_and_stored_once_also_over_a_restart() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(1)).await;
    let proxy = AckDropper::start(s.server.grpc_addr).await;
    let via_proxy = client::connect(&format!("http://{}", proxy.addr))
        .await
        .unwrap();
    let config = ProducerConfig {
        linger: Duration::ZERO,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(via_proxy, config).await.unwrap();
    assert_eq!(send(&producer, "first").await, 0);

    // The broker stores "second", its ack is dropped and the connection cut: the producer
    // reconnects and sends it again, and the broker answers with the offset it stored it at.
    proxy.armed.store(true, Ordering::SeqCst);
    assert_eq!(send(&producer, "second").await, 1);
    assert_eq!(
        proxy.dropped.load(Ordering::SeqCst),
        1,
        "an ack was dropped"
    );
    assert!(
        proxy.connections.load(Ordering::SeqCst) >= 2,
        "it reconnected"
    );
    assert_eq!(send(&producer, "third").await, 2);
    assert_eq!(
        read_values(&mut s.client, "t").await,
        ["first", "second", "third"]
    );

    // Now the broker restarts between storing a batch and the retry.
    proxy.armed.store(true, Ordering::SeqCst);
    let ack = producer.send("t", record("k", "fourth")).await.unwrap();
    super::common::wait::until("the ack is dropped", || {
        proxy.dropped.load(Ordering::SeqCst) == 2
    })
    .await;
    let mut s = s.restart().await;
    *proxy.target.lock().unwrap() = s.server.grpc_addr;
    let got = tokio::time::timeout(Duration::from_secs(60), ack)
        .await
        .expect("acknowledged in time")
        .expect("ack arrives")
        .expect("stored");
    assert_eq!(got.offset, 3);
    assert_eq!(
        read_values(&mut s.client, "t").await,
        ["first", "second", "third", "fourth"],
        "every record stored once"
    );
    producer.close().await;
    s.stop().await;
}
