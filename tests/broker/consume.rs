//! Reading: fairness across partitions, and Reset to each kind of target.

use obelisk::broker::{Position, ProduceRecord};

use crate::common::broker::{TestBroker, rec};
use crate::poll_req;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_is_fair_across_partitions() {
    let b = TestBroker::open().await;
    b.create("f", 2).await;
    for p in 0..2 {
        let recs = (0..100)
            .map(|_| ProduceRecord {
                partition: Some(p),
                ..rec("", "x")
            })
            .collect();
        b.produce("f", recs).await.unwrap();
    }
    let mut req = poll_req("f", "g");
    req.limits.max_records = 50;
    let mut seen = [0usize; 2];
    for _ in 0..2 {
        let got = b.poll(req.clone()).await.unwrap();
        assert_eq!(got.len(), 50);
        for r in got {
            seen[r.partition as usize] += 1;
        }
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both partitions served: {seen:?}"
    );
    b.shutdown().await;
}

/// Topic "t", one partition, ten records stamped 1000, 1010, … 1090.
async fn ten_stamped() -> TestBroker {
    let b = TestBroker::open().await;
    b.create("t", 1).await;
    let recs = (0..10)
        .map(|i| ProduceRecord {
            timestamp: Some(1000 + i * 10),
            ..rec("", &format!("{i}"))
        })
        .collect();
    b.produce("t", recs).await.unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_latest_skips_everything() {
    let b = ten_stamped().await;
    assert_eq!(
        b.reset("t", "g", Position::Latest).await.unwrap(),
        vec![(0, 10)]
    );
    assert!(b.poll(poll_req("t", "g")).await.unwrap().is_empty());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_earliest_replays_everything() {
    let b = ten_stamped().await;
    b.reset("t", "g", Position::Latest).await.unwrap();
    assert_eq!(
        b.reset("t", "g", Position::Earliest).await.unwrap(),
        vec![(0, 0)]
    );
    assert_eq!(b.poll(poll_req("t", "g")).await.unwrap().len(), 10);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_an_offset_and_past_the_end() {
    let b = ten_stamped().await;
    assert_eq!(
        b.reset("t", "g", Position::Offset(7)).await.unwrap(),
        vec![(0, 7)]
    );
    assert_eq!(
        b.reset("t", "g", Position::Offset(99)).await.unwrap(),
        vec![(0, 10)],
        "an offset past the end is clamped to the end"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_a_timestamp_finds_the_first_record_at_or_after_it() {
    let b = ten_stamped().await;
    assert_eq!(
        b.reset("t", "g", Position::Timestamp(1045)).await.unwrap(),
        vec![(0, 5)]
    );
    let got = b.poll(poll_req("t", "g")).await.unwrap();
    assert_eq!(got[0].record.offset, 5);
    assert_eq!(got[0].record.timestamp, 1050);
    b.shutdown().await;
}
