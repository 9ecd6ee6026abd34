//! The metrics page: valid exposition text (read by a real parser), every series present,
//! values that follow what was done to this test's own topic and group.

use axum::http::{StatusCode, header};
use obelisk::broker::SubscribeRequest;
use serde_json::json;

use crate::http_support::{harness, parse_metrics};

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
            member: None,
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
