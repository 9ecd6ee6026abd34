//! A produce spanning partitions: queued whole or not at all; a storage failure during its write
//! names the partitions whose records were stored anyway.

use obelisk::broker::{BrokerError, ProduceRecord};

use crate::common::broker::TestBroker;

fn to(partition: u32, value: &str) -> ProduceRecord {
    ProduceRecord {
        key: Default::default(),
        value: value.as_bytes().to_vec().into(),
        headers: Vec::new(),
        timestamp: None,
        partition: Some(partition),
    }
}

fn log_ends(b: &TestBroker) -> Vec<u64> {
    b.topic_snapshot("t")
        .unwrap()
        .iter()
        .map(|p| p.log_end)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_partition_refuses_the_whole_request_before_anything_is_stored() {
    let b = TestBroker::open().await;
    b.create("t", 2).await;
    assert!(b.inject_write_failure("t", 1));
    let err = b.produce("t", vec![to(1, "x")]).await.unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err}");
    let err = b
        .produce("t", vec![to(0, "a"), to(1, "b"), to(0, "c")])
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable(_)), "{err}");
    assert_eq!(log_ends(&b), vec![0, 0], "partition 0 stored nothing of it");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_during_the_request_says_which_partitions_were_stored() {
    let b = TestBroker::open().await;
    b.create("t", 3).await;
    // Partition 1 is still writable when the request is queued; its write then fails.
    assert!(b.inject_write_failure("t", 1));
    let err = b
        .produce("t", vec![to(0, "a"), to(1, "b"), to(2, "c")])
        .await
        .unwrap_err();
    let BrokerError::Unavailable(message) = &err else {
        panic!("expected UNAVAILABLE, got {err}");
    };
    assert!(
        message.contains("partition(s) 0, 2 of t were stored"),
        "{message}"
    );
    assert_eq!(log_ends(&b), vec![1, 0, 1]);
    b.shutdown().await;
}
