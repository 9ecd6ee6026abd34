//! `obelisk import-legacy <original data dir>`: imports the original Go Obelisk's files into a
//! data directory (offline: the broker must not be running on it, and the data directory lock
//! makes sure of that).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::broker::{Broker, BrokerConfig};

#[derive(Debug, Args)]
pub struct ImportLegacyArgs {
    /// The original's data directory (its default is `data/topics`): `<topic>/partition-N.log` and
    /// `.idx`; consumer offsets are read from `<dir>/../consumers/*.json`.
    pub source: PathBuf,
    /// Obelisk's data directory to import into [default: ./data].
    #[arg(long, env = "OBELISK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// Imports, prints what was imported, and exits 0; damaged input is refused with the file and
/// byte position, and nothing of it is left behind.
///
/// # Errors
/// The data directory cannot be opened (or is in use), or the input is damaged.
pub async fn run(args: ImportLegacyArgs) -> anyhow::Result<ExitCode> {
    let config = BrokerConfig {
        data_dir: args.data_dir.clone(),
        ..BrokerConfig::default()
    };
    let runtime = tokio::runtime::Handle::current();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, &runtime))
        .await
        .context("opening the data directory stopped unexpectedly")?
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let result = crate::legacy::import(&args.source, &broker).await;
    broker.shutdown().await;
    let report = result.with_context(|| format!("importing {}", args.source.display()))?;
    for t in &report.topics {
        let total: u64 = t.records.iter().sum();
        println!(
            "topic {}: {} records in {} partitions ({})",
            t.name,
            total,
            t.partitions,
            t.records
                .iter()
                .enumerate()
                .map(|(p, n)| format!("{p}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for g in &report.groups {
        let offsets: Vec<String> = g
            .offsets
            .iter()
            .map(|o| format!("{}/{} -> {}", o.topic, o.partition, o.next_offset))
            .collect();
        println!("group {}: {}", g.name, offsets.join(", "));
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.topics.is_empty() {
        eprintln!("warning: nothing to import in {}", args.source.display());
    }
    Ok(ExitCode::SUCCESS)
}
