//! The web console (issue 18): its embedded files under `/ui`, and the endpoints it calls (paged
//! topic list, seek by time, overview, rate and lag history), with bounded responses on a data
//! directory of 1,000 topics and a partition of many records.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use obelisk::http::HttpConfig;
use serde_json::{Value, json};

use crate::http_support::{Harness, harness, harness_with};

async fn create(h: &Harness, name: &str, partitions: u32) {
    let r = h
        .post("/topics", json!({"name": name, "partitions": partitions}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn ui_files_have_their_types_caching_and_a_page_fallback() {
    let h = harness().await;
    for path in ["/ui", "/ui/", "/ui/topics/orders", "/ui/groups/billing"] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert!(
            r.text
                .contains("<script type=\"module\" src=\"/ui/js/app.js\">")
        );
    }
    let r = h.get("/ui/js/app.js").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .starts_with("default-src 'self'")
    );
    assert!(r.text.contains("import"), "the module itself");
    let css = h.get("/ui/style.css").await;
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let svg = h.get("/ui/favicon.svg").await;
    assert_eq!(svg.headers[header::CONTENT_TYPE], "image/svg+xml");

    // Revalidation: the same ETag answers 304 with no body.
    let tag = r.headers[header::ETAG].to_str().expect("etag").to_string();
    let again = h
        .raw(
            Method::GET,
            "/ui/js/app.js",
            Body::empty(),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.text.is_empty());
    assert_eq!(again.headers[header::ETAG], tag.as_str());
    let stale = h
        .raw(
            Method::GET,
            "/ui/js/app.js",
            Body::empty(),
            &[("if-none-match", "\"other\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    // A missing file is a JSON 404, not the page.
    let r = h.get("/ui/js/missing.js").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = h.call(Method::POST, "/ui", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn the_embedded_console_is_under_300_kb() {
    let total: usize = obelisk::http::ui::ASSETS.iter().map(|a| a.body.len()).sum();
    assert_eq!(total, obelisk::http::ui::total_bytes());
    assert!(total < 300 * 1024, "{total} bytes");
    assert!(
        obelisk::http::ui::ASSETS
            .iter()
            .any(|a| a.path == "index.html")
    );
}

#[tokio::test]
async fn a_thousand_topics_are_listed_in_bounded_pages() {
    let h = harness().await;
    for i in 0..1000 {
        h.broker
            .create_topic(
                &format!("t{i:04}"),
                obelisk::broker::TopicConfig {
                    partitions: 1,
                    retention_ms: 0,
                    retention_bytes: 0,
                    compression: Default::default(),
                },
            )
            .await
            .expect("create");
    }
    let r = h.get("/topics?offset=0&limit=50").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let names: Vec<&str> = r.json["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 50);
    assert_eq!((names[0], names[49]), ("t0000", "t0049"));
    assert_eq!(r.json["total"], 1000);
    assert!(r.text.len() < 32 * 1024, "a page is {} bytes", r.text.len());

    let r = h.get("/topics?offset=975&limit=50").await;
    assert_eq!(r.json["topics"].as_array().map(Vec::len), Some(25));
    assert_eq!(r.json["topics"][0]["name"], "t0975");
    let r = h.get("/topics?offset=5000&limit=50").await;
    assert_eq!(r.json["topics"], json!([]));

    let r = h.get("/topics?prefix=t09&limit=20").await;
    assert_eq!(r.json["total"], 100);
    assert_eq!(r.json["topics"][0]["name"], "t0900");

    // Without a limit, every topic (the original shape); a limit out of bounds is a 400.
    let r = h.get("/topics").await;
    assert_eq!(r.json["topics"].as_array().map(Vec::len), Some(1000));
    for bad in ["limit=0", "limit=1001", "limit=x", "offset=-1", "page=2"] {
        let r = h.get(&format!("/topics?{bad}")).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{bad}"
        );
    }
    let r = h.get("/stats/overview").await;
    assert_eq!(
        (r.json["topics"].as_u64(), r.json["partitions"].as_u64()),
        (Some(1000), Some(1000))
    );
}

/// Unix ns of record `i` of the big partition: one per millisecond from a fixed time.
fn ts(i: u64) -> i64 {
    1_700_000_000_000_000_000 + (i as i64) * 1_000_000
}

#[tokio::test]
async fn a_big_partition_is_read_in_bounded_pages_and_sought_by_time() {
    const N: u64 = 20_000;
    let h = harness_with(
        |_| {},
        HttpConfig {
            max_records: 500,
            ..HttpConfig::default()
        },
    )
    .await;
    create(&h, "big", 1).await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(2000) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"key": format!("k{i}"), "value": format!("v{i}"), "timestamp": ts(i), "partition": 0}))
            .collect();
        let r = h
            .post("/topics/big/messages", json!({ "records": records }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // A page from the middle, forward and back.
    let r = h
        .get("/topics/big/messages?partition=0&offset=10000&limit=50")
        .await;
    let recs = r.json["records"].as_array().expect("records");
    assert_eq!(recs.len(), 50);
    assert_eq!(
        (recs[0]["offset"].as_u64(), recs[49]["key"].as_str()),
        (Some(10_000), Some("k10049"))
    );
    assert_eq!(
        (r.json["log_start"].as_u64(), r.json["log_end"].as_u64()),
        (Some(0), Some(N))
    );
    assert_eq!(r.json["next_offset"], 10_050);
    // Asking for everything gets the server's cap, not the partition.
    let r = h
        .get("/topics/big/messages?partition=0&offset=0&limit=1000000")
        .await;
    assert_eq!(r.json["records"].as_array().map(Vec::len), Some(500));
    let r = h
        .get("/topics/big/messages?partition=0&offset=0&limit=10000&max_bytes=1000")
        .await;
    let recs = r.json["records"].as_array().expect("records");
    let bytes: usize = recs
        .iter()
        .map(|r| r["key"].as_str().map_or(0, str::len) + r["value"].as_str().map_or(0, str::len))
        .sum();
    assert!(
        !recs.is_empty() && recs.len() < 500 && bytes <= 1000 + 12,
        "{} records, {bytes} bytes for max_bytes=1000",
        recs.len()
    );

    // Seek by time: the first record at or after the time, the end past the last one.
    let r = h
        .get(&format!("/topics/big/offsets?timestamp_ns={}", ts(12_345)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["partitions"],
        json!([{"partition": 0, "log_start": 0, "log_end": N, "offset": 12_345}])
    );
    let r = h
        .get(&format!(
            "/topics/big/offsets?timestamp_ns={}",
            ts(12_345) - 1
        ))
        .await;
    assert_eq!(r.json["partitions"][0]["offset"], 12_345);
    let r = h
        .get(&format!("/topics/big/offsets?timestamp_ns={}", ts(N) + 5))
        .await;
    assert_eq!(r.json["partitions"][0]["offset"], N);
    let r = h.get("/topics/big/offsets?timestamp_ns=0").await;
    assert_eq!(r.json["partitions"][0]["offset"], 0);
    let r = h.get("/topics/big/offsets").await;
    assert_eq!(
        r.json["partitions"],
        json!([{"partition": 0, "log_start": 0, "log_end": N}])
    );
    let r = h.get("/topics/nope/offsets").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "topic_not_found")
    );
    let r = h.get("/topics/big/offsets?timestamp_ns=soon").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
}

#[tokio::test]
async fn overview_reports_disk_records_and_connections() {
    let h = harness().await;
    create(&h, "ov", 2).await;
    let r = h
        .post(
            "/topics/ov/messages",
            json!({"records": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    h.status.http.mark_up();
    let r = h.get("/stats/overview").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["topics"], 1);
    assert_eq!(r.json["partitions"], 2);
    assert_eq!(r.json["records"], 3);
    assert_eq!(r.json["read_only_partitions"], 0);
    assert!(
        r.json["disk_bytes"].as_u64().is_some_and(|b| b > 0),
        "{}",
        r.text
    );
    assert!(r.json["segments"].as_u64().is_some_and(|s| s >= 2));
    assert!(r.json["uptime_seconds"].as_f64().is_some());
    assert!(
        r.json["started_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(r.json["connections"]["http"]["state"], "up");
    assert_eq!(r.json["connections"]["grpc"]["state"], "disabled");
    assert_eq!(r.json["connections"]["legacy"]["open"], 0);
}

/// Polls `uri` until `done` holds for its JSON (the sampler runs every 2 s).
async fn poll_until(h: &Harness, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if done(&r.json) {
            return r.json;
        }
        assert!(
            Instant::now() < deadline,
            "{uri} never got there: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn history_samples_rates_and_group_lag() {
    let h = harness().await;
    create(&h, "hist", 1).await;
    let records: Vec<Value> = (0..40).map(|i| json!({"value": i})).collect();
    let r = h
        .post("/topics/hist/messages", json!({ "records": records }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = h
        .post(
            "/topics/hist/commit",
            json!({"group": "hg", "offsets": [{"partition": 0, "offset": 10}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let hist = poll_until(&h, "/stats/history", |j| {
        j["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["produced_total"] == 40 && s["consumed_total"] == 10)
    })
    .await;
    assert_eq!(hist["interval_ms"], 2000);
    let last = hist["samples"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .expect("a sample");
    assert!(last["disk_bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(last["t_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000));
    assert!(last["produce_rate"].as_f64().is_some_and(|r| r >= 0.0));

    let lag = poll_until(&h, "/groups/hg/history", |j| {
        j["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["lag"] == 30)
    })
    .await;
    assert_eq!(lag["group"], "hg");
    // A reset back to the start shows as lag 40 in a later sample.
    let r = h
        .post(
            "/topics/hist/reset",
            json!({"group": "hg", "to": "earliest"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    poll_until(&h, "/groups/hg/history", |j| {
        j["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["lag"] == 40)
    })
    .await;
    // A consume rate never goes negative, though the committed sum went down.
    let hist = h.get("/stats/history").await;
    for s in hist.json["samples"].as_array().expect("samples") {
        assert!(s["consume_rate"].as_f64().is_some_and(|r| r >= 0.0), "{s}");
    }
    let r = h.get("/groups/nobody/history").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "group_not_found")
    );
}
