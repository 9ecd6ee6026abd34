//! ProduceStream: many batches in flight on one stream, acks in order, a bad batch failing alone;
//! and the client's Producer built on it.

use futures_util::StreamExt;
use obelisk::client::{Producer, ProducerConfig};
use obelisk::proto as pb;
use tonic::Code;

use crate::common::server::TestServer;
use crate::record;

async fn one_partition() -> TestServer {
    let mut s = TestServer::start().await;
    s.create_topic("p", Some(1)).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_come_in_order_and_a_bad_batch_fails_alone() {
    let mut s = one_partition().await;
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
        idempotence: None,
    });
    let mut acks = s
        .client
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
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_batches_over_one_stream_with_acks_as_futures() {
    let s = one_partition().await;
    let producer = Producer::new(s.client.clone(), ProducerConfig::default())
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
    assert_eq!(offsets, (0..1000).collect::<Vec<_>>());
    let bad = producer.send("bad/topic", record("", "x")).await.unwrap();
    let err = bad.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    producer.close().await;
    s.stop().await;
}
