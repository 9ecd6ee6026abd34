//! Counters the legacy listener keeps about its connections, shared with health and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::status::{ConnectionGuard, Protocol, ServerStatus};

/// Connection counters; share one instance (in an `Arc`) between `serve` and whoever reports.
/// Connections also count in the server's status (health) and in the metrics.
#[derive(Debug, Default)]
pub struct LegacyStats {
    server: Option<Arc<ServerStatus>>,
    open: AtomicU64,
    total: AtomicU64,
    rejected: AtomicU64,
    connection_errors: AtomicU64,
    nacks: AtomicU64,
}

impl LegacyStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters that also report to the server's status (open connections in `/health`).
    pub fn for_server(server: Arc<ServerStatus>) -> Self {
        Self {
            server: Some(server),
            ..Self::default()
        }
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections served since start (not counting rejected ones).
    pub fn total_connections(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `max_connections` were open.
    pub fn rejected_connections(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Connections that ended with an I/O error or a fatal frame.
    pub fn connection_errors(&self) -> u64 {
        self.connection_errors.load(Ordering::Relaxed)
    }

    /// Frames answered with a `NACK:*` reply.
    pub fn nacks(&self) -> u64 {
        self.nacks.load(Ordering::Relaxed)
    }

    /// The server status these counters also report to.
    pub(crate) fn server(&self) -> Option<&Arc<ServerStatus>> {
        self.server.as_ref()
    }

    pub(crate) fn note_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = &self.server {
            s.connection_refused(Protocol::Legacy);
        }
        crate::metrics::connection_error("legacy", "too_many_connections");
    }

    pub(crate) fn note_connection_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
        crate::metrics::connection_error("legacy", "connection");
    }

    pub(crate) fn note_nack(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn open_guard(self: &Arc<Self>) -> OpenGuard {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        let server = match &self.server {
            Some(s) => Some(s.connection_opened(Protocol::Legacy)),
            None => {
                crate::metrics::connection_opened("legacy");
                None
            }
        };
        OpenGuard {
            stats: Arc::clone(self),
            server,
        }
    }
}

/// Decrements the open-connection counts when the connection's task ends, however it ends.
pub(crate) struct OpenGuard {
    stats: Arc<LegacyStats>,
    /// Counts the connection in the server status and metrics while alive.
    server: Option<ConnectionGuard>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if self.server.is_none() {
            crate::metrics::connection_closed("legacy");
        }
    }
}
