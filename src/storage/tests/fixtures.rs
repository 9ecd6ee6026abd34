//! The checked-in data directories of every on-disk format (`tests/fixtures/format/v<N>/`, each
//! with the records it holds in `records.jsonl`) read back whole: a change that can no longer
//! read data an earlier version wrote fails here. And a partition written in v1 goes on in v2,
//! reading back whole over restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::storage::batch::Compression;
use crate::storage::log::PartitionLog;
use crate::storage::{LogConfig, LogFiles, Record, TopicConfig};

fn fixture(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/format/{version}"))
}

/// (topic, partition) → records, from `records.jsonl` (keys, values and headers are UTF-8 text).
fn expected(version: &str) -> BTreeMap<(String, u32), Vec<Record>> {
    let text = std::fs::read_to_string(fixture(version).join("records.jsonl")).unwrap();
    let mut out: BTreeMap<(String, u32), Vec<Record>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| Bytes::from(v[k].as_str().unwrap().to_string());
        let mut headers: Vec<(String, Bytes)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, h)| (k.clone(), Bytes::from(h.as_str().unwrap().to_string())))
            .collect();
        headers.sort();
        let topic = v["topic"].as_str().unwrap_or("events").to_string();
        out.entry((topic, v["partition"].as_u64().unwrap() as u32))
            .or_default()
            .push(Record {
                offset: v["offset"].as_u64().unwrap(),
                timestamp: v["timestamp_ns"].as_i64().unwrap(),
                key: s("key"),
                value: s("value"),
                headers,
            });
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn config(topic_dir: &Path) -> LogConfig {
    let topic: TopicConfig =
        serde_json::from_slice(&std::fs::read(topic_dir.join("topic.json")).unwrap()).unwrap();
    LogConfig {
        segment_bytes: 4096,
        compression: topic.compression,
        write_v1: false,
    }
}

fn read_all(log: &PartitionLog) -> Vec<Record> {
    let mut out = Vec::new();
    let mut off = log.start_offset();
    while off < log.end_offset() {
        let got = log
            .plan_read(off, 7, 1 << 20, log.end_offset())
            .unwrap()
            .execute()
            .unwrap();
        assert!(!got.is_empty(), "nothing read at {off}");
        off += got.len() as u64;
        out.extend(got);
    }
    out.iter_mut().for_each(|r| r.headers.sort());
    out
}

/// Opens every partition of a copy of the fixture and checks it holds exactly its records.
fn check_fixture(version: &str) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(version), dir.path());
    let files = Arc::new(LogFiles::new(8));
    let want = expected(version);
    assert!(!want.is_empty());
    for ((topic, partition), records) in &want {
        let topic_dir = dir.path().join("topics").join(topic);
        let pdir = topic_dir.join(partition.to_string());
        for _restart in 0..2 {
            let log = PartitionLog::open(&pdir, config(&topic_dir), &files).unwrap();
            assert!(
                log.damage().next().is_none(),
                "{version} {topic}/{partition}"
            );
            assert_eq!(&read_all(&log), records, "{version} {topic}/{partition}");
            // Reads starting at every offset (inside batches too) return from that offset.
            for r in records.iter().step_by(3) {
                let got = log
                    .plan_read(r.offset, 2, 1 << 20, log.end_offset())
                    .unwrap()
                    .execute()
                    .unwrap();
                assert_eq!(got[0].offset, r.offset);
            }
        }
    }
}

#[test]
fn the_v1_fixture_reads_back_whole() {
    check_fixture("v1");
}

#[test]
fn the_v2_fixture_reads_back_whole() {
    check_fixture("v2");
}

#[test]
fn a_v1_partition_goes_on_in_v2_and_reads_back_whole_over_restarts() {
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture("v1"), dir.path());
        let files = Arc::new(LogFiles::new(8));
        let pdir = dir.path().join("topics/events/0");
        let cfg = LogConfig {
            segment_bytes: 4096,
            compression,
            write_v1: false,
        };
        let mut all = expected("v1").remove(&("events".into(), 0)).unwrap();
        for round in 0..3u64 {
            let mut log = PartitionLog::open(&pdir, cfg, &files).unwrap();
            assert_eq!(read_all(&log), all, "{compression} round {round}");
            let base = log.end_offset();
            let batch: Vec<Record> = (0..25u64)
                .map(|i| Record {
                    offset: base + i,
                    timestamp: 1_800_000_000_000_000_000 + (round * 100 + i) as i64,
                    key: Bytes::from(format!("k{i}")),
                    value: Bytes::from(format!(
                        "{{\"round\":{round},\"i\":{i},\"pad\":\"{}\"}}",
                        "y".repeat(60)
                    )),
                    headers: vec![("h".into(), Bytes::from_static(b"v"))],
                })
                .collect();
            log.append(&batch).unwrap();
            all.extend(batch);
            assert_eq!(
                read_all(&log),
                all,
                "{compression} round {round} before restart"
            );
        }
        let log = PartitionLog::open(&pdir, cfg, &files).unwrap();
        assert_eq!(read_all(&log), all, "{compression} after the last restart");
        // The v1 segments stay v1; what came after is v2.
        let first = std::fs::read(pdir.join(format!("{:020}.log", 0))).unwrap();
        assert!(!crate::storage::batch::is_batch(&first, 0));
        let last = std::fs::read(pdir.join(format!("{:020}.log", 71))).unwrap();
        assert!(crate::storage::batch::is_batch(&last, 0));
    }
}
