//! Every error is typed (a [`BrokerError`] variant the protocols map) and says what is wrong.
//! One error per test, each on a broker with auto-creation off and a 1000-byte record limit.

use obelisk::broker::{BrokerError, FetchRequest, ProduceRecord, ReadLimits};

use crate::common::broker::{TestBroker, rec, topic_config};
use crate::poll_req;

/// Auto-creation off, records up to 1000 bytes, topic "t" with 2 partitions.
async fn strict() -> TestBroker {
    let b = TestBroker::open_with(|c| {
        c.auto_create_topics = false;
        c.max_record_bytes = 1000;
    })
    .await;
    b.create("t", 2).await;
    b
}

fn fetch(offset: u64) -> FetchRequest {
    FetchRequest {
        topic: "t".into(),
        partition: 0,
        offset,
        limits: ReadLimits::default(),
    }
}

/// "t" with one record in partition 0.
async fn strict_with_one_record() -> TestBroker {
    let b = strict().await;
    b.produce(
        "t",
        vec![ProduceRecord {
            partition: Some(0),
            ..rec("", "x")
        }],
    )
    .await
    .unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_name_outside_the_rules_is_refused_and_touches_no_file() {
    let b = strict().await;
    let e = b.produce("../etc", vec![rec("", "x")]).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidName { .. }), "{e}");
    assert!(!b.dir.path().join("etc").exists());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_not_found_with_auto_creation_off() {
    let b = strict().await;
    let e = b.produce("nope", vec![rec("", "x")]).await.unwrap_err();
    assert!(matches!(e, BrokerError::TopicNotFound(_)), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_topic_twice_says_it_exists() {
    let b = strict().await;
    let e = b.create_topic("t", topic_config(2)).await.unwrap_err();
    assert!(matches!(e, BrokerError::TopicExists(_)), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_produce_is_invalid() {
    let b = strict().await;
    let e = b.produce("t", vec![]).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidArgument(_)), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_maximum_is_too_large() {
    let b = strict().await;
    let e = b
        .produce("t", vec![rec("", &"x".repeat(2000))])
        .await
        .unwrap_err();
    assert!(
        matches!(e, BrokerError::RecordTooLarge { max: 1000, .. }),
        "{e}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_does_not_exist_names_the_valid_range() {
    let b = strict().await;
    let e = b
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
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_beyond_the_log_end_is_out_of_range() {
    let b = strict_with_one_record().await;
    let e = b.commit("t", "g", &[(0, 2)]).await.unwrap_err();
    assert!(
        matches!(e, BrokerError::OffsetOutOfRange { end: 1, .. }),
        "{e}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_beyond_the_log_end_is_out_of_range_and_at_the_end_is_empty() {
    let b = strict_with_one_record().await;
    let e = b.fetch(fetch(5)).await.unwrap_err();
    assert!(matches!(e, BrokerError::OffsetOutOfRange { .. }), "{e}");
    assert!(b.fetch(fetch(1)).await.unwrap().records.is_empty());
    assert_eq!(b.fetch(fetch(0)).await.unwrap().records.len(), 1);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_an_unknown_group_is_not_found() {
    let b = strict().await;
    let e = b.describe_group("never").unwrap_err();
    assert!(matches!(e, BrokerError::GroupNotFound(_)), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_name_outside_the_rules_is_refused() {
    let b = strict().await;
    let e = b.poll(poll_req("t", "bad/group")).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidName { .. }), "{e}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_is_gone_from_list_and_describe() {
    let b = strict_with_one_record().await;
    b.delete_topic("t").await.unwrap();
    assert!(b.list_topics().is_empty());
    assert!(matches!(
        b.describe_topic("t"),
        Err(BrokerError::TopicNotFound(_))
    ));
    b.shutdown().await;
}
