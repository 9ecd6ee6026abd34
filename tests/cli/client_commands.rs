//! produce, consume, topics and groups against an in-process server.

use serde_json::Value;

use super::{assert_ok, json_lines, obelisk, sorted_lines, start, stderr, stdout, with_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_from_stdin_and_consume_in_every_format() {
    let (_dir, server, url) = start().await;

    let o = obelisk(
        with_server(&url, &["produce", "plain", "--acks"]),
        b"a\nb\r\nc\n",
    )
    .await;
    assert_ok(&o);
    let acks: Vec<(u32, u64)> = stdout(&o)
        .lines()
        .map(|l| {
            let (p, off) = l.split_once(' ').expect("\"partition offset\"");
            (p.parse().unwrap(), off.parse().unwrap())
        })
        .collect();
    assert_eq!(acks.len(), 3, "one ack per line, in input order");
    let o = obelisk(
        with_server(&url, &["produce", "plain", "--key-separator", ":"]),
        b"user-123:hello\n",
    )
    .await;
    assert_ok(&o);
    let json_in = concat!(
        r#"{"key":"k","value":"/w==","value_base64":true,"headers":{"trace":"/wE=","app":"cli"},"headers_base64":["trace"],"partition":1,"timestamp_ns":1700000000000000000}"#,
        "\n\n",
        r#"{"value":{"nested":true}}"#,
        "\n"
    );
    let o = obelisk(
        with_server(&url, &["produce", "plain", "--json", "--acks"]),
        json_in.as_bytes(),
    )
    .await;
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with("1 "),
        "explicit partition: {}",
        stdout(&o)
    );
    let o = obelisk(
        with_server(
            &url,
            &["produce", "plain", "--value", "one", "--key", "solo"],
        ),
        b"",
    )
    .await;
    assert_ok(&o);

    let o = obelisk(with_server(&url, &["consume", "plain"]), b"").await;
    assert_ok(&o);
    let mut values: Vec<Vec<u8>> = o
        .stdout
        .split(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        values.pop(),
        Some(Vec::new()),
        "every value ends in a newline"
    );
    values.sort();
    let expected: Vec<&[u8]> = vec![
        b"a",
        b"b",
        b"c",
        b"hello",
        b"one",
        b"{\"nested\":true}",
        b"\xff",
    ];
    assert_eq!(values, expected);

    let o = obelisk(
        with_server(&url, &["consume", "plain", "--format", "kv"]),
        b"",
    )
    .await;
    assert_ok(&o);
    let kv = sorted_lines(&o);
    assert!(kv.contains(&"user-123\thello".to_string()), "{kv:?}");
    assert!(kv.contains(&"solo\tone".to_string()), "{kv:?}");
    assert!(kv.contains(&"\ta".to_string()), "{kv:?}");

    let o = obelisk(
        with_server(&url, &["consume", "plain", "--format", "json"]),
        b"",
    )
    .await;
    assert_ok(&o);
    let records = json_lines(&o);
    assert_eq!(records.len(), 7);
    let hello = records.iter().find(|r| r["value"] == "hello").unwrap();
    assert_eq!(hello["key"], "user-123");
    assert_eq!(hello["partition"], 3, "FNV-1a placement like the original");
    let binary = records.iter().find(|r| r["key"] == "k").unwrap();
    assert_eq!(binary["value"], "/w==");
    assert_eq!(binary["value_base64"], true);
    assert_eq!(binary["headers"]["trace"], "/wE=", "not UTF-8, so base64");
    assert_eq!(binary["headers"]["app"], "cli");
    assert_eq!(binary["headers_base64"], serde_json::json!(["trace"]));
    assert_eq!(binary["timestamp_ns"], 1_700_000_000_000_000_000i64);
    assert_eq!(binary["partition"], 1);
    for r in &records {
        assert!(r["offset"].is_u64() && r["timestamp_ns"].is_i64(), "{r}");
    }

    // JSON output is JSON input: copy the topic and read back the same records.
    let o = obelisk(with_server(&url, &["produce", "copy", "--json"]), &o.stdout).await;
    assert_ok(&o);
    let o = obelisk(
        with_server(&url, &["consume", "copy", "--format", "json"]),
        b"",
    )
    .await;
    assert_ok(&o);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("offset");
        v.to_string()
    };
    let mut copied: Vec<String> = json_lines(&o).iter().map(strip).collect();
    let mut original: Vec<String> = records.iter().map(strip).collect();
    copied.sort();
    original.sort();
    assert_eq!(copied, original);

    let o = obelisk(
        with_server(&url, &["consume", "plain", "--count", "2"]),
        b"",
    )
    .await;
    assert_ok(&o);
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = obelisk(
        with_server(&url, &["consume", "plain", "--from", "latest"]),
        b"",
    )
    .await;
    assert_ok(&o);
    assert_eq!(stdout(&o), "", "nothing after the end");
    let o = obelisk(
        with_server(
            &url,
            &["consume", "plain", "--from", "2100-01-01T00:00:00Z"],
        ),
        b"",
    )
    .await;
    assert_ok(&o);
    assert_eq!(stdout(&o), "", "nothing after a future time");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_commit_what_they_print_and_can_be_reset() {
    let (_dir, server, url) = start().await;
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    assert_ok(&obelisk(with_server(&url, &["produce", "orders"]), input.as_bytes()).await);

    let first = obelisk(
        with_server(&url, &["consume", "orders", "--group", "g", "--count", "4"]),
        b"",
    )
    .await;
    assert_ok(&first);
    assert_eq!(stdout(&first).lines().count(), 4);
    let rest = obelisk(
        with_server(&url, &["consume", "orders", "--group", "g"]),
        b"",
    )
    .await;
    assert_ok(&rest);
    assert_eq!(
        stdout(&rest).lines().count(),
        6,
        "continues after the committed records"
    );
    let mut all: Vec<String> = stdout(&first)
        .lines()
        .chain(stdout(&rest).lines())
        .map(String::from)
        .collect();
    all.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "each record exactly once");
    let again = obelisk(
        with_server(&url, &["consume", "orders", "--group", "g"]),
        b"",
    )
    .await;
    assert_ok(&again);
    assert_eq!(stdout(&again), "");

    let peek = obelisk(
        with_server(&url, &["consume", "orders", "--group", "p", "--no-commit"]),
        b"",
    )
    .await;
    assert_ok(&peek);
    assert_eq!(stdout(&peek).lines().count(), 10);

    let list = obelisk(with_server(&url, &["groups", "list", "--json"]), b"").await;
    assert_ok(&list);
    let groups: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        groups,
        serde_json::json!(["g"]),
        "--no-commit leaves no group behind"
    );
    let table = obelisk(with_server(&url, &["groups", "describe", "g"]), b"").await;
    assert_ok(&table);
    assert!(stdout(&table).contains("total lag 0"), "{}", stdout(&table));
    assert!(stdout(&table).contains("COMMITTED"), "{}", stdout(&table));

    let reset = obelisk(
        with_server(
            &url,
            &[
                "groups", "reset", "g", "--topic", "orders", "--to", "earliest", "--json",
            ],
        ),
        b"",
    )
    .await;
    assert_ok(&reset);
    let reset: Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(reset["offsets"].as_array().unwrap().len(), 4);
    assert!(
        reset["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["offset"] == 0)
    );
    let described = obelisk(
        with_server(&url, &["groups", "describe", "g", "--json"]),
        b"",
    )
    .await;
    assert_ok(&described);
    let d: Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(d["total_lag"], 10);
    let replay = obelisk(
        with_server(
            &url,
            &["consume", "orders", "--group", "g", "--from", "earliest"],
        ),
        b"",
    )
    .await;
    assert_ok(&replay);
    assert_eq!(stdout(&replay).lines().count(), 10);

    let unknown = obelisk(with_server(&url, &["groups", "describe", "nope"]), b"").await;
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        stderr(&unknown),
        "error: NotFound: consumer group \"nope\" does not exist\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_listed_described_and_deleted() {
    let (_dir, server, url) = start().await;
    let created = obelisk(
        with_server(
            &url,
            &[
                "topics",
                "create",
                "events",
                "--partitions",
                "2",
                "--retention-ms",
                "3600000",
            ],
        ),
        b"",
    )
    .await;
    assert_ok(&created);
    assert_eq!(
        stdout(&created),
        "created topic events with 2 partitions, retention 1h\n"
    );
    assert_ok(
        &obelisk(
            with_server(&url, &["produce", "events", "--value", "x"]),
            b"",
        )
        .await,
    );

    let list = obelisk(with_server(&url, &["topics", "list"]), b"").await;
    assert_ok(&list);
    let text = stdout(&list);
    assert!(text.starts_with("TOPIC"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("events") && l.contains(" 2 ") && l.contains("1h")),
        "{text}"
    );
    let described = obelisk(
        with_server(&url, &["topics", "describe", "events", "--json"]),
        b"",
    )
    .await;
    assert_ok(&described);
    let d: Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(d["partitions"], 2);
    assert_eq!(d["records"], 1);
    assert_eq!(d["retention_ms"], 3_600_000);
    assert_eq!(d["partition_details"].as_array().unwrap().len(), 2);

    let again = obelisk(with_server(&url, &["topics", "create", "events"]), b"").await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        "error: AlreadyExists: topic \"events\" already exists\n"
    );
    assert_ok(&obelisk(with_server(&url, &["topics", "delete", "events"]), b"").await);
    let gone = obelisk(with_server(&url, &["topics", "describe", "events"]), b"").await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).starts_with("error: NotFound: topic \"events\" does not exist"),
        "{}",
        stderr(&gone)
    );
    let empty = obelisk(with_server(&url, &["topics", "list", "--json"]), b"").await;
    assert_ok(&empty);
    assert_eq!(
        serde_json::from_slice::<Value>(&empty.stdout).unwrap(),
        serde_json::json!([])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_new_records_and_commits_as_it_goes() {
    let (_dir, server, url) = start().await;
    assert_ok(&obelisk(with_server(&url, &["produce", "live"]), b"old-1\nold-2\n").await);
    let follower = tokio::spawn(obelisk(
        with_server(
            &url,
            &[
                "consume", "live", "--follow", "--group", "f", "--count", "4",
            ],
        ),
        b"",
    ));
    // Whether the subscription starts before or after these, the group's position (earliest, as
    // it has no commits) covers them.
    assert_ok(&obelisk(with_server(&url, &["produce", "live"]), b"new-1\nnew-2\n").await);
    let o = follower.await.unwrap();
    assert_ok(&o);
    assert_eq!(sorted_lines(&o), ["new-1", "new-2", "old-1", "old-2"]);
    let d = obelisk(
        with_server(&url, &["groups", "describe", "f", "--json"]),
        b"",
    )
    .await;
    assert_ok(&d);
    let d: Value = serde_json::from_slice(&d.stdout).unwrap();
    assert_eq!(d["total_lag"], 0, "{d}");
    server.stop().await;
}
