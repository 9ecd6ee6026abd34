//! Black-box tests of the legacy listener's connection handling over real sockets: the
//! connection limit, the idle timeout, fatal frames, shutdown, and the pipelining client.

#[path = "common/legacy_harness.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use obelisk::legacy::codec::Reply;
use obelisk::legacy::{LegacyClient, LegacyConfig};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_at_once() {
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
        b"NACK:PUBLISH_FAILED\n",
        "told it is refused (overloaded), then closed"
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
    let sent = Instant::now();
    client
        .write_all(&frame(&message("idle", "k", b"v", 1)))
        .await
        .expect("write");
    assert_eq!(read_n(&mut client, 3).await, b"OK\n");
    assert_eq!(read_until_closed(&mut client).await, b"");
    // The timeout counts from the frame, which the server cannot have read before it was sent.
    assert!(sent.elapsed() >= idle);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_keep_frame_order_and_a_fatal_frame_closes_after_them() {
    let server = Server::start(LegacyConfig::default()).await;
    let mut conn = server.connect().await;
    let mut bytes = Vec::new();
    bytes.extend(frame(&message("mixed", "a", b"1", 1)));
    bytes.extend([0, 0, 0, 0]); // length 0
    bytes.extend([3, 0, 0, 0, 1, 2, 3]); // not a message
    bytes.extend(frame(&message("bad/topic", "a", b"2", 2)));
    bytes.extend(frame(&message("mixed", "a", b"3", 3)));
    bytes.extend((10_485_761u32).to_le_bytes()); // too large: fatal
    bytes.extend(frame(&message("mixed", "a", b"never read", 4)));
    conn.write_all(&bytes).await.expect("write");
    let expected: Vec<u8> = [
        Reply::Ok,
        Reply::Corrupted,
        Reply::InvalidFormat,
        Reply::InvalidFormat,
        Reply::Ok,
        Reply::ProtocolError,
    ]
    .iter()
    .flat_map(|r| r.as_bytes().to_vec())
    .collect();
    assert_eq!(read_until_closed(&mut conn).await, expected);
    let stored: Vec<Vec<u8>> = server
        .records("mixed", 0)
        .await
        .iter()
        .map(|r| r.value.to_vec())
        .collect();
    // Key "a" lands in partition 0 of 4 (fnv1a 0xe40c292c); nothing after the fatal frame was
    // stored.
    assert_eq!(stored, [b"1".to_vec(), b"3".to_vec()]);
    assert_eq!(server.stats.connection_errors(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_error_reply_survives_a_client_still_sending() {
    let server = Server::start(LegacyConfig::default()).await;
    let mut conn = server.connect().await;
    // An oversized frame whose client goes on sending its body.
    conn.write_all(&(20u32 << 20).to_le_bytes())
        .await
        .expect("write");
    let _ = conn.write_all(&vec![0x55; 256 * 1024]).await;
    assert_eq!(
        read_until_closed(&mut conn).await,
        Reply::ProtocolError.as_bytes()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_pipelines_with_a_window() {
    let server = Server::start(LegacyConfig {
        max_in_flight: 16,
        ..LegacyConfig::default()
    })
    .await;
    let messages: Vec<_> = (0..3000u32)
        .map(|i| message("windowed", "", &i.to_le_bytes(), i64::from(i)))
        .collect();
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    let replies = timeout(PATIENCE, client.produce_pipelined(&messages, 64))
        .await
        .expect("in time")
        .expect("replies");
    assert_eq!(replies.len(), messages.len());
    assert!(replies.iter().all(|r| *r == Reply::Ok));
    let mut stored = 0;
    for p in 0..4 {
        stored += server.records("windowed", p).await.len();
    }
    assert_eq!(stored, messages.len());
    drop(client);
    server.stop().await;
}
