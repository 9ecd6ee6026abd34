//! The server with all three listeners and one real client per protocol: the generated tonic
//! client, the legacy codec over a `TcpStream`, and HTTP/1.1 written by hand over a `TcpStream` ([`crate::http`]).

use std::net::SocketAddr;

use bytes::Bytes;
use obelisk::broker::{Broker, FetchRequest, ReadLimits, TopicConfig};
use obelisk::client::BrokerClient;
use obelisk::legacy::LegacyClient;
use obelisk::legacy::codec::{Message, Reply};
use obelisk::proto as pb;
use obelisk::server::RunningServer;
use serde_json::json;
use tokio::time::timeout;
use tonic::Code;
use tonic::transport::Channel;

use crate::common;
use crate::http::{http, path_segment};
use crate::table::{Conn, Protocol, Wire};

/// The broker's maximum record size for these tests: small, so a record over it is nowhere near
/// any transport's frame limit.
pub const MAX_RECORD_BYTES: usize = 1024;
/// The gRPC message limit: well above a record, well below the HTTP body limit.
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;
pub use crate::common::wait::PATIENCE;
/// A topic that always exists, to check a legacy connection still answers after a NACK.
pub const PROBE_TOPIC: &str = "probe";

/// One produce's result: the wire outcome, the acknowledged position (gRPC and HTTP say it; the
/// legacy protocol only says OK) and the error message (gRPC and HTTP carry one).
#[derive(Debug, Clone)]
pub struct Seen {
    pub wire: Wire,
    pub ack: Option<(u32, u64)>,
    pub message: Option<String>,
}

/// A record as the scenarios send it: every protocol can carry these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub key: String,
    pub value: String,
    pub timestamp: i64,
}

pub fn rec(key: &str, value: &str) -> Rec {
    Rec {
        key: key.into(),
        value: value.into(),
        timestamp: 1_700_000_000_000_000_000,
    }
}

/// A read-side call (gRPC and REST; the legacy protocol only produces).
#[derive(Debug, Clone)]
pub enum Read {
    Fetch {
        partition: u32,
        offset: u64,
    },
    Poll {
        group: String,
    },
    Commit {
        group: String,
        partition: u32,
        offset: u64,
    },
    DescribeGroup {
        group: String,
    },
}

/// A record as read back: (partition, offset, key, value, timestamp).
pub type ReadBack = (u32, u64, Bytes, Bytes, i64);

/// The server with all three listeners, and a client for each protocol.
pub struct Parity {
    server: RunningServer,
    grpc: BrokerClient<Channel>,
    pub legacy: LegacyClient,
    http: SocketAddr,
    dir: tempfile::TempDir,
}

impl Parity {
    /// The server for every scenario: auto-creation off, [`MAX_RECORD_BYTES`] and
    /// [`MAX_MESSAGE_BYTES`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Parity::start`]'s configuration changed by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut obelisk::config::Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = common::with_every_listener(common::test_config(dir.path()));
        config.auto_create_topics = false;
        config.max_record_bytes = MAX_RECORD_BYTES;
        config.max_message_bytes = MAX_MESSAGE_BYTES;
        tune(&mut config);
        let server = common::start(config).await;
        let grpc = common::grpc_client(&server).await;
        let legacy = LegacyClient::connect(server.tcp_addr.expect("legacy listener on"))
            .await
            .expect("legacy connects");
        let http = server.http_addr.expect("HTTP listener on");
        let parity = Self {
            server,
            grpc,
            legacy,
            http,
            dir,
        };
        parity.create_topic(PROBE_TOPIC, 1).await;
        parity
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn broker(&self) -> &Broker {
        &self.server.broker
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        self.broker()
            .create_topic(
                name,
                TopicConfig {
                    partitions,
                    retention_ms: 0,
                    retention_bytes: 0,
                    compression: Default::default(),
                },
            )
            .await
            .expect("topic created");
    }

    pub async fn stop(self) {
        drop(self.legacy);
        self.server.stop().await;
    }

    pub async fn produce(&mut self, protocol: Protocol, topic: &str, r: &Rec) -> Seen {
        match protocol {
            Protocol::Grpc => self.produce_grpc(topic, r).await,
            Protocol::Legacy => self.produce_legacy(topic, r).await,
            Protocol::Http => self.produce_http(topic, r).await,
        }
    }

    pub async fn produce_grpc(&mut self, topic: &str, r: &Rec) -> Seen {
        let request = pb::ProduceRequest {
            topic: topic.into(),
            records: vec![pb::ProducerRecord {
                key: Bytes::from(r.key.clone()),
                value: Bytes::from(r.value.clone()),
                timestamp_ns: Some(r.timestamp),
                ..Default::default()
            }],
            idempotence: None,
        };
        match timeout(PATIENCE, self.grpc.produce(request))
            .await
            .expect("gRPC answers in time")
        {
            Ok(resp) => {
                let acks = resp.into_inner().acks;
                assert_eq!(acks.len(), 1, "one ack per record");
                Seen {
                    wire: Wire::Grpc(Code::Ok),
                    ack: Some((acks[0].partition, acks[0].offset)),
                    message: None,
                }
            }
            Err(status) => Seen {
                wire: Wire::Grpc(status.code()),
                ack: None,
                message: Some(status.message().to_string()),
            },
        }
    }

    pub async fn produce_legacy(&mut self, topic: &str, r: &Rec) -> Seen {
        let message = Message {
            timestamp: r.timestamp,
            topic: Bytes::from(topic.to_string()),
            key: Bytes::from(r.key.clone()),
            value: Bytes::from(r.value.clone()),
        };
        let reply = timeout(PATIENCE, self.legacy.produce(&message))
            .await
            .expect("legacy answers in time")
            .expect("a legacy reply");
        self.legacy_outcome(reply).await
    }

    /// The reply with the connection's state after it: closed after `NACK:PROTOCOL_ERROR` (then
    /// reconnected, for the next scenario), else still answering a valid frame.
    pub async fn legacy_outcome(&mut self, reply: Reply) -> Seen {
        let conn = if reply == Reply::ProtocolError {
            let rest = timeout(PATIENCE, self.legacy.reader().read_to_end())
                .await
                .expect("the server closes in time")
                .unwrap_or_default();
            assert!(rest.is_empty(), "nothing after the final reply: {rest:?}");
            self.legacy = LegacyClient::connect(self.server.tcp_addr.expect("legacy on"))
                .await
                .expect("legacy reconnects");
            Conn::Closed
        } else {
            let probe = Message {
                timestamp: 1,
                topic: Bytes::from_static(PROBE_TOPIC.as_bytes()),
                key: Bytes::new(),
                value: Bytes::from_static(b"still open?"),
            };
            match timeout(PATIENCE, self.legacy.produce(&probe))
                .await
                .expect("probe answered in time")
            {
                Ok(Reply::Ok) => Conn::Open,
                _ => Conn::Closed,
            }
        };
        Seen {
            wire: Wire::Legacy(reply, conn),
            ack: None,
            message: None,
        }
    }

    pub async fn produce_http(&mut self, topic: &str, r: &Rec) -> Seen {
        let body = json!({"key": r.key, "value": r.value, "timestamp": r.timestamp});
        let path = format!("/topics/{}/messages", path_segment(topic));
        let (status, body) = http(self.http, "POST", &path, Some(&body)).await;
        if status == 201 {
            let ack = (
                body["partition"].as_u64().expect("partition") as u32,
                body["offset"].as_u64().expect("offset"),
            );
            return Seen {
                wire: Wire::Http(status),
                ack: Some(ack),
                message: None,
            };
        }
        Seen {
            wire: Wire::Http(status),
            ack: None,
            message: body["error"]["message"].as_str().map(str::to_string),
        }
    }

    /// One read-side call on `topic` over `protocol`.
    pub async fn read(&mut self, protocol: Protocol, topic: &str, op: &Read) -> Seen {
        match protocol {
            Protocol::Grpc => self.read_grpc(topic, op).await,
            Protocol::Http => self.read_http(topic, op).await,
            Protocol::Legacy => panic!("the legacy protocol has no reads"),
        }
    }

    async fn read_grpc(&mut self, topic: &str, op: &Read) -> Seen {
        let c = &mut self.grpc;
        let done = match op.clone() {
            Read::Fetch { partition, offset } => c
                .fetch(pb::FetchRequest {
                    topic: topic.into(),
                    partition,
                    offset,
                    ..Default::default()
                })
                .await
                .map(drop),
            Read::Poll { group } => c
                .poll(pb::PollRequest {
                    topic: topic.into(),
                    group,
                    ..Default::default()
                })
                .await
                .map(drop),
            Read::Commit {
                group,
                partition,
                offset,
            } => c
                .commit(pb::CommitRequest {
                    topic: topic.into(),
                    group,
                    offsets: vec![pb::PartitionOffset { partition, offset }],
                    ..Default::default()
                })
                .await
                .map(drop),
            Read::DescribeGroup { group } => c
                .describe_group(pb::DescribeGroupRequest { group })
                .await
                .map(drop),
        };
        match done {
            Ok(()) => Seen {
                wire: Wire::Grpc(Code::Ok),
                ack: None,
                message: None,
            },
            Err(status) => Seen {
                wire: Wire::Grpc(status.code()),
                ack: None,
                message: Some(status.message().to_string()),
            },
        }
    }

    async fn read_http(&mut self, topic: &str, op: &Read) -> Seen {
        let t = path_segment(topic);
        let (status, body) = match op {
            Read::Fetch { partition, offset } => {
                let path = format!("/topics/{t}/messages?partition={partition}&offset={offset}");
                http(self.http, "GET", &path, None).await
            }
            Read::Poll { group } => {
                let body = json!({ "group": group });
                http(self.http, "POST", &format!("/topics/{t}/poll"), Some(&body)).await
            }
            Read::Commit {
                group,
                partition,
                offset,
            } => {
                let body = json!({
                    "group": group,
                    "offsets": [{"partition": partition, "offset": offset}],
                });
                http(
                    self.http,
                    "POST",
                    &format!("/topics/{t}/commit"),
                    Some(&body),
                )
                .await
            }
            Read::DescribeGroup { group } => {
                let path = format!("/groups/{}", path_segment(group));
                http(self.http, "GET", &path, None).await
            }
        };
        Seen {
            wire: Wire::Http(status),
            ack: None,
            message: body["error"]["message"].as_str().map(str::to_string),
        }
    }

    /// Every record of `topic`, read over `protocol` (the legacy protocol has no read: its topic
    /// is read through the broker directly), sorted by (partition, offset).
    pub async fn read_back(
        &mut self,
        protocol: Protocol,
        topic: &str,
        partitions: u32,
    ) -> Vec<ReadBack> {
        let mut out = Vec::new();
        for partition in 0..partitions {
            match protocol {
                Protocol::Grpc => {
                    let resp = self
                        .grpc
                        .fetch(pb::FetchRequest {
                            topic: topic.into(),
                            partition,
                            offset: 0,
                            ..Default::default()
                        })
                        .await
                        .expect("gRPC fetch")
                        .into_inner();
                    out.extend(
                        resp.records
                            .into_iter()
                            .map(|r| (partition, r.offset, r.key, r.value, r.timestamp_ns)),
                    );
                }
                Protocol::Legacy => {
                    let resp = self
                        .broker()
                        .fetch(FetchRequest {
                            topic: topic.into(),
                            partition,
                            offset: 0,
                            limits: ReadLimits::default(),
                        })
                        .await
                        .expect("broker fetch");
                    out.extend(
                        resp.records
                            .into_iter()
                            .map(|r| (partition, r.offset, r.key, r.value, r.timestamp)),
                    );
                }
                Protocol::Http => {
                    let path = format!(
                        "/topics/{}/messages?partition={partition}&offset=0",
                        path_segment(topic)
                    );
                    let (status, body) = http(self.http, "GET", &path, None).await;
                    assert_eq!(status, 200, "{body}");
                    for r in body["records"].as_array().expect("records") {
                        assert_eq!(r["partition"], partition, "{r}");
                        out.push((
                            partition,
                            r["offset"].as_u64().expect("offset"),
                            Bytes::from(r["key"].as_str().expect("UTF-8 key").to_string()),
                            Bytes::from(r["value"].as_str().expect("UTF-8 value").to_string()),
                            r["timestamp_ns"].as_i64().expect("timestamp_ns"),
                        ));
                    }
                }
            }
        }
        out.sort_by_key(|r| (r.0, r.1));
        out
    }
}

/// Makes `topic`/`partition` read-only as a failed write would.
pub fn inject_write_failure(broker: &Broker, topic: &str, partition: u32) {
    assert!(
        broker.inject_write_failure(topic, partition),
        "{topic}/{partition} exists"
    );
}
