//! Produce, Poll, Commit, Reset and DescribeGroup, and what survives a restart.

use std::collections::HashMap;

use bytes::Bytes;
use obelisk::client::Consumer;
use obelisk::proto as pb;
use tonic::Code;

use crate::common::server::TestServer;
use crate::{polled, pos, record, sorted};

const STAMP: i64 = 1_700_000_000_000_000_000;

/// 50 records on "orders" (auto-created, 4 partitions): the first keyed "user-123" with a header
/// and a timestamp, then 49 keyed k0…k48. Returns the acks and what group "g" first polls.
async fn orders() -> (TestServer, Vec<pb::RecordAck>, Vec<pb::Record>) {
    let mut s = TestServer::start().await;
    let mut with_headers = record("user-123", "first");
    with_headers.headers = HashMap::from([("trace".to_string(), Bytes::from_static(b"\x01\x02"))]);
    with_headers.timestamp_ns = Some(STAMP);
    let mut records = vec![with_headers];
    records.extend((0..49).map(|i| record(&format!("k{i}"), &format!("v{i}"))));
    let acks = s
        .client
        .produce(pb::ProduceRequest {
            topic: "orders".into(),
            records,
            idempotence: None,
        })
        .await
        .unwrap()
        .into_inner()
        .acks;
    let first = sorted(polled(&mut s.client, "orders", "g").await);
    assert_eq!(first.len(), 50);
    (s, acks, first)
}

fn reset(to: pb::position::Target) -> pb::ResetRequest {
    pb::ResetRequest {
        topic: "orders".into(),
        group: "g".into(),
        to: pos(to),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_acks_every_record_placed_like_the_original() {
    let (s, acks, _) = orders().await;
    assert_eq!(acks.len(), 50);
    assert_eq!(acks[0].partition, 3, "FNV-1a placement like the original");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_without_commit_returns_the_same_records() {
    let (mut s, _, first) = orders().await;
    let again = sorted(polled(&mut s.client, "orders", "g").await);
    assert_eq!(first, again, "no commit, same records");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_producer_timestamps_are_kept() {
    let (s, _, first) = orders().await;
    let r0 = first
        .iter()
        .find(|r| r.value == Bytes::from_static(b"first"))
        .unwrap();
    assert_eq!(r0.headers["trace"], Bytes::from_static(b"\x01\x02"));
    assert_eq!(r0.timestamp_ns, STAMP);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_moves_the_group_past_what_it_polled() {
    let (mut s, _, first) = orders().await;
    let mut consumer = Consumer::new(s.client.clone(), "orders", "g");
    consumer.commit(&first).await.unwrap();
    assert!(polled(&mut s.client, "orders", "g").await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_earliest_replays_everything() {
    let (mut s, _, first) = orders().await;
    Consumer::new(s.client.clone(), "orders", "g")
        .commit(&first)
        .await
        .unwrap();
    let offs = s
        .client
        .reset(reset(pb::position::Target::Earliest(true)))
        .await
        .unwrap()
        .into_inner()
        .offsets;
    assert!(offs.iter().all(|o| o.offset == 0));
    assert_eq!(polled(&mut s.client, "orders", "g").await.len(), 50);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_latest_is_the_log_end_of_every_partition() {
    let (mut s, _, _) = orders().await;
    let offs = s
        .client
        .reset(reset(pb::position::Target::Latest(true)))
        .await
        .unwrap()
        .into_inner()
        .offsets;
    assert_eq!(offs.iter().map(|o| o.offset).sum::<u64>(), 50);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_an_offset_applies_it_to_every_partition() {
    let (mut s, _, _) = orders().await;
    s.client
        .reset(reset(pb::position::Target::Offset(1)))
        .await
        .unwrap();
    assert_eq!(polled(&mut s.client, "orders", "g").await.len(), 46);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_to_a_timestamp_before_everything_replays_everything() {
    let (mut s, _, _) = orders().await;
    s.client
        .reset(reset(pb::position::Target::Latest(true)))
        .await
        .unwrap();
    s.client
        .reset(reset(pb::position::Target::TimestampNs(
            1_600_000_000_000_000_000,
        )))
        .await
        .unwrap();
    assert_eq!(polled(&mut s.client, "orders", "g").await.len(), 50);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_without_a_target_is_invalid() {
    let (mut s, _, _) = orders().await;
    let e = s
        .client
        .reset(pb::ResetRequest {
            topic: "orders".into(),
            group: "g".into(),
            to: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_committed_everything_has_no_lag() {
    let (mut s, _, first) = orders().await;
    Consumer::new(s.client.clone(), "orders", "g")
        .commit(&first)
        .await
        .unwrap();
    let described = s
        .client
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.partitions.len(), 4);
    assert!(described.partitions.iter().all(|p| p.lag == 0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_records_survive_a_restart() {
    let (s, _, first) = orders().await;
    Consumer::new(s.client.clone(), "orders", "g")
        .commit(&first)
        .await
        .unwrap();
    let mut s = s.restart().await;
    assert!(
        polled(&mut s.client, "orders", "g").await.is_empty(),
        "commits survive"
    );
    let replay = sorted(polled(&mut s.client, "orders", "other").await);
    assert_eq!(
        replay, first,
        "every acknowledged record, in order, after restart"
    );
    s.stop().await;
}
