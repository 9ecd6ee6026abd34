//! Durability under SIGKILL: a child process appends in `fsync` mode from several concurrent
//! producers and reports each acknowledgement on stdout; the parent kills it at a random moment and
//! reopens the data: every acknowledged record must be there, with its value.
//!
//! The child is this same test binary, re-run with `OBELISK_DURABILITY_CHILD` pointing at the data
//! directory.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use obelisk::broker::{Broker, BrokerConfig, FetchRequest, ProduceRecord, ReadLimits, TopicConfig};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "OBELISK_DURABILITY_CHILD";

/// Runs only inside the child: produce forever, print "ACK partition offset value" per ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // Not the child: nothing to do.
    };
    let broker = Broker::open(
        BrokerConfig {
            data_dir: dir.into(),
            ..BrokerConfig::default()
        },
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    if broker.describe_topic("d").is_err() {
        broker
            .create_topic(
                "d",
                TopicConfig {
                    partitions: 3,
                    retention_ms: 0,
                    retention_bytes: 0,
                },
            )
            .await
            .unwrap();
    }
    let round = std::process::id();
    let mut tasks = Vec::new();
    for producer in 0..4 {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let batch: Vec<ProduceRecord> = (0..5)
                    .map(|k| ProduceRecord {
                        key: Bytes::from(format!("p{producer}")),
                        value: Bytes::from(format!("{round}-{producer}-{i}-{k}")),
                        ..ProduceRecord::default()
                    })
                    .collect();
                let values: Vec<Bytes> = batch.iter().map(|r| r.value.clone()).collect();
                let acks = broker.produce("d", batch).await.unwrap();
                let mut out = String::new();
                for (a, v) in acks.iter().zip(values) {
                    out.push_str(&format!(
                        "ACK {} {} {}\n",
                        a.partition,
                        a.offset,
                        String::from_utf8_lossy(&v)
                    ));
                }
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(out.as_bytes()).unwrap();
                stdout.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut acked: Vec<(u32, u64, String)> = Vec::new();
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "durability_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = rng.gen_range(50..3000);
        let lines = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let mut parts = rest.splitn(3, ' ');
                    let (Some(p), Some(o), Some(v)) = (parts.next(), parts.next(), parts.next())
                    else {
                        continue; // A line cut by the kill.
                    };
                    got.push((p.parse().unwrap(), o.parse().unwrap(), v.to_string()));
                    if got.len() == kill_after {
                        // SIGKILL right now, while producers are mid-flight.
                        let _ = child.kill();
                    }
                }
            }
            let _ = child.wait();
            got
        });
        let got = tokio::time::timeout(Duration::from_secs(120), lines)
            .await
            .unwrap()
            .unwrap();
        assert!(
            got.len() >= kill_after,
            "round {round}: the child stopped by itself after {} acks",
            got.len()
        );
        acked.extend(got);

        let broker = Broker::open(
            BrokerConfig {
                data_dir: dir.path().into(),
                ..BrokerConfig::default()
            },
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        for (partition, offset, value) in &acked {
            let r = broker
                .fetch(FetchRequest {
                    topic: "d".into(),
                    partition: *partition,
                    offset: *offset,
                    limits: ReadLimits {
                        max_records: 1,
                        ..ReadLimits::default()
                    },
                })
                .await
                .unwrap_or_else(|e| {
                    panic!("round {round}: acked {partition}/{offset} missing: {e}")
                });
            assert_eq!(
                r.records.len(),
                1,
                "round {round}: acked {partition}/{offset} missing"
            );
            assert_eq!(
                r.records[0].value,
                Bytes::from(value.clone()),
                "round {round}"
            );
        }
        broker.shutdown().await;
    }
    assert!(acked.len() > 200, "only {} acks in all rounds", acked.len());
}
