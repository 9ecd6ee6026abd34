//! Groups with members over gRPC (issue 13): the JoinGroup stream, the Rust GroupConsumer,
//! at-least-once across rebalances, fencing, the session timeout, DescribeGroup and DeleteGroup.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use obelisk::client::{
    BrokerClient, GroupConfig, GroupConsumer, NoListener, Partition, RebalanceListener,
};
use obelisk::proto as pb;
use pb::join_group_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::server::TestServer;
use crate::common::wait::PATIENCE;

type Seen = BTreeSet<(u32, u64)>;

async fn produce(c: &mut BrokerClient<Channel>, topic: &str, partitions: u32, per: usize) {
    for p in 0..partitions {
        let records = (0..per)
            .map(|i| pb::ProducerRecord {
                value: format!("{p}-{i}").into_bytes().into(),
                partition: Some(p),
                ..Default::default()
            })
            .collect();
        c.produce(pb::ProduceRequest {
            topic: topic.into(),
            records,
            idempotence: None,
        })
        .await
        .expect("produce");
    }
}

fn config(group: &str, topic: &str) -> GroupConfig {
    GroupConfig {
        max_wait_ms: 200,
        ..GroupConfig::new(group, &[topic])
    }
}

#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<String>>>);

impl RebalanceListener for Events {
    fn on_assigned(&mut self, p: &[Partition]) {
        self.0.lock().unwrap().push(format!("assigned {}", p.len()));
    }
    fn on_revoked(&mut self, p: &[Partition]) {
        self.0.lock().unwrap().push(format!("revoked {}", p.len()));
    }
}

async fn poll_into(c: &mut GroupConsumer, seen: &mut Vec<(u32, u64)>) -> usize {
    let records = c.poll().await.expect("poll");
    seen.extend(records.iter().map(|r| (r.partition, r.offset)));
    records.len()
}

#[tokio::test]
async fn group_consumers_split_partitions_and_deliver_at_least_once_across_rebalances() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(4)).await;
    produce(&mut s.client, "t", 4, 100).await;
    let events = Events::default();
    let mut a = GroupConsumer::join(s.client.clone(), config("g", "t"), Box::new(events.clone()))
        .await
        .expect("join");
    assert_eq!(a.assignment().len(), 4, "alone, it gets every partition");
    // A consumes some and commits them.
    let mut a_seen = Vec::new();
    while a_seen.len() < 150 {
        poll_into(&mut a, &mut a_seen).await;
    }
    a.commit().await.expect("commit");
    let committed: Seen = a_seen.iter().copied().collect();
    // B joins: A gives up two partitions at its next poll (committing them first).
    let mut b = GroupConsumer::join(
        s.client.clone(),
        config("g", "t"),
        Box::new(Events::default()),
    )
    .await
    .expect("join");
    let mut b_seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a_seen.len() + b_seen.len() < 400
        || a.assignment().len() != 2
        || b.assignment().len() != 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumed {}+{}",
            a_seen.len(),
            b_seen.len()
        );
        poll_into(&mut a, &mut a_seen).await;
        poll_into(&mut b, &mut b_seen).await;
    }
    assert_eq!(a.assignment().len(), 2);
    assert_eq!(b.assignment().len(), 2);
    let (a_parts, b_parts): (BTreeSet<u32>, BTreeSet<u32>) = (
        a.assignment().iter().map(|p| p.1).collect(),
        b.assignment().iter().map(|p| p.1).collect(),
    );
    assert!(a_parts.is_disjoint(&b_parts));
    let b_set: Seen = b_seen.iter().copied().collect();
    assert!(
        committed.is_disjoint(&b_set),
        "committed records are not delivered again"
    );
    let all: Seen = a_seen.iter().chain(&b_seen).copied().collect();
    assert_eq!(all.len(), 400, "every record delivered");
    assert_eq!(
        a_seen.len() + b_seen.len(),
        400,
        "a cooperative move delivers nothing twice"
    );
    assert!(events.0.lock().unwrap().contains(&"revoked 2".to_string()));
    // A dies without committing what it polled last: those records go to B.
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    produce(&mut s.client, "t", 4, 10).await;
    let mut a_last = Vec::new();
    while a_last.is_empty() {
        poll_into(&mut a, &mut a_last).await;
    }
    drop(a);
    let mut b_after = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b_after.len() < 40 || b.assignment().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B got {}",
            b_after.len()
        );
        poll_into(&mut b, &mut b_after).await;
    }
    let b_after: Seen = b_after.into_iter().collect();
    for r in &a_last {
        assert!(
            b_after.contains(r),
            "uncommitted {r:?} is delivered to the next owner"
        );
    }
    b.close().await.expect("close");
}

/// A raw JoinGroup stream: the request sender and the response stream.
async fn raw_join(
    c: &mut BrokerClient<Channel>,
    first: pb::JoinGroupRequest,
) -> (
    mpsc::Sender<pb::JoinGroupRequest>,
    Result<tonic::Streaming<pb::JoinGroupResponse>, tonic::Status>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    let res = c
        .join_group(ReceiverStream::new(rx))
        .await
        .map(tonic::Response::into_inner);
    (tx, res)
}

fn join_msg(group: &str, topic: &str) -> pb::JoinGroupRequest {
    pb::JoinGroupRequest {
        kind: Some(Kind::Join(pb::JoinGroupJoin {
            group: group.into(),
            topics: vec![topic.into()],
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn a_silent_member_is_removed_after_the_session_timeout() {
    let mut s = TestServer::start_with(|c| c.group_session_timeout_ms = 400).await;
    s.create_topic("t", Some(2)).await;
    let (_tx, stream) = raw_join(&mut s.client, join_msg("g", "t")).await;
    let mut stream = stream.expect("joined");
    let first = stream.message().await.unwrap().expect("assignment");
    assert_eq!(first.session_timeout_ms, 400);
    assert_eq!(
        first
            .assigned
            .iter()
            .map(|t| t.partitions.len())
            .sum::<usize>(),
        2
    );
    // No heartbeat: the stream ends with FAILED_PRECONDITION once the member expired.
    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("ended");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().starts_with("fenced: rejoin"), "{status:?}");
}

#[tokio::test]
async fn join_group_refuses_a_stream_that_does_not_start_with_join() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(1)).await;
    let hb = pb::JoinGroupRequest {
        kind: Some(Kind::Heartbeat(pb::JoinGroupHeartbeat {})),
    };
    let (_tx, res) = raw_join(&mut s.client, hb).await;
    let status = match res {
        Err(status) => status,
        Ok(mut stream) => stream.message().await.unwrap_err(),
    };
    assert_eq!(status.code(), Code::InvalidArgument);
    let (_tx, res) = raw_join(&mut s.client, join_msg("g", "nope")).await;
    let status = match res {
        Err(status) => status,
        Ok(mut stream) => stream.message().await.unwrap_err(),
    };
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn a_fenced_commit_fails_and_describe_group_shows_the_members() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(4)).await;
    produce(&mut s.client, "t", 4, 5).await;
    let mut a = GroupConsumer::join(
        s.client.clone(),
        config("g", "t"),
        Box::new(Events::default()),
    )
    .await
    .unwrap();
    let mut b = GroupConsumer::join(
        s.client.clone(),
        config("g", "t"),
        Box::new(Events::default()),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a.assignment().len() != 2 || b.assignment().len() != 2 {
        assert!(tokio::time::Instant::now() < deadline);
        a.poll().await.unwrap();
        b.poll().await.unwrap();
    }
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    let describe = |mut c: BrokerClient<Channel>| async move {
        c.describe_group(pb::DescribeGroupRequest { group: "g".into() })
            .await
            .unwrap()
            .into_inner()
    };
    let before = describe(s.client.clone()).await;
    assert_eq!(before.state, "stable");
    assert_eq!(before.members.len(), 2);
    assert_eq!(before.topics, vec!["t".to_string()]);
    for m in &before.members {
        assert_eq!(
            m.partitions
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>(),
            2
        );
        assert!(m.connected);
        assert_eq!(m.kind, "stream");
        assert!(!m.address.is_empty());
    }
    // A commits B's partition: FAILED_PRECONDITION, nothing moves.
    let (a_id, a_epoch) = a.member().map(|(i, e)| (i.to_string(), e)).unwrap();
    let theirs = b.assignment()[0].1;
    let err = s
        .client
        .commit(pb::CommitRequest {
            topic: "t".into(),
            group: "g".into(),
            offsets: vec![pb::PartitionOffset {
                partition: theirs,
                offset: 0,
            }],
            member_id: a_id.clone(),
            member_epoch: a_epoch,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("rejoin"), "{err:?}");
    // Memberless poll of the group: FAILED_PRECONDITION with what to do.
    let err = s
        .client
        .poll(pb::PollRequest {
            topic: "t".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("member"), "{err:?}");
    let after = describe(s.client.clone()).await;
    let offsets = |d: &pb::DescribeGroupResponse| -> BTreeMap<u32, u64> {
        d.partitions
            .iter()
            .map(|p| (p.partition, p.committed_offset))
            .collect()
    };
    assert_eq!(
        offsets(&before),
        offsets(&after),
        "the fenced commit changed nothing"
    );
    assert!(offsets(&after).values().all(|&o| o == 5));
    // DeleteGroup is refused while they are connected.
    let err = s
        .client
        .delete_group(pb::DeleteGroupRequest { group: "g".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    a.close().await.unwrap();
    b.close().await.unwrap();
    s.client
        .delete_group(pb::DeleteGroupRequest { group: "g".into() })
        .await
        .expect("deleted once nobody is connected");
    let err = s
        .client
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_removed_member_is_told_it_lost_its_partitions_and_rejoins() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(2)).await;
    produce(&mut s.client, "t", 2, 3).await;
    #[derive(Default, Clone)]
    struct Lost(Arc<Mutex<Vec<usize>>>);
    impl RebalanceListener for Lost {
        fn on_lost(&mut self, p: &[Partition]) {
            self.0.lock().unwrap().push(p.len());
        }
    }
    let lost = Lost::default();
    let mut a = GroupConsumer::join(s.client.clone(), config("g", "t"), Box::new(lost.clone()))
        .await
        .unwrap();
    let first = a.member().map(|(id, _)| id.to_string()).unwrap();
    // An operator removes it (as a session timeout would): its stream ends fenced.
    s.server
        .broker
        .leave_group("g", &first)
        .await
        .expect("removed");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while a.member().map(|(id, _)| id.to_string()) == Some(first.clone()) || seen.len() < 6 {
        assert!(tokio::time::Instant::now() < deadline, "never rejoined");
        poll_into(&mut a, &mut seen).await;
    }
    assert_eq!(
        *lost.0.lock().unwrap(),
        vec![2],
        "told of the two partitions it lost"
    );
    assert_eq!(a.assignment().len(), 2, "and got them back as a new member");
    a.close().await.unwrap();
}

#[tokio::test]
async fn stream_mode_members_follow_their_assignment_at_least_once() {
    let mut s = TestServer::start().await;
    s.create_topic("t", Some(4)).await;
    produce(&mut s.client, "t", 4, 50).await;
    let stream = |c: GroupConfig| GroupConfig { stream: true, ..c };
    let mut a = GroupConsumer::join(
        s.client.clone(),
        stream(config("g", "t")),
        Box::new(NoListener),
    )
    .await
    .unwrap();
    let mut a_seen = Vec::new();
    while a_seen.len() < 60 {
        poll_into(&mut a, &mut a_seen).await;
    }
    a.commit().await.unwrap();
    let committed: Seen = a_seen.iter().copied().collect();
    let mut b = GroupConsumer::join(
        s.client.clone(),
        stream(config("g", "t")),
        Box::new(NoListener),
    )
    .await
    .unwrap();
    let mut b_seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let all: Seen = a_seen.iter().chain(&b_seen).copied().collect();
        if all.len() == 200 && a.assignment().len() == 2 && b.assignment().len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 200",
            all.len()
        );
        poll_into(&mut a, &mut a_seen).await;
        poll_into(&mut b, &mut b_seen).await;
    }
    let b_set: Seen = b_seen.iter().copied().collect();
    assert!(
        committed.is_disjoint(&b_set),
        "committed records are not delivered again"
    );
    // New records reach whichever member owns their partition, and only it.
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    produce(&mut s.client, "t", 4, 5).await;
    let (a_parts, b_parts): (BTreeSet<u32>, BTreeSet<u32>) = (
        a.assignment().iter().map(|p| p.1).collect(),
        b.assignment().iter().map(|p| p.1).collect(),
    );
    let (mut a_new, mut b_new) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while a_new.len() + b_new.len() < 20 {
        assert!(tokio::time::Instant::now() < deadline);
        poll_into(&mut a, &mut a_new).await;
        poll_into(&mut b, &mut b_new).await;
    }
    assert!(a_new.iter().all(|(p, _)| a_parts.contains(p)));
    assert!(b_new.iter().all(|(p, _)| b_parts.contains(p)));
    a.close().await.unwrap();
    b.close().await.unwrap();
}
