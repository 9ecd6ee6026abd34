//! One bench run: a broker (fresh in-process, or existing), fresh topics, producers and consumers
//! on a shared clock, and what they measured.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, ConsumerOutcome, ConsumerSpec};
use super::producer::{self, Clock, ProducerOutcome, ProducerSpec};
use super::report::{ConsumeStats, Outcome, ProduceStats, Progress, Verification};
use super::transport::{self, Target, Transport};
use super::{Mode, Plan};
use crate::cli::connect::reply;
use crate::config::Config;
use crate::proto as pb;
use crate::server::RunningServer;

/// Verification problems kept with their message across all consumers.
const KEPT_ERRORS: usize = 20;

/// How records are produced in one phase.
#[derive(Debug, Clone, Copy)]
struct Load {
    transport: Transport,
    batch: u32,
    in_flight: u32,
    rate: Option<f64>,
    count: Option<u64>,
    duration: Option<Duration>,
}

/// Runs one bench and returns what it measured.
///
/// # Errors
/// The broker cannot be started or reached, or the topics cannot be created.
pub async fn run_one(plan: &Plan, show_progress: bool) -> anyhow::Result<Outcome> {
    match &plan.server {
        Some(url) => {
            let target = Target {
                grpc: url.clone(),
                legacy: plan.legacy_addr,
                http: plan.http_addr,
                options: plan.security.clone(),
            };
            run_on(plan, &target, show_progress).await
        }
        None => {
            let local = LocalBroker::start(plan).await?;
            let local_dir = local.dir.join("topics");
            let result = run_on(plan, &local.target, show_progress).await;
            let disk = log_bytes(&local_dir);
            local.stop().await;
            result.map(|mut o| {
                o.disk_bytes = Some(disk);
                o
            })
        }
    }
}

/// Bytes of every segment log under `dir` (formatv2: what the records take on disk).
fn log_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                log_bytes(&p)
            } else if p.extension().is_some_and(|x| x == "log") {
                e.metadata().map_or(0, |m| m.len())
            } else {
                0
            }
        })
        .sum()
}

/// A fresh in-process broker on its own data directory.
pub(super) struct LocalBroker {
    server: RunningServer,
    pub(super) target: Target,
    dir: PathBuf,
    temporary: bool,
}

impl LocalBroker {
    pub(super) async fn start(plan: &Plan) -> anyhow::Result<Self> {
        let (dir, temporary) = match &plan.data_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "obelisk-bench-{}-{}",
                    std::process::id(),
                    crate::broker::now_ns()
                )),
                true,
            ),
        };
        let listener = |t: Transport| {
            if plan.transport == t {
                "127.0.0.1:0"
            } else {
                "off"
            }
        };
        let mut config = Config {
            data_dir: dir.clone(),
            grpc_addr: "127.0.0.1:0".into(),
            tcp_addr: listener(Transport::Legacy).into(),
            http_addr: listener(Transport::Http).into(),
            durability: plan.durability.unwrap_or_default(),
            log_level: "warn".into(),
            write_format_v1: plan.storage_format == 1,
            ..Config::default()
        };
        let options = if plan.secure {
            secure_local(&mut config, &dir.join("security"))
                .context("making the bench's certificates")?
        } else {
            crate::client::ConnectOptions::default()
        };
        let started = match config.validate() {
            Ok(v) => crate::server::start(v).await.map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        let server = match started {
            Ok(s) => s,
            Err(e) => {
                if temporary {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e.context("starting the in-process broker"));
            }
        };
        let scheme = if plan.secure { "https" } else { "http" };
        let target = Target {
            grpc: format!("{scheme}://{}", server.grpc_addr),
            legacy: server.tcp_addr,
            http: server.http_addr,
            options,
        };
        Ok(Self {
            server,
            target,
            dir,
            temporary,
        })
    }

    pub(super) async fn stop(self) {
        self.server.stop().await;
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn run_on(plan: &Plan, target: &Target, show_progress: bool) -> anyhow::Result<Outcome> {
    let mut admin = super::transport::connect(target)
        .await
        .map_err(anyhow::Error::msg)?;
    let run_id = format!(
        "{:08x}",
        (crate::broker::now_ns() as u64 ^ u64::from(std::process::id())) & 0xffff_ffff
    );
    let topics: Arc<Vec<String>> = Arc::new(
        (0..plan.topics)
            .map(|i| format!("bench-{run_id}-{i}"))
            .collect(),
    );
    for t in topics.iter() {
        reply(
            admin
                .create_topic(pb::CreateTopicRequest {
                    name: t.clone(),
                    config: Some(pb::TopicConfig {
                        partitions: plan.partitions,
                        compression: crate::grpc::compression_to_pb(plan.compression),
                        ..Default::default()
                    }),
                })
                .await,
        )
        .with_context(|| format!("creating the bench topic {t}"))?;
    }
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        show_progress,
        Arc::clone(&produced),
        Arc::clone(&consumed),
        plan.count,
    );
    let phases = Phases {
        plan,
        target,
        topics: &topics,
        run_id: &run_id,
        produced,
        consumed,
    };
    let result = phases.run().await;
    progress.finish();
    if plan.server.is_some() && !plan.keep_topics {
        for t in topics.iter() {
            let _ = admin
                .delete_topic(pb::DeleteTopicRequest { name: t.clone() })
                .await;
        }
    }
    result
}

struct Phases<'a> {
    plan: &'a Plan,
    target: &'a Target,
    topics: &'a Arc<Vec<String>>,
    run_id: &'a str,
    produced: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
}

impl Phases<'_> {
    async fn run(&self) -> anyhow::Result<Outcome> {
        let plan = self.plan;
        let load = Load {
            transport: plan.transport,
            batch: plan.batch_size,
            in_flight: plan.in_flight,
            rate: plan.rate,
            count: plan.count,
            duration: plan.duration,
        };
        let mut outcome = Outcome {
            plan: plan.clone(),
            produce: None,
            consume: None,
            verification: None,
            errors: Vec::new(),
            disk_bytes: None,
        };
        // Consumers still running when this returns early are told to stop.
        let stop = CancellationToken::new();
        let _stop_on_return = stop.clone().drop_guard();
        let (expected_tx, expected_rx) = watch::channel(None::<u64>);
        match plan.mode {
            Mode::Produce => {
                let (clock, producers) = self.produce(load).await?;
                outcome.produce = Some(produce_stats(clock, &producers, &mut outcome.errors));
            }
            Mode::Consume => {
                // Preloaded quickly whatever the consumer settings; only the reading is timed.
                let preload = Load {
                    transport: Transport::GrpcStream,
                    batch: 500,
                    in_flight: 4,
                    rate: None,
                    ..load
                };
                let (_, producers) = self.produce(preload).await?;
                let errors: Vec<String> =
                    producers.iter().filter_map(|p| p.error.clone()).collect();
                if !errors.is_empty() {
                    outcome.errors = errors;
                    return Ok(outcome);
                }
                let acked: Vec<u64> = producers.iter().map(|p| p.acked).collect();
                let _ = expected_tx.send(Some(acked.iter().sum()));
                let start = Instant::now();
                let consumers = self.consumers(false, expected_rx, &stop).await?;
                self.finish_consumers(&mut outcome, start, &acked, consumers)
                    .await;
            }
            Mode::Both => {
                let consumers = self.consumers(true, expected_rx, &stop).await?;
                let (clock, producers) = self.produce(load).await?;
                outcome.produce = Some(produce_stats(clock, &producers, &mut outcome.errors));
                let acked: Vec<u64> = producers.iter().map(|p| p.acked).collect();
                let _ = expected_tx.send(Some(acked.iter().sum()));
                self.finish_consumers(&mut outcome, clock.start, &acked, consumers)
                    .await;
            }
            Mode::Group => {
                anyhow::bail!("--mode group runs in bench/group.rs, not here");
            }
            Mode::Shared => {
                anyhow::bail!("--mode shared runs in bench/shared.rs, not here");
            }
        }
        Ok(outcome)
    }

    /// Connects every producer, then starts them together; returns when all are done.
    async fn produce(&self, load: Load) -> anyhow::Result<(Clock, Vec<ProducerOutcome>)> {
        let plan = self.plan;
        let n = u64::from(plan.producers);
        let mut halves = Vec::new();
        for _ in 0..n {
            halves.push(
                transport::open(
                    load.transport,
                    self.target,
                    load.in_flight as usize,
                    plan.idempotent.then_some(plan.partitions),
                )
                .await
                .map_err(anyhow::Error::msg)?,
            );
        }
        let batch_interval = match load.rate {
            None => None,
            Some(rate) => Some(
                Duration::try_from_secs_f64(f64::from(load.batch) * n as f64 / rate)
                    .context("--rate is too small")?,
            ),
        };
        let clock = Clock::now();
        let deadline = load.duration.map(|d| clock.start + d);
        let mut tasks = Vec::new();
        for (i, (tx, rx)) in (0u64..).zip(halves) {
            let spec = ProducerSpec {
                id: i as u32,
                count: load.count.map(|c| c / n + u64::from(i < c % n)),
                deadline,
                batch: load.batch as usize,
                in_flight: load.in_flight as usize,
                batch_interval,
                message_size: plan.message_size,
                topics: Arc::clone(self.topics),
                payload: plan.payload,
            };
            tasks.push(tokio::spawn(producer::run(
                spec,
                tx,
                rx,
                clock,
                Arc::clone(&self.produced),
            )));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.context("a producer task failed")?);
        }
        Ok((clock, outcomes))
    }

    /// Connects and starts the consumers.
    async fn consumers(
        &self,
        end_to_end: bool,
        expected: watch::Receiver<Option<u64>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<ConsumerOutcome>>> {
        let plan = self.plan;
        let mut tasks = Vec::new();
        for id in 0..plan.consumers {
            let client = super::transport::connect(self.target)
                .await
                .map_err(anyhow::Error::msg)?;
            let spec = ConsumerSpec {
                id,
                topics: Arc::clone(self.topics),
                batch: plan.consumer_batch,
                with: plan.consume_with,
                producers: plan.producers,
                message_size: plan.message_size,
                run_id: self.run_id.to_string(),
                end_to_end,
            };
            tasks.push(tokio::spawn(consumer::run(
                spec,
                client,
                expected.clone(),
                stop.clone(),
                Arc::clone(&self.consumed),
            )));
        }
        Ok(tasks)
    }

    async fn finish_consumers(
        &self,
        outcome: &mut Outcome,
        start: Instant,
        acked: &[u64],
        tasks: Vec<tokio::task::JoinHandle<ConsumerOutcome>>,
    ) {
        let mut verification = Verification {
            checked: 0,
            error_count: 0,
            errors: Vec::new(),
        };
        let mut end_to_end = producer::histogram();
        let mut last = start;
        let mut records = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let mut c = match task.await {
                Ok(c) => c,
                Err(e) => {
                    outcome.errors.push(format!("consumer {i} failed: {e}"));
                    continue;
                }
            };
            if let Some(e) = c.error.take() {
                outcome.errors.push(e);
            }
            c.verifier.finish(acked);
            records += c.verifier.received;
            verification.checked += c.verifier.received;
            verification.error_count += c.verifier.error_count;
            for e in c.verifier.errors.drain(..) {
                if verification.errors.len() < KEPT_ERRORS {
                    verification.errors.push(format!("consumer {i}: {e}"));
                }
            }
            if let Some(h) = &c.end_to_end {
                let _ = end_to_end.add(h);
            }
            last = last.max(c.last_record.unwrap_or(start));
        }
        outcome.consume = Some(ConsumeStats {
            consumers: self.plan.consumers,
            records,
            seconds: last.saturating_duration_since(start).as_secs_f64(),
            end_to_end: (self.plan.mode == Mode::Both).then_some(end_to_end),
        });
        outcome.verification = Some(verification);
    }
}

fn produce_stats(
    clock: Clock,
    producers: &[ProducerOutcome],
    errors: &mut Vec<String>,
) -> ProduceStats {
    let mut latency = producer::histogram();
    let mut finished = clock.start;
    let mut records = 0;
    for p in producers {
        records += p.acked;
        let _ = latency.add(&p.latency);
        finished = finished.max(p.finished);
        if let Some(e) = &p.error {
            errors.push(e.clone());
        }
    }
    ProduceStats {
        records,
        seconds: finished
            .saturating_duration_since(clock.start)
            .as_secs_f64(),
        latency,
    }
}

/// TLS with a throwaway CA and a token for the super user `bench`, written under `dir`; returns
/// how the bench's clients connect.
fn secure_local(
    config: &mut Config,
    dir: &std::path::Path,
) -> std::io::Result<crate::client::ConnectOptions> {
    let certs = crate::server::devcert::write(dir, &[])?;
    let (token, line) = crate::auth::tokens::generate("bench");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, line)?;
    config.tls_cert = Some(certs.server_cert);
    config.tls_key = Some(certs.server_key);
    config.auth_token_file = Some(tokens);
    config.super_users = vec!["bench".into()];
    Ok(crate::client::ConnectOptions {
        ca: Some(certs.ca),
        token: Some(token),
        ..crate::client::ConnectOptions::default()
    })
}
