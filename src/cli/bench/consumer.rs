//! One bench consumer: reads every bench topic from the start (Subscribe streams, or Poll and
//! Commit in its own group) and verifies each record with a [`Verifier`]. Consumers are
//! independent readers, so N consumers read everything N times (fan-out).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::payload::Verifier;
use super::producer::{histogram, record};
use crate::client::{ClientError, Consumer, SecureChannel};
use crate::proto as pb;

/// How long a consumer may see nothing while records it expects are missing.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumeWith {
    /// A Subscribe stream per topic (records pushed as they are acknowledged).
    Subscribe,
    /// Poll then Commit, in a group of its own.
    Poll,
}

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub id: u32,
    pub topics: Arc<Vec<String>>,
    /// Records per Subscribe message or per Poll.
    pub batch: u32,
    pub with: ConsumeWith,
    pub producers: u32,
    pub message_size: usize,
    /// Group name prefix for `Poll`.
    pub run_id: String,
    /// Measure end-to-end latency (record timestamp → arrival).
    pub end_to_end: bool,
}

pub struct ConsumerOutcome {
    pub verifier: Verifier,
    pub end_to_end: Option<Histogram<u64>>,
    pub last_record: Option<Instant>,
    pub error: Option<String>,
}

struct State {
    verifier: Verifier,
    e2e: Option<Histogram<u64>>,
    last_record: Option<Instant>,
    progress: Arc<AtomicU64>,
}

impl State {
    fn take(&mut self, topic: usize, records: &[pb::Record]) {
        let now_ns = crate::broker::now_ns();
        for r in records {
            self.verifier.check(topic, r.partition, r.offset, &r.value);
            if let Some(h) = &mut self.e2e {
                let ns = now_ns.saturating_sub(r.timestamp_ns).max(0) as u64;
                record(h, Duration::from_nanos(ns), 1);
            }
        }
        if !records.is_empty() {
            self.last_record = Some(Instant::now());
            self.progress
                .fetch_add(records.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Reads until `expected` (set once the producers are done) records arrived, `stop` fires, or
/// nothing arrives for a while although records are missing.
pub async fn run(
    spec: ConsumerSpec,
    client: crate::client::Client,
    mut expected: watch::Receiver<Option<u64>>,
    stop: CancellationToken,
    progress: Arc<AtomicU64>,
) -> ConsumerOutcome {
    let mut state = State {
        verifier: Verifier::new(spec.producers, spec.message_size),
        e2e: spec.end_to_end.then(histogram),
        last_record: None,
        progress,
    };
    let result = match spec.with {
        ConsumeWith::Subscribe => subscribe(&spec, client, &mut state, &mut expected, &stop).await,
        ConsumeWith::Poll => poll(&spec, client, &mut state, &mut expected, &stop).await,
    };
    ConsumerOutcome {
        verifier: state.verifier,
        end_to_end: state.e2e,
        last_record: state.last_record,
        error: result.err().map(|e| format!("consumer {}: {e}", spec.id)),
    }
}

fn done(state: &State, expected: &watch::Receiver<Option<u64>>) -> bool {
    expected
        .borrow()
        .is_some_and(|e| state.verifier.received >= e)
}

fn stalled(
    state: &State,
    expected: &watch::Receiver<Option<u64>>,
    since: Instant,
) -> Option<String> {
    let e = (*expected.borrow())?;
    let last = state.last_record.unwrap_or(since).max(since);
    (last.elapsed() >= STALL_TIMEOUT).then(|| {
        format!(
            "received {} of {e} records, then nothing for {}s",
            state.verifier.received,
            STALL_TIMEOUT.as_secs()
        )
    })
}

async fn subscribe(
    spec: &ConsumerSpec,
    mut client: crate::client::Client,
    state: &mut State,
    expected: &mut watch::Receiver<Option<u64>>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut streams = Vec::new();
    for (i, topic) in spec.topics.iter().enumerate() {
        let stream = client
            .subscribe(pb::SubscribeRequest {
                topic: topic.clone(),
                group: String::new(),
                start: Some(super::super::position::Position::Earliest.to_proto()),
                max_records_per_message: spec.batch,
                ..Default::default()
            })
            .await
            .map_err(|s| ClientError::from(s).to_string())?
            .into_inner();
        streams.push(stream.map(move |m| (i, m)));
    }
    let mut merged = futures_util::stream::select_all(streams);
    let since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !done(state, expected) {
        tokio::select! {
            m = merged.next() => match m {
                Some((topic, Ok(msg))) => state.take(topic, &msg.records),
                Some((_, Err(status))) => return Err(ClientError::from(status).to_string()),
                None => return Err("the broker ended the subscriptions".into()),
            },
            _ = expected.changed() => {}
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                if let Some(e) = stalled(state, expected, since) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

async fn poll(
    spec: &ConsumerSpec,
    client: crate::client::Client,
    state: &mut State,
    expected: &mut watch::Receiver<Option<u64>>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let group = format!("bench-{}-c{}", spec.run_id, spec.id);
    let mut consumers: Vec<Consumer<SecureChannel>> = spec
        .topics
        .iter()
        .map(|t| {
            let mut c = Consumer::new(client.clone(), t, &group);
            c.max_records = spec.batch;
            // With several topics, a long wait on one would hold up the others.
            c.max_wait_ms = if spec.topics.len() == 1 { 100 } else { 10 };
            c
        })
        .collect();
    let since = Instant::now();
    while !done(state, expected) && !stop.is_cancelled() {
        for (i, c) in consumers.iter_mut().enumerate() {
            let records = c.poll().await.map_err(|e| e.to_string())?;
            state.take(i, &records);
            c.commit(&records).await.map_err(|e| e.to_string())?;
        }
        if let Some(e) = stalled(state, expected, since) {
            return Err(e);
        }
    }
    Ok(())
}
