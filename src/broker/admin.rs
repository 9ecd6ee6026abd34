//! Topic and group administration, and what health checks need to know.

use std::sync::Arc;

use super::Broker;
use super::error::{BrokerError, NameKind};
use super::names;
use super::observe::snapshot;
use super::types::{
    FailedPartition, GroupPartition, PartitionDescription, TopicConfig, TopicDescription,
};
use crate::storage::{StorageError, Topic};
use crate::sync::{read, write};

/// Descriptors kept free beyond partitions and the read cache: the data directory lock, group
/// files and topic files being written, directories being synced.
const DESCRIPTOR_SLACK: u64 = 32;

/// Makes trash names unique within one nanosecond.
static TRASH_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

impl Broker {
    /// Creates a topic. Zero partitions or retention take the server's defaults.
    ///
    /// # Errors
    /// `InvalidName`, `InvalidArgument` (too many partitions), `TopicExists`, `Unavailable`.
    pub async fn create_topic(
        &self,
        name: &str,
        mut config: TopicConfig,
    ) -> Result<TopicDescription, BrokerError> {
        names::validate(NameKind::Topic, name)?;
        let defaults = &self.inner.config;
        if config.partitions == 0 {
            config.partitions = defaults.default_partitions;
        }
        if config.partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidArgument(format!(
                "{} partitions requested; at most {MAX_PARTITIONS} are allowed",
                config.partitions
            )));
        }
        if config.retention_ms == 0 {
            config.retention_ms = defaults.default_retention_ms;
        }
        if config.retention_bytes == 0 {
            config.retention_bytes = defaults.default_retention_bytes;
        }
        // replication (issue 17): in a cluster the topic is a command every node applies.
        if let Some(r) = self.replicator() {
            r.create_topic(name.to_string(), config).await?;
            return self.describe_topic(name);
        }
        self.create_topic_here(name, config).await
    }

    /// Creates a topic on this node only (a single node, or a cluster applying the command).
    pub(super) async fn create_topic_here(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<TopicDescription, BrokerError> {
        let defaults = &self.inner.config;
        let _admin = self.inner.admin.lock().await;
        if self.inner.shutdown.is_cancelled() {
            return Err(BrokerError::Unavailable(
                "the broker is shutting down".into(),
            ));
        }
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if let Some(e) = self.offline(name) {
            return Err(e);
        }
        self.check_descriptors(name, config.partitions)?;
        let dir = defaults.topics_dir().join(name);
        let pconfig = defaults.partition_config(&self.inner.files, &self.inner.observer);
        let owned = name.to_string();
        let topic = task_shim::run(move || Topic::create(&dir, &owned, config, &pconfig))
            .await
            .map_err(|e| {
                tracing::error!(topic = name, error = %e, "creating a topic failed");
                BrokerError::Unavailable(format!("could not create topic {name:?}: storage failed"))
            })?;
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "topic created"
        );
        let topic = Arc::new(topic);
        write(&self.inner.topics).insert(name.to_string(), Arc::clone(&topic));
        Ok(describe(&topic))
    }

    /// Deletes a topic, its data and the groups' offsets for it. All or nothing: the topic's
    /// directory is moved out of `topics/` in one rename (under a short name that always fits the
    /// filesystem); if that fails, the topic is opened again and stays as it was. A topic left
    /// offline at start can be deleted too.
    ///
    /// # Errors
    /// `InvalidName`, `TopicNotFound`, `Unavailable` when files cannot be moved.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        names::validate(NameKind::Topic, name)?;
        // replication (issue 17): in a cluster the deletion is a command every node applies.
        if let Some(r) = self.replicator() {
            if self.topic(name).is_none() && self.offline(name).is_none() {
                return Err(BrokerError::TopicNotFound(name.to_string()));
            }
            return r.delete_topic(name.to_string()).await;
        }
        self.delete_topic_here(name).await
    }

    /// Deletes a topic on this node only (a single node, or a cluster applying the command).
    pub(super) async fn delete_topic_here(&self, name: &str) -> Result<(), BrokerError> {
        let _admin = self.inner.admin.lock().await;
        let dir = self.inner.config.topics_dir().join(name);
        let topic = write(&self.inner.topics).remove(name);
        let offline = topic.is_none() && read(&self.inner.unavailable).contains_key(name);
        if topic.is_none() && !offline {
            return Err(BrokerError::TopicNotFound(name.to_string()));
        }
        if let Some(t) = &topic {
            t.close().await;
        }
        let trash = self.inner.config.data_dir.join("trash");
        let target = trash.join(format!(
            "{}-{}",
            super::now_ns(),
            TRASH_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let moved = std::fs::create_dir_all(&trash)
            .and_then(|()| std::fs::rename(&dir, &target))
            .and_then(|()| std::fs::File::open(self.inner.config.topics_dir())?.sync_all());
        if let Err(e) = moved {
            tracing::error!(topic = name, error = %e, "deleting a topic's files failed; the topic stays");
            if target.exists() {
                // The rename happened but could not be made durable: put it back.
                let _ = std::fs::rename(&target, &dir);
            }
            if topic.is_some() {
                self.reopen(name, &dir).await;
            }
            return Err(BrokerError::Unavailable(format!(
                "topic {name:?} could not be deleted: its files could not be moved ({e}); it is unchanged"
            )));
        }
        write(&self.inner.unavailable).remove(name);
        // The rename made the deletion durable in effect (the trash is emptied at start too);
        // removing a large topic's files can take a while, so it happens off the async threads.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(&target) {
                tracing::warn!(path = %target.display(), error = %e, "emptying the trash failed");
            }
        });
        self.inner
            .offsets
            .forget_topic(name)
            .await
            .map_err(|e| BrokerError::from_storage(name, 0, e))?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Opens a topic again after a deletion that could not finish; if even that fails, the topic
    /// is reported offline rather than forgotten (so a produce cannot recreate it over its data).
    async fn reopen(&self, name: &str, dir: &std::path::Path) {
        let pconfig = self
            .inner
            .config
            .partition_config(&self.inner.files, &self.inner.observer);
        let (owned, dir) = (name.to_string(), dir.to_path_buf());
        match task_shim::run(move || Topic::open(&dir, &owned, &pconfig)).await {
            Ok(t) => {
                write(&self.inner.topics).insert(name.to_string(), Arc::new(t));
            }
            Err(e) => {
                tracing::error!(topic = name, error = %e, "reopening a topic after a failed deletion failed; it is offline");
                write(&self.inner.unavailable).insert(name.to_string(), e.to_string());
            }
        }
    }

    /// Refuses a topic whose partitions would not fit the descriptors storage has: each partition
    /// keeps its active segment's log open, and the read cache keeps room for sealed logs. Running
    /// out later would turn writes into storage failures; refusing the creation fails only it.
    fn check_descriptors(&self, name: &str, partitions: u32) -> Result<(), BrokerError> {
        let config = &self.inner.config;
        let Some(budget) = config.storage_descriptors else {
            return Ok(());
        };
        let open: u64 = self
            .topics()
            .iter()
            .map(|t| u64::from(t.config.partitions))
            .sum();
        let kept = config.read_cache_capacity() as u64 + DESCRIPTOR_SLACK;
        if open + u64::from(partitions) + kept > budget {
            return Err(BrokerError::Overloaded(format!(
                "creating topic {name:?} needs {partitions} more open files, but storage has \
                 {budget} (fd_reserve) and {open} partitions plus {kept} for reads use them; raise \
                 the open-file limit (ulimit -n) or fd_reserve, or delete unused topics"
            )));
        }
        Ok(())
    }

    /// The error for a topic that could not be opened, if `name` is one.
    pub(super) fn offline(&self, name: &str) -> Option<BrokerError> {
        read(&self.inner.unavailable).get(name).map(|why| {
            BrokerError::Unavailable(format!(
                "topic {name:?} is offline: it could not be opened ({why}); the other topics \
                 serve. Fix its files and restart, or delete the topic"
            ))
        })
    }

    /// Groups whose committed offsets were found damaged at start and not rewritten since.
    pub fn damaged_groups(&self) -> Vec<(String, String)> {
        self.inner.offsets.damaged_groups()
    }

    /// Topics that could not be opened at start, with why.
    pub fn offline_topics(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = read(&self.inner.unavailable)
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect();
        out.sort();
        out
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicDescription> {
        let mut all: Vec<_> = self.topics().iter().map(|t| describe(t)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// # Errors
    /// `InvalidName`, `TopicNotFound`.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        Ok(describe(&*self.existing_topic(name)?))
    }

    /// Names of groups that have committed offsets or members.
    pub fn list_groups(&self) -> Vec<String> {
        let mut names = self.inner.offsets.group_names();
        names.extend(self.member_group_names());
        names.extend(self.shared_group_names()); // shared groups (issue 14)
        names.sort();
        names.dedup();
        names
    }

    /// A group's committed offsets and lag, per topic partition.
    ///
    /// # Errors
    /// `InvalidName`, `GroupNotFound`.
    pub fn describe_group(&self, group: &str) -> Result<Vec<GroupPartition>, BrokerError> {
        names::validate(NameKind::Group, group)?;
        let offsets = self
            .inner
            .offsets
            .group(group)
            .map_err(|e| BrokerError::group_damaged(group, &e))?;
        let offsets = match offsets {
            Some(o) => o,
            // A group with members (or created) but no commits yet.
            None if self.group_membership(group).is_some() => Default::default(),
            None => return Err(BrokerError::GroupNotFound(group.to_string())),
        };
        let mut out = Vec::new();
        for (topic, parts) in offsets {
            let Some(t) = self.topic(&topic) else {
                continue;
            };
            for (partition, committed) in parts {
                let Some(p) = t.partition(partition) else {
                    continue;
                };
                let log_end = p.core().acked_end();
                out.push(GroupPartition {
                    topic: topic.clone(),
                    partition,
                    committed,
                    log_end,
                    lag: log_end.saturating_sub(committed),
                });
            }
        }
        Ok(out)
    }

    /// How many subscriptions and waiting long polls watch `topic` (0 for an unknown topic).
    pub fn topic_watchers(&self, topic: &str) -> usize {
        self.topic(topic).map_or(0, |t| t.watchers())
    }

    /// Partitions that refuse writes after a storage failure.
    pub fn failed_partitions(&self) -> Vec<FailedPartition> {
        let mut out = Vec::new();
        for t in self.topics() {
            for p in t.partitions() {
                if let Some(reason) = p.core().failure() {
                    out.push(FailedPartition {
                        topic: t.name.clone(),
                        partition: p.id(),
                        reason,
                    });
                }
            }
        }
        out
    }
}

fn describe(topic: &Topic) -> TopicDescription {
    TopicDescription {
        name: topic.name.clone(),
        config: topic.config,
        partitions: topic
            .partitions()
            .iter()
            .map(|p| {
                let s = snapshot(topic, p);
                PartitionDescription {
                    partition: s.partition,
                    log_start: s.log_start,
                    log_end: s.log_end,
                    size_bytes: s.size_bytes,
                    segments: s.segments,
                    read_only: s.failure.is_some(),
                }
            })
            .collect(),
    }
}

mod task_shim {
    use super::StorageError;
    /// Runs `f` on the blocking pool.
    pub async fn run<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StorageError::io("blocking task", std::io::Error::other(e)))?
    }
}
