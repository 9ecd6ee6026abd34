//! `obelisk bench`: producers, consumers or both against a fresh in-process broker (or an
//! existing one with `--server`), closed-loop or at a fixed rate, over gRPC (unary or stream),
//! the legacy protocol or HTTP. It reports throughput and HdrHistogram latency percentiles, and
//! consumers verify every record (see [`payload`]): a failed check is reported, with exit code 3,
//! instead of a rate. `--suite` runs the standard table for the README.

mod consumer;
mod goals;
mod group;
mod http;
mod lean;
mod legacy;
mod payload;
mod producer;
mod report;
mod run;
mod shared;
mod shared_stream;
mod suite;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

pub use consumer::ConsumeWith;
pub use transport::Transport;

use super::table::{pretty_json, print_stdout};
use crate::config::DurabilityMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producers only.
    Produce,
    /// Preload the records, then time consumers reading them.
    Consume,
    /// Producers and consumers at once (consumers report end-to-end latency).
    Both,
    /// Consumer groups with members: `--consumers` members consume a preloaded topic together,
    /// then another member joins `--joins` times (join-to-share latency; see bench/group.rs).
    Group,
    /// Shared groups (issue 14): `--consumers` workers of one shared group take a preloaded
    /// topic and accept every record in batches, then one plain Subscribe stream reads the same
    /// records (see bench/shared.rs).
    Shared,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Bench an existing broker at this gRPC address (default: a fresh in-process broker on a
    /// temporary directory). OBELISK_SERVER is deliberately not read here.
    #[arg(long)]
    pub server: Option<String>,
    /// The existing broker's legacy TCP listener, for --transport legacy with --server.
    #[arg(long, value_name = "HOST:PORT")]
    pub legacy_addr: Option<SocketAddr>,
    /// The existing broker's HTTP listener, for --transport http with --server.
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<SocketAddr>,
    /// What runs: producers, consumers of a preloaded topic, or both at once.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// How producers send (consumers always use gRPC).
    #[arg(long, value_enum, default_value_t = Transport::GrpcStream)]
    pub transport: Transport,
    /// Bytes per record value (at least 32: producer, sequence and checksum).
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// Records per produce batch (legacy: frames written at once).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Records in all (split across producers) [default: 100000 unless --duration].
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Produce for this long instead of a count, e.g. 10s.
    #[arg(long, value_parser = super::time::parse_duration)]
    pub duration: Option<Duration>,
    /// Topics to spread batches over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub partitions: u32,
    /// Producers, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub producers: u32,
    /// Consumers, each reading every record (consume and both modes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub consumers: u32,
    /// Records per Subscribe message or Poll.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub consumer_batch: u32,
    /// How consumers read.
    #[arg(long, value_enum, default_value_t = ConsumeWith::Subscribe)]
    pub consume_with: ConsumeWith,
    /// Batches each producer may have sent and not yet had acknowledged.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub in_flight: u32,
    /// Open loop: records per second in all, at fixed intervals (latency counts from the
    /// scheduled send). Default: closed loop, as fast as acks allow.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The in-process broker's durability (`interval`: fsync every 100 ms).
    #[arg(long, value_enum, default_value_t = DurabilityMode::Fsync)]
    pub durability: DurabilityMode,
    /// The in-process broker's data directory (kept afterwards) instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the bench topics on an existing broker (--server) instead of deleting them.
    #[arg(long)]
    pub keep_topics: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// With --mode group: how many times a member joins the consuming group.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub joins: u32,
    /// Run the standard suite against fresh in-process brokers and print a markdown table.
    #[arg(long)]
    pub suite: bool,
    /// Run issue 12's goal rows (request cost, batched produce, reads, legacy pipelining, fsync
    /// latency) against fresh in-process brokers, each compared with the same run's figures.
    #[arg(long, conflicts_with_all = ["server", "suite"])]
    pub goals: bool,
    /// How long each produce row of --suite (and --goals) runs.
    #[arg(long, value_parser = super::time::parse_duration, default_value = "5s")]
    pub suite_duration: Duration,
    /// TLS and token for --server (security).
    #[command(flatten)]
    pub security: super::connect::SecurityArgs,
    /// The in-process broker serves gRPC over TLS with authentication (a throwaway CA and a
    /// token), and every client connects with them.
    #[arg(long, conflicts_with = "server")]
    pub secure: bool,
    /// Run twice on fresh in-process brokers, plaintext then TLS with a token, and print both
    /// and the ratio of their produce rates.
    #[arg(long, conflicts_with_all = ["server", "secure", "suite"])]
    pub compare_security: bool,
    /// formatv2: how the bench topics store their batches: none, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: crate::storage::batch::Compression,
    /// formatv2: the in-process broker's on-disk format: 2 (record batches) or 1 (a frame per
    /// record, as before format v2), to compare the two.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub storage_format: u8,
    /// formatv2: record values: `filler` (the checked header, then rotated letters) or `json`
    /// (the checked header, then a realistic, compressible JSON event).
    #[arg(long, value_enum, default_value_t = payload::Kind::Filler)]
    pub payload: payload::Kind,
    /// formatv2: producers are idempotent (InitProducer, a sequence per partition; grpc-stream).
    #[arg(long)]
    pub idempotent: bool,
}

/// The settings of one run, resolved and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: Mode,
    pub transport: Transport,
    pub message_size: usize,
    pub batch_size: u32,
    pub count: Option<u64>,
    #[serde(serialize_with = "seconds")]
    pub duration: Option<Duration>,
    pub topics: u32,
    pub partitions: u32,
    pub producers: u32,
    pub consumers: u32,
    pub consumer_batch: u32,
    pub consume_with: ConsumeWith,
    pub in_flight: u32,
    pub rate: Option<f64>,
    /// `None` for an existing broker (its own setting applies).
    pub durability: Option<DurabilityMode>,
    /// `None`: a fresh in-process broker.
    pub server: Option<String>,
    #[serde(skip)]
    pub legacy_addr: Option<SocketAddr>,
    #[serde(skip)]
    pub http_addr: Option<SocketAddr>,
    #[serde(skip)]
    pub data_dir: Option<PathBuf>,
    #[serde(skip)]
    pub keep_topics: bool,
    /// TLS and token of the gRPC connections to --server (security).
    #[serde(skip)]
    pub security: crate::client::ConnectOptions,
    /// The in-process broker has TLS and authentication on (security).
    pub secure: bool,
    /// formatv2.
    pub compression: crate::storage::batch::Compression,
    pub storage_format: u8,
    pub payload: payload::Kind,
    pub idempotent: bool,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Plan {
    /// # Errors
    /// Settings that cannot work together.
    pub fn from_args(a: &BenchArgs) -> anyhow::Result<Self> {
        if a.message_size < payload::HEADER {
            anyhow::bail!(
                "--message-size must be at least {} (producer, sequence and checksum)",
                payload::HEADER
            );
        }
        if a.mode == Mode::Consume && a.duration.is_some() {
            anyhow::bail!("--mode consume preloads a fixed number of records: use --count");
        }
        if a.idempotent && a.transport != Transport::GrpcStream {
            anyhow::bail!("--idempotent needs --transport grpc-stream");
        }
        if let Some(r) = a.rate
            && !(r.is_finite() && r > 0.0)
        {
            anyhow::bail!("--rate must be a positive number of records per second");
        }
        Ok(Self {
            mode: a.mode,
            transport: a.transport,
            message_size: a.message_size,
            batch_size: a.batch_size,
            count: a.count.or(if a.duration.is_none() {
                Some(100_000)
            } else {
                None
            }),
            duration: a.duration,
            topics: a.topics,
            partitions: a.partitions,
            producers: a.producers,
            consumers: a.consumers,
            consumer_batch: a.consumer_batch,
            consume_with: a.consume_with,
            in_flight: a.in_flight,
            rate: a.rate,
            durability: a.server.is_none().then_some(a.durability),
            server: a.server.as_deref().map(super::connect::normalize),
            legacy_addr: a.legacy_addr,
            http_addr: a.http_addr,
            data_dir: a.data_dir.clone(),
            compression: a.compression,
            storage_format: a.storage_format,
            payload: a.payload,
            idempotent: a.idempotent,
            keep_topics: a.keep_topics,
            security: a.security.options(),
            secure: a.secure,
        })
    }

    /// The command line that repeats this run.
    pub fn command_line(&self) -> String {
        let mut c = format!("obelisk bench --mode {}", name(self.mode));
        // The consume mode's preload has fixed settings; only its producer count comes from here.
        if self.mode != Mode::Consume {
            c.push_str(&format!(
                " --transport {} --batch-size {} --in-flight {}",
                self.transport.name(),
                self.batch_size,
                self.in_flight
            ));
        }
        c.push_str(&format!(
            " --message-size {} --producers {} --topics {} --partitions {}",
            self.message_size, self.producers, self.topics, self.partitions
        ));
        if self.mode != Mode::Produce {
            c.push_str(&format!(
                " --consumers {} --consumer-batch {} --consume-with {}",
                self.consumers,
                self.consumer_batch,
                name(self.consume_with)
            ));
        }
        match (self.count, self.duration) {
            (_, Some(d)) => c.push_str(&format!(" --duration {}s", d.as_secs_f64())),
            (Some(n), None) => c.push_str(&format!(" --count {n}")),
            (None, None) => {}
        }
        if let Some(r) = self.rate {
            c.push_str(&format!(" --rate {r}"));
        }
        match (&self.server, self.durability) {
            (Some(s), _) => c.push_str(&format!(" --server {s}")),
            (None, Some(d)) => c.push_str(&format!(" --durability {}", name(d))),
            (None, None) => {}
        }
        if self.secure {
            c.push_str(" --secure");
        }
        // formatv2
        if self.compression != crate::storage::batch::Compression::None {
            c.push_str(&format!(" --compression {}", self.compression));
        }
        if self.storage_format != 2 && self.server.is_none() {
            c.push_str(&format!(" --storage-format {}", self.storage_format));
        }
        if self.payload != payload::Kind::Filler {
            c.push_str(" --payload json");
        }
        if self.idempotent {
            c.push_str(" --idempotent");
        }
        c
    }

    /// One line saying what runs where.
    pub fn describe(&self) -> String {
        let server = match (&self.server, self.durability) {
            (Some(s), _) => format!("broker at {s}"),
            (None, d) => format!(
                "fresh in-process broker, durability {}{}",
                d.map_or("?", name),
                if self.secure { ", TLS + token" } else { "" }
            ),
        };
        let load = match self.rate {
            Some(r) => format!("open loop at {r} records/s"),
            None => "closed loop".into(),
        };
        format!(
            "obelisk bench: {}, {}, {load}; {} topic(s) × {} partitions, {} B values",
            self.transport.name(),
            server,
            self.topics,
            self.partitions,
            self.message_size
        )
    }
}

/// The kebab-case name of a setting's value, as on the command line.
trait Named {
    fn name(self) -> &'static str;
}

fn name(v: impl Named) -> &'static str {
    v.name()
}

impl Named for Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Consume => "consume",
            Self::Both => "both",
            Self::Group => "group",
            Self::Shared => "shared",
        }
    }
}

impl Named for DurabilityMode {
    fn name(self) -> &'static str {
        DurabilityMode::name(self)
    }
}

impl Named for ConsumeWith {
    fn name(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Poll => "poll",
        }
    }
}

/// Runs `obelisk bench`.
///
/// # Errors
/// Bad settings, or the broker cannot be started or reached.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.suite {
        return suite::run(&args).await;
    }
    if args.compare_security {
        return compare_security(&args).await;
    }
    if args.goals {
        return goals::run(&args).await;
    }
    let plan = Plan::from_args(&args)?;
    if plan.mode == Mode::Group {
        let command = format!("{} --joins {}", plan.command_line(), args.joins);
        let outcome = match &plan.server {
            Some(url) => group::run(&plan, url, args.joins, command).await?,
            None => {
                let local = run::LocalBroker::start(&plan).await?;
                let res = group::run(&plan, &local.target.grpc, args.joins, command).await;
                local.stop().await;
                res?
            }
        };
        let text = if args.json {
            pretty_json(&outcome.to_json())
        } else {
            outcome.to_text()
        };
        print_stdout(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    if plan.mode == Mode::Shared {
        let command = plan.command_line();
        let outcome = match &plan.server {
            Some(url) => shared::run(&plan, url, command).await?,
            None => {
                let local = run::LocalBroker::start(&plan).await?;
                let res = shared::run(&plan, &local.target.grpc, command).await;
                local.stop().await;
                res?
            }
        };
        let text = if args.json {
            pretty_json(&outcome.to_json())
        } else {
            outcome.to_text()
        };
        print_stdout(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = run::run_one(&plan, !args.quiet).await?;
    let text = if args.json {
        pretty_json(&outcome.to_json())
    } else {
        outcome.to_text()
    };
    print_stdout(&text)?;
    Ok(exit_code(&outcome))
}

fn exit_code(outcome: &report::Outcome) -> ExitCode {
    if outcome.verification_failed() {
        ExitCode::from(super::EXIT_DATA_PROBLEM)
    } else if !outcome.ok() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--compare-security`: the same plan on a plaintext broker, then on one with TLS and a token.
async fn compare_security(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let plain = Plan::from_args(args)?;
    let secure = Plan {
        secure: true,
        ..plain.clone()
    };
    let mut outcomes = Vec::new();
    for plan in [plain, secure] {
        outcomes.push(run::run_one(&plan, !args.quiet).await?);
    }
    let rate = |o: &report::Outcome| o.produce_rate().map(|(records, _)| records);
    let ratio = match (rate(&outcomes[0]), rate(&outcomes[1])) {
        (Some(p), Some(s)) if p > 0.0 => Some(s / p),
        _ => None,
    };
    let text = if args.json {
        pretty_json(&serde_json::json!({
            "plaintext": outcomes[0].to_json(),
            "tls_token": outcomes[1].to_json(),
            "produce_rate_ratio": ratio,
        }))
    } else {
        let ratio = ratio.map_or("n/a".into(), |r| format!("{:.1}%", r * 100.0));
        format!(
            "== plaintext ==\n{}\n== TLS + token ==\n{}\nTLS + token produce rate: {ratio} of plaintext\n",
            outcomes[0].to_text(),
            outcomes[1].to_text()
        )
    };
    print_stdout(&text)?;
    let failed = outcomes.iter().any(report::Outcome::verification_failed);
    Ok(if failed {
        ExitCode::from(super::EXIT_DATA_PROBLEM)
    } else {
        exit_code(&outcomes[1])
    })
}
