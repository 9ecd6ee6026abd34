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

/// Sends one frame over TLS to the legacy listener and reads its reply line.
async fn produce_over_tls(
    s: &Secure,
    config: rustls::ClientConfig,
    topic: &str,
) -> std::io::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = tokio::net::TcpStream::connect(s.server.tcp_addr.unwrap()).await?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let mut frame = bytes::BytesMut::new();
    message(topic).encode_frame(&mut frame);
    tls.write_all(&frame).await?;
    tls.flush().await?;
    let mut line = String::new();
    BufReader::new(tls).read_line(&mut line).await?;
    Ok(line)
}

#[tokio::test]
async fn the_legacy_listener_can_take_tls_and_an_mtls_principal() {
    let s = Secure::start_with(|c| {
        c.legacy_tls = true;
        c.tls_client_ca = c.tls_cert.as_ref().map(|p| p.with_file_name("ca.pem"));
    })
    .await;
    s.allow(allow_topic("carol", "tls-events", AclOperation::Produce))
        .await;
    let (_, cert, key) = s.certs.clients[0].clone();
    assert_eq!(s.certs.clients[0].0, "carol");
    let carol = client_config(&s.certs.ca, Some((&cert, &key)));
    let reply = produce_over_tls(&s, carol, "tls-events").await.unwrap();
    assert_eq!(reply, "OK\n", "carol, by her certificate");
    let (_, cert, key) = s.certs.clients[1].clone();
    let dave = client_config(&s.certs.ca, Some((&cert, &key)));
    let reply = produce_over_tls(&s, dave, "tls-events").await.unwrap();
    assert_eq!(reply, "NACK:FORBIDDEN\n", "dave has no ACL");
    let anonymous = client_config(&s.certs.ca, None);
    assert!(
        produce_over_tls(&s, anonymous, "tls-events").await.is_err(),
        "no client certificate, no connection"
    );
    // A client trusting another CA refuses the server's certificate.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    std::fs::write(
        &other_ca,
        obelisk::server::devcert::DevCa::new("other").unwrap().pem(),
    )
    .unwrap();
    let (_, cert, key) = s.certs.clients[0].clone();
    let wrong_ca = client_config(&other_ca, Some((&cert, &key)));
    assert!(
        produce_over_tls(&s, wrong_ca, "tls-events").await.is_err(),
        "wrong CA: the handshake fails"
    );
    // Plaintext to a TLS listener gets no reply.
    let mut plain = LegacyClient::connect(s.server.tcp_addr.unwrap())
        .await
        .unwrap();
    assert!(plain.produce(&message("tls-events")).await.is_err());
    assert_eq!(s.stored("tls-events").await, 1);
}
