//! Flipped bytes in segment logs, at chosen and at random places: the broker starts, every record
//! that is not physically damaged is readable at its original offset, no offset is given out
//! twice, and health, readiness, metrics and `obelisk inspect` all name the damage. The broker
//! stores record batches (format v2, one CRC per batch): a flip costs the batch it hit, here the
//! 10 records of one produce.

use obelisk::proto as pb;
use rand::{Rng, SeedableRng};
use tonic::Code;

use super::child::{self, Options};
use super::{
    Grpc, commit, create_topic, fetch, fetch_err, produce_values, read_range, segment_logs,
};

fn value(i: u64) -> Vec<u8> {
    format!("v{i:05}").into_bytes()
}

/// The frames of a segment log: (first byte, length, first offset, records), read from each
/// frame's length field (bit 31 marks a v2 batch) and offset fields (see docs/storage.md).
fn frames(path: &std::path::Path) -> Vec<(u64, u64, u64, u64)> {
    let b = std::fs::read(path).expect("log reads");
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 4 <= b.len() {
        let raw = u32_at(pos);
        let len = 4 + (raw & 0x7fff_ffff) as usize;
        let (first, count) = if raw & 0x8000_0000 != 0 {
            (u64_at(pos + 12), u64::from(u32_at(pos + 20)))
        } else {
            (u64_at(pos + 8), 1)
        };
        out.push((pos as u64, len as u64, first, count));
        pos += len;
    }
    out
}

/// The frame of `path` holding byte `at`.
fn frame_at(path: &std::path::Path, at: u64) -> (u64, u64, u64, u64) {
    frames(path)
        .into_iter()
        .find(|&(start, len, _, _)| (start..start + len).contains(&at))
        .expect("a frame holds the byte")
}

fn flip(path: &std::path::Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("log reads");
    bytes[at as usize] ^= 0x5a;
    std::fs::write(path, bytes).expect("log written");
}

async fn produce_n(c: &mut Grpc, topic: &str, from: u64, n: u64) {
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(10) {
        let acks = produce_values(c, topic, chunk.iter().map(|&i| value(i)).collect()).await;
        assert_eq!(acks, chunk.to_vec(), "offsets are dense from {from}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_active_segment_costs_one_record_and_is_reported_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    produce_n(&mut c, "t", 0, 300).await;
    commit(&mut c, "t", "g", 0, 300).await;
    broker.stop().await;

    let log = segment_logs(&data.join("topics/t/0"))[0].clone();
    let (start, _, first, count) = frames(&log)
        .into_iter()
        .find(|f| f.2 == 150)
        .expect("a batch starts at 150");
    assert_eq!((first, count), (150, 10), "one batch per produce of 10");
    flip(&log, start + 34);

    let (code, report) = child::inspect(&data);
    assert_eq!(code, 3, "inspect exits 3 on damage: {report}");
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("offsets 150 to 159 are unreadable"),
        "{findings}"
    );

    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    let before = fetch(&mut c, "t", 0, 0, 500).await;
    assert_eq!(
        before.iter().map(|r| r.value.to_vec()).collect::<Vec<_>>(),
        (0..150).map(value).collect::<Vec<_>>(),
        "a read across the damage returns the good records before it"
    );
    let err = fetch_err(&mut c, "t", 0, 150).await;
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("continue from offset 160"),
        "the error says where to go on: {}",
        err.message()
    );
    assert_eq!(fetch_err(&mut c, "t", 0, 155).await.code(), Code::DataLoss);
    let after = fetch(&mut c, "t", 0, 160, 500).await;
    assert_eq!(after.len(), 140);
    assert!(
        after.iter().all(|r| r.value == value(r.offset)),
        "records after the damage keep their offsets"
    );
    let acks = produce_values(&mut c, "t", vec![b"new".to_vec()]).await;
    assert_eq!(acks, vec![300], "offsets are never given out twice");

    let group = c
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .expect("describe")
        .into_inner();
    let p = &group.partitions[0];
    assert_eq!((p.committed_offset, p.log_end_offset, p.lag), (300, 301, 1));
    let polled = c
        .poll(pb::PollRequest {
            topic: "t".into(),
            group: "g".into(),
            max_records: 10,
            ..Default::default()
        })
        .await
        .expect("poll")
        .into_inner()
        .records;
    assert_eq!(
        polled.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![300]
    );

    let (code, health) = broker.http_json("/health").await;
    assert_eq!(
        code, 200,
        "damage degrades, it does not fail health: {health}"
    );
    let storage = &health["components"]["storage"];
    assert_eq!(storage["status"], "degraded", "{storage}");
    assert_eq!(
        storage["details"]["damaged_partitions"][0]["damaged_offsets"][0],
        serde_json::json!({"first": 150, "last": 159})
    );
    let (code, ready) = broker.http_json("/health/ready").await;
    assert_eq!(code, 200);
    assert!(
        ready["damaged"][0].as_str().unwrap_or("").contains("t/0"),
        "readiness says which partition: {ready}"
    );
    let (_, metrics) = broker.http_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("obelisk_partition_damaged_offsets{")
                && l.contains("topic=\"t\"")
                && l.ends_with(" 10")),
        "the damage is counted in metrics"
    );

    // Killed and restarted, the broker says the same and keeps what it acknowledged since.
    broker.kill9();
    let broker = child::start(&data, &Options::default()).await;
    let mut c = broker.client().await;
    assert_eq!(fetch_err(&mut c, "t", 0, 150).await.code(), Code::DataLoss);
    let tail = read_range(&mut c, "t", 0, 299, 301).await;
    assert_eq!(
        tail.iter()
            .map(|r| (r.offset, r.value.to_vec()))
            .collect::<Vec<_>>(),
        vec![(299, value(299)), (300, b"new".to_vec())]
    );
    assert_eq!(
        produce_values(&mut c, "t", vec![b"x".to_vec()]).await,
        vec![301]
    );
    broker.stop().await;
}

/// Random flips in random segments (sealed and active) of a partition that rolled many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_flips_cost_only_the_records_they_hit() {
    let rounds = super::rounds(6);
    let flags = Options {
        flags: vec!["--segment-bytes".into(), "4096".into()],
        ..Options::default()
    };
    for round in 0..rounds {
        let mut rng = rand::rngs::StdRng::seed_from_u64(round);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let broker = child::start(&data, &flags).await;
        let mut c = broker.client().await;
        create_topic(&mut c, "t", 1).await;
        // Batches of 10 small records take ~20 bytes a record: enough of them to roll a few times.
        let n = rng.gen_range(700..1600);
        produce_n(&mut c, "t", 0, n).await;
        broker.stop().await;

        let logs = segment_logs(&data.join("topics/t/0"));
        assert!(logs.len() > 2, "the partition rolled");
        let which = rng.gen_range(0..logs.len());
        let len = std::fs::metadata(&logs[which]).unwrap().len();
        let at = rng.gen_range(0..len);
        // The batch holding the byte, found before the flip can change its length field.
        let (_, _, first, count) = frame_at(&logs[which], at);
        let hit = first..first + count;
        flip(&logs[which], at);
        let base: u64 = logs[which]
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .expect("a segment base");

        let broker = child::start(&data, &flags).await;
        let mut c = broker.client().await;
        for offset in 0..n {
            if hit.contains(&offset) {
                let err = fetch_err(&mut c, "t", 0, offset).await;
                assert_eq!(err.code(), Code::DataLoss, "round {round}: {err:?}");
            } else {
                let got = fetch(&mut c, "t", 0, offset, 1).await;
                assert_eq!(
                    got.first().map(|r| (r.offset, r.value.to_vec())),
                    Some((offset, value(offset))),
                    "round {round}: flip at byte {at} of segment {base} (records {hit:?})"
                );
            }
        }
        let acks = produce_values(&mut c, "t", vec![b"after".to_vec()]).await;
        assert!(acks[0] >= n, "round {round}: offset {} reused", acks[0]);
        broker.stop().await;
        let (code, _) = child::inspect(&data);
        assert_eq!(code, 3, "round {round}: inspect reports the damage");
    }
}
