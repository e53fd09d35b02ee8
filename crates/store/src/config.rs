//! Configuration: [`StoreConfig`] for the store as a whole (built with [`crate::StoreBuilder`]),
//! and [`TopicConfig`] for each topic. Every field has a documented default and units in its
//! name; everything is validated when the store opens or the topic is created, and a bad value
//! is an error naming the field.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_log::{Clock, LogConfig, SyncPolicy, SystemClock};

use crate::error::{Error, Result};

/// The most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 4096;

/// Durability of a topic's appends (see `docs/durability.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicSync {
    /// The default: an append returns after its fsync (group commit).
    #[default]
    Always,
    /// Appends return before their fsync; one runs every `interval_ms`. **Acknowledged events
    /// of the last interval can be lost** on a power cut.
    IntervalLossy {
        /// Milliseconds between fsyncs.
        interval_ms: u64,
    },
    /// Appends are fsynced only when a segment rolls or the store closes. **Acknowledged events
    /// can be lost** on a power cut.
    NeverLossy,
}

impl From<TopicSync> for SyncPolicy {
    fn from(sync: TopicSync) -> SyncPolicy {
        match sync {
            TopicSync::Always => SyncPolicy::Always,
            TopicSync::IntervalLossy { interval_ms } => SyncPolicy::IntervalLossy { interval_ms },
            TopicSync::NeverLossy => SyncPolicy::NeverLossy,
        }
    }
}

/// A topic's settings, fixed at creation and stored in its metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopicConfig {
    /// Number of partitions (1..=4096). Default 1.
    pub partitions: u32,
    /// Per partition: remove the oldest sealed segments while larger than this. Default `None`.
    pub retention_bytes_max: Option<u64>,
    /// Remove sealed segments whose newest event is older than this. Default `None`.
    pub retention_age_max_ms: Option<u64>,
    /// Roll segments at this size. Default 1 GiB.
    pub segment_bytes_max: u64,
    /// Roll segments at this age. Default 7 days.
    pub segment_age_max_ms: Option<u64>,
    /// When appends are fsynced. Default [`TopicSync::Always`].
    pub sync: TopicSync,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        TopicConfig {
            partitions: 1,
            retention_bytes_max: None,
            retention_age_max_ms: None,
            segment_bytes_max: log.segment_bytes_max,
            segment_age_max_ms: log.segment_age_max_ms,
            sync: TopicSync::Always,
        }
    }
}

impl TopicConfig {
    /// A topic with `partitions` partitions and default settings.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        }
    }

    /// The log configuration of one partition of this topic under the store's limits.
    pub(crate) fn log_config(&self, store: &StoreConfig) -> LogConfig {
        let mut config = LogConfig::default();
        config.segment_bytes_max = self.segment_bytes_max;
        config.segment_age_max_ms = self.segment_age_max_ms;
        config.retention_bytes_max = self.retention_bytes_max;
        config.retention_age_max_ms = self.retention_age_max_ms;
        config.sync_policy = self.sync.into();
        config.event_bytes_max = store.event_bytes_max;
        config.append_bytes_max = store.append_bytes_max;
        config
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self, store: &StoreConfig) -> Result<()> {
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return Err(Error::InvalidConfig {
                field: "partitions".into(),
                reason: format!("{} is outside 1..={PARTITIONS_MAX}", self.partitions),
            });
        }
        self.log_config(store)
            .validate()
            .map_err(|error| match error {
                weir_log::Error::InvalidConfig { field, reason } => Error::InvalidConfig {
                    field: topic_field(field).to_string(),
                    reason,
                },
                other => Error::InvalidConfig {
                    field: "topic".into(),
                    reason: other.to_string(),
                },
            })
    }
}

/// The topic-level name of a log config field.
fn topic_field(log_field: &'static str) -> &'static str {
    match log_field {
        "sync_policy" => "sync",
        "event_bytes_max" | "append_bytes_max" => log_field,
        other => other,
    }
}

/// The store's settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The largest encoded event (key, headers, value and 18 bytes of framing). Default 1 MiB.
    pub event_bytes_max: u32,
    /// The largest encoded append to one partition. Default 16 MiB.
    pub append_bytes_max: u32,
    /// How often the background thread applies retention, fsyncs `IntervalLossy` topics,
    /// commits interval-policy groups and publishes metrics. Default 1,000 ms.
    pub maintenance_interval_ms: u64,
    /// Threads that run blocking calls for the async API (`append_async`). Default 16.
    pub blocking_threads: usize,
    /// Appends to a durable ([`TopicSync::Always`]) partition whose frame is at most this many
    /// bytes are made durable by the store's journal: one fsync per group commit for all the
    /// partitions they went to, instead of one per partition (see `docs/durability.md`, "The
    /// journal"). Larger appends fsync their own segment, so their bytes are not written
    /// twice. Default 64 KiB; 0 turns the journal off.
    pub journal_frame_bytes_max: u32,
    /// A journal file is retired once it is this large: a new one takes the writes, the
    /// segments the old one covered are fsynced, and it is removed. Default 64 MiB; at least
    /// 16 KiB.
    pub journal_bytes_max: u64,
    /// Open as `weir repair` does: a journal file with a damaged block is salvaged (every
    /// valid block written back) instead of refused, and where a partition lacks events that
    /// a journaled frame follows (the damaged block held them), a lost-events marker records
    /// them (`JournalRecovery::lost`). Default false.
    pub journal_repair: bool,
    /// The clock stamping events and timing leases (tests inject a manual one).
    pub clock: Arc<dyn Clock>,
    /// The file system under topics and partitions: the real one by default; fault tests
    /// inject `weir_log::sim::SimStorage`. (Group offsets live in sled on the real one.)
    pub storage: Arc<dyn weir_log::Storage>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("event_bytes_max", &self.event_bytes_max)
            .field("append_bytes_max", &self.append_bytes_max)
            .field("maintenance_interval_ms", &self.maintenance_interval_ms)
            .field("blocking_threads", &self.blocking_threads)
            .field("journal_frame_bytes_max", &self.journal_frame_bytes_max)
            .field("journal_bytes_max", &self.journal_bytes_max)
            .field("journal_repair", &self.journal_repair)
            .finish_non_exhaustive()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        StoreConfig {
            event_bytes_max: log.event_bytes_max,
            append_bytes_max: log.append_bytes_max,
            maintenance_interval_ms: 1_000,
            blocking_threads: 16,
            journal_frame_bytes_max: JOURNAL_FRAME_BYTES_MAX_DEFAULT,
            journal_bytes_max: JOURNAL_BYTES_MAX_DEFAULT,
            journal_repair: false,
            clock: Arc::new(SystemClock),
            storage: Arc::new(weir_log::StdStorage),
        }
    }
}

impl StoreConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if self.maintenance_interval_ms == 0 {
            return Err(Error::InvalidConfig {
                field: "maintenance_interval_ms".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.blocking_threads == 0 || self.blocking_threads > 1024 {
            return Err(Error::InvalidConfig {
                field: "blocking_threads".into(),
                reason: "must be within 1..=1024".into(),
            });
        }
        if self.journal_bytes_max < JOURNAL_BYTES_MIN {
            return Err(Error::InvalidConfig {
                field: "journal_bytes_max".into(),
                reason: format!(
                    "{} is under the least accepted, {JOURNAL_BYTES_MIN} (16 KiB)",
                    self.journal_bytes_max
                ),
            });
        }
        TopicConfig::default().validate(self)
    }
}

/// The default [`StoreConfig::journal_frame_bytes_max`].
pub const JOURNAL_FRAME_BYTES_MAX_DEFAULT: u32 = 64 * 1024;
/// The default [`StoreConfig::journal_bytes_max`].
pub const JOURNAL_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// The least [`StoreConfig::journal_bytes_max`] accepted.
pub const JOURNAL_BYTES_MIN: u64 = 16 * 1024;
