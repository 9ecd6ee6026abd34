//! The legacy protocol has no credentials: its listener acts as one configured principal, held to
//! the ACLs like any other (`NACK:FORBIDDEN`), and without one every produce is
//! `NACK:UNAUTHORIZED`.

use bytes::Bytes;
use obelisk::legacy::LegacyClient;
use obelisk::legacy::codec::{Message, Reply};
use obelisk::proto as pb;
use pb::{AclEffect, AclOperation, AclPattern, AclResourceType};

use super::support::*;

fn message(topic: &str) -> Message {
    Message {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        timestamp: 1,
    }
}

#[tokio::test]
async fn the_listener_principal_is_held_to_the_acls() {
    let s = Secure::start().await;
    let mut c = LegacyClient::connect(s.server.tcp_addr.unwrap())
        .await
        .unwrap();
    assert_eq!(
        c.produce(&message("events")).await.unwrap(),
        Reply::PermissionDenied
    );
    assert_eq!(s.stored("events").await, 0, "nothing written");
    s.allow(acl(
        "legacy",
        AclResourceType::Topic,
        "ev",
        AclPattern::Prefix,
        AclOperation::Produce,
        AclEffect::Allow,
    ))
    .await;
    s.allow(acl(
        "legacy",
        AclResourceType::Topic,
        "evil",
        AclPattern::Literal,
        AclOperation::Produce,
        AclEffect::Deny,
    ))
    .await;
    assert_eq!(c.produce(&message("events")).await.unwrap(), Reply::Ok);
    assert_eq!(
        c.produce(&message("evil")).await.unwrap(),
        Reply::PermissionDenied
    );
    assert_eq!(
        c.produce(&message("other")).await.unwrap(),
        Reply::PermissionDenied
    );
    assert_eq!(s.stored("events").await, 1);
    assert_eq!(s.stored("evil").await, 0);
}

#[tokio::test]
async fn without_a_principal_every_produce_is_unauthorized() {
    let s = Secure::start_with(|c| c.legacy_principal = None).await;
    let mut c = LegacyClient::connect(s.server.tcp_addr.unwrap())
        .await
        .unwrap();
    assert_eq!(
        c.produce(&message("events")).await.unwrap(),
        Reply::Unauthenticated
    );
    assert_eq!(Reply::Unauthenticated.as_bytes(), b"NACK:UNAUTHORIZED\n");
    assert_eq!(Reply::PermissionDenied.as_bytes(), b"NACK:FORBIDDEN\n");
    assert_eq!(s.stored("events").await, 0);
}
