//! The Producer: records queue up, are sent in batches over one ProduceStream (a batch closes at
//! `batch_records` or after `linger`), and each `send` yields a future for its record's ack.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{BrokerClient, ClientError};
use crate::proto as pb;

/// How a [`Producer`] batches.
#[derive(Debug, Clone, Copy)]
pub struct ProducerConfig {
    pub batch_records: usize,
    pub linger: Duration,
    /// Batches sent and not yet acknowledged; past this, `send` waits.
    pub max_in_flight: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_records: 500,
            linger: Duration::from_millis(2),
            max_in_flight: 16,
        }
    }
}

type AckSender = oneshot::Sender<Result<pb::RecordAck, ClientError>>;

struct Pending {
    topic: String,
    record: pb::ProducerRecord,
    ack: AckSender,
}

/// Resolves to where the record landed once the broker acknowledged it (durably).
pub type AckFuture = oneshot::Receiver<Result<pb::RecordAck, ClientError>>;

/// A batching producer over one ProduceStream.
pub struct Producer {
    tx: mpsc::Sender<Pending>,
    task: JoinHandle<()>,
}

impl Producer {
    /// Opens the ProduceStream.
    ///
    /// # Errors
    /// The broker refused the stream.
    pub async fn new(
        mut client: BrokerClient<Channel>,
        config: ProducerConfig,
    ) -> Result<Self, ClientError> {
        let (out_tx, out_rx) = mpsc::channel(config.max_in_flight.max(1));
        let inbound = client
            .produce_stream(ReceiverStream::new(out_rx))
            .await?
            .into_inner();
        let (tx, rx) = mpsc::channel(config.batch_records.max(1) * 4);
        let task = tokio::spawn(run(rx, out_tx, inbound, config));
        Ok(Self { tx, task })
    }

    /// Queues a record; the returned future resolves with its ack.
    ///
    /// # Errors
    /// `Closed` when the producer has stopped.
    pub async fn send(
        &self,
        topic: &str,
        record: pb::ProducerRecord,
    ) -> Result<AckFuture, ClientError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                topic: topic.to_string(),
                record,
                ack,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(rx)
    }

    /// Sends what is queued, waits for every ack, and closes the stream.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

struct Batch {
    topic: String,
    records: Vec<pb::ProducerRecord>,
    acks: Vec<AckSender>,
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    out: mpsc::Sender<pb::ProduceStreamRequest>,
    mut inbound: tonic::Streaming<pb::ProduceStreamAck>,
    config: ProducerConfig,
) {
    let mut batch: Option<Batch> = None;
    let mut deadline = tokio::time::Instant::now();
    let mut waiting: VecDeque<(u64, Vec<AckSender>)> = VecDeque::new();
    let mut sequence = 0u64;
    let mut open = true;
    loop {
        let can_send = waiting.len() < config.max_in_flight;
        tokio::select! {
            p = rx.recv(), if open && can_send => match p {
                Some(p) => {
                    if batch.as_ref().is_some_and(|b| b.topic != p.topic) {
                        flush(&mut batch, &out, &mut waiting, &mut sequence).await;
                    }
                    let b = batch.get_or_insert_with(|| {
                        deadline = tokio::time::Instant::now() + config.linger;
                        Batch { topic: p.topic.clone(), records: Vec::new(), acks: Vec::new() }
                    });
                    b.records.push(p.record);
                    b.acks.push(p.ack);
                    if b.records.len() >= config.batch_records {
                        flush(&mut batch, &out, &mut waiting, &mut sequence).await;
                    }
                }
                None => {
                    open = false;
                    flush(&mut batch, &out, &mut waiting, &mut sequence).await;
                }
            },
            () = tokio::time::sleep_until(deadline), if batch.is_some() && can_send => {
                flush(&mut batch, &out, &mut waiting, &mut sequence).await;
            }
            ack = inbound.next(), if !waiting.is_empty() => match ack {
                Some(Ok(ack)) => resolve(&mut waiting, ack),
                Some(Err(status)) => return fail_all(waiting, batch, &ClientError::from(status)),
                None => return fail_all(waiting, batch, &ClientError::Closed),
            },
            else => break,
        }
        if !open && batch.is_none() && waiting.is_empty() {
            break;
        }
    }
}

async fn flush(
    batch: &mut Option<Batch>,
    out: &mpsc::Sender<pb::ProduceStreamRequest>,
    waiting: &mut VecDeque<(u64, Vec<AckSender>)>,
    sequence: &mut u64,
) {
    let Some(b) = batch.take() else { return };
    let req = pb::ProduceStreamRequest {
        sequence: *sequence,
        topic: b.topic,
        records: b.records,
        idempotence: None,
    };
    if out.send(req).await.is_err() {
        for a in b.acks {
            let _ = a.send(Err(ClientError::Closed));
        }
        return;
    }
    waiting.push_back((*sequence, b.acks));
    *sequence += 1;
}

fn resolve(waiting: &mut VecDeque<(u64, Vec<AckSender>)>, ack: pb::ProduceStreamAck) {
    let Some((seq, senders)) = waiting.pop_front() else {
        return;
    };
    debug_assert_eq!(seq, ack.sequence, "acks arrive in order");
    match ack.error {
        Some(e) => {
            let err = ClientError::Status {
                code: tonic::Code::from(e.code),
                message: e.message,
            };
            for s in senders {
                let _ = s.send(Err(err.clone()));
            }
        }
        None => {
            for (s, a) in senders.into_iter().zip(ack.acks) {
                let _ = s.send(Ok(a));
            }
        }
    }
}

fn fail_all(waiting: VecDeque<(u64, Vec<AckSender>)>, batch: Option<Batch>, err: &ClientError) {
    for (_, senders) in waiting {
        for s in senders {
            let _ = s.send(Err(err.clone()));
        }
    }
    for s in batch.into_iter().flat_map(|b| b.acks) {
        let _ = s.send(Err(err.clone()));
    }
}
