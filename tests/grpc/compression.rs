//! formatv2: compression. gRPC transport compression (gzip, zstd) is accepted by the server and
//! offered by the client; topics store their batches compressed as created (none, lz4, zstd) and
//! read back identical, also after a restart.

use obelisk::client::{self, TransportCompression};
use obelisk::proto as pb;

use super::common::server::TestServer;
use super::record;

fn json_event(i: usize) -> String {
    format!(
        r#"{{"event":"checkout","user":"user-{:04}","items":[{{"sku":"sku-{}","qty":{}}}],"ts":{}}}"#,
        i % 97,
        i % 13,
        i % 4 + 1,
        1_700_000_000 + i
    )
}

async fn fetch_all(
    c: &mut client::BrokerClient<tonic::transport::Channel>,
    topic: &str,
) -> Vec<pb::Record> {
    c.fetch(pb::FetchRequest {
        topic: topic.into(),
        partition: 0,
        offset: 0,
        max_records: 10_000,
        max_bytes: 0,
        max_wait_ms: 0,
    })
    .await
    .unwrap()
    .into_inner()
    .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_and_storage_compression_round_trip() {
    let mut s = TestServer::start().await;
    let mut sizes = Vec::new();
    for (name, codec) in [("plain", 0), ("lz4", 1), ("zstd", 2)] {
        let desc = s
            .client
            .create_topic(pb::CreateTopicRequest {
                name: name.into(),
                config: Some(pb::TopicConfig {
                    partitions: 1,
                    compression: codec,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap();
        assert_eq!(desc.config.unwrap().compression, codec);
    }
    let bad = s
        .client
        .create_topic(pb::CreateTopicRequest {
            name: "bad".into(),
            config: Some(pb::TopicConfig {
                compression: 9,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    let base = super::common::grpc_client(&s.server).await;
    for (i, transport) in [
        None,
        Some(TransportCompression::Gzip),
        Some(TransportCompression::Zstd),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = match transport {
            Some(t) => client::compressed(base.clone(), t),
            None => base.clone(),
        };
        for topic in ["plain", "lz4", "zstd"] {
            let records = (0..200)
                .map(|j| record("k", &json_event(i * 200 + j)))
                .collect();
            c.produce(pb::ProduceRequest {
                topic: topic.into(),
                records,
                idempotence: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{transport:?} {topic}: {e}"));
        }
        let got = fetch_all(&mut c, "zstd").await;
        assert_eq!(got.len(), (i + 1) * 200, "{transport:?}");
    }
    let mut s = s.restart().await;
    for topic in ["plain", "lz4", "zstd"] {
        let got = fetch_all(&mut s.client, topic).await;
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect();
        assert_eq!(
            values,
            (0..600).map(json_event).collect::<Vec<_>>(),
            "{topic}"
        );
        let size = s
            .client
            .describe_topic(pb::DescribeTopicRequest { name: topic.into() })
            .await
            .unwrap()
            .into_inner()
            .topic
            .unwrap()
            .partitions[0]
            .size_bytes;
        sizes.push(size);
    }
    let raw: u64 = (0..600).map(|i| json_event(i).len() as u64).sum();
    assert!(
        sizes[1] < sizes[0] && sizes[2] < sizes[1],
        "sizes {sizes:?}"
    );
    assert!(
        sizes[2] * 100 <= raw * 30,
        "zstd stores {} of {raw} raw bytes",
        sizes[2]
    );
    s.stop().await;
}
