//! The store to embed: topics, partitions, consumer groups and replay over weir-log.
//!
//! **Not built yet.** This crate is an empty placeholder in the workspace so that the crate
//! graph of `docs/architecture.md` is visible from the start; it exports nothing. Its work is
//! tracked in issue 5.
#![deny(missing_docs)]
