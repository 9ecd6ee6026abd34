//! TLS: mTLS principals on gRPC and HTTPS, a wrong CA fails the handshake, a rotated certificate
//! is served to new connections without a restart.

use std::time::Duration;

use obelisk::client::ConnectOptions;
use obelisk::proto as pb;
use obelisk::server::devcert::DevCa;
use pb::AclOperation;
use tonic::Code;

use super::support::*;

/// A server requiring client certificates from its dev CA.
async fn mutual() -> Secure {
    Secure::start_with(|c| {
        c.tls_client_ca = c.tls_cert.as_ref().map(|p| p.with_file_name("ca.pem"));
    })
    .await
}

fn identity(s: &Secure, who: &str) -> ConnectOptions {
    let (_, cert, key) = s
        .certs
        .clients
        .iter()
        .find(|(n, ..)| n == who)
        .expect("client cert")
        .clone();
    ConnectOptions {
        ca: Some(s.certs.ca.clone()),
        cert: Some(cert),
        key: Some(key),
        token: None,
        forward: false,
    }
}

#[tokio::test]
async fn a_client_certificate_names_the_principal_on_grpc_and_https() {
    let s = mutual().await;
    let root = ConnectOptions {
        token: Some(ROOT.into()),
        ..identity(&s, "dave")
    };
    let mut root = obelisk::client::connect_with(&s.grpc_url(), &root)
        .await
        .unwrap();
    root.add_acl(pb::AddAclRequest {
        acl: Some(allow_topic("carol", "mtls", AclOperation::Produce)),
    })
    .await
    .expect("a token still works next to the certificate");

    let mut carol = obelisk::client::connect_with(&s.grpc_url(), &identity(&s, "carol"))
        .await
        .unwrap();
    carol
        .produce(produce("mtls", "v"))
        .await
        .expect("carol by her certificate");
    let mut dave = obelisk::client::connect_with(&s.grpc_url(), &identity(&s, "dave"))
        .await
        .unwrap();
    let err = dave
        .produce(produce("mtls", "v"))
        .await
        .expect_err("dave has no ACL");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("\"dave\""), "{err}");

    let (_, cert, key) = s.certs.clients[0].clone();
    assert_eq!(s.certs.clients[0].0, "carol");
    let h = Https::new(
        &s.certs.ca,
        s.server.http_addr.unwrap(),
        Some((&cert, &key)),
    );
    let r = h
        .call(
            "POST",
            "/topics/mtls/messages",
            None,
            Some(serde_json::json!({"key": "k", "value": "v"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(s.stored("mtls").await, 2);
}

#[tokio::test]
async fn without_a_client_certificate_mtls_refuses_the_connection() {
    let s = mutual().await;
    let res = obelisk::client::connect_with(&s.grpc_url(), &s.options(Some(ROOT))).await;
    let refused = match res {
        Err(_) => true,
        Ok(mut c) => c.list_topics(pb::ListTopicsRequest {}).await.is_err(),
    };
    assert!(refused, "no client certificate, no call");
    let h = Https::new(&s.certs.ca, s.server.http_addr.unwrap(), None);
    let probe = async {
        let mut tls = h.handshake().await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut buf = [0u8; 1];
        tls.read(&mut buf).await
    };
    assert!(probe.await.is_err(), "the server refuses the handshake");
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_handshake() {
    let s = Secure::start().await;
    let other = tempfile::tempdir().unwrap();
    let ca = other.path().join("other-ca.pem");
    std::fs::write(&ca, DevCa::new("someone else").unwrap().pem()).unwrap();
    let options = ConnectOptions {
        ca: Some(ca.clone()),
        token: Some(ROOT.into()),
        ..ConnectOptions::default()
    };
    let res = obelisk::client::connect_with(&s.grpc_url(), &options).await;
    let failed = match res {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("cannot reach"), "{text}");
            true
        }
        Ok(mut c) => c.list_topics(pb::ListTopicsRequest {}).await.is_err(),
    };
    assert!(failed, "an unknown issuer is refused");
    let h = Https::new(&ca, s.server.http_addr.unwrap(), None);
    assert!(h.handshake().await.is_err());
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let s = Secure::start().await;
    // Open before the rotation: keeps working on its session.
    let mut before = s.root().await;
    let new_ca = DevCa::new("rotated CA").unwrap();
    let (cert, key) = new_ca
        .issue("localhost", &["localhost", "127.0.0.1"], true)
        .unwrap();
    let new_ca_path = s.dir.path().join("new-ca.pem");
    std::fs::write(&new_ca_path, new_ca.pem()).unwrap();
    // The key first, then the certificate: the watcher may see either state in between and
    // keeps the old certificate until they match.
    std::fs::write(&s.certs.server_key, key).unwrap();
    std::fs::write(&s.certs.server_cert, cert).unwrap();
    let options = ConnectOptions {
        ca: Some(new_ca_path.clone()),
        token: Some(ROOT.into()),
        ..ConnectOptions::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ok = match obelisk::client::connect_with(&s.grpc_url(), &options).await {
            Ok(mut c) => c.list_topics(pb::ListTopicsRequest {}).await.is_ok(),
            Err(_) => false,
        };
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not served within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // New connections trusting only the old CA now fail; HTTPS serves the new one too.
    let old = obelisk::client::connect_with(&s.grpc_url(), &s.options(Some(ROOT))).await;
    let old_fails = match old {
        Err(_) => true,
        Ok(mut c) => c.list_topics(pb::ListTopicsRequest {}).await.is_err(),
    };
    assert!(old_fails);
    let h = Https::new(&new_ca_path, s.server.http_addr.unwrap(), None);
    assert_eq!(h.call("GET", "/health/live", None, None).await.status, 200);
    before
        .list_topics(pb::ListTopicsRequest {})
        .await
        .expect("an open connection keeps its session");
}

#[tokio::test]
async fn sighup_reloads_a_certificate_whose_files_kept_their_times() {
    let s = Secure::start().await;
    let new_ca = DevCa::new("hup CA").unwrap();
    let (cert, key) = new_ca
        .issue("localhost", &["localhost", "127.0.0.1"], true)
        .unwrap();
    let new_ca_path = s.dir.path().join("hup-ca.pem");
    std::fs::write(&new_ca_path, new_ca.pem()).unwrap();
    // New contents with the old modification times, renamed into place: the file watcher sees
    // no change, so only the signal can load them.
    for (path, body) in [(&s.certs.server_key, key), (&s.certs.server_cert, cert)] {
        let old = std::fs::metadata(path).unwrap().modified().unwrap();
        let tmp = path.with_extension("next");
        std::fs::write(&tmp, body).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    let options = ConnectOptions {
        ca: Some(new_ca_path),
        token: Some(ROOT.into()),
        ..ConnectOptions::default()
    };
    let works = || async {
        match obelisk::client::connect_with(&s.grpc_url(), &options).await {
            Ok(mut c) => c.list_topics(pb::ListTopicsRequest {}).await.is_ok(),
            Err(_) => false,
        }
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!works().await, "no reload without the signal");
    // The server's watcher has its SIGHUP handler installed (it started above).
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !works().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload the certificate within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
