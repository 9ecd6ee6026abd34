//! The one place that maps files into memory (memmap2 needs `unsafe`).
//!
//! Safety argument. A mapped file that shrinks under its mapping makes a touch of the lost pages
//! raise SIGBUS, and one rewritten in place changes bytes a reader holds; so what matters is who
//! may truncate or rewrite each kind of mapped file, and why none of that reaches a mapped byte.
//! In every case the files are Obelisk's own, inside its own data directory, mapped read-only,
//! and operators are told not to edit a live data directory (the offline tools, `inspect` and
//! repairs, run on a stopped broker).
//!
//! - **Sealed index files** ([`map_read`]) are mapped after being written whole and fsynced (every
//!   page has a block behind it). Nothing in the process truncates or rewrites them: a rebuilt
//!   index is written to a file that is mapped only afterwards.
//! - **Segment logs** ([`map_log`], issue 12: reads hand out `Bytes` slices of the map instead of
//!   copying). A log is mapped only up to the length it has when mapped, and reads touch only
//!   acknowledged records, which lie below the partition's acknowledged end. What can shorten or
//!   rewrite a log, and why no acknowledged byte is ever affected:
//!   - *recovery* (cutting a torn tail) runs when a segment is opened, before it is mapped;
//!   - *a failed write or fdatasync* cuts the log back to where the batch began, i.e. to the
//!     acknowledged end, and a retry after a storage failure cuts it back to the acknowledged end
//!     too (`PartitionCore::retry_writes`): only unacknowledged bytes go, which no reader may
//!     touch (the segment also drops its map when cut below it, so later reads do not use it);
//!   - *retention* deletes whole sealed segments: unlinking a mapped file keeps its pages valid
//!     until the last slice of the map is dropped;
//!   - there is no compaction, and a log is never rewritten in place (damage is remembered, not
//!     repaired).
//!
//! A map is owned by the `Bytes` made from it, so no slice outlives its mapping.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;
pub use memmap2::Mmap;

/// Maps the first `len` bytes of the segment log `file` read-only, as one `Bytes` (its slices
/// keep the map alive). `len` must not exceed the file's length; an empty range maps nothing.
///
/// # Errors
/// The OS's mmap failure.
pub fn map_log(file: &File, len: u64) -> io::Result<Bytes> {
    let Ok(len @ 1..) = usize::try_from(len) else {
        return Ok(Bytes::new());
    };
    // SAFETY: see the module doc: bytes below `len` are never cut or rewritten while mapped, and
    // readers touch only acknowledged records.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Maps `file` read-only.
///
/// # Errors
/// The OS's mmap failure.
pub fn map_read(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module doc: the file is ours and is not truncated while mapped.
    unsafe { Mmap::map(file) }
}
