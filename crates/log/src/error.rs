//! The one error type of weir-log. Variants are split by what the caller can do: retry or fix
//! the environment (`Io`), stop and call an operator (`Corrupt`), reopen (`Poisoned`), or fix
//! the call (everything else).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::format::DecodeError;

/// weir-log's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in weir-log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed.
    #[error("I/O error while trying to {op} {}: {source}", path.display())]
    Io {
        /// What weir-log was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The device is full (`ENOSPC`, or a quota: `EDQUOT`) while writing. Not fail-stop: the
    /// partial bytes were cut away, nothing of the append was written or acknowledged, and the
    /// log takes writes again once space is freed (see `docs/durability.md`, "Disk full").
    #[error("no space left on the device while trying to {op} {}: nothing was written; writes resume when space is freed ({source})", path.display())]
    StorageFull {
        /// What weir-log was doing.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Bytes on disk that should be valid are not: a bad frame in a sealed segment or below the
    /// recovery checkpoint, a damaged header, a missing segment. Never repaired silently; an
    /// operator decides (see `docs/operations.md`).
    #[error("corruption in {} at byte {position}: {reason}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte position of the damage in `file`.
        position: u64,
        /// What is wrong.
        reason: String,
    },

    /// An earlier write or fsync failed, so this log refuses writes until it is reopened and
    /// recovered (fail-stop: a failed fsync is never retried).
    #[error("the log is poisoned by an earlier failure and must be reopened: {cause}")]
    Poisoned {
        /// The failure that poisoned the log.
        #[source]
        cause: Arc<Error>,
    },

    /// Acknowledged data of this log is damaged (found at open, or by a read): the log serves
    /// reads below the damage and takes no writes until `weir repair` mends it (see
    /// `docs/operations.md`). Nothing was written.
    #[error("the log's acknowledged data is damaged, so it takes no writes until `weir repair` mends it: {cause}")]
    Damaged {
        /// The damage (an [`Error::Corrupt`] naming the file and byte position).
        #[source]
        cause: Arc<Error>,
    },

    /// Another process (or another handle in this one) has the log's directory open.
    #[error("{} is locked by another process or handle", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A configuration field is invalid.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// The field's name.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },

    /// An append of zero events.
    #[error("an append needs at least one event")]
    EmptyAppend,

    /// One event is larger than the configured limit.
    #[error("event {index} of the append is {bytes} bytes, over the limit of {bytes_max} bytes (event_bytes_max)")]
    EventTooLarge {
        /// Position of the event in the append.
        index: usize,
        /// Its encoded size.
        bytes: u64,
        /// The limit.
        bytes_max: u64,
    },

    /// The append holds more events or bytes than one append may.
    #[error("the append is too large: {what} is {actual}, over the limit of {limit} ({field})")]
    AppendTooLarge {
        /// What was counted (`events` or `bytes`).
        what: &'static str,
        /// The count.
        actual: u64,
        /// The limit.
        limit: u64,
        /// The config field that sets the limit.
        field: &'static str,
    },

    /// A header name or an event field cannot be stored in the format.
    #[error("event {index} of the append cannot be encoded: {reason}")]
    InvalidEvent {
        /// Position of the event in the append.
        index: usize,
        /// Why.
        reason: &'static str,
    },

    /// `expected_offset` did not match the log's end.
    #[error("expected the log to end at offset {expected}, but it ends at {actual}")]
    UnexpectedOffset {
        /// What the caller expected.
        expected: u64,
        /// The log's actual end offset.
        actual: u64,
    },

    /// An offset below the log's start (removed by retention) or past its end.
    #[error("offset {offset} is out of range: the log holds offsets {start}..{end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The log's first offset.
        start: u64,
        /// The log's end offset (next to be written).
        end: u64,
    },

    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An error from writing `path`: [`Error::StorageFull`] when the device is full,
    /// [`Error::Io`] otherwise.
    pub(crate) fn write(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        if is_storage_full(&source) {
            Error::StorageFull {
                op,
                path: path.into(),
                source,
            }
        } else {
            Error::io(op, path, source)
        }
    }

    /// True when the device was full ([`Error::StorageFull`]): the caller may retry once space
    /// is freed; nothing of the failed write is on disk.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::StorageFull { .. })
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        position: u64,
        reason: impl std::fmt::Display,
    ) -> Error {
        Error::Corrupt {
            file: file.into(),
            position,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn decode(file: impl Into<PathBuf>, position: u64, error: DecodeError) -> Error {
        Error::corrupt(file, position, error)
    }

    /// True for errors that mean bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::Damaged { .. })
    }
}

/// True for an I/O error that means the device (or the user's quota) is full (weir-store's
/// journal asks it too).
pub fn is_storage_full(error: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}
