//! Obelisk: a persistent, gRPC-first message broker.
//!
//! - [`storage`]: the on-disk log, its recovery, batching and caching.
//! - [`broker`]: the Broker service every protocol translates into.
//! - [`legacy`]: the original Obelisk's binary TCP protocol, translated into Broker calls.
pub mod broker;
pub mod legacy;
pub mod storage;
