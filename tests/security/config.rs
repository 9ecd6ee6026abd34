//! Safe defaults: a non-loopback listener needs TLS and authentication, or `--insecure`.

use obelisk::config::Config;

fn open(addr: &str) -> Config {
    Config {
        grpc_addr: addr.into(),
        tcp_addr: "off".into(),
        http_addr: "off".into(),
        ..Config::default()
    }
}

#[test]
fn a_non_loopback_bind_without_tls_and_auth_is_refused_naming_insecure() {
    let err = open("0.0.0.0:50051").validate().unwrap_err().to_string();
    assert!(err.contains("--insecure"), "{err}");
    assert!(err.contains("gRPC on 0.0.0.0:50051"), "{err}");
    let tls_only = Config {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..open("0.0.0.0:50051")
    };
    let err = tls_only.validate().unwrap_err().to_string();
    assert!(
        err.contains("--insecure"),
        "TLS without authentication: {err}"
    );
    let legacy = Config {
        tcp_addr: "0.0.0.0:8080".into(),
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        auth_token_file: Some("tokens".into()),
        ..open("0.0.0.0:50051")
    };
    let err = legacy.validate().unwrap_err().to_string();
    assert!(err.contains("legacy TCP on 0.0.0.0:8080"), "{err}");
    assert!(!err.contains("gRPC on"), "gRPC is secured: {err}");
    let legacy_tls = Config {
        legacy_tls: true,
        ..legacy
    };
    assert!(legacy_tls.validate().is_ok(), "legacy_tls secures it too");
}

#[test]
fn insecure_allows_it_and_loopback_or_a_secured_listener_need_nothing() {
    let insecure = Config {
        insecure: true,
        ..open("0.0.0.0:50051")
    };
    let v = insecure.validate().expect("--insecure");
    assert_eq!(v.security.insecure_listeners, ["gRPC on 0.0.0.0:50051"]);
    assert!(open("127.0.0.1:50051").validate().is_ok());
    assert!(open("[::1]:50051").validate().is_ok());
    let secured = Config {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        auth_token_file: Some("tokens".into()),
        ..open("0.0.0.0:50051")
    };
    assert!(secured.validate().is_ok());
}

#[test]
fn tls_settings_that_cannot_work_are_named() {
    let half = Config {
        tls_cert: Some("c.pem".into()),
        ..open("127.0.0.1:1")
    };
    assert!(half.validate().unwrap_err().to_string().contains("tls_key"));
    let ca_alone = Config {
        tls_client_ca: Some("ca.pem".into()),
        ..open("127.0.0.1:1")
    };
    assert!(
        ca_alone
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tls_client_ca")
    );
}
