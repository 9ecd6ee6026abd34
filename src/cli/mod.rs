//! The command line: `obelisk serve` and the client commands.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Obelisk: a persistent, gRPC-first message broker.
#[derive(Debug, Parser)]
#[command(name = "obelisk", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (gRPC :50051, legacy TCP :8080, HTTP :8081 on loopback; data in ./data).
    Serve(Box<serve::ServeArgs>),
}

/// Runs a parsed command line; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("obelisk: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("obelisk: {e:#}");
            ExitCode::FAILURE
        }
    }
}
