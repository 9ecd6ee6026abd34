//! `GET /stats` over a real socket on a full server: `buffered` is what was acknowledged but is
//! not yet durable and `persisted` what is on disk (the original's meaning, so the two add up to
//! the topic's records), in each durability mode.

mod common;

use std::net::SocketAddr;

use obelisk::config::DurabilityMode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on its own connection: (status, JSON body).
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("reads");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"));
    (status.expect("a status line"), body)
}

/// A server in `durability` mode with HTTP on, and `n` records acknowledged on topic "t".
async fn produced(
    dir: &std::path::Path,
    durability: DurabilityMode,
    n: usize,
) -> (obelisk::server::RunningServer, SocketAddr) {
    let mut config = common::test_config(dir);
    config.http_addr = "127.0.0.1:0".into();
    config.durability = durability;
    // No fsync tick during the test: what `interval` mode acknowledged stays unsynced.
    config.fsync_interval_ms = 3_600_000;
    let server = common::start(config).await;
    let addr = server.http_addr.expect("HTTP is on");
    for i in 0..n {
        let (status, ack) = call(
            addr,
            "POST",
            "/topics/t/messages",
            Some(json!({"key": format!("k{i}"), "value": "v"})),
        )
        .await;
        assert_eq!(status, 201, "{ack}");
    }
    (server, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_mode_has_nothing_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = produced(dir.path(), DurabilityMode::Fsync, 5).await;
    let (status, stats) = call(addr, "GET", "/stats?topic=t", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        stats,
        json!({"topic": "t", "buffered": 0, "persisted": 5, "ring_buffer_records": 5})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_mode_buffers_until_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = produced(dir.path(), DurabilityMode::Interval, 4).await;
    let (_, stats) = call(addr, "GET", "/stats?topic=t", None).await;
    assert_eq!(
        (&stats["buffered"], &stats["persisted"]),
        (&json!(4), &json!(0)),
        "{stats}"
    );
    // The fsync the tick would run: everything becomes persisted, nothing is counted twice.
    server.broker.sync_all().await;
    let (_, stats) = call(addr, "GET", "/stats?topic=t", None).await;
    assert_eq!(
        stats,
        json!({"topic": "t", "buffered": 0, "persisted": 4, "ring_buffer_records": 4})
    );
    server.stop().await;
}
