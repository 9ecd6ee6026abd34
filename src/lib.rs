//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
//! - [`grpc`]: the tonic service over the Broker; [`proto`]: the generated types.
//! - [`metrics`]: OpenTelemetry instruments exported for Prometheus.
//! - [`client`]: a Rust client (batching producer, consumer); [`cli`]: the `obelisk` binary's
//!   commands (serve, produce, consume, topics, groups, inspect, bench).
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod proto;
pub mod server;
pub mod storage;
pub mod telemetry;
