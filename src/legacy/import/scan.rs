//! Reading and validating an original data directory, before anything is written.
//!
//! Blocking file I/O: run it on the blocking pool.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::ImportError;
use crate::broker::names;
use crate::broker::{NameKind, ProduceRecord};
use crate::legacy::codec::{self, LENGTH_PREFIX_LEN, MAX_FRAME_LEN, Message};
use crate::storage::record::encoded_len;

/// One partition found on disk and validated.
#[derive(Debug, Clone)]
pub(super) struct PartitionPlan {
    pub log: PathBuf,
    pub records: u64,
}

/// One topic directory found on disk and validated.
#[derive(Debug, Clone)]
pub(super) struct TopicPlan {
    pub name: String,
    pub partitions: BTreeMap<u32, PartitionPlan>,
}

impl TopicPlan {
    /// Partitions the topic needs: the highest partition number plus one.
    pub fn partition_count(&self) -> u32 {
        self.partitions.keys().next_back().map_or(1, |p| p + 1)
    }

    pub fn records(&self, partition: u32) -> u64 {
        self.partitions.get(&partition).map_or(0, |p| p.records)
    }
}

/// Reads the frames of a `partition-N.log` in order, with their byte positions.
pub(super) struct FrameReader {
    path: PathBuf,
    file: BufReader<File>,
    position: u64,
}

impl FrameReader {
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 20, file),
            position: 0,
        })
    }

    fn damaged(&self, position: u64, reason: String) -> ImportError {
        ImportError::Damaged {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Fills `buf` completely; returns how many bytes were read before the end of the file.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, ImportError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ImportError::io(&self.path, e)),
            }
        }
        Ok(done)
    }

    /// The next frame's start position and message, or `None` at the end of the log.
    ///
    /// # Errors
    /// `Damaged` (naming the frame's byte position) for a truncated, empty, oversized or
    /// undecodable frame; `Io` for read errors.
    pub fn next_frame(&mut self) -> Result<Option<(u64, Message)>, ImportError> {
        let start = self.position;
        let mut prefix = [0u8; LENGTH_PREFIX_LEN];
        match self.read_full(&mut prefix)? {
            0 => return Ok(None),
            LENGTH_PREFIX_LEN => {}
            n => {
                return Err(self.damaged(
                    start,
                    format!("the log ends {n} bytes into a frame's 4-byte length (truncated)"),
                ));
            }
        }
        let len = u32::from_le_bytes(prefix);
        if len == 0 {
            return Err(self.damaged(start, "a frame of length 0".into()));
        }
        if len > MAX_FRAME_LEN {
            return Err(self.damaged(
                start,
                format!("frame length {len} exceeds the maximum of {MAX_FRAME_LEN}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        let got = self.read_full(&mut body)?;
        if got < body.len() {
            return Err(self.damaged(
                start,
                format!("the log ends {got} bytes into this {len}-byte frame (truncated)"),
            ));
        }
        self.position += (LENGTH_PREFIX_LEN + body.len()) as u64;
        let message = codec::decode_message(&Bytes::from(body))
            .map_err(|e| self.damaged(start, format!("the frame does not decode: {e}")))?;
        Ok(Some((start, message)))
    }

    /// The next frame as a record for `partition`, checking it belongs to `topic`.
    pub fn next_record(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(u64, ProduceRecord)>, ImportError> {
        let Some((position, message)) = self.next_frame()? else {
            return Ok(None);
        };
        if message.topic != topic.as_bytes() {
            return Err(self.damaged(
                position,
                format!(
                    "the frame is for topic {:?}, not {topic:?} (its directory)",
                    String::from_utf8_lossy(&message.topic)
                ),
            ));
        }
        Ok(Some((
            position,
            ProduceRecord {
                key: message.key,
                value: message.value,
                headers: Vec::new(),
                timestamp: Some(message.timestamp),
                partition: Some(partition),
            },
        )))
    }
}

/// Checks one partition: every frame whole and of this topic, and the index pointing exactly at
/// each frame's start, in order, one entry per frame. Returns the record count.
fn validate_partition(
    topic: &str,
    partition: u32,
    log: &Path,
    idx: &Path,
    max_record_bytes: usize,
) -> Result<u64, ImportError> {
    let index = std::fs::read(idx).map_err(|e| ImportError::io(idx, e))?;
    let damaged_idx = |position: usize, reason: String| ImportError::Damaged {
        path: idx.to_path_buf(),
        position: position as u64,
        reason,
    };
    let whole = index.len() - index.len() % 8;
    if whole != index.len() {
        return Err(damaged_idx(
            whole,
            format!(
                "the index ends with a partial {}-byte entry",
                index.len() - whole
            ),
        ));
    }
    let entries = index.len() / 8;
    let mut reader = FrameReader::open(log)?;
    let mut count = 0usize;
    while let Some((position, record)) = reader.next_record(topic, partition)? {
        let size = encoded_len(&record.key, &record.value, &record.headers);
        if size > max_record_bytes {
            return Err(ImportError::Unsupported {
                path: log.to_path_buf(),
                reason: format!(
                    "the record at byte {position} needs {size} bytes, above the broker's \
                     max_record_bytes of {max_record_bytes}; raise that limit to import it"
                ),
            });
        }
        let Some(entry) = index.get(count * 8..count * 8 + 8) else {
            return Err(damaged_idx(
                index.len(),
                format!(
                    "the index has {entries} entries but the log has more frames: frame {count} at log byte {position} has no entry"
                ),
            ));
        };
        let mut le = [0u8; 8];
        le.copy_from_slice(entry);
        let entry = i64::from_le_bytes(le);
        if u64::try_from(entry).ok() != Some(position) {
            return Err(damaged_idx(
                count * 8,
                format!(
                    "entry {count} is {entry}, but frame {count} starts at log byte {position}"
                ),
            ));
        }
        count += 1;
    }
    if entries > count {
        return Err(damaged_idx(
            count * 8,
            format!(
                "the index has {entries} entries but the log has only {count} frames (entry {count} points past the last frame)"
            ),
        ));
    }
    Ok(count as u64)
}

/// `partition-<N>.<ext>` → N, for a canonical decimal N.
fn partition_number(file_name: &str) -> Option<(u32, &str)> {
    let rest = file_name.strip_prefix("partition-")?;
    let (num, ext) = rest.split_once('.')?;
    let canonical = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
        && (num == "0" || !num.starts_with('0'));
    if !canonical {
        return None;
    }
    Some((num.parse().ok()?, ext))
}

/// Sorted entries of a directory.
fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ImportError> {
    let mut all = std::fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ImportError::io(dir, e))?;
    all.sort_by_key(std::fs::DirEntry::file_name);
    Ok(all)
}

/// Finds and validates every topic under `src`. Notes what it skips in `warnings`.
pub(super) fn scan_topics(
    src: &Path,
    max_record_bytes: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<TopicPlan>, ImportError> {
    let mut topics = Vec::new();
    for entry in entries(src)? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry
            .file_type()
            .map_err(|e| ImportError::io(&path, e))?
            .is_dir();
        if !is_dir {
            if partition_number(&name).is_some() {
                return Err(ImportError::Unsupported {
                    path,
                    reason: "records of the original's empty topic (stored directly in the data \
                             directory); Obelisk refuses an empty topic name: move these files \
                             aside to import the rest"
                        .into(),
                });
            }
            warnings.push(format!("ignored {}: not a topic directory", path.display()));
            continue;
        }
        if let Err(e) = names::validate(NameKind::Topic, &name) {
            return Err(ImportError::Unsupported {
                path,
                reason: format!("{e}; rename the directory or move it aside"),
            });
        }
        topics.push(scan_topic(&path, name, max_record_bytes, warnings)?);
    }
    Ok(topics)
}

fn scan_topic(
    dir: &Path,
    name: String,
    max_record_bytes: usize,
    warnings: &mut Vec<String>,
) -> Result<TopicPlan, ImportError> {
    let mut files: BTreeMap<u32, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
    for entry in entries(dir)? {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        match partition_number(&file_name) {
            Some((n, "log")) => files.entry(n).or_default().0 = Some(path),
            Some((n, "idx")) => files.entry(n).or_default().1 = Some(path),
            _ => warnings.push(format!("ignored {}: not a partition file", path.display())),
        }
    }
    let mut partitions = BTreeMap::new();
    for (n, pair) in files {
        if n >= crate::broker::MAX_PARTITIONS {
            return Err(ImportError::Unsupported {
                path: dir.join(format!("partition-{n}.log")),
                reason: format!(
                    "partition {n}: a topic may have at most {} partitions",
                    crate::broker::MAX_PARTITIONS
                ),
            });
        }
        let (log, idx) = match pair {
            (Some(log), Some(idx)) => (log, idx),
            (Some(_), None) => {
                return Err(ImportError::Missing(dir.join(format!("partition-{n}.idx"))));
            }
            (None, _) => {
                return Err(ImportError::Missing(dir.join(format!("partition-{n}.log"))));
            }
        };
        let records = validate_partition(&name, n, &log, &idx, max_record_bytes)?;
        tracing::info!(
            topic = name,
            partition = n,
            records,
            "legacy partition validated"
        );
        partitions.insert(n, PartitionPlan { log, records });
    }
    if partitions.is_empty() {
        warnings.push(format!(
            "topic {name:?} has no partition files; it is created with one empty partition"
        ));
    }
    Ok(TopicPlan { name, partitions })
}

#[cfg(test)]
mod tests {
    use super::partition_number;

    #[test]
    fn partition_file_names() {
        assert_eq!(partition_number("partition-0.log"), Some((0, "log")));
        assert_eq!(partition_number("partition-12.idx"), Some((12, "idx")));
        for bad in [
            "partition-.log",
            "partition-01.log",
            "partition--1.log",
            "partition-+1.log",
            "partition-1",
            "partition-99999999999.log",
            "p-1.log",
        ] {
            assert_eq!(partition_number(bad), None, "{bad}");
        }
    }
}
