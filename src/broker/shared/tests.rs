//! Shared groups on a real broker core: the dead-letter recovery after a crash between the
//! intent and the write (both sides of it), and release with a delay under a paused clock.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::broker::{BrokerConfig, ReadLimits};

fn open(dir: &std::path::Path) -> Broker {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    Broker::open(config, &tokio::runtime::Handle::current()).unwrap()
}

fn poll(member: &str, wait: Duration) -> SharedPollRequest {
    SharedPollRequest {
        group: "g".into(),
        topic: "t".into(),
        member: member.into(),
        limits: ReadLimits {
            max_wait: wait,
            ..ReadLimits::default()
        },
    }
}

async fn setup(b: &Broker) {
    b.create_topic(
        "t",
        TopicConfig {
            partitions: 1,
            retention_ms: 0,
            retention_bytes: 0,
            compression: Default::default(),
        },
    )
    .await
    .unwrap();
    b.create_shared_group("g", SharedGroupConfig::new("g"))
        .await
        .unwrap();
    let rec = ProduceRecord {
        value: Bytes::from_static(b"v"),
        partition: Some(0),
        ..ProduceRecord::default()
    };
    b.produce("t", vec![rec.clone(), rec]).await.unwrap();
}

async fn dead_letters(b: &Broker) -> Vec<Record> {
    b.fetch(crate::broker::FetchRequest {
        topic: "g.dlq".into(),
        partition: 0,
        offset: 0,
        limits: ReadLimits::default(),
    })
    .await
    .unwrap()
    .records
}

/// Stores the intent to dead-letter offset 0 as a crash would leave it (optionally after the
/// dead letter itself was written), then "crashes": the broker is reopened.
async fn crash_after_intent(dir: &std::path::Path, written: bool) -> Broker {
    let b = open(dir);
    setup(&b).await;
    assert_eq!(
        b.shared_poll(poll("a", Duration::ZERO))
            .await
            .unwrap()
            .len(),
        2
    );
    let g = b.inner.shared.get("g").unwrap();
    {
        let mut st = g.state.lock().await;
        let w = st.topics.get_mut(&("t".to_string(), 0)).unwrap();
        w.set_dead_lettering(0, 0);
        b.inner.shared.commit_locked(&g, &mut st).await.unwrap();
    }
    if written {
        let headers = vec![
            (HEADER_ORIGIN_TOPIC.to_string(), Bytes::from_static(b"t")),
            (
                HEADER_ORIGIN_PARTITION.to_string(),
                Bytes::from_static(b"0"),
            ),
            (HEADER_ORIGIN_OFFSET.to_string(), Bytes::from_static(b"0")),
        ];
        let dl = ProduceRecord {
            value: Bytes::from_static(b"v"),
            headers,
            partition: Some(0),
            ..ProduceRecord::default()
        };
        b.produce("g.dlq", vec![dl]).await.unwrap();
    }
    b.shutdown().await;
    drop(g);
    drop(b);
    open(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_written_before_the_crash_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let b = crash_after_intent(dir.path(), true).await;
    // Any call on the group finishes the pending dead letter.
    assert!(
        b.shared_poll(poll("b", Duration::ZERO))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(dead_letters(&b).await.len(), 1);
    let st = b.shared_group_state("g", Some("t")).await.unwrap();
    assert_eq!(st[0].position, 1, "{st:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_not_written_before_the_crash_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = crash_after_intent(dir.path(), false).await;
    assert!(
        b.shared_poll(poll("b", Duration::ZERO))
            .await
            .unwrap()
            .is_empty()
    );
    let dl = dead_letters(&b).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(header(&dl[0], HEADER_ORIGIN_OFFSET), Some(&b"0"[..]));
    assert_eq!(header(&dl[0], HEADER_DELIVERIES), Some(&b"1"[..]));
    b.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn release_with_delay_is_not_redelivered_before_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    setup(&b).await;
    let got = b.shared_poll(poll("a", Duration::ZERO)).await.unwrap();
    assert_eq!(got.len(), 2);
    tokio::time::pause();
    let released_at = Instant::now();
    let release = Settlement {
        partition: 0,
        offset: 0,
        action: SettleAction::Release {
            delay: Some(Duration::from_secs(60)),
            reason: String::new(),
        },
    };
    let accept = Settlement {
        partition: 0,
        offset: 1,
        action: SettleAction::Accept,
    };
    let res = b.settle("g", "t", "a", &[release, accept]).await.unwrap();
    assert_eq!(res, vec![Ok(Settled::Available), Ok(Settled::Done)]);
    // A long poll that ends before the delay gets nothing (the clock jumps, no sleeping).
    let early = b
        .shared_poll(poll("b", Duration::from_secs(59)))
        .await
        .unwrap();
    assert!(early.is_empty(), "{early:?}");
    assert!(released_at.elapsed() >= Duration::from_secs(59));
    // One that outlasts it gets the record, not before the delay.
    let late = b
        .shared_poll(poll("b", Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].record.offset, 0);
    assert_eq!(late[0].deliveries, 2);
    assert!(released_at.elapsed() >= Duration::from_secs(60));
    tokio::time::resume();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_set_aside_and_refused_until_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    setup(&b).await;
    b.shutdown().await;
    drop(b);
    let file = dir.path().join("shared-groups").join("g.json");
    std::fs::write(&file, b"{ not json").unwrap();
    let b = open(dir.path());
    assert!(dir.path().join("shared-groups/g.json.damaged").exists());
    let err = b.shared_poll(poll("a", Duration::ZERO)).await.unwrap_err();
    assert!(matches!(err, BrokerError::DataLoss(_)), "{err}");
    let err = b.join_group(crate::broker::JoinRequest {
        group: "g".into(),
        topics: vec!["t".into()],
        ..Default::default()
    });
    assert!(matches!(err.await, Err(BrokerError::InvalidArgument(_))));
    b.create_shared_group("g", SharedGroupConfig::new("g"))
        .await
        .unwrap();
    assert_eq!(
        b.shared_poll(poll("a", Duration::ZERO))
            .await
            .unwrap()
            .len(),
        2
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_log_restores_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    setup(&b).await;
    b.inner
        .shared
        .compact_at
        .store(1, std::sync::atomic::Ordering::Relaxed);
    let got = b.shared_poll(poll("a", Duration::ZERO)).await.unwrap();
    assert_eq!(got.len(), 2);
    let release = Settlement {
        partition: 0,
        offset: 1,
        action: SettleAction::Release {
            delay: Some(Duration::from_secs(600)),
            reason: "later".into(),
        },
    };
    b.settle("g", "t", "a", &[release]).await.unwrap();
    // The settle's frame made the log long enough: a compaction runs in its own task, after
    // which the snapshot holds everything and the log is empty.
    let log = dir.path().join("shared-groups/g.log");
    let snapshot = dir.path().join("shared-groups/g.json");
    let mut compacted = false;
    for _ in 0..500 {
        let g = b.inner.shared.get("g").unwrap();
        let idle = !g.log.compacting.load(std::sync::atomic::Ordering::Acquire);
        let stored: store::StoredGroup =
            serde_json::from_slice(&std::fs::read(&snapshot).unwrap()).unwrap();
        if idle && stored.seq >= 2 && std::fs::metadata(&log).unwrap().len() == 0 {
            compacted = true;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(compacted, "the log was never compacted");
    let before = b.shared_group_state("g", Some("t")).await.unwrap();
    b.shutdown().await;
    drop(b);
    let b = open(dir.path());
    let after = b.shared_group_state("g", Some("t")).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(after[0].deliveries, BTreeMap::from([(0, 1), (1, 1)]));
    assert_eq!(after[0].locked, 1);
    // The lock of offset 0 is still a's.
    let settle = Settlement {
        partition: 0,
        offset: 0,
        action: SettleAction::Accept,
    };
    let res = b.settle("g", "t", "a", &[settle]).await.unwrap();
    assert_eq!(res, vec![Ok(Settled::Done)]);
    b.shutdown().await;
}

/// A member long-polling while the window's span is full (`max_in_flight`) is woken by the
/// accept that moves the position, not left waiting for its whole wait (the stream's hand-out
/// waits the server's longest wait: it stalled there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_that_opens_the_window_wakes_a_waiting_member() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let one = TopicConfig {
        partitions: 1,
        retention_ms: 0,
        retention_bytes: 0,
        compression: Default::default(),
    };
    b.create_topic("t", one).await.unwrap();
    let mut cfg = SharedGroupConfig::new("g");
    cfg.max_in_flight = 1;
    b.create_shared_group("g", cfg).await.unwrap();
    let rec = ProduceRecord {
        value: Bytes::from_static(b"v"),
        partition: Some(0),
        ..ProduceRecord::default()
    };
    b.produce("t", vec![rec.clone(), rec]).await.unwrap();
    let got = b.shared_poll(poll("a", Duration::ZERO)).await.unwrap();
    assert_eq!(got.len(), 1);
    let started = std::time::Instant::now();
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.shared_poll(poll("b", Duration::from_secs(20))).await })
    };
    // Until b waits, the accept would not show anything (b's first pass would just take it).
    while b.waiting_reads() == 0 {
        tokio::task::yield_now().await;
    }
    let accept = Settlement {
        partition: 0,
        offset: 0,
        action: SettleAction::Accept,
    };
    assert_eq!(
        b.settle("g", "t", "a", &[accept]).await.unwrap(),
        vec![Ok(Settled::Done)]
    );
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(
        got.len(),
        1,
        "woken with the record behind the accepted one"
    );
    assert_eq!(got[0].record.offset, 1);
    // Without the wake it answers only when its 20 s wait ends (then with the record).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "woken before its wait ended"
    );
    b.shutdown().await;
}

/// A record the consume stream gives back unsent (its stream closed first) is handed out again
/// as the same delivery, also after a restart: with `max_deliveries` 1 it is not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_given_back_unsent_keeps_its_delivery_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic(
            "t",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            },
        )
        .await
        .unwrap();
        let config = SharedGroupConfig {
            max_deliveries: 1,
            ..SharedGroupConfig::new("g")
        };
        b.create_shared_group("g", config).await.unwrap();
        let rec = ProduceRecord {
            value: Bytes::from_static(b"v"),
            partition: Some(0),
            ..ProduceRecord::default()
        };
        b.produce("t", vec![rec]).await.unwrap();
        let got = b.shared_poll(poll("a", Duration::ZERO)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].deliveries, 1);
        let not_sent = Settlement {
            partition: 0,
            offset: 0,
            action: SettleAction::NotSent,
        };
        let res = b.settle("g", "t", "a", &[not_sent]).await.unwrap();
        assert_eq!(res, vec![Ok(Settled::Available)]);
        b.shutdown().await;
        drop(b);
    }
    let b = open(dir.path());
    let again = b.shared_poll(poll("b", Duration::ZERO)).await.unwrap();
    assert_eq!(again.len(), 1, "handed out again after the restart");
    assert_eq!(
        again[0].deliveries, 1,
        "the unsent hand-out was not counted"
    );
    assert!(dead_letters(&b).await.is_empty());
    b.shutdown().await;
}
