//! The `obelisk` binary: parse the command line, load configuration, run.

use clap::Parser;

use obelisk::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    run(Cli::parse())
}
