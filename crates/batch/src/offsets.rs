//! [`OffsetCommits`]: the seam between the reader and where committed offsets live. The
//! production implementation is `weir_offsets::OffsetStore` (durable: sled `flush` before a
//! commit returns); [`MemoryOffsets`] keeps them in memory for model tests.

use std::collections::HashMap;
use std::sync::Mutex;

use weir_offsets::{Commit, CommitExpectation, OffsetStore};

use crate::error::Result;

/// Reads and commits a group's offset for one partition.
pub trait OffsetCommits: Send + Sync + std::fmt::Debug {
    /// The committed offset (the next to read), if any.
    ///
    /// # Errors
    /// The store's failure.
    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;

    /// Commits `offset` durably if the stored value is still `expected` (compare-and-set).
    ///
    /// # Errors
    /// The store's failure, or its refusal (conflict, backwards).
    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        expected: Option<u64>,
    ) -> Result<()>;

    /// Sets the committed offset to `offset`, even backwards (clamping a stale value).
    ///
    /// # Errors
    /// The store's failure.
    fn reset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()>;
}

impl OffsetCommits for OffsetStore {
    fn reset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()> {
        OffsetStore::reset(self, group, topic, partition, offset)?;
        Ok(())
    }

    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        Ok(self
            .get(group, topic, partition)?
            .map(|committed| committed.offset))
    }

    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        expected: Option<u64>,
    ) -> Result<()> {
        OffsetStore::commit(
            self,
            group,
            Commit::new(topic, partition, offset, CommitExpectation::from(expected)),
        )?;
        Ok(())
    }
}

/// Committed offsets in memory: "durable" for as long as the value lives (tests simulate a
/// crash by reopening readers over the same `MemoryOffsets`).
#[derive(Debug, Default)]
pub struct MemoryOffsets {
    offsets: Mutex<HashMap<(String, String, u32), u64>>,
}

impl OffsetCommits for MemoryOffsets {
    fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let offsets = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(offsets
            .get(&(group.to_string(), topic.to_string(), partition))
            .copied())
    }

    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        expected: Option<u64>,
    ) -> Result<()> {
        let mut offsets = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (group.to_string(), topic.to_string(), partition);
        let current = offsets.get(&key).copied();
        assert_eq!(
            current, expected,
            "compare-and-set: the reader's expectation must be exact"
        );
        assert!(
            current.is_none_or(|current| offset >= current),
            "commits never go backwards"
        );
        offsets.insert(key, offset);
        Ok(())
    }

    fn reset(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Result<()> {
        let mut offsets = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        offsets.insert((group.to_string(), topic.to_string(), partition), offset);
        Ok(())
    }
}
