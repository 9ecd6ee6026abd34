//! Subscribe: new records streamed in order, per group from its position, and the server's state
//! released when the client cancels.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use obelisk::proto as pb;

use crate::common::server::TestServer;
use crate::common::wait;
use crate::{pos, record};

/// Records produced after the subscriptions start.
const N: usize = 200;

type Stream = tonic::Streaming<pb::SubscribeResponse>;

/// Topic "s" (3 partitions) holding one record "old"; then three subscriptions (from the latest
/// position, and groups "g1" and "g2" from their empty committed positions) and [`N`] records
/// produced one per request, keyed `key0`…`key10`, valued `0`…`N-1`.
async fn subscribed() -> (TestServer, [Stream; 3]) {
    let mut s = TestServer::start().await;
    s.create_topic("s", Some(3)).await;
    s.client
        .produce(pb::ProduceRequest {
            topic: "s".into(),
            records: vec![record("old", "old")],
            idempotence: None,
        })
        .await
        .unwrap();
    let sub = |group: &str, start| pb::SubscribeRequest {
        topic: "s".into(),
        group: group.into(),
        start,
        max_records_per_message: 0,
        ..Default::default()
    };
    let live = s
        .client
        .subscribe(sub("", pos(pb::position::Target::Latest(true))))
        .await
        .unwrap()
        .into_inner();
    let g1 = s
        .client
        .subscribe(sub("g1", None))
        .await
        .unwrap()
        .into_inner();
    let g2 = s
        .client
        .subscribe(sub("g2", None))
        .await
        .unwrap()
        .into_inner();
    for i in 0..N {
        s.client
            .produce(pb::ProduceRequest {
                topic: "s".into(),
                records: vec![record(&format!("key{}", i % 11), &i.to_string())],
                idempotence: None,
            })
            .await
            .unwrap();
    }
    (s, [live, g1, g2])
}

async fn collect(s: &mut Stream, n: usize) -> Vec<pb::Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("records arrive")
            .unwrap()
            .unwrap();
        out.extend(msg.records);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_latest_only_new_records_arrive_in_order() {
    let (s, [mut live, _, _]) = subscribed().await;
    let got = collect(&mut live, N).await;
    assert_eq!(got.len(), N);
    assert!(got.iter().all(|r| r.value != Bytes::from_static(b"old")));
    for p in 0..3 {
        let offs: Vec<u64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order per partition"
        );
    }
    // Within each key, values arrive in produce order.
    let mut last: HashMap<Bytes, i64> = HashMap::new();
    for r in &got {
        let v: i64 = std::str::from_utf8(&r.value).unwrap().parse().unwrap();
        let prev = last.insert(r.key.clone(), v);
        assert!(prev.is_none_or(|p| p < v));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_group_sees_everything() {
    let (s, [_, mut g1, mut g2]) = subscribed().await;
    assert_eq!(collect(&mut g1, N + 1).await.len(), N + 1);
    assert_eq!(collect(&mut g2, N + 1).await.len(), N + 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_subscriptions_release_their_server_side_state() {
    let (s, [mut live, mut g1, mut g2]) = subscribed().await;
    collect(&mut live, N).await;
    collect(&mut g1, N + 1).await;
    collect(&mut g2, N + 1).await;
    assert_eq!(s.server.broker.topic_watchers("s"), 3);
    drop((live, g1, g2));
    wait::until("released", || s.server.broker.topic_watchers("s") == 0).await;
    s.stop().await;
}
