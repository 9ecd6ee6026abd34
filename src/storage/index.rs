//! A segment's offset index (memory-mapped) and time index.
//!
//! The offset index is dense: entry `i` is the byte position (u32 LE) in the segment's `.log` of the
//! record with offset `base + i`. An active segment's index file is preallocated to its capacity and
//! mapped read-write; sealing shrinks it to the entries used and maps it read-only. The index is
//! derived data: recovery rebuilds it from the log whenever it does not match.
//!
//! The time index is sparse: `(max timestamp so far, relative offset)` pairs (i64 LE + u32 LE), one
//! every [`TIME_INDEX_INTERVAL`] bytes of log, kept in memory and written to disk when the segment
//! seals.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::mmap::{self, Mmap, MmapMut};

/// Bytes of log between two time index entries.
pub const TIME_INDEX_INTERVAL: u64 = 4096;

enum Map {
    Empty,
    Active(MmapMut),
    Sealed(Mmap),
}

/// Offset → byte position for one segment.
pub struct OffsetIndex {
    file: File,
    map: Map,
    len: usize,
    capacity: usize,
}

impl OffsetIndex {
    /// Opens an active index with room for `capacity` entries; `positions` become its content.
    ///
    /// # Errors
    /// I/O errors creating, sizing or mapping the file.
    pub fn create_active(path: &Path, capacity: usize, positions: &[u32]) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len((capacity * 4) as u64)?;
        let mut map = mmap::map_write(&file)?;
        for (i, p) in positions.iter().enumerate() {
            map[i * 4..i * 4 + 4].copy_from_slice(&p.to_le_bytes());
        }
        Ok(Self {
            file,
            map: Map::Active(map),
            len: positions.len(),
            capacity,
        })
    }

    /// Opens a sealed index file as it is; the caller checks it against the log.
    ///
    /// # Errors
    /// I/O errors opening or mapping the file.
    pub fn open_sealed(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len() as usize;
        let map = if size == 0 {
            Map::Empty
        } else {
            Map::Sealed(mmap::map_read(&file)?)
        };
        Ok(Self {
            file,
            map,
            len: size / 4,
            capacity: size / 4,
        })
    }

    /// Writes a sealed index holding exactly `positions`, fsynced.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn write_sealed(path: &Path, positions: &[u32]) -> io::Result<Self> {
        let mut bytes = Vec::with_capacity(positions.len() * 4);
        for p in positions {
            bytes.extend_from_slice(&p.to_le_bytes());
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        drop(file);
        Self::open_sealed(path)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Empty => &[],
            Map::Active(m) => &m[..],
            Map::Sealed(m) => &m[..],
        }
    }

    /// The position of entry `i`, if present.
    pub fn position(&self, i: usize) -> Option<u32> {
        if i >= self.len {
            return None;
        }
        let b = &self.bytes()[i * 4..i * 4 + 4];
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Appends an entry to an active index. Returns false when the index is full or sealed.
    pub fn push(&mut self, position: u32) -> bool {
        if self.len >= self.capacity {
            return false;
        }
        match &mut self.map {
            Map::Active(m) => {
                m[self.len * 4..self.len * 4 + 4].copy_from_slice(&position.to_le_bytes());
                self.len += 1;
                true
            }
            Map::Empty | Map::Sealed(_) => false,
        }
    }

    /// Forgets entries from `len` on (after a failed write was rolled back).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Turns an active index into a sealed one: flush, unmap, shrink the file to the entries used,
    /// fsync, map read-only.
    ///
    /// # Errors
    /// I/O errors flushing, resizing or mapping.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Map::Active(m) = &self.map {
            m.flush()?;
        }
        self.map = Map::Empty;
        self.file.set_len((self.len * 4) as u64)?;
        self.file.sync_all()?;
        self.capacity = self.len;
        if self.len > 0 {
            self.map = Map::Sealed(mmap::map_read(&self.file)?);
        }
        Ok(())
    }
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// The largest timestamp among the records up to and including this one.
    pub max_timestamp: i64,
    pub relative_offset: u32,
}

/// Sparse timestamp → offset entries for one segment.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    pub entries: Vec<TimeEntry>,
}

impl TimeIndex {
    /// Reads a time index file; `None` if it is missing or not a whole number of entries.
    pub fn load(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() % 12 != 0 {
            return None;
        }
        let entries = bytes
            .chunks_exact(12)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                TimeEntry {
                    max_timestamp: i64::from_le_bytes(ts),
                    relative_offset: u32::from_le_bytes([c[8], c[9], c[10], c[11]]),
                }
            })
            .collect();
        Some(Self { entries })
    }

    /// Writes the entries to `path`, fsynced.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.entries.len() * 12);
        for e in &self.entries {
            bytes.extend_from_slice(&e.max_timestamp.to_le_bytes());
            bytes.extend_from_slice(&e.relative_offset.to_le_bytes());
        }
        let mut file = File::create(path)?;
        file.write_all(&bytes)?;
        file.sync_data()
    }

    /// The relative offset to start scanning from to find the first record with a timestamp at or
    /// after `ts`: the entry before the first whose max timestamp reaches `ts`.
    pub fn scan_start(&self, ts: i64) -> u32 {
        let first_reaching = self.entries.partition_point(|e| e.max_timestamp < ts);
        if first_reaching == 0 {
            0
        } else {
            self.entries[first_reaching - 1].relative_offset
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_index_push_seal_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = OffsetIndex::create_active(&path, 4, &[0, 10]).unwrap();
        assert!(idx.push(25));
        assert!(idx.push(40));
        assert!(!idx.push(55), "capacity is 4");
        assert!(idx.is_full());
        idx.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let back = OffsetIndex::open_sealed(&path).unwrap();
        let got: Vec<_> = (0..back.len()).filter_map(|i| back.position(i)).collect();
        assert_eq!(got, vec![0, 10, 25, 40]);
        assert_eq!(back.position(4), None);
    }

    #[test]
    fn time_index_round_trip_and_scan_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let ti = TimeIndex {
            entries: vec![
                TimeEntry {
                    max_timestamp: 100,
                    relative_offset: 10,
                },
                TimeEntry {
                    max_timestamp: 200,
                    relative_offset: 20,
                },
            ],
        };
        ti.save(&path).unwrap();
        let back = TimeIndex::load(&path).unwrap();
        assert_eq!(back.entries, ti.entries);
        assert_eq!(back.scan_start(50), 0);
        assert_eq!(back.scan_start(150), 10);
        assert_eq!(back.scan_start(250), 20);
        std::fs::write(&path, [0u8; 5]).unwrap();
        assert!(TimeIndex::load(&path).is_none());
    }
}
