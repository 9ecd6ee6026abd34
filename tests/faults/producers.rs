//! formatv2: the idempotent producers' state survives kill -9 of the broker binary: a batch
//! acknowledged (or stored with its ack lost) before the kill is answered with its original
//! offsets when retried after the restart, and stored once; sequences go on where they were.

use std::collections::HashMap;

use obelisk::proto as pb;
use tonic::Code;

use super::child::{self, Options};
use super::{Grpc, create_topic, read_range};

fn request(
    values: std::ops::Range<u64>,
    producer: &pb::InitProducerResponse,
    sequence: i32,
) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: "t".into(),
        records: values
            .map(|i| pb::ProducerRecord {
                value: format!("v{i}").into_bytes().into(),
                partition: Some(0),
                ..Default::default()
            })
            .collect(),
        idempotence: Some(pb::IdempotentProduce {
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            sequences: HashMap::from([(0, sequence)]),
        }),
    }
}

async fn offsets(c: &mut Grpc, req: pb::ProduceRequest) -> Result<Vec<u64>, tonic::Status> {
    Ok(c.produce(req)
        .await?
        .into_inner()
        .acks
        .iter()
        .map(|a| a.offset)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_kill_9_are_answered_with_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = Options {
        flags: vec!["--segment-bytes".into(), "4096".into()],
        ..Options::default()
    };
    let broker = child::start(&data, &flags).await;
    let mut c = broker.client().await;
    create_topic(&mut c, "t", 1).await;
    let producer = c
        .init_producer(pb::InitProducerRequest { producer_id: None })
        .await
        .unwrap()
        .into_inner();
    // Enough batches to roll segments (snapshots), then the last few in the active segment.
    let mut sent = Vec::new();
    let mut seq = 0i32;
    for b in 0..80u64 {
        let req = request(b * 10..b * 10 + 10, &producer, seq);
        let got = offsets(&mut c, req.clone()).await.unwrap();
        assert_eq!(got, (b * 10..b * 10 + 10).collect::<Vec<_>>());
        sent.push((req, got));
        seq += 10;
    }
    broker.kill9();

    let broker = child::start(&data, &flags).await;
    let mut c = broker.client().await;
    for (req, got) in sent.iter().rev().take(5) {
        assert_eq!(
            &offsets(&mut c, req.clone()).await.unwrap(),
            got,
            "a retry after kill -9"
        );
    }
    let older = offsets(&mut c, sent[70].0.clone()).await.unwrap_err();
    assert_eq!(
        older.code(),
        Code::FailedPrecondition,
        "only the last 5 are remembered"
    );
    let next = offsets(&mut c, request(800..803, &producer, seq))
        .await
        .unwrap();
    assert_eq!(next, vec![800, 801, 802]);
    let all = read_range(&mut c, "t", 0, 0, 803).await;
    assert_eq!(all.len(), 803, "every record stored once");
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, r)| r.offset == i as u64 && r.value == format!("v{i}").into_bytes())
    );
    broker.stop().await;
}
