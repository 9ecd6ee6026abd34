//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
//! - [`http`]: the axum HTTP surface: health, stats, REST produce/consume, `/metrics`.
//! - [`metrics`]: OpenTelemetry instruments exported as Prometheus text.
//! - [`status`]: the server's status shared by every listener, and health evaluation.
//! - [`telemetry`]: logging setup.
//! - [`rfc3339`]: timestamps and durations as the original's JSON wrote them.
pub mod broker;
pub mod http;
pub mod metrics;
pub mod rfc3339;
pub mod status;
pub mod storage;
pub mod telemetry;
