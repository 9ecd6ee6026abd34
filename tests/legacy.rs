//! Black-box tests of the legacy TCP listener over real sockets: the original's captured bytes
//! (`tests/fixtures/legacy/vectors.json`) replayed exactly, what gets stored, pipelining, invalid
//! topics and frame sizes. Connection handling (limits, timeouts, shutdown) is in
//! `legacy_connections.rs`, importing in `legacy_import.rs`.

#[path = "common/legacy_harness.rs"]
mod harness;

use std::collections::BTreeSet;

use bytes::Bytes;
use harness::*;
use obelisk::broker::{RECORD_OVERHEAD, Record};
use obelisk::legacy::codec::{MAX_FRAME_LEN, MESSAGE_HEADER_LEN, Message, Reply};
use obelisk::legacy::{LegacyClient, LegacyConfig};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_every_message_vector_and_stores_it() {
    let server = Server::start(LegacyConfig::default()).await;
    let v = vectors();
    let messages = v["messages"].as_array().expect("messages");
    assert!(!messages.is_empty());
    // As the vectors were captured: one connection, each frame then its reply.
    let mut conn = server.connect().await;
    for m in messages {
        let name = str_of(m, "name");
        let reply = hex(str_of(m, "reply_hex"));
        conn.write_all(&hex(str_of(m, "framed_hex")))
            .await
            .expect("write");
        assert_eq!(read_n(&mut conn, reply.len()).await, reply, "{name}");
    }
    assert_open(&mut conn, "after the messages").await;

    // Stored: each message exactly once, with its key, value and timestamp, keyed ones in the
    // original's partition (fnv1a % 4), and in send order within a partition.
    let mut stored = Vec::new();
    for p in 0..4 {
        stored.push(server.records("vectors", p).await);
    }
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(total, messages.len());
    let mut last_index = [None::<usize>; 4];
    for m in messages {
        let name = str_of(m, "name");
        let key = hex(str_of(m, "key_hex"));
        let value = hex(str_of(m, "value_hex"));
        let ts = m["timestamp_unix_nano"].as_i64().expect("timestamp");
        let found: Vec<(usize, &Record)> = stored
            .iter()
            .enumerate()
            .flat_map(|(p, recs)| recs.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.timestamp == ts && r.key == key && r.value == value)
            .collect();
        assert_eq!(found.len(), 1, "{name} stored once");
        let (partition, record) = found[0];
        assert!(record.headers.is_empty());
        match m["partition_if_4_partitions"].as_u64() {
            Some(expected) => assert_eq!(partition as u64, expected, "{name}"),
            None => assert!(
                key.is_empty(),
                "{name}: only empty keys have no fixed partition"
            ),
        }
        // Offsets follow send order within the partition.
        let offset = record.offset as usize;
        if let Some(prev) = last_index[partition] {
            assert!(
                offset > prev,
                "{name} after the earlier one in partition {partition}"
            );
        }
        last_index[partition] = Some(offset);
    }
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_every_edge_case_vector() {
    let server = Server::start(LegacyConfig::default()).await;
    let v = vectors();
    let cases = v["edge_cases"].as_array().expect("edge_cases");
    assert!(!cases.is_empty());
    let before = tree(&server.data_dir());
    for case in cases {
        let name = str_of(case, "name");
        let mut conn = server.connect().await;
        let sent: Vec<Vec<u8>> = case["sent_hex_in_order"]
            .as_array()
            .expect("sent")
            .iter()
            .map(|s| hex(s.as_str().expect("hex")))
            .collect();
        let mut expected: Vec<u8> = case["replies_hex_in_order"]
            .as_array()
            .expect("replies")
            .iter()
            .flat_map(|s| hex(s.as_str().expect("hex")))
            .collect();
        if name == "empty_topic" {
            // Deliberate departure: the original replied OK to an empty topic and wrote the record
            // straight into its data directory. Obelisk refuses invalid topic names (see
            // docs/legacy-protocol.md), so the reply is NACK:INVALID_FORMAT.
            assert_eq!(expected, b"OK\n", "the original accepted it");
            expected = Reply::InvalidFormat.as_bytes().to_vec();
        }
        for bytes in &sent {
            conn.write_all(bytes).await.expect("write");
        }
        let state = str_of(case, "connection_state_after");
        if state.starts_with("client half-closed") {
            conn.shutdown().await.expect("half-close");
            assert_eq!(read_until_closed(&mut conn).await, expected, "{name}");
        } else if state.starts_with("closed by server") {
            assert_eq!(read_n(&mut conn, expected.len()).await, expected, "{name}");
            assert_eq!(read_until_closed(&mut conn).await, b"", "{name}: closed");
        } else {
            assert!(
                state.starts_with("still open"),
                "{name}: unknown state {state}"
            );
            assert_eq!(read_n(&mut conn, expected.len()).await, expected, "{name}");
            assert_open(&mut conn, name).await;
        }
    }
    // Trailing bytes inside a frame are dropped from the stored record, as the original did.
    let mut all = Vec::new();
    for p in 0..4 {
        all.extend(server.records("vectors-trailing", p).await);
    }
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key, b"t"[..]);
    assert_eq!(all[0].value, b"trailing bytes follow"[..]);
    // The empty topic created nothing: only the topics the cases name exist.
    let after = tree(&server.data_dir());
    let new: BTreeSet<_> = after.difference(&before).cloned().collect();
    assert!(
        new.iter()
            .all(|p| p.to_string_lossy().starts_with("topics/vectors-")),
        "unexpected files: {new:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pipelined_frames_are_answered_in_order() {
    const N: usize = 10_000;
    let server = Server::start(LegacyConfig::default()).await;
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    // Every frame is written before any reply is read.
    for i in 0..N {
        let m = message(
            "pipelined",
            &format!("key-{}", i % 16),
            &(i as u64).to_le_bytes(),
            i as i64,
        );
        client.writer().write_message(&m).await.expect("write");
    }
    client.writer().flush().await.expect("flush");
    for i in 0..N {
        let reply = timeout(PATIENCE, client.reader().expect_reply())
            .await
            .expect("reply in time")
            .expect("reply");
        assert_eq!(reply, Reply::Ok, "frame {i}");
    }
    // All stored, each partition in send order.
    let mut seen = 0;
    for p in 0..4 {
        let records = server.records("pipelined", p).await;
        let sent: Vec<u64> = records
            .iter()
            .map(|r| u64::from_le_bytes(r.value[..].try_into().expect("8-byte value")))
            .collect();
        let bad: Vec<_> = sent.windows(2).filter(|w| w[0] > w[1]).take(5).collect();
        assert!(bad.is_empty(), "partition {p} in order: {bad:?}");
        for r in &records {
            assert_eq!(
                r.timestamp as u64,
                u64::from_le_bytes(r.value[..].try_into().unwrap())
            );
        }
        seen += records.len();
    }
    assert_eq!(seen, N);
    // The frames reached the core together: fsyncs were shared (group commit).
    let (batches, records) = server
        .broker
        .topic_snapshot("pipelined")
        .expect("topic")
        .iter()
        .fold((0, 0), |(b, r), p| {
            (b + p.writes.batches, r + p.writes.records)
        });
    assert_eq!(records, N as u64);
    assert!(
        batches * 4 <= records,
        "{batches} batches for {records} records"
    );
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_topic_names_are_refused_without_touching_the_disk() {
    let server = Server::start(LegacyConfig::default()).await;
    let before = tree(&server.data_dir());
    let long = "x".repeat(250);
    let bad: Vec<&[u8]> = vec![
        b"",
        b".",
        b"..",
        b"../escape",
        b"a/b",
        b"/abs",
        b"with space",
        b"nul\0",
        b"\xff\xfe",
        "ключ".as_bytes(),
        long.as_bytes(),
    ];
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    for topic in bad {
        let m = Message {
            timestamp: 1,
            topic: Bytes::copy_from_slice(topic),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        let reply = client.produce(&m).await.expect("reply");
        assert_eq!(reply, Reply::InvalidFormat, "topic {topic:?}");
    }
    assert_eq!(tree(&server.data_dir()), before, "nothing written");
    assert!(!server.dir.path().join("escape").exists());
    // The connection is still usable.
    let ok = client
        .produce(&message("fine", "k", b"v", 1))
        .await
        .expect("reply");
    assert_eq!(ok, Reply::Ok);
    assert_eq!(server.stats.nacks(), 11);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_size_frame_is_stored_when_the_broker_allows_it() {
    // The broker's max_record_bytes counts its own 36 bytes of framing, so a 10 MiB legacy frame
    // needs a limit slightly above 10 MiB to be stored.
    let server = Server::start_with(LegacyConfig::default(), |c| {
        c.max_record_bytes = MAX_FRAME_LEN as usize + RECORD_OVERHEAD;
    })
    .await;
    let value = vec![b'v'; MAX_FRAME_LEN as usize - MESSAGE_HEADER_LEN - 3];
    let m = message("big", "", &value, 1);
    assert_eq!(m.encoded_len(), MAX_FRAME_LEN as usize);
    let mut client = LegacyClient::connect(server.addr).await.expect("connect");
    let reply = timeout(PATIENCE, client.produce(&m))
        .await
        .expect("in time");
    assert_eq!(reply.expect("reply"), Reply::Ok);
    drop(client);
    server.stop().await;
}

/// Frames written at once are queued together (issue 12), yet each keeps its own answer: a run
/// with one record over the broker's limit refuses only that frame, a frame to another topic or
/// with a bad topic splits the run, and every accepted record is stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_written_together_are_answered_each_on_its_own() {
    let server = Server::start_with(LegacyConfig::default(), |c| {
        c.max_record_bytes = 64 + RECORD_OVERHEAD;
    })
    .await;
    let small = |i: u8| message("together", "k", &[i; 8], i64::from(i));
    let too_large = message("together", "k", &[b'x'; 200], 100);
    let frames = [
        (small(1), Reply::Ok),
        (small(2), Reply::Ok),
        (too_large, Reply::InvalidFormat),
        (small(3), Reply::Ok),
        (message("other", "k", b"o", 7), Reply::Ok),
        (message("bad topic", "k", b"b", 8), Reply::InvalidFormat),
        (small(4), Reply::Ok),
        (small(5), Reply::Ok),
    ];
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (m, reply) in &frames {
        bytes.extend_from_slice(&frame(m));
        expected.extend_from_slice(reply.as_bytes());
    }
    let mut conn = server.connect().await;
    conn.write_all(&bytes).await.expect("write");
    assert_eq!(read_n(&mut conn, expected.len()).await, expected);
    assert_open(&mut conn, "after the replies").await;
    // One key, so one partition: the accepted records in send order, each once.
    let mut stored = Vec::new();
    for p in 0..4 {
        stored.extend(server.records("together", p).await);
    }
    let values: Vec<Vec<u8>> = stored.iter().map(|r| r.value.to_vec()).collect();
    let want: Vec<Vec<u8>> = [1u8, 2, 3, 4, 5].iter().map(|&i| vec![i; 8]).collect();
    assert_eq!(values, want);
    let others: usize = {
        let mut n = 0;
        for p in 0..4 {
            n += server.records("other", p).await.len();
        }
        n
    };
    assert_eq!(others, 1);
    assert_eq!(server.stats.nacks(), 2);
    drop(conn);
    server.stop().await;
}

/// A run of frames queued together spans partitions; when one partition's write fails, only the
/// frames stored there are refused: the others were stored and are acknowledged (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_partition_refuses_only_its_own_frames_of_a_run() {
    let server = Server::start(LegacyConfig::default()).await;
    let mut conn = server.connect().await;
    // Where keys land: one frame per key, stored, then found in its partition.
    let keys: Vec<String> = (0..16).map(|i| format!("key-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        conn.write_all(&frame(&message("split", k, b"first", i as i64)))
            .await
            .expect("write");
        assert_eq!(read_n(&mut conn, 3).await, Reply::Ok.as_bytes());
    }
    let mut partition_of = std::collections::HashMap::new();
    for p in 0..4 {
        for r in server.records("split", p).await {
            partition_of.insert(String::from_utf8(r.key.to_vec()).expect("key"), p);
        }
    }
    let failing = partition_of[&keys[0]];
    let healthy = keys
        .iter()
        .find(|k| partition_of[*k] != failing)
        .expect("a key of another partition");
    let healthy_partition = partition_of[healthy];
    assert!(server.broker.inject_write_failure("split", failing));
    let frames = [
        (message("split", healthy, b"h1", 2), Reply::Ok),
        (message("split", &keys[0], b"f1", 3), Reply::PublishFailed),
        (message("split", healthy, b"h2", 4), Reply::Ok),
    ];
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (m, reply) in &frames {
        bytes.extend_from_slice(&frame(m));
        expected.extend_from_slice(reply.as_bytes());
    }
    conn.write_all(&bytes).await.expect("write");
    assert_eq!(read_n(&mut conn, expected.len()).await, expected);
    let values: Vec<Vec<u8>> = server
        .records("split", healthy_partition)
        .await
        .iter()
        .map(|r| r.value.to_vec())
        .filter(|v| v.starts_with(b"h"))
        .collect();
    assert_eq!(values, vec![b"h1".to_vec(), b"h2".to_vec()]);
    server.broker.repair_injected_failure("split", failing);
    drop(conn);
    server.stop().await;
}
