//! A topic on disk: `topics/<name>/topic.json` (its config) and one directory per partition.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::error::{IoContext, StorageError};
use super::partition::{Partition, PartitionConfig};
use super::segment::sync_dir;

/// A topic's persisted settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Delete sealed segments whose newest record is older than this many ms (0: never).
    #[serde(default)]
    pub retention_ms: u64,
    /// Delete the oldest sealed segments while a partition is larger than this (0: no limit).
    #[serde(default)]
    pub retention_bytes: u64,
}

const CONFIG_FILE: &str = "topic.json";

/// FNV-1a, 32 bits: the original Obelisk's key hash, so keyed records land in the same partition.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 2_166_136_261;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(16_777_619);
    }
    hash
}

/// An open topic.
pub struct Topic {
    pub name: String,
    pub config: TopicConfig,
    dir: PathBuf,
    partitions: Vec<Partition>,
    round_robin: AtomicU32,
    read_start: AtomicU32,
    changes: Arc<watch::Sender<u64>>,
    /// Cancelled when the topic is closed (deleted or the broker stopping): waiting readers end.
    closed: tokio_util::sync::CancellationToken,
}

impl Topic {
    /// Creates the topic's directory and config, then opens it.
    ///
    /// # Errors
    /// I/O errors creating files.
    pub fn create(
        dir: &Path,
        name: &str,
        config: TopicConfig,
        pconfig: &PartitionConfig,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| StorageError::io("encoding topic config", std::io::Error::other(e)))?;
        let tmp = dir.join("topic.json.tmp");
        fs::write(&tmp, json).context(|| format!("writing {}", tmp.display()))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, dir.join(CONFIG_FILE))
            .context(|| format!("renaming {}", tmp.display()))?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Self::open(dir, name, pconfig)
    }

    /// Opens an existing topic directory, recovering each partition.
    ///
    /// # Errors
    /// A missing or unreadable config, or I/O errors recovering partitions.
    pub fn open(dir: &Path, name: &str, pconfig: &PartitionConfig) -> Result<Self, StorageError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = fs::read(&path).context(|| format!("reading {}", path.display()))?;
        let config: TopicConfig =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                path: path.clone(),
                position: 0,
                reason: e.to_string(),
            })?;
        if config.partitions == 0 {
            return Err(StorageError::Corrupt {
                path,
                position: 0,
                reason: "a topic needs at least one partition".into(),
            });
        }
        let changes = Arc::new(watch::Sender::new(0u64));
        let partitions = (0..config.partitions)
            .map(|p| Partition::open(p, dir.join(p.to_string()), pconfig, Arc::clone(&changes)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: name.to_string(),
            config,
            dir: dir.to_path_buf(),
            partitions,
            round_robin: AtomicU32::new(0),
            read_start: AtomicU32::new(0),
            changes,
            closed: tokio_util::sync::CancellationToken::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    pub fn partition(&self, id: u32) -> Option<&Partition> {
        self.partitions.get(id as usize)
    }

    /// The partition for a record without an explicit one: by key hash, or round-robin for an
    /// empty key.
    pub fn partition_for_key(&self, key: &[u8]) -> u32 {
        let n = self.config.partitions;
        if n <= 1 {
            0
        } else if key.is_empty() {
            self.round_robin.fetch_add(1, Ordering::Relaxed) % n
        } else {
            fnv1a_32(key) % n
        }
    }

    /// The partition a multi-partition read should start with; rotates on every call.
    pub fn next_read_start(&self) -> usize {
        (self.read_start.fetch_add(1, Ordering::Relaxed) % self.config.partitions) as usize
    }

    /// A receiver that changes whenever any partition acknowledges new records.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Receivers of [`Topic::watch_changes`] still alive.
    pub fn watchers(&self) -> usize {
        self.changes.receiver_count()
    }

    /// Fires when the topic is closed.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Wakes waiting readers, then stops every partition's batcher after it has written what is
    /// queued.
    pub async fn close(&self) {
        self.closed.cancel();
        for p in &self.partitions {
            p.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_original() {
        assert_eq!(fnv1a_32(b"user-123"), 0x8c93_cc93);
        assert_eq!(fnv1a_32(b"user-123") % 4, 3);
        assert_eq!(fnv1a_32(b""), 2_166_136_261);
        // Values from the original's vectors (partition_if_4_partitions).
        for (key, p) in [
            ("k-empty-value", 2),
            ("ключ-🔑", 2),
            ("big", 1),
            ("bin", 2),
            ("neg", 1),
        ] {
            assert_eq!(fnv1a_32(key.as_bytes()) % 4, p, "{key}");
        }
    }
}
