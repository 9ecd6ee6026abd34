//! The snapshot of a shared group: `shared-groups/<group>.json`, written whole and atomically
//! (temporary file, fsync, rename, directory fsync) when the group is created and when its
//! state log is compacted; the calls in between append to the state log ([`super::log`]).
//! Lock deadlines are stored as Unix times, so a lock still valid after a restart stays valid
//! until its deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::config::SharedGroupConfig;
use super::log::{from_unix, to_unix};
use super::window::{CellView, State, Window};
use crate::clock::now_ns;
use crate::storage::StorageError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredGroup {
    pub config: SharedGroupConfig,
    /// topic → partition → window.
    #[serde(default)]
    pub topics: BTreeMap<String, BTreeMap<u32, StoredWindow>>,
    /// The last state log frame this snapshot includes (the log replays the frames after it).
    #[serde(default)]
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredWindow {
    pub next: u64,
    #[serde(default)]
    pub entries: Vec<StoredEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEntry {
    pub offset: u64,
    pub deliveries: u32,
    /// "available", "locked" or "dead_lettering".
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub member: String,
    /// Unix ns: available from / locked until.
    #[serde(default)]
    pub at_ns: i64,
    #[serde(default)]
    pub dlq_from: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl StoredWindow {
    pub fn from_window(w: &Window) -> Self {
        let (now, now_unix) = (Instant::now(), now_ns());
        let entries = w
            .cells()
            .map(|(offset, v)| {
                let (state, at_ns) = match v.state {
                    State::Available => ("available", to_unix(v.at, now, now_unix)),
                    State::Locked => ("locked", to_unix(v.at, now, now_unix)),
                    State::DeadLettering | State::Done => ("dead_lettering", 0),
                };
                StoredEntry {
                    offset,
                    deliveries: v.deliveries,
                    state: state.into(),
                    member: v.member.into(),
                    at_ns,
                    dlq_from: v.dlq_from,
                    reason: v.reason.into(),
                }
            })
            .collect();
        Self {
            next: w.next(),
            entries,
        }
    }

    pub fn into_window(self) -> Window {
        let (now, now_unix) = (Instant::now(), now_ns());
        let position = self
            .entries
            .iter()
            .map(|e| e.offset)
            .min()
            .unwrap_or(self.next)
            .min(self.next);
        let mut w = Window::new(position, now);
        for e in &self.entries {
            let state = match e.state.as_str() {
                "locked" => State::Locked,
                "dead_lettering" => State::DeadLettering,
                _ => State::Available,
            };
            let view = CellView {
                state,
                deliveries: e.deliveries,
                member: &e.member,
                at: from_unix(e.at_ns, now, now_unix),
                dlq_from: e.dlq_from,
                reason: &e.reason,
            };
            w.restore(e.offset, &view);
        }
        w.restore_bounds(position, self.next);
        w.take_dirty();
        w
    }
}

pub fn path(dir: &Path, group: &str) -> PathBuf {
    dir.join(format!("{group}.json"))
}

/// Groups read at start, and the names of those set aside with why.
pub type Loaded = crate::storage::json_dir::Loaded<StoredGroup>;

/// Every stored group under `dir`; a file that does not parse is set aside as
/// `<group>.json.damaged` (logged) and returned with why.
///
/// # Errors
/// I/O errors.
pub fn load_all(dir: &Path) -> Result<Loaded, StorageError> {
    crate::storage::json_dir::load(
        dir,
        "a shared group's state",
        "its calls fail until it is created again",
    )
}

/// Writes the group's file atomically.
///
/// # Errors
/// I/O errors.
pub fn save(dir: &Path, group: &str, g: &StoredGroup) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(g).expect("a shared group serializes");
    crate::storage::write_atomically(dir, &path(dir, group), &bytes)
}
