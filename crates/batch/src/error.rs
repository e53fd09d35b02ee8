//! The one error type of weir-batch: failures of the log, the offsets store or the dead-letter
//! sink (keeping their source), and usage errors (bad config, an ack that cannot apply).

use crate::state::BatchId;

/// weir-batch's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// A boxed error from a dead-letter sink.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in weir-batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the partition's log failed (I/O, corruption, poisoned: see the source).
    #[error("reading the log failed: {0}")]
    Log(#[from] weir_log::Error),

    /// Reading or committing the group's offset failed (I/O, corruption, conflict: see the source).
    #[error("the offsets store failed: {0}")]
    Offsets(#[from] weir_offsets::Error),

    /// The dead-letter sink refused a batch; it stays waiting and is tried again.
    #[error("the dead-letter sink failed for offsets {first_offset}..{end_offset}: {source}")]
    DeadLetter {
        /// First offset of the batch.
        first_offset: u64,
        /// End offset of the batch.
        end_offset: u64,
        /// The sink's error.
        #[source]
        source: BoxError,
    },

    /// Events of a batch are gone from the log (removed by retention) before it was settled.
    #[error(
        "events {first_offset}..{end_offset} are no longer in the log (it starts at {log_start})"
    )]
    EventsRemoved {
        /// First offset of the batch.
        first_offset: u64,
        /// End offset of the batch.
        end_offset: u64,
        /// The log's start offset now.
        log_start: u64,
    },

    /// No batch with this id was delivered on this partition (or it is too old to remember).
    #[error(
        "unknown {0}: no such batch was delivered on this partition, or it is too old to remember"
    )]
    UnknownBatch(BatchRef),

    /// The batch's lease ran out and it was redelivered; the new holder settles it.
    #[error("the lease of {0} ran out and the batch was redelivered: its new holder settles it")]
    LeaseExpired(BatchRef),

    /// The batch was already acknowledged, nacked or dead-lettered through this id.
    #[error("{0} was already settled (acknowledged, nacked or dead-lettered through this id)")]
    AlreadySettled(BatchRef),

    /// The store the reader belongs to is closed: nothing more is read, acknowledged or
    /// committed.
    #[error("the store is closed")]
    Closed,

    /// A configuration field is invalid.
    #[error("invalid batch config field `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Which batch an error is about: its id, partition and, when known, first offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef {
    /// The delivery's id.
    pub id: BatchId,
    /// The partition.
    pub partition: u32,
    /// The batch's first offset, if the reader still knows it.
    pub first_offset: Option<u64>,
}

impl std::fmt::Display for BatchRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {} of partition {}", self.id, self.partition)?;
        if let Some(first) = self.first_offset {
            write!(f, " (from offset {first})")?;
        }
        Ok(())
    }
}
