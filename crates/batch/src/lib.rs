//! weir-batch: the batch reader. It turns a partition's log into fixed-size batches, leases
//! them to the members of a consumer group, and advances the committed offset only past
//! batches that were acknowledged.
//!
//! - [`PartitionState`] is the pure state machine of one (group, partition): leases, acks and
//!   nacks in any order, the ack barrier, redelivery of the same events with `attempt + 1`
//!   before newer batches, `max_in_flight`, dead-lettering after `max_attempts`. It takes the
//!   time as an argument, so every rule is tested without sleeping.
//! - [`PartitionReader`] runs it over a `weir_log::Log` and commits the barrier through
//!   `weir_offsets::OffsetStore` (per ack, or on an interval: [`CommitPolicy`]). Members share
//!   one reader per partition; each call to [`PartitionReader::next_batch`] (blocking) or
//!   [`PartitionReader::next_batch_async`] (any executor) leases a different batch.
//! - Dead letters go to a [`DeadLetterSink`]; [`LogDeadLetterSink`] appends them to a log with
//!   headers naming the source topic, partition, offset, attempts and last nack reason.
//!
//! After a crash, delivery resumes at the committed offset: events after it may be delivered
//! again (at-least-once), none before it is. What each commit policy costs on a crash is only
//! redelivery, never loss: see [`CommitPolicy`].
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use weir_batch::{BatchConfig, MemoryDeadLetterSink, PartitionReader};
//! use weir_log::{AppendEvent, Log, LogConfig, SystemClock};
//! use weir_offsets::{Config, OffsetStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = Arc::new(Log::open(dir.path().join("orders-0"), LogConfig::default())?);
//! let offsets = Arc::new(OffsetStore::open(&Config::new(dir.path().join("offsets")))?);
//! for i in 0..10u8 {
//!     log.append(&[AppendEvent::value(&[i])])?;
//! }
//! let mut config = BatchConfig::default();
//! config.batch_size = 4;
//! let reader = PartitionReader::open(
//!     "billing", "orders", 0, log, offsets, Arc::new(MemoryDeadLetterSink::default()),
//!     config, Arc::new(SystemClock),
//! )?;
//! let batch = reader.next_batch(Duration::from_secs(1))?.expect("ten events are there");
//! assert_eq!((batch.first_offset, batch.events.len()), (0, 4));
//! reader.ack(batch.id)?; // committed durably: the group resumes at offset 4 after a restart
//! assert_eq!(reader.stats()?.committed_offset, 4);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod config;
mod dead_letter;
mod error;
mod events;
mod notify;
mod offsets;
mod reader;
mod state;

pub use crate::config::{BatchConfig, CommitPolicy, BATCH_SIZE_MAX};
pub use crate::dead_letter::{
    DeadLetter, DeadLetterSink, LogDeadLetterSink, MemoryDeadLetterSink, StoredDeadLetter,
    HEADER_ATTEMPTS, HEADER_GROUP, HEADER_LAST_REASON, HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
pub use crate::error::{BatchRef, BoxError, Error, Result};
pub use crate::events::BatchEvents;
pub use crate::notify::{Signal, Timer, WaitSet};
pub use crate::offsets::{MemoryOffsets, OffsetCommits};
pub use crate::reader::{Attempt, Batch, PartitionReader, PartitionStats, NACK_REASON_BYTES_MAX};
pub use crate::state::{
    BatchId, CloseReason, Lease, Next, PartitionState, SettleError, StateConfig, StateStats,
};
