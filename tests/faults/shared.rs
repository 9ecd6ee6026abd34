//! A shared group survives kill -9 of the broker (issue 14): delivery counts, locks still valid
//! and the position are restored, and no record is dead-lettered twice.

use std::collections::HashMap;

use obelisk::client::{BrokerClient, SharedStream, settlement};
use obelisk::proto as pb;
use tonic::transport::Channel;

use super::child::{self, Options};

type Client = BrokerClient<Channel>;

async fn take(c: &mut Client, member: &str, wait_ms: u32) -> Vec<pb::SharedDelivery> {
    c.shared_poll(pb::SharedPollRequest {
        group: "g".into(),
        topic: "t".into(),
        member_id: member.into(),
        max_records: 100,
        max_wait_ms: wait_ms,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .deliveries
}

async fn settle(c: &mut Client, member: &str, offset: u64, kind: pb::SettleKind) -> String {
    let res = c
        .settle(pb::SettleRequest {
            group: "g".into(),
            topic: "t".into(),
            member_id: member.into(),
            settlements: vec![pb::Settlement {
                partition: 0,
                offset,
                kind: kind as i32,
                delay_ms: None,
                reason: "failed".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(res[0].error.is_empty(), "{res:?}");
    res[0].outcome.clone()
}

async fn window(c: &mut Client) -> pb::SharedPartition {
    let d = c
        .describe_shared_group(pb::DescribeSharedGroupRequest {
            group: "g".into(),
            topic: "t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    d.partitions.into_iter().next().unwrap()
}

async fn dead_letter_origins(c: &mut Client) -> Vec<String> {
    c.fetch(pb::FetchRequest {
        topic: "g.dlq".into(),
        partition: 0,
        offset: 0,
        max_records: 100,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .records
    .iter()
    .map(|r| String::from_utf8(r.headers["obelisk-origin-offset"].to_vec()).unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_counts_and_locks_survive_kill_9_without_duplicate_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let broker = child::start(dir.path(), &Options::default()).await;
    let mut c = broker.client().await;
    c.create_topic(pb::CreateTopicRequest {
        name: "t".into(),
        config: Some(pb::TopicConfig {
            partitions: 1,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.create_shared_group(pb::CreateSharedGroupRequest {
        group: "g".into(),
        settings: Some(pb::SharedGroupSettings {
            ack_timeout_ms: 120_000,
            max_deliveries: 2,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.produce(pb::ProduceRequest {
        topic: "t".into(),
        records: (0..5)
            .map(|i| pb::ProducerRecord {
                value: format!("v{i}").into_bytes().into(),
                ..Default::default()
            })
            .collect(),
        idempotence: None,
    })
    .await
    .unwrap();
    // Member a works on its SharedConsume stream; the broker is killed while it is open.
    let mut a = SharedStream::open(&mut c, "t", "g", "a", 100)
        .await
        .unwrap();
    let mut first = Vec::new();
    while first.len() < 5 {
        first.extend(a.deliveries().await.unwrap().unwrap());
    }
    first.sort_by_key(|d| d.record.as_ref().unwrap().offset);
    a.push(settlement(
        &first[0],
        pb::SettleKind::Release,
        None,
        "failed",
    ));
    assert_eq!(a.settle().await.unwrap()[0].outcome, "available");
    let again = a.deliveries().await.unwrap().unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].deliveries, 2);
    a.accept(&first[1]);
    a.reject(&first[4], "failed");
    let res = a.settle().await.unwrap();
    let outcomes: Vec<_> = res.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["done", "dead_lettered"], "{res:?}");
    assert_eq!(dead_letter_origins(&mut c).await, vec!["4"]);
    broker.kill9();

    let broker = child::start(dir.path(), &Options::default()).await;
    let mut c = broker.client().await;
    let w = window(&mut c).await;
    assert_eq!(w.position, 0);
    assert_eq!(w.next, 5);
    assert_eq!(w.locked, 3, "{w:?}");
    let counts: HashMap<u64, u32> = w.deliveries.into_iter().collect();
    assert_eq!(counts, HashMap::from([(0, 2), (2, 1), (3, 1)]));
    // The locks are still a's: nobody else gets those records, and a can settle them.
    assert!(take(&mut c, "b", 300).await.is_empty());
    assert_eq!(settle(&mut c, "a", 3, pb::SettleKind::Accept).await, "done");
    // Its second delivery was the last: released now, it is dead-lettered.
    assert_eq!(
        settle(&mut c, "a", 0, pb::SettleKind::Release).await,
        "dead_lettered"
    );
    assert_eq!(settle(&mut c, "a", 2, pb::SettleKind::Accept).await, "done");
    assert_eq!(dead_letter_origins(&mut c).await, vec!["4", "0"]);
    let w = window(&mut c).await;
    assert_eq!((w.position, w.in_flight), (5, 0));
    broker.stop().await;
}
