//! The tokio client for a weir node.
//!
//! **Not built yet.** This crate is an empty placeholder in the workspace so that the crate
//! graph of `docs/architecture.md` is visible from the start; it exports nothing. Its work is
//! tracked in issue 6.
#![deny(missing_docs)]
