//! The recovery checkpoint of a [`Log`]: a durably recorded position up to which the log is
//! known to be fsynced, and the log's start offset (`docs/format.md`). It is replaced
//! atomically, only ever moves forward in the log, and never names a position that is not
//! durable.

use crate::atomic;
use crate::error::{Error, Result};
use crate::format::Checkpoint;
use crate::log::{EndPoint, Log, CHECKPOINT_FILE};
use crate::segment::lock;

impl Log {
    /// Records in the recovery checkpoint how far the segment files are fsynced, if that moved
    /// since it was last written. Group commits refresh it only every
    /// [`crate::LogConfig::checkpoint_interval_bytes`]; weir-store calls this from its
    /// maintenance thread every second, so that a frame damaged after it was acknowledged is
    /// known for acknowledged (damage, not a torn tail) even when nothing was appended after
    /// it. A read-only (damaged) or closed log writes nothing.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the checkpoint cannot be written (not for a
    /// full device: the old checkpoint only lags).
    pub fn refresh_checkpoint(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.read_only || inner.poison.get().is_some() || lock(&inner.visible).closed {
            return Ok(());
        }
        let fsynced = lock(&inner.sync).fsynced;
        let refreshed =
            self.update_checkpoint(|checkpoint| advance_checkpoint(checkpoint, fsynced));
        self.checkpoint_lags_if_full(refreshed)
    }

    /// A checkpoint refresh that failed only because the device is full is not an error for
    /// the caller: the old checkpoint stays on disk and is still true (recovery scans a little
    /// more), and the next refresh tries again.
    pub(crate) fn checkpoint_lags_if_full(&self, refreshed: Result<()>) -> Result<()> {
        match refreshed {
            Err(error) if error.is_storage_full() => {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "recovery checkpoint not refreshed: the device is full");
                Ok(())
            }
            other => other,
        }
    }

    /// Rewrites the recovery checkpoint durably after `change`. A full device fails the refresh
    /// with [`Error::StorageFull`] without poisoning the log (the old checkpoint is intact).
    pub(crate) fn update_checkpoint(&self, change: impl FnOnce(&mut Checkpoint)) -> Result<()> {
        let inner = &self.inner;
        let mut checkpoint = lock(&inner.checkpoint);
        let mut next = *checkpoint;
        change(&mut next);
        if next == *checkpoint {
            return Ok(());
        }
        let path = inner.dir.join(CHECKPOINT_FILE);
        let written =
            atomic::write_file(&*inner.storage, &path, &next.encode(), true).and_then(|()| {
                inner
                    .storage
                    .sync_dir(&inner.dir)
                    .map_err(|e| Error::io("fsync directory", &inner.dir, e))
            });
        match written {
            Ok(()) => {}
            // The old checkpoint is still in place and still true (it only lags), so a full
            // disk is not fail-stop here: the caller's step fails and is retried later.
            Err(error) if error.is_storage_full() => return Err(error),
            Err(error) => return Err(self.poison(error)),
        }
        *checkpoint = next;
        Ok(())
    }
}

/// Moves the checkpoint's durable position to `durable`, only forwards by position in the log
/// (segment, then byte): a round that fsynced the end of a segment before a roll must not move
/// it back from the new segment into the old one (at the same offset), which retention may have
/// removed since.
pub(crate) fn advance_checkpoint(checkpoint: &mut Checkpoint, durable: EndPoint) {
    if (durable.segment_base, durable.position)
        > (checkpoint.segment_base_offset, checkpoint.position)
    {
        checkpoint.segment_base_offset = durable.segment_base;
        checkpoint.position = durable.position;
        checkpoint.next_offset = durable.next_offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SEGMENT_HEADER_LEN;

    #[test]
    fn the_checkpoint_never_moves_back_into_an_older_segment() {
        // After a roll at offset 100 the checkpoint names the new segment's start.
        let rolled = Checkpoint {
            start_offset: 0,
            segment_base_offset: 100,
            position: SEGMENT_HEADER_LEN as u64,
            next_offset: 100,
        };
        // A round that fsynced the old segment's end (the same offset) finishes late.
        let mut checkpoint = rolled;
        let old_end = EndPoint {
            next_offset: 100,
            segment_base: 0,
            position: 4_000,
        };
        advance_checkpoint(&mut checkpoint, old_end);
        assert_eq!(checkpoint, rolled, "moved back into the sealed segment");
        // A later position in the new segment moves it.
        let later = EndPoint {
            next_offset: 105,
            segment_base: 100,
            position: 600,
        };
        advance_checkpoint(&mut checkpoint, later);
        assert_eq!(
            (
                checkpoint.segment_base_offset,
                checkpoint.position,
                checkpoint.next_offset
            ),
            (100, 600, 105)
        );
    }
}
