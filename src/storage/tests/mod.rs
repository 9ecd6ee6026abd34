//! Storage tests that need more than one module's internals (storage is private to the crate, so
//! they live here rather than in `tests/`).

mod fixtures;
mod recovery;
