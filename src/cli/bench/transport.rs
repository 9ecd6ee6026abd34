//! How a bench producer talks to the broker. Each transport is split into a sending half and an
//! acknowledging half so that batches can be pipelined (`--in-flight`): the driver sends from one
//! and awaits acks, in send order, from the other, concurrently and without cancelling either.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use clap::ValueEnum;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use super::{http, legacy};
use crate::client::ClientError;
use crate::proto as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// One Produce call per batch; --in-flight calls at once on one HTTP/2 connection.
    GrpcUnary,
    /// One ProduceStream per producer; --in-flight batches awaiting their acks.
    GrpcStream,
    /// The original binary protocol: a frame per record, pipelined, one reply line each.
    Legacy,
    /// POST /topics/{topic}/messages with a JSON batch over HTTP/1.1, pipelined.
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::GrpcUnary => "grpc-unary",
            Self::GrpcStream => "grpc-stream",
            Self::Legacy => "legacy",
            Self::Http => "http",
        }
    }
}

/// Where the broker's listeners are.
#[derive(Debug, Clone)]
pub struct Target {
    pub grpc: String,
    pub legacy: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// TLS and token of the gRPC connections (security).
    pub options: crate::client::ConnectOptions,
}

/// One batch for the wire.
pub struct Batch<'a> {
    pub topic: &'a str,
    pub values: Vec<Bytes>,
    /// Unix ns of the batch's scheduled send, stamped on its records (legacy and gRPC).
    pub timestamp_ns: i64,
}

/// A unary call on its way: spawned (several in flight), or run by the acknowledging half
/// itself (one in flight: no task of its own, as a client waiting for its answer would do).
pub enum Call {
    Spawned(JoinHandle<Result<Instant, String>>),
    Inline(Pin<Box<dyn Future<Output = Result<Instant, String>> + Send>>),
}

/// The unary rows' client: the lean one where it can be used (see [`super::lean`]).
#[derive(Clone)]
pub enum UnaryClient {
    Channel(crate::client::Client),
    Lean(super::lean::LeanClient),
}

pub enum SendHalf {
    Unary {
        client: UnaryClient,
        in_flight: usize,
        calls: mpsc::UnboundedSender<Call>,
    },
    Stream {
        requests: mpsc::Sender<pb::ProduceStreamRequest>,
        sequence: u64,
        /// formatv2: an idempotent producer's identity and sequences.
        idempotent: Option<Idempotent>,
    },
    Legacy(legacy::Writer),
    Http(http::Writer),
}

/// formatv2: an idempotent bench producer: it spreads a batch's records over the partitions
/// round-robin, as the broker does with unkeyed records, and numbers them per partition.
pub struct Idempotent {
    producer_id: i64,
    producer_epoch: i32,
    partitions: u32,
    next_partition: u32,
    sequences: std::collections::HashMap<(String, u32), i32>,
}

impl Idempotent {
    fn stamp(&mut self, topic: &str, records: &mut [pb::ProducerRecord]) -> pb::IdempotentProduce {
        let mut counts = std::collections::HashMap::new();
        for r in records.iter_mut() {
            let p = self.next_partition % self.partitions.max(1);
            self.next_partition = self.next_partition.wrapping_add(1);
            r.partition = Some(p);
            *counts.entry(p).or_insert(0i32) += 1;
        }
        let mut sequences = std::collections::HashMap::new();
        for (p, n) in counts {
            let next = self.sequences.entry((topic.to_string(), p)).or_insert(0);
            sequences.insert(p, *next);
            *next = next.wrapping_add(n);
        }
        pb::IdempotentProduce {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            sequences,
        }
    }
}

pub enum AckHalf {
    Unary(mpsc::UnboundedReceiver<Call>),
    Stream(tonic::Streaming<pb::ProduceStreamAck>),
    Legacy(legacy::Reader),
    Http(http::Reader),
}

/// Opens one producer's connection.
///
/// # Errors
/// The broker cannot be reached, or the transport has no listener to talk to.
pub async fn open(
    transport: Transport,
    target: &Target,
    in_flight: usize,
    idempotent_over: Option<u32>,
) -> Result<(SendHalf, AckHalf), String> {
    let unavailable = |what: &str, flag: &str| {
        format!(
            "the {what} transport is not available: the broker has no {what} listener here (the \
             in-process server of this build does not start one yet); use --server and {flag} to \
             bench a broker that has one"
        )
    };
    match transport {
        Transport::GrpcUnary => {
            let plain = !target.options.tls(&target.grpc)
                && matches!(target.options.authorization(), Ok(None));
            let lean = if plain {
                super::lean::connect(&target.grpc).await?
            } else {
                None
            };
            let client = match lean {
                Some(c) => UnaryClient::Lean(c),
                None => UnaryClient::Channel(connect(target).await?),
            };
            let (calls, rx) = mpsc::unbounded_channel();
            Ok((
                SendHalf::Unary {
                    client,
                    in_flight,
                    calls,
                },
                AckHalf::Unary(rx),
            ))
        }
        Transport::GrpcStream => {
            let mut client = connect(target).await?;
            let idempotent = match idempotent_over {
                None => None,
                Some(partitions) => {
                    let g = client
                        .init_producer(pb::InitProducerRequest { producer_id: None })
                        .await
                        .map_err(|s| ClientError::from(s).to_string())?
                        .into_inner();
                    Some(Idempotent {
                        producer_id: g.producer_id,
                        producer_epoch: g.producer_epoch,
                        partitions,
                        next_partition: 0,
                        sequences: std::collections::HashMap::new(),
                    })
                }
            };
            let (requests, rx) = mpsc::channel(in_flight.max(1));
            let inbound = client
                .produce_stream(ReceiverStream::new(rx))
                .await
                .map_err(|s| ClientError::from(s).to_string())?
                .into_inner();
            Ok((
                SendHalf::Stream {
                    requests,
                    sequence: 0,
                    idempotent,
                },
                AckHalf::Stream(inbound),
            ))
        }
        Transport::Legacy => {
            let addr = target
                .legacy
                .ok_or_else(|| unavailable("legacy", "--legacy-addr"))?;
            let (w, r) = legacy::connect(addr).await?;
            Ok((SendHalf::Legacy(w), AckHalf::Legacy(r)))
        }
        Transport::Http => {
            let addr = target
                .http
                .ok_or_else(|| unavailable("http", "--http-addr"))?;
            let (w, r) = http::connect(addr).await?;
            Ok((SendHalf::Http(w), AckHalf::Http(r)))
        }
    }
}

/// A gRPC connection to `target`, with its TLS and token.
///
/// # Errors
/// The broker cannot be reached.
pub async fn connect(target: &Target) -> Result<crate::client::Client, String> {
    crate::client::connect_with(&target.grpc, &target.options)
        .await
        .map_err(|e| e.to_string())
}

fn records(batch: Batch<'_>) -> Vec<pb::ProducerRecord> {
    batch
        .values
        .into_iter()
        .map(|value| pb::ProducerRecord {
            value,
            timestamp_ns: Some(batch.timestamp_ns),
            ..Default::default()
        })
        .collect()
}

impl SendHalf {
    /// Sends a batch without waiting for its ack.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(&mut self, batch: Batch<'_>) -> Result<(), String> {
        match self {
            Self::Unary {
                client,
                in_flight,
                calls,
            } => {
                let client = client.clone();
                let request = pb::ProduceRequest {
                    topic: batch.topic.to_string(),
                    records: records(batch),
                    idempotence: None,
                };
                let produce = async move {
                    let res = match client {
                        UnaryClient::Channel(mut c) => c.produce(request).await.map(|_| ()),
                        UnaryClient::Lean(mut c) => c.produce(request).await.map(|_| ()),
                    };
                    res.map(|()| Instant::now())
                        .map_err(|s| ClientError::from(s).to_string())
                };
                let call = if *in_flight <= 1 {
                    Call::Inline(Box::pin(produce))
                } else {
                    Call::Spawned(tokio::spawn(produce))
                };
                calls
                    .send(call)
                    .map_err(|_| "the acknowledging half stopped".to_string())
            }
            Self::Stream {
                requests,
                sequence,
                idempotent,
            } => {
                let topic = batch.topic.to_string();
                let mut records = records(batch);
                let idempotence = idempotent.as_mut().map(|i| i.stamp(&topic, &mut records));
                let request = pb::ProduceStreamRequest {
                    sequence: *sequence,
                    topic,
                    records,
                    idempotence,
                };
                *sequence += 1;
                requests
                    .send(request)
                    .await
                    .map_err(|_| "the produce stream closed".to_string())
            }
            Self::Legacy(w) => w.send(batch).await,
            Self::Http(w) => w.send(batch).await,
        }
    }

    /// Ends the sending side (the acks of what was sent still arrive).
    pub async fn close(self) {
        match self {
            Self::Unary { .. } | Self::Stream { .. } => {}
            Self::Legacy(w) => w.close().await,
            Self::Http(w) => w.close().await,
        }
    }
}

impl AckHalf {
    /// Waits for the ack of the oldest unacknowledged batch (of `records` records); returns when
    /// it arrived.
    ///
    /// # Errors
    /// The batch was refused, or the connection failed.
    pub async fn ack(&mut self, records: usize) -> Result<Instant, String> {
        match self {
            Self::Unary(calls) => {
                let call = calls
                    .recv()
                    .await
                    .ok_or("the sending half stopped before its call was made")?;
                match call {
                    Call::Spawned(call) => call
                        .await
                        .map_err(|e| format!("produce call failed: {e}"))?,
                    Call::Inline(call) => call.await,
                }
            }
            Self::Stream(inbound) => match inbound.next().await {
                Some(Ok(ack)) => match ack.error {
                    None if ack.acks.len() == records => Ok(Instant::now()),
                    None => Err(format!(
                        "batch {} was acknowledged with {} acks for {records} records",
                        ack.sequence,
                        ack.acks.len()
                    )),
                    Some(e) => Err(format!("{:?}: {}", tonic::Code::from(e.code), e.message)),
                },
                Some(Err(status)) => Err(ClientError::from(status).to_string()),
                None => Err("the broker closed the produce stream".into()),
            },
            Self::Legacy(r) => r.ack(records).await,
            Self::Http(r) => r.ack().await,
        }
    }
}
