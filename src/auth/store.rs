//! The durable ACL list: a JSON file rewritten whole on every change (written to a temporary file,
//! fsynced, renamed over the old one, and the directory fsynced), so a crash leaves the old list
//! or the new one, never a mix. Reads take a snapshot (an `Arc` of the list), so a check never
//! waits for a write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::acl::AclRule;

#[derive(Debug, Default, Serialize, Deserialize)]
struct AclFile {
    acls: Vec<AclRule>,
}

/// Why the ACL file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} the ACL file {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ACL file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The ACL rules in force, kept in one file.
pub struct AclStore {
    path: Option<PathBuf>,
    rules: RwLock<Arc<Vec<AclRule>>>,
    /// Serialises writers (read-modify-write of the file).
    write: std::sync::Mutex<()>,
}

impl AclStore {
    /// The rules kept in `path` (none if it does not exist yet; it is created on the first
    /// change).
    ///
    /// # Errors
    /// The file exists but cannot be read, is not valid JSON, or holds an invalid rule.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let rules = match std::fs::read(path) {
            Ok(bytes) => {
                let file: AclFile =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                for r in &file.acls {
                    r.validate().map_err(|message| StoreError::Invalid {
                        path: path.to_path_buf(),
                        message,
                    })?;
                }
                file.acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    what: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            rules: RwLock::new(Arc::new(rules)),
            write: std::sync::Mutex::new(()),
        })
    }

    /// Rules kept in memory only (tests, embedding programs).
    pub fn in_memory(rules: Vec<AclRule>) -> Self {
        Self {
            path: None,
            rules: RwLock::new(Arc::new(rules)),
            write: std::sync::Mutex::new(()),
        }
    }

    /// The rules now.
    pub fn snapshot(&self) -> Arc<Vec<AclRule>> {
        Arc::clone(&self.rules.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds `rule` (a rule already present is not added twice). Returns whether it was new.
    ///
    /// # Errors
    /// The file cannot be written; the rules in force are then unchanged.
    pub fn add(&self, rule: AclRule) -> Result<bool, StoreError> {
        self.change(|rules| {
            if rules.contains(&rule) {
                false
            } else {
                rules.push(rule);
                true
            }
        })
    }

    /// Removes every rule equal to `rule`. Returns whether one was there.
    ///
    /// # Errors
    /// The file cannot be written; the rules in force are then unchanged.
    pub fn remove(&self, rule: &AclRule) -> Result<bool, StoreError> {
        self.change(|rules| {
            let before = rules.len();
            rules.retain(|r| r != rule);
            rules.len() != before
        })
    }

    fn change(&self, edit: impl FnOnce(&mut Vec<AclRule>) -> bool) -> Result<bool, StoreError> {
        let _writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules = (*self.snapshot()).clone();
        if !edit(&mut rules) {
            return Ok(false);
        }
        if let Some(path) = &self.path {
            write_atomically(path, &rules)?;
        }
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(true)
    }
}

fn write_atomically(path: &Path, rules: &[AclRule]) -> Result<(), StoreError> {
    let io = |what| {
        move |source| StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let body = serde_json::to_vec_pretty(&AclFile {
        acls: rules.to_vec(),
    })
    .map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("write"))?;
    f.write_all(&body).map_err(io("write"))?;
    f.sync_all().map_err(io("fsync"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("replace"))?;
    if let Some(dir) = dir
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::{Effect, Operation, Pattern, ResourceKind};

    fn rule(p: &str) -> AclRule {
        AclRule {
            principal: p.into(),
            resource: ResourceKind::Topic,
            name: "t".into(),
            pattern: Pattern::Literal,
            operation: Operation::Produce,
            effect: Effect::Allow,
        }
    }

    #[test]
    fn changes_survive_a_reopen_and_duplicates_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acls.json");
        let store = AclStore::open(&path).unwrap();
        assert!(store.snapshot().is_empty());
        assert!(store.add(rule("a")).unwrap());
        assert!(!store.add(rule("a")).unwrap());
        assert!(store.add(rule("b")).unwrap());
        assert!(store.remove(&rule("a")).unwrap());
        assert!(!store.remove(&rule("a")).unwrap());
        let reopened = AclStore::open(&path).unwrap();
        assert_eq!(*reopened.snapshot(), vec![rule("b")]);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acls.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = AclStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("acls.json"), "{err}");
    }
}
