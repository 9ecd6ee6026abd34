//! What a partition reports about its write path: the hook through which the layers above count
//! batches, fsyncs and failures, without storage knowing who listens.

use std::time::Duration;

/// Events of a partition's writes. Called on the batcher's thread, once per batch or fsync (never
/// per record): implementations must be cheap and must not block.
pub trait StorageEvents: Send + Sync + std::fmt::Debug {
    /// A batch of `records` was written and made durable (per the durability mode) in `took`.
    fn batch_flushed(&self, records: u64, took: Duration);
    /// One fdatasync covering `records` records finished in `took`.
    fn fsync_done(&self, records: u64, took: Duration);
    /// The partition turned read-only after a failed write or fsync.
    fn storage_failed(&self);
}
