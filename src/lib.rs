//! Obelisk: a persistent, gRPC-first message broker.
//!
//! # Layers
//! Each layer uses only the ones below it; the core names no transport, no metrics and no
//! server.
//!
//! ```text
//!  cli ─► server ─┬─► grpc ──┐
//!                 ├─► legacy ┼─► broker ─► storage
//!                 └─► http ──┘     ▲
//!                   metrics, status┘  (read the broker's events and snapshots)
//! ```
//!
//! **The core** (transport-free):
//! - [`broker`]: the Broker service every protocol translates into: produce, poll, fetch,
//!   subscribe, commit, reset, topic and group admin, and the group coordinator (groups with
//!   members: assignment, fencing, durable membership; [`broker::groups`]); its request and
//!   response types and its one error enum. It shows its state through [`broker::BrokerEvents`] (a hook it calls) and
//!   [`broker::PartitionSnapshot`] (values it returns), and its long waits end on
//!   [`broker::Broker::drain`].
//!   Shared groups (per-record settling, redelivery, dead letters; issue 14) are
//!   [`broker::shared`].
//! - `storage` (private to the crate): segments, indexes, records and their CRC, recovery,
//!   retention, the group-commit batcher, ring buffers, consumer offsets. Reached only through
//!   [`broker`].
//! - [`auth`]: principals, bearer tokens and ACLs; the Broker checks them on every call made
//!   through [`broker::Caller`] (issue 15).
//! - `clock`, `sync`: Unix-nanosecond time and lock helpers, below everything.
//!
//! **The adapters** (each translates into Broker calls and back):
//! - [`grpc`]: the tonic service; [`proto`]: the generated types.
//! - [`legacy`]: the original Obelisk's binary TCP protocol (codec, listener, client, import).
//! - [`http`]: the axum surface: health, stats, REST produce/consume, `/metrics`.
//!   It also serves the web console at `/ui` (files of `ui/` embedded by [`http::ui`]).
//! - [`metrics`]: OpenTelemetry instruments as Prometheus text, fed by the broker's events and
//!   snapshots; [`status`]: the server's listener status and health evaluation.
//!
//! **On top**:
//! - [`server`]: binds every listener and runs them over one Broker, and shuts down in order;
//!   [`config`]: its settings (defaults < file < environment < flags).
//! - [`client`]: a Rust client of the gRPC API.
//! - `cli`: the `obelisk` command line (the binary's entry point).
//!
//! # Using the crate
//! An embedding program needs [`config::Config`] and [`server::start`] (or [`broker::Broker`]
//! alone, with [`broker::BrokerConfig`], to use the broker in-process); a client program needs
//! [`client`].
pub mod auth;
pub mod broker;
#[doc(hidden)]
pub mod cli;
pub mod client;
pub(crate) mod clock;
pub mod cluster; // replication (issue 17)
pub mod config;
pub mod grpc;
pub mod http;
pub mod legacy;
pub mod metrics;
pub mod proto;
pub(crate) mod rfc3339;
pub mod server;
pub mod status;
pub(crate) mod storage;
pub(crate) mod sync;
pub(crate) mod telemetry;

/// formatv2: the on-disk frame decoder and log scanner, for the fuzz target
/// (`fuzz/fuzz_targets/frame_decode.rs`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::storage::batch::{MAX_DECOMPRESSED, decode_header};
    pub use crate::storage::frame::{Frame, decode as decode_frame};
    pub use crate::storage::verify::{Role, scan_log};
}
