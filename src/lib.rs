//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
//! - [`grpc`]: the tonic service over the Broker; [`proto`]: the generated types.
//! - [`metrics`]: OpenTelemetry instruments exported for Prometheus.
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
