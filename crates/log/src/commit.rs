//! Group commit and visibility: appenders share fsyncs (one leader fsyncs everything written
//! so far and wakes those it covered), readers see only what is durable under
//! [`crate::SyncPolicy::Always`], and a failed fsync poisons the log (fail-stop, never
//! retried). Fsyncs of segment files run one at a time, under the `fsync` lock.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use crate::append::JournalPoint;
use crate::checkpoint::advance_checkpoint;
use crate::error::{Error, Result};
use crate::log::{EndPoint, Log};
use crate::segment::lock;
use crate::storage::StorageFile;

pub(crate) struct SyncState {
    pub(crate) durable: EndPoint,
    /// How far the segment files are fsynced: `durable` without what only an outside journal
    /// holds. Checkpoints and retention go by this, never by `durable`.
    pub(crate) fsynced: EndPoint,
    pub(crate) in_progress: bool,
    pub(crate) last_sync_ms: u64,
    /// Appenders parked until a round makes their events durable (see `wait_durable`).
    pub(crate) waiters: Vec<SyncWaiter>,
}

/// An appender waiting for a group commit: parked, and unparked by whoever makes its events
/// durable (or picks it to lead the next round, or poisons the log).
pub(crate) struct SyncWaiter {
    pub(crate) end_offset: u64,
    pub(crate) thread: std::thread::Thread,
}

impl Log {
    /// Fsyncs a segment file (`sync_data`) after every write so far, one fsync at a time: under
    /// the `fsync` lock, refused once the log is poisoned, and a failure poisons the log before
    /// the lock is let go. A writeback error is reported to one fsync of a file description
    /// only; without this, a roll's or a close's fsync running beside a group commit's failing
    /// one could return `Ok` and mark unwritten events durable.
    ///
    /// # Errors
    /// [`Error::Poisoned`], also for the fsync that failed.
    pub(crate) fn fsync_segment(&self, file: &dyn StorageFile, path: &Path) -> Result<()> {
        let _one_at_a_time = lock(&self.inner.fsync);
        if let Some(cause) = self.inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        self.timed_sync(file)
            .map_err(|source| self.poison(Error::io("fsync", path, source)))
    }

    /// Runs `sync_data` on `file`, reporting its duration to the observer.
    pub(crate) fn timed_sync(&self, file: &dyn StorageFile) -> std::io::Result<()> {
        let started = Instant::now();
        let result = file.sync_data();
        if let Some(observer) = self.inner.sync_observer.get() {
            observer(started.elapsed());
        }
        result
    }

    /// Marks a journaled append durable (readers see it) if every event before it is durable;
    /// returns false, changing nothing, if one is not (an append on this log that was not
    /// journaled and whose fsync has not ended). A journal calls it, in the order its
    /// `append_start_with` callbacks ran, once the frames are fsynced in the journal.
    pub fn mark_journaled(&self, point: JournalPoint) -> bool {
        let durable = self.inner.durable_next_offset.load(Ordering::Acquire);
        if durable >= point.end.next_offset {
            return true;
        }
        if durable < point.first_offset {
            return false;
        }
        self.mark_durable(point.end);
        true
    }

    /// Fsyncs the active segment now, whatever the log's in-memory durable end says, and
    /// refreshes the recovery checkpoint if it is due: what a journal kept outside the log
    /// (weir-store's) calls before it forgets the frames it holds for this log. Sealed
    /// segments were fsynced when they were sealed.
    ///
    /// # Errors
    /// [`Error::Closed`] if the log closed without fsyncing everything (its close failed);
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed (the log is then poisoned).
    pub fn sync_segment(&self) -> Result<()> {
        {
            let writer = lock(&self.inner.writer);
            if writer.closed && writer.synced_at_close {
                // Closed cleanly: everything written was fsynced then.
                return Ok(());
            }
            if self.inner.read_only {
                // Opened read-only (damaged): nothing was written, nothing to make durable.
                return Ok(());
            }
            // Damage a read found later does not stop this: what was written (and journaled)
            // before it must still reach the segment (the journal's retirement, a frame after a
            // gap, a full device all rely on it).
            if let Some(cause) = self.inner.poison.get() {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if writer.closed {
                return Err(Error::Closed);
            }
        }
        self.lead_sync(true)
    }

    /// Records that everything up to `end` is durable and shows it to readers.
    pub(crate) fn mark_durable(&self, end: EndPoint) {
        // Visible first: an appender woken below must find its events readable.
        self.publish(end);
        let covered = {
            let mut sync = lock(&self.inner.sync);
            if end.is_after(&sync.durable) {
                sync.durable = end;
                self.inner
                    .durable_next_offset
                    .store(end.next_offset, Ordering::Release);
            }
            sync.last_sync_ms = self.inner.clock.now_ms();
            take_waiters(&mut sync, false)
        };
        for thread in covered {
            thread.unpark();
        }
    }

    /// [`Log::mark_durable`] after an fsync of the segment files up to `end`.
    pub(crate) fn mark_fsynced(&self, end: EndPoint) {
        {
            let mut sync = lock(&self.inner.sync);
            if end.is_after(&sync.fsynced) {
                sync.fsynced = end;
                self.inner
                    .fsynced_next_offset
                    .store(end.next_offset, Ordering::Release);
            }
        }
        self.mark_durable(end);
    }

    /// Lets readers see up to `end`, if that is further than they see now.
    pub(crate) fn publish(&self, end: EndPoint) {
        let wakers = {
            let mut visible = lock(&self.inner.visible);
            if !end.is_after(&visible.end) {
                return;
            }
            visible.end = end;
            std::mem::take(&mut visible.wakers)
        };
        self.inner.visible_changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Poisons the log with `error` (the first error wins) and wakes every waiter; returns the
    /// error for the caller that hit it.
    pub(crate) fn poison(&self, error: Error) -> Error {
        tracing::error!(dir = %self.inner.dir.display(), %error, "log poisoned: refusing writes until reopened");
        let shared = Arc::new(error);
        let _ = self.inner.poison.set(shared.clone());
        // Waiters re-check the poison after waking; wake every one of them.
        let parked = std::mem::take(&mut lock(&self.inner.sync).waiters);
        for waiter in parked {
            waiter.thread.unpark();
        }
        let wakers = std::mem::take(&mut lock(&self.inner.visible).wakers);
        self.inner.visible_changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
        Error::Poisoned { cause: shared }
    }

    /// Waits until everything before `end_offset` is durable, leading an fsync if none is
    /// running (group commit: whoever leads syncs everything written so far). weir-store calls
    /// it from helper threads to run the fsyncs of several partitions at once.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed.
    pub fn wait_durable(&self, end_offset: u64) -> Result<()> {
        let inner = &self.inner;
        let me = std::thread::current();
        loop {
            if let Some(cause) = inner.poison.get() {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if inner.durable_next_offset.load(Ordering::Acquire) >= end_offset {
                return Ok(());
            }
            let mut sync = lock(&inner.sync);
            if inner.poison.get().is_some() || sync.durable.next_offset >= end_offset {
                continue;
            }
            if !sync.in_progress {
                self.lead_round(sync)?;
                continue;
            }
            // A round is running: wait for it, parked (not on a condvar, whose waiters would
            // all re-take `sync` on waking). Whoever makes these events durable, picks this
            // thread to lead the next round, or poisons the log takes it off the list and
            // unparks it; a spurious wake finds it still listed and parks again.
            if !sync.waiters.iter().any(|w| w.thread.id() == me.id()) {
                sync.waiters.push(SyncWaiter {
                    end_offset,
                    thread: me.clone(),
                });
            }
            drop(sync);
            std::thread::park();
        }
    }

    /// Starts making everything before `end_offset` durable without waiting for anyone: leads
    /// an fsync if none is running, and returns at once if one is (its waiters lead the next
    /// round once it ends) or if the events are already durable. weir-store calls it on helper
    /// threads to start the fsyncs of several partitions at once without parking a thread
    /// behind each running fsync.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed.
    pub fn start_sync(&self, end_offset: u64) -> Result<()> {
        let inner = &self.inner;
        let sync = lock(&inner.sync);
        if let Some(cause) = inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if sync.durable.next_offset >= end_offset || sync.in_progress {
            return Ok(());
        }
        self.lead_round(sync)
    }

    /// Leads one group-commit round (`lead_sync`) with the sync lock released, marked as in
    /// progress so that others wait for it; then wakes the waiters it covered and one of the
    /// others, if any, to lead the next round (so no waiter is left without a leader).
    pub(crate) fn lead_round(&self, mut sync: MutexGuard<'_, SyncState>) -> Result<()> {
        sync.in_progress = true;
        drop(sync);
        let result = self.lead_sync(false);
        let mut sync = lock(&self.inner.sync);
        sync.in_progress = false;
        // Wake those this round covered, and one of the rest to lead the next round.
        let woken = take_waiters(&mut sync, true);
        drop(sync);
        for thread in woken {
            thread.unpark();
        }
        result
    }

    /// One group-commit round: fsync the active file up to what is written now (if `force`,
    /// even if the log counts it durable already: a journal made it so).
    pub(crate) fn lead_sync(&self, force: bool) -> Result<()> {
        let inner = &self.inner;
        let (file, target, path) = {
            let writer = lock(&inner.writer);
            (writer.file.clone(), writer.end, writer.active.path.clone())
        };
        if !force && !target.is_after(&lock(&inner.sync).durable) {
            return Ok(());
        }
        self.fsync_segment(&*file, &path)?;
        self.mark_fsynced(target);
        let checkpoint_due = {
            let checkpoint = lock(&inner.checkpoint);
            checkpoint.segment_base_offset != target.segment_base
                || target.position.saturating_sub(checkpoint.position)
                    >= inner.config.checkpoint_interval_bytes
        };
        if checkpoint_due {
            let refreshed =
                self.update_checkpoint(|checkpoint| advance_checkpoint(checkpoint, target));
            self.checkpoint_lags_if_full(refreshed)?;
        }
        Ok(())
    }

    /// Makes every written event durable now (whatever the sync policy), e.g. from a timer
    /// under [`crate::SyncPolicy::IntervalLossy`].
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed (the log is then poisoned).
    pub fn sync(&self) -> Result<()> {
        let end = lock(&self.inner.writer).end.next_offset;
        self.wait_durable(end)
    }
}

/// Takes off the list the waiters whose events are durable now and, if `with_leader`, the first
/// of the others (to lead the next round); returns their threads, to unpark once `sync` is
/// released.
fn take_waiters(sync: &mut SyncState, with_leader: bool) -> Vec<std::thread::Thread> {
    let durable = sync.durable.next_offset;
    let mut leader_picked = !with_leader;
    let mut woken = Vec::new();
    sync.waiters.retain(|waiter| {
        let wake = waiter.end_offset <= durable || !std::mem::replace(&mut leader_picked, true);
        if wake {
            woken.push(waiter.thread.clone());
        }
        !wake
    });
    woken
}
