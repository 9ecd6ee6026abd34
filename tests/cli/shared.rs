//! Shared groups on the command line (issue 14): `consume --group G --shared` accepts every
//! record it prints (two runs together print each record once, and the group is then done),
//! `dlq list` shows a dead letter with its origin and reason, and `dlq replay` re-produces it
//! to its origin topic and partition without the broker's headers.

use obelisk::proto as pb;

use super::{assert_ok, obelisk, start, stdout, with_server};

#[tokio::test]
async fn consume_shared_accepts_what_it_prints() {
    let (_dir, server, url) = start().await;
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    assert_ok(&obelisk(with_server(&url, &["produce", "jobs"]), input.as_bytes()).await);
    let args = |extra: &[&str]| {
        let mut a = vec!["consume", "jobs", "--group", "workers", "--shared"];
        a.extend_from_slice(extra);
        with_server(&url, &a)
    };
    let first = obelisk(args(&["--count", "4"]), b"").await;
    assert_ok(&first);
    assert_eq!(stdout(&first).lines().count(), 4, "{}", stdout(&first));
    let rest = obelisk(args(&[]), b"").await;
    assert_ok(&rest);
    let mut all: Vec<String> = stdout(&first)
        .lines()
        .chain(stdout(&rest).lines())
        .map(String::from)
        .collect();
    all.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each record printed once");
    // Everything printed was accepted: the group is done with the topic.
    let mut c = obelisk::client::connect(&url).await.unwrap();
    let d = c
        .describe_shared_group(pb::DescribeSharedGroupRequest {
            group: "workers".into(),
            topic: "jobs".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let positions: u64 = d.partitions.iter().map(|p| p.position).sum();
    assert_eq!(positions, 10, "{d:?}");
    assert!(d.partitions.iter().all(|p| p.in_flight == 0), "{d:?}");
    let again = obelisk(args(&[]), b"").await;
    assert_ok(&again);
    assert_eq!(stdout(&again), "", "nothing is handed out again");
    // --shared needs a group.
    let bad = obelisk(with_server(&url, &["consume", "jobs", "--shared"]), b"").await;
    assert!(!bad.status.success());
    server.stop().await;
}

#[tokio::test]
async fn dlq_lists_and_replays_dead_letters_to_their_origin() {
    let (_dir, server, url) = start().await;
    let mut c = obelisk::client::connect(&url).await.unwrap();
    c.create_topic(pb::CreateTopicRequest {
        name: "tasks".into(),
        config: Some(pb::TopicConfig {
            partitions: 2,
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    let mut headers = std::collections::HashMap::new();
    headers.insert("trace".to_string(), b"t-1".to_vec().into());
    c.produce(pb::ProduceRequest {
        topic: "tasks".into(),
        records: vec![
            pb::ProducerRecord {
                value: b"fine".to_vec().into(),
                partition: Some(1),
                ..Default::default()
            },
            pb::ProducerRecord {
                key: b"k".to_vec().into(),
                value: b"poison".to_vec().into(),
                headers,
                partition: Some(1),
                ..Default::default()
            },
        ],
        idempotence: None,
    })
    .await
    .unwrap();
    let got = c
        .shared_poll(pb::SharedPollRequest {
            group: "pool".into(),
            topic: "tasks".into(),
            member_id: "a".into(),
            max_records: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(got.len(), 2);
    let settle = |offset, kind: pb::SettleKind, reason: &str| pb::Settlement {
        partition: 1,
        offset,
        kind: kind as i32,
        reason: reason.into(),
        ..Default::default()
    };
    let res = c
        .settle(pb::SettleRequest {
            group: "pool".into(),
            topic: "tasks".into(),
            member_id: "a".into(),
            settlements: vec![
                settle(0, pb::SettleKind::Accept, ""),
                settle(1, pb::SettleKind::Reject, "cannot parse"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(res[1].outcome, "dead_lettered", "{res:?}");

    let list = obelisk(with_server(&url, &["dlq", "list", "pool"]), b"").await;
    assert_ok(&list);
    let text = stdout(&list);
    let row = text.lines().nth(1).unwrap_or_default();
    for want in ["tasks/1@1", "cannot parse", "poison"] {
        assert!(row.contains(want), "{want:?} in\n{text}");
    }
    let json = obelisk(with_server(&url, &["dlq", "list", "pool", "--json"]), b"").await;
    assert_ok(&json);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["dead_letter_topic"], "pool.dlq");
    let dl = &v["dead_letters"][0];
    assert_eq!(
        (
            dl["origin_topic"].as_str(),
            dl["origin_partition"].as_u64(),
            dl["origin_offset"].as_u64(),
            dl["deliveries"].as_u64(),
        ),
        (Some("tasks"), Some(1), Some(1), Some(1)),
        "{v}"
    );

    let replay = obelisk(with_server(&url, &["dlq", "replay", "pool"]), b"").await;
    assert_ok(&replay);
    assert!(
        stdout(&replay).contains("replayed 1 "),
        "{}",
        stdout(&replay)
    );
    assert!(stdout(&replay).contains("--from 1"), "{}", stdout(&replay));
    let back = c
        .fetch(pb::FetchRequest {
            topic: "tasks".into(),
            partition: 1,
            offset: 2,
            max_records: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(
        (&back[0].key[..], &back[0].value[..]),
        (&b"k"[..], &b"poison"[..])
    );
    assert_eq!(
        back[0].headers.get("trace").map(|v| &v[..]),
        Some(&b"t-1"[..])
    );
    assert!(
        back[0].headers.keys().all(|k| !k.starts_with("obelisk-")),
        "{:?}",
        back[0].headers
    );
    // From past the last dead letter, nothing more is replayed.
    let none = obelisk(
        with_server(&url, &["dlq", "replay", "pool", "--from", "1"]),
        b"",
    )
    .await;
    assert_ok(&none);
    assert!(stdout(&none).contains("replayed 0 "), "{}", stdout(&none));
    // An unknown group is a clear error.
    let unknown = obelisk(with_server(&url, &["dlq", "list", "nosuch"]), b"").await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("nosuch"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    server.stop().await;
}
