//! The one place that maps files into memory (memmap2 needs `unsafe`).
//!
//! Safety argument: Obelisk maps only its own index files, inside its own data directory, which it
//! holds open for as long as the mapping lives. Nothing in the process truncates a mapped file (an
//! index is unmapped before it is shrunk on sealing), and operators are told not to edit a live data
//! directory. A mapping is never handed out as a reference that outlives its owner.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

pub use memmap2::{Mmap, MmapMut};

/// Maps `file` read-only.
///
/// # Errors
/// The OS's mmap failure.
pub fn map_read(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module doc: the file is ours and is not truncated while mapped.
    unsafe { Mmap::map(file) }
}

/// Maps `file` read-write; writes through the mapping reach the file.
///
/// # Errors
/// The OS's mmap failure.
pub fn map_write(file: &File) -> io::Result<MmapMut> {
    // SAFETY: see the module doc: the file is ours and is not truncated while mapped.
    unsafe { MmapMut::map_mut(file) }
}
