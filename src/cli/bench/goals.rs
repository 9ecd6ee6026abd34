//! `obelisk bench --goals`: issue 12's rows, each against the same run's figures, in one table.
//!
//! 1. request cost: gRPC unary Produce of one record against a legacy frame (`interval`);
//! 2. batched produce: 4 producers × 100 × 100 B, unary (`interval`, `fsync`) and ProduceStream
//!    with 8 batches in flight;
//! 3. reads: one Subscribe consumer at 100 B, 1 KiB and 16 KiB, its cost per record and per KiB;
//! 4. legacy pipelining in `fsync` mode: 4 connections × 100 frames of 1 KiB against gRPC unary
//!    4 × 100 × 1 KiB;
//! 5. small-request latency under `fsync`: a unary Produce's p50 against this disk's fdatasync.
//!
//! Every row runs against a fresh in-process broker (client and broker share the cores).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::report::{Outcome, human_us};
use super::{BenchArgs, ConsumeWith, Mode, Plan, Transport};
use crate::cli::table::{pretty_json, print_stdout};
use crate::config::DurabilityMode;

/// Records preloaded and read by a consume row of this many bytes per value.
fn consume_records(size: usize) -> u64 {
    if size > 4096 { 20_000 } else { 200_000 }
}

struct Row {
    goal: u8,
    name: &'static str,
    plan: Plan,
}

fn rows(args: &BenchArgs) -> Vec<Row> {
    let base = Plan {
        mode: Mode::Produce,
        transport: Transport::GrpcUnary,
        message_size: 100,
        batch_size: 1,
        count: None,
        duration: Some(args.suite_duration),
        topics: 1,
        partitions: 4,
        producers: 1,
        consumers: 1,
        consumer_batch: 100,
        consume_with: ConsumeWith::Subscribe,
        in_flight: 1,
        rate: None,
        durability: Some(DurabilityMode::Interval),
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
    let fsync = Some(DurabilityMode::Fsync);
    let legacy = Transport::Legacy;
    let stream = Transport::GrpcStream;
    let consume = |size: usize| Plan {
        mode: Mode::Consume,
        message_size: size,
        count: Some(consume_records(size)),
        duration: None,
        ..base.clone()
    };
    let row = |goal, name, plan| Row { goal, name, plan };
    vec![
        row(1, "grpc-1", base.clone()),
        row(
            1,
            "legacy-1",
            Plan {
                transport: legacy,
                ..base.clone()
            },
        ),
        row(
            1,
            "grpc-4",
            Plan {
                producers: 4,
                ..base.clone()
            },
        ),
        row(
            1,
            "legacy-4",
            Plan {
                transport: legacy,
                producers: 4,
                ..base.clone()
            },
        ),
        row(
            2,
            "unary-interval",
            Plan {
                producers: 4,
                batch_size: 100,
                ..base.clone()
            },
        ),
        row(
            2,
            "unary-fsync",
            Plan {
                producers: 4,
                batch_size: 100,
                durability: fsync,
                ..base.clone()
            },
        ),
        row(
            2,
            "stream-8",
            Plan {
                transport: stream,
                producers: 4,
                batch_size: 100,
                in_flight: 8,
                ..base.clone()
            },
        ),
        row(3, "read-100", consume(100)),
        row(3, "read-1k", consume(1024)),
        row(3, "read-16k", consume(16 * 1024)),
        row(
            4,
            "legacy-pipelined",
            Plan {
                transport: legacy,
                producers: 4,
                batch_size: 100,
                message_size: 1024,
                durability: fsync,
                ..base.clone()
            },
        ),
        row(
            4,
            "grpc-same-load",
            Plan {
                producers: 4,
                batch_size: 100,
                message_size: 1024,
                durability: fsync,
                ..base.clone()
            },
        ),
        row(
            5,
            "grpc-1-fsync",
            Plan {
                durability: fsync,
                ..base.clone()
            },
        ),
    ]
}

/// The median time of `n` fdatasyncs of a 4 KiB write at the end of a file in the directory the
/// benchmark's brokers use (`$TMPDIR`).
fn fdatasync_p50(n: usize) -> anyhow::Result<Duration> {
    let path = std::env::temp_dir().join(format!("obelisk-fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        file.write_all(&block)?;
        let started = Instant::now();
        file.sync_data()?;
        times.push(started.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    Ok(times[n / 2])
}

/// Runs the rows and prints the table (or JSON).
///
/// # Errors
/// A broker cannot be started.
pub async fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.server.is_some() {
        anyhow::bail!("--goals starts its own brokers (it sets their durability); drop --server");
    }
    let rows = rows(args);
    let mut outcomes = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if !args.quiet {
            eprint!(
                "[{}/{}] goal {} {} … ",
                i + 1,
                rows.len(),
                row.goal,
                row.name
            );
        }
        let outcome = super::run::run_one(&row.plan, false).await?;
        if !args.quiet {
            eprintln!(
                "{}",
                rate(&outcome).map_or("FAILED".into(), |(r, _)| format!("{r:.0} records/s"))
            );
        }
        outcomes.push(outcome);
    }
    let fsync = fdatasync_p50(200)?;
    let named = rows_by_name(&rows_names(&rows), &outcomes);
    let text = if args.json {
        let rows: Vec<_> = rows
            .iter()
            .zip(&outcomes)
            .map(|(r, o)| {
                serde_json::json!({ "goal": r.goal, "row": r.name, "outcome": o.to_json() })
            })
            .collect();
        pretty_json(&serde_json::json!({
            "rows": rows,
            "fdatasync_p50_us": fsync.as_micros() as u64,
            "verdicts": verdicts(&named, fsync),
        }))
    } else {
        markdown(&rows, &outcomes, fsync)
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

fn rows_names(rows: &[Row]) -> Vec<&'static str> {
    rows.iter().map(|r| r.name).collect()
}

/// (records/s, MB/s) of a row.
fn rate(o: &Outcome) -> Option<(f64, f64)> {
    match o.plan.mode {
        Mode::Consume => o.consume_rate(),
        _ => o.produce_rate(),
    }
}

fn p50_us(o: &Outcome) -> Option<u64> {
    let s = o.produce.as_ref().filter(|_| o.ok())?;
    Some(s.latency.value_at_percentile(50.0))
}

struct Named<'a> {
    names: Vec<&'static str>,
    outcomes: &'a [Outcome],
}

fn rows_by_name<'a>(names: &[&'static str], outcomes: &'a [Outcome]) -> Named<'a> {
    Named {
        names: names.to_vec(),
        outcomes,
    }
}

impl Named<'_> {
    fn get(&self, name: &str) -> Option<&Outcome> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.outcomes.get(i)
    }
    fn rate(&self, name: &str) -> Option<f64> {
        rate(self.get(name)?).map(|(r, _)| r)
    }
    fn mbs(&self, name: &str) -> Option<f64> {
        rate(self.get(name)?).map(|(_, m)| m)
    }
    fn p50(&self, name: &str) -> Option<u64> {
        p50_us(self.get(name)?)
    }
}

/// One line per goal: what was measured against what, the ratio, and the target.
fn verdicts(rows: &Named<'_>, fsync: Duration) -> Vec<serde_json::Value> {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let f = |x: Option<u64>| x.map(|v| v as f64);
    let ns_per_record = |name: &str| rows.rate(name).map(|r| 1e9 / r);
    let ns_per_kib = |name: &str, size: f64| ns_per_record(name).map(|ns| ns / (size / 1024.0));
    let v = |goal: u8, what: &str, value: Option<f64>, target: &str| serde_json::json!({ "goal": goal, "what": what, "value": value, "target": target });
    let fsync_us = fsync.as_secs_f64() * 1e6;
    vec![
        v(
            1,
            "gRPC p50 / legacy p50, 1 producer",
            ratio(f(rows.p50("grpc-1")), f(rows.p50("legacy-1"))),
            "<= 1.3",
        ),
        v(
            1,
            "gRPC records/s / legacy records/s, 1 producer",
            ratio(rows.rate("grpc-1"), rows.rate("legacy-1")),
            "Redis: 11,100 records/s",
        ),
        v(
            1,
            "gRPC records/s / legacy records/s, 4 producers",
            ratio(rows.rate("grpc-4"), rows.rate("legacy-4")),
            "Redis: 53,100 records/s",
        ),
        v(
            2,
            "unary 4 × 100 × 100 B, interval, records/s",
            rows.rate("unary-interval"),
            ">= 1,200,000",
        ),
        v(
            2,
            "unary 4 × 100 × 100 B, fsync, records/s",
            rows.rate("unary-fsync"),
            ">= 500,000",
        ),
        v(
            2,
            "ProduceStream 4 × 8 × 100 × 100 B, interval, records/s",
            rows.rate("stream-8"),
            ">= 1,200,000",
        ),
        v(3, "Subscribe 1 KiB, MB/s", rows.mbs("read-1k"), ">= 1,000"),
        v(
            3,
            "Subscribe ns per record: 100 B",
            ns_per_record("read-100"),
            "-",
        ),
        v(
            3,
            "Subscribe ns per record: 1 KiB",
            ns_per_record("read-1k"),
            "-",
        ),
        v(
            3,
            "Subscribe ns per record: 16 KiB",
            ns_per_record("read-16k"),
            "-",
        ),
        v(
            3,
            "Subscribe ns per KiB at 16 KiB",
            ns_per_kib("read-16k", 16384.0),
            "one copy",
        ),
        v(
            4,
            "legacy pipelined / gRPC, 4 × 100 × 1 KiB, fsync",
            ratio(rows.rate("legacy-pipelined"), rows.rate("grpc-same-load")),
            ">= 0.6",
        ),
        v(
            5,
            "unary 1 record fsync: p50 - fdatasync p50, µs",
            f(rows.p50("grpc-1-fsync")).map(|p| p - fsync_us),
            "<= 100",
        ),
    ]
}

fn markdown(rows: &[Row], outcomes: &[Outcome], fsync: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut out = format!(
        "Obelisk bench goals (issue 12): {cores} cores, fresh in-process broker per row, 1 topic × \
         4 partitions, one request in flight per producer unless stated; this disk's fdatasync \
         of a 4 KiB write: p50 {}.\n\n\
         | goal | row | records/s | MB/s | p50 | p99 | command |\n\
         |---|---|---:|---:|---:|---:|---|\n",
        human_us(fsync.as_micros() as u64)
    );
    for (row, o) in rows.iter().zip(outcomes) {
        let (r, m) = rate(o).map_or(("FAILED".into(), "-".into()), |(r, m)| {
            (format!("{r:.0}"), format!("{m:.1}"))
        });
        let (p50, p99) = match o.produce.as_ref().filter(|_| o.ok()) {
            Some(s) => (
                human_us(s.latency.value_at_percentile(50.0)),
                human_us(s.latency.value_at_percentile(99.0)),
            ),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {r} | {m} | {p50} | {p99} | `{}` |\n",
            row.goal,
            row.name,
            o.plan.command_line()
        ));
    }
    out.push_str("\n| goal | measured | value | target |\n|---|---|---:|---|\n");
    let named = rows_by_name(&rows_names(rows), outcomes);
    for v in verdicts(&named, fsync) {
        let value = v["value"].as_f64().map_or("-".into(), |x| {
            if x < 10.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.0}")
            }
        });
        out.push_str(&format!(
            "| {} | {} | {value} | {} |\n",
            v["goal"],
            v["what"].as_str().unwrap_or(""),
            v["target"].as_str().unwrap_or("")
        ));
    }
    out
}
