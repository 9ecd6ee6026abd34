//! Cross-language: records produced by the Python client (clients/python/tests/cross_produce.py:
//! binary keys and values, headers, explicit timestamps) are read back with identical key, value,
//! headers and timestamp by the Rust client and, when node and its modules are there, by the
//! TypeScript client (clients/typescript/scripts/cross_consume.js).
//!
//! Needs `python3` with grpcio (clients/run-tests.sh installs it). Without it the test says so and
//! passes, except under `CI`, where it fails.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use obelisk::client::Consumer;
use obelisk::proto as pb;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Runs a command off the async runtime (the server keeps serving on it meanwhile).
async fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn expect_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

/// One expected record from the JSON the Python side wrote.
#[derive(Debug, PartialEq)]
struct Expected {
    timestamp_ns: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: HashMap<String, Vec<u8>>,
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

/// (partition, offset) -> record, from `path`; and the topic.
fn read_expected(path: &Path) -> (String, HashMap<(u32, u64), Expected>) {
    let json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let records = json["records"].as_array().unwrap().iter().map(|r| {
        let place = (
            u32::try_from(r["partition"].as_u64().unwrap()).unwrap(),
            r["offset"].as_u64().unwrap(),
        );
        let headers = r["headers"].as_object().unwrap();
        let expected = Expected {
            timestamp_ns: r["timestamp_ns"].as_str().unwrap().parse().unwrap(),
            key: b64(&r["key"]),
            value: b64(&r["value"]),
            headers: headers.iter().map(|(k, v)| (k.clone(), b64(v))).collect(),
        };
        (place, expected)
    });
    (
        json["topic"].as_str().unwrap().to_string(),
        records.collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_produced_records_are_read_identically_by_rust_and_typescript() {
    if !succeeds(Command::new(python()).args(["-c", "import grpc, google.protobuf"])) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: {} cannot import grpc; run clients/run-tests.sh (or pip install grpcio protobuf) first",
            python()
        );
        eprintln!(
            "SKIPPED cross_language: {} cannot import grpc (run clients/run-tests.sh to install it)",
            python()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(&dir.path().join("data"))).await;
    let addr = server.grpc_addr.to_string();
    let expected_path = dir.path().join("expected.json");

    let mut produce = Command::new(python());
    produce
        .arg(repo().join("clients/python/tests/cross_produce.py"))
        .args(["--addr", &addr, "--topic", "cross", "--out"])
        .arg(&expected_path);
    expect_success("the Python producer", &run(produce).await);
    let (topic, expected) = read_expected(&expected_path);
    assert_eq!(expected.len(), 25);

    // The Rust client.
    let client = common::grpc_client(&server).await;
    let mut consumer = Consumer::new(client, &topic, "cross-rust");
    consumer.max_wait_ms = 200;
    let mut got: HashMap<(u32, u64), pb::Record> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < expected.len() && Instant::now() < deadline {
        let records = consumer.poll().await.unwrap();
        consumer.commit(&records).await.unwrap();
        got.extend(records.into_iter().map(|r| ((r.partition, r.offset), r)));
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "every record read back within 10 s"
    );
    for (place, want) in &expected {
        let r = got
            .get(place)
            .unwrap_or_else(|| panic!("no record at {place:?}"));
        let have = Expected {
            timestamp_ns: r.timestamp_ns,
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.to_vec()))
                .collect(),
        };
        assert_eq!(&have, want, "record at {place:?}");
    }
    eprintln!("rust consumer: {} records match", got.len());

    // The TypeScript client, when node and its modules are installed.
    let ts = repo().join("clients/typescript");
    let node_ready = succeeds(Command::new("node").arg("--version"))
        && ts.join("node_modules/@grpc/grpc-js").is_dir();
    if node_ready {
        let mut consume = Command::new("node");
        consume
            .arg(ts.join("scripts/cross_consume.js"))
            .args(["--addr", &addr, "--expected"])
            .arg(&expected_path);
        expect_success("the TypeScript consumer", &run(consume).await);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: node or clients/typescript/node_modules is missing; run clients/run-tests.sh first"
        );
        eprintln!(
            "SKIPPED the TypeScript half: no node or no clients/typescript/node_modules (npm ci there)"
        );
    }
    server.stop().await;
}
