//! The gRPC API over real sockets: a server in-process on 127.0.0.1:0 and the generated client.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use obelisk::client::{Consumer, Producer, ProducerConfig};
use obelisk::proto as pb;
use tonic::Code;

fn record(key: &str, value: &str) -> pb::ProducerRecord {
    pb::ProducerRecord {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..Default::default()
    }
}

fn poll(topic: &str, group: &str) -> pb::PollRequest {
    pb::PollRequest {
        topic: topic.into(),
        group: group.into(),
        ..Default::default()
    }
}

/// Poll interleaves partitions; order within a partition is what is promised.
fn sorted(mut records: Vec<pb::Record>) -> Vec<pb::Record> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn pos(target: pb::position::Target) -> Option<pb::Position> {
    Some(pb::Position {
        target: Some(target),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_poll_commit_reset_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let mut c = common::grpc_client(&server).await;

    let mut with_headers = record("user-123", "first");
    with_headers.headers = HashMap::from([("trace".to_string(), Bytes::from_static(b"\x01\x02"))]);
    with_headers.timestamp_ns = Some(1_700_000_000_000_000_000);
    let mut records = vec![with_headers];
    records.extend((0..49).map(|i| record(&format!("k{i}"), &format!("v{i}"))));
    let acks = c
        .produce(pb::ProduceRequest {
            topic: "orders".into(),
            records,
        })
        .await
        .unwrap()
        .into_inner()
        .acks;
    assert_eq!(acks.len(), 50);
    assert_eq!(acks[0].partition, 3, "FNV-1a placement like the original");

    let first = sorted(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records,
    );
    assert_eq!(first.len(), 50);
    let again = sorted(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records,
    );
    assert_eq!(first, again, "no commit, same records");
    let r0 = first
        .iter()
        .find(|r| r.value == Bytes::from_static(b"first"))
        .unwrap();
    assert_eq!(r0.headers["trace"], Bytes::from_static(b"\x01\x02"));
    assert_eq!(r0.timestamp_ns, 1_700_000_000_000_000_000);

    let mut consumer = Consumer::new(c.clone(), "orders", "g");
    consumer.commit(&first).await.unwrap();
    assert!(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records
            .is_empty()
    );

    let reset = |to| pb::ResetRequest {
        topic: "orders".into(),
        group: "g".into(),
        to: pos(to),
    };
    let offs = c
        .reset(reset(pb::position::Target::Earliest(true)))
        .await
        .unwrap()
        .into_inner()
        .offsets;
    assert!(offs.iter().all(|o| o.offset == 0));
    assert_eq!(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records
            .len(),
        50
    );
    let offs = c
        .reset(reset(pb::position::Target::Latest(true)))
        .await
        .unwrap()
        .into_inner()
        .offsets;
    assert_eq!(offs.iter().map(|o| o.offset).sum::<u64>(), 50);
    c.reset(reset(pb::position::Target::Offset(1)))
        .await
        .unwrap();
    assert_eq!(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records
            .len(),
        46
    );
    c.reset(reset(pb::position::Target::TimestampNs(
        1_600_000_000_000_000_000,
    )))
    .await
    .unwrap();
    assert_eq!(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records
            .len(),
        50
    );
    let e = c
        .reset(pb::ResetRequest {
            topic: "orders".into(),
            group: "g".into(),
            to: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    consumer.commit(&first).await.unwrap();

    let described = c
        .describe_group(pb::DescribeGroupRequest { group: "g".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.partitions.len(), 4);
    assert!(described.partitions.iter().all(|p| p.lag == 0));

    server.stop().await;
    let server = common::start(common::test_config(dir.path())).await;
    let mut c = common::grpc_client(&server).await;
    assert!(
        c.poll(poll("orders", "g"))
            .await
            .unwrap()
            .into_inner()
            .records
            .is_empty(),
        "commits survive"
    );
    let replay = sorted(
        c.poll(poll("orders", "other"))
            .await
            .unwrap()
            .into_inner()
            .records,
    );
    assert_eq!(
        replay, first,
        "every acknowledged record, in order, after restart"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_its_code_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.auto_create_topics = false;
    cfg.max_record_bytes = 1024;
    cfg.max_message_bytes = 1 << 20;
    let server = common::start(cfg).await;
    let mut c = common::grpc_client(&server).await;
    let produce = |topic: &str, records| pb::ProduceRequest {
        topic: topic.into(),
        records,
    };

    let e = c
        .produce(produce("../escape", vec![record("", "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("invalid topic name"),
        "{}",
        e.message()
    );
    let e = c
        .produce(produce("missing", vec![record("", "x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("does not exist; create it first"),
        "{}",
        e.message()
    );

    let created = c
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            config: Some(pb::TopicConfig {
                partitions: 2,
                retention_ms: 0,
                retention_bytes: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .topic
        .unwrap();
    assert_eq!(created.partitions.len(), 2);
    let e = c
        .create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c.produce(produce("t", vec![])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .produce(produce("t", vec![record("", &"x".repeat(2000))]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("maximum record size"),
        "{}",
        e.message()
    );
    let e = c
        .produce(produce("t", vec![record("", &"x".repeat(2 << 20))]))
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "over the gRPC message limit: {e:?}"
    );
    assert!(
        e.message().contains("message length too large"),
        "{}",
        e.message()
    );
    let mut explicit = record("", "x");
    explicit.partition = Some(7);
    let e = c.produce(produce("t", vec![explicit])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    c.produce(produce("t", vec![record("a", "1")]))
        .await
        .unwrap();
    let fetch = |partition, offset| pb::FetchRequest {
        topic: "t".into(),
        partition,
        offset,
        ..Default::default()
    };
    let p = c
        .describe_topic(pb::DescribeTopicRequest { name: "t".into() })
        .await
        .unwrap()
        .into_inner();
    let part = p
        .topic
        .unwrap()
        .partitions
        .into_iter()
        .find(|p| p.log_end_offset == 1)
        .unwrap()
        .partition;
    let e = c.fetch(fetch(part, 9)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert!(e.message().contains("out of range"), "{}", e.message());
    let got = c.fetch(fetch(part, 0)).await.unwrap().into_inner();
    assert_eq!(
        (got.records.len(), got.log_start_offset, got.log_end_offset),
        (1, 0, 1)
    );
    let e = c.fetch(fetch(9, 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let e = c
        .commit(pb::CommitRequest {
            topic: "t".into(),
            group: "g".into(),
            offsets: vec![pb::PartitionOffset {
                partition: part,
                offset: 5,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    let e = c.poll(poll("t", "bad group")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c.poll(poll("nope", "g")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .describe_group(pb::DescribeGroupRequest {
            group: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .describe_topic(pb::DescribeTopicRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .subscribe(pb::SubscribeRequest {
            topic: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let topics = c
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["t"]
    );
    c.delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await
        .unwrap();
    let e = c
        .delete_topic(pb::DeleteTopicRequest { name: "t".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        c.list_topics(pb::ListTopicsRequest {})
            .await
            .unwrap()
            .into_inner()
            .topics
            .is_empty()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_new_records_and_releases_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let mut c = common::grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "s".into(),
        config: Some(pb::TopicConfig {
            partitions: 3,
            retention_ms: 0,
            retention_bytes: 0,
        }),
    })
    .await
    .unwrap();
    c.produce(pb::ProduceRequest {
        topic: "s".into(),
        records: vec![record("old", "old")],
    })
    .await
    .unwrap();
    let sub = |group: &str, start| pb::SubscribeRequest {
        topic: "s".into(),
        group: group.into(),
        start,
        max_records_per_message: 0,
    };
    // From the latest position: only records produced after it started.
    let mut live = c
        .subscribe(sub("", pos(pb::position::Target::Latest(true))))
        .await
        .unwrap()
        .into_inner();
    // Two groups from their (empty) committed positions: each sees everything.
    let mut g1 = c.subscribe(sub("g1", None)).await.unwrap().into_inner();
    let mut g2 = c.subscribe(sub("g2", None)).await.unwrap().into_inner();
    let n = 200;
    for i in 0..n {
        c.produce(pb::ProduceRequest {
            topic: "s".into(),
            records: vec![record(&format!("key{}", i % 11), &i.to_string())],
        })
        .await
        .unwrap();
    }
    async fn collect(s: &mut tonic::Streaming<pb::SubscribeResponse>, n: usize) -> Vec<pb::Record> {
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(Duration::from_secs(10), s.next())
                .await
                .expect("records arrive")
                .unwrap()
                .unwrap();
            out.extend(msg.records);
        }
        out
    }
    let got = collect(&mut live, n).await;
    assert_eq!(got.len(), n);
    assert!(got.iter().all(|r| r.value != Bytes::from_static(b"old")));
    for p in 0..3 {
        let offs: Vec<u64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert!(
            offs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order per partition"
        );
    }
    // Within each key, values arrive in produce order.
    let mut last: HashMap<Bytes, i64> = HashMap::new();
    for r in &got {
        let v: i64 = std::str::from_utf8(&r.value).unwrap().parse().unwrap();
        let prev = last.insert(r.key.clone(), v);
        assert!(prev.is_none_or(|p| p < v));
    }
    assert_eq!(collect(&mut g1, n + 1).await.len(), n + 1);
    assert_eq!(collect(&mut g2, n + 1).await.len(), n + 1);

    // Cancelled subscriptions release their server-side state.
    assert_eq!(server.broker.topic_watchers("s"), 3);
    drop((live, g1, g2));
    let mut released = false;
    for _ in 0..100 {
        if server.broker.topic_watchers("s") == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released,
        "watchers left: {}",
        server.broker.topic_watchers("s")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_stream_keeps_many_batches_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let mut c = common::grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "p".into(),
        config: Some(pb::TopicConfig {
            partitions: 1,
            retention_ms: 0,
            retention_bytes: 0,
        }),
    })
    .await
    .unwrap();
    let batches = 300u64;
    let per = 10u64;
    let requests = (0..batches).map(move |seq| pb::ProduceStreamRequest {
        sequence: seq,
        topic: if seq == 150 {
            "bad/topic".into()
        } else {
            "p".into()
        },
        records: (0..per)
            .map(|i| record("", &format!("{seq}-{i}")))
            .collect(),
    });
    let mut acks = c
        .produce_stream(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut next_offset = 0;
    for seq in 0..batches {
        let ack = acks.next().await.unwrap().unwrap();
        assert_eq!(ack.sequence, seq, "acks in order");
        if seq == 150 {
            let err = ack.error.expect("the bad batch fails alone");
            assert_eq!(err.code, Code::InvalidArgument as i32);
            assert!(ack.acks.is_empty());
            continue;
        }
        assert!(ack.error.is_none());
        let offs: Vec<u64> = ack.acks.iter().map(|a| a.offset).collect();
        assert_eq!(offs, (next_offset..next_offset + per).collect::<Vec<_>>());
        next_offset += per;
    }
    assert!(
        acks.next().await.is_none(),
        "stream ends after the client's end"
    );

    // The Producer helper: acks as futures, batching over one stream.
    let producer = Producer::new(c.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut futures = Vec::new();
    for i in 0..1000 {
        futures.push(
            producer
                .send("p", record("", &format!("x{i}")))
                .await
                .unwrap(),
        );
    }
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.unwrap().unwrap().offset);
    }
    assert_eq!(
        offsets,
        (next_offset..next_offset + 1000).collect::<Vec<_>>()
    );
    let bad = producer.send("bad/topic", record("", "x")).await.unwrap();
    let err = bad.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    producer.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_shutdown_with_idle_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(common::test_config(dir.path())).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "obelisk.v1.Broker".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            channel.clone(),
        );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut resp = reflection
        .server_reflection_info(futures_util::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let listed = format!("{:?}", resp.next().await.unwrap().unwrap());
    assert!(listed.contains("obelisk.v1.Broker"), "{listed}");

    // An idle client and an open subscription must not hold shutdown up.
    let mut c = common::grpc_client(&server).await;
    let mut sub = c
        .subscribe(pb::SubscribeRequest {
            topic: "idle".into(),
            ..Default::default()
        })
        .await;
    if sub.is_err() {
        c.create_topic(pb::CreateTopicRequest {
            name: "idle".into(),
            config: None,
        })
        .await
        .unwrap();
        sub = c
            .subscribe(pb::SubscribeRequest {
                topic: "idle".into(),
                ..Default::default()
            })
            .await;
    }
    let mut sub = sub.unwrap().into_inner();
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "the subscription ended: {end:?}"
    );
    drop(channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_does_not_cut_long_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.request_timeout_ms = 200;
    let server = common::start(cfg).await;
    let mut c = common::grpc_client(&server).await;
    c.create_topic(pb::CreateTopicRequest {
        name: "slow".into(),
        config: None,
    })
    .await
    .unwrap();
    let mut sub = c
        .subscribe(pb::SubscribeRequest {
            topic: "slow".into(),
            start: pos(pb::position::Target::Latest(true)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Outlive the unary deadline before anything is produced.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.produce(pb::ProduceRequest {
        topic: "slow".into(),
        records: vec![record("k", "late")],
    })
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a record arrives")
        .expect("the stream is still open")
        .expect("no error");
    assert_eq!(msg.records[0].value, Bytes::from_static(b"late"));
    // A long poll asking to wait past the deadline is answered (empty) within it, not failed.
    let got = c
        .poll(pb::PollRequest {
            topic: "slow".into(),
            group: "g".into(),
            max_wait_ms: 10_000,
            start_if_new: pb::StartPosition::Latest as i32,
            ..Default::default()
        })
        .await
        .expect("answered within the deadline")
        .into_inner();
    assert!(got.records.is_empty());
    server.stop().await;
}
