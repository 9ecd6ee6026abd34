//! `obelisk bench --suite`: the standard table for the README. Produce and consume, 100 B and
//! 1 KiB values, 1 and 4 clients, batches of 1 and 100, `fsync` and `interval` durability, each row
//! against a fresh in-process broker, printed as markdown with the command of every row.

use std::process::ExitCode;

use super::report::{Outcome, human_us};
use super::{BenchArgs, ConsumeWith, Mode, Named, Plan, Transport};
use crate::cli::table::{pretty_json, print_stdout};
use crate::config::DurabilityMode;

/// Records preloaded and read by each consume row.
const CONSUME_RECORDS: u64 = 500_000;

/// The rows: produce rows run for `--suite-duration`; consume rows read a preloaded topic.
fn rows(args: &BenchArgs) -> Vec<Plan> {
    let base = Plan {
        mode: Mode::Produce,
        transport: Transport::GrpcStream,
        message_size: 100,
        batch_size: 1,
        count: None,
        duration: Some(args.suite_duration),
        topics: 1,
        partitions: 4,
        producers: 1,
        consumers: 1,
        consumer_batch: 500,
        consume_with: ConsumeWith::Subscribe,
        in_flight: 1,
        rate: None,
        durability: Some(DurabilityMode::Fsync),
        server: None,
        legacy_addr: None,
        http_addr: None,
        data_dir: None,
        keep_topics: false,
        security: crate::client::ConnectOptions::default(),
        secure: false,
        compression: crate::storage::batch::Compression::None,
        storage_format: 2,
        payload: super::payload::Kind::Filler,
        idempotent: false,
    };
    let mut out = Vec::new();
    for durability in [DurabilityMode::Fsync, DurabilityMode::Interval] {
        for message_size in [100, 1024] {
            for producers in [1, 4] {
                for batch_size in [1, 100] {
                    out.push(Plan {
                        durability: Some(durability),
                        message_size,
                        producers,
                        batch_size,
                        ..base.clone()
                    });
                }
            }
        }
        // The original's best figure had 64 frames in flight on one connection.
        out.push(Plan {
            durability: Some(durability),
            in_flight: 64,
            ..base.clone()
        });
    }
    for message_size in [100, 1024] {
        for consumers in [1, 4] {
            for consumer_batch in [1, 100] {
                out.push(Plan {
                    mode: Mode::Consume,
                    message_size,
                    consumers,
                    consumer_batch,
                    count: Some(CONSUME_RECORDS),
                    duration: None,
                    ..base.clone()
                });
            }
        }
    }
    out
}

/// Runs every row and prints the table (or JSON).
///
/// # Errors
/// A broker cannot be started.
pub async fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.server.is_some() {
        anyhow::bail!("--suite starts its own brokers (it sets their durability); drop --server");
    }
    let rows = rows(args);
    let mut outcomes = Vec::new();
    for (i, plan) in rows.iter().enumerate() {
        if !args.quiet {
            eprint!("[{}/{}] {} … ", i + 1, rows.len(), label(plan));
        }
        let outcome = super::run::run_one(plan, false).await?;
        if !args.quiet {
            let rate =
                rate_of(&outcome).map_or("FAILED".into(), |(r, _)| format!("{r:.0} records/s"));
            eprintln!("{rate}");
        }
        outcomes.push(outcome);
    }
    let text = if args.json {
        pretty_json(&serde_json::Value::Array(
            outcomes.iter().map(Outcome::to_json).collect(),
        ))
    } else {
        markdown(&outcomes)
    };
    print_stdout(&text)?;
    let code = if outcomes.iter().any(Outcome::verification_failed) {
        ExitCode::from(crate::cli::EXIT_DATA_PROBLEM)
    } else if outcomes.iter().all(Outcome::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    Ok(code)
}

fn label(p: &Plan) -> String {
    match p.mode {
        Mode::Consume => format!(
            "consume {} B, {} consumer(s), {} per message",
            p.message_size, p.consumers, p.consumer_batch
        ),
        _ => format!(
            "produce {} B, {} producer(s), batch {}, {} in flight, {}",
            p.message_size,
            p.producers,
            p.batch_size,
            p.in_flight,
            p.durability.map_or("?", Named::name)
        ),
    }
}

fn rate_of(o: &Outcome) -> Option<(f64, f64)> {
    match o.plan.mode {
        Mode::Consume => o.consume_rate(),
        // The suite has no group rows (`--mode group` and `--mode shared` report on their own).
        Mode::Produce | Mode::Both | Mode::Group | Mode::Shared => o.produce_rate(),
    }
}

fn markdown(outcomes: &[Outcome]) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut out = format!(
        "Obelisk bench suite: {cores} cores, fresh in-process broker per row, gRPC ProduceStream \
         (producers) and Subscribe (consumers), 1 topic × 4 partitions. Latency is the ack \
         latency of produce rows.\n\n\
         | mode | durability | size | clients | batch | in flight | records/s | MB/s | p50 | p99 | command |\n\
         |---|---|---|---|---|---|---:|---:|---:|---:|---|\n"
    );
    for o in outcomes {
        let p = &o.plan;
        let (clients, batch, durability) = match p.mode {
            Mode::Consume => (p.consumers, p.consumer_batch, "n/a (reads)"),
            _ => (
                p.producers,
                p.batch_size,
                p.durability.map_or("?", Named::name),
            ),
        };
        let (rate, mbs) = rate_of(o).map_or(("FAILED".into(), "-".into()), |(r, m)| {
            (format!("{r:.0}"), format!("{m:.2}"))
        });
        let (p50, p99) = match (&o.produce, p.mode) {
            (Some(s), Mode::Produce) if o.ok() => (
                human_us(s.latency.value_at_percentile(50.0)),
                human_us(s.latency.value_at_percentile(99.0)),
            ),
            _ => ("-".into(), "-".into()),
        };
        let size = if p.message_size == 1024 {
            "1 KiB".into()
        } else {
            format!("{} B", p.message_size)
        };
        let in_flight = match p.mode {
            Mode::Consume => "-".to_string(),
            _ => p.in_flight.to_string(),
        };
        out.push_str(&format!(
            "| {} | {durability} | {size} | {clients} | {batch} | {in_flight} | {rate} | {mbs} | {p50} | {p99} | `{}` |\n",
            p.mode.name(),
            p.command_line()
        ));
    }
    out
}
