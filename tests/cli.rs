//! The `obelisk` binary as a user runs it: client commands against a real server in-process on
//! 127.0.0.1:0, `inspect` on data directories, and `bench` on tiny workloads (no timing asserts).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs the built binary with `args`, feeding `stdin`, off the async runtime's threads.
async fn obelisk(args: Vec<String>, stdin: &[u8]) -> Output {
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(&args)
            .env_remove("OBELISK_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(&stdin).expect("stdin takes the input");
        drop(input);
        child.wait_with_output().expect("the binary runs")
    })
    .await
    .expect("the runner thread does not panic")
}

/// `args` with `--server <server>` appended.
fn with_server(server: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(ToString::to_string).collect();
    v.push("--server".into());
    v.push(server.into());
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn sorted_lines(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(o).lines().map(ToString::to_string).collect();
    v.sort();
    v
}

async fn start() -> (tempfile::TempDir, obelisk::server::RunningServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let url = format!("http://{}", server.grpc_addr);
    (dir, server, url)
}

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
async fn errors_say_what_went_wrong_and_exit_non_zero() {
    // A port nothing listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{closed}");
    for args in [
        vec!["produce", "t", "--value", "x"],
        vec!["consume", "t"],
        vec!["topics", "list"],
        vec!["groups", "describe", "g"],
    ] {
        let o = obelisk(with_server(&down, &args), b"").await;
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: cannot reach the broker at {down}")),
            "{args:?}: {err}"
        );
    }
    // OBELISK_SERVER is the default, and a bare host:port works.
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .args(["topics", "list"])
            .env("OBELISK_SERVER", closed.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        stderr(&o).contains(&format!("cannot reach the broker at http://{closed}")),
        "{}",
        stderr(&o)
    );

    let (_dir, server, url) = start().await;
    let bad = obelisk(
        with_server(&url, &["produce", "bad/topic", "--value", "x"]),
        b"",
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).starts_with("error: InvalidArgument: invalid topic name \"bad/topic\""),
        "{}",
        stderr(&bad)
    );
    let bad_lines = obelisk(
        with_server(&url, &["produce", "t", "--json"]),
        b"{\"value\":\"ok\"}\nnot json\n",
    )
    .await;
    assert_eq!(bad_lines.status.code(), Some(1));
    assert!(
        stderr(&bad_lines).starts_with("error: line 2: not valid JSON"),
        "{}",
        stderr(&bad_lines)
    );
    let no_sep = obelisk(
        with_server(&url, &["produce", "t", "--key-separator", "="]),
        b"k=v\nnokey\n",
    )
    .await;
    assert_eq!(no_sep.status.code(), Some(1));
    assert!(
        stderr(&no_sep).contains("line 2 has no key separator"),
        "{}",
        stderr(&no_sep)
    );
    let unknown_topic = obelisk(with_server(&url, &["consume", "nope"]), b"").await;
    assert_eq!(unknown_topic.status.code(), Some(1));
    assert!(
        stderr(&unknown_topic).starts_with("error: NotFound: topic \"nope\""),
        "{}",
        stderr(&unknown_topic)
    );
    let bad_from = obelisk(
        with_server(&url, &["consume", "t", "--from", "yesterday"]),
        b"",
    )
    .await;
    assert_eq!(bad_from.status.code(), Some(2), "clap's usage error");
    assert!(
        stderr(&bad_from).contains("expected earliest, latest"),
        "{}",
        stderr(&bad_from)
    );
    let bad_group = obelisk(
        with_server(&url, &["consume", "t", "--group", "no/pe"]),
        b"",
    )
    .await;
    assert_eq!(bad_group.status.code(), Some(1));
    assert!(
        stderr(&bad_group).contains("invalid consumer group name"),
        "{}",
        stderr(&bad_group)
    );
    server.stop().await;
}

/// The `.log` files under a data directory.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file's bytes under `dir`, to show a command changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_passes_clean_data_and_reports_a_flipped_byte() {
    let (dir, server, url) = start().await;
    let input: String = (0..200)
        .map(|i| format!("key-{i}:value number {i}\n"))
        .collect();
    assert_ok(
        &obelisk(
            with_server(&url, &["produce", "orders", "--key-separator", ":"]),
            input.as_bytes(),
        )
        .await,
    );
    assert_ok(
        &obelisk(
            with_server(&url, &["consume", "orders", "--group", "g", "--count", "5"]),
            b"",
        )
        .await,
    );
    server.stop().await;
    let data = dir.path().to_str().unwrap().to_string();

    let clean = obelisk(vec!["inspect".into(), data.clone(), "--json".into()], b"").await;
    assert_ok(&clean);
    let report: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let parts = report["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(
        parts
            .iter()
            .map(|p| p["records"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    assert!(
        parts
            .iter()
            .all(|p| p["status"] == "ok" && p["first_offset"] == 0),
        "{report}"
    );
    let text = obelisk(vec!["inspect".into(), data.clone()], b"").await;
    assert_ok(&text);
    assert!(
        stdout(&text).contains("no damage found"),
        "{}",
        stdout(&text)
    );
    let records = obelisk(
        vec![
            "inspect".into(),
            data.clone(),
            "--records".into(),
            "--json".into(),
            "--topic".into(),
            "orders".into(),
        ],
        b"",
    )
    .await;
    assert_ok(&records);
    let dumped = json_lines(&records);
    assert_eq!(dumped.len(), 200);
    assert!(
        dumped
            .iter()
            .any(|r| r["key"] == "key-7" && r["value"] == "value number 7")
    );

    // Flip one byte in the middle of the largest log, after the clean shutdown.
    let log = logs(dir.path())
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let before = snapshot(dir.path());
    let damaged = obelisk(vec!["inspect".into(), data.clone()], b"").await;
    assert_eq!(damaged.status.code(), Some(3), "{}", stdout(&damaged));
    let out = stdout(&damaged);
    let line = out
        .lines()
        .find(|l| l.starts_with("damage: "))
        .unwrap_or_else(|| panic!("no damage line in {out}"));
    assert!(
        line.contains(log.to_str().unwrap()) && line.contains(" at byte "),
        "{line}"
    );
    assert!(out.contains("DAMAGED"), "{out}");
    assert!(
        stderr(&damaged).starts_with("error: 1 damaged place"),
        "{}",
        stderr(&damaged)
    );
    assert_eq!(snapshot(dir.path()), before, "inspect is read-only");

    let not_data = obelisk(vec!["inspect".into(), format!("{data}/topics/orders")], b"").await;
    assert_eq!(not_data.status.code(), Some(1));
    assert!(
        stderr(&not_data).contains("is it an Obelisk data directory?"),
        "{}",
        stderr(&not_data)
    );
}

fn bench_json(o: &Output) -> Value {
    assert_ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_and_verifies_a_tiny_run() {
    let data = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "bench",
            "--json",
            "--quiet",
            "--data-dir",
            data.path().to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        v.extend(extra.iter().map(ToString::to_string));
        v
    };
    let r = bench_json(
        &obelisk(
            args(&[
                "--count",
                "2000",
                "--producers",
                "2",
                "--consumers",
                "2",
                "--batch-size",
                "50",
                "--in-flight",
                "4",
                "--durability",
                "interval",
            ]),
            b"",
        )
        .await,
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["produce"]["records"], 2000);
    assert_eq!(
        r["consume"]["records"], 4000,
        "every consumer reads every record"
    );
    assert_eq!(r["verification"]["ok"], true);
    assert_eq!(r["verification"]["records_checked"], 4000);
    assert_eq!(r["verification"]["error_count"], 0);
    assert!(r["produce"]["latency_us"]["p99"].is_u64(), "{r}");
    assert!(r["produce"]["records_per_sec"].is_f64(), "{r}");
    assert_eq!(r["config"]["durability"], "interval");

    let r = bench_json(
        &obelisk(
            args(&[
                "--count",
                "600",
                "--transport",
                "grpc-unary",
                "--consume-with",
                "poll",
                "--topics",
                "2",
                "--batch-size",
                "7",
                "--in-flight",
                "3",
            ]),
            b"",
        )
        .await,
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["produce"]["records"], 600);
    assert_eq!(r["verification"]["records_checked"], 600);

    let r = bench_json(
        &obelisk(
            args(&[
                "--mode",
                "consume",
                "--count",
                "500",
                "--consumer-batch",
                "3",
            ]),
            b"",
        )
        .await,
    );
    assert_eq!(r["produce"], Value::Null, "the preload is not reported");
    assert_eq!(r["consume"]["records"], 500);
    assert_eq!(r["verification"]["ok"], true);

    let r = bench_json(
        &obelisk(
            args(&[
                "--mode",
                "produce",
                "--duration",
                "300ms",
                "--rate",
                "1000",
                "--batch-size",
                "10",
            ]),
            b"",
        )
        .await,
    );
    let produced = r["produce"]["records"].as_u64().unwrap();
    assert!(
        produced > 0 && produced <= 300,
        "open loop sends at most rate × duration: {produced}"
    );
    assert_eq!(produced % 10, 0, "whole batches");
    assert_eq!(r["verification"], Value::Null);

    // Unavailable listeners are refused clearly.
    let legacy = obelisk(args(&["--count", "10", "--transport", "legacy"]), b"").await;
    assert_eq!(legacy.status.code(), Some(1));
    assert!(
        stderr(&legacy).contains("legacy transport is not available"),
        "{}",
        stderr(&legacy)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_an_existing_broker_cleans_up_its_topics() {
    let (_dir, server, url) = start().await;
    let o = obelisk(
        with_server(
            &url,
            &[
                "bench",
                "--json",
                "--quiet",
                "--count",
                "1000",
                "--partitions",
                "2",
            ],
        ),
        b"",
    )
    .await;
    let r = bench_json(&o);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["config"]["server"], url.as_str());
    assert_eq!(
        r["config"]["durability"],
        Value::Null,
        "the broker's own setting applies"
    );
    assert_eq!(r["verification"]["records_checked"], 1000);
    let topics = obelisk(with_server(&url, &["topics", "list", "--json"]), b"").await;
    assert_ok(&topics);
    assert_eq!(
        serde_json::from_slice::<Value>(&topics.stdout).unwrap(),
        serde_json::json!([])
    );
    server.stop().await;
}
