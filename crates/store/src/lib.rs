//! weir-store: the crate to embed. One data directory holds topics of partitions (each a
//! durable weir-log), consumer groups that read them in fixed-size batches with
//! at-least-once acknowledgement barriers (weir-batch over weir-offsets), and replay from any
//! offset or time.
//!
//! - **Produce**: [`Store::append`] with the partition chosen by key (Kafka's murmur2
//!   partitioner, so a key keeps its partition number after a move to Kafka), round-robin or
//!   explicitly; [`Store::append_expected`] for optimistic concurrency;
//!   [`Store::append_async`] from async code. An append returns once its events are fsynced
//!   (under the default sync policy); concurrent appends share fsyncs.
//! - **Consume**: [`Store::consumer`] gives a member of a group; members in one process share
//!   the group's cursor. `next_batch` (blocking) or `next_batch_async`, then `ack` or `nack`
//!   (`ack_async`, `nack_async`); [`Consumer::ack_with`] acknowledges a batch together with
//!   writes to a [`UserTree`] of your own in one durable step (exactly-once processing);
//!   [`Consumer::caught_up`] says when nothing is left to deliver.
//!   Batches that reach `max_attempts` go to the group's dead-letter topic
//!   (`weir.dlq.<group>`).
//! - **Replay**: [`Store::replay`] iterates a partition from an offset or a time, up to an
//!   end offset or following new events. It never moves a group's offsets.
//! - **Groups**: list, describe (lag in events and time, in-flight, oldest unacked age,
//!   redeliveries, dead letters), reset, delete.
//!
//! ```
//! use std::time::Duration;
//! use weir_store::{ConsumerConfig, Partitioning, Record, Store, TopicConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::builder(dir.path()).open()?;
//! store.create_topic("orders", TopicConfig::with_partitions(4))?;
//!
//! // Durable once `append` returns.
//! let produced = store.append(
//!     "orders",
//!     &[Record::new("created").key("order-7"), Record::new("paid").key("order-7")],
//!     Partitioning::ByKey,
//! )?;
//! let (partition, first) = produced.positions[0];
//! assert_eq!(produced.positions[1], (partition, first + 1), "one key, one partition, in order");
//!
//! let consumer = store.consumer("billing", "orders", ConsumerConfig::default().batch_size(2))?;
//! let batch = consumer.next_batch(Duration::from_secs(1))?.expect("two events are there");
//! assert_eq!(batch.events.len(), 2);
//! consumer.ack(&batch)?; // committed: the group resumes after these after a restart
//! store.close()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod blocking;
mod config;
mod consumer;
mod dead_letter;
mod error;
mod journal;
pub mod journal_format;
mod maintenance;
mod metrics;
mod partitioner;
pub mod recovery;
mod replay;
mod store;
mod topic;
mod user_tree;

pub use crate::config::{StoreConfig, TopicConfig, TopicSync, PARTITIONS_MAX};
pub use crate::consumer::{
    Consumer, ConsumerConfig, GroupDescription, GroupPartitionStatus, ResetTo,
};
pub use crate::dead_letter::dead_letter_topic;
pub use crate::error::{Error, Result};
pub use crate::journal::JournalRecovery;
pub use crate::partitioner::{murmur2, partition_for_key, Partitioning};
pub use crate::replay::{Replay, ReplayFrom, ReplayOptions};
pub use crate::store::{
    DamagedPartition, PartitionDescription, PartitionRecovery, Produced, Record, Store,
    StoreBuilder, StoreRecoveryReport, TopicDescription, LOCK_FILE, OFFSETS_WITNESS_FILE,
};
pub use crate::user_tree::{
    ConflictableTransactionError, ConflictableTransactionResult, UserTree, UserWrites,
};
pub use weir_batch::{Batch, BatchEvents, BatchId, CloseReason, CommitPolicy};
pub use weir_log::{Event, EventView, Header, Health};
