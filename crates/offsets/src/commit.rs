//! What a caller asks to commit, and the rule (pure) that decides whether a commit may happen.
//!
//! The rule, for a commit of `offset` expecting `expected` over the stored `current`:
//! 1. compare-and-set: `current` must be what the caller expects (absent, or that offset);
//!    otherwise the commit is refused with the actual value, so two writers never silently
//!    overwrite each other;
//! 2. never backwards: `offset >= current`. Only an explicit reset moves a group back.
//!
//! Committing the current offset again is allowed (it refreshes the time and metadata).

use std::fmt;

/// The committed offset the caller last saw, which must still be current for a commit to
/// apply (compare-and-set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitExpectation {
    /// Nothing is committed yet for this partition.
    Absent,
    /// This offset is committed now.
    Offset(u64),
}

impl From<Option<u64>> for CommitExpectation {
    fn from(offset: Option<u64>) -> Self {
        match offset {
            None => CommitExpectation::Absent,
            Some(offset) => CommitExpectation::Offset(offset),
        }
    }
}

impl fmt::Display for CommitExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitExpectation::Absent => f.write_str("no committed offset"),
            CommitExpectation::Offset(offset) => write!(f, "committed offset {offset}"),
        }
    }
}

/// One partition's commit: the next offset to read, the value the caller expects to replace,
/// and an optional metadata string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition of `topic`.
    pub partition: u32,
    /// The next offset to read: every event before it is done.
    pub offset: u64,
    /// What the caller last saw (compare-and-set).
    pub expected: CommitExpectation,
    /// Caller's metadata, at most [`crate::METADATA_BYTES_MAX`] bytes; empty by default.
    pub metadata: &'a str,
}

impl<'a> Commit<'a> {
    /// A commit of `offset` for `topic`/`partition`, expecting `expected`, with no metadata.
    pub fn new(topic: &'a str, partition: u32, offset: u64, expected: CommitExpectation) -> Self {
        Commit {
            topic,
            partition,
            offset,
            expected,
            metadata: "",
        }
    }

    /// The same commit carrying `metadata`.
    #[must_use]
    pub fn with_metadata(self, metadata: &'a str) -> Self {
        Commit { metadata, ..self }
    }
}

/// Why the rule refused a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The stored value is not the expected one.
    Conflict { actual: Option<u64> },
    /// The commit would move the offset back.
    Backwards { current: u64 },
}

/// Applies the rule: may `offset` replace `current` for a caller expecting `expected`?
pub(crate) fn check(
    current: Option<u64>,
    expected: CommitExpectation,
    offset: u64,
) -> Result<(), Refusal> {
    if CommitExpectation::from(current) != expected {
        return Err(Refusal::Conflict { actual: current });
    }
    match current {
        Some(current) if offset < current => Err(Refusal::Backwards { current }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommitExpectation::{Absent, Offset};

    #[test]
    fn the_rule() {
        assert_eq!(check(None, Absent, 0), Ok(()));
        assert_eq!(check(None, Absent, 10), Ok(()));
        assert_eq!(
            check(None, Offset(0), 10),
            Err(Refusal::Conflict { actual: None })
        );
        assert_eq!(
            check(Some(5), Absent, 10),
            Err(Refusal::Conflict { actual: Some(5) })
        );
        assert_eq!(
            check(Some(5), Offset(4), 10),
            Err(Refusal::Conflict { actual: Some(5) })
        );
        assert_eq!(
            check(Some(5), Offset(6), 10),
            Err(Refusal::Conflict { actual: Some(5) })
        );
        assert_eq!(check(Some(5), Offset(5), 5), Ok(()));
        assert_eq!(check(Some(5), Offset(5), 6), Ok(()));
        assert_eq!(check(Some(5), Offset(5), u64::MAX), Ok(()));
        assert_eq!(
            check(Some(5), Offset(5), 4),
            Err(Refusal::Backwards { current: 5 })
        );
        assert_eq!(
            check(Some(5), Offset(5), 0),
            Err(Refusal::Backwards { current: 5 })
        );
    }

    #[test]
    fn a_conflict_is_reported_before_a_backwards_move() {
        // The caller's view is stale, so "backwards" relative to it means nothing yet.
        assert_eq!(
            check(Some(9), Offset(3), 1),
            Err(Refusal::Conflict { actual: Some(9) })
        );
    }

    #[test]
    fn expectations_read_well() {
        assert_eq!(CommitExpectation::from(None), Absent);
        assert_eq!(CommitExpectation::from(Some(3)), Offset(3));
        assert_eq!(Absent.to_string(), "no committed offset");
        assert_eq!(Offset(3).to_string(), "committed offset 3");
        let commit = Commit::new("t", 1, 2, Absent).with_metadata("m");
        assert_eq!(
            (
                commit.topic,
                commit.partition,
                commit.offset,
                commit.metadata
            ),
            ("t", 1, 2, "m")
        );
    }
}
