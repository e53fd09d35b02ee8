//! [`LogConfig`]: every knob of one partition's log, with documented defaults and units in the
//! names, validated by [`LogConfig::validate`] when the log opens.

use crate::error::{Error, Result};
use crate::format::{FRAME_EVENTS_MAX, FRAME_HEADER_LEN, FRAME_LEN_MAX, SEGMENT_HEADER_LEN};

/// When appended bytes are fsynced, and so when an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// The default: an append returns only after its bytes are fsynced (`sync_data`).
    /// Concurrent appenders share one fsync (group commit). Readers see only synced events.
    #[default]
    Always,
    /// Appends return once written to the OS; an fsync runs when `interval_ms` has passed since
    /// the last one (on the append path, or when [`crate::Log::sync`] is called by a timer).
    /// **An acknowledged event can be lost** if the machine loses power within the interval.
    /// Readers see written events, which a power cut may take back.
    IntervalLossy {
        /// Milliseconds between fsyncs (≥ 1).
        interval_ms: u64,
    },
    /// Appends return once written to the OS and nothing is fsynced until the segment rolls or
    /// the log closes. **Acknowledged events can be lost** on a power cut, as with Kafka's
    /// default without replication. Readers see written events.
    NeverLossy,
}

impl SyncPolicy {
    /// True when every acknowledged append is durable.
    pub fn is_durable(&self) -> bool {
        matches!(self, SyncPolicy::Always)
    }
}

/// Configuration of one partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogConfig {
    /// Roll to a new segment once the active one would grow past this many bytes.
    /// Default 1 GiB; between 4 KiB and 2 GiB.
    pub segment_bytes_max: u64,
    /// Roll to a new segment once the active one is this old (by its creation time).
    /// Default 7 days; `None` never rolls by age.
    pub segment_age_max_ms: Option<u64>,
    /// The largest encoded event (key, headers and value together with their 18-byte framing).
    /// Default 1 MiB.
    pub event_bytes_max: u32,
    /// The most events one append may hold. Default 100,000.
    pub append_events_max: u32,
    /// The largest encoded append (one frame). Default 16 MiB; at most 64 MiB (the format's limit).
    pub append_bytes_max: u32,
    /// Bytes between sparse index entries. Default 4 KiB.
    pub index_interval_bytes: u32,
    /// When appends are fsynced. Default [`SyncPolicy::Always`].
    pub sync_policy: SyncPolicy,
    /// Refresh the recovery checkpoint once this many bytes were synced since the last one.
    /// Default 64 MiB. (The checkpoint is also refreshed at every roll and clean close.)
    pub checkpoint_interval_bytes: u64,
    /// Remove the oldest sealed segments while the log is larger than this. Default `None`.
    pub retention_bytes_max: Option<u64>,
    /// Remove sealed segments whose newest event is older than this. Default `None`.
    pub retention_age_max_ms: Option<u64>,
    /// Zeros written ahead of the active segment's end, this many bytes at a time, so that the
    /// fsync of an append rewrites blocks the file already has instead of growing it: a
    /// growing file makes every `fdatasync` commit file-system metadata too, which halves the
    /// fsync rate on ext4. Only under [`SyncPolicy::Always`] (the lossy policies rarely
    /// fsync); appends of at least half this size are written without it. The
    /// zeros are cut when a segment is sealed or the log closes, and after a crash recovery
    /// cuts them as a tail of zeros. Default 1 MiB; 0 turns it off; at most 64 MiB.
    pub preallocate_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_age_max_ms: Some(7 * 24 * 60 * 60 * 1000),
            event_bytes_max: 1 << 20,
            append_events_max: 100_000,
            append_bytes_max: 16 << 20,
            index_interval_bytes: 4096,
            sync_policy: SyncPolicy::Always,
            checkpoint_interval_bytes: 64 << 20,
            retention_bytes_max: None,
            retention_age_max_ms: None,
            preallocate_bytes: PREALLOCATE_BYTES_DEFAULT,
        }
    }
}

/// The default [`LogConfig::preallocate_bytes`].
pub const PREALLOCATE_BYTES_DEFAULT: u64 = 1 << 20;
/// The largest [`LogConfig::preallocate_bytes`] accepted.
pub const PREALLOCATE_BYTES_MAX: u64 = 64 << 20;

/// The smallest segment size accepted.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// The largest segment size accepted (positions in the index are 32-bit).
pub const SEGMENT_BYTES_LIMIT: u64 = 2 << 30;

impl LogConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(Error::InvalidConfig { field, reason });
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max) {
            return bad(
                "segment_bytes_max",
                format!(
                    "{} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT}",
                    self.segment_bytes_max
                ),
            );
        }
        if self.segment_age_max_ms == Some(0) {
            return bad(
                "segment_age_max_ms",
                "must be at least 1 ms (or None)".into(),
            );
        }
        if self.append_bytes_max > FRAME_LEN_MAX
            || (self.append_bytes_max as usize) < FRAME_HEADER_LEN + 18
        {
            return bad(
                "append_bytes_max",
                format!(
                    "{} is outside {}..={FRAME_LEN_MAX}",
                    self.append_bytes_max,
                    FRAME_HEADER_LEN + 18
                ),
            );
        }
        if self.event_bytes_max < 18
            || self.event_bytes_max as usize > self.append_bytes_max as usize - FRAME_HEADER_LEN
        {
            return bad(
                "event_bytes_max",
                format!(
                    "{} must be at least 18 and fit in one append (append_bytes_max {} minus the {FRAME_HEADER_LEN}-byte frame header)",
                    self.event_bytes_max, self.append_bytes_max
                ),
            );
        }
        if self.append_events_max == 0 || self.append_events_max > FRAME_EVENTS_MAX {
            return bad(
                "append_events_max",
                format!(
                    "{} is outside 1..={FRAME_EVENTS_MAX}",
                    self.append_events_max
                ),
            );
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be at least 1".into());
        }
        if let SyncPolicy::IntervalLossy { interval_ms: 0 } = self.sync_policy {
            return bad("sync_policy", "IntervalLossy needs interval_ms ≥ 1".into());
        }
        if self.preallocate_bytes > PREALLOCATE_BYTES_MAX {
            return bad(
                "preallocate_bytes",
                format!(
                    "{} is over {PREALLOCATE_BYTES_MAX} (0 turns preallocation off)",
                    self.preallocate_bytes
                ),
            );
        }
        if self.checkpoint_interval_bytes == 0 {
            return bad("checkpoint_interval_bytes", "must be at least 1".into());
        }
        if self.retention_bytes_max == Some(0) {
            return bad("retention_bytes_max", "must be at least 1 (or None)".into());
        }
        if self.retention_age_max_ms == Some(0) {
            return bad(
                "retention_age_max_ms",
                "must be at least 1 ms (or None)".into(),
            );
        }
        debug_assert!(SEGMENT_BYTES_MIN > SEGMENT_HEADER_LEN as u64);
        Ok(())
    }
}
