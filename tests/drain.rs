//! Draining over real sockets: a whole server (gRPC, legacy TCP and HTTP on 127.0.0.1:0) is
//! stopped while long waits are in flight. The broker's drain ends them, so each answers at once
//! with what it has (nothing: OK and no records, a subscription's clean end) instead of waiting
//! out a 30 s `max_wait`, and the server stops. The legacy protocol is produce-only: it has no
//! long wait to end.

mod common;

use std::future::Future;
use std::time::Duration;

use obelisk::broker::Broker;
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use obelisk::status::ListenerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// The long waits ask for this; the server caps gRPC's to 27 s (inside the 30 s request deadline).
const LONG_WAIT_MS: u32 = 30_000;
/// Generous bound for "promptly": far below the long wait, so a wait that ignores the drain fails.
const PATIENCE: Duration = Duration::from_secs(15);

async fn start() -> (tempfile::TempDir, RunningServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = common::test_config(dir.path());
    cfg.tcp_addr = "127.0.0.1:0".into();
    cfg.http_addr = "127.0.0.1:0".into();
    let server = common::start(cfg).await;
    server
        .broker
        .create_topic(
            "d",
            obelisk::broker::TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            },
        )
        .await
        .expect("topic");
    (dir, server)
}

/// Waits until `cond` holds, checking it every few milliseconds; fails after [`PATIENCE`].
async fn until(what: &str, cond: impl Fn() -> bool) {
    let waited = timeout(PATIENCE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never happened: {what}");
}

/// Stops `server` and checks it stopped within [`PATIENCE`].
async fn stop(server: RunningServer) -> impl Future<Output = ()> {
    let stopping = tokio::spawn(server.stop());
    async move {
        timeout(PATIENCE, stopping)
            .await
            .expect("the server stops while long waits were in flight")
            .expect("stop task");
    }
}

/// Waits for a spawned call's answer, which must come within [`PATIENCE`].
async fn answer<T>(what: &str, call: tokio::task::JoinHandle<T>) -> T {
    timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| panic!("{what} still waiting after the drain"))
        .expect("call task")
}

/// Whether the broker has `reads` polls or fetches waiting and `watchers` watchers on `d`.
fn waiting(broker: &Broker, reads: usize, watchers: usize) -> bool {
    broker.waiting_reads() == reads && broker.topic_watchers("d") >= watchers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_long_poll_fetch_and_subscribe_end_when_the_server_stops() {
    let (_dir, server) = start().await;
    let broker = server.broker.clone();
    let status = std::sync::Arc::clone(&server.status);
    let mut client = common::grpc_client(&server).await;
    let poll = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .poll(pb::PollRequest {
                    topic: "d".into(),
                    group: "g".into(),
                    max_wait_ms: LONG_WAIT_MS,
                    ..Default::default()
                })
                .await
        }
    });
    let fetch = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .fetch(pb::FetchRequest {
                    topic: "d".into(),
                    partition: 0,
                    offset: 0,
                    max_wait_ms: LONG_WAIT_MS,
                    ..Default::default()
                })
                .await
        }
    });
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            topic: "d".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    // The poll and the fetch wait; the poll and the subscription watch the topic.
    until("the poll and the fetch wait", || waiting(&broker, 2, 2)).await;

    let stopped = stop(server).await;
    let polled = answer("the poll", poll).await.expect("poll answers OK");
    assert_eq!(polled.into_inner().records, vec![]);
    let fetched = answer("the fetch", fetch)
        .await
        .expect("fetch answers OK")
        .into_inner();
    assert_eq!(
        (fetched.records, fetched.log_end_offset),
        (vec![], 0),
        "nothing was produced"
    );
    let end = timeout(PATIENCE, stream.message())
        .await
        .expect("the subscription ends after the drain");
    assert_eq!(end.expect("ends cleanly, not with an error"), None);
    stopped.await;
    assert_eq!(broker.waiting_reads(), 0);
    // Marked down only when its server returned by itself: no call held it until it was cut.
    assert_eq!(status.grpc.state(), ListenerState::Down);
}

/// One HTTP/1.1 request on its own connection; returns the status and the body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

fn records(body: &str) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    json["records"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_long_poll_and_fetch_end_when_the_server_stops() {
    let (_dir, server) = start().await;
    let broker = server.broker.clone();
    let addr = server.http_addr.expect("HTTP is on");
    let poll = tokio::spawn(async move {
        let body = format!(r#"{{"group":"g","max_wait_ms":{LONG_WAIT_MS}}}"#);
        http(addr, "POST", "/topics/d/poll", &body).await
    });
    let fetch = tokio::spawn(async move {
        let path = format!("/topics/d/messages?partition=0&offset=0&max_wait_ms={LONG_WAIT_MS}");
        http(addr, "GET", &path, "").await
    });
    until("the poll and the fetch wait", || waiting(&broker, 2, 1)).await;

    let stopped = stop(server).await;
    let (code, body) = answer("the poll", poll).await;
    assert_eq!(
        (code, records(&body)),
        (200, serde_json::json!([])),
        "{body}"
    );
    let (code, body) = answer("the fetch", fetch).await;
    assert_eq!(
        (code, records(&body)),
        (200, serde_json::json!([])),
        "{body}"
    );
    stopped.await;
    assert_eq!(broker.waiting_reads(), 0);
}
