//! Parity of the three protocols: each scenario is run over gRPC (the generated client), the
//! legacy binary protocol (frames over a `TcpStream`) and REST (HTTP/1.1 over a `TcpStream`)
//! against one in-process server, and each must end in the outcome [`table::TABLE`] gives it. A rule
//! that reaches one protocol only (a check in one adapter, a mapping missing from one error
//! table) fails here.
//!
//! Outcomes are classes from the error table of DESIGN.md; [`table::wire`] says what each class looks
//! like on each protocol. The server runs with auto-creation off and a small
//! [`clients::MAX_RECORD_BYTES`], so "record over the broker's maximum" (the broker refuses it: invalid)
//! is distinct from "frame over the transport's limit" (refused before the broker sees it; for
//! the legacy protocol a length over 10 MiB is `NACK:PROTOCOL_ERROR` and the connection closes).

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod http;
mod reads;
mod table;

use bytes::Bytes;
use obelisk::legacy::codec::MAX_FRAME_LEN;
use tokio::time::timeout;

use clients::{
    MAX_MESSAGE_BYTES, MAX_RECORD_BYTES, PATIENCE, PROBE_TOPIC, Parity, Read, Rec, Seen,
    inject_write_failure, rec,
};
use table::{Outcome, PROTOCOLS, Protocol, Scenario, expected, wire};

/// Checks one produce against the table.
fn check(scenario: Scenario, protocol: Protocol, seen: &Seen, context: &str) {
    let outcome = expected(scenario, protocol);
    assert!(
        wire(outcome, protocol).contains(&seen.wire),
        "{scenario:?} over {protocol:?} ({context}): expected {outcome:?} ({:?}), got {seen:?}",
        wire(outcome, protocol)
    );
    if outcome != Outcome::Accepted && protocol != Protocol::Legacy {
        let message = seen.message.as_deref().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{scenario:?} over {protocol:?} ({context}): the error says what is wrong"
        );
    }
}

/// gRPC and REST report the same broker error with the same message (the legacy protocol has no
/// message). `topics` are replaced by a placeholder, for scenarios using a topic per protocol.
fn check_same_message(scenario: Scenario, seen: &[(Protocol, Seen)], topics: &[&str]) {
    let normalize = |m: &str| {
        topics
            .iter()
            .fold(m.to_string(), |m, t| m.replace(t, "<topic>"))
    };
    let messages: Vec<(Protocol, String)> = seen
        .iter()
        .filter_map(|(p, s)| s.message.as_deref().map(|m| (*p, normalize(m))))
        .collect();
    assert_eq!(messages.len(), 2, "{scenario:?}: gRPC and HTTP messages");
    assert_eq!(
        messages[0].1, messages[1].1,
        "{scenario:?}: one message for one error: {messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_read_back_gives_the_same_offsets_and_values() {
    let scenario = Scenario::ProduceThenRead;
    let mut parity = Parity::start().await;
    let sent: Vec<Rec> = std::iter::once(rec("user-123", "first"))
        .chain((0..11).map(|i| Rec {
            timestamp: 1_700_000_000_000_000_000 + i,
            ..rec(&format!("k{}", i % 5), &format!("v{i}"))
        }))
        // Empty keys spread round-robin; an empty value is a value.
        .chain((0..3).map(|i| rec("", &format!("unkeyed-{i}"))))
        .chain(std::iter::once(rec("k-empty", "")))
        .collect();
    let mut acks = Vec::new();
    let mut read = Vec::new();
    for protocol in PROTOCOLS {
        let topic = format!("rt-{protocol:?}").to_lowercase();
        parity.create_topic(&topic, 4).await;
        let mut acked = Vec::new();
        for (i, r) in sent.iter().enumerate() {
            let seen = parity.produce(protocol, &topic, r).await;
            check(scenario, protocol, &seen, &format!("record {i}"));
            acked.push(seen.ack);
        }
        let back = parity.read_back(protocol, &topic, 4).await;
        assert_eq!(
            back.len(),
            sent.len(),
            "{protocol:?}: every record stored once"
        );
        // What was acknowledged is what is read at that position.
        for (r, ack) in sent.iter().zip(&acked) {
            if let Some((partition, offset)) = ack {
                let at = back
                    .iter()
                    .find(|b| (b.0, b.1) == (*partition, *offset))
                    .unwrap_or_else(|| panic!("{protocol:?}: acked {partition}/{offset} read"));
                assert_eq!(
                    (&at.2[..], &at.3[..], at.4),
                    (r.key.as_bytes(), r.value.as_bytes(), r.timestamp),
                    "{protocol:?}"
                );
            }
        }
        acks.push((protocol, acked));
        read.push((protocol, back));
    }
    // gRPC and REST acknowledge the same positions (the legacy protocol only says OK).
    let with_acks: Vec<&Vec<Option<(u32, u64)>>> = acks
        .iter()
        .filter(|(p, _)| *p != Protocol::Legacy)
        .map(|(_, a)| a)
        .collect();
    assert_eq!(with_acks[0], with_acks[1], "gRPC and HTTP acks");
    assert_eq!(
        with_acks[0][0].map(|a| a.0),
        Some(3),
        "FNV-1a placement like the original"
    );
    // Every protocol stored the same records at the same offsets.
    let (first, rest) = read.split_first().expect("three read-backs");
    for (protocol, back) in rest {
        assert_eq!(&first.1, back, "{:?} and {protocol:?} read back", first.0);
    }
    parity.stop().await;
}

/// Every bad name over every protocol, on a server with auto-creation `auto_create`: invalid,
/// and no bad name becomes a topic (or a directory).
async fn bad_topic_names(auto_create: bool) {
    let scenario = Scenario::BadTopicName;
    let mut parity = Parity::start_with(|c| c.auto_create_topics = auto_create).await;
    // 250 bytes: over the broker's 249; 300: over the legacy frame's 255 as well.
    let (too_long, far_too_long) = ("t".repeat(250), "t".repeat(300));
    let names = [
        "",
        "..",
        ".",
        "bad topic",
        "a/b",
        "../escape",
        "naïve",
        "x$y",
        too_long.as_str(),
        far_too_long.as_str(),
    ];
    for name in names {
        let mut seen = Vec::new();
        for protocol in PROTOCOLS {
            let s = parity.produce(protocol, name, &rec("", "x")).await;
            check(scenario, protocol, &s, name);
            seen.push((protocol, s));
        }
        check_same_message(scenario, &seen, &[]);
    }
    assert_eq!(
        parity
            .broker()
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .collect::<Vec<_>>(),
        vec![PROBE_TOPIC],
        "no bad name became a topic"
    );
    assert!(
        !parity
            .dir()
            .parent()
            .expect("a parent")
            .join("escape")
            .exists(),
        "no name reached outside the data directory"
    );
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_topic_name_is_invalid_everywhere() {
    bad_topic_names(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_topic_name_is_invalid_everywhere_with_auto_creation_on() {
    bad_topic_names(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_brokers_maximum_is_invalid_everywhere() {
    let scenario = Scenario::RecordOverMax;
    let mut parity = Parity::start().await;
    parity.create_topic("big", 1).await;
    let big = rec("k", &"x".repeat(MAX_RECORD_BYTES * 4));
    let mut seen = Vec::new();
    for protocol in PROTOCOLS {
        let s = parity.produce(protocol, "big", &big).await;
        check(scenario, protocol, &s, "4 KiB record, 1 KiB maximum");
        seen.push((protocol, s));
    }
    check_same_message(scenario, &seen, &[]);
    let stored = parity.broker().describe_topic("big").expect("big exists");
    assert_eq!(stored.partitions[0].log_end, 0, "nothing stored");
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_size_limit_falls_on_the_same_byte_everywhere() {
    let mut parity = Parity::start().await;
    // The broker is the authority: the longest value it takes with key "k", found on a scratch
    // topic by bisection.
    parity.create_topic("scratch", 1).await;
    let (mut fits, mut too_big) = (0, MAX_RECORD_BYTES + 1);
    while too_big - fits > 1 {
        let mid = (fits + too_big) / 2;
        let record = obelisk::broker::ProduceRecord {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![b'x'; mid]),
            timestamp: Some(1),
            ..Default::default()
        };
        match parity.broker().produce("scratch", vec![record]).await {
            Ok(_) => fits = mid,
            Err(obelisk::broker::BrokerError::RecordTooLarge { .. }) => too_big = mid,
            Err(e) => panic!("bisecting the limit: {e}"),
        }
    }
    assert!(fits > 0, "some value fits under {MAX_RECORD_BYTES} bytes");
    for protocol in PROTOCOLS {
        let topic = format!("edge-{protocol:?}").to_lowercase();
        parity.create_topic(&topic, 1).await;
        let at = parity
            .produce(protocol, &topic, &rec("k", &"x".repeat(fits)))
            .await;
        check(
            Scenario::RecordAtMax,
            protocol,
            &at,
            &format!("{fits}-byte value"),
        );
        let over = parity
            .produce(protocol, &topic, &rec("k", &"x".repeat(too_big)))
            .await;
        check(
            Scenario::RecordOverMax,
            protocol,
            &over,
            &format!("{too_big}-byte value"),
        );
        let back = parity.read_back(protocol, &topic, 1).await;
        assert_eq!(
            back.iter().map(|r| r.3.len()).collect::<Vec<_>>(),
            vec![fits],
            "{protocol:?}: the record at the limit, and only it, stored"
        );
    }
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_transport_limit_is_refused_before_the_broker() {
    let scenario = Scenario::FrameOverTransportLimit;
    let mut parity = Parity::start().await;
    parity.create_topic("huge", 1).await;

    let over_grpc = rec("k", &"x".repeat(MAX_MESSAGE_BYTES * 2));
    let s = parity.produce(Protocol::Grpc, "huge", &over_grpc).await;
    check(scenario, Protocol::Grpc, &s, "over max_message_bytes");

    // Only the length prefix: the server must refuse it without waiting for 10 MiB of body.
    let writer = parity.legacy.writer();
    writer
        .write_raw(&(MAX_FRAME_LEN + 1).to_le_bytes())
        .await
        .expect("writes");
    writer.flush().await.expect("flushes");
    let reply = timeout(PATIENCE, parity.legacy.reader().expect_reply())
        .await
        .expect("in time")
        .expect("a reply");
    let s = parity.legacy_outcome(reply).await;
    check(scenario, Protocol::Legacy, &s, "length prefix over 10 MiB");

    let over_body = obelisk::http::HttpConfig::body_limit_for(MAX_RECORD_BYTES) + 1;
    let s = parity
        .produce(Protocol::Http, "huge", &rec("k", &"x".repeat(over_body)))
        .await;
    check(scenario, Protocol::Http, &s, "body over the limit");

    let stored = parity.broker().describe_topic("huge").expect("huge exists");
    assert_eq!(stored.partitions[0].log_end, 0, "nothing stored");
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_is_not_found_everywhere_with_auto_creation_off() {
    let scenario = Scenario::UnknownTopic;
    let mut parity = Parity::start().await;
    let mut seen = Vec::new();
    for protocol in PROTOCOLS {
        let s = parity.produce(protocol, "missing", &rec("k", "x")).await;
        check(scenario, protocol, &s, "missing");
        seen.push((protocol, s));
    }
    check_same_message(scenario, &seen, &[]);
    assert!(
        parity.broker().describe_topic("missing").is_err(),
        "no protocol created it"
    );
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_creation_on_a_produce_creates_the_same_topic_everywhere() {
    let scenario = Scenario::AutoCreate;
    let mut parity = Parity::start_with(|c| {
        c.auto_create_topics = true;
        c.default_partitions = 3;
    })
    .await;
    for protocol in PROTOCOLS {
        let topic = format!("auto-{protocol:?}").to_lowercase();
        let s = parity.produce(protocol, &topic, &rec("k", "v")).await;
        check(scenario, protocol, &s, &topic);
        let created = parity.broker().describe_topic(&topic).expect("created");
        assert_eq!(
            created.partitions.len(),
            3,
            "{protocol:?}: the default partitions"
        );
        assert_eq!(
            created.partitions.iter().map(|p| p.log_end).sum::<u64>(),
            1,
            "{protocol:?}: the record in it"
        );
    }
    // Reads never create a topic, whatever the protocol.
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let op = Read::Poll { group: "g".into() };
        let s = parity.read(protocol, "never-written", &op).await;
        check(Scenario::ReadUnknownTopic, protocol, &s, "poll");
    }
    assert!(parity.broker().describe_topic("never-written").is_err());
    parity.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_partition_is_unavailable_everywhere_and_keeps_what_it_had() {
    let scenario = Scenario::StorageReadOnly;
    let mut parity = Parity::start().await;
    let topics: Vec<String> = PROTOCOLS
        .iter()
        .map(|p| format!("ro-{p:?}").to_lowercase())
        .collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    // Two attempts: the write that fails, then a write to the partition that is now read-only.
    let mut seen: [Vec<(Protocol, Seen)>; 2] = Default::default();
    for (protocol, topic) in PROTOCOLS.into_iter().zip(&topics) {
        parity.create_topic(topic, 1).await;
        let before = parity.produce(protocol, topic, &rec("k", "before")).await;
        check(
            Scenario::ProduceThenRead,
            protocol,
            &before,
            "before the failure",
        );
        inject_write_failure(parity.broker(), topic, 0);
        for (attempt, seen) in seen.iter_mut().enumerate() {
            let s = parity.produce(protocol, topic, &rec("k", "after")).await;
            check(scenario, protocol, &s, &format!("attempt {attempt}"));
            seen.push((protocol, s));
        }
        // What was acknowledged before stays readable.
        let back = parity.read_back(protocol, topic, 1).await;
        assert_eq!(
            back.iter().map(|r| (r.1, r.3.clone())).collect::<Vec<_>>(),
            vec![(0, Bytes::from_static(b"before"))],
            "{protocol:?}"
        );
    }
    for seen in &seen {
        check_same_message(scenario, seen, &topic_refs);
    }
    parity.stop().await;
}
