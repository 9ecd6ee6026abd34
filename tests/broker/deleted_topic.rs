//! Readers waiting on a topic that gets deleted are told (NOT_FOUND) instead of hanging until
//! shutdown or their deadline. Each reader is deleted under only once it is waiting.

use std::time::Duration;

use obelisk::broker::{BrokerError, FetchRequest, ReadLimits, SubscribeRequest};

use crate::common::broker::TestBroker;
use crate::common::wait::spawn_waiting;
use crate::poll_req;

/// Long enough that only the deletion can end the wait within [`WITHIN`].
const FOREVER: Duration = Duration::from_secs(3600);
const WITHIN: Duration = Duration::from_secs(10);

async fn gone() -> TestBroker {
    let b = TestBroker::open().await;
    b.create("gone", 1).await;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_poll_is_told_the_topic_is_gone() {
    let b = gone().await;
    let mut req = poll_req("gone", "g");
    req.limits.max_wait = FOREVER;
    let polling = spawn_waiting({
        let broker = b.broker.clone();
        async move { broker.poll(req).await }
    })
    .await;
    assert_eq!(b.topic_watchers("gone"), 1, "the poll watches the topic");
    b.delete_topic("gone").await.unwrap();
    let polled = tokio::time::timeout(WITHIN, polling)
        .await
        .expect("poll returns")
        .unwrap();
    assert!(
        matches!(polled, Err(BrokerError::TopicNotFound(_))),
        "{polled:?}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_long_fetch_is_told_the_topic_is_gone() {
    let b = gone().await;
    let fetching = spawn_waiting({
        let broker = b.broker.clone();
        async move {
            broker
                .fetch(FetchRequest {
                    topic: "gone".into(),
                    partition: 0,
                    offset: 0,
                    limits: ReadLimits {
                        max_wait: FOREVER,
                        ..ReadLimits::default()
                    },
                })
                .await
        }
    })
    .await;
    b.delete_topic("gone").await.unwrap();
    let fetched = tokio::time::timeout(WITHIN, fetching)
        .await
        .expect("fetch returns")
        .unwrap();
    assert!(
        matches!(fetched, Err(BrokerError::TopicNotFound(_))),
        "{fetched:?}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_subscription_is_told_the_topic_is_gone_then_ends() {
    let b = gone().await;
    let mut sub = b
        .subscribe(SubscribeRequest {
            topic: "gone".into(),
            group: None,
            start: None,
            max_records_per_batch: 0,
            member: None,
        })
        .unwrap();
    assert_eq!(
        b.topic_watchers("gone"),
        1,
        "the subscription watches the topic"
    );
    let subscribed = spawn_waiting(async move {
        let first = sub.next_batch().await;
        (first, sub.next_batch().await)
    })
    .await;
    b.delete_topic("gone").await.unwrap();
    let (first, then) = tokio::time::timeout(WITHIN, subscribed)
        .await
        .expect("stream ends")
        .unwrap();
    assert!(
        matches!(first, Some(Err(BrokerError::TopicNotFound(_)))),
        "{first:?}"
    );
    assert!(then.is_none());
    b.shutdown().await;
}
