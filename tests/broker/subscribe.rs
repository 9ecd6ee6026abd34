//! Subscriptions: new records streamed in order, the end at shutdown.

use obelisk::broker::{Position, SubscribeRequest};

use crate::common::broker::{TestBroker, rec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_streams_new_records_in_order() {
    let b = TestBroker::open().await;
    b.create("t", 3).await;
    b.produce("t", vec![rec("before", "0")]).await.unwrap();
    let mut sub = b
        .subscribe(SubscribeRequest {
            topic: "t".into(),
            group: None,
            start: Some(Position::Latest),
            max_records_per_batch: 0,
            member: None,
        })
        .unwrap();
    let producer = tokio::spawn({
        let broker = b.broker.clone();
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
    b.shutdown().await;
    assert!(
        sub.next_batch().await.is_none(),
        "subscription ends at shutdown"
    );
}
