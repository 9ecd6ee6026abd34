//! `obelisk bench --mode group` (groups, issue 13): consumer groups with members.
//!
//! 1. **Throughput**: `--count` records (of `--message-size` bytes) are preloaded over
//!    `--partitions`; `--consumers` members of one group (the Rust `GroupConsumer`, reading with
//!    member Subscribe streams, or Poll with `--consume-with poll`) consume them
//!    all (committing every 100 ms, as an auto-commit would); the rate is records over the time
//!    from the first join to the last record, and every record must arrive (at least once).
//! 2. **Join latency**: while those members keep consuming a steady trickle of new records,
//!    another member joins `--joins` times (then leaves): the time from its join call to holding
//!    its whole share of the partitions (the others must release first), as p50/p99/max, and the
//!    longest gap between two answered polls of any old member during the joins ("never stop").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::Plan;
use crate::client::{self, BrokerClient, GroupConfig, GroupConsumer, NoListener};
use crate::proto as pb;
use tonic::transport::Channel;

/// What one run measured.
pub struct GroupOutcome {
    pub command: String,
    pub records: u64,
    pub consume_secs: f64,
    pub joins_ms: Vec<f64>,
    pub max_member_gap_ms: f64,
}

impl GroupOutcome {
    fn percentile(&self, q: f64) -> f64 {
        if self.joins_ms.is_empty() {
            return 0.0;
        }
        let mut v = self.joins_ms.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }

    pub fn to_json(&self) -> Value {
        json!({
            "command": self.command,
            "records": self.records,
            "consume_seconds": self.consume_secs,
            "records_per_second": self.records as f64 / self.consume_secs.max(1e-9),
            "joins": self.joins_ms.len(),
            "join_ms": {"p50": self.percentile(0.5), "p99": self.percentile(0.99), "max": self.percentile(1.0)},
            "max_member_gap_ms": self.max_member_gap_ms,
        })
    }

    pub fn to_text(&self) -> String {
        format!(
            "{}\n\ngroup consume: {} records in {:.3} s = {:.0} records/s\n\
             member join to full share over {} joins: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             longest gap between answered polls of the other members during the joins: {:.1} ms\n",
            self.command,
            self.records,
            self.consume_secs,
            self.records as f64 / self.consume_secs.max(1e-9),
            self.joins_ms.len(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(1.0),
            self.max_member_gap_ms
        )
    }
}

/// How often a member commits while it consumes.
const COMMIT_EVERY: Duration = Duration::from_millis(100);

fn config(group: &str, topic: &str, batch: u32, stream: bool) -> GroupConfig {
    GroupConfig {
        max_records: batch,
        stream,
        max_wait_ms: 100,
        client_id: "obelisk-bench".into(),
        ..GroupConfig::new(group, &[topic])
    }
}

pub(super) async fn preload(
    c: &mut BrokerClient<Channel>,
    topic: &str,
    plan: &Plan,
    n: u64,
) -> anyhow::Result<()> {
    let value = vec![b'x'; plan.message_size];
    let mut sent = 0u64;
    while sent < n {
        let batch = (n - sent).min(1000);
        let records = (0..batch)
            .map(|i| pb::ProducerRecord {
                value: value.clone().into(),
                partition: Some(((sent + i) % u64::from(plan.partitions)) as u32),
                ..Default::default()
            })
            .collect();
        c.produce(pb::ProduceRequest {
            topic: topic.into(),
            records,
            idempotence: None,
        })
        .await?;
        sent += batch;
    }
    Ok(())
}

/// Runs the group bench against `grpc` (a broker URL).
///
/// # Errors
/// The broker refuses a call, or a record never arrives.
pub async fn run(
    plan: &Plan,
    grpc: &str,
    joins: u32,
    command: String,
) -> anyhow::Result<GroupOutcome> {
    let mut c = client::connect(grpc).await?;
    let run_id = crate::broker::now_ns();
    let topic = format!("bench-group-{run_id}");
    let group = format!("bench-group-{run_id}");
    c.create_topic(pb::CreateTopicRequest {
        name: topic.clone(),
        config: Some(pb::TopicConfig {
            partitions: plan.partitions,
            ..Default::default()
        }),
    })
    .await?;
    let count = plan.count.unwrap_or(100_000);
    // `--consume-with subscribe` (the default): member Subscribe streams; `poll`: Poll calls.
    let stream = plan.consume_with == super::ConsumeWith::Subscribe;
    preload(&mut c, &topic, plan, count).await?;

    // 1. Throughput: the members together read everything.
    let started = Instant::now();
    let mut members = Vec::new();
    for _ in 0..plan.consumers {
        let conn = client::connect(grpc).await?;
        members.push(
            GroupConsumer::join(
                conn,
                config(&group, &topic, plan.consumer_batch, stream),
                Box::new(NoListener),
            )
            .await?,
        );
    }
    // The next offset reached per partition: offsets are dense and an owner reads its partition
    // in order from the committed offset (at or below anything delivered before), so every
    // partition's reaching its end means every record arrived.
    let reached: Arc<Vec<AtomicU64>> =
        Arc::new((0..plan.partitions).map(|_| AtomicU64::new(0)).collect());
    let per_partition = count / u64::from(plan.partitions);
    let extra = count % u64::from(plan.partitions);
    let end_of = move |p: usize| per_partition + u64::from((p as u64) < extra);
    let all_there = move |reached: &[AtomicU64]| {
        reached
            .iter()
            .enumerate()
            .all(|(p, r)| r.load(Ordering::Relaxed) >= end_of(p))
    };
    let mut tasks: Vec<JoinHandle<anyhow::Result<GroupConsumer>>> = Vec::new();
    for mut m in members {
        let reached = Arc::clone(&reached);
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut last_commit = Instant::now();
            loop {
                let records = m.poll().await?;
                for r in &records {
                    reached[r.partition as usize].fetch_max(r.offset + 1, Ordering::Relaxed);
                }
                // Commits as a consumer's auto-commit would: every COMMIT_EVERY, not per poll.
                if last_commit.elapsed() >= COMMIT_EVERY {
                    m.commit().await?;
                    last_commit = Instant::now();
                }
                if all_there(&reached) {
                    m.commit().await?;
                    return Ok(m);
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "not every record arrived within 300 s"
                );
            }
        }));
    }
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await??);
    }
    let consume_secs = started.elapsed().as_secs_f64();

    // 2. Joins while the members keep consuming a trickle.
    let stop = Arc::new(AtomicBool::new(false));
    let max_gap_us = Arc::new(AtomicU64::new(0));
    let mut producer = c.clone();
    let (ptopic, pstop, pplan_parts) = (topic.clone(), Arc::clone(&stop), plan.partitions);
    let trickle = tokio::spawn(async move {
        while !pstop.load(Ordering::Relaxed) {
            let records = (0..pplan_parts)
                .map(|p| pb::ProducerRecord {
                    value: vec![b'y'; 100].into(),
                    partition: Some(p),
                    ..Default::default()
                })
                .collect();
            let _ = producer
                .produce(pb::ProduceRequest {
                    topic: ptopic.clone(),
                    records,
                    idempotence: None,
                })
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let measuring = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for mut m in members {
        let (stop, gap, measuring) = (
            Arc::clone(&stop),
            Arc::clone(&max_gap_us),
            Arc::clone(&measuring),
        );
        loops.push(tokio::spawn(async move {
            let mut last = Instant::now();
            let mut last_commit = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if m.poll().await.is_ok() {
                    if last_commit.elapsed() >= COMMIT_EVERY {
                        let _ = m.commit().await;
                        last_commit = Instant::now();
                    }
                    let now = Instant::now();
                    if measuring.load(Ordering::Relaxed) {
                        let us =
                            u64::try_from(now.duration_since(last).as_micros()).unwrap_or(u64::MAX);
                        gap.fetch_max(us, Ordering::Relaxed);
                    }
                    last = now;
                }
            }
            let _ = m.close().await;
        }));
    }
    let share = (plan.partitions / (plan.consumers + 1)) as usize;
    let mut joins_ms = Vec::new();
    let settle = |c: &mut BrokerClient<Channel>, group: String| {
        let mut c = c.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(d) = c
                    .describe_group(pb::DescribeGroupRequest {
                        group: group.clone(),
                    })
                    .await
                    && d.get_ref().state == "stable"
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    settle(&mut c, group.clone()).await;
    measuring.store(true, Ordering::Relaxed);
    for _ in 0..joins {
        let conn = client::connect(grpc).await?;
        let t0 = Instant::now();
        let mut joiner = GroupConsumer::join(
            conn,
            config(&group, &topic, plan.consumer_batch, stream),
            Box::new(NoListener),
        )
        .await?;
        let deadline = t0 + Duration::from_secs(60);
        while joiner.assignment().len() < share {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the joining member never got its share"
            );
            joiner.poll().await?;
        }
        joins_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        joiner.close().await?;
        settle(&mut c, group.clone()).await;
    }
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = trickle.await;
    for l in loops {
        let _ = l.await;
    }
    let _ = c.delete_topic(pb::DeleteTopicRequest { name: topic }).await;
    Ok(GroupOutcome {
        command,
        records: count,
        consume_secs,
        joins_ms,
        max_member_gap_ms: max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
    })
}
