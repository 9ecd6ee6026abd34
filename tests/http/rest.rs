//! REST produce and consume, topic admin, groups and `/stats`: status codes and JSON shapes.

use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::http_support::harness;

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

    assert_eq!(r.json["compression"], "none");
    // formatv2: a topic compressed on disk, and an unknown codec refused.
    let z = h
        .post("/topics", json!({"name": "zipped", "compression": "zstd"}))
        .await;
    assert_eq!(z.status, StatusCode::CREATED, "{}", z.text);
    assert_eq!(z.json["compression"], "zstd");
    let bad = h
        .post("/topics", json!({"name": "nozip", "compression": "snappy"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);

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
        json!({"topic": "st", "buffered": 0, "persisted": 5, "ring_buffer_records": 5})
    );
}
