//! Snapshots of the state machine (issue 17, operations), so the Raft log can be purged behind
//! them and a node that is behind the purge point (or new) is caught up by `InstallSnapshot`.
//!
//! A snapshot is taken **while no entry is applied** (openraft calls `get_snapshot_builder` in
//! its state-machine task, between applies): what was applied (log id, membership, partition
//! ends) and an image of the broker at that point: every topic with its settings, and each
//! partition's records up to its applied end. It is stored in `raft/snapshot` (fsynced before
//! openraft may purge the log behind it) and `raft/applied` is saved first, so a restart never
//! needs an entry the purge removed.
//!
//! Installing one (a node that is behind) replaces the node's topics by the image's, each
//! partition written again from offset 0 through the single-node write path, then records what
//! it covers as applied.
//!
//! The image also carries the replicated metadata (`broker::meta::MetaImage`: every group's
//! committed offsets and the ACL rules), installed after the topics. Not in the image yet:
//! idempotent producers' per-partition state; a partition whose start was deleted by
//! retention cannot be installed (its offsets would shift), which is refused.

use std::io::{self, Cursor};
use std::path::Path;

use openraft::{Snapshot, SnapshotMeta, StorageIOError};
use serde::{Deserialize, Serialize};

use super::state_machine::StateMachine;
use super::types::{
    LogId, Membership, NodeId, StorageError, TypeConfig, WireRecord, decode, encode,
};
use crate::storage::TopicConfig;

/// Records appended per step when installing.
const INSTALL_STEP: usize = 1_000;

/// The broker's image in a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Image {
    /// Each partition's applied end, by (topic, partition).
    pub ends: Ends,
    pub topics: Vec<TopicImage>,
    /// Committed offsets and ACL rules (the replicated metadata).
    pub meta: crate::broker::meta::MetaImage,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub config: TopicConfig,
    /// Per partition: its first offset and its records from there.
    pub partitions: Vec<(u64, Vec<WireRecord>)>,
}

type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// Each partition's applied end, by (topic, partition).
pub type Ends = Vec<((String, u32), u64)>;

/// What the state machine has applied: last log id, membership, partition ends.
pub type Applied = (Option<LogId>, Membership, Ends);

/// What `build_snapshot` hands openraft: taken in `get_snapshot_builder`.
pub struct Builder {
    pub(super) taken: Result<Snapshot<TypeConfig>, StorageError>,
}

impl openraft::RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        std::mem::replace(
            &mut self.taken,
            Err(snapshot_error(None, "the snapshot was handed over already")),
        )
    }
}

fn snapshot_error(meta: Option<&Meta>, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(meta.map(Meta::signature), &io::Error::other(e.to_string()))
        .into()
}

/// Writes the current snapshot (`raft/snapshot`), fsynced, through a rename.
fn store(dir: &Path, meta: &Meta, data: &[u8]) -> io::Result<()> {
    let bytes = encode(&(meta, data)).map_err(io::Error::other)?;
    let tmp = dir.join("snapshot.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::File::open(&tmp)?.sync_data()?;
    std::fs::rename(&tmp, dir.join("snapshot"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The stored snapshot, if any.
///
/// # Errors
/// It exists but cannot be read or decoded.
pub fn load(dir: &Path) -> io::Result<Option<Snapshot<TypeConfig>>> {
    let bytes = match std::fs::read(dir.join("snapshot")) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (meta, data): (Meta, Vec<u8>) =
        decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }))
}

impl StateMachine {
    /// Takes a snapshot of what is applied now (called between applies).
    pub(super) fn take(&self, applied: Applied) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (last_applied, membership, ends) = applied;
        let end_of = |t: &str, p: u32| {
            ends.iter()
                .find(|((tt, pp), _)| tt == t && *pp == p)
                .map_or(0, |(_, e)| *e)
        };
        let broker = self.broker();
        let mut image = Image {
            ends: ends.clone(),
            topics: Vec::new(),
            meta: broker.meta_image(),
        };
        for (name, config) in broker.topic_configs() {
            let mut partitions = Vec::new();
            for p in 0..config.partitions {
                let (start, records) = broker
                    .partition_records(&name, p, end_of(&name, p))
                    .map_err(|e| snapshot_error(None, e))?;
                partitions.push((start, records.into_iter().map(WireRecord::from).collect()));
            }
            image.topics.push(TopicImage {
                name,
                config,
                partitions,
            });
        }
        let data = encode(&image).map_err(|e| snapshot_error(None, e))?;
        let meta = Meta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id: format!(
                "{}-{}",
                last_applied.map_or(0, |l| l.index),
                crate::clock::now_ns()
            ),
        };
        // Before openraft purges the log behind it: a restart resumes at or after this point.
        self.save().map_err(|e| snapshot_error(Some(&meta), e))?;
        store(self.dir(), &meta, &data).map_err(|e| snapshot_error(Some(&meta), e))?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "took a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Replaces this node's topics by the snapshot's image; returns the partition ends it
    /// covers.
    pub(super) async fn install(&self, meta: &Meta, data: &[u8]) -> Result<Ends, StorageError> {
        let fail = |e: &dyn std::fmt::Display| snapshot_error(Some(meta), e);
        let image: Image = decode(data).map_err(|e| fail(&e))?;
        let broker = self.broker();
        tracing::info!(snapshot = %meta.snapshot_id, topics = image.topics.len(), "installing a snapshot");
        for (name, _) in broker.topic_configs() {
            broker
                .apply_delete_topic(&name)
                .await
                .map_err(|e| fail(&e))?;
        }
        for t in image.topics {
            broker
                .apply_create_topic(&t.name, t.config)
                .await
                .map_err(|e| fail(&e))?;
            for (p, (start, records)) in t.partitions.into_iter().enumerate() {
                if start > 0 {
                    return Err(fail(&format!(
                        "{}/{p} starts at offset {start} (retention): a snapshot of it cannot \
                         be installed yet",
                        t.name
                    )));
                }
                let mut records = records.into_iter().map(Into::into).peekable();
                while records.peek().is_some() {
                    let step: Vec<_> = records.by_ref().take(INSTALL_STEP).collect();
                    let rx = broker
                        .apply_append(&t.name, p as u32, step, None)
                        .await
                        .map_err(|e| fail(&e))?;
                    rx.await.map_err(|e| fail(&e))?.map_err(|e| fail(&e))?;
                }
            }
        }
        broker
            .install_meta(image.meta)
            .await
            .map_err(|e| fail(&e))?;
        store(self.dir(), meta, data).map_err(|e| fail(&e))?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot");
        Ok(image.ends)
    }
}
