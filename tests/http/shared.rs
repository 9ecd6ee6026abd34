//! Shared groups over REST (issue 14): `POST /topics/{t}/poll` with `"ack_mode": "record"` and
//! `POST /topics/{t}/acks`.

use axum::http::StatusCode;
use obelisk::broker::{ProduceRecord, TopicConfig};
use serde_json::json;

use crate::http_support::harness;

#[tokio::test]
async fn records_are_handed_out_and_settled_per_record() {
    let h = harness().await;
    h.broker
        .create_topic(
            "rest-shared",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            },
        )
        .await
        .unwrap();
    let recs = (0..3)
        .map(|i| ProduceRecord {
            value: format!("v{i}").into_bytes().into(),
            ..Default::default()
        })
        .collect();
    h.broker.produce("rest-shared", recs).await.unwrap();

    let poll = |member: &str| json!({"group": "rest-g", "ack_mode": "record", "member_id": member, "max_records": 2});
    let r = h.post("/topics/rest-shared/poll", poll("a")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = r.json["records"].as_array().unwrap();
    assert_eq!(got.len(), 2, "{}", r.text);
    assert_eq!(got[0]["offset"], 0);
    assert_eq!(got[0]["deliveries"], 1);
    assert!(got[0]["lock_deadline_ns"].as_i64().unwrap() > 0);
    // The next member gets what is not locked.
    let r = h.post("/topics/rest-shared/poll", poll("b")).await;
    let got_b = r.json["records"].as_array().unwrap();
    assert_eq!(got_b.len(), 1, "{}", r.text);
    assert_eq!(got_b[0]["offset"], 2);

    let acks = json!({"group": "rest-g", "member_id": "a", "acks": [
        {"partition": 0, "offset": 0, "action": "accept"},
        {"partition": 0, "offset": 1, "action": "reject", "reason": "bad"},
        {"partition": 0, "offset": 2, "action": "accept"},
    ]});
    let r = h.post("/topics/rest-shared/acks", acks).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let res = r.json["results"].as_array().unwrap();
    assert_eq!(res[0]["outcome"], "done");
    assert_eq!(res[1]["outcome"], "dead_lettered");
    assert!(
        res[2]["error"].as_str().unwrap().contains("not locked"),
        "{}",
        r.text
    );

    let dlq = h
        .get("/topics/rest-g.dlq/messages?partition=0&offset=0")
        .await;
    assert_eq!(dlq.status, StatusCode::OK, "{}", dlq.text);
    assert!(dlq.text.contains("obelisk-origin-offset"), "{}", dlq.text);

    // The group view shows a shared group by its position: 0 accepted and 1 dead-lettered are
    // done, 2 is still locked to b.
    let view = h.get("/groups/rest-g").await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text);
    assert_eq!(view.json["state"], "shared", "{}", view.text);
    let p = &view.json["partitions"][0];
    assert_eq!(
        (&p["topic"], &p["committed"], &p["log_end"], &p["lag"]),
        (&json!("rest-shared"), &json!(2), &json!(3), &json!(1)),
        "{}",
        view.text
    );
    assert_eq!(view.json["total_lag"], 1, "{}", view.text);
    // Its window (the console's shared-group view): one record in flight, locked to b, and the
    // dead-lettered one in the dead-letter topic.
    let shared = &view.json["shared"];
    assert_eq!(
        (
            &shared["in_flight"],
            &shared["locked"],
            &shared["dead_letters"],
            &shared["dead_letter_topic"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!("rest-g.dlq")),
        "{}",
        view.text
    );
    let w = &shared["partitions"][0];
    assert_eq!(
        (&w["position"], &w["next"], &w["locked"], &w["redelivered"]),
        (&json!(2), &json!(3), &json!(1), &json!(0)),
        "{}",
        view.text
    );
    // A shared group has a lag history like any group (the console's chart asks for it).
    // Sampled every 2 s: its lag there is the records not done, 1.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let history = loop {
        let r = h.get("/groups/rest-g/history").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if r.json["samples"].as_array().is_some_and(|s| !s.is_empty()) {
            break r.json;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sampled: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(history["group"], "rest-g", "{history}");
    assert_eq!(history["samples"][0]["lag"], 1, "{history}");
    let done = json!({"group": "rest-g", "member_id": "b", "acks": [
        {"partition": 0, "offset": 2, "action": "accept"},
    ]});
    let r = h.post("/topics/rest-shared/acks", done).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let view = h.get("/groups/rest-g").await;
    assert_eq!(view.json["partitions"][0]["committed"], 3, "{}", view.text);
    assert_eq!(view.json["total_lag"], 0, "{}", view.text);

    // Its position is not committed or reset: that would be stored and never used.
    for (uri, body) in [
        (
            "/topics/rest-shared/commit",
            json!({"group": "rest-g", "offsets": [{"partition": 0, "offset": 0}]}),
        ),
        (
            "/topics/rest-shared/reset",
            json!({"group": "rest-g", "to": "earliest"}),
        ),
    ] {
        let r = h.post(uri, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert!(r.text.contains("is a shared group"), "{uri}: {}", r.text);
    }
    // Bad input: no member id, an unknown action.
    let r = h
        .post(
            "/topics/rest-shared/poll",
            json!({"group": "rest-g", "ack_mode": "record"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let bad = json!({"group": "rest-g", "member_id": "a", "acks": [
        {"partition": 0, "offset": 0, "action": "maybe"}
    ]});
    let r = h.post("/topics/rest-shared/acks", bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn metrics_show_in_flight_redeliveries_dead_letters_and_the_oldest_age() {
    let h = harness().await;
    h.broker
        .create_topic(
            "rest-shared-m",
            TopicConfig {
                partitions: 1,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            },
        )
        .await
        .unwrap();
    let recs = (0..3)
        .map(|i| ProduceRecord {
            value: format!("v{i}").into_bytes().into(),
            ..Default::default()
        })
        .collect();
    h.broker.produce("rest-shared-m", recs).await.unwrap();
    let poll = |member: &str| json!({"group": "rest-m", "ack_mode": "record", "member_id": member});
    let r = h.post("/topics/rest-shared-m/poll", poll("a")).await;
    assert_eq!(r.json["records"].as_array().unwrap().len(), 3, "{}", r.text);
    let acks = json!({"group": "rest-m", "member_id": "a", "acks": [
        {"partition": 0, "offset": 0, "action": "release"},
        {"partition": 0, "offset": 1, "action": "reject", "reason": "bad"},
    ]});
    let r = h.post("/topics/rest-shared-m/acks", acks).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // b gets offset 0 again: a redelivery.
    let r = h.post("/topics/rest-shared-m/poll", poll("b")).await;
    let got = r.json["records"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{}", r.text);
    assert_eq!(got[0]["deliveries"], 2);

    let page = h.get("/metrics").await.text;
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{group=\"rest-m\"");
        page.lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{page}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Offset 0 locked to b, offset 2 still locked to a; offset 1 is dead-lettered (done).
    assert_eq!(value("obelisk_shared_group_in_flight_records"), 2.0);
    assert_eq!(value("obelisk_shared_group_locked_records"), 2.0);
    assert_eq!(value("obelisk_shared_group_redeliveries_total"), 1.0);
    assert_eq!(
        value("obelisk_shared_group_dead_lettered_records_total"),
        1.0
    );
    let age = value("obelisk_shared_group_oldest_unsettled_age_seconds");
    assert!(age > 0.0 && age < 3600.0, "{age}");

    // Everything accepted: nothing in flight, no age.
    for (m, o) in [("b", 0), ("a", 2)] {
        let acks = json!({"group": "rest-m", "member_id": m, "acks": [
            {"partition": 0, "offset": o, "action": "accept"},
        ]});
        let r = h.post("/topics/rest-shared-m/acks", acks).await;
        assert_eq!(r.json["results"][0]["outcome"], "done", "{}", r.text);
    }
    let page = h.get("/metrics").await.text;
    let line = page
        .lines()
        .find(|l| l.starts_with("obelisk_shared_group_in_flight_records{group=\"rest-m\""))
        .unwrap();
    assert!(line.ends_with(" 0"), "{line}");
    let line = page
        .lines()
        .find(|l| {
            l.starts_with("obelisk_shared_group_oldest_unsettled_age_seconds{group=\"rest-m\"")
        })
        .unwrap();
    assert!(line.ends_with(" 0"), "{line}");
}
