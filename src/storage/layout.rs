//! Where things live in a data directory: the one place that names segment files, so a format
//! change renames them once.
//!
//! ```text
//! topics/<topic>/topic.json
//! topics/<topic>/<partition>/<base>.log | .index | .timeindex
//! ```
//! `<base>` is the offset of the segment's first record in 20 digits, so names sort like offsets.

use std::path::{Path, PathBuf};

/// A topic's persisted settings, inside its directory.
pub const TOPIC_CONFIG_FILE: &str = "topic.json";

/// The files of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFile {
    Log,
    Index,
    TimeIndex,
}

impl SegmentFile {
    fn extension(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Index => "index",
            Self::TimeIndex => "timeindex",
        }
    }
}

/// The path of one of the files of the segment starting at `base`.
pub fn segment_path(dir: &Path, base: u64, file: SegmentFile) -> PathBuf {
    dir.join(format!("{base:020}.{}", file.extension()))
}

/// The base offset of a segment's log file name (`00000000000000000042.log` → 42).
pub fn log_file_base(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The base offsets of every segment log in a partition directory, sorted.
///
/// # Errors
/// I/O errors listing the directory.
pub fn segment_bases(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(base) = entry?.file_name().to_str().and_then(log_file_base) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/d"), 42, SegmentFile::Log);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(log_file_base(name), Some(42));
        assert_eq!(
            segment_path(Path::new("/d"), 7, SegmentFile::TimeIndex),
            Path::new("/d/00000000000000000007.timeindex")
        );
        for bad in ["x.log", ".log", "12.index", "+1.log", "1 .log"] {
            assert_eq!(log_file_base(bad), None, "{bad}");
        }
    }
}
