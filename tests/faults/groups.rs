//! Group membership survives kill -9 of the broker (issue 13): a static member keeps its
//! partitions and gets them back when it rejoins, a dynamic member's old incarnation is fenced,
//! and committed offsets are where they were.

use obelisk::client::{GroupConfig, GroupConsumer, NoListener};
use obelisk::proto as pb;
use tonic::Code;

use super::child::{self, Options, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_commits_survive_kill_9_of_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = child::start(dir.path(), &Options::default()).await;
    let mut c = broker.client().await;
    c.create_topic(pb::CreateTopicRequest {
        name: "t".into(),
        config: Some(pb::TopicConfig {
            partitions: 4,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.produce(pb::ProduceRequest {
        topic: "t".into(),
        records: (0..4)
            .map(|p| pb::ProducerRecord {
                value: b"v".to_vec().into(),
                partition: Some(p),
                ..Default::default()
            })
            .collect(),
        idempotence: None,
    })
    .await
    .unwrap();
    let static_config = GroupConfig {
        instance_id: Some("host-a".into()),
        max_wait_ms: 200,
        ..GroupConfig::new("g", &["t"])
    };
    let dynamic_config = GroupConfig {
        max_wait_ms: 200,
        ..GroupConfig::new("g", &["t"])
    };
    let mut a = GroupConsumer::join(c.clone(), static_config.clone(), Box::new(NoListener))
        .await
        .unwrap();
    let mut b = GroupConsumer::join(c.clone(), dynamic_config, Box::new(NoListener))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = 0;
    while a.assignment().len() != 2 || b.assignment().len() != 2 || seen < 4 {
        assert!(tokio::time::Instant::now() < deadline);
        seen += a.poll().await.unwrap().len() + b.poll().await.unwrap().len();
    }
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let a_parts = a.assignment();
    let (a_id, _) = a.member().map(|(i, e)| (i.to_string(), e)).unwrap();
    let (b_id, b_epoch) = b.member().map(|(i, e)| (i.to_string(), e)).unwrap();
    std::mem::forget(a);
    std::mem::forget(b);
    broker.kill9();

    let broker = child::start(dir.path(), &Options::default()).await;
    let mut c = broker.client().await;
    let d = c
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.members.len(), 1, "the dynamic member is gone: {d:?}");
    assert_eq!(d.members[0].member_id, a_id);
    assert_eq!(d.members[0].instance_id, "host-a");
    assert!(!d.members[0].connected);
    assert!(
        d.partitions.iter().all(|p| p.committed_offset == 1),
        "{d:?}"
    );
    // The dynamic member's old incarnation is fenced.
    let err = c
        .poll(pb::PollRequest {
            topic: "t".into(),
            group: "g".into(),
            member_id: b_id,
            member_epoch: b_epoch,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // The static member comes back: its partitions, then the rest.
    let back = GroupConsumer::join(c.clone(), static_config, Box::new(NoListener))
        .await
        .unwrap();
    assert_eq!(back.member().unwrap().0, a_id);
    let now = back.assignment();
    assert!(
        a_parts.iter().all(|p| now.contains(p)),
        "{a_parts:?} in {now:?}"
    );
    assert_eq!(now.len(), 4);
    back.close().await.unwrap();
    broker.stop().await;
}
