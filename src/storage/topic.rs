//! A topic on disk: `topics/<name>/topic.json` (its config) and one directory per partition.

use std::fs;
use std::path::Path;
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
    /// How the topic's batches are compressed on disk (formatv2; absent in older topic.json: none).
    #[serde(default)]
    pub compression: crate::storage::batch::Compression,
}

use super::layout::TOPIC_CONFIG_FILE as CONFIG_FILE;

/// Prefix of a topic being created: it is built under this name, then renamed into place, so a
/// topic directory either is complete or does not exist. `~` is not allowed in topic names, so
/// this can never be a topic; leftovers of a crash are removed at start.
pub const CREATING_PREFIX: &str = ".creating~";

/// What opening a topic directory at start found.
pub enum Recovered {
    /// The topic, and what had to be repaired to open it (empty when nothing).
    Opened(Topic, Option<String>),
    /// An interrupted creation that holds no record: removed.
    Removed(String),
}

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
    partitions: Vec<Partition>,
    round_robin: AtomicU32,
    read_start: AtomicU32,
    changes: Arc<watch::Sender<u64>>,
    /// Cancelled when the topic is closed (deleted or the broker stopping): waiting readers end.
    closed: tokio_util::sync::CancellationToken,
}

impl Topic {
    /// Creates a topic atomically: its config and partition directories are built in a
    /// temporary directory beside the topics, fsynced, renamed into place and the parent fsynced;
    /// then the topic is opened. A crash at any point leaves either no topic or a whole one, and an
    /// open that fails afterwards (no descriptors left, say) removes the new, empty topic again.
    ///
    /// # Errors
    /// I/O errors creating files; nothing of the topic is left behind then.
    pub fn create(
        dir: &Path,
        name: &str,
        config: TopicConfig,
        pconfig: &PartitionConfig,
    ) -> Result<Self, StorageError> {
        let parent = dir.parent().ok_or_else(|| {
            StorageError::io(
                "creating a topic",
                std::io::Error::other("no parent directory"),
            )
        })?;
        let tmp = parent.join(format!("{CREATING_PREFIX}{}", crate::clock::now_ns()));
        let built = build_topic_dir(&tmp, &config).and_then(|()| {
            fs::rename(&tmp, dir)
                .context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
            sync_dir(parent)
        });
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Self::open_with(dir, name, config, pconfig).inspect_err(|_| {
            // Nothing was written to the new topic yet: take it back, so a retry starts clean.
            if fs::remove_dir_all(dir).is_ok() {
                let _ = sync_dir(parent);
            }
        })
    }

    /// Opens a topic directory found at start, repairing what an interrupted creation or a
    /// damaged config left: a directory with no config and no record is removed; one whose
    /// config is missing or unreadable but which holds records gets a config rebuilt from its
    /// partition directories (no retention, so nothing is deleted), the unreadable one kept
    /// beside it as `topic.json.damaged`.
    ///
    /// # Errors
    /// I/O errors recovering partitions (the caller keeps the topic offline then).
    pub fn recover(
        dir: &Path,
        name: &str,
        pconfig: &PartitionConfig,
    ) -> Result<Recovered, StorageError> {
        let path = dir.join(CONFIG_FILE);
        let problem = match read_config(&path) {
            Ok(config) => {
                let topic = Self::open_with(dir, name, config, pconfig)?;
                return Ok(Recovered::Opened(topic, None));
            }
            Err(e) if matches!(&e, StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound) => {
                "topic.json is missing".to_string()
            }
            Err(StorageError::Io { context, source }) => {
                return Err(StorageError::Io { context, source });
            }
            Err(e) => e.to_string(),
        };
        let partitions = partition_dirs(dir)?;
        if !partitions
            .iter()
            .any(|p| holds_records(&dir.join(p.to_string())))
        {
            fs::remove_dir_all(dir).context(|| format!("removing {}", dir.display()))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            return Ok(Recovered::Removed(format!(
                "{problem} and it holds no record"
            )));
        }
        let count = partitions.iter().max().map_or(1, |m| m + 1);
        if path.exists() {
            let aside = dir.join(format!("{CONFIG_FILE}.damaged"));
            fs::rename(&path, &aside).context(|| format!("setting aside {}", path.display()))?;
        }
        let config = TopicConfig {
            partitions: count,
            retention_ms: 0,
            retention_bytes: 0,
            compression: crate::storage::batch::Compression::None,
        };
        write_config(dir, &config)?;
        let note = format!(
            "{problem}; rebuilt it from the data: {count} partitions, no retention (check and \
             adjust)"
        );
        Ok(Recovered::Opened(
            Self::open_with(dir, name, config, pconfig)?,
            Some(note),
        ))
    }

    /// Opens an existing topic directory, recovering each partition.
    ///
    /// # Errors
    /// A missing or unreadable config, or I/O errors recovering partitions.
    pub fn open(dir: &Path, name: &str, pconfig: &PartitionConfig) -> Result<Self, StorageError> {
        Self::open_with(dir, name, read_config(&dir.join(CONFIG_FILE))?, pconfig)
    }

    /// Opens the topic stored in `dir` with `config` (already read, or just written).
    fn open_with(
        dir: &Path,
        name: &str,
        config: TopicConfig,
        pconfig: &PartitionConfig,
    ) -> Result<Self, StorageError> {
        let changes = Arc::new(watch::Sender::new(0u64));
        let mut pconfig = pconfig.clone();
        pconfig.log.compression = config.compression;
        let pconfig = &pconfig;
        let partitions = (0..config.partitions)
            .map(|p| Partition::open(p, dir.join(p.to_string()), pconfig, Arc::clone(&changes)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: name.to_string(),
            config,
            partitions,
            round_robin: AtomicU32::new(0),
            read_start: AtomicU32::new(0),
            changes,
            closed: tokio_util::sync::CancellationToken::new(),
        })
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

fn read_config(path: &Path) -> Result<TopicConfig, StorageError> {
    let bytes = fs::read(path).context(|| format!("reading {}", path.display()))?;
    let config: TopicConfig =
        serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: e.to_string(),
        })?;
    if config.partitions == 0 || config.partitions > MAX_STORED_PARTITIONS {
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason: format!("{} partitions is impossible", config.partitions),
        });
    }
    Ok(config)
}

/// More partitions than any topic can be created with: a config claiming this is damaged.
const MAX_STORED_PARTITIONS: u32 = 1 << 16;

/// Writes `topic.json` durably (temporary file, fsync, rename, directory fsync).
fn write_config(dir: &Path, config: &TopicConfig) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(config)
        .map_err(|e| StorageError::io("encoding topic config", std::io::Error::other(e)))?;
    let tmp = dir.join("topic.json.tmp");
    fs::write(&tmp, json).context(|| format!("writing {}", tmp.display()))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(CONFIG_FILE)).context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)
}

/// Builds a new topic's directory: config and one empty directory per partition, all fsynced.
fn build_topic_dir(dir: &Path, config: &TopicConfig) -> Result<(), StorageError> {
    fs::create_dir(dir).context(|| format!("creating {}", dir.display()))?;
    for p in 0..config.partitions {
        let pdir = dir.join(p.to_string());
        fs::create_dir(&pdir).context(|| format!("creating {}", pdir.display()))?;
        sync_dir(&pdir)?;
    }
    write_config(dir, config)
}

/// The numbers of a topic directory's partition subdirectories.
fn partition_dirs(dir: &Path) -> Result<Vec<u32>, StorageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .filter(|n| !n.starts_with('0') || *n == "0")
            .and_then(|n| n.parse::<u32>().ok())
            && entry.path().is_dir()
            && n < MAX_STORED_PARTITIONS
        {
            out.push(n);
        }
    }
    Ok(out)
}

/// Whether a partition directory holds any byte of log.
fn holds_records(dir: &Path) -> bool {
    super::layout::segment_bases(dir).is_ok_and(|bases| {
        bases.iter().any(|&b| {
            fs::metadata(super::layout::segment_path(
                dir,
                b,
                super::layout::SegmentFile::Log,
            ))
            .is_ok_and(|m| m.len() > 0)
        })
    })
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
