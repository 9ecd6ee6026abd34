//! The Raft log of one node, on disk: `raft/log-<first index>` segment files of framed entries
//! (`[len u32][crc32c u32][bincode entry]`, little endian), and the vote, committed id and purge
//! point beside them. Appends are one write of every entry openraft hands over and, in `fsync`
//! mode, one fdatasync before openraft is told the entries are durable: a node counts towards a
//! majority only with the entries on its disk. On open, a torn tail (a crash mid-write) is cut
//! back to the last whole entry.
//!
//! Locations of the entries are kept in memory; entries are read back from the files (the page
//! cache, for the recent entries replication sends).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig, decode, encode};
use crate::sync::lock;

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 64 << 20;
const FRAME_HEADER: usize = 8;
/// Largest entry accepted when reading back (a produce is at most a gRPC message).
const MAX_ENTRY_BYTES: usize = 1 << 30;

/// A node's Raft log; clones share it.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFiles>>,
}

struct Segment {
    file: File,
    len: u64,
    path: PathBuf,
}

#[derive(Clone, Copy)]
struct Location {
    log_id: LogId,
    /// The segment's first index.
    segment: u64,
    pos: u64,
    len: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId>,
}

struct LogFiles {
    dir: PathBuf,
    fsync: bool,
    segments: BTreeMap<u64, Segment>,
    index: BTreeMap<u64, Location>,
    meta: Meta,
    committed: Option<LogId>,
}

fn io_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

fn io_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

/// Writes `bytes` to `path` through a temporary file and a rename, fsynced when `sync`.
fn replace_file(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_data()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail.
    ///
    /// # Errors
    /// I/O errors, and damage before the tail of a segment.
    pub fn open(dir: &Path, fsync: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let meta = match fs::read(dir.join("meta")) {
            Ok(b) => decode(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(e),
        };
        // Written without fsync: an old or missing value only makes a restart re-apply more.
        let committed = fs::read(dir.join("committed"))
            .ok()
            .and_then(|b| decode(&b).ok())
            .flatten();
        let mut firsts: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("log-"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        firsts.sort_unstable();
        let mut files = LogFiles {
            dir: dir.to_path_buf(),
            fsync,
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            meta,
            committed,
        };
        let last = firsts.last().copied();
        for first in firsts {
            let path = dir.join(format!("log-{first:020}"));
            let (segment, whole) = files.recover_segment(first, path.clone())?;
            if !whole && Some(first) != last {
                // Only the segment being written when the node died can end in a torn write;
                // entries after a cut elsewhere were acknowledged to the leader and must not be
                // dropped.
                return Err(damaged(
                    &path,
                    segment.len,
                    "a torn write before the last segment",
                ));
            }
            files.segments.insert(first, segment);
        }
        // Whole segments outlive a purge: what they hold up to the purge point stays forgotten.
        if let Some(purged) = files.meta.last_purged {
            files.index = files.index.split_off(&(purged.index + 1));
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(files)),
        })
    }
}

/// The error of a Raft log that is damaged, not torn: the node must not vote or serve with it.
fn damaged(path: &std::path::Path, at: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "Raft log {} is damaged at byte {at} ({what}); entries after it were acknowledged \
             and cannot be dropped: move this node's data directory aside and let it catch up \
             from the others",
            path.display()
        ),
    )
}

impl LogFiles {
    /// Reads a segment's entries into the index; cuts the file at the first frame that does not
    /// check (returning false then).
    fn recover_segment(&mut self, first: u64, path: PathBuf) -> io::Result<(Segment, bool)> {
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut pos = 0usize;
        let mut whole = true;
        while pos < bytes.len() {
            let Some(header) = bytes.get(pos..pos + FRAME_HEADER) else {
                whole = false;
                break;
            };
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            let start = pos + FRAME_HEADER;
            let Some(payload) = bytes.get(start..start + len) else {
                whole = false;
                break;
            };
            // A bad frame is a torn write only where a crash can leave one: the file's last
            // frame, or zeros to the end. Anywhere else it is damage, and cutting there would
            // drop entries this node acknowledged: refuse to open instead.
            let torn = start + len == bytes.len() || bytes[pos..].iter().all(|&b| b == 0);
            let good = crc32c::crc32c(payload) == crc;
            let entry = if good {
                decode::<Entry>(payload).ok()
            } else {
                None
            };
            let Some(entry) = entry else {
                if torn {
                    whole = false;
                    break;
                }
                return Err(damaged(
                    &path,
                    pos as u64,
                    "a frame that fails its checksum",
                ));
            };
            let log_id = *entry.get_log_id();
            self.index.insert(
                log_id.index,
                Location {
                    log_id,
                    segment: first,
                    pos: start as u64,
                    len: len as u32,
                },
            );
            pos = start + len;
        }
        if !whole {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = pos,
                dropped_bytes = bytes.len() - pos,
                "Raft log: cut a torn or damaged tail"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok((
            Segment {
                file,
                len: pos as u64,
                path,
            },
            whole,
        ))
    }

    fn read(&self, loc: &Location) -> Result<Entry, StorageError> {
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| io_read(io::Error::other("segment of a logged entry is missing")))?;
        if loc.len as usize > MAX_ENTRY_BYTES {
            return Err(io_read(io::Error::other("entry too large")));
        }
        let mut buf = vec![0u8; loc.len as usize];
        seg.file.read_exact_at(&mut buf, loc.pos).map_err(io_read)?;
        decode(&buf).map_err(|e| io_read(io::Error::other(e)))
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>, StorageError> {
        self.index.range(range).map(|(_, l)| self.read(l)).collect()
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let Some(first) = entries.first().map(|e| e.get_log_id().index) else {
            return Ok(());
        };
        let roll = self
            .segments
            .last_key_value()
            .is_none_or(|(_, s)| s.len >= SEGMENT_BYTES);
        if roll {
            // interval durability: the segment left behind is synced before a new one starts
            // (the periodic sync only syncs the last one).
            if !self.fsync
                && let Some((_, s)) = self.segments.last_key_value()
            {
                s.file.sync_data()?;
            }
            let path = self.dir.join(format!("log-{first:020}"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            File::open(&self.dir)?.sync_all()?;
            self.segments.insert(first, Segment { file, len: 0, path });
        }
        let (&segment, seg) = self
            .segments
            .iter_mut()
            .next_back()
            .expect("a segment exists");
        let mut out = Vec::new();
        let mut locations = Vec::with_capacity(entries.len());
        for entry in &entries {
            let payload = encode(entry).map_err(io::Error::other)?;
            locations.push(Location {
                log_id: *entry.get_log_id(),
                segment,
                pos: seg.len + out.len() as u64 + FRAME_HEADER as u64,
                len: payload.len() as u32,
            });
            out.extend_from_slice(&frame(&payload));
        }
        seg.file.write_all_at(&out, seg.len)?;
        seg.len += out.len() as u64;
        if self.fsync {
            seg.file.sync_data()?;
        }
        for l in locations {
            self.index.insert(l.log_id.index, l);
        }
        Ok(())
    }

    /// Removes entries from `index` on (a conflict: openraft overwrites them).
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(loc) = self.index.get(&index).copied() else {
            return Ok(());
        };
        let _ = self.index.split_off(&index);
        let later: Vec<u64> = self
            .segments
            .range((Bound::Excluded(loc.segment), Bound::Unbounded))
            .map(|(k, _)| *k)
            .collect();
        for k in later {
            if let Some(s) = self.segments.remove(&k) {
                fs::remove_file(&s.path)?;
            }
        }
        let header_start = loc.pos - FRAME_HEADER as u64;
        if header_start == 0 {
            if let Some(s) = self.segments.remove(&loc.segment) {
                fs::remove_file(&s.path)?;
            }
        } else if let Some(s) = self.segments.get_mut(&loc.segment) {
            s.file.set_len(header_start)?;
            s.file.sync_all()?;
            s.len = header_start;
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Forgets entries up to `log_id` (they are in a snapshot), deleting whole segments.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.meta.last_purged = Some(log_id);
        self.save_meta()?;
        let kept = self.index.split_off(&(log_id.index + 1));
        self.index = kept;
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        for (i, first) in firsts.iter().enumerate() {
            let next = firsts.get(i + 1).copied();
            // A segment whose every entry is purged: the next one starts at or before the
            // first kept entry.
            if next.is_some_and(|n| n <= log_id.index + 1)
                && let Some(s) = self.segments.remove(first)
            {
                fs::remove_file(&s.path)?;
            }
        }
        Ok(())
    }

    fn save_meta(&self) -> io::Result<()> {
        let bytes = encode(&self.meta).map_err(io::Error::other)?;
        replace_file(&self.dir, "meta", &bytes, true)
    }

    fn state(&self) -> LogState<TypeConfig> {
        let last = self
            .index
            .last_key_value()
            .map(|(_, l)| l.log_id)
            .or(self.meta.last_purged);
        LogState {
            last_purged_log_id: self.meta.last_purged,
            last_log_id: last,
        }
    }
}

impl LogStore {
    /// Runs `f` on the files on a blocking thread (writes and fsyncs).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogFiles) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut lock(&inner)))
            .await
            .map_err(|e| io_write(io::Error::other(e.to_string())))?
    }

    /// interval durability (issue 17): fdatasyncs the last segment, for a log opened without
    /// `fsync` (called on the partitions' sync interval). The file is synced outside the lock,
    /// so appends go on meanwhile.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&self) -> io::Result<()> {
        let file = {
            let files = lock(&self.inner);
            match files.segments.last_key_value() {
                Some((_, s)) => s.file.try_clone()?,
                None => return Ok(()),
            }
        };
        file.sync_data()
    }

    /// The index of the last entry (tests and metrics).
    pub fn last_index(&self) -> Option<u64> {
        lock(&self.inner).index.last_key_value().map(|(k, _)| *k)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.blocking(move |f| f.entries(range)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(lock(&self.inner).state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |f| {
            f.meta.vote = Some(vote);
            f.save_meta()
                .map_err(|e| StorageIOError::write_vote(&e).into())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(lock(&self.inner).meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |f| {
            f.committed = committed;
            let bytes = encode(&committed).map_err(|e| io_write(io::Error::other(e)))?;
            replace_file(&f.dir, "committed", &bytes, false).map_err(io_write)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || lock(&inner).append(entries))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "Raft log append failed");
                let err = io_write(io::Error::new(e.kind(), e.to_string()));
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.truncate(log_id.index).map_err(io_write))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |f| f.purge(log_id).map_err(io_write))
            .await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(files: &LogFiles) -> Vec<(u64, u64)> {
        files
            .entries(..)
            .unwrap()
            .iter()
            .map(|e| (e.log_id.index, e.log_id.leader_id.term))
            .collect()
    }

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_cut_to_the_last_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), true).unwrap();
        lock(&store.inner)
            .append((0..5).map(|i| entry(i, 1)).collect())
            .unwrap();
        lock(&store.inner).meta.vote = Some(Vote::new(3, 2));
        lock(&store.inner).save_meta().unwrap();
        drop(store);
        let store = LogStore::open(dir.path(), true).unwrap();
        assert_eq!(indexes(&lock(&store.inner)).len(), 5);
        assert_eq!(lock(&store.inner).meta.vote, Some(Vote::new(3, 2)));
        drop(store);
        // A crash mid-write: the last frame is cut short.
        let seg = dir.path().join(format!("log-{:020}", 0));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let store = LogStore::open(dir.path(), true).unwrap();
        assert_eq!(
            indexes(&lock(&store.inner)),
            vec![(0, 1), (1, 1), (2, 1), (3, 1)]
        );
        // Appends continue after the cut.
        lock(&store.inner).append(vec![entry(4, 2)]).unwrap();
        drop(store);
        let store = LogStore::open(dir.path(), true).unwrap();
        assert_eq!(indexes(&lock(&store.inner)).last(), Some(&(4, 2)));
        drop(store);
        // A flipped byte in the first frame is damage, not a torn tail: the log refuses to open
        // and keeps every byte (the entries after it were acknowledged).
        let before = fs::read(&seg).unwrap();
        let mut bytes = before.clone();
        bytes[FRAME_HEADER + 1] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let err = LogStore::open(dir.path(), true)
            .err()
            .expect("a damaged log refuses to open");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("damaged at byte 0"), "{err}");
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            before.len(),
            "nothing was cut"
        );
    }

    #[test]
    fn truncate_removes_the_conflicting_suffix_and_purge_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), false).unwrap();
        let mut f = lock(&store.inner);
        f.append((0..6).map(|i| entry(i, 1)).collect()).unwrap();
        f.truncate(3).unwrap();
        f.append(vec![entry(3, 2), entry(4, 2)]).unwrap();
        assert_eq!(indexes(&f), vec![(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]);
        f.purge(entry(1, 1).log_id).unwrap();
        assert_eq!(indexes(&f).first(), Some(&(2, 1)));
        assert_eq!(f.state().last_purged_log_id, Some(entry(1, 1).log_id));
        assert_eq!(f.state().last_log_id.map(|l| l.index), Some(4));
        drop(f);
        drop(store);
        let store = LogStore::open(dir.path(), false).unwrap();
        let f = lock(&store.inner);
        // Purging deletes whole segments only (one here): the purged entries stay on disk, and
        // stay forgotten.
        assert_eq!(indexes(&f).first(), Some(&(2, 1)));
        assert_eq!(indexes(&f).last(), Some(&(4, 2)));
        assert_eq!(f.state().last_purged_log_id, Some(entry(1, 1).log_id));
    }
}
