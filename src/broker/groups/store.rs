//! Durable group membership: one file per group, `group-members/<group>.json` (a
//! [`Snapshot`]), next to the committed offsets in `groups/`. Each change rewrites the file
//! whole the way commits do (temporary file, fsync, rename, directory fsync), in the order the
//! changes happened, so a crash (kill -9 included) leaves the state of some moment, never a mix.

use std::path::{Path, PathBuf};

use super::state::Snapshot;
use crate::storage::{StorageError, write_atomically};

pub struct GroupStore {
    dir: PathBuf,
}

impl GroupStore {
    /// Opens `dir` and reads every group's snapshot. A file that does not parse is set aside as
    /// `<group>.json.damaged` (that group starts without members) rather than stopping the
    /// broker.
    ///
    /// # Errors
    /// I/O errors listing or reading the directory.
    pub fn open(dir: &Path) -> Result<(Self, Vec<(String, Snapshot)>), StorageError> {
        let (out, _damaged) = crate::storage::json_dir::load::<Snapshot>(
            dir,
            "a group's membership",
            "its members must rejoin",
        )?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
            },
            out,
        ))
    }

    fn path(&self, group: &str) -> PathBuf {
        self.dir.join(format!("{group}.json"))
    }

    /// Writes a group's snapshot and returns once it is on disk.
    ///
    /// # Errors
    /// I/O errors (the previous snapshot stays).
    pub async fn write(&self, group: &str, snapshot: &Snapshot) -> Result<(), StorageError> {
        let json = serde_json::to_vec(snapshot)
            .map_err(|e| StorageError::io("encoding group membership", std::io::Error::other(e)))?;
        let (dir, path) = (self.dir.clone(), self.path(group));
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &json))
            .await
            .map_err(|e| StorageError::io("group membership writer", std::io::Error::other(e)))?
    }

    /// Writes a snapshot from a blocking context (at open).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_now(&self, group: &str, snapshot: &Snapshot) -> Result<(), StorageError> {
        let json = serde_json::to_vec(snapshot)
            .map_err(|e| StorageError::io("encoding group membership", std::io::Error::other(e)))?;
        write_atomically(&self.dir, &self.path(group), &json)
    }

    /// Removes a group's file.
    ///
    /// # Errors
    /// I/O errors other than the file being absent.
    pub async fn delete(&self, group: &str) -> Result<(), StorageError> {
        let (dir, path) = (self.dir.clone(), self.path(group));
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => crate::storage::segment::sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
        })
        .await
        .map_err(|e| StorageError::io("group membership writer", std::io::Error::other(e)))?
    }
}
