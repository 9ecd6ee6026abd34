//! Open handles on sealed segment logs, bounded.
//!
//! Only an active segment keeps its log open; a sealed segment's log is opened when a read needs
//! it and kept in this cache, which closes the least recently used handle once more than its
//! capacity are open. So descriptors grow with the number of partitions (one each), not with the
//! number of segments, and a broker with thousands of old segments starts under a low
//! `RLIMIT_NOFILE`. A read in flight holds its own `Arc`, so eviction never closes a file under it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::sync::lock;

struct Entry {
    file: Arc<File>,
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
        let mut guard = lock(&self.open);
        let (open, clock) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if let Some(e) = open.get_mut(path) {
            e.last_used = now;
            return Ok(Arc::clone(&e.file));
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
        open.insert(
            path.to_path_buf(),
            Entry {
                file: Arc::clone(&file),
                last_used: now,
            },
        );
        Ok(file)
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
}
