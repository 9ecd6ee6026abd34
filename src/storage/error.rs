//! Storage errors: what can go wrong below the broker.

use std::io;
use std::path::PathBuf;

use super::record::DecodeError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk that do not decode, or decode to the wrong offset.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A read starting at offsets found damaged (when the segment was opened).
    #[error("offsets {} to {} are damaged: {reason}", offsets.start, offsets.end.saturating_sub(1))]
    Damaged {
        offsets: std::ops::Range<u64>,
        reason: String,
    },
    #[error("offset {offset} is out of range: the partition holds offsets {start}..{end}")]
    OffsetOutOfRange { offset: u64, start: u64, end: u64 },
    /// A write or fsync failed earlier; the partition refuses writes until restart.
    #[error("partition is read-only after a storage failure: {reason}")]
    ReadOnly { reason: String },
    /// The partition was closed (topic deleted or broker shutting down).
    #[error("partition is closed")]
    Closed,
    /// formatv2: an idempotent producer's append was refused (fenced, or out of sequence).
    #[error(transparent)]
    Sequence(#[from] super::producers::SequenceError),
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, position: u64, reason: &DecodeError) -> Self {
        Self::Corrupt {
            path: path.into(),
            position,
            reason: reason.to_string(),
        }
    }
}

/// Adds a context string to an I/O result.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StorageError> {
        self.map_err(|source| StorageError::Io {
            context: what(),
            source,
        })
    }
}
