//! [`BatchConfig`]: the batch settings of a consumer group, validated at construction.

use crate::error::{Error, Result};

/// When the ack barrier is committed durably to the offsets store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPolicy {
    /// After every ack that moves the barrier (one sled flush each). On a crash, at most the
    /// batches in flight are delivered again.
    EveryAck,
    /// When `interval_ms` passed since the last commit or `acks_max` acks moved the barrier,
    /// whichever comes first (and on [`crate::PartitionReader::commit`]). On a crash, the
    /// batches acknowledged since the last commit are delivered again: redelivery, never loss.
    Interval {
        /// Milliseconds between commits (≥ 1).
        interval_ms: u64,
        /// Acks that trigger a commit early (≥ 1).
        acks_max: u32,
    },
}

/// Batch settings (see `docs/architecture.md`, "Consumers").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// Events per batch: a batch holds exactly this many unless the byte limit cut it or the
    /// tail wait ran out. Default 100.
    pub batch_size: u32,
    /// The largest batch in encoded bytes (at least one event is always delivered). Default 4 MiB.
    pub batch_bytes_max: u64,
    /// How long to wait at the tail of the log for a batch to fill before delivering what is
    /// there. Default 100 ms.
    pub max_wait_ms: u64,
    /// How long a delivered batch is leased before it is redelivered. Default 30 s.
    pub ack_timeout_ms: u64,
    /// Batches of a partition leased or waiting at once; 1 keeps a partition strictly ordered.
    /// Default 1.
    pub max_in_flight: u32,
    /// Deliveries before a batch goes to the dead-letter sink. Default 5.
    pub max_attempts: u32,
    /// When acks are committed. Default [`CommitPolicy::EveryAck`].
    pub commit_policy: CommitPolicy,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 100,
            batch_bytes_max: 4 << 20,
            max_wait_ms: 100,
            ack_timeout_ms: 30_000,
            max_in_flight: 1,
            max_attempts: 5,
            commit_policy: CommitPolicy::EveryAck,
        }
    }
}

/// Builder-style setters, so that a configuration reads in one expression despite the
/// struct being `#[non_exhaustive]`:
///
/// ```
/// use std::time::Duration;
/// use weir_batch::BatchConfig;
///
/// let config = BatchConfig::default()
///     .batch_size(500)
///     .max_in_flight(4)
///     .ack_timeout(Duration::from_secs(60));
/// assert_eq!((config.batch_size, config.max_in_flight, config.ack_timeout_ms), (500, 4, 60_000));
/// ```
impl BatchConfig {
    /// Sets [`BatchConfig::batch_size`].
    #[must_use]
    pub fn batch_size(mut self, events: u32) -> Self {
        self.batch_size = events;
        self
    }

    /// Sets [`BatchConfig::batch_bytes_max`].
    #[must_use]
    pub fn batch_bytes_max(mut self, bytes: u64) -> Self {
        self.batch_bytes_max = bytes;
        self
    }

    /// Sets [`BatchConfig::max_wait_ms`].
    #[must_use]
    pub fn max_wait(mut self, wait: std::time::Duration) -> Self {
        self.max_wait_ms = millis(wait);
        self
    }

    /// Sets [`BatchConfig::ack_timeout_ms`].
    #[must_use]
    pub fn ack_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.ack_timeout_ms = millis(timeout);
        self
    }

    /// Sets [`BatchConfig::max_in_flight`].
    #[must_use]
    pub fn max_in_flight(mut self, batches: u32) -> Self {
        self.max_in_flight = batches;
        self
    }

    /// Sets [`BatchConfig::max_attempts`].
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`BatchConfig::commit_policy`].
    #[must_use]
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.commit_policy = policy;
        self
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The largest `batch_size` accepted.
pub const BATCH_SIZE_MAX: u32 = 1_000_000;

impl BatchConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.batch_size == 0 || self.batch_size > BATCH_SIZE_MAX {
            return bad("batch_size", "must be between 1 and 1,000,000");
        }
        if self.batch_bytes_max == 0 {
            return bad("batch_bytes_max", "must be at least 1");
        }
        if self.ack_timeout_ms == 0 {
            return bad("ack_timeout_ms", "must be at least 1 ms");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if let CommitPolicy::Interval {
            interval_ms,
            acks_max,
        } = self.commit_policy
        {
            if interval_ms == 0 || acks_max == 0 {
                return bad(
                    "commit_policy",
                    "Interval needs interval_ms ≥ 1 and acks_max ≥ 1",
                );
            }
        }
        Ok(())
    }
}
