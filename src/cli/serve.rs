//! `obelisk serve`: flags and `OBELISK_*` variables over the TOML file over the defaults. The
//! settings themselves are declared once, in [`Config`]; this file only finds out which of them
//! the command line or the environment gave, so that the file can fill in the rest.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys as the long flags, with '_' for '-').
    #[arg(long, env = "OBELISK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read before `settings`: the derive moves values out of the matches as it reads them.
    #[command(flatten)]
    explicit: ExplicitSettings,
    #[command(flatten)]
    pub settings: Config,
}

/// The ids of the arguments whose value came from the command line or the environment rather
/// than from a declared default (clap's derive keeps only the values, not where they came from).
#[derive(Debug, Clone, Default)]
struct ExplicitSettings(Vec<String>);

impl FromArgMatches for ExplicitSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self(
            matches
                .ids()
                .filter(|id| {
                    matches!(
                        matches.value_source(id.as_str()),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
                })
                .map(|id| id.as_str().to_string())
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ExplicitSettings {
    fn augment_args(cmd: Command) -> Command {
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        cmd
    }
}

impl ServeArgs {
    /// Defaults < file < environment and flags.
    ///
    /// # Errors
    /// The config file cannot be read or parsed.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let explicit = self.explicit.0.iter().map(String::as_str);
        Ok(Config::layered(
            self.config.as_deref(),
            &self.settings,
            explicit,
        )?)
    }
}

/// Runs the server until SIGINT or SIGTERM.
///
/// # Errors
/// Invalid configuration, a port in use, or an unreadable data directory.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let validated = config.validate()?;
    crate::telemetry::init_tracing(config.log_format, &config.log_level)?;
    tracing::info!(
        data_dir = %validated.broker.data_dir.display(),
        durability = %config.durability,
        grpc = %validated.grpc_addr,
        legacy_tcp = ?validated.tcp_addr,
        http = ?validated.http_addr,
        "starting obelisk"
    );
    let server = crate::server::start(validated)
        .await
        .context("the server did not start")?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    server.wait().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::config::DurabilityMode;

    fn serve(args: &[&str]) -> crate::config::Config {
        let cli = Cli::try_parse_from(["obelisk", "serve"].iter().chain(args)).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {cli:?}");
        };
        args.into_config().unwrap()
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obelisk.toml");
        std::fs::write(&path, "durability = \"interval\"\nlinger_ms = 7\n").unwrap();
        let path = path.to_str().unwrap();
        let c = serve(&["--config", path, "--linger-ms", "3"]);
        assert_eq!(c.linger_ms, 3);
        assert_eq!(c.durability, DurabilityMode::Interval);
        let c = serve(&[
            "--config",
            path,
            "--durability",
            "fsync",
            "--tcp-addr",
            "off",
        ]);
        assert_eq!((c.linger_ms, c.durability), (7, DurabilityMode::Fsync));
        assert_eq!(c.tcp_addr, "off");
        let c = serve(&["--auto-create-topics", "false"]);
        assert!(!c.auto_create_topics);
        assert_eq!(c.linger_ms, 0);
    }
}
