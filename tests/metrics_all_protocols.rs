//! One whole server (gRPC, legacy TCP and HTTP on 127.0.0.1:0): records produced and consumed over
//! all three protocols, then `/metrics` scraped over HTTP must have moved by exactly what was done.
//! Alone in its test binary, so the process-wide series are exact.

mod common;
mod http_support;

use bytes::Bytes;
use http_support::parse_metrics;
use obelisk::legacy::LegacyClient;
use obelisk::legacy::codec::{Message, Reply};
use obelisk::proto as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_every_protocol_did() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.tcp_addr = "127.0.0.1:0".into();
    cfg.http_addr = "127.0.0.1:0".into();
    let server = common::start(cfg).await;
    let http_addr = server.http_addr.unwrap();
    let tcp_addr = server.tcp_addr.unwrap();
    let mut grpc = common::grpc_client(&server).await;
    grpc.create_topic(pb::CreateTopicRequest {
        name: "m".into(),
        config: Some(pb::TopicConfig {
            partitions: 1,
            retention_ms: 0,
            retention_bytes: 0,
            compression: 0,
        }),
    })
    .await
    .unwrap();

    let (code, page) = http(http_addr, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    let before = parse_metrics(&page);

    // gRPC: one produce of 2 records, one poll, one commit.
    let records = ["g1", "g2"]
        .iter()
        .map(|v| pb::ProducerRecord {
            value: Bytes::from(*v),
            ..Default::default()
        })
        .collect();
    grpc.produce(pb::ProduceRequest {
        topic: "m".into(),
        records,
        idempotence: None,
    })
    .await
    .unwrap();
    // Legacy TCP: 3 frames on one connection, and one refused frame (invalid topic).
    let mut legacy = LegacyClient::connect(tcp_addr).await.unwrap();
    let frame = |topic: &'static [u8], v: &'static [u8]| Message {
        timestamp: 1,
        topic: Bytes::from_static(topic),
        key: Bytes::new(),
        value: Bytes::from_static(v),
    };
    let replies = legacy
        .produce_pipelined(
            &[
                frame(b"m", b"l1"),
                frame(b"m", b"l2"),
                frame(b"m", b"l3"),
                frame(b"../x", b"bad"),
            ],
            8,
        )
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![Reply::Ok, Reply::Ok, Reply::Ok, Reply::InvalidFormat]
    );
    // HTTP: one produce of 1 record.
    let (code, body) = http(
        http_addr,
        "POST",
        "/topics/m/messages",
        r#"{"key":"h","value":"h1"}"#,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let polled = grpc
        .poll(pb::PollRequest {
            topic: "m".into(),
            group: "mg".into(),
            max_records: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let values: Vec<&[u8]> = polled.iter().map(|r| r.value.as_ref()).collect();
    assert_eq!(
        values,
        [&b"g1"[..], b"g2", b"l1", b"l2", b"l3", b"h1"],
        "one log, every protocol"
    );
    grpc.commit(pb::CommitRequest {
        topic: "m".into(),
        group: "mg".into(),
        offsets: vec![pb::PartitionOffset {
            partition: 0,
            offset: 4,
        }],
        ..Default::default()
    })
    .await
    .unwrap();

    let (code, page) = http(http_addr, "GET", "/metrics", "").await;
    assert_eq!(code, 200);
    let after = parse_metrics(&page);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let t = [("topic", "m")];
    assert_eq!(delta("obelisk_messages_stored_total", &t), 6.0);
    assert_eq!(delta("obelisk_messages_received_total", &t), 6.0);
    assert_eq!(
        delta(
            "obelisk_messages_failed_total",
            &[("topic", "<none>"), ("reason", "invalid_name")]
        ),
        1.0
    );
    let calls =
        |protocol: &'static str, call: &'static str| [("protocol", protocol), ("call", call)];
    for (protocol, call, n) in [
        ("grpc", "produce", 1.0),
        ("grpc", "poll", 1.0),
        ("grpc", "commit", 1.0),
        ("legacy", "produce", 4.0),
        ("http", "produce", 1.0),
    ] {
        assert_eq!(
            delta(
                "obelisk_request_duration_seconds_count",
                &calls(protocol, call)
            ),
            n,
            "{protocol} {call}"
        );
    }
    assert_eq!(
        delta(
            "obelisk_errors_total",
            &[("protocol", "legacy"), ("kind", "invalid_name")]
        ),
        1.0
    );
    assert_eq!(delta("obelisk_errors_total", &[("protocol", "grpc")]), 0.0);
    assert_eq!(
        delta("obelisk_connections_total", &[("protocol", "legacy")]),
        1.0
    );
    assert_eq!(
        after.value("obelisk_active_connections", &[("protocol", "legacy")]),
        1.0
    );
    assert!(after.value("obelisk_active_connections", &[("protocol", "grpc")]) >= 1.0);
    assert_eq!(
        after.value(
            "obelisk_log_end_offset",
            &[("topic", "m"), ("partition", "0")]
        ),
        6.0
    );
    let g = [("group", "mg"), ("topic", "m"), ("partition", "0")];
    assert_eq!(after.value("obelisk_consumer_committed_offset", &g), 4.0);
    assert_eq!(after.value("obelisk_consumer_lag_messages", &g), 2.0);
    assert_eq!(
        after.value("obelisk_component_health", &[("component", "tcp_server")]),
        1.0
    );
    assert_eq!(
        after.value("obelisk_component_health", &[("component", "grpc_server")]),
        1.0
    );
    drop(legacy);
    server.stop().await;
}
