//! Opening the topics at start: each topic on its own, so one that cannot be opened stays offline
//! and reported while every other topic serves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::error::NameKind;
use super::names;
use crate::storage::topic::{CREATING_PREFIX, Recovered};
use crate::storage::{PartitionConfig, StorageError, Topic};

/// Open topics by name, and the topics that could not be opened with why.
pub(super) type OpenedTopics = (HashMap<String, Arc<Topic>>, HashMap<String, String>);

/// Opens (recovering) every topic under `topics_dir`.
///
/// # Errors
/// Only when the directory itself cannot be listed.
pub(super) fn open_topics(
    topics_dir: &Path,
    pconfig: &PartitionConfig,
) -> Result<OpenedTopics, StorageError> {
    let mut topics = HashMap::new();
    let mut unavailable = HashMap::new();
    let listing = |e| StorageError::io(format!("listing {}", topics_dir.display()), e);
    for entry in std::fs::read_dir(topics_dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(path = %entry.path().display(), "ignoring a directory whose name is not UTF-8");
            continue;
        };
        if name.starts_with(CREATING_PREFIX) {
            // A creation that never finished: the topic was never visible, nothing was stored.
            tracing::info!(path = %entry.path().display(), "removing an unfinished topic creation");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove an unfinished topic creation");
            }
            continue;
        }
        if names::validate(NameKind::Topic, &name).is_err() {
            tracing::warn!(name, "ignoring a directory that is not a valid topic name");
            continue;
        }
        match Topic::recover(&entry.path(), &name, pconfig) {
            Ok(Recovered::Opened(topic, repaired)) => {
                if let Some(what) = repaired {
                    tracing::warn!(topic = name, "topic repaired at start: {what}");
                }
                tracing::info!(
                    topic = name,
                    partitions = topic.config.partitions,
                    "topic recovered"
                );
                topics.insert(name, Arc::new(topic));
            }
            Ok(Recovered::Removed(why)) => {
                tracing::warn!(topic = name, "removed an incomplete topic at start: {why}");
            }
            Err(e) => {
                tracing::error!(topic = name, error = %e, "topic could not be opened; it stays offline, the other topics serve");
                unavailable.insert(name, e.to_string());
            }
        }
    }
    Ok((topics, unavailable))
}
