//! Storage: records and their framing, segments with memory-mapped indexes, partition logs with
//! recovery and retention, the group-commit batcher, ring buffers and consumer offsets.
//!
//! Nothing here knows about a network protocol. The on-disk format is described in
//! `docs/storage.md`.

pub mod batch;
pub mod error;
pub mod events;
pub mod files;
pub mod frame;
pub mod index;
pub(crate) mod json_dir;
pub mod layout;
pub mod log;
mod mmap;
pub mod record;
pub mod segment;
pub mod verify;

pub use error::StorageError;
pub use events::StorageEvents;
pub use files::LogFiles;
pub use log::LogConfig;
pub use record::Record;
pub mod batcher;
pub mod partition;
pub mod producers;
pub mod ring;

pub use batcher::{BatchConfig, Durability, FsyncWriter};
pub use partition::{AppendError, Partition, PartitionConfig};
pub mod offsets;
pub mod topic;

pub use offsets::OffsetStore;
pub(crate) use offsets::write_atomically;
pub use topic::{Topic, TopicConfig};

#[cfg(test)]
mod tests;
