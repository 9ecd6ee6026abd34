//! The server's own status, shared by every listener: when it started, whether it is still
//! recovering, and per listener (gRPC, legacy TCP, HTTP) whether it is enabled, up, how many
//! connections it has open against its limit, and how many it refused. `/health`,
//! `/health/ready` and the health metrics read it ([`health`] evaluates it together with the
//! broker).
//!
//! Listeners start disabled: the server enables each one its configuration turns on, marks it up
//! once bound and serving, and down when it stops. A disabled listener is reported "disabled",
//! never unhealthy.

pub mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A client protocol, as named in metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Grpc,
    Legacy,
    Http,
}

impl Protocol {
    /// The `protocol` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Legacy => "legacy",
            Self::Http => "http",
        }
    }
}

/// What a listener is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerState {
    /// Turned off by configuration.
    Disabled,
    /// Enabled but not serving (not bound yet, or stopped).
    Down,
    Up,
}

/// One listener's flags and connection counts.
#[derive(Debug, Default)]
pub struct ListenerStatus {
    enabled: AtomicBool,
    up: AtomicBool,
    open_connections: AtomicU64,
    /// 0 until the listener states its limit.
    max_connections: AtomicU64,
    refused_connections: AtomicU64,
}

impl ListenerStatus {
    /// The configuration turns this listener on: until [`Self::mark_up`], readiness is false.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// The listener is bound and serving (also enables it).
    pub fn mark_up(&self) {
        self.enabled.store(true, Ordering::Release);
        self.up.store(true, Ordering::Release);
    }

    /// The listener stopped or failed.
    pub fn mark_down(&self) {
        self.up.store(false, Ordering::Release);
    }

    pub fn state(&self) -> ListenerState {
        if !self.enabled.load(Ordering::Acquire) {
            ListenerState::Disabled
        } else if self.up.load(Ordering::Acquire) {
            ListenerState::Up
        } else {
            ListenerState::Down
        }
    }

    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// The listener's connection limit (0: not stated).
    pub fn set_max_connections(&self, max: usize) {
        self.max_connections.store(max as u64, Ordering::Relaxed);
    }

    pub fn max_connections(&self) -> u64 {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Whether every connection slot is taken, so new connections are refused.
    pub fn at_connection_limit(&self) -> bool {
        let max = self.max_connections();
        max > 0 && self.open_connections() >= max
    }

    /// Connections refused because the limit was reached, since start.
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }
}

/// Status shared by all listeners of one server (`Arc<ServerStatus>`).
#[derive(Debug)]
pub struct ServerStatus {
    started_at: Instant,
    started_at_unix_ns: i64,
    pub grpc: ListenerStatus,
    pub legacy: ListenerStatus,
    pub http: ListenerStatus,
    /// Set while the data directory is being recovered; readiness is false meanwhile.
    recovering: AtomicBool,
}

impl Default for ServerStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerStatus {
    /// A status starting now, with every listener disabled and no recovery running.
    pub fn new() -> Self {
        Self {
            started_at: Instant::now(),
            started_at_unix_ns: crate::broker::now_ns(),
            grpc: ListenerStatus::default(),
            legacy: ListenerStatus::default(),
            http: ListenerStatus::default(),
            recovering: AtomicBool::new(false),
        }
    }

    /// The listener of `protocol`.
    pub fn listener(&self, protocol: Protocol) -> Option<&ListenerStatus> {
        match protocol {
            Protocol::Grpc => Some(&self.grpc),
            Protocol::Legacy => Some(&self.legacy),
            Protocol::Http => Some(&self.http),
        }
    }

    /// Counts a connection refused on `protocol` because its listener is at the limit.
    pub fn connection_refused(&self, protocol: Protocol) {
        if let Some(l) = self.listener(protocol) {
            l.refused_connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    pub fn started_at_unix_ns(&self) -> i64 {
        self.started_at_unix_ns
    }

    pub fn set_recovering(&self, recovering: Recovery) {
        self.recovering
            .store(recovering == Recovery::Running, Ordering::Release);
    }

    pub fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// Counts a connection accepted on `protocol` until the guard is dropped: in the listener's
    /// open count (for `/health`) and in `obelisk_connections_total` /
    /// `obelisk_active_connections`.
    pub fn connection_opened(self: &Arc<Self>, protocol: Protocol) -> ConnectionGuard {
        if let Some(l) = self.listener(protocol) {
            l.open_connections.fetch_add(1, Ordering::Relaxed);
        }
        crate::metrics::connection_opened(protocol.as_str());
        ConnectionGuard {
            status: Arc::clone(self),
            protocol,
        }
    }
}

/// Whether recovery of the data directory is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    Running,
    Done,
}

/// One open connection; dropping it counts the connection closed.
#[derive(Debug)]
pub struct ConnectionGuard {
    status: Arc<ServerStatus>,
    protocol: Protocol,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(l) = self.status.listener(self.protocol) {
            l.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
        crate::metrics::connection_closed(self.protocol.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_states_and_connection_counts() {
        let status = Arc::new(ServerStatus::new());
        assert_eq!(status.grpc.state(), ListenerState::Disabled);
        status.grpc.enable();
        assert_eq!(status.grpc.state(), ListenerState::Down);
        status.grpc.mark_up();
        assert_eq!(status.grpc.state(), ListenerState::Up);
        let a = status.connection_opened(Protocol::Grpc);
        let b = status.connection_opened(Protocol::Grpc);
        assert_eq!(status.grpc.open_connections(), 2);
        drop(a);
        assert_eq!(status.grpc.open_connections(), 1);
        drop(b);
        assert_eq!(status.grpc.open_connections(), 0);
        status.grpc.mark_down();
        assert_eq!(status.grpc.state(), ListenerState::Down);
        status.set_recovering(Recovery::Running);
        assert!(status.is_recovering());
        status.set_recovering(Recovery::Done);
        assert!(!status.is_recovering());
    }
}
