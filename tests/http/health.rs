//! Health, readiness and draining: healthy at start, listeners, recovery, and a storage
//! failure seen through health, readiness, produce and the metrics.

use axum::http::StatusCode;
use serde_json::json;

use crate::http_support::{Harness, harness, parse_metrics};

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
    for c in [
        "storage",
        "batcher",
        "buffer",
        "grpc_server",
        "tcp_server",
        "http_server",
    ] {
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
    assert_eq!(r.json["summary"]["total_components"], 6);
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
    assert!(h.broker.inject_write_failure("fragile", 0), "partition");

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

/// When the broker drains, long polls answer at once with what there is, and readiness is false.
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
        h.broker.drain();
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
