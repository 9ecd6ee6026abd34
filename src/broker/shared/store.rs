//! The durable form of a shared group: `shared-groups/<group>.json`, rewritten whole and
//! atomically (temporary file, fsync, rename, directory fsync) once per hand-out or settle
//! call, so a batch is one write. Lock deadlines are stored as Unix times, so a lock still
//! valid after a restart stays valid until its deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::config::SharedGroupConfig;
use super::window::{Entry, Slot, Window};
use crate::clock::now_ns;
use crate::storage::StorageError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredGroup {
    pub config: SharedGroupConfig,
    /// topic → partition → window.
    #[serde(default)]
    pub topics: BTreeMap<String, BTreeMap<u32, StoredWindow>>,
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

fn to_unix(at: Instant, now: Instant, now_unix: i64) -> i64 {
    if at >= now {
        now_unix.saturating_add(i64::try_from((at - now).as_nanos()).unwrap_or(i64::MAX))
    } else {
        now_unix.saturating_sub(i64::try_from((now - at).as_nanos()).unwrap_or(i64::MAX))
    }
}

fn from_unix(at_ns: i64, now: Instant, now_unix: i64) -> Instant {
    let ahead = at_ns.saturating_sub(now_unix);
    now + Duration::from_nanos(u64::try_from(ahead).unwrap_or(0))
}

impl StoredWindow {
    pub fn from_window(w: &Window) -> Self {
        let (now, now_unix) = (Instant::now(), now_ns());
        let entries = w
            .entries
            .iter()
            .map(|(&offset, e)| {
                let (state, member, at_ns, dlq_from) = match &e.slot {
                    Slot::Available { at } => ("available", "", to_unix(*at, now, now_unix), 0),
                    Slot::Locked { member, until } => {
                        ("locked", &**member, to_unix(*until, now, now_unix), 0)
                    }
                    Slot::DeadLettering { dlq_from } => ("dead_lettering", "", 0, *dlq_from),
                };
                StoredEntry {
                    offset,
                    deliveries: e.deliveries,
                    state: state.into(),
                    member: member.into(),
                    at_ns,
                    dlq_from,
                    reason: e.reason.clone(),
                }
            })
            .collect();
        Self {
            next: w.next,
            entries,
        }
    }

    pub fn into_window(self) -> Window {
        let (now, now_unix) = (Instant::now(), now_ns());
        let mut w = Window::new(self.next);
        for e in self.entries {
            let slot = match e.state.as_str() {
                "locked" => Slot::Locked {
                    member: e.member.into(),
                    until: from_unix(e.at_ns, now, now_unix),
                },
                "dead_lettering" => Slot::DeadLettering {
                    dlq_from: e.dlq_from,
                },
                _ => Slot::Available {
                    at: from_unix(e.at_ns, now, now_unix),
                },
            };
            w.entries.insert(
                e.offset,
                Entry {
                    deliveries: e.deliveries,
                    slot,
                    reason: e.reason,
                },
            );
        }
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
