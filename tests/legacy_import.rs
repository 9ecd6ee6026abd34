//! Importing the original Obelisk's data directory: the real `.log`/`.idx` pair captured in
//! `tests/fixtures/legacy/vectors.json`, consumer offsets, and damage reported with file and byte
//! position while nothing is imported.

#[path = "common/legacy_harness.rs"]
mod harness;

use std::path::PathBuf;

use bytes::Bytes;
use harness::{fetch_all, hex, vectors};
use obelisk::broker::{Broker, BrokerConfig, ProduceRecord, Record};
use obelisk::legacy::codec::Message;
use obelisk::legacy::import::{GroupOffset, ImportedGroup, ImportedTopic};
use obelisk::legacy::{ImportError, import};
use serde_json::Value;

/// A temp dir laid out like the original: `<root>/data/topics` (the data dir) and
/// `<root>/data/consumers`, with a broker of its own under `<root>/broker`.
struct Setup {
    root: tempfile::TempDir,
    broker: Broker,
}

impl Setup {
    async fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("data/topics")).expect("mkdir");
        let broker = Broker::open(
            BrokerConfig {
                data_dir: root.path().join("broker"),
                ..BrokerConfig::default()
            },
            &tokio::runtime::Handle::current(),
        )
        .expect("broker");
        Self { root, broker }
    }

    fn src(&self) -> PathBuf {
        self.root.path().join("data/topics")
    }

    fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.src().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// The captured pair: topic "vectors", partition 0.
    fn write_vectors_pair(&self, v: &Value) -> (PathBuf, PathBuf) {
        let pair = &v["log_idx_pair"];
        assert_eq!(pair["topic"], "vectors");
        let log = self.write(
            "vectors/partition-0.log",
            &hex(pair["log_hex"].as_str().expect("log")),
        );
        let idx = self.write(
            "vectors/partition-0.idx",
            &hex(pair["idx_hex"].as_str().expect("idx")),
        );
        (log, idx)
    }

    /// Writes a partition as the original would: frames, and their byte positions as the index.
    fn write_partition(&self, topic: &str, partition: u32, messages: &[Message]) {
        let (mut log, mut idx) = (Vec::new(), Vec::new());
        for m in messages {
            idx.extend_from_slice(&(log.len() as i64).to_le_bytes());
            m.encode_frame(&mut log);
        }
        self.write(&format!("{topic}/partition-{partition}.log"), &log);
        self.write(&format!("{topic}/partition-{partition}.idx"), &idx);
    }

    fn write_consumer(&self, name: &str, json: &str) {
        let dir = self.root.path().join("data/consumers");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.json")), json).expect("write");
    }

    async fn records(&self, topic: &str, partition: u32) -> Vec<Record> {
        fetch_all(&self.broker, topic, partition).await
    }

    /// Checks the broker holds no topics and no groups.
    fn assert_nothing_imported(&self) {
        assert!(self.broker.list_topics().is_empty(), "no topic created");
        assert!(self.broker.list_groups().is_empty(), "no group created");
    }
}

/// A group's committed offset in one partition, as DescribeGroup reports it.
fn committed(broker: &Broker, group: &str, topic: &str, partition: u32) -> Option<u64> {
    broker
        .describe_group(group)
        .ok()?
        .into_iter()
        .find(|g| g.topic == topic && g.partition == partition)
        .map(|g| g.committed)
}

fn text_message(topic: &str, key: &str, value: &str, timestamp: i64) -> Message {
    Message {
        timestamp,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_captured_pair_imports_to_exactly_the_original_records() {
    let setup = Setup::new().await;
    let v = vectors();
    setup.write_vectors_pair(&v);
    setup.write_consumer(
        "reader",
        r#"{"vectors": 0, "vectors_partitions": {"0": 3}}"#,
    );
    let report = import(&setup.src(), &setup.broker).await.expect("imports");
    let messages = v["messages"].as_array().expect("messages");
    assert_eq!(
        report.topics,
        vec![ImportedTopic {
            name: "vectors".into(),
            partitions: 1,
            records: vec![messages.len() as u64],
        }]
    );
    assert_eq!(
        report.groups,
        vec![ImportedGroup {
            name: "reader".into(),
            offsets: vec![GroupOffset {
                topic: "vectors".into(),
                partition: 0,
                next_offset: 3,
            }],
        }]
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let records = setup.records("vectors", 0).await;
    assert_eq!(records.len(), messages.len());
    for (i, (r, m)) in records.iter().zip(messages).enumerate() {
        let name = m["name"].as_str().expect("name");
        assert_eq!(r.offset, i as u64, "{name}: the original's offset");
        assert_eq!(
            r.timestamp,
            m["timestamp_unix_nano"].as_i64().expect("ts"),
            "{name}"
        );
        assert_eq!(r.key, hex(m["key_hex"].as_str().expect("key")), "{name}");
        assert_eq!(
            r.value,
            hex(m["value_hex"].as_str().expect("value")),
            "{name}"
        );
    }
    assert_eq!(committed(&setup.broker, "reader", "vectors", 0), Some(3));
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_captured_directory_is_refused_for_its_empty_topic_then_imports() {
    let setup = Setup::new().await;
    let v = vectors();
    setup.write_vectors_pair(&v);
    let others = v["other_files_from_same_run"].as_object().expect("files");
    for (path, content) in others {
        if let Some(relative) = path.strip_prefix("data/topics/") {
            setup.write(relative, &hex(content.as_str().expect("hex")));
        }
    }
    // The original stored the empty topic's records straight in its data directory.
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("refused");
    let ImportError::Unsupported { path, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(path.ends_with("topics/partition-0.idx"), "{err}");
    assert!(err.to_string().contains("empty topic"), "{err}");
    setup.assert_nothing_imported();

    // Moved aside, the rest imports.
    for ext in ["log", "idx"] {
        std::fs::remove_file(setup.src().join(format!("partition-0.{ext}"))).expect("rm");
    }
    let report = import(&setup.src(), &setup.broker).await.expect("imports");
    let counts: Vec<(&str, u64)> = report
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.records.iter().sum()))
        .collect();
    assert_eq!(
        counts,
        [
            ("http-topic", 2),
            ("vectors", 8),
            ("vectors-edge", 4),
            ("vectors-trailing", 1)
        ]
    );
    // The record whose frame had trailing bytes was stored without them, by the original too.
    let trailing = setup.records("vectors-trailing", 0).await;
    assert_eq!(trailing[0].value, b"trailing bytes follow"[..]);
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_reported_and_nothing_is_imported() {
    let setup = Setup::new().await;
    let v = vectors();
    // A healthy topic first: it must not be imported either.
    setup.write_partition("another", 0, &[text_message("another", "k", "v", 1)]);
    let (log, _) = setup.write_vectors_pair(&v);
    let full = std::fs::read(&log).expect("read");
    std::fs::write(&log, &full[..full.len() - 10]).expect("truncate");
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("damaged");
    let ImportError::Damaged { path, position, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(path, &log);
    // The last frame starts at 1602 (idx_positions in the vectors).
    assert_eq!(*position, 1602, "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    setup.assert_nothing_imported();
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_index_is_reported_and_nothing_is_imported() {
    let v = vectors();
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, u64); 4] = [
        // Entry 3 points one byte past its frame's start.
        ("moved entry", |idx| idx[24] += 1, 24),
        ("missing last entry", |idx| idx.truncate(56), 56),
        (
            "extra entry",
            |idx| idx.extend_from_slice(&1643i64.to_le_bytes()),
            64,
        ),
        ("partial entry", |idx| idx.truncate(60), 56),
    ];
    for (name, damage, expected_position) in cases {
        let setup = Setup::new().await;
        let (_, idx) = setup.write_vectors_pair(&v);
        let mut bytes = std::fs::read(&idx).expect("read");
        damage(&mut bytes);
        std::fs::write(&idx, &bytes).expect("write");
        let err = import(&setup.src(), &setup.broker).await.expect_err(name);
        let ImportError::Damaged { path, position, .. } = &err else {
            panic!("{name}: unexpected error: {err}");
        };
        assert_eq!(path, &idx, "{name}");
        assert_eq!(*position, expected_position, "{name}: {err}");
        setup.assert_nothing_imported();
        setup.broker.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_another_topic_is_reported() {
    let setup = Setup::new().await;
    let frames = [
        text_message("mine", "a", "1", 1),
        text_message("theirs", "b", "2", 2),
    ];
    setup.write_partition("mine", 0, &frames);
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("mismatch");
    let ImportError::Damaged { path, position, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(path.ends_with("mine/partition-0.log"));
    assert_eq!(*position, frames[0].encoded_len() as u64 + 4);
    assert!(err.to_string().contains("\"theirs\""), "{err}");
    setup.assert_nothing_imported();
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_group_offsets_keep_their_numbers() {
    let setup = Setup::new().await;
    let p0: Vec<Message> = (0..3)
        .map(|i| text_message("orders", "k0", &format!("a{i}"), i))
        .collect();
    let p2: Vec<Message> = (0..5)
        .map(|i| text_message("orders", "k2", &format!("c{i}"), 10 + i))
        .collect();
    setup.write_partition("orders", 0, &p0);
    setup.write_partition("orders", 2, &p2);
    setup.write_consumer(
        "billing",
        r#"{"orders": 0, "orders_partitions": {"0": 2, "2": 99}, "gone_partitions": {"0": 1}}"#,
    );
    let report = import(&setup.src(), &setup.broker).await.expect("imports");
    assert_eq!(report.topics[0].partitions, 3);
    assert_eq!(report.topics[0].records, vec![3, 0, 5]);
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.contains("lowered to 5")));
    assert!(report.warnings.iter().any(|w| w.contains("\"gone\"")));
    let values = |records: Vec<Record>| -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    };
    assert_eq!(values(setup.records("orders", 0).await), ["a0", "a1", "a2"]);
    assert!(setup.records("orders", 1).await.is_empty());
    assert_eq!(
        values(setup.records("orders", 2).await),
        ["c0", "c1", "c2", "c3", "c4"]
    );
    assert_eq!(committed(&setup.broker, "billing", "orders", 0), Some(2));
    assert_eq!(committed(&setup.broker, "billing", "orders", 2), Some(5));
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_already_has_records_is_refused() {
    let setup = Setup::new().await;
    let v = vectors();
    setup.write_vectors_pair(&v);
    let record = ProduceRecord {
        value: Bytes::from_static(b"already here"),
        ..ProduceRecord::default()
    };
    setup
        .broker
        .produce("vectors", vec![record])
        .await
        .expect("produce");
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ImportError::TopicNotEmpty { topic, .. } if topic == "vectors"),
        "{err}"
    );
    let total: usize = {
        let mut n = 0;
        for p in 0..4 {
            n += setup.records("vectors", p).await.len();
        }
        n
    };
    assert_eq!(total, 1, "nothing added");
    setup.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_directory_names_and_missing_files_are_refused() {
    let setup = Setup::new().await;
    setup.write_partition("bad name", 0, &[text_message("bad name", "", "v", 1)]);
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("refused");
    assert!(matches!(&err, ImportError::Unsupported { .. }), "{err}");
    std::fs::remove_dir_all(setup.src().join("bad name")).expect("rm");

    setup.write_partition("fine", 0, &[text_message("fine", "", "v", 1)]);
    std::fs::remove_file(setup.src().join("fine/partition-0.idx")).expect("rm");
    let err = import(&setup.src(), &setup.broker)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ImportError::Missing(p) if p.ends_with("fine/partition-0.idx")),
        "{err}"
    );
    setup.assert_nothing_imported();
    setup.broker.shutdown().await;
}

/// `obelisk import-legacy` as a user runs it: the built binary, a data directory, a report; then
/// damaged input refused with the file and position and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_legacy_command_reports_and_refuses_damage() {
    let setup = Setup::new().await;
    setup.broker.shutdown().await;
    let v = vectors();
    let (log, _) = setup.write_vectors_pair(&v);
    let data = setup.root.path().join("imported");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_obelisk"))
            .arg("import-legacy")
            .arg(setup.src())
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("runs")
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("topic vectors: 8 records in 1 partitions"),
        "{stdout}"
    );

    let full = std::fs::read(&log).expect("read");
    std::fs::write(&log, &full[..full.len() - 10]).expect("truncate");
    std::fs::remove_dir_all(&data).expect("fresh target");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("partition-0.log") && stderr.contains("1602"),
        "{stderr}"
    );
}
