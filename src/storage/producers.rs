//! Idempotent producers' state in one partition: for each producer id, its epoch and its last
//! [`REMEMBERED_BATCHES`] appends (first sequence number, record count, first offset).
//!
//! Sequence numbers count records: an append of `n` records with sequence `s` covers `s..s+n`,
//! and the next append must start at `s+n`. A retry of one of the remembered appends is answered
//! with its original offsets and not written again; any other sequence is a gap; an older epoch is
//! fenced. The state is derived from the log (every v2 batch carries its producer's id, epoch and
//! base sequence): it is rebuilt at start from the batch headers of the segments after the latest
//! snapshot, `<base>.producers`, written when a segment seals.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::batch::BatchMeta;

/// Appends remembered per producer and partition.
pub const REMEMBERED_BATCHES: usize = 5;

/// Suffix of a producer state snapshot; its stem is the offset it was taken at (20 digits).
pub const SNAPSHOT_SUFFIX: &str = "producers";

/// The idempotent producer identity an append carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerAppend {
    pub id: i64,
    pub epoch: i16,
    /// Sequence number of the append's first record in this partition.
    pub sequence: i32,
}

/// One remembered append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    pub sequence: i32,
    pub count: u32,
    pub first_offset: u64,
}

/// What a producer did last in this partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`REMEMBERED_BATCHES`].
    pub batches: VecDeque<Remembered>,
}

/// Why an append of an idempotent producer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error(
        "producer {id} is fenced: epoch {epoch} is older than its current epoch {current} (a newer \
         instance called InitProducer)"
    )]
    Fenced { id: i64, epoch: i16, current: i16 },
    #[error(
        "out-of-order sequence for producer {id} epoch {epoch}: got {got}, expected {expected}"
    )]
    OutOfOrder {
        id: i64,
        epoch: i16,
        got: i32,
        expected: i32,
    },
}

impl SequenceError {
    /// The sequence the broker expects next, for an out-of-order append.
    pub fn expected(&self) -> Option<i32> {
        match self {
            Self::OutOfOrder { expected, .. } => Some(*expected),
            Self::Fenced { .. } => None,
        }
    }
}

/// What to do with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: write it.
    Append,
    /// A retry of an append already stored at this first offset: answer with it, write nothing.
    Duplicate { first_offset: u64 },
}

/// The producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    map: HashMap<i64, ProducerEntry>,
}

/// Changes to [`ProducerStates`] not yet durable: checked against, then committed (or dropped
/// when the write fails).
#[derive(Debug, Default)]
pub struct Pending {
    touched: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    #[cfg(test)]
    pub fn get(&self, id: i64) -> Option<&ProducerEntry> {
        self.map.get(&id)
    }

    /// Checks an append of `count` records against the state (and `pending` changes); an
    /// accepted one is added to `pending` at `first_offset`.
    ///
    /// # Errors
    /// `Fenced` for an older epoch, `OutOfOrder` for a sequence that neither continues the last
    /// append nor repeats a remembered one.
    pub fn check(
        &self,
        pending: &mut Pending,
        p: ProducerAppend,
        count: u32,
        first_offset: u64,
    ) -> Result<Verdict, SequenceError> {
        let entry = pending.touched.get(&p.id).or_else(|| self.map.get(&p.id));
        let verdict = match entry {
            None => Verdict::Append,
            Some(e) if p.epoch < e.epoch => {
                return Err(SequenceError::Fenced {
                    id: p.id,
                    epoch: p.epoch,
                    current: e.epoch,
                });
            }
            Some(e) if p.epoch > e.epoch => {
                if p.sequence != 0 {
                    return Err(SequenceError::OutOfOrder {
                        id: p.id,
                        epoch: p.epoch,
                        got: p.sequence,
                        expected: 0,
                    });
                }
                Verdict::Append
            }
            Some(e) => {
                if let Some(b) = e
                    .batches
                    .iter()
                    .find(|b| b.sequence == p.sequence && b.count == count)
                {
                    return Ok(Verdict::Duplicate {
                        first_offset: b.first_offset,
                    });
                }
                let expected = e
                    .batches
                    .back()
                    .map_or(0, |b| b.sequence.wrapping_add(b.count as i32));
                if p.sequence != expected {
                    return Err(SequenceError::OutOfOrder {
                        id: p.id,
                        epoch: p.epoch,
                        got: p.sequence,
                        expected,
                    });
                }
                Verdict::Append
            }
        };
        let mut entry = entry.cloned().unwrap_or(ProducerEntry {
            epoch: p.epoch,
            batches: VecDeque::new(),
        });
        remember(&mut entry, p.epoch, p.sequence, count, first_offset);
        pending.touched.insert(p.id, entry);
        Ok(verdict)
    }

    /// Makes `pending` part of the state (its appends are durable).
    pub fn commit(&mut self, pending: Pending) {
        self.map.extend(pending.touched);
    }

    /// Applies a batch read back from the log (rebuilding the state at start).
    pub fn apply(&mut self, meta: &BatchMeta, count: u32, first_offset: u64) {
        if !meta.has_producer() {
            return;
        }
        let entry = self
            .map
            .entry(meta.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: meta.producer_epoch,
                batches: VecDeque::new(),
            });
        if meta.producer_epoch < entry.epoch {
            return;
        }
        remember(
            entry,
            meta.producer_epoch,
            meta.base_sequence,
            count,
            first_offset,
        );
    }

    /// Writes the state as of `offset` to `<dir>/<offset>.producers` (written aside, fsynced and
    /// renamed into place), and removes older snapshots.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn save_snapshot(&self, dir: &Path, offset: u64) -> std::io::Result<()> {
        let snap = Snapshot {
            offset,
            producers: self.map.iter().map(|(&id, e)| (id, e.clone())).collect(),
        };
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("producers.tmp");
        let bytes = serde_json::to_vec(&snap).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        for (base, old) in snapshots(dir) {
            if base < offset {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }

    /// The newest readable snapshot at or below `at_most`: its offset and state.
    pub fn load_snapshot(dir: &Path, at_most: u64) -> Option<(u64, Self)> {
        let mut all = snapshots(dir);
        all.retain(|(b, _)| *b <= at_most);
        all.sort_by_key(|(b, _)| std::cmp::Reverse(*b));
        for (base, path) in all {
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
                .filter(|s| s.offset == base);
            match parsed {
                Some(s) => {
                    return Some((
                        base,
                        Self {
                            map: s.producers.into_iter().collect(),
                        },
                    ));
                }
                None => {
                    tracing::warn!(file = %path.display(), "unreadable producer state snapshot; rebuilding from the log instead");
                }
            }
        }
        None
    }
}

fn remember(entry: &mut ProducerEntry, epoch: i16, sequence: i32, count: u32, first_offset: u64) {
    if epoch != entry.epoch {
        entry.epoch = epoch;
        entry.batches.clear();
    }
    entry.batches.push_back(Remembered {
        sequence,
        count,
        first_offset,
    });
    while entry.batches.len() > REMEMBERED_BATCHES {
        entry.batches.pop_front();
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    offset: u64,
    producers: Vec<(i64, ProducerEntry)>,
}

fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

fn snapshots(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let base = name
                .to_str()?
                .strip_suffix(SNAPSHOT_SUFFIX)?
                .strip_suffix('.')?
                .parse()
                .ok()?;
            Some((base, e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: i64, epoch: i16, sequence: i32) -> ProducerAppend {
        ProducerAppend {
            id,
            epoch,
            sequence,
        }
    }

    fn append(
        s: &mut ProducerStates,
        a: ProducerAppend,
        count: u32,
        at: u64,
    ) -> Result<Verdict, SequenceError> {
        let mut pending = Pending::default();
        let v = s.check(&mut pending, a, count, at)?;
        s.commit(pending);
        Ok(v)
    }

    #[test]
    fn retries_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        assert_eq!(append(&mut s, p(1, 0, 0), 10, 100), Ok(Verdict::Append));
        assert_eq!(append(&mut s, p(1, 0, 10), 5, 110), Ok(Verdict::Append));
        // A retry of either is answered with its offsets.
        assert_eq!(
            append(&mut s, p(1, 0, 0), 10, 999),
            Ok(Verdict::Duplicate { first_offset: 100 })
        );
        assert_eq!(
            append(&mut s, p(1, 0, 10), 5, 999),
            Ok(Verdict::Duplicate { first_offset: 110 })
        );
        // A gap says what is expected.
        let gap = append(&mut s, p(1, 0, 20), 1, 115).unwrap_err();
        assert_eq!(gap.expected(), Some(15));
        // A new epoch starts at 0 and fences the old one.
        assert!(append(&mut s, p(1, 1, 3), 1, 115).is_err());
        assert_eq!(append(&mut s, p(1, 1, 0), 1, 115), Ok(Verdict::Append));
        assert!(matches!(
            append(&mut s, p(1, 0, 15), 1, 116),
            Err(SequenceError::Fenced { current: 1, .. })
        ));
        // Another producer is independent.
        assert_eq!(append(&mut s, p(2, 0, 7), 1, 116), Ok(Verdict::Append));
    }

    #[test]
    fn only_the_last_five_are_remembered_and_pending_is_dropped_on_failure() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            append(&mut s, p(1, 0, i), 1, 10 + i as u64).unwrap();
        }
        assert_eq!(s.get(1).unwrap().batches.len(), REMEMBERED_BATCHES);
        assert_eq!(
            append(&mut s, p(1, 0, 2), 1, 0),
            Ok(Verdict::Duplicate { first_offset: 12 })
        );
        assert!(append(&mut s, p(1, 0, 1), 1, 0).is_err(), "forgotten");
        let before = s.clone();
        let mut pending = Pending::default();
        s.check(&mut pending, p(1, 0, 7), 1, 17).unwrap();
        // Within one write, a second copy of the same append is a duplicate of the first.
        assert_eq!(
            s.check(&mut pending, p(1, 0, 7), 1, 18),
            Ok(Verdict::Duplicate { first_offset: 17 })
        );
        drop(pending);
        assert_eq!(s, before, "nothing changes until commit");
    }

    #[test]
    fn snapshots_round_trip_and_rebuild_applies_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStates::default();
        let meta = BatchMeta {
            producer_id: 4,
            producer_epoch: 2,
            base_sequence: 0,
            leader_epoch: 0,
        };
        s.apply(&meta, 3, 50);
        s.apply(
            &BatchMeta {
                base_sequence: 3,
                ..meta
            },
            2,
            53,
        );
        s.apply(&BatchMeta::NONE, 9, 55);
        s.save_snapshot(dir.path(), 55).unwrap();
        s.save_snapshot(dir.path(), 60).unwrap();
        assert_eq!(
            snapshots(dir.path()).len(),
            1,
            "older snapshots are removed"
        );
        let (at, back) = ProducerStates::load_snapshot(dir.path(), 70).unwrap();
        assert_eq!((at, &back), (60, &s));
        assert!(ProducerStates::load_snapshot(dir.path(), 59).is_none());
        assert_eq!(
            append(&mut s, p(4, 2, 3), 2, 0),
            Ok(Verdict::Duplicate { first_offset: 53 })
        );
    }
}
