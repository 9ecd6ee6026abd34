//! The original's consumer-group endpoints (issue 13): `POST /consumer-groups`,
//! `GET /consumer-groups/{id}`, `POST /consumer-groups/{id}/members`,
//! `DELETE /consumer-groups/{id}/members/{member}`, and HTTP members polling and committing.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use obelisk::broker::{ProduceRecord, TopicConfig};
use serde_json::{Value, json};

use crate::http_support::{Harness, harness, harness_with};

async fn topic(h: &Harness, name: &str, partitions: u32) {
    h.broker
        .create_topic(
            name,
            TopicConfig {
                partitions,
                retention_ms: 0,
                retention_bytes: 0,
                compression: Default::default(),
            },
        )
        .await
        .unwrap();
    for p in 0..partitions {
        h.broker
            .produce(
                name,
                vec![ProduceRecord {
                    value: format!("v{p}").into_bytes().into(),
                    partition: Some(p),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
    }
}

fn partitions_of(group: &Value, member: &str) -> BTreeSet<u64> {
    group["members"][member]["partitions"]
        .as_array()
        .unwrap_or_else(|| panic!("member {member} in {group}"))
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn consumer_group_endpoints_follow_the_original_shapes() {
    let h = harness().await;
    topic(&h, "cg-orders", 4).await;
    let r = h
        .post(
            "/consumer-groups",
            json!({"group_id": "cg", "topics": ["cg-orders"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], "cg");
    assert_eq!(r.json["topics"], json!(["cg-orders"]));
    assert_eq!(r.json["members"], json!({}));
    assert_eq!(r.json["assignments"], json!({}));
    assert!(r.json["generation"].is_u64());
    assert!(r.json["last_rebalance"].is_string());
    assert_eq!(r.json["state"], "empty");
    // Exists already: 409.
    let again = h
        .post(
            "/consumer-groups",
            json!({"group_id": "cg", "topics": ["cg-orders"]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "group_exists");
    // Missing fields: 400, as the original.
    let bad = h.post("/consumer-groups", json!({"group_id": "x"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = h
        .post("/consumer-groups/cg/members", json!({"member_id": ""}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let one = h
        .post("/consumer-groups/cg/members", json!({"member_id": "alice"}))
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(one.json["members"]["alice"]["id"], "alice");
    assert!(one.json["members"]["alice"]["joined_at"].is_string());
    assert_eq!(partitions_of(&one.json, "alice").len(), 4);
    assert_eq!(
        one.json["assignments"]["alice"].as_array().unwrap().len(),
        4
    );
    let two = h
        .post("/consumer-groups/cg/members", json!({"member_id": "bob"}))
        .await;
    assert_eq!(two.status, StatusCode::OK);
    assert_eq!(two.json["state"], "reconciling", "alice must release first");
    assert!(two.json["generation"].as_u64() > one.json["generation"].as_u64());
    // Alice's poll releases what is revoked and reads only what she keeps.
    let polled = h
        .post(
            "/topics/cg-orders/poll",
            json!({"group": "cg", "member_id": "alice"}),
        )
        .await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.text);
    let alice_parts: BTreeSet<u64> = polled.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(alice_parts.len(), 2);
    let g = h.get("/consumer-groups/cg").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json["state"], "stable");
    let (a, b) = (
        partitions_of(&g.json, "alice"),
        partitions_of(&g.json, "bob"),
    );
    assert_eq!((a.len(), b.len()), (2, 2));
    assert!(a.is_disjoint(&b));
    assert_eq!(a, alice_parts);
    assert_eq!(g.json["members"]["bob"]["kind"], "http");
    assert_eq!(g.json["members"]["bob"]["lag"], 2);
    // Alice commits one of Bob's partitions: 409 fenced, nothing stored.
    let theirs = *b.iter().next().unwrap();
    let fenced = h
        .post(
            "/topics/cg-orders/commit",
            json!({"group": "cg", "member_id": "alice", "offsets": [{"partition": theirs, "offset": 1}]}),
        )
        .await;
    assert_eq!(fenced.status, StatusCode::CONFLICT, "{}", fenced.text);
    assert_eq!(fenced.error_code(), "fenced");
    assert!(
        fenced.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rejoin")
    );
    let mine = *a.iter().next().unwrap();
    let ok = h
        .post(
            "/topics/cg-orders/commit",
            json!({"group": "cg", "member_id": "alice", "offsets": [{"partition": mine, "offset": 1}]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let offsets = h.get("/groups/cg").await;
    assert_eq!(offsets.status, StatusCode::OK, "{}", offsets.text);
    // Memberless use of a group with members: 409 with what to do.
    let memberless = h
        .post("/topics/cg-orders/poll", json!({"group": "cg"}))
        .await;
    assert_eq!(memberless.status, StatusCode::CONFLICT);
    assert_eq!(memberless.error_code(), "group_has_members");
    // Leave: Bob's partitions go to Alice at once.
    let left = h
        .call(Method::DELETE, "/consumer-groups/cg/members/bob", None)
        .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.text);
    assert!(left.json["members"].get("bob").is_none());
    assert_eq!(partitions_of(&left.json, "alice").len(), 4);
    let unknown = h
        .call(Method::DELETE, "/consumer-groups/cg/members/bob", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/consumer-groups/nope").await.status,
        StatusCode::NOT_FOUND
    );
    // Delete: refused while Alice is there.
    let del = h.call(Method::DELETE, "/consumer-groups/cg", None).await;
    assert_eq!(del.status, StatusCode::CONFLICT);
    h.call(Method::DELETE, "/consumer-groups/cg/members/alice", None)
        .await;
    let del = h.call(Method::DELETE, "/consumer-groups/cg", None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    assert_eq!(
        h.get("/consumer-groups/cg").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_http_member_that_stops_polling_is_removed_after_the_session_timeout() {
    let h = harness_with(
        |c| c.group_session_timeout = Duration::from_millis(300),
        obelisk::http::HttpConfig::default(),
    )
    .await;
    topic(&h, "cg-quiet", 2).await;
    h.post(
        "/consumer-groups",
        json!({"group_id": "quiet", "topics": ["cg-quiet"]}),
    )
    .await;
    let r = h
        .post("/consumer-groups/quiet/members", json!({"member_id": "m"}))
        .await;
    assert_eq!(partitions_of(&r.json, "m").len(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let g = h.get("/consumer-groups/quiet").await;
        if g.json["members"].as_object().unwrap().is_empty() {
            assert_eq!(g.json["state"], "empty");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", g.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let polled = h
        .post(
            "/topics/cg-quiet/poll",
            json!({"group": "quiet", "member_id": "m"}),
        )
        .await;
    assert_eq!(polled.status, StatusCode::CONFLICT, "{}", polled.text);
    assert_eq!(polled.error_code(), "fenced");
}

#[tokio::test]
async fn metrics_show_members_rebalances_their_duration_and_lag_per_member() {
    let h = harness().await;
    topic(&h, "cg-metrics", 2).await;
    h.post(
        "/consumer-groups",
        json!({"group_id": "cg-m", "topics": ["cg-metrics"]}),
    )
    .await;
    for m in ["one", "two"] {
        h.post("/consumer-groups/cg-m/members", json!({"member_id": m}))
            .await;
    }
    // One's poll releases what moves to two: the rebalance completes.
    h.post(
        "/topics/cg-metrics/poll",
        json!({"group": "cg-m", "member_id": "one"}),
    )
    .await;
    let page = h.get("/metrics").await.text;
    let line = |prefix: &str| {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix} in\n{page}"))
            .to_string()
    };
    assert!(line("obelisk_group_members{group=\"cg-m\"}").ends_with(" 2"));
    let rebalances: f64 = line("obelisk_group_rebalances_total{group=\"cg-m\"}")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rebalances >= 2.0);
    let completed: f64 = line("obelisk_group_rebalance_duration_seconds_count{group=\"cg-m\"}")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(completed >= 1.0);
    assert!(
        line("obelisk_group_member_lag_messages{group=\"cg-m\",member=\"two\"}").ends_with(" 1")
    );
}

#[tokio::test]
async fn the_group_view_shows_members_with_their_partitions() {
    let h = harness().await;
    topic(&h, "cg-view", 2).await;
    // A memberless group's view has no members field.
    h.post(
        "/topics/cg-view/commit",
        json!({"group": "plain", "offsets": [{"partition": 0, "offset": 0}]}),
    )
    .await;
    let plain = h.get("/groups/plain").await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    assert!(plain.json.get("members").is_none(), "{}", plain.text);

    h.post(
        "/consumer-groups",
        json!({"group_id": "viewed", "topics": ["cg-view"]}),
    )
    .await;
    h.post(
        "/consumer-groups/viewed/members",
        json!({"member_id": "m1"}),
    )
    .await;
    let g = h.get("/groups/viewed").await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text);
    assert_eq!(g.json["state"], "stable", "{}", g.text);
    let members = g.json["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{}", g.text);
    assert_eq!(members[0]["member_id"], "m1");
    let owned: BTreeSet<u64> = members[0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            assert_eq!(p["topic"], "cg-view");
            p["partition"].as_u64().expect("partition")
        })
        .collect();
    assert_eq!(owned, BTreeSet::from([0, 1]));
}
