//! The one error type of weir-store. Errors from the crates below keep their source; the ones a
//! caller acts on (a name, a limit, an offset) get their own variants naming the topic and
//! partition.

use std::path::PathBuf;

/// weir-store's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in weir-store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call on the store's own files failed.
    #[error("I/O error while trying to {op} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A partition's log failed: I/O, corruption (file and byte position), or poisoned after a
    /// failed write or fsync (reopen the store).
    #[error("topic {topic:?} partition {partition}: {source}")]
    Log {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The log's error.
        #[source]
        source: weir_log::Error,
    },

    /// The offsets store failed or refused (conflict, damage: see the source).
    #[error("offsets store: {0}")]
    Offsets(#[source] Box<weir_offsets::Error>),

    /// The batch reader failed or refused an ack or nack (see the source).
    #[error("consumer: {0}")]
    Batch(#[source] Box<weir_batch::Error>),

    /// One partition of a consumer group failed to deliver (and no other had a batch).
    #[error("topic {topic:?} partition {partition}: {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The reader's error.
        #[source]
        source: Box<weir_batch::Error>,
    },

    /// A store file is damaged (topic metadata).
    #[error("corrupt store file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Another process (or another `Store` in this one) has the data directory open.
    #[error("the data directory is locked by another process or handle ({})", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A topic or group name breaks the naming rule.
    #[error("{0}")]
    InvalidName(#[from] weir_offsets::InvalidName),

    /// A configuration field is invalid.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },

    /// A topic of that name exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),

    /// No topic of that name exists.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),

    /// The partition is not one of the topic's.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} is out of range")]
    PartitionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// The topic's partition count.
        partitions: u32,
    },

    /// An event or append breaks a limit or cannot be encoded (checked before anything is written).
    #[error("topic {topic:?} partition {partition}: {source}")]
    InvalidEvent {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the log said.
        #[source]
        source: weir_log::Error,
    },

    /// `expected_offset` did not match the partition's end (optimistic concurrency).
    #[error("topic {topic:?} partition {partition}: expected the end at offset {expected}, but it is {actual}")]
    UnexpectedOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the caller expected.
        expected: u64,
        /// The partition's actual end offset.
        actual: u64,
    },

    /// An offset below the partition's start (removed by retention) or past its end.
    #[error(
        "topic {topic:?} partition {partition}: offset {offset} is out of range {start}..{end}"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The first offset.
        start: u64,
        /// The end offset.
        end: u64,
    },

    /// A produce that cannot be done as asked (e.g. `expected_offset` over several partitions).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The group has consumers in this process; stop them before resetting or deleting it.
    #[error("group {group:?} is active on topic {topic:?}: drop its consumers first")]
    GroupActive {
        /// The group.
        group: String,
        /// The topic it consumes.
        topic: String,
    },

    /// The group runs with other batch settings in this process.
    #[error("group {group:?} on topic {topic:?} already runs with other batch settings")]
    GroupConfigMismatch {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
    },

    /// The group has no committed offsets and no consumers.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),

    /// Events of a partition were lost to damage: `weir repair` replaced the damaged bytes with
    /// a marker that stands for these offsets. Reads and replay report them and go on after
    /// them; consumer groups step over them.
    #[error("topic {topic:?} partition {partition}: offsets {first_offset}..{end_offset} were lost to damage (`weir repair` marked them)")]
    EventsLost {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The first lost offset.
        first_offset: u64,
        /// The offset after the last lost one.
        end_offset: u64,
    },

    /// The store was closed.
    #[error("the store is closed")]
    Closed,

    /// A write or fsync of the store's journal failed, so the store acknowledges no more
    /// appends to durable topics until it is reopened (fail-stop: a failed fsync is never
    /// retried). Reopening replays the journal.
    #[error("the store's journal failed and the store must be reopened: {cause}")]
    JournalPoisoned {
        /// The first failure.
        cause: String,
    },
}

impl From<weir_offsets::Error> for Error {
    fn from(error: weir_offsets::Error) -> Error {
        Error::Offsets(Box::new(error))
    }
}

impl From<weir_batch::Error> for Error {
    fn from(error: weir_batch::Error) -> Error {
        match error {
            // A closed store says so the same way everywhere.
            weir_batch::Error::Closed | weir_batch::Error::Log(weir_log::Error::Closed) => {
                Error::Closed
            }
            other => Error::Batch(Box::new(other)),
        }
    }
}

impl Error {
    /// The batch reader's error inside, if this is one (for matching on it).
    pub fn as_batch(&self) -> Option<&weir_batch::Error> {
        match self {
            Error::Batch(error) | Error::Partition { source: error, .. } => Some(error),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Maps a log error to the store's variant for it, naming the topic and partition.
    pub(crate) fn from_log(topic: &str, partition: u32, error: weir_log::Error) -> Error {
        let topic = topic.to_string();
        match error {
            weir_log::Error::UnexpectedOffset { expected, actual } => Error::UnexpectedOffset {
                topic,
                partition,
                expected,
                actual,
            },
            weir_log::Error::OffsetOutOfRange { offset, start, end } => Error::OffsetOutOfRange {
                topic,
                partition,
                offset,
                start,
                end,
            },
            source @ (weir_log::Error::EmptyAppend
            | weir_log::Error::EventTooLarge { .. }
            | weir_log::Error::AppendTooLarge { .. }
            | weir_log::Error::InvalidEvent { .. }) => Error::InvalidEvent {
                topic,
                partition,
                source,
            },
            weir_log::Error::Closed => Error::Closed,
            source => Error::Log {
                topic,
                partition,
                source,
            },
        }
    }

    /// True if bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corrupt { .. } => true,
            Error::Log { source, .. } => source.is_corruption(),
            Error::Batch(batch) | Error::Partition { source: batch, .. } => {
                matches!(batch.as_ref(), weir_batch::Error::Log(source) if source.is_corruption())
            }
            _ => false,
        }
    }
}
