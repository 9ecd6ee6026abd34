//! The HTTP server over a real socket: a broker on a temp dir, the server bound to 127.0.0.1:0
//! in-process, records produced and consumed over REST, and `/metrics` checked to have moved by
//! exactly what was done. Alone in its test binary, so every global series is exact; then a
//! graceful shutdown with a client still connected.

mod http_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use http_support::parse_metrics;
use obelisk::broker::{Broker, BrokerConfig};
use obelisk::http::{HttpConfig, HttpState, router, serve};
use obelisk::status::ServerStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One request on a new connection (`Connection: close`): (status, body).
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("writes");
    stream.write_all(body.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

async fn json(addr: std::net::SocketAddr, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = request(addr, method, path, Some(&body)).await;
    (status, serde_json::from_str(&text).expect("JSON body"))
}

#[tokio::test]
async fn produce_and_consume_over_a_socket_and_metrics_move_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::open(
        BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        },
        &tokio::runtime::Handle::current(),
    )
    .expect("broker");
    let status = Arc::new(ServerStatus::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        router(HttpState::new(broker.clone(), Arc::clone(&status)).with_shutdown(shutdown.clone())),
        HttpConfig::default(),
        Arc::clone(&status),
        shutdown.clone(),
    ));

    let (code, page) = request(addr, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let before = parse_metrics(&page);

    // What is done between the two scrapes: 7 requests, each on its own connection.
    let (code, _) = json(
        addr,
        "POST",
        "/topics",
        json!({"name": "sock", "partitions": 2}),
    )
    .await;
    assert_eq!(code, 201);
    let sent: Vec<(u32, &str, &str)> = vec![(0, "k1", "first"), (1, "k2", "second")];
    for (p, k, v) in &sent {
        let (code, ack) = json(
            addr,
            "POST",
            "/topics/sock/messages",
            json!({"key": k, "value": v, "partition": p}),
        )
        .await;
        assert_eq!(code, 201, "{ack}");
        assert_eq!(ack["status"], "accepted");
    }
    let batch = [
        (0u32, "b1", "third"),
        (1, "b2", "fourth"),
        (1, "b3", "fifth"),
    ];
    let records: Vec<Value> = batch
        .iter()
        .map(|(p, k, v)| json!({"key": k, "value": v, "partition": p}))
        .collect();
    let (code, acks) = json(
        addr,
        "POST",
        "/topics/sock/messages",
        json!({ "records": records }),
    )
    .await;
    assert_eq!(code, 201, "{acks}");
    assert_eq!(
        acks["acks"],
        json!([{"partition": 0, "offset": 1}, {"partition": 1, "offset": 1}, {"partition": 1, "offset": 2}])
    );
    let (code, polled) = json(
        addr,
        "POST",
        "/topics/sock/poll",
        json!({"group": "sg", "max_records": 100}),
    )
    .await;
    assert_eq!(code, 200);
    let values: Vec<&str> = polled["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(values, ["first", "third", "second", "fourth", "fifth"]);
    let next = polled["next_offsets"].clone();
    assert_eq!(
        next,
        json!([{"partition": 0, "offset": 2}, {"partition": 1, "offset": 3}])
    );
    let (code, _) = json(
        addr,
        "POST",
        "/topics/sock/commit",
        json!({"group": "sg", "offsets": [{"partition": 1, "offset": 1}]}),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = request(
        addr,
        "POST",
        "/topics/bad%20name/messages",
        Some(&json!({"value": "x"})),
    )
    .await;
    assert_eq!(code, 400, "{body}");

    let (code, page) = request(addr, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    let after = parse_metrics(&page);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let t = [("topic", "sock")];

    // Records: 5 received and stored; one failed produce on a name that never becomes a label.
    assert_eq!(delta("obelisk_messages_received_total", &t), 5.0);
    assert_eq!(delta("obelisk_messages_stored_total", &t), 5.0);
    assert_eq!(
        delta(
            "obelisk_messages_failed_total",
            &[("topic", "<none>"), ("reason", "invalid_name")]
        ),
        1.0
    );
    assert!(!page.contains("bad name"), "no label for a bad topic name");
    // Batches: one per (request, partition) = 2 singles + 2 partitions of the batch; fsync mode.
    let per_partition: BTreeMap<u32, Vec<(&str, &str)>> =
        sent.iter()
            .chain(batch.iter())
            .fold(BTreeMap::new(), |mut m, (p, k, v)| {
                m.entry(*p).or_insert_with(Vec::new).push((*k, *v));
                m
            });
    // Stored as v2 batches (docs/storage.md): one per request and partition, 62 bytes of header,
    // and per record 5 bytes of varints (all short here: offset delta, timestamp delta, key and
    // value lengths, header count) with its key and value.
    let record_len = |k: &str, v: &str| (5 + k.len() + v.len()) as u64;
    let bytes = |p: u32| -> u64 {
        let singles: u64 = sent
            .iter()
            .filter(|(q, _, _)| *q == p)
            .map(|(_, k, v)| 62 + record_len(k, v))
            .sum();
        let in_batch: Vec<u64> = batch
            .iter()
            .filter(|(q, _, _)| *q == p)
            .map(|(_, k, v)| record_len(k, v))
            .collect();
        let of_batch = if in_batch.is_empty() {
            0
        } else {
            62 + in_batch.iter().sum::<u64>()
        };
        singles + of_batch
    };
    for p in [0u32, 1] {
        let l = [
            ("topic", "sock"),
            ("partition", if p == 0 { "0" } else { "1" }),
        ];
        assert_eq!(
            after.value("obelisk_disk_write_bytes_total", &l),
            bytes(p) as f64,
            "partition {p}"
        );
        assert_eq!(
            after.value("obelisk_log_size_bytes", &l),
            bytes(p) as f64,
            "partition {p}"
        );
        assert_eq!(
            after.value("obelisk_log_end_offset", &l),
            per_partition[&p].len() as f64
        );
        assert_eq!(after.value("obelisk_batch_flushes_total", &l), 2.0);
        assert_eq!(after.value("obelisk_disk_writes_total", &l), 2.0);
        assert_eq!(after.value("obelisk_fsyncs_total", &l), 2.0);
        assert_eq!(after.value("obelisk_log_segments", &l), 1.0);
        assert_eq!(after.value("obelisk_partition_read_only", &l), 0.0);
    }
    assert_eq!(delta("obelisk_batch_size_count", &[]), 4.0);
    assert_eq!(delta("obelisk_batch_size_sum", &[]), 5.0);
    assert_eq!(delta("obelisk_flush_duration_seconds_count", &[]), 4.0);
    assert_eq!(delta("obelisk_fsync_duration_seconds_count", &[]), 4.0);
    assert_eq!(delta("obelisk_records_per_fsync_sum", &[]), 5.0);
    assert_eq!(after.value("obelisk_buffer_messages", &t), 5.0);
    // The group committed partition 1 only.
    let g = |p: &'static str| [("group", "sg"), ("topic", "sock"), ("partition", p)];
    assert_eq!(
        after.value("obelisk_consumer_committed_offset", &g("1")),
        1.0
    );
    assert_eq!(after.value("obelisk_consumer_lag_messages", &g("1")), 2.0);
    assert_eq!(
        after.series("obelisk_consumer_lag_messages", &g("0")),
        0,
        "never committed"
    );
    // Requests by call, errors by kind, connections: the first scrape is counted once it has
    // answered, the second scrape's connection before it answers.
    let http = |call: &'static str| [("protocol", "http"), ("call", call)];
    for (call, n) in [
        ("create_topic", 1.0),
        ("produce", 4.0),
        ("poll", 1.0),
        ("commit", 1.0),
        ("metrics", 1.0),
    ] {
        assert_eq!(
            delta("obelisk_request_duration_seconds_count", &http(call)),
            n,
            "{call}"
        );
    }
    assert_eq!(
        delta(
            "obelisk_errors_total",
            &[("protocol", "http"), ("kind", "invalid_name")]
        ),
        1.0
    );
    assert_eq!(delta("obelisk_errors_total", &[("protocol", "http")]), 1.0);
    assert_eq!(
        delta("obelisk_connections_total", &[("protocol", "http")]),
        8.0
    );
    let active = after.value("obelisk_active_connections", &[("protocol", "http")]);
    assert!((1.0..=8.0).contains(&active), "{active}");
    assert_eq!(after.value("obelisk_health_status", &[]), 1.0);
    assert_eq!(
        after.value("obelisk_component_health", &[("component", "storage")]),
        1.0
    );

    // Graceful shutdown with an idle client connected: the server returns.
    let idle = TcpStream::connect(addr).await.expect("connects");
    shutdown.cancel();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    drop(idle);
    broker.shutdown().await;
}
