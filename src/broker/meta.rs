//! cluster metadata (issue 17): the writes to committed offsets, groups and ACLs that every node
//! of a cluster must agree on.
//!
//! On a single node each write is done here, as before. On a cluster node it becomes one
//! [`MetaWrite`] the replicator proposes; every node applies the committed ones in log order
//! ([`Broker::apply_meta`]) to its own files in the data directory (`groups/` for offsets,
//! `acls.json` for the default ACL file), so a copy of a node's data directory carries them.
//!
//! What is replicated and what stays on the leader:
//! - **replicated**: committed offsets (commit and reset on every protocol), group deletion
//!   (its offsets; the membership and shared-group state the node holds), ACL rules;
//! - **leader only**: groups with members (joins, heartbeats, generations, assignments) and
//!   shared groups (deliveries, settlements). Their calls on a follower fail with `NotLeader`
//!   naming the leader on every protocol (they are sessions, not single writes); after a
//!   failover members rejoin the new leader, which assigns afresh from the replicated offsets.

use serde::{Deserialize, Serialize};

use super::replication::Proposal;
use super::{Broker, BrokerError};
use crate::auth::AclRule;

/// A metadata write every cluster node applies in log order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaWrite {
    /// A group's next offsets in some partitions of a topic.
    Commit {
        group: String,
        topic: String,
        offsets: Vec<(u32, u64)>,
    },
    /// A group's offsets, membership and shared-group state.
    DeleteGroup {
        group: String,
    },
    AddAcl(AclRule),
    RemoveAcl(AclRule),
    /// A group's offsets in every partition of a topic set to a position. A follower forwards
    /// it as it is, since its own partitions may be behind the leader's; the leader resolves it
    /// against its partitions into a [`MetaWrite::Commit`] before it enters the log
    /// ([`Broker::resolve_meta`]), so every node applies the same offsets.
    Reset {
        group: String,
        topic: String,
        to: super::Position,
    },
}

impl Broker {
    /// The proposal of `write` on a cluster node; `None` on a single node (do it here).
    pub(crate) fn replicate_meta(&self, write: MetaWrite) -> Option<Proposal<bool>> {
        self.replicator().map(|r| r.meta(write))
    }

    /// Applies a committed metadata write on this node; returns whether it changed anything.
    /// Applying one again (after a restart) changes nothing more.
    ///
    /// # Errors
    /// `Unavailable` when a file cannot be written (the node cannot go on applying).
    pub(crate) async fn apply_meta(&self, write: MetaWrite) -> Result<bool, BrokerError> {
        match write {
            MetaWrite::Commit {
                group,
                topic,
                offsets,
            } => {
                // Deleted meanwhile (the same on every node).
                if !self.has_topic(&topic) {
                    return Ok(false);
                }
                self.inner
                    .offsets
                    .commit(&group, &topic, &offsets)
                    .await
                    .map_err(|e| BrokerError::from_storage(&topic, 0, e))?;
                Ok(true)
            }
            MetaWrite::DeleteGroup { group } => self.delete_group_here(&group).await,
            MetaWrite::Reset { group, topic, .. } => {
                // Resolved before it enters the log; one found there (from a build that did
                // not) is skipped the same way on every node.
                tracing::warn!(%group, %topic, "an unresolved group reset in the log is skipped");
                Ok(false)
            }
            MetaWrite::AddAcl(rule) => self.change_acls(move |s| s.acls().add(rule)).await,
            MetaWrite::RemoveAcl(rule) => self.change_acls(move |s| s.acls().remove(&rule)).await,
        }
    }

    /// The leader's check of a write a follower forwarded (the follower checked it against its
    /// own state, which may be older, and knows no members).
    ///
    /// # Errors
    /// What the write would have failed with on the leader.
    pub(crate) fn check_meta(&self, write: &MetaWrite) -> Result<(), BrokerError> {
        match write {
            MetaWrite::Commit {
                group,
                topic,
                offsets,
            } => self.check_commit_offsets(topic, group, offsets, None),
            MetaWrite::Reset { group, topic, to } => {
                let offsets = self.reset_offsets(topic, group, *to)?;
                self.check_commit_offsets(topic, group, &offsets, None)
            }
            MetaWrite::DeleteGroup { group } => self.check_group_deletable(group),
            MetaWrite::AddAcl(_) | MetaWrite::RemoveAcl(_) => Ok(()),
        }
    }

    /// The write as it enters the log, on the leader: a reset becomes the commit of the offsets
    /// it means in the leader's partitions; any other write is itself.
    ///
    /// # Errors
    /// What resolving the reset fails with (an unknown topic, damage met by a time search).
    pub(crate) fn resolve_meta(&self, write: MetaWrite) -> Result<MetaWrite, BrokerError> {
        match write {
            MetaWrite::Reset { group, topic, to } => {
                let offsets = self.reset_offsets(&topic, &group, to)?;
                Ok(MetaWrite::Commit {
                    group,
                    topic,
                    offsets,
                })
            }
            other => Ok(other),
        }
    }

    /// Changes the ACL file, when security is on here (a node without it has no rules to keep).
    async fn change_acls(
        &self,
        edit: impl FnOnce(&crate::auth::Security) -> Result<bool, crate::auth::StoreError>
        + Send
        + 'static,
    ) -> Result<bool, BrokerError> {
        let Some(security) = self.security().filter(|s| s.is_enabled()).cloned() else {
            return Ok(false);
        };
        match tokio::task::spawn_blocking(move || edit(&security)).await {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(e)) => Err(BrokerError::Unavailable(format!(
                "the ACL change could not be saved: {e}"
            ))),
            Err(e) => Err(BrokerError::Unavailable(format!(
                "the ACL change stopped unexpectedly: {e}"
            ))),
        }
    }
}

/// A node's replicated metadata as the writes that rebuild it (a Raft snapshot's part, so a
/// node caught up by snapshot has the offsets and ACL rules the purged log entries wrote).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MetaImage {
    /// Each group's committed offsets, one `Commit` per group and topic.
    pub commits: Vec<MetaWrite>,
    /// The ACL rules (empty on a node without security).
    pub acls: Vec<AclRule>,
}

impl Broker {
    /// This node's replicated metadata now (taken between applies).
    pub(crate) fn meta_image(&self) -> MetaImage {
        let offsets = &self.inner.offsets;
        let mut commits = Vec::new();
        for group in offsets.group_names() {
            // A group whose file was found damaged has nothing readable to carry.
            let Ok(Some(topics)) = offsets.group(&group) else {
                continue;
            };
            for (topic, parts) in topics {
                commits.push(MetaWrite::Commit {
                    group: group.clone(),
                    topic,
                    offsets: parts.into_iter().collect(),
                });
            }
        }
        let acls = self
            .security()
            .filter(|s| s.is_enabled())
            .map(|s| s.acls().snapshot().to_vec())
            .unwrap_or_default();
        MetaImage { commits, acls }
    }

    /// Makes this node's replicated metadata that of `image` (installing a snapshot, after its
    /// topics): offsets of groups the image does not hold are forgotten, the image's are set,
    /// and the ACL rules become the image's.
    ///
    /// # Errors
    /// `Unavailable` when a file cannot be written.
    pub(crate) async fn install_meta(&self, image: MetaImage) -> Result<(), BrokerError> {
        let keep: std::collections::BTreeSet<&str> = image
            .commits
            .iter()
            .filter_map(|w| match w {
                MetaWrite::Commit { group, .. } => Some(group.as_str()),
                _ => None,
            })
            .collect();
        for group in self.inner.offsets.group_names() {
            if !keep.contains(group.as_str()) {
                self.inner
                    .offsets
                    .delete_group(&group)
                    .await
                    .map_err(|e| BrokerError::Unavailable(format!("group {group}: {e}")))?;
            }
        }
        for write in image.commits {
            self.apply_meta(write).await?;
        }
        let wanted = image.acls;
        self.change_acls(move |s| {
            let mut changed = false;
            for rule in s.acls().snapshot().iter() {
                if !wanted.contains(rule) {
                    changed |= s.acls().remove(rule)?;
                }
            }
            for rule in wanted {
                changed |= s.acls().add(rule)?;
            }
            Ok(changed)
        })
        .await?;
        Ok(())
    }
}
