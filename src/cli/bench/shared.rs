//! `obelisk bench --mode shared` (shared groups, issue 14): `--consumers` workers of one
//! shared group take a preloaded topic (`--count` records of `--message-size` bytes over
//! `--partitions`) with SharedPoll (`--consumer-batch` records a call) and accept every record
//! in batches (one Settle per poll, sent while the worker already polls again, at most two
//! in flight per worker). The rate is records accepted (a Settle outcome "done", so durable in
//! the group's state log) over the time from the first poll to the last accept. Then, in the
//! same run against the same broker, one plain Subscribe stream reads the same records from
//! the start, for the cost of per-record settling against reading without any state. Between
//! the two, the same number of workers take the records again as another shared group on
//! SharedConsume streams (`shared_stream`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::Plan;
use crate::client;
use crate::proto as pb;

/// What one run measured.
pub struct SharedOutcome {
    pub command: String,
    pub records: u64,
    pub workers: u32,
    pub shared_secs: f64,
    pub polls: u64,
    pub settles: u64,
    /// The same workers on SharedConsume streams (their own group).
    pub stream: super::shared_stream::StreamOutcome,
    pub subscribe_secs: f64,
}

impl SharedOutcome {
    fn rate(n: u64, secs: f64) -> f64 {
        n as f64 / secs.max(1e-9)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "command": self.command,
            "records": self.records,
            "workers": self.workers,
            "shared": {
                "seconds": self.shared_secs,
                "records_accepted_per_second": Self::rate(self.records, self.shared_secs),
                "polls": self.polls,
                "settles": self.settles,
            },
            "shared_stream": {
                "seconds": self.stream.secs,
                "records_accepted_per_second": Self::rate(self.records, self.stream.secs),
                "pushes": self.stream.pushes,
                "settles": self.stream.settles,
            },
            "subscribe": {
                "seconds": self.subscribe_secs,
                "records_per_second": Self::rate(self.records, self.subscribe_secs),
            },
        })
    }

    pub fn to_text(&self) -> String {
        let shared = Self::rate(self.records, self.shared_secs);
        let streamed = Self::rate(self.records, self.stream.secs);
        let plain = Self::rate(self.records, self.subscribe_secs);
        format!(
            "{}\n\nshared group, {} workers, SharedPoll + Settle: {} records accepted in {:.3} s \
             = {:.0} records/s ({} polls, {} settles)\n\
             shared group, {} workers, SharedConsume streams: {} records accepted in {:.3} s \
             = {:.0} records/s ({} pushes, {} settles)\n\
             plain Subscribe, one stream: {} records in {:.3} s = {:.0} records/s\n\
             shared / Subscribe: {:.1}% (unary), {:.1}% (stream)\n",
            self.command,
            self.workers,
            self.records,
            self.shared_secs,
            shared,
            self.polls,
            self.settles,
            self.workers,
            self.records,
            self.stream.secs,
            streamed,
            self.stream.pushes,
            self.stream.settles,
            self.records,
            self.subscribe_secs,
            plain,
            100.0 * shared / plain.max(1e-9),
            100.0 * streamed / plain.max(1e-9),
        )
    }
}

/// Settles a worker may have sent and not had answered.
const SETTLES_IN_FLIGHT: usize = 2;

/// Runs the shared-group bench against `grpc` (a broker URL).
///
/// # Errors
/// The broker refuses a call, or the records are not all accepted within 300 s.
pub async fn run(plan: &Plan, grpc: &str, command: String) -> anyhow::Result<SharedOutcome> {
    let mut c = client::connect(grpc).await?;
    let run_id = crate::broker::now_ns();
    let topic = format!("bench-shared-{run_id}");
    let group = format!("bench-shared-{run_id}");
    c.create_topic(pb::CreateTopicRequest {
        name: topic.clone(),
        config: Some(pb::TopicConfig {
            partitions: plan.partitions,
            ..Default::default()
        }),
    })
    .await?;
    let count = plan.count.unwrap_or(100_000);
    super::group::preload(&mut c, &topic, plan, count).await?;
    c.create_shared_group(pb::CreateSharedGroupRequest {
        group: group.clone(),
        settings: Some(pb::SharedGroupSettings::default()),
    })
    .await?;

    let accepted = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let settles = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..plan.consumers {
        conns.push(client::connect(grpc).await?);
    }
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for (w, conn) in conns.into_iter().enumerate() {
        let (accepted, polls, settles) = (
            Arc::clone(&accepted),
            Arc::clone(&polls),
            Arc::clone(&settles),
        );
        let (topic, group, batch) = (topic.clone(), group.clone(), plan.consumer_batch);
        workers.spawn(async move {
            let member = format!("bench-worker-{w}");
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut in_flight: JoinSet<anyhow::Result<u64>> = JoinSet::new();
            while accepted.load(Ordering::Relaxed) < count {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "not every record was accepted within 300 s"
                );
                let got = conn
                    .clone()
                    .shared_poll(pb::SharedPollRequest {
                        group: group.clone(),
                        topic: topic.clone(),
                        member_id: member.clone(),
                        max_records: batch,
                        max_wait_ms: 20,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .deliveries;
                polls.fetch_add(1, Ordering::Relaxed);
                if got.is_empty() {
                    // Wait for the settles in flight: they may be what is left.
                    while let Some(r) = in_flight.join_next().await {
                        accepted.fetch_add(r??, Ordering::Relaxed);
                    }
                    continue;
                }
                let settlements = got
                    .iter()
                    .filter_map(|d| d.record.as_ref())
                    .map(|r| pb::Settlement {
                        partition: r.partition,
                        offset: r.offset,
                        kind: pb::SettleKind::Accept as i32,
                        ..Default::default()
                    })
                    .collect();
                while in_flight.len() >= SETTLES_IN_FLIGHT {
                    if let Some(r) = in_flight.join_next().await {
                        accepted.fetch_add(r??, Ordering::Relaxed);
                    }
                }
                let (mut conn, group, topic, member) =
                    (conn.clone(), group.clone(), topic.clone(), member.clone());
                settles.fetch_add(1, Ordering::Relaxed);
                in_flight.spawn(async move {
                    let res = conn
                        .settle(pb::SettleRequest {
                            group,
                            topic,
                            member_id: member,
                            settlements,
                        })
                        .await?
                        .into_inner()
                        .results;
                    if let Some(bad) = res.iter().find(|r| r.outcome != "done") {
                        anyhow::bail!("a settle was refused: {bad:?}");
                    }
                    Ok(res.len() as u64)
                });
            }
            while let Some(r) = in_flight.join_next().await {
                accepted.fetch_add(r??, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = workers.join_next().await {
        r??;
    }
    let shared_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        accepted.load(Ordering::Relaxed) == count,
        "{} records accepted, {count} produced",
        accepted.load(Ordering::Relaxed)
    );

    // The same records by the same number of workers on SharedConsume streams (another group).
    let stream_group = format!("{group}-stream");
    let streamed = super::shared_stream::run(
        grpc,
        &topic,
        &stream_group,
        plan.consumers,
        plan.consumer_batch,
        count,
    )
    .await?;

    // The same records with one plain Subscribe stream (no group, no state).
    let started = Instant::now();
    let mut stream = c
        .subscribe(pb::SubscribeRequest {
            topic: topic.clone(),
            start: Some(super::super::position::Position::Earliest.to_proto()),
            max_records_per_message: plan.consumer_batch,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut read = 0u64;
    while read < count {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(m)) => read += m?.records.len() as u64,
            Ok(None) => anyhow::bail!("the Subscribe stream ended after {read} records"),
            Err(_) => anyhow::bail!("the Subscribe stream stalled after {read} records"),
        }
    }
    let subscribe_secs = started.elapsed().as_secs_f64();
    drop(stream);
    if !plan.keep_topics {
        for g in [&group, &stream_group] {
            let _ = c
                .delete_group(pb::DeleteGroupRequest { group: g.clone() })
                .await;
            let _ = c
                .delete_topic(pb::DeleteTopicRequest {
                    name: format!("{g}.dlq"),
                })
                .await;
        }
        let _ = c.delete_topic(pb::DeleteTopicRequest { name: topic }).await;
    }
    Ok(SharedOutcome {
        command,
        records: count,
        workers: plan.consumers,
        shared_secs,
        polls: polls.load(Ordering::Relaxed),
        settles: settles.load(Ordering::Relaxed),
        stream: streamed,
        subscribe_secs,
    })
}
