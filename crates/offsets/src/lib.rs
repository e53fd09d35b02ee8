//! Committed consumer-group offsets, kept durably in sled.
//!
//! For each (group, topic, partition) the store keeps the **committed offset** — the *next*
//! offset the group reads, as in Kafka — with the time of the commit (from an injected
//! [`Clock`]) and an optional metadata string of at most [`METADATA_BYTES_MAX`] bytes.
//!
//! - **Durable**: every write returns only once it is on disk (sled `flush`, then an
//!   `fdatasync` of sled's log file; see "Durability" below).
//! - **Compare-and-set**: a [`Commit`] names the offset the caller last saw
//!   ([`CommitExpectation`]); if another writer moved it, the commit is refused with
//!   [`Error::Conflict`] carrying the actual value. A commit never moves a group backwards
//!   ([`Error::Backwards`]); only [`OffsetStore::reset`] does.
//! - **Batched**: [`OffsetStore::commit_batch`] commits many partitions in one atomic step (a
//!   compare-and-swap of one sled value per 64 partitions, or one sled transaction) and one
//!   sync.
//! - **Atomic with the caller's state**: [`OffsetStore::commit_with`] commits offsets and the
//!   caller's own writes to a [`UserTree`] in one transaction and one sync.
//! - **Clamp on open**: [`OffsetStore::clamp_to_log_ends`] moves offsets that point past the
//!   durable log end back to it, and reports them.
//! - **Admin**: [`OffsetStore::list_groups`], [`OffsetStore::describe_group`],
//!   [`OffsetStore::delete_group`], [`OffsetStore::reset`], and
//!   [`OffsetStore::delete_topic`] (every group's offsets for a topic being deleted).
//!
//! ```
//! use weir_offsets::{Commit, CommitExpectation, Config, Error, OffsetStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // The witness lives beside the offsets directory, so that it outlives that directory.
//! let config = Config::new(dir.path().join("offsets"))
//!     .with_witness_path(dir.path().join("offsets.witness"));
//! let store = OffsetStore::open(&config)?;
//! // After opening, correct anything past the durable log ends (here: orders/0 ends at 100).
//! let log_end = |topic: &str, partition: u32| (topic == "orders" && partition == 0).then_some(100);
//! let report = store.clamp_to_log_ends(log_end)?;
//! assert!(report.clamped.is_empty());
//!
//! let first = store.commit("billing", Commit::new("orders", 0, 10, CommitExpectation::Absent))?;
//! assert_eq!(first.offset, 10);
//! store.commit("billing", Commit::new("orders", 0, 20, CommitExpectation::Offset(10)))?;
//!
//! // A writer that still believes 10 is committed is refused, and told what is.
//! let stale = store.commit("billing", Commit::new("orders", 0, 15, CommitExpectation::Offset(10)));
//! assert!(matches!(stale, Err(Error::Conflict { actual: Some(20), .. })));
//!
//! // Many partitions, one durable step.
//! let commits: Vec<Commit<'_>> =
//!     (1..4).map(|p| Commit::new("orders", p, 5, CommitExpectation::Absent)).collect();
//! store.commit_batch("billing", &commits)?;
//! assert_eq!(store.describe_group("billing")?.partitions.len(), 4);
//! assert_eq!(store.list_groups()?, ["billing"]);
//!
//! // Every write took the next commit sequence; closing records the last one in the witness.
//! assert_eq!(store.commit_seq(), 3);
//! store.close()?;
//!
//! // The directory deleted: the witness says a store was there, so opening refuses.
//! std::fs::remove_dir_all(dir.path().join("offsets"))?;
//! assert!(matches!(OffsetStore::open(&config), Err(Error::Witness { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! sled 0.34's `flush` writes its log with `sync_file_range` on Linux, which flushes neither
//! the file's metadata (its length) nor the drive's write cache, so it alone does not survive a
//! power cut; sled's background thread `fsync`s only every 500 ms. This store therefore
//! follows every flush with its own `fdatasync` of sled's log file before a write returns.
//!
//! # When the directory is lost or damaged
//!
//! sled 0.34 checks its log's checksums and, at the first bad one, drops the rest of its log as
//! if it were a torn tail — without an error — and it opens some damaged directories as empty
//! databases. Neither is visible from inside the store, so the store keeps two records of
//! itself:
//!
//! - a **commit sequence**: every write that changes the offsets takes the next number and
//!   stores it with the write ([`OffsetStore::commit_seq`]);
//! - a **witness file** outside the directory ([`Config::witness_path`]), naming the store's id
//!   and a commit sequence that was durable, rewritten by [`OffsetStore::seal`].
//!
//! With a witness, [`OffsetStore::open`] refuses ([`Error::Witness`]) a store that holds fewer
//! commits than its witness says, another store, or no store at all — and writes nothing —
//! instead of opening older or empty offsets silently. If sled cannot open the directory it
//! fails with [`Error::Open`]; [`Error::Damaged`] when the store marker shows sled's data is
//! gone. Every stored value is checked at open: one that fails its checks is reported
//! ([`OffsetStore::open_report`]), reads of it fail with [`Error::Corrupt`] naming the key, and
//! [`OffsetStore::reset`] or [`OffsetStore::delete_group`] overwrites it.
//!
//! [`inspect`] reports all of this without writing anything (it opens a copy), and
//! [`repair_witness`] accepts the store as it is. To recover, put back the right directory or
//! restore it from a backup, or move the damaged one aside and accept the loss with
//! [`repair_witness`]. Groups then restart from an earlier offset — their committed offsets
//! are gone, or older — so events are **delivered again, never skipped**. This is why the
//! offsets may be lost without losing events, and why nothing else is kept in this directory.
//!
//! # Modules
//!
//! - `name`: the name rule for groups and topics ([`validate_name`]).
//! - `keys`: the key layout (pure); `record`: the value layout and [`Committed`] (pure), with
//!   the older versions read to migrate (`record::v2`, `record::v1`).
//! - `marker`: the store marker and the open decision it drives (pure); `meta`: the store id
//!   and commit sequence floor beside it (pure).
//! - `witness`: the witness file's layout and the decision opening makes from it (pure).
//! - `commit`: [`Commit`], [`CommitExpectation`] and the commit rule (pure).
//! - `store`: [`OffsetStore`], the only code in weir that uses sled; `store::open` opens it
//!   (directory, lock, marker, migration, witness check).
//! - `inspect`: [`inspect`] and [`repair_witness`].
//! - `files`: the file-system calls outside sled (the directory lock, syncing a directory, the
//!   witness file, copying a directory).
//! - `config`, `clock`, `error`: [`Config`], [`Clock`], [`Error`].
//!
//! The byte layouts are specified in `docs/format.md` ("Offsets store").
#![deny(missing_docs)]

mod clock;
mod commit;
mod config;
mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod inspect;
mod keys;
mod marker;
mod meta;
mod name;
mod record;
mod store;
mod witness;

pub use clock::{Clock, ManualClock, SystemClock};
pub use commit::{Commit, CommitExpectation};
pub use config::{Config, CACHE_CAPACITY_BYTES_DEFAULT, CACHE_CAPACITY_BYTES_MIN};
pub use error::{DecodeError, Error, Result, RECOVERY};
pub use inspect::{inspect, repair_witness, Inspection, WitnessRepair};
pub use name::{validate_name, InvalidName, NameKind, NameProblem, NAME_BYTES_MAX, NAME_RULE};
pub use record::{Committed, METADATA_BYTES_MAX};
pub use store::{
    ClampReport, Clamped, CorruptValue, GroupDescription, GroupPartition, OffsetStore, OpenReport,
    PartitionOffset, UserTree, RESERVED_TREE_PREFIX, TREE_NAME,
};

pub use witness::{
    decide as witness_decision, Refusal, StoreFound, Verdict, Witness, WitnessFound,
    WitnessProblem, WITNESS_BYTES,
};

/// The sled this crate is built on, for [`OffsetStore::open_in`] and the transactional tree
/// of [`OffsetStore::commit_with`].
pub use sled;
