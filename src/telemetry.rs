//! Logging: a `tracing` subscriber writing to stderr as text or JSON lines, filtered by an
//! `EnvFilter` (`RUST_LOG` overrides the configured filter). Text is coloured only when stderr is
//! a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>): a log file or a pipe gets
//! plain lines.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(TelemetryError::UnknownFormat(s.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    InvalidFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("unknown log format {0:?} (expected \"text\" or \"json\")")]
    UnknownFormat(String),
}

/// Installs the global subscriber. `filter` is an `EnvFilter` directive string such as
/// `info,obelisk=debug`; a non-empty `RUST_LOG` replaces it. Calling it again (or after another
/// subscriber was installed, as in tests) changes nothing and succeeds.
///
/// # Errors
/// `InvalidFilter` when the filter in use does not parse.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => env,
        _ => filter.to_string(),
    };
    let env_filter =
        EnvFilter::try_new(&directives).map_err(|source| TelemetryError::InvalidFilter {
            filter: directives.clone(),
            source,
        })?;
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        tracing::debug!(error = %e, "a tracing subscriber was already installed");
    }
    Ok(())
}

/// Whether log lines get terminal colour codes: only on a terminal, and never when `NO_COLOR`
/// holds a non-empty value.
fn colour(writer_is_terminal: bool, no_color: Option<OsString>) -> bool {
    writer_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsString::new())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }

    #[test]
    fn idempotent_and_validates() {
        assert!(init_tracing(LogFormat::Text, "info").is_ok());
        assert!(init_tracing(LogFormat::Json, "info,obelisk=debug").is_ok());
        if std::env::var("RUST_LOG").is_err() {
            assert!(matches!(
                init_tracing(LogFormat::Text, "info,=[bad"),
                Err(TelemetryError::InvalidFilter { .. })
            ));
        }
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
