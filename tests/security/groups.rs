//! Groups with members under ACLs: joining needs consume on the group and on its topics,
//! describing needs describe, deleting needs admin; the same over REST's /consumer-groups.

use obelisk::proto as pb;
use pb::{AclEffect, AclOperation, AclPattern, AclResourceType};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::support::*;

fn group_acl(principal: &str, group: &str, op: AclOperation) -> pb::AclRule {
    acl(
        principal,
        AclResourceType::Group,
        group,
        AclPattern::Literal,
        op,
        AclEffect::Allow,
    )
}

/// Opens a JoinGroup stream as the holder of `token`; returns the first answer (or the refusal)
/// and the sender that keeps the membership alive.
async fn join(
    s: &Secure,
    token: &str,
    group: &str,
    topic: &str,
) -> (
    Result<pb::JoinGroupResponse, tonic::Status>,
    mpsc::Sender<pb::JoinGroupRequest>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::JoinGroupRequest {
        kind: Some(pb::join_group_request::Kind::Join(pb::JoinGroupJoin {
            group: group.into(),
            topics: vec![topic.into()],
            instance_id: String::new(),
            client_id: "security-test".into(),
        })),
    })
    .await
    .expect("queue the join");
    let mut client = s.grpc(Some(token)).await;
    let first = match client.join_group(ReceiverStream::new(rx)).await {
        Ok(resp) => resp
            .into_inner()
            .message()
            .await
            .and_then(|m| m.ok_or_else(|| tonic::Status::unknown("stream ended"))),
        Err(status) => Err(status),
    };
    (first, tx)
}

async fn create_topic(s: &Secure, name: &str) {
    s.root()
        .await
        .create_topic(pb::CreateTopicRequest {
            name: name.into(),
            config: Some(pb::TopicConfig {
                partitions: 2,
                ..Default::default()
            }),
        })
        .await
        .expect("root creates the topic");
}

#[tokio::test]
async fn joining_needs_consume_on_the_group_and_its_topics() {
    let s = Secure::start().await;
    create_topic(&s, "orders").await;

    let (first, _tx) = join(&s, ALICE, "billing", "orders").await;
    assert_eq!(first.expect_err("no ACL").code(), Code::PermissionDenied);

    s.allow(allow_topic("alice", "orders", AclOperation::Consume))
        .await;
    let (first, _tx) = join(&s, ALICE, "billing", "orders").await;
    let err = first.expect_err("the group is not allowed");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("group \"billing\""), "{err}");

    s.allow(group_acl("alice", "billing", AclOperation::Consume))
        .await;
    let (first, tx) = join(&s, ALICE, "billing", "orders").await;
    let member = first.expect("alice joins");
    let assigned: usize = member.assigned.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(assigned, 2, "the only member owns both partitions");

    // Bob may consume the topic but not the group: he can neither join nor see its members.
    s.allow(allow_topic("bob", "orders", AclOperation::Consume))
        .await;
    let (first, _bob) = join(&s, BOB, "billing", "orders").await;
    assert_eq!(first.expect_err("denied").code(), Code::PermissionDenied);
    let err = s
        .grpc(Some(BOB))
        .await
        .describe_group(pb::DescribeGroupRequest {
            group: "billing".into(),
        })
        .await
        .expect_err("bob may not describe the group");
    assert_eq!(err.code(), Code::PermissionDenied);

    // Consume on the group is not admin: alice cannot delete it.
    drop(tx);
    let err = s
        .grpc(Some(ALICE))
        .await
        .delete_group(pb::DeleteGroupRequest {
            group: "billing".into(),
        })
        .await
        .expect_err("deleting needs admin");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_consumer_group_endpoints_are_authorized_in_the_core() {
    let s = Secure::start().await;
    create_topic(&s, "orders").await;
    let h = s.https().await;
    let body = json!({"group_id": "web", "topics": ["orders"]});

    let r = h
        .call("POST", "/consumer-groups", None, Some(body.clone()))
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    let r = h
        .call("POST", "/consumer-groups", Some(ALICE), Some(body.clone()))
        .await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "permission_denied");

    s.allow(allow_topic("alice", "orders", AclOperation::Consume))
        .await;
    s.allow(group_acl("alice", "web", AclOperation::Consume))
        .await;
    let r = h
        .call("POST", "/consumer-groups", Some(ALICE), Some(body))
        .await;
    assert_eq!(r.status / 100, 2, "{}", r.json);
    let r = h.call("GET", "/consumer-groups/web", Some(BOB), None).await;
    assert_eq!(r.status, 403, "{}", r.json);
    let r = h
        .call("DELETE", "/consumer-groups/web", Some(ALICE), None)
        .await;
    assert_eq!(r.status, 403, "deleting needs admin: {}", r.json);
    let r = h
        .call("GET", "/consumer-groups/web", Some(ALICE), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
}
