//! weir-log: one partition's durable, segmented, append-only log.
//!
//! A [`Log`] lives in one directory. Appends of 1..N events are framed, CRC-protected and
//! written to the active segment; under the default [`SyncPolicy::Always`] an append returns
//! only after its bytes are fsynced, and concurrent appenders share one fsync (group commit).
//! Readers see only durable events. Segments roll by size and age; a sparse offset and time
//! index makes reads and time lookups cheap; retention removes whole sealed segments. On open,
//! recovery keeps exactly the valid prefix: a torn tail is cut (and reported), damage to
//! acknowledged data is an [`Error::Corrupt`] naming the file and byte position.
//!
//! The byte layouts are specified in `docs/format.md` and the durability rules in
//! `docs/durability.md`. Every file-system call goes through the [`Storage`] trait, so tests
//! can inject failures and power cuts with [`sim::SimStorage`].
//!
//! ```
//! use weir_log::{AppendEvent, Log, LogConfig};
//!
//! # fn main() -> weir_log::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let log = Log::open(dir.path(), LogConfig::default())?;
//! let first = log.append(&[AppendEvent::value(b"hello"), AppendEvent::value(b"world")])?;
//! assert_eq!(first, 0);
//! // Durable now: the append returned after fsync.
//! let batch = log.read(0, 100, 1 << 20)?;
//! let values: Vec<&[u8]> = batch.iter().map(|event| event.value).collect();
//! assert_eq!(values, [&b"hello"[..], &b"world"[..]]);
//! log.close()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod append;
mod atomic;
mod checkpoint;
mod clock;
mod commit;
mod config;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod log;
mod open;
mod read;
mod reader;
pub mod recovery;
pub mod repair;
mod retention;
mod scan;
mod segment;
pub mod sim;
pub mod storage;
pub mod survey;

pub use crate::append::{JournalPoint, PendingAppend};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::config::{LogConfig, SyncPolicy, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};
pub use crate::error::{is_storage_full, Error, Result};
pub use crate::format::{AppendEvent, EventView, Header};
pub use crate::log::{
    Log, LogStats, SyncObserver, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, LOCK_FILE,
};
pub use crate::open::{OnDamage, OpenOptions, RecoveryReport};
pub use crate::read::{CheckedFrame, Event, ReadBatch, ReadEnd};
pub use crate::reader::{VerifyReport, WaitForOffset};
pub use crate::recovery::{Damage, DamageKind, Decision, Evidence, Health, TornTail};
pub use crate::retention::RetentionReport;
pub use crate::storage::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};
