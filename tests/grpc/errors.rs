//! Every error has its code (DESIGN.md's table) and a message a person can act on. One error per
//! test, each on a server with auto-creation off, records up to 1 KiB and messages up to 1 MiB.

use obelisk::proto as pb;
use tonic::Code;

use crate::common::server::TestServer;
use crate::{poll, record};

/// Auto-creation off, `max_record_bytes` 1024, `max_message_bytes` 1 MiB, topic "t" with 2
/// partitions.
async fn strict() -> TestServer {
    let mut s = TestServer::start_with(|c| {
        c.auto_create_topics = false;
        c.max_record_bytes = 1024;
        c.max_message_bytes = 1 << 20;
    })
    .await;
    s.create_topic("t", Some(2)).await;
    s
}

fn produce(topic: &str, records: Vec<pb::ProducerRecord>) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.into(),
        records,
        idempotence: None,
    }
}

/// [`strict`] with one record in "t"; returns the partition it went to.
async fn strict_with_one_record() -> (TestServer, u32) {
    let mut s = strict().await;
    s.client
        .produce(produce("t", vec![record("a", "1")]))
        .await
        .unwrap();
    let p = s
        .client
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await
        .unwrap()
        .into_inner();
    let part = p
        .topic
        .unwrap()
        .partitions
        .into_iter()
        .find(|p| p.log_end_offset == 1)
        .unwrap()
        .partition;
    (s, part)
}

fn fetch(partition: u32, offset: u64) -> pb::FetchRequest {
    pb::FetchRequest {
        topic: "t".into(),
        partition,
        offset,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_topic_name_is_invalid_argument() {
    let mut s = strict().await;
    let e = s
        .client
        .produce(produce("../escape", vec![record("", "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("invalid topic name"),
        "{}",
        e.message()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_not_found_and_says_to_create_it() {
    let mut s = strict().await;
    let e = s
        .client
        .produce(produce("missing", vec![record("", "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("does not exist; create it first"),
        "{}",
        e.message()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topic_answers_with_its_partitions_and_a_second_time_already_exists() {
    let mut s = TestServer::start_with(|c| c.auto_create_topics = false).await;
    let created = s.create_topic("t", Some(2)).await;
    assert_eq!(created.partitions.len(), 2);
    let e = s
        .client
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_produce_is_invalid_argument() {
    let mut s = strict().await;
    let e = s.client.produce(produce("t", vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_record_bytes_is_invalid_argument() {
    let mut s = strict().await;
    let e = s
        .client
        .produce(produce("t", vec![record("", &"x".repeat(2000))]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("maximum record size"),
        "{}",
        e.message()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_grpc_limit_is_refused_by_the_transport() {
    let mut s = strict().await;
    let e = s
        .client
        .produce(produce("t", vec![record("", &"x".repeat(2 << 20))]))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::InvalidArgument,
        "over the gRPC message limit: {e:?}"
    );
    assert!(
        e.message().contains("message length too large"),
        "{}",
        e.message()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_partition_that_does_not_exist_is_invalid_argument() {
    let mut s = strict().await;
    let mut explicit = record("", "x");
    explicit.partition = Some(7);
    let e = s
        .client
        .produce(produce("t", vec![explicit]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_past_the_end_is_out_of_range() {
    let (mut s, part) = strict_with_one_record().await;
    let e = s.client.fetch(fetch(part, 9)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert!(e.message().contains("out of range"), "{}", e.message());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_from_the_start_answers_with_the_log_bounds() {
    let (mut s, part) = strict_with_one_record().await;
    let got = s.client.fetch(fetch(part, 0)).await.unwrap().into_inner();
    assert_eq!(
        (got.records.len(), got.log_start_offset, got.log_end_offset),
        (1, 0, 1)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_from_a_partition_that_does_not_exist_is_invalid_argument() {
    let (mut s, _) = strict_with_one_record().await;
    let e = s.client.fetch(fetch(9, 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_past_the_end_is_out_of_range() {
    let (mut s, part) = strict_with_one_record().await;
    let e = s
        .client
        .commit(pb::CommitRequest {
            topic: "t".into(),
            group: "g".into(),
            offsets: vec![pb::PartitionOffset {
                partition: part,
                offset: 5,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_with_a_bad_group_name_is_invalid_argument() {
    let mut s = strict().await;
    let e = s.client.poll(poll("t", "bad group")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_of_an_unknown_topic_is_not_found() {
    let mut s = strict().await;
    let e = s.client.poll(poll("nope", "g")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_an_unknown_group_is_not_found() {
    let mut s = strict().await;
    let e = s
        .client
        .describe_group(pb::DescribeGroupRequest {
            group: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describing_an_unknown_topic_is_not_found() {
    let mut s = strict().await;
    let e = s
        .client
        .describe_topic(pb::DescribeTopicRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_an_unknown_topic_is_not_found() {
    let mut s = strict().await;
    let e = s
        .client
        .subscribe(pb::SubscribeRequest {
            topic: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_delete_topics_and_a_second_delete_is_not_found() {
    let (mut s, _) = strict_with_one_record().await;
    let topics = s
        .client
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["t"]
    );
    s.client
        .delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await
        .unwrap();
    let e = s
        .client
        .delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        s.client
            .list_topics(pb::ListTopicsRequest {})
            .await
            .unwrap()
            .into_inner()
            .topics
            .is_empty()
    );
    s.stop().await;
}
