//! The HTTP surface through the router (`oneshot`, no socket): every endpoint's status codes and
//! JSON shapes, errors included, the metrics page read by a real exposition parser, and a
//! storage failure seen through health, readiness and produce.
//!
//! Tests run in parallel in one process and share the global metrics, so each uses its own
//! topic names and checks only series labelled with them. `tests/http_socket.rs` checks exact
//! metric deltas over a real socket, alone in its process.

mod http_support;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_support::{Harness, harness, harness_with, parse_metrics};
use obelisk::broker::SubscribeRequest;
use obelisk::http::HttpConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn health_is_healthy_at_start_and_follows_listeners() {
    let h = harness().await;
    let r = h.get("/health").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "healthy");
    assert!(
        r.json["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(r.json["uptime"].is_string());
    for c in ["storage", "batcher", "buffer", "grpc_server", "tcp_server"] {
        let comp = &r.json["components"][c];
        assert!(comp["status"].is_string(), "{c}: {}", r.text);
        assert!(comp["details"].is_object(), "{c}");
        assert!(comp["last_check"].is_string(), "{c}");
    }
    assert_eq!(r.json["components"]["grpc_server"]["status"], "disabled");
    assert_eq!(
        r.json["components"]["storage"]["details"]["read_only_partitions"],
        json!([])
    );
    assert_eq!(r.json["summary"]["total_components"], 5);
    assert_eq!(r.json["summary"]["healthy"], 3);
    assert_eq!(r.json["summary"]["unhealthy"], 0);

    let live = h.get("/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json["status"], "alive");
    assert!(live.json["timestamp"].is_string());
    let ready = h.get("/health/ready").await;
    assert_eq!(
        (ready.status, &ready.json),
        (StatusCode::OK, &json!({"status": "ready"}))
    );

    // An enabled listener that is not serving: not ready, and /health names it.
    h.status.legacy.enable();
    let ready = h.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["status"], "not_ready");
    assert!(
        ready.json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("legacy")),
        "{}",
        ready.text
    );
    let r = h.get("/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["status"], "unhealthy");
    assert_eq!(r.json["components"]["tcp_server"]["status"], "unhealthy");
    assert_eq!(
        r.json["components"]["tcp_server"]["details"]["state"],
        "down"
    );

    h.status.legacy.mark_up();
    let _conn = h
        .status
        .connection_opened(obelisk::status::Protocol::Legacy);
    let r = h.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json["components"]["tcp_server"]["details"]["open_connections"],
        1
    );
    assert_eq!(h.get("/health/ready").await.status, StatusCode::OK);

    h.status.set_recovering(obelisk::status::Recovery::Running);
    let ready = h.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("recovering"))
    );
}

#[tokio::test]
async fn produce_single_in_the_original_shape_then_fetch() {
    let h = harness().await;
    let r = h
        .post(
            "/topics/orders-single/messages",
            json!({"key": "user-123", "value": "hello"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["status"], "accepted");
    assert_eq!(r.json["topic"], "orders-single");
    assert_eq!(r.json["key"], "user-123");
    assert!(
        r.json["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // fnv1a_32("user-123") % 4 == 3, as in the original.
    assert_eq!(
        (r.json["partition"].as_u64(), r.json["offset"].as_u64()),
        (Some(3), Some(0))
    );
    let ts = r.json["timestamp_ns"].as_i64().expect("timestamp_ns");

    let f = h
        .get("/topics/orders-single/messages?partition=3&offset=0")
        .await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.text);
    assert_eq!(
        (f.json["log_start"].as_u64(), f.json["log_end"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(f.json["next_offset"], 1);
    let rec = &f.json["records"][0];
    assert_eq!(rec["value"], "hello");
    assert_eq!(rec["value_base64"], BASE64.encode("hello"));
    assert_eq!(rec["key"], "user-123");
    assert_eq!(rec["timestamp_ns"], ts);
    assert_eq!(rec["offset"], 0);

    // At the log end: nothing (no wait asked).
    let f = h
        .get("/topics/orders-single/messages?partition=3&offset=1")
        .await;
    assert_eq!(
        (f.status, f.json["records"].clone()),
        (StatusCode::OK, json!([]))
    );
    // The original's timestamp field given by the producer.
    let r = h
        .post(
            "/topics/orders-single/messages",
            json!({"key": "user-123", "value": "x", "timestamp": "2024-01-15T10:30:00Z"}),
        )
        .await;
    assert_eq!(r.json["timestamp"], "2024-01-15T10:30:00Z");
    assert_eq!(r.json["timestamp_ns"], 1_705_314_600_000_000_000i64);
}

#[tokio::test]
async fn produce_batch_with_binary_values_and_headers() {
    let h = harness().await;
    let binary = [0u8, 159, 146, 150, 255];
    let r = h
        .post(
            "/topics/batch-t/messages",
            json!({"records": [
                {"key": "a", "value": "one", "partition": 1, "headers": {"h": "v"}},
                {"key": "b", "value": BASE64.encode(binary), "encoding": "base64", "partition": 1},
                {"value_base64": BASE64.encode(b"three"), "partition": 2, "timestamp": 42},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["count"], 3);
    assert_eq!(
        r.json["acks"],
        json!([{"partition": 1, "offset": 0}, {"partition": 1, "offset": 1}, {"partition": 2, "offset": 0}])
    );
    let f = h
        .get("/topics/batch-t/messages?partition=1&offset=0&limit=10")
        .await;
    let recs = f.json["records"].as_array().expect("records");
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0]["headers"],
        json!([{"name": "h", "value": "v", "value_base64": "dg=="}])
    );
    assert_eq!(recs[1]["value"], Value::Null, "not UTF-8");
    assert_eq!(recs[1]["value_base64"], BASE64.encode(binary));
    let f = h
        .get("/topics/batch-t/messages?partition=2&offset=0&limit=1")
        .await;
    assert_eq!(f.json["records"][0]["value"], "three");
    assert_eq!(f.json["records"][0]["timestamp_ns"], 42);

    // An empty batch and a bad partition are the broker's 400s.
    let r = h
        .post("/topics/batch-t/messages", json!({"records": []}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    let r = h
        .post(
            "/topics/batch-t/messages",
            json!({"records": [{"value": "x", "partition": 9}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
}

#[tokio::test]
async fn poll_commit_reset_and_groups() {
    let h = harness().await;
    let r = h
        .post("/topics", json!({"name": "flow", "partitions": 1}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for v in ["a", "b", "c"] {
        assert_eq!(
            h.post("/topics/flow/messages", json!({"value": v}))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let poll = json!({"group": "g1", "max_records": 10});
    let p = h.post("/topics/flow/poll", poll.clone()).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    let values: Vec<&str> = p.json["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
    assert_eq!(
        p.json["next_offsets"],
        json!([{"partition": 0, "offset": 3}])
    );
    // No commit yet: the same records again (at-least-once).
    assert_eq!(
        h.post("/topics/flow/poll", poll.clone()).await.json["records"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // Limits are honoured.
    let p = h
        .post(
            "/topics/flow/poll",
            json!({"group": "g1", "max_records": 2}),
        )
        .await;
    assert_eq!(
        p.json["next_offsets"],
        json!([{"partition": 0, "offset": 2}])
    );

    let c = h
        .post(
            "/topics/flow/commit",
            json!({"group": "g1", "offsets": [{"partition": 0, "offset": 3}]}),
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    assert_eq!(c.json["offsets"], json!([{"partition": 0, "offset": 3}]));
    assert_eq!(
        h.post("/topics/flow/poll", poll.clone()).await.json["records"],
        json!([])
    );

    let g = h.get("/groups").await;
    assert!(
        g.json["groups"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("g1"))),
        "{}",
        g.text
    );
    let g = h.get("/groups/g1").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json["total_lag"], 0);
    assert_eq!(
        g.json["partitions"],
        json!([{"topic": "flow", "partition": 0, "committed": 3, "log_end": 3, "lag": 0}])
    );

    for (to, expect) in [
        (json!("earliest"), 0),
        (json!({"offset": 1}), 1),
        (json!("latest"), 3),
        (json!({"timestamp_ns": 0}), 0),
    ] {
        let r = h
            .post("/topics/flow/reset", json!({"group": "g1", "to": to}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.json["offsets"],
            json!([{"partition": 0, "offset": expect}]),
            "{to}"
        );
    }
    assert_eq!(h.get("/groups/g1").await.json["total_lag"], 3);
    for bad in [
        json!("middle"),
        json!({"offset": -1}),
        json!({"offset": 1, "timestamp_ns": 2}),
        json!(7),
    ] {
        let r = h
            .post("/topics/flow/reset", json!({"group": "g1", "to": bad}))
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }

    // Errors: beyond the end, unknown group, bad group name, missing field.
    let r = h
        .post(
            "/topics/flow/commit",
            json!({"group": "g1", "offsets": [{"partition": 0, "offset": 99}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range")
    );
    let r = h.get("/groups/nobody").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "group_not_found")
    );
    let r = h
        .post("/topics/flow/poll", json!({"group": "bad/name"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_name")
    );
    let r = h.post("/topics/flow/commit", json!({"offsets": []})).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn topic_admin() {
    let h = harness().await;
    let r = h
        .post("/topics", json!({"name": "adm", "partitions": 2, "retention_ms": 60000, "retention_bytes": 1048576}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/topics/adm"[..])
    );
    assert_eq!(r.json["name"], "adm");
    assert_eq!(r.json["partition_count"], 2);
    assert_eq!(r.json["retention_ms"], 60000);
    assert_eq!(r.json["retention_bytes"], 1048576);
    assert_eq!(r.json["partitions"].as_array().map(Vec::len), Some(2));
    let p0 = &r.json["partitions"][0];
    for field in [
        "partition",
        "log_start",
        "log_end",
        "messages",
        "size_bytes",
        "segments",
    ] {
        assert!(p0[field].is_u64(), "{field}: {}", r.text);
    }
    assert_eq!(p0["read_only"], false);

    let dup = h.post("/topics", json!({"name": "adm"})).await;
    assert_eq!(
        (dup.status, dup.error_code()),
        (StatusCode::CONFLICT, "topic_exists")
    );
    for (body, code) in [
        (json!({"name": "../x"}), "invalid_name"),
        (json!({"name": ""}), "invalid_name"),
        (
            json!({"name": "big", "partitions": 5000}),
            "invalid_argument",
        ),
        (json!({"partitions": 1}), "invalid_request"),
        (json!({"name": "x", "partitons": 1}), "invalid_request"),
    ] {
        let r = h.post("/topics", body.clone()).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }

    h.post(
        "/topics/adm/messages",
        json!({"value": "v", "partition": 1}),
    )
    .await;
    let d = h.get("/topics/adm").await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json["messages"], 1);
    assert_eq!(d.json["partitions"][1]["log_end"], 1);
    assert!(d.json["size_bytes"].as_u64().is_some_and(|s| s > 0));
    let list = h.get("/topics").await;
    assert!(
        list.json["topics"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "adm"))
    );

    let del = h.call(Method::DELETE, "/topics/adm", None).await;
    assert_eq!(
        (del.status, del.text.as_str()),
        (StatusCode::NO_CONTENT, "")
    );
    for r in [
        h.get("/topics/adm").await,
        h.call(Method::DELETE, "/topics/adm", None).await,
    ] {
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::NOT_FOUND, "topic_not_found")
        );
    }
    let r = h.get("/topics/bad%20name").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_name")
    );
}

#[tokio::test]
async fn stats_in_the_original_shape() {
    let h = harness().await;
    let r = h.get("/stats").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let r = h.get("/stats?topic=nope").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "topic_not_found")
    );
    for i in 0..5 {
        h.post(
            "/topics/st/messages",
            json!({"key": format!("k{i}"), "value": "v"}),
        )
        .await;
    }
    let r = h.get("/stats?topic=st").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json,
        json!({"topic": "st", "buffered": 5, "persisted": 5})
    );
}

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

#[tokio::test]
async fn metrics_page_is_valid_exposition_with_every_series() {
    let h = harness().await;
    h.post(
        "/topics/m-topic/messages",
        json!({"key": "k", "value": "v"}),
    )
    .await;
    h.post(
        "/topics/m-topic/messages",
        json!({"value": "x", "partition": 99}),
    )
    .await;
    h.post("/topics/m-topic/poll", json!({"group": "m-group"}))
        .await;
    h.post(
        "/topics/m-topic/reset",
        json!({"group": "m-group", "to": "earliest"}),
    )
    .await;
    let _sub = h
        .broker
        .subscribe(SubscribeRequest {
            topic: "m-topic".into(),
            group: None,
            start: None,
            max_records_per_batch: 0,
        })
        .expect("subscribes");
    let status = std::sync::Arc::clone(&h.status);
    let _conn = status.connection_opened(obelisk::status::Protocol::Grpc);
    obelisk::metrics::connection_error("legacy", "frame_too_large");

    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"text/plain; version=0.0.4; charset=utf-8"[..])
    );
    assert!(!r.text.contains("otel_scope"), "scope labels must be off");
    let m = parse_metrics(&r.text);
    let names = m.names();
    for name in [
        // The original's names.
        "obelisk_messages_received_total",
        "obelisk_messages_stored_total",
        "obelisk_messages_failed_total",
        "obelisk_buffer_messages",
        "obelisk_active_connections",
        "obelisk_connections_total",
        "obelisk_connection_errors_total",
        "obelisk_health_status",
        "obelisk_component_health",
        "obelisk_batch_size_count",
        "obelisk_batch_flushes_total",
        "obelisk_flush_duration_seconds_count",
        "obelisk_consumer_lag_messages",
        "obelisk_disk_writes_total",
        "obelisk_disk_write_bytes_total",
        // Ours.
        "obelisk_request_duration_seconds_count",
        "obelisk_records_per_fsync_count",
        "obelisk_fsync_duration_seconds_count",
        "obelisk_fsyncs_total",
        "obelisk_log_size_bytes",
        "obelisk_log_segments",
        "obelisk_log_start_offset",
        "obelisk_log_end_offset",
        "obelisk_partition_read_only",
        "obelisk_consumer_committed_offset",
        "obelisk_active_subscriptions",
        "obelisk_errors_total",
    ] {
        assert!(names.contains_key(name), "{name} missing from:\n{}", r.text);
    }
    let t = [("topic", "m-topic")];
    assert_eq!(m.value("obelisk_messages_received_total", &t), 2.0);
    assert_eq!(m.value("obelisk_messages_stored_total", &t), 1.0);
    assert_eq!(
        m.value(
            "obelisk_messages_failed_total",
            &[("topic", "m-topic"), ("reason", "invalid_argument")]
        ),
        1.0
    );
    assert_eq!(m.value("obelisk_buffer_messages", &t), 1.0);
    assert_eq!(m.value("obelisk_log_end_offset", &t), 1.0);
    assert_eq!(m.value("obelisk_active_subscriptions", &t), 1.0);
    assert_eq!(
        m.value(
            "obelisk_consumer_lag_messages",
            &[("group", "m-group"), ("topic", "m-topic")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "obelisk_consumer_committed_offset",
            &[("group", "m-group"), ("topic", "m-topic")]
        ),
        0.0
    );
    assert!(m.value("obelisk_active_connections", &[("protocol", "grpc")]) >= 1.0);
    assert!(
        m.value(
            "obelisk_request_duration_seconds_count",
            &[("protocol", "http"), ("call", "produce")]
        ) >= 2.0
    );
    assert!(
        m.value(
            "obelisk_errors_total",
            &[("protocol", "http"), ("kind", "invalid_argument")]
        ) >= 1.0
    );
}

/// Storage fails under a partition: the produce gets 503 and no acknowledgement, readiness turns
/// false, `/health` names the storage component and the partition, what was acknowledged before
/// stays readable, and the metrics say so.
#[tokio::test]
async fn storage_failure_turns_ready_false_and_produce_503() {
    let h: Harness = harness().await;
    h.post("/topics", json!({"name": "fragile", "partitions": 1}))
        .await;
    let ok = h
        .post("/topics/fragile/messages", json!({"value": "before"}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let (_, core) = h
        .broker
        .partition_cores()
        .into_iter()
        .find(|(t, _)| t == "fragile")
        .expect("partition");
    core.inject_write_failure();

    let r = h
        .post("/topics/fragile/messages", json!({"value": "lost"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{}",
        r.text
    );
    assert!(
        r.json.get("offset").is_none() && r.json.get("status").is_none(),
        "no ack: {}",
        r.text
    );
    assert!(
        !r.text.contains("injected"),
        "internal details stay in the log: {}",
        r.text
    );
    // Later produces to the partition are refused too, without touching the disk.
    let r = h
        .post("/topics/fragile/messages", json!({"value": "later"}))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    let ready = h.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json["reason"]
            .as_str()
            .is_some_and(|s| s.contains("fragile/0")),
        "{}",
        ready.text
    );
    let health = h.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json["status"], "unhealthy");
    let storage = &health.json["components"]["storage"];
    assert_eq!(storage["status"], "unhealthy");
    let failed = &storage["details"]["read_only_partitions"][0];
    assert_eq!(
        (failed["topic"].as_str(), failed["partition"].as_u64()),
        (Some("fragile"), Some(0))
    );
    assert!(failed["reason"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(health.json["summary"]["unhealthy"], 1);

    let f = h.get("/topics/fragile/messages?offset=0&limit=10").await;
    assert_eq!(f.status, StatusCode::OK);
    let values: Vec<&str> = f.json["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert_eq!(values, ["before"]);
    assert_eq!(
        h.get("/topics/fragile").await.json["partitions"][0]["read_only"],
        true
    );

    let m = parse_metrics(&h.get("/metrics").await.text);
    let t = [("topic", "fragile")];
    assert_eq!(m.value("obelisk_partition_read_only", &t), 1.0);
    assert_eq!(m.value("obelisk_log_end_offset", &t), 1.0);
    assert_eq!(m.value("obelisk_messages_stored_total", &t), 1.0);
    assert_eq!(
        m.value(
            "obelisk_messages_failed_total",
            &[("topic", "fragile"), ("reason", "unavailable")]
        ),
        2.0
    );
    assert!(m.value("obelisk_storage_failures_total", &[]) >= 1.0);
}

/// When the server drains, long polls answer at once with what there is, and readiness is false.
#[tokio::test]
async fn draining_ends_long_polls_and_readiness() {
    let h = harness().await;
    h.post("/topics", json!({"name": "drain", "partitions": 1}))
        .await;
    let fetch = h.get("/topics/drain/messages?offset=0&max_wait_ms=20000");
    let poll = h.post(
        "/topics/drain/poll",
        json!({"group": "dg", "max_wait_ms": 20000}),
    );
    let started = std::time::Instant::now();
    let cancel = async {
        tokio::task::yield_now().await;
        h.shutdown.cancel();
    };
    let (f, p, ()) = tokio::join!(fetch, poll, cancel);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        (f.status, f.json["records"].clone()),
        (StatusCode::OK, json!([])),
        "{}",
        f.text
    );
    assert_eq!(
        (p.status, p.json["records"].clone()),
        (StatusCode::OK, json!([])),
        "{}",
        p.text
    );
    let ready = h.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["reason"], "shutting down");
}
