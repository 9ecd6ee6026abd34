//! The one place that maps files into memory (memmap2 needs `unsafe`).
//!
//! Safety argument: Obelisk maps only its own sealed index files, read-only, inside its own data
//! directory, after writing them whole and fsyncing them (so every page has a block behind it).
//! Nothing in the process truncates or rewrites a mapped file (a rebuilt index is written to a
//! file that is mapped only afterwards), and operators are told not to edit a live data directory.
//! A mapping is never handed out as a reference that outlives its owner.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

pub use memmap2::Mmap;

/// Maps `file` read-only.
///
/// # Errors
/// The OS's mmap failure.
pub fn map_read(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module doc: the file is ours and is not truncated while mapped.
    unsafe { Mmap::map(file) }
}
