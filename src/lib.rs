//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
//! - [`grpc`]: the tonic service over the Broker; [`proto`]: the generated types; [`client`]: a
//!   Rust client.
//! - [`http`]: the axum HTTP surface: health, stats, REST produce/consume, `/metrics`.
//! - [`metrics`]: OpenTelemetry instruments exported as Prometheus text.
//! - [`status`]: the server's status shared by every listener, and health evaluation.
//! - [`server`]: binds every listener and runs them over one Broker; [`config`]: its settings.
//! - [`cli`]: the `obelisk` command line; [`telemetry`]: logging setup.
//! - [`legacy`]: the original Obelisk's binary TCP protocol, translated into Broker calls.
//! - [`rfc3339`]: timestamps and durations as the original's JSON wrote them.
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod grpc;
pub mod http;
pub mod legacy;
pub mod metrics;
pub mod proto;
pub mod rfc3339;
pub mod server;
pub mod status;
pub mod storage;
pub mod sync;
pub mod telemetry;
