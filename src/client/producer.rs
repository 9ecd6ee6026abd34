//! The Producer: records queue up, are sent in batches over one ProduceStream (a batch closes at
//! `batch_records` or after `linger`), and each `send` yields a future for its record's ack.
//!
//! By default the producer is idempotent (formatv2): it takes a producer id from `InitProducer`,
//! routes every record to its partition itself (the broker's rule: FNV-1a of a non-empty key
//! modulo the partition count, round-robin otherwise), and numbers each partition's records. When
//! the stream breaks (UNAVAILABLE, a cut connection) or an ack does not come within
//! `request_timeout`, it reconnects and sends every unacknowledged batch again, unchanged: the
//! broker answers a retry of a batch it already stored with the original offsets, so a record is
//! stored once however often it is sent.
//!
//! replication (issue 17): [`Producer::for_cluster`] is given every node of a cluster and
//! follows its leader: a stream refused with "not the leader" is opened again where the
//! `obelisk-leader` metadata points, an unreachable node makes it try the next one, and an
//! idempotent batch refused as UNAVAILABLE (the leader changed under it) is sent again, unchanged,
//! to the new leader.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::leader::{NOT_LEADER_METADATA, leader_hint, never_sent};
use super::{BrokerClient, ClientError, Transport};
use crate::proto as pb;

/// How a [`Producer`] batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct ProducerConfig {
    pub batch_records: usize,
    pub linger: Duration,
    /// Batches sent and not yet acknowledged; past this, `send` waits.
    pub max_in_flight: usize,
    /// Idempotent produce with safe retries (the default). Off: a broken stream fails the
    /// records in flight, as retrying them could store them twice.
    pub idempotent: bool,
    /// How long the oldest unacknowledged batch may wait before the stream counts as broken.
    pub request_timeout: Duration,
    /// Reconnections in a row before the records in flight fail.
    pub max_retries: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            batch_records: 500,
            linger: Duration::from_millis(2),
            max_in_flight: 16,
            idempotent: true,
            request_timeout: Duration::from_secs(30),
            max_retries: 10,
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
    /// Opens the ProduceStream (and, when idempotent, takes a producer id).
    ///
    /// # Errors
    /// The broker refused the stream or the producer id.
    pub async fn new<T: Transport>(
        mut client: BrokerClient<T>,
        config: ProducerConfig,
    ) -> Result<Self, ClientError> {
        let identity = if config.idempotent {
            let grant = client
                .init_producer(pb::InitProducerRequest { producer_id: None })
                .await?
                .into_inner();
            Some(Identity {
                id: grant.producer_id,
                epoch: grant.producer_epoch,
                sequences: HashMap::new(),
                reinit: false,
            })
        } else {
            None
        };
        let stream = Stream::open(&mut client, config.max_in_flight).await?;
        Ok(Self::start(client, stream, identity, config, None))
    }

    /// replication (issue 17): a producer of the cluster whose nodes listen (gRPC) at `nodes`
    /// (`http://host:port`, any order: a follower first is fine). It writes to the leader and
    /// follows it when it changes.
    ///
    /// # Errors
    /// No node could be reached or named a leader within `max_retries` attempts; the producer
    /// id was refused.
    pub async fn for_cluster(
        nodes: Vec<String>,
        config: ProducerConfig,
    ) -> Result<Self, ClientError> {
        let connect: Connector<tonic::transport::Channel> =
            Arc::new(|addr: String| Box::pin(async move { super::connect(&addr).await }));
        let mut route = Route {
            nodes,
            next: 0,
            hint: None,
            connect,
        };
        let mut failures = 0u32;
        let (mut client, stream) = loop {
            match route.open(config.max_in_flight).await {
                Ok(opened) => break opened,
                Err(e) if retriable(&e) && failures < config.max_retries => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let identity = if config.idempotent {
            let grant = client
                .init_producer(pb::InitProducerRequest { producer_id: None })
                .await?
                .into_inner();
            Some(Identity {
                id: grant.producer_id,
                epoch: grant.producer_epoch,
                sequences: HashMap::new(),
                reinit: false,
            })
        } else {
            None
        };
        Ok(Self::start(client, stream, identity, config, Some(route)))
    }

    fn start<T: Transport>(
        client: BrokerClient<T>,
        stream: Stream,
        identity: Option<Identity>,
        config: ProducerConfig,
        route: Option<Route<T>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.batch_records.max(1) * 4);
        let state = State {
            client,
            config,
            identity,
            partitions: HashMap::new(),
            round_robin: 0,
            waiting: VecDeque::new(),
            sequence: 0,
            route,
        };
        let task = tokio::spawn(run(rx, stream, state));
        Self { tx, task }
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

/// The idempotent producer's identity and its next sequence per (topic, partition).
struct Identity {
    id: i64,
    epoch: i32,
    sequences: HashMap<(String, u32), i32>,
    /// A batch failed at the broker: its sequences were never stored, so the next batch starts
    /// a new epoch (sequences from 0) instead of leaving a gap.
    reinit: bool,
}

/// One ProduceStream: where requests go and where acks come from.
struct Stream {
    out: mpsc::Sender<pb::ProduceStreamRequest>,
    inbound: tonic::Streaming<pb::ProduceStreamAck>,
}

impl Stream {
    async fn open<T: Transport>(
        client: &mut BrokerClient<T>,
        in_flight: usize,
    ) -> Result<Self, ClientError> {
        Ok(Self::open_status(client, in_flight).await?)
    }

    /// As [`Stream::open`], with the broker's status as it came (its metadata included).
    async fn open_status<T: Transport>(
        client: &mut BrokerClient<T>,
        in_flight: usize,
    ) -> Result<Self, tonic::Status> {
        let (out, out_rx) = mpsc::channel(in_flight.max(1));
        let inbound = client
            .produce_stream(ReceiverStream::new(out_rx))
            .await?
            .into_inner();
        Ok(Self { out, inbound })
    }
}

/// replication (issue 17): connects to a node's gRPC address.
type Connector<T> = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<BrokerClient<T>, ClientError>> + Send>>
        + Send
        + Sync,
>;

/// replication (issue 17): where a cluster producer's stream goes: the leader, found from the
/// nodes it was given.
struct Route<T: Transport> {
    nodes: Vec<String>,
    /// The node to try when no leader is named.
    next: usize,
    /// The leader a not-leader answer named.
    hint: Option<String>,
    connect: Connector<T>,
}

impl<T: Transport> Route<T> {
    /// A stream on the leader: tries the named leader or the next node, follows not-leader
    /// answers, and moves on from a node that cannot be reached (each node once per call).
    async fn open(&mut self, in_flight: usize) -> Result<(BrokerClient<T>, Stream), ClientError> {
        let mut last = ClientError::Closed;
        for _ in 0..self.nodes.len() * 2 {
            let target = match self.hint.take() {
                Some(h) => h,
                None => {
                    self.next += 1;
                    self.nodes[(self.next - 1) % self.nodes.len()].clone()
                }
            };
            let mut client = match (self.connect)(target).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match Stream::open_status(&mut client, in_flight).await {
                Ok(stream) => {
                    // Next time start from here (the leader) before trying the others.
                    self.next = self.next.saturating_sub(1);
                    return Ok((client, stream));
                }
                Err(status) if status.metadata().contains_key(NOT_LEADER_METADATA) => {
                    self.hint = leader_hint(&status);
                    last = status.into();
                    if self.hint.is_none() {
                        return Err(last); // an election: the caller waits and retries
                    }
                }
                Err(status) if never_sent(&status) => last = status.into(),
                Err(status) => return Err(status.into()),
            }
        }
        Err(last)
    }
}

/// The wait before reconnection attempt number `failures`.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5)).min(Duration::from_secs(2))
}

struct Batch {
    topic: String,
    records: Vec<pb::ProducerRecord>,
    acks: Vec<AckSender>,
}

/// A batch sent and not yet acknowledged: the request as sent (a retry sends it unchanged).
struct Sent {
    req: pb::ProduceStreamRequest,
    acks: Vec<AckSender>,
    sent_at: Instant,
}

struct State<T: Transport> {
    client: BrokerClient<T>,
    config: ProducerConfig,
    identity: Option<Identity>,
    /// Partition counts of topics, for routing (`None`: unknown, sent without idempotence).
    partitions: HashMap<String, Option<u32>>,
    round_robin: u32,
    waiting: VecDeque<Sent>,
    sequence: u64,
    /// replication (issue 17): set for a producer that follows a cluster's leader.
    route: Option<Route<T>>,
}

/// Whether an error means the batch may or may not have been stored and can be sent again.
fn retriable(e: &ClientError) -> bool {
    match e {
        ClientError::Status { code, .. } => matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Internal
        ),
        ClientError::Connect { .. } | ClientError::Closed => true,
    }
}

async fn run<T: Transport>(mut rx: mpsc::Receiver<Pending>, mut stream: Stream, mut st: State<T>) {
    let mut batch: Option<Batch> = None;
    let mut deadline = Instant::now();
    let mut open = true;
    let mut failures = 0u32;
    loop {
        let can_send = st.waiting.len() < st.config.max_in_flight;
        let timeout_at = st
            .waiting
            .front()
            .map_or_else(Instant::now, |s| s.sent_at + st.config.request_timeout);
        let broken: Option<ClientError> = tokio::select! {
            p = rx.recv(), if open && can_send => match p {
                Some(p) => {
                    if batch.as_ref().is_some_and(|b| b.topic != p.topic) {
                        flush(&mut batch, &mut st, &stream).await;
                    }
                    let b = batch.get_or_insert_with(|| {
                        deadline = Instant::now() + st.config.linger;
                        Batch { topic: p.topic.clone(), records: Vec::new(), acks: Vec::new() }
                    });
                    b.records.push(p.record);
                    b.acks.push(p.ack);
                    if b.records.len() >= st.config.batch_records {
                        flush(&mut batch, &mut st, &stream).await;
                    }
                    None
                }
                None => {
                    open = false;
                    flush(&mut batch, &mut st, &stream).await;
                    None
                }
            },
            () = tokio::time::sleep_until(deadline), if batch.is_some() && can_send => {
                flush(&mut batch, &mut st, &stream).await;
                None
            }
            ack = stream.inbound.next(), if !st.waiting.is_empty() => match ack {
                Some(Ok(ack)) => match leader_changed(&st, &ack) {
                    Some(err) => Some(err),
                    None => {
                        failures = 0;
                        resolve(&mut st, ack);
                        None
                    }
                },
                Some(Err(status)) => Some(ClientError::from(status)),
                None => Some(ClientError::Closed),
            },
            () = tokio::time::sleep_until(timeout_at), if !st.waiting.is_empty() => {
                Some(ClientError::Status {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no acknowledgement within {:?}", st.config.request_timeout),
                })
            }
            else => break,
        };
        if let Some(err) = broken {
            // Only batches of an idempotent producer can be sent again safely.
            let safe = st.waiting.iter().all(|s| s.req.idempotence.is_some());
            if !(safe && retriable(&err) && failures < st.config.max_retries) {
                return fail_all(st.waiting, batch, &err);
            }
            failures += 1;
            match reconnect(&mut st, failures).await {
                Ok(s) => stream = s,
                Err(e) => return fail_all(st.waiting, batch, &e),
            }
            continue;
        }
        if !open && batch.is_none() && st.waiting.is_empty() {
            break;
        }
    }
}

/// replication (issue 17): for a cluster producer, an UNAVAILABLE refusal of an idempotent
/// batch (the node it reached is no longer the leader, or the write was not replicated): the
/// stream counts as broken, and the batch is sent again, unchanged, to the leader.
fn leader_changed<T: Transport>(st: &State<T>, ack: &pb::ProduceStreamAck) -> Option<ClientError> {
    let e = ack.error.as_ref()?;
    let idempotent = st
        .waiting
        .front()
        .is_some_and(|s| s.req.idempotence.is_some());
    (st.route.is_some() && idempotent && e.code == tonic::Code::Unavailable as i32).then(|| {
        ClientError::Status {
            code: tonic::Code::Unavailable,
            message: e.message.clone(),
        }
    })
}

/// Opens a new stream (after a backoff) and sends every unacknowledged batch on it again, in
/// order; gives up after `max_retries` attempts in a row. A cluster producer opens it on the
/// leader, wherever that is now.
async fn reconnect<T: Transport>(
    st: &mut State<T>,
    mut failures: u32,
) -> Result<Stream, ClientError> {
    loop {
        tokio::time::sleep(backoff(failures)).await;
        let attempt = async {
            let in_flight = st.config.max_in_flight.max(st.waiting.len());
            let s = match st.route.as_mut() {
                Some(route) => {
                    let (client, s) = route.open(in_flight).await?;
                    st.client = client;
                    s
                }
                None => Stream::open(&mut st.client, in_flight).await?,
            };
            for sent in &mut st.waiting {
                s.out
                    .send(sent.req.clone())
                    .await
                    .map_err(|_| ClientError::Closed)?;
                sent.sent_at = Instant::now();
            }
            Ok::<_, ClientError>(s)
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) if retriable(&e) && failures < st.config.max_retries => failures += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The partition count of `topic`, asked once (`None` when it cannot be known yet).
async fn partitions<T: Transport>(st: &mut State<T>, topic: &str) -> Option<u32> {
    if let Some(Some(n)) = st.partitions.get(topic) {
        return Some(*n);
    }
    let n = st
        .client
        .describe_topic(pb::DescribeTopicRequest {
            name: topic.to_string(),
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().topic)
        .and_then(|t| t.config)
        .map(|c| c.partitions)
        .filter(|&n| n > 0);
    st.partitions.insert(topic.to_string(), n);
    n
}

/// The identity and sequences of a batch, routing its records to their partitions; `None` when
/// the producer is not idempotent or the topic's partitions are unknown (it does not exist yet).
async fn idempotence<T: Transport>(
    st: &mut State<T>,
    b: &mut Batch,
) -> Option<pb::IdempotentProduce> {
    st.identity.as_ref()?;
    let n = partitions(st, &b.topic).await?;
    if st.identity.as_ref().is_some_and(|i| i.reinit) {
        let id = st.identity.as_ref().map(|i| i.id);
        match st
            .client
            .init_producer(pb::InitProducerRequest { producer_id: id })
            .await
        {
            Ok(g) => {
                let g = g.into_inner();
                if let Some(i) = st.identity.as_mut() {
                    i.epoch = g.producer_epoch;
                    i.sequences.clear();
                    i.reinit = false;
                }
            }
            Err(_) => return None,
        }
    }
    let mut counts: HashMap<u32, i32> = HashMap::new();
    for r in &mut b.records {
        let p = match r.partition {
            Some(p) => p,
            None if n <= 1 => 0,
            None if r.key.is_empty() => {
                st.round_robin = st.round_robin.wrapping_add(1);
                st.round_robin % n
            }
            None => crate::storage::topic::fnv1a_32(&r.key) % n,
        };
        r.partition = Some(p);
        *counts.entry(p).or_default() += 1;
    }
    let identity = st.identity.as_mut()?;
    let mut sequences = HashMap::new();
    for (p, count) in counts {
        let next = identity.sequences.entry((b.topic.clone(), p)).or_insert(0);
        sequences.insert(p, *next);
        *next = next.wrapping_add(count);
    }
    Some(pb::IdempotentProduce {
        producer_id: identity.id,
        producer_epoch: identity.epoch,
        sequences,
    })
}

async fn flush<T: Transport>(batch: &mut Option<Batch>, st: &mut State<T>, stream: &Stream) {
    let Some(mut b) = batch.take() else { return };
    let idempotence = idempotence(st, &mut b).await;
    let req = pb::ProduceStreamRequest {
        sequence: st.sequence,
        topic: b.topic,
        records: b.records,
        idempotence,
    };
    st.sequence += 1;
    // A stream that broke is found by the ack branch, which sends this again on a new one.
    let _ = stream.out.send(req.clone()).await;
    st.waiting.push_back(Sent {
        req,
        acks: b.acks,
        sent_at: Instant::now(),
    });
}

fn resolve<T: Transport>(st: &mut State<T>, ack: pb::ProduceStreamAck) {
    let Some(sent) = st.waiting.pop_front() else {
        return;
    };
    debug_assert_eq!(sent.req.sequence, ack.sequence, "acks arrive in order");
    match ack.error {
        Some(e) => {
            if sent.req.idempotence.is_some()
                && let Some(i) = st.identity.as_mut()
            {
                i.reinit = true;
            }
            let err = ClientError::Status {
                code: tonic::Code::from(e.code),
                message: e.message,
            };
            for s in sent.acks {
                let _ = s.send(Err(err.clone()));
            }
        }
        None => {
            for (s, a) in sent.acks.into_iter().zip(ack.acks) {
                let _ = s.send(Ok(a));
            }
        }
    }
}

fn fail_all(waiting: VecDeque<Sent>, batch: Option<Batch>, err: &ClientError) {
    for sent in waiting {
        for s in sent.acks {
            let _ = s.send(Err(err.clone()));
        }
    }
    for s in batch.into_iter().flat_map(|b| b.acks) {
        let _ = s.send(Err(err.clone()));
    }
}
