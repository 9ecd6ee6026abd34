//! The HTTP surface through the router (`oneshot`, no socket): every endpoint's status codes and
//! JSON shapes, errors included, the metrics page read by a real exposition parser, and a
//! storage failure seen through health, readiness and produce.
//!
//! Tests run in parallel in one process and share the global metrics, so each uses its own
//! topic names and checks only series labelled with them. `tests/http_socket.rs` checks exact
//! metric deltas over a real socket, alone in its process.

#[path = "../http_support/mod.rs"]
mod http_support;

mod console;
mod errors;
mod groups;
mod health;
mod metrics;
mod rest;
mod shared; // shared groups (issue 14)
