//! `bench` on tiny workloads: counts and verification in its JSON (no timing assertions).

use std::process::Output;

use serde_json::Value;

use super::{assert_ok, obelisk, start, stdout, with_server};

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

    // The legacy TCP and HTTP transports produce through their own listeners; the consumers
    // (gRPC) verify every record they wrote.
    for transport in ["legacy", "http"] {
        let r = bench_json(
            &obelisk(
                args(&[
                    "--count",
                    "400",
                    "--batch-size",
                    "20",
                    "--transport",
                    transport,
                ]),
                b"",
            )
            .await,
        );
        assert_eq!(r["ok"], true, "{transport}: {r}");
        assert_eq!(r["produce"]["records"], 400, "{transport}");
        assert_eq!(r["verification"]["ok"], true, "{transport}");
        assert_eq!(r["verification"]["records_checked"], 400, "{transport}");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_group_mode_consumes_everything_and_times_each_join() {
    let data = tempfile::tempdir().unwrap();
    let o = obelisk(
        vec![
            "bench".into(),
            "--json".into(),
            "--mode".into(),
            "group".into(),
            "--count".into(),
            "2000".into(),
            "--partitions".into(),
            "8".into(),
            "--consumers".into(),
            "2".into(),
            "--joins".into(),
            "2".into(),
            "--durability".into(),
            "interval".into(),
            "--data-dir".into(),
            data.path().to_str().unwrap().into(),
        ],
        b"",
    )
    .await;
    let r = bench_json(&o);
    assert_eq!(r["records"], 2000, "{r}");
    assert_eq!(r["joins"], 2, "{r}");
    assert!(
        r["join_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0),
        "{r}"
    );
    assert!(
        r["records_per_second"].as_f64().is_some_and(|x| x > 0.0),
        "{r}"
    );
    assert!(
        r["command"].as_str().unwrap().contains("--mode group"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_shared_mode_accepts_every_record_and_reads_them_with_subscribe() {
    let data = tempfile::tempdir().unwrap();
    let o = obelisk(
        [
            "bench",
            "--json",
            "--mode",
            "shared",
            "--count",
            "3000",
            "--partitions",
            "3",
            "--consumers",
            "4",
            "--consumer-batch",
            "100",
            "--data-dir",
            data.path().to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect(),
        b"",
    )
    .await;
    let r = bench_json(&o);
    assert_eq!(r["records"], 3000, "{r}");
    assert_eq!(r["workers"], 4, "{r}");
    // Every record was accepted ("done") once: 3000 records in batches of at most 100.
    assert!(r["shared"]["settles"].as_u64().unwrap() >= 30, "{r}");
    assert!(r["shared_stream"]["settles"].as_u64().unwrap() >= 30, "{r}");
    for rate in [
        &r["shared"]["records_accepted_per_second"],
        &r["shared_stream"]["records_accepted_per_second"],
        &r["subscribe"]["records_per_second"],
    ] {
        assert!(rate.as_f64().is_some_and(|x| x > 0.0), "{r}");
    }
    assert!(
        r["command"].as_str().unwrap().contains("--mode shared"),
        "{r}"
    );
}
