//! Open handles on sealed segment logs, bounded.
//!
//! Only an active segment keeps its log open; a sealed segment's log is opened when a read needs
//! it and kept in this cache, which closes the least recently used handle once more than its
//! capacity are open. So descriptors grow with the number of partitions (one each), not with the
//! number of segments, and a broker with thousands of old segments starts under a low
//! `RLIMIT_NOFILE`. A read in flight holds its own `Arc`, so eviction never closes a file under it.
//!
//! A sealed log can also be kept mapped ([`LogFiles::mapped`]; reads then slice the map instead
//! of copying, see `super::mmap`): the map lives in the same entry, so the number of mappings is
//! bounded like the descriptors, and a read's slices keep an evicted map alive until dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::sync::lock;

struct Entry {
    file: Arc<File>,
    /// The whole log mapped, once a read asked for it.
    map: Option<Bytes>,
    last_used: u64,
}

/// The cache, shared by every partition of a broker.
pub struct LogFiles {
    capacity: usize,
    open: Mutex<(HashMap<PathBuf, Entry>, u64)>,
}

impl std::fmt::Debug for LogFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFiles")
            .field("capacity", &self.capacity)
            .field("open", &self.open_count())
            .finish()
    }
}

impl LogFiles {
    /// A cache keeping at most `capacity` (at least 1) sealed logs open.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            open: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// A read handle on the log at `path`, opened if it is not open yet.
    ///
    /// # Errors
    /// The error opening the file.
    pub fn get(&self, path: &Path) -> io::Result<Arc<File>> {
        self.entry(path, |e| Ok(Arc::clone(&e.file)))
    }

    /// The sealed log at `path` mapped whole, mapped (and opened) if it is not yet.
    ///
    /// # Errors
    /// The error opening or mapping the file.
    pub fn mapped(&self, path: &Path) -> io::Result<Bytes> {
        self.entry(path, |e| {
            if let Some(map) = &e.map {
                return Ok(map.clone());
            }
            let len = e.file.metadata()?.len();
            let map = super::mmap::map_log(&e.file, len)?;
            e.map = Some(map.clone());
            Ok(map)
        })
    }

    /// Runs `f` on the entry of `path`, opening the file first if needed.
    fn entry<T>(&self, path: &Path, f: impl FnOnce(&mut Entry) -> io::Result<T>) -> io::Result<T> {
        let mut guard = lock(&self.open);
        let (open, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if let Some(e) = open.get_mut(path) {
            e.last_used = now;
            return f(e);
        }
        let file = Arc::new(File::open(path)?);
        if open.len() >= self.capacity
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(p, _)| p.clone())
        {
            open.remove(&oldest);
        }
        let e = open.entry(path.to_path_buf()).or_insert(Entry {
            file,
            map: None,
            last_used: now,
        });
        f(e)
    }

    /// Closes the handle on `path`, if open (its segment is being deleted).
    pub fn forget(&self, path: &Path) {
        lock(&self.open).0.remove(path);
    }

    /// Handles open now.
    pub fn open_count(&self) -> usize {
        lock(&self.open).0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_capacity_open_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..4)
            .map(|i| {
                let p = dir.path().join(format!("{i}.log"));
                std::fs::write(&p, [i as u8]).unwrap();
                p
            })
            .collect();
        let files = LogFiles::new(2);
        let a = files.get(&paths[0]).unwrap();
        files.get(&paths[1]).unwrap();
        files.get(&paths[0]).unwrap(); // 0 is now the most recent
        files.get(&paths[2]).unwrap(); // evicts 1
        assert_eq!(files.open_count(), 2);
        let again = files.get(&paths[0]).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "0 stayed open");
        files.get(&paths[3]).unwrap();
        assert_eq!(files.open_count(), 2);
        // A handle evicted while held still reads.
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&*a, &mut b, 0).unwrap();
        assert_eq!(b, [0]);
        files.forget(&paths[3]);
        assert_eq!(files.open_count(), 1);
        assert!(files.get(&dir.path().join("none.log")).is_err());
    }

    #[test]
    fn a_mapped_log_reads_as_the_file_and_outlives_its_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("b.log");
        std::fs::write(&a, b"sealed log a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let files = LogFiles::new(1);
        let map = files.mapped(&a).unwrap();
        assert_eq!(&map[..], b"sealed log a");
        assert_eq!(
            files.mapped(&a).unwrap().as_ptr(),
            map.as_ptr(),
            "mapped once"
        );
        files.get(&b).unwrap(); // evicts a and its map
        assert_eq!(files.open_count(), 1);
        assert_eq!(
            &map.slice(7..12)[..],
            b"log a",
            "the slice keeps the map alive"
        );
        std::fs::write(dir.path().join("empty.log"), b"").unwrap();
        assert!(
            files
                .mapped(&dir.path().join("empty.log"))
                .unwrap()
                .is_empty()
        );
    }
}
