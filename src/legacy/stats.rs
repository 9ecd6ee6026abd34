//! Counters the legacy listener keeps about its connections, shared with health and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Connection counters; share one instance (in an `Arc`) between `serve` and whoever reports.
#[derive(Debug, Default)]
pub struct LegacyStats {
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

    pub(crate) fn note_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_connection_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_nack(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn open_guard(self: &std::sync::Arc<Self>) -> OpenGuard {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(std::sync::Arc::clone(self))
    }
}

/// Decrements the open-connection count when the connection's task ends, however it ends.
pub(crate) struct OpenGuard(std::sync::Arc<LegacyStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
