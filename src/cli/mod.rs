//! The command line: `obelisk serve` and the client commands, one file each.
//!
//! Client commands speak gRPC to a broker found with `--server` / `OBELISK_SERVER`. Errors are
//! `anyhow` here (and only here): a failed command prints `error: …` on stderr and exits 1; a
//! command that ran but found bad data (`inspect` damage, a failed `bench` verification) exits 3
//! (2 is clap's code for a command line it cannot parse).

mod bench;
mod cluster;
mod cluster_membership; // replication (issue 17)
mod connect;
mod consume;
mod dlq;
mod groups;
mod import_legacy;
mod inspect;
mod position;
mod produce;
mod record_json;
mod security;
mod serve;
mod table;
mod time;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code of a command that ran to the end but found damaged or unverifiable data.
pub const EXIT_DATA_PROBLEM: u8 = 3;

/// Obelisk: a persistent, gRPC-first message broker.
#[derive(Debug, Parser)]
#[command(name = "obelisk", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Threads of the async runtime (issue 12). Default: tokio's, one per core (or
    /// TOKIO_WORKER_THREADS). See docs/performance.md for the measured effect on 2 cores.
    #[arg(long, global = true, env = "OBELISK_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (gRPC :50051, legacy TCP :8080, HTTP :8081 on loopback; data in ./data).
    Serve(Box<serve::ServeArgs>),
    /// Send records to a topic: one per stdin line, JSON lines, or one given with --value.
    Produce(produce::ProduceArgs),
    /// Read records from a topic and print them.
    Consume(consume::ConsumeArgs),
    /// List, create, delete and describe topics.
    Topics(topics::TopicsArgs),
    /// List and describe consumer groups, and move their offsets.
    Groups(groups::GroupsArgs),
    /// A shared group's dead letters: list them, or re-produce them to their origin.
    Dlq(dlq::DlqArgs),
    /// A cluster's nodes, leader and Raft state (replication, issue 17).
    Cluster(cluster::ClusterArgs),
    /// Check a data directory offline (no server): summaries, checksums, offsets and indexes.
    Inspect(inspect::InspectArgs),
    /// Import the original Go Obelisk's data directory (offline).
    ImportLegacy(import_legacy::ImportLegacyArgs),
    /// Measure produce and consume throughput and latency, verifying every record.
    Bench(Box<bench::BenchArgs>),
    /// List, add and remove ACL rules (needs admin on the cluster).
    Acl(security::AclArgs),
    /// Make bearer tokens for the broker's token file.
    Token(security::TokenArgs),
    /// Write a throwaway CA, server and client certificates (development and tests only).
    DevCerts(security::DevCertsArgs),
}

/// Runs a parsed command line; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Topics(args) => topics::run(args).await,
            Command::Groups(args) => groups::run(args).await,
            Command::Dlq(args) => dlq::run(args).await,
            Command::Cluster(args) => cluster::run(args).await,
            Command::Bench(args) => bench::run(*args).await,
            Command::ImportLegacy(args) => import_legacy::run(args).await,
            Command::Acl(args) => security::run_acl(args).await,
            Command::Token(args) => security::run_token(&args),
            Command::DevCerts(args) => security::run_dev_certs(&args),
            // Offline and synchronous; it only borrows the runtime's thread.
            Command::Inspect(args) => inspect::run(&args),
        }
    });
    // Streams and tasks still held by the runtime must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    finish(result)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// holds (many errors print their source themselves).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
