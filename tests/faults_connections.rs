//! Faults at the connection level (issue 10, items 4, 5 and 9), injected over real sockets:
//! silent sockets filling each listener's limit, connections over the limit, idle HTTP/2
//! connections at SIGTERM, a child process with a low `RLIMIT_NOFILE`, and gRPC requests whose
//! message is malformed or too large. Waits are on conditions, bounded; no test asserts speed
//! except that SIGTERM ends the server well before the drain timeout.

mod common;
mod faults_support;

use std::time::Duration;

use bytes::Bytes;
use common::{grpc_client, start, test_config};
use faults_support::*;
use obelisk::config::Config;
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;

/// Everything on loopback port 0, with short connection timeouts.
fn config(dir: &std::path::Path) -> Config {
    Config {
        tcp_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        handshake_timeout_ms: 300,
        ..test_config(dir)
    }
}

async fn health(server: &RunningServer) -> Value {
    let addr = server.http_addr.expect("http on");
    let (code, body) = http_get(addr, "/health").await.expect("health answers");
    assert!(code == 200 || code == 503, "{code} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_fill_the_grpc_limit_then_a_real_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_connections: 4,
        ..config(dir.path())
    })
    .await;
    let mut silent = silent_sockets(server.grpc_addr, 4).await;
    wait_until("4 gRPC connections open", async || {
        server.status.grpc.open_connections() == 4
    })
    .await;

    // Over the limit: told so in HTTP/2 (SETTINGS, then GOAWAY with ENHANCE_YOUR_CALM), closed.
    let mut over = TcpStream::connect(server.grpc_addr).await.unwrap();
    let reply = read_to_close(&mut over).await;
    assert_eq!(
        &reply[..9],
        &[0, 0, 0, 4, 0, 0, 0, 0, 0],
        "a SETTINGS frame"
    );
    assert_eq!(reply[12], 7, "then a GOAWAY frame: {reply:?}");
    assert_eq!(&reply[22..26], &0xbu32.to_be_bytes(), "ENHANCE_YOUR_CALM");
    assert!(String::from_utf8_lossy(&reply[26..]).contains("too many connections"));
    assert!(server.status.grpc.refused_connections() >= 1);

    // The silent sockets are closed at their handshake timeout; then a real client is served.
    for s in &mut silent {
        assert_eq!(
            read_to_close(s).await,
            b"",
            "a silent socket gets nothing, then EOF"
        );
    }
    connect_when_served(server.grpc_addr).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_over_the_limit_fails_at_once_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_connections: 1,
        handshake_timeout_ms: 60_000,
        ..config(dir.path())
    })
    .await;
    let _silent = silent_sockets(server.grpc_addr, 1).await;
    wait_until("the one gRPC slot is taken", async || {
        server.status.grpc.open_connections() == 1
    })
    .await;
    // Lazily connected, so the refusal always surfaces on the call.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_lazy();
    let mut c = obelisk::client::BrokerClient::new(channel);
    let res = tokio::time::timeout(PATIENCE, c.list_topics(pb::ListTopicsRequest {}))
        .await
        .expect("the refused client is answered, not left hanging");
    let status = res.expect_err("a client over the limit is refused");
    // The error table's code for too many connections, with a reason.
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many connections"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_fill_the_http_limit_over_the_limit_gets_429_then_a_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_http_connections: 3,
        ..config(dir.path())
    })
    .await;
    let http = server.http_addr.unwrap();
    let mut silent = silent_sockets(http, 3).await;
    wait_until("3 HTTP connections open", async || {
        server.status.http.open_connections() == 3
    })
    .await;
    let (code, body) = http_get(http, "/health").await.unwrap();
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["error"]["code"], "overloaded", "the code of every 429");

    for s in &mut silent {
        assert_eq!(read_to_close(s).await, b"");
    }
    wait_until("an HTTP client is served", async || {
        matches!(http_get(http, "/health/live").await, Ok((200, _)))
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_fill_the_legacy_limit_over_the_limit_gets_a_nack_then_a_client_is_served() {
    use obelisk::legacy::LegacyClient;
    use obelisk::legacy::codec::{Message, Reply};
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_legacy_connections: 2,
        ..config(dir.path())
    })
    .await;
    let tcp = server.tcp_addr.unwrap();
    let mut silent = silent_sockets(tcp, 2).await;
    wait_until("2 legacy connections open", async || {
        server.status.legacy.open_connections() == 2
    })
    .await;
    let mut over = TcpStream::connect(tcp).await.unwrap();
    assert_eq!(read_to_close(&mut over).await, b"NACK:PUBLISH_FAILED\n");

    for s in &mut silent {
        assert_eq!(
            read_to_close(s).await,
            b"",
            "closed at the first-frame timeout"
        );
    }
    let message = Message {
        topic: Bytes::from_static(b"legacy-limit"),
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        timestamp: 1,
    };
    // Until the server let go of the silent sockets, a client may still be refused (NACK).
    wait_until("a legacy client is served", async || {
        let Ok(mut c) = LegacyClient::connect(tcp).await else {
            return false;
        };
        matches!(c.produce(&message).await, Ok(Reply::Ok))
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_while_a_listener_is_at_its_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_connections: 2,
        handshake_timeout_ms: 60_000,
        ..config(dir.path())
    })
    .await;
    let before = health(&server).await;
    assert_eq!(before["components"]["grpc_server"]["status"], "healthy");
    assert_eq!(before["status"], "healthy", "{before}");

    let silent = silent_sockets(server.grpc_addr, 2).await;
    wait_until("2 gRPC connections open", async || {
        server.status.grpc.open_connections() == 2
    })
    .await;
    let at_limit = health(&server).await;
    let grpc = &at_limit["components"]["grpc_server"];
    assert_eq!(grpc["status"], "degraded", "{at_limit}");
    assert_eq!(grpc["details"]["state"], "at the connection limit");
    assert_eq!(grpc["details"]["max_connections"], 2);
    assert_eq!(at_limit["status"], "degraded");

    drop(silent);
    wait_until("healthy again once the sockets left", async || {
        health(&server).await["components"]["grpc_server"]["status"] == "healthy"
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_connections_without_calls_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        connection_idle_timeout_ms: 300,
        ..config(dir.path())
    })
    .await;
    let mut c = grpc_client(&server).await;
    c.list_topics(pb::ListTopicsRequest {}).await.unwrap();
    assert_eq!(server.status.grpc.open_connections(), 1);
    wait_until("the idle connection is closed", async || {
        server.status.grpc.open_connections() == 0
    })
    .await;
    // The client reconnects on its next call.
    let mut served = false;
    wait_until("the client is served again", async || {
        served = c.list_topics(pb::ListTopicsRequest {}).await.is_ok();
        served
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_gets_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    // Field 1 (topic), length-delimited, announcing 100 bytes with 3 present; then wire type 7.
    for body in [vec![0x0a, 100, b'a', b'b', b'c'], vec![0x0f, 0xff, 0xff]] {
        let status = raw_call(&server, "Produce", body.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{body:?}: {status:?}");
        assert!(
            status.message().contains("malformed request message"),
            "{}",
            status.message()
        );
    }
    // A well-formed request still gets the broker's own answer.
    let status = raw_call(&server, "DescribeTopic", vec![0x0a, 1, b'x']).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    server.stop().await;
}

/// A malformed message in the middle of a ProduceStream: the batch before it is acknowledged, then
/// the stream ends with INVALID_ARGUMENT (it used to end OK, as if the client had finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_in_a_produce_stream_ends_it_with_invalid_argument() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let good = pb::ProduceStreamRequest {
        sequence: 1,
        topic: "s".into(),
        records: vec![pb::ProducerRecord {
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }],
        idempotence: None,
    }
    .encode_to_vec();
    let mut grpc = raw_grpc(&server).await;
    let path = "/obelisk.v1.Broker/ProduceStream".parse().unwrap();
    let requests = tokio_stream::iter(vec![good, vec![0x0a, 100, b'a']]);
    let mut replies = grpc
        .streaming(tonic::Request::new(requests), path, RawCodec)
        .await
        .expect("the stream opens")
        .into_inner();
    let first = replies
        .message()
        .await
        .expect("an ack")
        .expect("one message");
    let ack = pb::ProduceStreamAck::decode(first.as_slice()).expect("an ack decodes");
    assert_eq!(
        (ack.sequence, ack.error),
        (1, None),
        "the good batch is stored"
    );
    let end = replies
        .message()
        .await
        .expect_err("the stream ends with an error");
    assert_eq!(end.code(), Code::InvalidArgument, "{end:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_gets_invalid_argument_and_out_of_range_keeps_its_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(Config {
        max_record_bytes: 1024,
        max_message_bytes: 4096,
        ..config(dir.path())
    })
    .await;
    let status = raw_call(&server, "Produce", vec![0u8; 10_000]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("too large") && status.message().contains("4096"),
        "{}",
        status.message()
    );
    // A real offset out of range stays OUT_OF_RANGE.
    let mut c = grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "r".into(),
        config: None,
    })
    .await
    .unwrap();
    let e = c
        .fetch(pb::FetchRequest {
            topic: "r".into(),
            partition: 0,
            offset: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_http2_connections_exits_well_before_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(dir.path(), None, &["--handshake-timeout-ms", "60000"]);
    let mut c = connect_child(&child).await;
    // Idle HTTP/2 clients after a call each: on gRPC, and h2c on the HTTP port.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut cl = obelisk::client::connect(&format!("http://{}", child.grpc))
            .await
            .unwrap();
        cl.list_topics(pb::ListTopicsRequest {}).await.unwrap();
        idle.push(cl);
    }
    let h2c = tonic::transport::Endpoint::from_shared(format!("http://{}", child.http))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut on_http = obelisk::client::BrokerClient::new(h2c);
    let _ = on_http.list_topics(pb::ListTopicsRequest {}).await;
    // Sockets that never finish (or never start) their handshake, and one that sent the preface
    // and never reads (it answers no ping).
    let _silent_grpc = silent_sockets(child.grpc, 4).await;
    let _silent_http = silent_sockets(child.http, 4).await;
    let mut deaf = TcpStream::connect(child.grpc).await.unwrap();
    deaf.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    c.list_topics(pb::ListTopicsRequest {}).await.unwrap();

    let started = tokio::time::Instant::now();
    sigterm(&child.child);
    // The drain timeout is 5 s per listener; idle connections must not hold it.
    let status = wait_exit(&mut child.child, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(4),
        "SIGTERM took {took:?} with only idle connections open"
    );
    drop((idle, on_http, deaf));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_with_256_descriptors_and_many_idle_connections_starts_serves_and_rolls_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(
        dir.path(),
        Some(256),
        &["--segment-bytes", "4096", "--handshake-timeout-ms", "60000"],
    );
    let mut c = connect_child(&child).await;
    // 300 sockets that never send a byte: more than the child has descriptors.
    let mut idle = Vec::new();
    for addr in [child.grpc, child.tcp, child.http] {
        idle.extend(silent_sockets(addr, 100).await);
    }
    // Connections are budgeted: the refused ones hear so, the accepted ones wait; either way the
    // broker keeps descriptors for its segments.
    c.create_topic(pb::CreateTopicRequest {
        name: "fd".into(),
        config: Some(pb::TopicConfig {
            partitions: 2,
            retention_ms: 0,
            retention_bytes: 0,
            compression: 0,
        }),
    })
    .await
    .unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        panic!("topic not created with the descriptors budgeted: {e:?}\n{log}")
    });
    let value = "v".repeat(200);
    for i in 0..100u32 {
        let records = (0..4)
            .map(|j| pb::ProducerRecord {
                key: Bytes::from(format!("k{i}-{j}")),
                value: Bytes::from(value.clone()),
                ..Default::default()
            })
            .collect();
        c.produce(pb::ProduceRequest {
            topic: "fd".into(),
            records,
            idempotence: None,
        })
        .await
        .unwrap_or_else(|e| panic!("produce {i} failed: {e:?}"));
    }
    let mut total = 0;
    for partition in 0..2 {
        let fetched = c
            .fetch(pb::FetchRequest {
                topic: "fd".into(),
                partition,
                offset: 0,
                max_records: 1000,
                max_bytes: 16 << 20,
                max_wait_ms: 0,
            })
            .await
            .expect("fetch")
            .into_inner();
        total += fetched.records.len();
    }
    assert_eq!(total, 400, "every acknowledged record is readable");

    // /health, on a connection of its own once the silent ones are gone.
    drop(idle);
    let mut report = Value::Null;
    wait_until("health answers", async || {
        match http_get(child.http, "/health").await {
            Ok((200 | 503, body)) if body["components"].is_object() => {
                report = body;
                true
            }
            _ => false,
        }
    })
    .await;
    let storage = &report["components"]["storage"];
    assert_eq!(storage["status"], "healthy", "{report}");
    assert_eq!(
        storage["details"]["read_only_partitions"],
        serde_json::json!([])
    );
    assert!(
        storage["details"]["segments"].as_u64().unwrap_or(0) > 2,
        "segments rolled: {report}"
    );
    let refused: u64 = ["grpc_server", "tcp_server", "http_server"]
        .iter()
        .map(|l| {
            report["components"][l]["details"]["refused_connections"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert!(
        refused >= 100,
        "connections over the budget were refused: {report}"
    );

    sigterm(&child.child);
    let status = wait_exit(&mut child.child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    // One warning per listener per interval, not one per refused connection.
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let warnings = log.matches("connection refused").count();
    assert!(
        (1..=6).contains(&warnings),
        "{warnings} refusal warnings for {refused} refusals:\n{log}"
    );
    assert!(
        log.contains("connection limits lowered to fit the open-file limit"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_open_at_shutdown_ends_with_its_status_not_a_cut_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(dir.path())).await;
    let mut c = grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "sub".into(),
        config: None,
    })
    .await
    .unwrap();
    let mut sub = c
        .subscribe(pb::SubscribeRequest {
            topic: "sub".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.stop().await;
    let end = tokio::time::timeout(PATIENCE, sub.message())
        .await
        .expect("the subscription ends");
    match end {
        Ok(None) => {}
        Ok(Some(m)) => panic!("a record after shutdown: {m:?}"),
        Err(status) => assert!(
            std::error::Error::source(&status).is_none() && status.code() == Code::Unavailable,
            "ended by the server with a status, not by a cut connection: {status:?}"
        ),
    }
}
