//! Consumer group offsets: per group, the next offset to read for each topic partition.
//!
//! Each group is one file, `groups/<group>.json`, rewritten whole on every commit (written to a
//! temporary file, fsynced, renamed over the old one, directory fsynced), so a commit is
//! acknowledged only once it is on disk and a crash leaves either the old or the new version.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{IoContext, StorageError};
use super::segment::sync_dir;
use crate::sync::lock;

/// topic → partition → next offset.
pub type GroupOffsets = BTreeMap<String, BTreeMap<u32, u64>>;

struct Group {
    offsets: Mutex<GroupOffsets>,
    /// Serialises file writes of one group, so the file never goes back to an older state.
    write: tokio::sync::Mutex<()>,
}

/// All groups' committed offsets.
pub struct OffsetStore {
    dir: PathBuf,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Groups whose file did not parse at start, with why. The file is set aside as
    /// `<group>.json.damaged`; reads of the group's offsets fail until a commit or reset writes a
    /// new file, so nobody silently starts over from the beginning.
    damaged: Mutex<HashMap<String, String>>,
    /// Whether `damaged` holds any group: reads check this, not the lock, in the common case.
    any_damaged: AtomicBool,
}

impl OffsetStore {
    /// Loads every group file under `dir`. A file that does not parse is set aside (and its
    /// group reported damaged) rather than stopping the broker.
    ///
    /// # Errors
    /// I/O errors listing or reading the directory.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let (loaded, damaged) = super::json_dir::load::<GroupOffsets>(
            dir,
            "a group's committed offsets",
            "the group must be reset",
        )?;
        let damaged: HashMap<String, String> = damaged.into_iter().collect();
        let groups: HashMap<String, Arc<Group>> = loaded
            .into_iter()
            .map(|(name, offsets)| {
                let group = Group {
                    offsets: Mutex::new(offsets),
                    write: tokio::sync::Mutex::new(()),
                };
                (name, Arc::new(group))
            })
            .collect();
        if !damaged.is_empty() {
            sync_dir(dir)?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            groups: Mutex::new(groups),
            any_damaged: AtomicBool::new(!damaged.is_empty()),
            damaged: Mutex::new(damaged),
        })
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Group>>> {
        lock(&self.groups)
    }

    /// The group's committed offsets in one topic (empty when it has none).
    ///
    /// # Errors
    /// `Corrupt` for a group whose file was found damaged at start.
    pub fn topic_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, StorageError> {
        self.check_damaged(group)?;
        let Some(g) = self.groups().get(group).cloned() else {
            return Ok(BTreeMap::new());
        };
        let offsets = lock(&g.offsets);
        Ok(offsets.get(topic).cloned().unwrap_or_default())
    }

    /// All offsets of a group, or `None` for a group that never committed.
    ///
    /// # Errors
    /// `Corrupt` for a group whose file was found damaged at start.
    pub fn group(&self, group: &str) -> Result<Option<GroupOffsets>, StorageError> {
        self.check_damaged(group)?;
        let Some(g) = self.groups().get(group).cloned() else {
            return Ok(None);
        };
        let offsets = lock(&g.offsets);
        Ok(Some(offsets.clone()))
    }

    /// Groups whose committed offsets were found damaged at start (and not written since).
    pub fn damaged_groups(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = lock(&self.damaged)
            .iter()
            .map(|(g, why)| (g.clone(), why.clone()))
            .collect();
        out.sort();
        out
    }

    fn check_damaged(&self, group: &str) -> Result<(), StorageError> {
        if !self.any_damaged.load(Ordering::Acquire) {
            return Ok(());
        }
        match lock(&self.damaged).get(group) {
            Some(why) => Err(StorageError::Corrupt {
                path: self.dir.join(format!("{group}.json.damaged")),
                position: 0,
                reason: why.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups().keys().cloned().collect();
        names.extend(lock(&self.damaged).keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Sets offsets for `topic` and returns once they are on disk.
    ///
    /// # Errors
    /// I/O errors writing the group file (the commit then did not happen).
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(u32, u64)],
    ) -> Result<(), StorageError> {
        self.update(group, |all| {
            let t = all.entry(topic.to_string()).or_default();
            for &(p, o) in offsets {
                t.insert(p, o);
            }
        })
        .await
    }

    /// Removes a topic from every group (when the topic is deleted).
    ///
    /// # Errors
    /// I/O errors writing group files.
    pub async fn forget_topic(&self, topic: &str) -> Result<(), StorageError> {
        let names: Vec<String> = self
            .groups()
            .iter()
            .filter(|(_, g)| lock(&g.offsets).contains_key(topic))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.update(&name, |all| {
                all.remove(topic);
            })
            .await?;
        }
        Ok(())
    }

    /// Drops, at open, the offsets of topics `exists` says are gone: what a crash between a topic
    /// deletion and its offsets' removal leaves, which a new topic of the same name would
    /// otherwise inherit. Runs before anything else uses the store (no file lock is taken).
    /// Returns the (group, topic) pairs dropped.
    ///
    /// # Errors
    /// I/O errors rewriting a group file (that group keeps its offsets).
    pub fn prune_topics(
        &self,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let groups: Vec<(String, Arc<Group>)> = self
            .groups()
            .iter()
            .map(|(n, g)| (n.clone(), Arc::clone(g)))
            .collect();
        let mut dropped = Vec::new();
        for (name, g) in groups {
            let mut next = lock(&g.offsets).clone();
            let gone: Vec<String> = next.keys().filter(|t| !exists(t)).cloned().collect();
            if gone.is_empty() {
                continue;
            }
            for t in &gone {
                next.remove(t);
            }
            let json = serde_json::to_vec(&next).map_err(|e| {
                StorageError::io("encoding group offsets", std::io::Error::other(e))
            })?;
            write_atomically(&self.dir, &self.dir.join(format!("{name}.json")), &json)?;
            *lock(&g.offsets) = next;
            dropped.extend(gone.into_iter().map(|t| (name.clone(), t)));
        }
        Ok(dropped)
    }

    /// Forgets a group's committed offsets (its file and any damaged copy); returns whether it
    /// had any.
    ///
    /// # Errors
    /// I/O errors removing the file (the group then keeps its offsets).
    pub async fn delete_group(&self, group: &str) -> Result<bool, StorageError> {
        let g = self.groups().get(group).cloned();
        let _writing = match &g {
            Some(g) => Some(g.write.lock().await),
            None => None,
        };
        let (file, damaged) = (
            self.dir.join(format!("{group}.json")),
            self.dir.join(format!("{group}.json.damaged")),
        );
        let dir = self.dir.clone();
        let existed = tokio::task::spawn_blocking(move || -> Result<bool, StorageError> {
            let mut existed = false;
            for path in [&file, &damaged] {
                match fs::remove_file(path) {
                    Ok(()) => existed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StorageError::io(format!("removing {}", path.display()), e));
                    }
                }
            }
            if existed {
                sync_dir(&dir)?;
            }
            Ok(existed)
        })
        .await
        .map_err(|e| StorageError::io("group offsets writer", std::io::Error::other(e)))??;
        self.groups().remove(group);
        let mut damaged = lock(&self.damaged);
        damaged.remove(group);
        self.any_damaged
            .store(!damaged.is_empty(), Ordering::Release);
        Ok(existed)
    }

    async fn update(
        &self,
        group: &str,
        change: impl FnOnce(&mut GroupOffsets),
    ) -> Result<(), StorageError> {
        let g = Arc::clone(self.groups().entry(group.to_string()).or_insert_with(|| {
            Arc::new(Group {
                offsets: Mutex::new(GroupOffsets::new()),
                write: tokio::sync::Mutex::new(()),
            })
        }));
        let _writing = g.write.lock().await;
        let mut next = lock(&g.offsets).clone();
        change(&mut next);
        let json = serde_json::to_vec(&next)
            .map_err(|e| StorageError::io("encoding group offsets", std::io::Error::other(e)))?;
        let path = self.dir.join(format!("{group}.json"));
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &json))
            .await
            .map_err(|e| StorageError::io("group offsets writer", std::io::Error::other(e)))??;
        *lock(&g.offsets) = next;
        if self.any_damaged.load(Ordering::Acquire) {
            let mut damaged = lock(&self.damaged);
            if damaged.remove(group).is_some() {
                self.any_damaged
                    .store(!damaged.is_empty(), Ordering::Release);
                tracing::info!(group, "a damaged group has committed offsets again");
            }
        }
        Ok(())
    }
}

/// Writes `path` whole: a temporary file, fsynced, renamed over it, the directory fsynced (the
/// group membership store writes its files the same way).
pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store
            .commit("g1", "orders", &[(0, 5), (1, 7)])
            .await
            .unwrap();
        store.commit("g1", "orders", &[(0, 6)]).await.unwrap();
        store.commit("g2", "other", &[(3, 1)]).await.unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        let orders = |s: &OffsetStore| s.topic_offsets("g1", "orders").unwrap();
        assert_eq!(orders(&store).get(&0).copied(), Some(6));
        assert_eq!(orders(&store).get(&1).copied(), Some(7));
        assert_eq!(orders(&store).get(&2).copied(), None);
        assert_eq!(store.group_names(), vec!["g1", "g2"]);
        store.forget_topic("orders").await.unwrap();
        assert_eq!(orders(&store).get(&0).copied(), None);
    }

    #[tokio::test]
    async fn a_damaged_group_file_is_set_aside_and_reported_until_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store.commit("good", "t", &[(0, 3)]).await.unwrap();
        store.commit("bad", "t", &[(0, 9)]).await.unwrap();
        drop(store);
        fs::write(dir.path().join("bad.json"), b"{\"t\":{\"0\":9").unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.topic_offsets("good", "t").unwrap().get(&0), Some(&3));
        assert!(matches!(
            store.topic_offsets("bad", "t"),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(store.group("bad").is_err());
        assert_eq!(store.damaged_groups().len(), 1);
        assert_eq!(store.group_names(), vec!["bad", "good"]);
        assert!(dir.path().join("bad.json.damaged").exists());
        store.commit("bad", "t", &[(0, 1)]).await.unwrap();
        assert_eq!(store.topic_offsets("bad", "t").unwrap().get(&0), Some(&1));
        assert!(store.damaged_groups().is_empty());
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.damaged_groups().is_empty(), "the new file is good");
    }
}
