//! The Broker core, called directly: produce, poll, commit, reset, fetch, subscribe, admin, errors,
//! restart. Timing logic runs on tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use obelisk::broker::{
    Broker, BrokerConfig, BrokerError, ConsumedRecord, FetchRequest, PollRequest, Position,
    ProduceRecord, ReadLimits, StartPosition, SubscribeRequest, TopicConfig,
};

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

fn rec(key: &str, value: &str) -> ProduceRecord {
    ProduceRecord {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..ProduceRecord::default()
    }
}

fn poll_req(topic: &str, group: &str) -> PollRequest {
    PollRequest {
        topic: topic.into(),
        group: group.into(),
        limits: ReadLimits::default(),
        start_if_new: StartPosition::Earliest,
    }
}

/// Poll interleaves partitions (starting with a different one each time); order within a partition
/// is what is promised, so comparisons sort by (partition, offset).
fn sorted(mut records: Vec<ConsumedRecord>) -> Vec<ConsumedRecord> {
    records.sort_by_key(|r| (r.partition, r.record.offset));
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_is_fair_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "f",
            TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    for p in 0..2 {
        let recs = (0..100)
            .map(|_| ProduceRecord {
                partition: Some(p),
                ..rec("", "x")
            })
            .collect();
        broker.produce("f", recs).await.unwrap();
    }
    let mut req = poll_req("f", "g");
    req.limits.max_records = 50;
    let mut seen = [0usize; 2];
    for _ in 0..2 {
        let got = broker.poll(req.clone()).await.unwrap();
        assert_eq!(got.len(), 50);
        for r in got {
            seen[r.partition as usize] += 1;
        }
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both partitions served: {seen:?}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_poll_commit_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    let acks = broker
        .produce(
            "orders",
            (0..20)
                .map(|i| rec(&format!("k{i}"), &format!("v{i}")))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(acks.len(), 20);
    // Keyed placement is FNV-1a like the original: "user-123" goes to partition 3 of 4.
    let a = broker
        .produce("orders", vec![rec("user-123", "x")])
        .await
        .unwrap();
    assert_eq!(a[0].partition, 3);

    let first = sorted(broker.poll(poll_req("orders", "g")).await.unwrap());
    assert_eq!(first.len(), 21);
    let again = sorted(broker.poll(poll_req("orders", "g")).await.unwrap());
    assert_eq!(first, again, "poll without commit returns the same records");

    // Per partition, offsets are dense from 0 and in produce order.
    for p in 0..4 {
        let offs: Vec<u64> = first
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.record.offset)
            .collect();
        assert_eq!(offs, (0..offs.len() as u64).collect::<Vec<_>>());
    }
    let commit: Vec<(u32, u64)> = (0..4)
        .map(|p| (p, first.iter().filter(|r| r.partition == p).count() as u64))
        .collect();
    broker.commit("orders", "g", &commit).await.unwrap();
    assert!(
        broker
            .poll(poll_req("orders", "g"))
            .await
            .unwrap()
            .is_empty()
    );

    broker.shutdown().await;
    drop(broker);
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    assert!(
        broker
            .poll(poll_req("orders", "g"))
            .await
            .unwrap()
            .is_empty(),
        "commit survived"
    );
    let other = sorted(broker.poll(poll_req("orders", "fresh")).await.unwrap());
    assert_eq!(
        other, first,
        "every record survived the restart, byte for byte"
    );
    let desc = broker.describe_group("g").unwrap();
    assert_eq!(desc.iter().map(|g| g.lag).sum::<u64>(), 0);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_each_kind_of_target() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let recs = (0..10)
        .map(|i| ProduceRecord {
            timestamp: Some(1000 + i * 10),
            ..rec("", &format!("{i}"))
        })
        .collect();
    broker.produce("t", recs).await.unwrap();
    assert_eq!(
        broker.reset("t", "g", Position::Latest).await.unwrap(),
        vec![(0, 10)]
    );
    assert!(broker.poll(poll_req("t", "g")).await.unwrap().is_empty());
    assert_eq!(
        broker.reset("t", "g", Position::Earliest).await.unwrap(),
        vec![(0, 0)]
    );
    assert_eq!(broker.poll(poll_req("t", "g")).await.unwrap().len(), 10);
    assert_eq!(
        broker.reset("t", "g", Position::Offset(7)).await.unwrap(),
        vec![(0, 7)]
    );
    assert_eq!(
        broker.reset("t", "g", Position::Offset(99)).await.unwrap(),
        vec![(0, 10)]
    );
    assert_eq!(
        broker
            .reset("t", "g", Position::Timestamp(1045))
            .await
            .unwrap(),
        vec![(0, 5)]
    );
    let got = broker.poll(poll_req("t", "g")).await.unwrap();
    assert_eq!(got[0].record.offset, 5);
    assert_eq!(got[0].record.timestamp, 1050);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_typed_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.auto_create_topics = false;
    cfg.max_record_bytes = 1000;
    let broker = Broker::open(cfg, &tokio::runtime::Handle::current()).unwrap();
    let e = broker
        .produce("../etc", vec![rec("", "x")])
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidName { .. }), "{e}");
    assert!(!dir.path().join("etc").exists());
    let e = broker
        .produce("nope", vec![rec("", "x")])
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::TopicNotFound(_)), "{e}");
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let e = broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::TopicExists(_)), "{e}");
    let e = broker.produce("t", vec![]).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidArgument(_)), "{e}");
    let e = broker
        .produce("t", vec![rec("", &"x".repeat(2000))])
        .await
        .unwrap_err();
    assert!(
        matches!(e, BrokerError::RecordTooLarge { max: 1000, .. }),
        "{e}"
    );
    let e = broker
        .produce(
            "t",
            vec![ProduceRecord {
                partition: Some(2),
                ..rec("", "x")
            }],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("partitions 0 to 1"), "{e}");
    broker
        .produce(
            "t",
            vec![ProduceRecord {
                partition: Some(0),
                ..rec("", "x")
            }],
        )
        .await
        .unwrap();
    let e = broker.commit("t", "g", &[(0, 2)]).await.unwrap_err();
    assert!(
        matches!(e, BrokerError::OffsetOutOfRange { end: 1, .. }),
        "{e}"
    );
    let fetch = |offset| FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset,
        limits: ReadLimits::default(),
    };
    let e = broker.fetch(fetch(5)).await.unwrap_err();
    assert!(matches!(e, BrokerError::OffsetOutOfRange { .. }), "{e}");
    assert!(broker.fetch(fetch(1)).await.unwrap().records.is_empty());
    assert_eq!(broker.fetch(fetch(0)).await.unwrap().records.len(), 1);
    let e = broker.describe_group("never").unwrap_err();
    assert!(matches!(e, BrokerError::GroupNotFound(_)), "{e}");
    let e = broker.poll(poll_req("t", "bad/group")).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidName { .. }), "{e}");
    broker.delete_topic("t").await.unwrap();
    assert!(broker.list_topics().is_empty());
    assert!(matches!(
        broker.describe_topic("t"),
        Err(BrokerError::TopicNotFound(_))
    ));
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn long_poll_waits_for_new_records_on_the_paused_clock() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let mut req = poll_req("t", "g");
    req.limits.max_wait = Duration::from_secs(30);
    // Nothing arrives: the poll returns empty after exactly max_wait.
    let started = tokio::time::Instant::now();
    assert!(broker.poll(req.clone()).await.unwrap().is_empty());
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    // A record arrives while the poll waits: it returns with it, long before max_wait.
    let waiting = tokio::spawn({
        let broker = broker.clone();
        let req = req.clone();
        async move { broker.poll(req).await }
    });
    tokio::task::yield_now().await;
    broker.produce("t", vec![rec("a", "late")]).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.value, Bytes::from_static(b"late"));
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn linger_holds_a_batch_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.batch.linger = Duration::from_millis(50);
    let broker = Broker::open(cfg, &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let (a, b) = tokio::join!(
        broker.produce("t", vec![rec("", "1")]),
        broker.produce("t", vec![rec("", "2")]),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "acks waited for the linger"
    );
    assert_eq!(
        a.unwrap()[0].offset + b.unwrap()[0].offset,
        1,
        "offsets 0 and 1"
    );
    let p = &broker.partition_cores()[0].1;
    assert_eq!(
        p.stats.batches.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one group commit"
    );
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_old_segments_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 300;
    cfg.retention_check_interval = Duration::from_secs(60);
    let broker = Broker::open(cfg, &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 1,
                retention_ms: 3_600_000,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let old = obelisk::broker::now_ns() - 7_200_000_000_000; // two hours ago
    for i in 0..10 {
        broker
            .produce(
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
        broker
            .produce("t", vec![rec("", "new record padding")])
            .await
            .unwrap();
    }
    assert_eq!(
        broker.describe_topic("t").unwrap().partitions[0].log_start,
        0
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    let p = &broker.describe_topic("t").unwrap().partitions[0];
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
        broker.fetch(fetch).await,
        Err(BrokerError::OffsetOutOfRange { .. })
    ));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_streams_new_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 3,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    broker.produce("t", vec![rec("before", "0")]).await.unwrap();
    let mut sub = broker
        .subscribe(SubscribeRequest {
            topic: "t".into(),
            group: None,
            start: Some(Position::Latest),
            max_records_per_batch: 0,
        })
        .unwrap();
    let producer = tokio::spawn({
        let broker = broker.clone();
        async move {
            for i in 0..300 {
                broker
                    .produce("t", vec![rec(&format!("k{}", i % 7), &i.to_string())])
                    .await
                    .unwrap();
            }
        }
    });
    let mut got = Vec::new();
    while got.len() < 300 {
        got.extend(sub.next_batch().await.unwrap().unwrap());
    }
    producer.await.unwrap();
    assert_eq!(got.len(), 300);
    for p in 0..3 {
        let offs: Vec<u64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.record.offset)
            .collect();
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "partition {p} in order: {offs:?}"
        );
    }
    broker.shutdown().await;
    assert!(
        sub.next_batch().await.is_none(),
        "subscription ends at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_has_one_broker_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    let Err(e) = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()) else {
        panic!("a second broker opened the same data directory");
    };
    assert!(
        e.to_string().contains("in use by another obelisk process"),
        "{e}"
    );
    broker.shutdown().await;
    let again = Broker::open(config(dir.path()), &tokio::runtime::Handle::current())
        .expect("free after shutdown");
    again.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_enormous_retention_keeps_everything() {
    // u64::MAX ms must mean "very long", not wrap into a negative age that deletes everything.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 300;
    let broker = Broker::open(cfg, &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 1,
                retention_ms: u64::MAX,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    for _ in 0..30 {
        broker
            .produce("t", vec![rec("", "some record padding")])
            .await
            .unwrap();
    }
    assert!(broker.describe_topic("t").unwrap().partitions[0].segments > 2);
    broker.enforce_retention().await;
    assert_eq!(
        broker.describe_topic("t").unwrap().partitions[0].log_start,
        0
    );
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_group_polling_from_latest_gets_what_arrives_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "t",
            TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    broker.produce("t", vec![rec("a", "before")]).await.unwrap();
    let mut req = poll_req("t", "late-joiner");
    req.start_if_new = StartPosition::Latest;
    req.limits.max_wait = Duration::from_secs(30);
    let waiting = tokio::spawn({
        let broker = broker.clone();
        async move { broker.poll(req).await }
    });
    tokio::task::yield_now().await;
    broker
        .produce("t", vec![rec("b", "while waiting")])
        .await
        .unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].record.value, Bytes::from_static(b"while waiting"));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_waiting_on_a_deleted_topic_are_told_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(dir.path()), &tokio::runtime::Handle::current()).unwrap();
    broker
        .create_topic(
            "gone",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
            },
        )
        .await
        .unwrap();
    let mut sub = broker
        .subscribe(SubscribeRequest {
            topic: "gone".into(),
            group: None,
            start: None,
            max_records_per_batch: 0,
        })
        .unwrap();
    let mut req = poll_req("gone", "g");
    req.limits.max_wait = Duration::from_secs(3600);
    let polling = tokio::spawn({
        let broker = broker.clone();
        async move { broker.poll(req).await }
    });
    let fetching = tokio::spawn({
        let broker = broker.clone();
        async move {
            broker
                .fetch(FetchRequest {
                    topic: "gone".into(),
                    partition: 0,
                    offset: 0,
                    limits: ReadLimits {
                        max_wait: Duration::from_secs(3600),
                        ..ReadLimits::default()
                    },
                })
                .await
        }
    });
    let subscribed = tokio::spawn(async move {
        let first = sub.next_batch().await;
        (first, sub.next_batch().await)
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // let all three start waiting
    broker.delete_topic("gone").await.unwrap();
    let within = Duration::from_secs(10);
    let polled = tokio::time::timeout(within, polling)
        .await
        .expect("poll returns")
        .unwrap();
    assert!(
        matches!(polled, Err(BrokerError::TopicNotFound(_))),
        "{polled:?}"
    );
    let fetched = tokio::time::timeout(within, fetching)
        .await
        .expect("fetch returns")
        .unwrap();
    assert!(
        matches!(fetched, Err(BrokerError::TopicNotFound(_))),
        "{fetched:?}"
    );
    let (first, then) = tokio::time::timeout(within, subscribed)
        .await
        .expect("stream ends")
        .unwrap();
    assert!(
        matches!(first, Some(Err(BrokerError::TopicNotFound(_)))),
        "{first:?}"
    );
    assert!(then.is_none());
    broker.shutdown().await;
}
