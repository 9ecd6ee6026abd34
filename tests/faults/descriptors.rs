//! A low descriptor limit: many topics with many segments each, under `RLIMIT_NOFILE` 256. Sealed
//! segments hold no descriptor (their logs open on demand through a bounded cache), so the broker
//! starts, serves every record, rolls segments, and a topic creation that finds no descriptor
//! left fails alone instead of breaking the broker.

use super::child::{self, Options};
use super::{Grpc, read_range, try_produce};

async fn produce_to(c: &mut Grpc, topic: &str, n: usize) -> Result<(), tonic::Status> {
    for k in 0..n / 10 {
        let values = (0..10)
            .map(|i| format!("{topic}-{:04}-{}", k * 10 + i, "x".repeat(200)).into_bytes())
            .collect();
        try_produce(c, topic, values).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_and_segments_under_a_low_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let options = Options {
        nofile: Some(256),
        flags: [
            "--segment-bytes",
            "4096",
            "--default-partitions",
            "1",
            "--open-segment-files",
            "32",
        ]
        .map(String::from)
        .to_vec(),
    };
    let broker = child::start(&data, &options).await;
    let mut c = broker.client().await;
    // 150 topics of one partition, each rolled into ~8 segments: 1,200 segments, which held two
    // descriptors each when every segment kept its files open.
    let topics: Vec<String> = (0..150).map(|i| format!("t{i:03}")).collect();
    for t in &topics {
        produce_to(&mut c, t, 150)
            .await
            .unwrap_or_else(|e| panic!("producing to {t} under the limit: {e}"));
    }
    let segments = std::fs::read_dir(data.join("topics/t000/0"))
        .unwrap()
        .count();
    assert!(segments > 12, "the partitions rolled ({segments} files)");
    // Creating topics until descriptors run out fails cleanly, one creation at a time.
    let mut refused = None;
    for i in 0..400 {
        if let Err(e) = produce_to(&mut c, &format!("more{i:03}"), 10).await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the open-file limit refuses a topic creation at some point");
    assert_eq!(
        e.code(),
        tonic::Code::ResourceExhausted,
        "a clear refusal: {e:?}"
    );
    assert!(e.message().contains("open-file limit"), "{}", e.message());
    // The refusal cost nothing else: the broker still writes and reads.
    produce_to(&mut c, "t001", 10)
        .await
        .expect("writes go on at the limit");
    broker.kill9();

    let broker = child::start(&data, &options).await;
    let mut c = broker.client().await;
    for t in &topics {
        let got = read_range(&mut c, t, 0, 0, 150).await;
        assert_eq!(
            got.len(),
            150,
            "{t} reads back whole after a restart under the limit"
        );
        assert!(got.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    }
    produce_to(&mut c, "t000", 10).await.expect("writes go on");
    broker.stop().await;
}
