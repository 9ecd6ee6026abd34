//! Timing logic on tokio's paused clock: long polls, linger, retention.

use std::time::Duration;

use bytes::Bytes;
use obelisk::broker::{
    BrokerError, FetchRequest, ProduceRecord, ReadLimits, StartPosition, TopicConfig,
};

use crate::common::broker::{TestBroker, rec};
use crate::common::wait::spawn_waiting;
use crate::poll_req;

#[tokio::test(start_paused = true)]
async fn a_long_poll_with_nothing_arriving_returns_empty_after_exactly_max_wait() {
    let b = TestBroker::open().await;
    b.create("t", 2).await;
    let mut req = poll_req("t", "g");
    req.limits.max_wait = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    assert!(b.poll(req).await.unwrap().is_empty());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_returns_with_a_record_that_arrives_while_it_waits() {
    let b = TestBroker::open().await;
    b.create("t", 2).await;
    let mut req = poll_req("t", "g");
    req.limits.max_wait = Duration::from_secs(30);
    let started = tokio::time::Instant::now();
    let waiting = spawn_waiting({
        let broker = b.broker.clone();
        async move { broker.poll(req).await }
    })
    .await;
    b.produce("t", vec![rec("a", "late")]).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.value, Bytes::from_static(b"late"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "long before max_wait"
    );
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_group_polling_from_latest_gets_what_arrives_while_it_waits() {
    let b = TestBroker::open().await;
    b.create("t", 2).await;
    b.produce("t", vec![rec("a", "before")]).await.unwrap();
    let mut req = poll_req("t", "late-joiner");
    req.start_if_new = StartPosition::Latest;
    req.limits.max_wait = Duration::from_secs(30);
    let waiting = spawn_waiting({
        let broker = b.broker.clone();
        async move { broker.poll(req).await }
    })
    .await;
    b.produce("t", vec![rec("b", "while waiting")])
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].record.value, Bytes::from_static(b"while waiting"));
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn linger_holds_a_batch_until_it_expires() {
    let b = TestBroker::open_with(|c| c.batch.linger = Duration::from_millis(50)).await;
    b.create("t", 1).await;
    let started = tokio::time::Instant::now();
    let (x, y) = tokio::join!(
        b.produce("t", vec![rec("", "1")]),
        b.produce("t", vec![rec("", "2")]),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "acks waited for the linger"
    );
    assert_eq!(
        x.unwrap()[0].offset + y.unwrap()[0].offset,
        1,
        "offsets 0 and 1"
    );
    let snapshots = b.partition_snapshots();
    assert_eq!(snapshots[0].writes.batches, 1, "one group commit");
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_old_segments_in_the_background() {
    let b = TestBroker::open_with(|c| {
        c.segment_bytes = 300;
        c.retention_check_interval = Duration::from_secs(60);
    })
    .await;
    b.create_with(
        "t",
        TopicConfig {
            partitions: 1,
            retention_ms: 3_600_000,
            retention_bytes: 0,
            compression: Default::default(),
        },
    )
    .await;
    let old = obelisk::broker::now_ns() - 7_200_000_000_000; // two hours ago
    for i in 0..10 {
        b.produce(
            "t",
            vec![ProduceRecord {
                timestamp: Some(old + i),
                ..rec("", "old record padding")
            }],
        )
        .await
        .unwrap();
    }
    for _ in 0..5 {
        b.produce("t", vec![rec("", "new record padding")])
            .await
            .unwrap();
    }
    assert_eq!(b.describe_topic("t").unwrap().partitions[0].log_start, 0);
    // The paused clock moves past one check interval (it advances once every task is idle, so
    // the retention pass has run when this returns).
    tokio::time::sleep(Duration::from_secs(61)).await;
    let p = &b.describe_topic("t").unwrap().partitions[0];
    assert!(
        p.log_start > 0 && p.log_start <= 10,
        "old segments went: start {}",
        p.log_start
    );
    assert_eq!(p.log_end, 15);
    let fetch = FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset: 0,
        limits: ReadLimits::default(),
    };
    assert!(matches!(
        b.fetch(fetch).await,
        Err(BrokerError::OffsetOutOfRange { .. })
    ));
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_enormous_retention_keeps_everything() {
    // u64::MAX ms must mean "very long", not wrap into a negative age that deletes everything.
    let b = TestBroker::open_with(|c| c.segment_bytes = 300).await;
    b.create_with(
        "t",
        TopicConfig {
            partitions: 1,
            retention_ms: u64::MAX,
            retention_bytes: 0,
            compression: Default::default(),
        },
    )
    .await;
    for _ in 0..30 {
        b.produce("t", vec![rec("", "some record padding")])
            .await
            .unwrap();
    }
    assert!(b.describe_topic("t").unwrap().partitions[0].segments > 2);
    b.enforce_retention().await;
    assert_eq!(b.describe_topic("t").unwrap().partitions[0].log_start, 0);
    b.shutdown().await;
}
