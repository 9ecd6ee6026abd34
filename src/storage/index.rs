//! A segment's offset index and time index.
//!
//! The offset index is dense: entry `i` is the byte position (u32 LE) in the segment's `.log` of the
//! record with offset `base + i`. The active segment's index lives in memory: it is derived from
//! the log (rebuilt by the scan at every start), so it needs no file until the segment seals, and
//! a full disk can never turn a touch of a mapped page into SIGBUS. Sealing writes it out whole
//! (`write` + fsync, so every block is allocated) and maps it read-only with memmap2; the file
//! handle is closed once mapped, so sealed segments hold no descriptor for their index.
//!
//! The time index is sparse: `(max timestamp so far, relative offset)` pairs (i64 LE + u32 LE), one
//! every [`TIME_INDEX_INTERVAL`] bytes of log, kept in memory and written to disk when the segment
//! seals.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::mmap::{self, Mmap};

/// Bytes of log between two time index entries.
pub const TIME_INDEX_INTERVAL: u64 = 4096;

enum Entries {
    Active(Vec<u32>),
    Sealed(Option<Mmap>),
}

/// Offset → byte position for one segment.
pub struct OffsetIndex {
    entries: Entries,
    len: usize,
}

impl OffsetIndex {
    /// An active (in-memory) index holding `positions`.
    pub fn active(positions: Vec<u32>) -> Self {
        Self {
            len: positions.len(),
            entries: Entries::Active(positions),
        }
    }

    /// Opens a sealed index file as it is; the caller checks it against the log.
    ///
    /// # Errors
    /// I/O errors opening or mapping the file.
    pub fn open_sealed(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len() as usize;
        let map = if size == 0 {
            None
        } else {
            Some(mmap::map_read(&file)?)
        };
        Ok(Self {
            entries: Entries::Sealed(map),
            len: size / 4,
        })
    }

    /// Writes a sealed index holding exactly `positions`, fsynced, and maps it.
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

    /// The position of entry `i`, if present.
    pub fn position(&self, i: usize) -> Option<u32> {
        if i >= self.len {
            return None;
        }
        match &self.entries {
            Entries::Active(v) => v.get(i).copied(),
            Entries::Sealed(map) => {
                let b = map.as_ref()?.get(i * 4..i * 4 + 4)?;
                Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
        }
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        (0..self.len).map(|i| self.position(i).unwrap_or(u32::MAX))
    }

    /// Appends an entry to an active index. Returns false for a sealed one.
    pub fn push(&mut self, position: u32) -> bool {
        match &mut self.entries {
            Entries::Active(v) => {
                v.push(position);
                self.len += 1;
                true
            }
            Entries::Sealed(_) => false,
        }
    }

    /// Forgets entries from `len` on (after a failed write was rolled back).
    pub fn truncate(&mut self, len: usize) {
        if let Entries::Active(v) = &mut self.entries {
            v.truncate(len);
        }
        self.len = self.len.min(len);
    }

    /// Writes an active index to `path` (fsynced) and turns it into a sealed, mapped one. On error
    /// the index stays active and unchanged, so sealing can be tried again.
    ///
    /// # Errors
    /// I/O errors writing or mapping the file.
    pub fn seal(&mut self, path: &Path) -> io::Result<()> {
        if let Entries::Active(v) = &self.entries {
            *self = Self::write_sealed(path, v)?;
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
        Self::parse(&std::fs::read(path).ok()?)
    }

    /// Parses a time index file's bytes; `None` if they are not a whole number of entries.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(12) {
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

    /// Ends the index of a segment whose last readable record has relative offset `last_rel`
    /// and whose newest timestamp is `max`: adds an entry for it unless the last entry already
    /// says `max`, so the last entry always holds the segment's newest timestamp (what retention
    /// by age and timestamp seeks read from a sealed segment).
    pub fn close(&mut self, last_rel: u32, max: i64) {
        match self.entries.last() {
            Some(e) if e.max_timestamp == max || e.relative_offset >= last_rel => {}
            _ => self.entries.push(TimeEntry {
                max_timestamp: max,
                relative_offset: last_rel,
            }),
        }
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
        let mut idx = OffsetIndex::active(vec![0, 10]);
        assert!(idx.push(25));
        assert!(idx.push(40));
        assert!(!path.exists(), "an active index has no file");
        idx.seal(&path).unwrap();
        assert!(!idx.push(55), "a sealed index takes no entries");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let back = OffsetIndex::open_sealed(&path).unwrap();
        let got: Vec<_> = back.entries().collect();
        assert_eq!(got, vec![0, 10, 25, 40]);
        assert_eq!(back.position(4), None);
    }

    #[test]
    fn a_failed_seal_leaves_the_index_active() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::active(vec![0, 10]);
        let nowhere = dir.path().join("missing-dir").join("0.index");
        assert!(idx.seal(&nowhere).is_err());
        assert!(idx.push(20), "still active after the failed seal");
        idx.seal(&dir.path().join("0.index")).unwrap();
        assert_eq!(idx.entries().collect::<Vec<_>>(), vec![0, 10, 20]);
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
