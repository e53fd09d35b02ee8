//! The crate's errors: [`Error`] (what went wrong and what the caller can do) and
//! [`DecodeError`] (why stored bytes are not a valid key or value).
//!
//! Kinds, kept apart so a caller can act on them:
//! - **damage** ([`Error::Open`] when sled refuses, [`Error::Damaged`] when our marker shows
//!   the data is gone, [`Error::Witness`] when the witness file shows the store lost commits,
//!   was re-created or is missing): the message says how an operator recovers. Nothing was
//!   written.
//! - **storage and I/O** ([`Error::Storage`], [`Error::Io`]): sled or the file
//!   system failed; the source is kept, with the operation and the directory. A failed write or
//!   sync also poisons the store ([`Error::Poisoned`]): reopen it.
//! - **corruption** ([`Error::Corrupt`]): a stored key or value does not decode; the message
//!   names the key. Never retried.
//! - **refusals** ([`Error::Conflict`], [`Error::Backwards`]): the commit rule said no; nothing
//!   was written. Re-read and decide.
//! - **in use** ([`Error::Locked`]): another store has the directory open.
//! - **usage** ([`Error::InvalidName`], [`Error::MetadataTooLong`],
//!   [`Error::DuplicatePartition`], [`Error::ForeignTree`], [`Error::InvalidConfig`]): fix the
//!   call.

use std::path::PathBuf;

use crate::commit::CommitExpectation;
use crate::name::{InvalidName, NameKind};
use crate::witness::Refusal;

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an operator does when the offsets directory is lost or damaged. Quoted by the errors
/// that may call for it, and in the crate docs and `docs/format.md`.
pub const RECOVERY: &str = "to recover, move the offsets directory aside (or restore it from \
     a backup) and accept the loss with `weir repair`, which also rewrites the offsets witness: \
     groups then restart from an earlier offset, so events are delivered again, never skipped";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// sled could not open the database: the directory is damaged or unreadable.
    #[error("cannot open the offsets database in {directory}: {source}; {RECOVERY}")]
    Open {
        /// The database directory.
        directory: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },

    /// Another store (in this process or another) has the directory open.
    #[error(
        "the offsets database in {directory} is in use by another process (or another \
             store in this one); close that one first"
    )]
    Locked {
        /// The database directory.
        directory: PathBuf,
    },

    /// sled opened the directory, but what it holds is not an intact offsets store.
    #[error("the offsets database in {directory} is damaged: {problem}; {RECOVERY}")]
    Damaged {
        /// The database directory.
        directory: PathBuf,
        /// What was found.
        problem: &'static str,
    },

    /// The witness file (see [`crate::Config::witness_path`]) does not vouch for the store:
    /// the store lost commits, was re-created or is missing, or the witness is damaged.
    /// Nothing was written.
    #[error(
        "refusing to open the offsets store in {directory} (witness {witness_path}): {refusal}; \
         nothing was changed; {}",
        .refusal.recovery()
    )]
    Witness {
        /// The database directory.
        directory: PathBuf,
        /// The witness file.
        witness_path: PathBuf,
        /// What the witness and the store disagree on.
        refusal: Refusal,
    },

    /// A sled operation failed.
    #[error("offsets database in {directory}: {operation} failed: {source}")]
    Storage {
        /// What the store was doing, e.g. `"commit transaction"`.
        operation: &'static str,
        /// The database directory.
        directory: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },

    /// A file-system call of this crate's own failed.
    #[error("offsets database: cannot {operation} {path}: {source}")]
    Io {
        /// What the store was doing, e.g. `"sync the database file"`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A stored key or value does not decode.
    #[error(
        "offsets database in {directory}: the entry for {key} is corrupt: {source}; reset or \
             delete that group's offsets, or {RECOVERY}"
    )]
    Corrupt {
        /// The database directory.
        directory: PathBuf,
        /// The key, readable: `group "g" topic "t" partition 3`, or escaped bytes if the key
        /// itself is damaged.
        key: String,
        /// What is wrong with the bytes.
        #[source]
        source: DecodeError,
    },

    /// An earlier write or sync failed, so whether it reached the disk is unknown; the store
    /// refuses further writes. Reopen it (sled recovers from its log).
    #[error(
        "offsets database in {directory} refuses writes after an earlier failed write or \
             sync; reopen it"
    )]
    Poisoned {
        /// The database directory.
        directory: PathBuf,
    },

    /// Compare-and-set failed: the committed offset is not the one the caller expected.
    /// Nothing was written.
    #[error("commit refused for group {group:?} topic {topic:?} partition {partition}: expected \
             {expected}, but {}", actual_text(*.actual))]
    Conflict {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What the caller expected.
        expected: CommitExpectation,
        /// What is committed (`None`: nothing).
        actual: Option<u64>,
    },

    /// The commit would move a group back. Nothing was written; use `reset` to move back on
    /// purpose.
    #[error(
        "commit refused for group {group:?} topic {topic:?} partition {partition}: offset \
             {requested} is behind the committed offset {current}; commits never move back, \
             a reset does"
    )]
    Backwards {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The committed offset.
        current: u64,
        /// The offset the caller tried to commit.
        requested: u64,
    },

    /// A group or topic name breaks the name rule.
    #[error("invalid {kind} name: {source}")]
    InvalidName {
        /// Which name.
        kind: NameKind,
        /// The name and what is wrong with it.
        #[source]
        source: InvalidName,
    },

    /// The metadata string is longer than [`crate::METADATA_BYTES_MAX`].
    #[error(
        "metadata for topic {topic:?} partition {partition} is {bytes} bytes; the limit is \
             {maximum}"
    )]
    MetadataTooLong {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The metadata's length.
        bytes: usize,
        /// The limit.
        maximum: usize,
    },

    /// One batch names the same partition twice.
    #[error("topic {topic:?} partition {partition} appears more than once in one commit batch")]
    DuplicatePartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },

    /// `commit_with` was given a user tree of another store, or a reserved tree name was asked
    /// for. A transaction spans one sled database only.
    #[error("user tree {name:?} {reason}")]
    ForeignTree {
        /// The tree's name.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },

    /// A config field is out of range.
    #[error("invalid offsets config: field {field} {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
}

fn actual_text(actual: Option<u64>) -> String {
    match actual {
        None => "nothing is committed".to_string(),
        Some(offset) => format!("offset {offset} is committed"),
    }
}

/// Why stored bytes are not a valid key or value (the source of [`Error::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The key's layout is wrong.
    #[error("malformed key: {reason}")]
    Key {
        /// What is wrong.
        reason: &'static str,
    },
    /// A name in the key is not UTF-8.
    #[error("the {kind} name in the key is not UTF-8")]
    KeyNotUtf8 {
        /// Which name.
        kind: NameKind,
        /// The decoder's error.
        #[source]
        source: std::str::Utf8Error,
    },
    /// A name in the key breaks the name rule.
    #[error("the {kind} name in the key is invalid")]
    KeyName {
        /// Which name.
        kind: NameKind,
        /// What is wrong with it.
        #[source]
        source: InvalidName,
    },
    /// The value is shorter than its header.
    #[error("the value is {bytes} bytes, shorter than the {minimum}-byte header")]
    Truncated {
        /// The value's length.
        bytes: usize,
        /// The header's length.
        minimum: usize,
    },
    /// The value is longer than any valid value.
    #[error("the value is {bytes} bytes, longer than the longest valid value ({maximum})")]
    TooLong {
        /// The value's length.
        bytes: usize,
        /// The longest valid value.
        maximum: usize,
    },
    /// The version byte is not one this code reads.
    #[error("unknown value version {version} (version {expected} expected here)")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
        /// The version this tree holds.
        expected: u8,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC stored in the value.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A block's entries are not laid out as version 2 lays them out.
    #[error("malformed block: {reason} (entry {entry})")]
    Block {
        /// What is wrong.
        reason: &'static str,
        /// The entry (0-based) at which it went wrong.
        entry: usize,
    },
    /// The metadata length field disagrees with the bytes left.
    #[error("the metadata length field says {stored} bytes but {left} follow")]
    MetadataLength {
        /// The length field.
        stored: usize,
        /// The bytes after the header.
        left: usize,
    },
    /// The metadata is not UTF-8.
    #[error("the metadata is not UTF-8")]
    MetadataNotUtf8 {
        /// The decoder's error.
        #[source]
        source: std::str::Utf8Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let conflict = Error::Conflict {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
            expected: CommitExpectation::Offset(5),
            actual: None,
        };
        assert_eq!(
            conflict.to_string(),
            "commit refused for group \"g\" topic \"t\" partition 2: expected committed offset 5, \
             but nothing is committed"
        );
        let corrupt = Error::Corrupt {
            directory: "/data/offsets".into(),
            key: "group \"g\" topic \"t\" partition 2".into(),
            source: DecodeError::Checksum {
                stored: 1,
                computed: 2,
            },
        };
        let message = corrupt.to_string();
        assert!(
            message.contains("group \"g\" topic \"t\" partition 2"),
            "{message}"
        );
        assert!(message.contains("never skipped"), "{message}");

        let witnessed = crate::witness::Witness {
            store_id: 0xab,
            commit_seq: 9,
        };
        let refused = Error::Witness {
            directory: "/data/offsets".into(),
            witness_path: "/data/offsets.witness".into(),
            refusal: Refusal::RolledBack {
                witnessed,
                commit_seq: 4,
                corrupt_values: 0,
            },
        };
        assert_eq!(
            refused.to_string(),
            "refusing to open the offsets store in /data/offsets (witness \
             /data/offsets.witness): sled lost committed offsets: it holds commits up to 4 but \
             commit 9 was durable; nothing was changed; restore the offsets directory from a \
             backup, or accept the loss with `weir repair` (it rewrites the witness): groups \
             whose commits were lost re-read from their older offsets, so events are delivered \
             again, never skipped"
        );
    }
}
