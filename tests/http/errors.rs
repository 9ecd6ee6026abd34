//! Request errors: every one is a JSON body with a code and a message; nothing panics.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use obelisk::http::HttpConfig;
use serde_json::json;

use crate::http_support::harness_with;

#[tokio::test]
async fn request_errors_are_json() {
    let h = harness_with(
        |c| {
            c.max_record_bytes = 1024;
            c.auto_create_topics = false;
        },
        HttpConfig {
            body_limit_bytes: 4096,
            ..HttpConfig::default()
        },
    )
    .await;
    h.post("/topics", json!({"name": "e", "partitions": 1}))
        .await;

    let cases: Vec<(Method, &str, Body, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/topics/e/messages",
            Body::from("{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(""),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(r#"{"records": 5}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(r#"["a"]"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(r#"{"value": "x", "partition": -1}"#),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(format!(r#"{{"value": "{}"}}"#, "x".repeat(2000))),
            StatusCode::BAD_REQUEST,
            "record_too_large",
        ),
        (
            Method::POST,
            "/topics/e/messages",
            Body::from(format!(r#"{{"value": "{}"}}"#, "x".repeat(5000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/topics/other/messages",
            Body::from(r#"{"value": "x"}"#),
            StatusCode::NOT_FOUND,
            "topic_not_found",
        ),
        (
            Method::POST,
            "/topics/e%2F..%2Fx/messages",
            Body::from(r#"{"value": "x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            Method::GET,
            "/topics/e/messages?partition=abc",
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::GET,
            "/topics/e/messages?partition=7",
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
        ),
        (
            Method::GET,
            "/topics/e/messages?offset=5",
            Body::empty(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "offset_out_of_range",
        ),
        (
            Method::GET,
            "/topics/e/messages?bogus=1",
            Body::empty(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            Method::GET,
            "/no/such/path",
            Body::empty(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::PUT,
            "/topics",
            Body::empty(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let r = h.raw(method.clone(), uri, body, &[]).await;
        assert_eq!(r.status, status, "{method} {uri}: {}", r.text);
        assert_eq!(r.error_code(), code, "{method} {uri}");
        assert_eq!(
            r.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "{method} {uri}"
        );
    }

    // A body over the limit without Content-Length (streamed) is refused as well.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1000]))),
    );
    let r = h
        .raw(
            Method::POST,
            "/topics/e/messages",
            Body::from_stream(chunks),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Arbitrary bytes never panic the server.
    for junk in [
        &b"\xff\xfe\x00"[..],
        b"{\"records\":[{\"value\":\"\\ud800\"}]}",
        b"null",
        b"1e999999",
    ] {
        let r = h
            .raw(
                Method::POST,
                "/topics/e/messages",
                Body::from(junk.to_vec()),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{junk:?}: {}", r.text);
    }
}

#[tokio::test]
async fn a_request_past_the_timeout_is_a_json_503() {
    let h = harness_with(
        |_| {},
        HttpConfig {
            request_timeout: std::time::Duration::from_millis(50),
            ..HttpConfig::default()
        },
    )
    .await;
    h.post("/topics", json!({"name": "slow", "partitions": 1}))
        .await;
    let r = h
        .get("/topics/slow/messages?offset=0&max_wait_ms=10000")
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "timeout")
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}
