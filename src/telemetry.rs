//! Logging: a `tracing` subscriber writing to stderr as text or JSON lines, filtered by an
//! `EnvFilter` (`RUST_LOG` overrides the configured filter).

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
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

#[cfg(test)]
mod tests {
    use super::*;

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
