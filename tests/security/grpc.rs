//! gRPC: UNAUTHENTICATED without (valid) credentials, PERMISSION_DENIED without an ACL (and
//! nothing written), literal and prefix ACLs, deny wins, lists filtered, ACL admin RPCs.

use obelisk::proto as pb;
use pb::{AclEffect, AclOperation, AclPattern, AclResourceType};
use tonic::Code;

use super::support::*;

#[tokio::test]
async fn no_token_or_a_wrong_one_is_unauthenticated() {
    let s = Secure::start().await;
    for token in [None, Some("not-a-token")] {
        let err = s
            .grpc(token)
            .await
            .produce(produce("t", "v"))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{token:?}: {err}");
        let err = s
            .grpc(token)
            .await
            .list_topics(pb::ListTopicsRequest {})
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    assert_eq!(s.stored("t").await, 0);
}

#[tokio::test]
async fn a_token_without_an_acl_is_denied_and_nothing_is_written() {
    let s = Secure::start().await;
    let mut alice = s.grpc(Some(ALICE)).await;
    let err = alice
        .produce(produce("orders", "v"))
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(
        err.message().contains("alice") && err.message().contains("produce"),
        "{err}"
    );
    assert_eq!(
        s.stored("orders").await,
        0,
        "nothing written, no topic auto-created"
    );
    // On a ProduceStream each batch is refused in its ack, and the stream goes on.
    let batches = tokio_stream::iter((0..2u64).map(|sequence| pb::ProduceStreamRequest {
        topic: "orders".into(),
        records: vec![record("v")],
        sequence,
        idempotence: None,
    }));
    let mut acks = alice
        .produce_stream(batches)
        .await
        .expect("stream opens")
        .into_inner();
    for sequence in 0..2u64 {
        let ack = acks
            .message()
            .await
            .expect("ack")
            .expect("an ack per batch");
        assert_eq!(ack.sequence, sequence);
        let error = ack.error.expect("refused");
        assert_eq!(
            error.code,
            Code::PermissionDenied as i32,
            "{}",
            error.message
        );
    }
    assert_eq!(s.stored("orders").await, 0);
    let err = alice
        .subscribe(pb::SubscribeRequest {
            topic: "orders".into(),
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = alice
        .poll(pb::PollRequest {
            topic: "orders".into(),
            group: "g".into(),
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn with_the_acls_produce_and_consume_work() {
    let s = Secure::start().await;
    s.allow(allow_topic("alice", "orders", AclOperation::Produce))
        .await;
    s.allow(allow_topic("bob", "orders", AclOperation::Consume))
        .await;
    s.allow(acl(
        "bob",
        AclResourceType::Group,
        "billing",
        AclPattern::Literal,
        AclOperation::Consume,
        AclEffect::Allow,
    ))
    .await;
    let mut alice = s.grpc(Some(ALICE)).await;
    alice
        .produce(produce("orders", "one"))
        .await
        .expect("alice produces");
    let mut bob = s.grpc(Some(BOB)).await;
    let err = bob
        .produce(produce("orders", "x"))
        .await
        .expect_err("bob may not produce");
    assert_eq!(err.code(), Code::PermissionDenied);
    let poll = |group: &str| pb::PollRequest {
        topic: "orders".into(),
        group: group.into(),
        max_wait_ms: 100,
        ..Default::default()
    };
    let records = bob
        .poll(poll("billing"))
        .await
        .expect("bob polls")
        .into_inner()
        .records;
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].value[..], b"one");
    let err = bob
        .poll(poll("other"))
        .await
        .expect_err("group not allowed");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("group \"other\""), "{err}");
    assert_eq!(s.stored("orders").await, 1);
}

#[tokio::test]
async fn prefix_acls_cover_every_topic_under_the_prefix() {
    let s = Secure::start().await;
    s.allow(acl(
        "alice",
        AclResourceType::Topic,
        "logs.",
        AclPattern::Prefix,
        AclOperation::Produce,
        AclEffect::Allow,
    ))
    .await;
    let mut alice = s.grpc(Some(ALICE)).await;
    alice
        .produce(produce("logs.app", "v"))
        .await
        .expect("under the prefix");
    alice
        .produce(produce("logs.db", "v"))
        .await
        .expect("under the prefix");
    let err = alice
        .produce(produce("logsx", "v"))
        .await
        .expect_err("not under it");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(s.stored("logsx").await, 0);
}

#[tokio::test]
async fn deny_wins_over_a_wildcard_allow() {
    let s = Secure::start().await;
    s.allow(acl(
        "*",
        AclResourceType::Topic,
        "*",
        AclPattern::Literal,
        AclOperation::Produce,
        AclEffect::Allow,
    ))
    .await;
    s.allow(acl(
        "bob",
        AclResourceType::Topic,
        "secret",
        AclPattern::Prefix,
        AclOperation::Produce,
        AclEffect::Deny,
    ))
    .await;
    s.grpc(Some(ALICE))
        .await
        .produce(produce("secret.x", "v"))
        .await
        .expect("alice: the wildcard allows");
    let err = s
        .grpc(Some(BOB))
        .await
        .produce(produce("secret.x", "v"))
        .await
        .expect_err("bob: the deny wins");
    assert_eq!(err.code(), Code::PermissionDenied);
    s.grpc(Some(BOB))
        .await
        .produce(produce("public", "v"))
        .await
        .expect("bob elsewhere");
    assert_eq!(s.stored("secret.x").await, 1);
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_describe_and_denials_do_not_reveal_existence() {
    let s = Secure::start().await;
    let mut root = s.root().await;
    for t in ["visible", "hidden"] {
        root.create_topic(pb::CreateTopicRequest {
            name: t.into(),
            config: None,
        })
        .await
        .expect("root creates");
    }
    s.allow(allow_topic("alice", "visible", AclOperation::Describe))
        .await;
    let mut alice = s.grpc(Some(ALICE)).await;
    let names: Vec<String> = alice
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["visible"]);
    let describe = |name: &str| pb::DescribeTopicRequest { name: name.into() };
    let existing = alice
        .describe_topic(describe("hidden"))
        .await
        .expect_err("denied");
    let missing = alice
        .describe_topic(describe("hidden2"))
        .await
        .expect_err("denied");
    assert_eq!(existing.code(), Code::PermissionDenied);
    assert_eq!(missing.code(), Code::PermissionDenied);
    assert_eq!(
        existing.message().replace("hidden", "X"),
        missing.message().replace("hidden2", "X"),
        "the same answer whether or not the topic exists"
    );
    let all = root
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect("root")
        .into_inner();
    assert_eq!(all.topics.len(), 2);
}

#[tokio::test]
async fn acls_are_managed_by_admins_and_survive_a_restart() {
    let s = Secure::start().await;
    let rule = allow_topic("alice", "t", AclOperation::Produce);
    let mut alice = s.grpc(Some(ALICE)).await;
    let err = alice
        .add_acl(pb::AddAclRequest {
            acl: Some(rule.clone()),
        })
        .await
        .expect_err("alice is no admin");
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut root = s.root().await;
    let added = root
        .add_acl(pb::AddAclRequest {
            acl: Some(rule.clone()),
        })
        .await
        .expect("root adds")
        .into_inner()
        .added;
    assert!(added);
    let again = root
        .add_acl(pb::AddAclRequest {
            acl: Some(rule.clone()),
        })
        .await
        .expect("root adds")
        .into_inner()
        .added;
    assert!(!again, "no duplicates");
    let bad = root
        .add_acl(pb::AddAclRequest {
            acl: Some(pb::AclRule {
                principal: "x".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("unspecified resource type");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("resource_type"), "{bad}");

    // Restart on the same data directory: the rule is still there and still applies.
    let Secure {
        server,
        certs,
        config,
        dir,
    } = s;
    server.stop().await;
    let server = obelisk::server::start(config.validate().unwrap())
        .await
        .unwrap();
    let s = Secure {
        server,
        certs,
        config,
        dir,
    };
    let listed = s
        .root()
        .await
        .list_acls(pb::ListAclsRequest {})
        .await
        .expect("list")
        .into_inner()
        .acls;
    assert_eq!(listed, vec![rule.clone()]);
    s.grpc(Some(ALICE))
        .await
        .produce(produce("t", "v"))
        .await
        .expect("the stored ACL applies");
    let removed = s
        .root()
        .await
        .remove_acl(pb::RemoveAclRequest { acl: Some(rule) })
        .await
        .expect("remove")
        .into_inner()
        .removed;
    assert!(removed);
    let err = s
        .grpc(Some(ALICE))
        .await
        .produce(produce("t", "v"))
        .await
        .expect_err("removed");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn denials_are_counted_in_the_metrics() {
    let s = Secure::start().await;
    let _ = s.grpc(Some(ALICE)).await.produce(produce("m", "v")).await;
    let _ = s.grpc(None).await.produce(produce("m", "v")).await;
    let body = metrics_text(&s).await;
    assert!(
        body.lines()
            .any(|l| l.starts_with("obelisk_access_denied_total")
                && l.contains("operation=\"produce\"")
                && l.contains("resource=\"topic\"")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("obelisk_unauthenticated_total")),
        "{body}"
    );
}

async fn metrics_text(s: &Secure) -> String {
    use http_body_util::BodyExt;
    let https = s.https().await;
    let tls = https.handshake().await.expect("tls");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/metrics")
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.expect("metrics");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn a_token_added_to_the_file_is_accepted_without_a_restart() {
    let s = Secure::start().await;
    let erin = "erin-token";
    let err = s
        .grpc(Some(erin))
        .await
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect_err("not yet in the file");
    assert_eq!(err.code(), Code::Unauthenticated);
    let path = s.config.auth_token_file.clone().unwrap();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(&obelisk::auth::tokens::line_for(erin, "erin"));
    // Written aside and renamed over, as an operator's tools do, so no read sees half a file.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let res = s
            .grpc(Some(erin))
            .await
            .list_topics(pb::ListTopicsRequest {})
            .await;
        if res.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new token was not accepted within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The old tokens still work.
    s.grpc(Some(ALICE))
        .await
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect("alice still authenticates");
}
