//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
pub mod broker;
pub mod storage;
