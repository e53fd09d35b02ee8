//! [`PartitionReader`]: the driver that runs a [`PartitionState`] over one weir-log partition
//! and commits its barrier through weir-offsets. Every member of a group in this process shares
//! one reader per partition: they lease batches from the same cursor.
//!
//! Locks: `state` guards the machine and is held while reading the log for a batch (reads are
//! short); `commit` serializes commits so the committed offset only moves forward and the
//! compare-and-set expectation stays exact. `commit` is never taken while `state` is held.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weir_log::{Clock, Log, ReadBatch, ReadEnd};

use crate::config::{BatchConfig, CommitPolicy};
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::error::{BatchRef, Error, Result};
use crate::events::BatchEvents;
use crate::notify::{lock, Signal, WaitSet};
use crate::offsets::OffsetCommits;
use crate::state::{
    BatchId, CloseReason, Lease, Next, PartitionState, SettleError, StateConfig, StateStats,
};

/// A delivered batch: up to `batch_size` consecutive events of one partition, leased until
/// `lease_expires_ms`.
#[derive(Debug, Clone)]
pub struct Batch {
    /// This delivery's id: ack or nack it through the reader that delivered it.
    pub id: BatchId,
    /// The partition.
    pub partition: u32,
    /// The first event's offset.
    pub first_offset: u64,
    /// 1 for the first delivery, +1 for each redelivery (same events).
    pub attempt: u32,
    /// Why the batch holds the events it holds.
    pub close_reason: CloseReason,
    /// When the lease runs out (ms since the Unix epoch, by the reader's clock).
    pub lease_expires_ms: u64,
    /// The events, in offset order: views into the log's checked frames (no copy).
    pub events: BatchEvents,
}

impl Batch {
    /// The offset after the last event.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + self.events.len() as u64
    }
}

/// Visibility figures of one partition of a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The durably committed offset (next to read).
    pub committed_offset: u64,
    /// The end of the acknowledged prefix (committed, or about to be).
    pub barrier_offset: u64,
    /// The log's visible end.
    pub end_offset: u64,
    /// Events between the committed offset and the end.
    pub lag_events: u64,
    /// Head timestamp minus the timestamp of the first uncommitted event (0 without lag).
    pub lag_ms: u64,
    /// Counters and in-flight figures from the state machine.
    pub state: StateStats,
}

/// What [`PartitionReader::try_next_batch`] found.
#[derive(Debug)]
pub enum Attempt {
    /// A batch to process.
    Batch(Batch),
    /// Nothing now: try again when events arrive at `log_offset` (if any), when the reader's
    /// state changes (an ack or nack), or at `until_ms`.
    Wait {
        /// The next scheduled change (ms by the reader's clock).
        until_ms: Option<u64>,
        /// The offset whose arrival in the log may complete a batch.
        log_offset: Option<u64>,
    },
}

/// Events read ahead of the next fetch: a small batch size then does not re-read (and
/// re-check) a large frame from the log for every batch.
const READ_AHEAD_EVENTS: usize = 1024;

/// The machine plus the events read ahead of `next_fetch`, guarded together.
struct Fetcher {
    machine: PartitionState,
    /// Events read at and after `next_fetch` but not delivered yet (views into the log's frames).
    ahead: Option<ReadBatch>,
}

impl std::ops::Deref for Fetcher {
    type Target = PartitionState;
    fn deref(&self) -> &PartitionState {
        &self.machine
    }
}

impl std::ops::DerefMut for Fetcher {
    fn deref_mut(&mut self) -> &mut PartitionState {
        &mut self.machine
    }
}

struct CommitState {
    /// What the offsets store holds for this partition, as far as this reader knows
    /// (the compare-and-set expectation).
    stored: Option<u64>,
}

/// Delivers fixed-size batches of one partition to the members of one group.
pub struct PartitionReader {
    group: String,
    topic: String,
    partition: u32,
    log: Arc<Log>,
    offsets: Arc<dyn OffsetCommits>,
    sink: Arc<dyn DeadLetterSink>,
    config: BatchConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<Fetcher>,
    /// Held through a commit, fsync included.
    commit: Mutex<CommitState>,
    /// Settles since the last commit, and when that was (by `clock`): atomics, not under
    /// `commit`, so an ack never waits for a commit's fsync to count itself
    /// (`ack_deferring_commit` runs on async callers' threads). A commit subtracts the count
    /// it saw before reading the barrier, so settles that race with it stay counted.
    acks_since_commit: AtomicU32,
    last_commit_ms: AtomicU64,
    signal: Arc<Signal>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("group", &self.group)
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    /// A reader resuming at the group's committed offset for this partition (the log's start
    /// if nothing is committed). A committed offset past the log's end is clamped to it (the
    /// log lost unsynced events); one below the log's start (retention removed the events)
    /// resumes at the start.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`]; [`Error::Offsets`] if the committed offset cannot be read.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        group: &str,
        topic: &str,
        partition: u32,
        log: Arc<Log>,
        offsets: Arc<dyn OffsetCommits>,
        sink: Arc<dyn DeadLetterSink>,
        config: BatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<PartitionReader> {
        config.validate()?;
        let mut stored = offsets.committed(group, topic, partition)?;
        let (start, end) = (log.start_offset(), log.end_offset());
        let resume = stored.unwrap_or(start).clamp(start, end);
        if stored.is_some_and(|offset| offset > end) && log.damage().is_none() {
            // Past the end (the log lost unsynced events, or the topic was recreated): the
            // stored value must move back too, or later commits below it would be refused and
            // a restart would skip everything between the end and the stale value. (Not for a
            // damaged log, whose end is where reads stop: its committed offset is the evidence
            // of what was acknowledged, which `weir repair` needs. Nothing past the damage can
            // be delivered, so nothing is committed below it meanwhile.)
            offsets.reset(group, topic, partition, resume)?;
            stored = Some(resume);
        }
        if stored.is_some_and(|offset| offset != resume) {
            tracing::warn!(
                group,
                topic,
                partition,
                ?stored,
                resume,
                log_start = start,
                log_end = end,
                "committed offset outside the log; resuming inside it"
            );
        }
        let machine = PartitionState::new(
            StateConfig {
                max_in_flight: config.max_in_flight,
                ack_timeout_ms: config.ack_timeout_ms,
                max_attempts: config.max_attempts,
            },
            resume,
        )
        .with_id_base(id_base());
        let now = clock.now_ms();
        Ok(PartitionReader {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            log,
            offsets,
            sink,
            config,
            clock,
            state: Mutex::new(Fetcher {
                machine,
                ahead: None,
            }),
            commit: Mutex::new(CommitState { stored }),
            acks_since_commit: AtomicU32::new(0),
            last_commit_ms: AtomicU64::new(now),
            signal: Signal::new(),
        })
    }

    /// The partition this reader serves.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The batch settings.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// One step without waiting: a batch if one can be delivered now, otherwise what to wait
    /// for. Expired leases are redelivered and exhausted batches dead-lettered on the way.
    ///
    /// # Errors
    /// [`Error::Log`] if the log cannot be read; [`Error::DeadLetter`] if the sink failed;
    /// [`Error::Offsets`] if a due commit failed.
    pub fn try_next_batch(&self) -> Result<Attempt> {
        self.commit_if_due()?;
        let mut state = lock(&self.state);
        loop {
            let now = self.clock.now_ms();
            match state.poll(now) {
                Next::Redeliver {
                    first_offset,
                    end_offset,
                } => {
                    let Some(events) = self.read_waiting(&mut state, first_offset, end_offset)?
                    else {
                        drop(state);
                        self.after_settle(1)?;
                        state = lock(&self.state);
                        continue;
                    };
                    let lease = state.lease_redelivery(first_offset, now);
                    tracing::debug!(group = %self.group, partition = self.partition, first_offset, attempt = lease.attempt, "redelivering a batch");
                    return Ok(Attempt::Batch(self.batch(lease, events)));
                }
                Next::DeadLetter {
                    first_offset,
                    end_offset,
                    attempts,
                    last_reason,
                } => {
                    let Some(events) = self.read_waiting(&mut state, first_offset, end_offset)?
                    else {
                        drop(state);
                        self.after_settle(1)?;
                        state = lock(&self.state);
                        continue;
                    };
                    let letter = DeadLetter {
                        group: &self.group,
                        topic: &self.topic,
                        partition: self.partition,
                        events: &events.to_vec(),
                        attempts,
                        last_reason: last_reason.as_deref(),
                    };
                    self.sink
                        .dead_letter(&letter)
                        .map_err(|source| Error::DeadLetter {
                            first_offset,
                            end_offset,
                            source,
                        })?;
                    tracing::warn!(group = %self.group, topic = %self.topic, partition = self.partition, first_offset, end_offset, attempts, "dead-lettered a batch");
                    state.dead_lettered(first_offset);
                    drop(state);
                    self.after_settle(1)?;
                    state = lock(&self.state);
                }
                Next::Fetch { from } => {
                    let batch_size = self.config.batch_size as usize;
                    let (count, byte_limited) = match self.peek_events(&mut state, from) {
                        Ok(peeked) => peeked,
                        Err(Error::Log(weir_log::Error::OffsetOutOfRange { start, .. }))
                            if from < start =>
                        {
                            // Retention overtook the group: those events are gone before
                            // anyone saw them. Say so loudly and go on from the log's start.
                            let skipped = state.skip_removed(from, start);
                            tracing::warn!(
                                group = %self.group,
                                topic = %self.topic,
                                partition = self.partition,
                                from,
                                log_start = start,
                                skipped,
                                "retention removed events before the group read them; skipping to the log start"
                            );
                            continue;
                        }
                        Err(error) => return Err(error),
                    };
                    if count == 0 {
                        if let Some(lost) = state.ahead.as_ref().and_then(ReadBatch::lost) {
                            // Lost to damage (a marker `weir repair` wrote stands for them):
                            // nobody can have them. Say so loudly and step over them.
                            state.ahead = None;
                            let skipped = state.skip_lost(lost.start, lost.end);
                            tracing::warn!(
                                group = %self.group,
                                topic = %self.topic,
                                partition = self.partition,
                                first_offset = lost.start,
                                end_offset = lost.end,
                                skipped,
                                "events were lost to damage (`weir repair` marked them); the group steps over them"
                            );
                            continue;
                        }
                    }
                    let before_lost = state.ahead.as_ref().is_some_and(|ahead| {
                        ahead.len() == count
                            && matches!(ahead.end(), ReadEnd::Lost { .. } | ReadEnd::Damaged)
                    });
                    let close_reason = if count == batch_size {
                        CloseReason::Full
                    } else if byte_limited {
                        CloseReason::ByteLimit
                    } else if before_lost && count > 0 {
                        CloseReason::BeforeLost
                    } else if count == 0 {
                        // A poisoned log never gets new events: say so instead of waiting.
                        if let Some(cause) = self.log.poisoned() {
                            return Err(Error::Log(weir_log::Error::Poisoned { cause }));
                        }
                        return Ok(Attempt::Wait {
                            until_ms: state.next_deadline_ms(),
                            log_offset: Some(from),
                        });
                    } else {
                        let started = state.tail_wait_started_ms(now);
                        let tail_deadline = started.saturating_add(self.config.max_wait_ms);
                        if now < tail_deadline {
                            let until_ms = Some(
                                state
                                    .next_deadline_ms()
                                    .map_or(tail_deadline, |d| d.min(tail_deadline)),
                            );
                            return Ok(Attempt::Wait {
                                until_ms,
                                log_offset: Some(from + batch_size as u64 - 1),
                            });
                        }
                        CloseReason::TailWait
                    };
                    let events = Self::take(&mut state, count);
                    let lease = state.lease_new(from, count as u64, close_reason, now);
                    return Ok(Attempt::Batch(self.batch(lease, events)));
                }
                Next::Wait { until_ms } => {
                    return Ok(Attempt::Wait {
                        until_ms,
                        log_offset: None,
                    })
                }
            }
        }
    }

    /// Waits up to `timeout` for the next batch; `None` if none came (a normal answer).
    ///
    /// # Errors
    /// As [`PartitionReader::try_next_batch`].
    pub fn next_batch(&self, timeout: Duration) -> Result<Option<Batch>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.wait_set(deadline)? {
                Ok(batch) => return Ok(Some(batch)),
                Err(None) => return Ok(None),
                Err(Some(wait)) => wait.block(),
            }
        }
    }

    /// [`PartitionReader::next_batch`] for async code: never blocks a thread, works on any
    /// executor.
    ///
    /// # Errors
    /// As [`PartitionReader::try_next_batch`].
    pub async fn next_batch_async(&self, timeout: Duration) -> Result<Option<Batch>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.wait_set(deadline)? {
                Ok(batch) => return Ok(Some(batch)),
                Err(None) => return Ok(None),
                Err(Some(wait)) => wait.await,
            }
        }
    }

    /// One attempt: a batch, or what to wait for (`None` once `deadline` passed).
    fn wait_set(&self, deadline: Instant) -> Result<std::result::Result<Batch, Option<WaitSet>>> {
        let seen = self.signal.generation();
        match self.try_next_batch()? {
            Attempt::Batch(batch) => Ok(Ok(batch)),
            Attempt::Wait { .. } if Instant::now() >= deadline => Ok(Err(None)),
            Attempt::Wait {
                until_ms,
                log_offset,
            } => {
                let mut wait = WaitSet::new(
                    self.signal.clone(),
                    seen,
                    self.wake_instant(until_ms, deadline),
                );
                if let Some(offset) = log_offset {
                    wait.log(self.log.clone(), offset);
                }
                Ok(Err(Some(wait)))
            }
        }
    }

    /// Shares `signal` with other readers (all partitions of a group), so one wait covers them
    /// all. Call it before the reader is shared.
    #[must_use]
    pub fn with_signal(mut self, signal: Arc<Signal>) -> Self {
        self.signal = signal;
        self
    }

    /// The log this reader consumes.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Acknowledges a batch: its events are done. The barrier advances over every batch
    /// acknowledged without a gap and is committed per the commit policy.
    ///
    /// # Errors
    /// [`Error::UnknownBatch`], [`Error::LeaseExpired`], [`Error::AlreadySettled`];
    /// [`Error::Offsets`] if a commit failed (the ack itself stands).
    pub fn ack(&self, id: BatchId) -> Result<()> {
        if self.ack_deferring_commit(id)? {
            self.commit()?;
        }
        Ok(())
    }

    /// [`PartitionReader::ack`] without the commit: records the ack (in memory; the barrier
    /// moves) and returns whether the commit policy wants a commit now — then call
    /// [`PartitionReader::commit`], which blocks on the offsets store's sync. Lets an async
    /// caller acknowledge on its own thread and take only the due commits to a blocking one.
    ///
    /// # Errors
    /// [`Error::UnknownBatch`], [`Error::LeaseExpired`], [`Error::AlreadySettled`].
    pub fn ack_deferring_commit(&self, id: BatchId) -> Result<bool> {
        self.ack_holding(lock(&self.state), id)
    }

    /// [`PartitionReader::ack_deferring_commit`] that never waits: `None` at once if the
    /// partition's state is busy (a fetch holds it while it reads the log or writes a dead
    /// letter, which may fsync) — then ack on a thread that may block.
    pub fn try_ack_deferring_commit(&self, id: BatchId) -> Option<Result<bool>> {
        let state = match self.state.try_lock() {
            Ok(state) => state,
            // Consistent after every critical section (see `lock`).
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.ack_holding(state, id))
    }

    /// Acknowledges `id` in `state` (the held partition state), releases it, wakes waiting
    /// members and counts the ack towards the commit policy: whether a commit is due.
    fn ack_holding(&self, mut state: MutexGuard<'_, Fetcher>, id: BatchId) -> Result<bool> {
        state
            .ack(id)
            .map_err(|error| settle_error(error, id, self.partition, &state))?;
        drop(state);
        self.signal.notify();
        Ok(self.note_settled(1))
    }

    /// Acknowledges a batch together with writes of the caller's, in one durable step:
    /// `durable(end, expected)` must commit the group's offset `end` (the batch's end; a
    /// compare-and-set against `expected`, what the store holds now) together with the
    /// caller's writes, all or nothing, durably; only when it returns `Ok` is the batch
    /// acknowledged (an inner `Err` from `durable` means the caller's writes gave up: nothing
    /// was written, and the batch stays leased). So a crash never keeps the writes without the
    /// offset or the offset without the writes: each batch's effect is applied exactly once
    /// (weir-store's `Consumer::ack_with`).
    ///
    /// The batch must be the first one not acknowledged (then its end is the barrier): the
    /// group must run with `max_in_flight = 1`, which keeps each partition strictly in order.
    /// Holds the partition (no other member can take or settle its batches) through `durable`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `max_in_flight` is 1; [`Error::UnknownBatch`],
    /// [`Error::LeaseExpired`], [`Error::AlreadySettled`]; what `durable` returns (the batch
    /// then stays leased, nothing changed).
    pub fn ack_with<R, A>(
        &self,
        id: BatchId,
        durable: impl FnOnce(u64, Option<u64>) -> Result<std::result::Result<R, A>>,
    ) -> Result<std::result::Result<R, A>> {
        if self.config.max_in_flight != 1 {
            return Err(Error::InvalidConfig {
                field: "max_in_flight",
                reason: format!(
                    "is {}: acknowledging a batch together with your own writes needs 1, so that \
                     each batch's end is the offset committed with them",
                    self.config.max_in_flight
                ),
            });
        }
        // `commit` before `state`, as everywhere (never the other way round).
        let mut commit = lock(&self.commit);
        let mut state = lock(&self.state);
        let (_first, end, first_unacked) = state
            .ackable(id)
            .map_err(|e| settle_error(e, id, self.partition, &state))?;
        assert!(
            first_unacked,
            "with max_in_flight = 1 the only batch out is the first one not acknowledged"
        );
        let outcome = match durable(end, commit.stored)? {
            Ok(outcome) => outcome,
            // The caller's writes gave up: nothing was written, the batch stays leased.
            Err(aborted) => return Ok(Err(aborted)),
        };
        state
            .ack(id)
            .expect("checked by ackable, with the state held since");
        assert_eq!(state.barrier(), end);
        state.set_committed(end);
        commit.stored = Some(end);
        drop(state);
        self.last_commit_ms
            .store(self.clock.now_ms(), Ordering::Release);
        self.signal.notify();
        Ok(Ok(outcome))
    }

    /// Gives a batch back: it is redelivered (same events, next attempt) after `delay`, before
    /// newer batches of the partition, or dead-lettered once it reached `max_attempts`.
    ///
    /// # Errors
    /// [`Error::UnknownBatch`], [`Error::LeaseExpired`], [`Error::AlreadySettled`].
    pub fn nack(&self, id: BatchId, delay: Duration, reason: Option<&str>) -> Result<()> {
        let reason = reason.map(|reason| truncate_reason(reason, NACK_REASON_BYTES_MAX));
        let now = self.clock.now_ms();
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let mut state = lock(&self.state);
        state
            .nack(id, delay_ms, reason.map(str::to_string), now)
            .map_err(|error| settle_error(error, id, self.partition, &state))?;
        drop(state);
        self.signal.notify();
        Ok(())
    }

    /// Commits the barrier now if it moved since the last commit; returns the offset committed.
    ///
    /// # Errors
    /// [`Error::Offsets`].
    pub fn commit(&self) -> Result<Option<u64>> {
        let mut commit = lock(&self.commit);
        // Counted before the barrier is read: every settle counted here is in the barrier.
        let seen = self.acks_since_commit.load(Ordering::Acquire);
        let target = lock(&self.state).barrier();
        if commit.stored.is_some_and(|stored| stored >= target)
            || (commit.stored.is_none() && target == 0)
        {
            // Nothing new to commit: the interval starts again (so waits do not spin on it).
            self.restart_interval(seen);
            return Ok(None);
        }
        self.offsets.commit(
            &self.group,
            &self.topic,
            self.partition,
            target,
            commit.stored,
        )?;
        commit.stored = Some(target);
        self.restart_interval(seen);
        lock(&self.state).set_committed(target);
        Ok(Some(target))
    }

    /// Events this reader has yet to deliver: those at the log's (visible) end never
    /// delivered, and those of batches waiting to be delivered again. 0 means the group has
    /// caught up with this partition (batches out with members are not counted).
    pub fn undelivered(&self) -> u64 {
        let (next_fetch, waiting) = {
            let state = lock(&self.state);
            (state.next_fetch(), state.waiting_events())
        };
        self.log.end_offset().saturating_sub(next_fetch) + waiting
    }

    /// Visibility figures now.
    ///
    /// # Errors
    /// [`Error::Log`] if the timestamps for the lag in time cannot be read.
    pub fn stats(&self) -> Result<PartitionStats> {
        let now = self.clock.now_ms();
        let (committed, barrier, state) = {
            let state = lock(&self.state);
            (state.committed(), state.barrier(), state.stats(now))
        };
        let end = self.log.end_offset();
        let lag_events = end.saturating_sub(committed);
        let lag_ms = if lag_events == 0 || committed < self.log.start_offset() {
            0
        } else {
            let first = self.log.read(committed, 1, usize::MAX)?.events();
            let head = self.log.read(end - 1, 1, usize::MAX)?.events();
            match (first.first(), head.first()) {
                (Some(first), Some(head)) => head.timestamp_ms.saturating_sub(first.timestamp_ms),
                _ => 0,
            }
        };
        Ok(PartitionStats {
            committed_offset: committed,
            barrier_offset: barrier,
            end_offset: end,
            lag_events,
            lag_ms,
            state,
        })
    }

    fn batch(&self, lease: Lease, events: BatchEvents) -> Batch {
        debug_assert_eq!(events.len() as u64, lease.end_offset - lease.first_offset);
        debug_assert_eq!(
            events.iter().next().map(|e| e.offset),
            Some(lease.first_offset)
        );
        Batch {
            id: lease.id,
            partition: self.partition,
            first_offset: lease.first_offset,
            attempt: lease.attempt,
            close_reason: lease.close_reason,
            lease_expires_ms: lease.lease_expires_ms,
            events,
        }
    }

    /// How many events the next batch from `from` takes (up to `batch_size` and
    /// `batch_bytes_max`), and whether the byte limit cut it. The events stay in the read-ahead
    /// (which always starts at the next offset to fetch) until [`Self::take`] leases them.
    fn peek_events(&self, fetcher: &mut Fetcher, from: u64) -> Result<(usize, bool)> {
        let batch_size = self.config.batch_size as usize;
        let bytes_max = usize::try_from(self.config.batch_bytes_max).unwrap_or(usize::MAX);
        if fetcher
            .ahead
            .as_ref()
            .is_some_and(|ahead| ahead.first_offset() != from)
        {
            fetcher.ahead = None;
        }
        let covered = fetcher.ahead.as_ref().map_or(0, ReadBatch::len);
        // A read cut short by its byte limit, or by lost or damaged events after it, gives the
        // same answer again: no need to read it again.
        let cut_short = fetcher.ahead.as_ref().is_some_and(|ahead| {
            matches!(
                ahead.end(),
                ReadEnd::ByteLimit | ReadEnd::Lost { .. } | ReadEnd::Damaged
            )
        });
        if covered < batch_size && !(covered > 0 && cut_short) {
            // Read ahead only for small batches: a large batch reads whole frames anyway, and
            // reading past it would split the next frame between two reads.
            let want = if batch_size >= READ_AHEAD_EVENTS / 4 {
                batch_size
            } else {
                batch_size.max(READ_AHEAD_EVENTS)
            };
            fetcher.ahead = Some(self.log.read(from, want, bytes_max)?);
        }
        let Some(ahead) = fetcher.ahead.as_ref() else {
            return Ok((0, false));
        };
        let available = ahead.len();
        let cut = ahead.end() == ReadEnd::ByteLimit;
        if available <= batch_size {
            // The read's own limits cut it (or the tail was reached).
            return Ok((available, cut && available > 0 && available < batch_size));
        }
        let mut bytes = 0usize;
        for (taken, event) in ahead.iter().take(batch_size).enumerate() {
            let size = event.encoded_len();
            if taken > 0 && bytes + size > bytes_max {
                return Ok((taken, true));
            }
            bytes += size;
        }
        Ok((batch_size, false))
    }

    /// The first `count` read-ahead events, as a batch's events (no copy).
    fn take(fetcher: &mut Fetcher, count: usize) -> BatchEvents {
        let ahead = fetcher.ahead.as_mut().expect("peek_events read ahead");
        if ahead.len() == count {
            // The common case for large batches: the whole read is the batch.
            return BatchEvents::new(vec![fetcher.ahead.take().expect("checked above")]);
        }
        BatchEvents::new(vec![ahead.split_front(count)])
    }

    /// The events of the waiting batch `first..end` (for a redelivery or a dead letter); `None`
    /// if retention removed them meanwhile: nobody can have them any more, so the batch is
    /// given up, loudly, and counts as settled (the caller commits per the policy).
    fn read_waiting(
        &self,
        state: &mut PartitionState,
        first_offset: u64,
        end_offset: u64,
    ) -> Result<Option<BatchEvents>> {
        match self.read_range(first_offset, end_offset) {
            Ok(events) => Ok(Some(events)),
            Err(Error::EventsRemoved { log_start, .. }) => {
                let events = state.removed_while_waiting(first_offset);
                tracing::warn!(
                    group = %self.group,
                    topic = %self.topic,
                    partition = self.partition,
                    first_offset,
                    events,
                    log_start,
                    "retention removed a batch waiting for redelivery; it is given up"
                );
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Reads exactly the events `first..end` (a redelivery or a dead letter).
    fn read_range(&self, first: u64, end: u64) -> Result<BatchEvents> {
        let count = (end - first) as usize;
        let mut parts = Vec::new();
        let mut read_so_far = 0usize;
        while read_so_far < count {
            let from = first + read_so_far as u64;
            let read = match self.log.read(from, count - read_so_far, usize::MAX) {
                Ok(read) => read,
                Err(weir_log::Error::OffsetOutOfRange { start, .. }) if from < start => {
                    return Err(Error::EventsRemoved {
                        first_offset: first,
                        end_offset: end,
                        log_start: start,
                    })
                }
                Err(error) => return Err(error.into()),
            };
            if read.is_empty() {
                return Err(Error::EventsRemoved {
                    first_offset: first,
                    end_offset: end,
                    log_start: self.log.start_offset(),
                });
            }
            read_so_far += read.len();
            parts.push(read);
        }
        Ok(BatchEvents::new(parts))
    }

    /// After `settled` batches were acknowledged or dead-lettered: commit per the policy.
    fn after_settle(&self, settled: u32) -> Result<()> {
        if self.note_settled(settled) {
            self.commit()?;
        }
        Ok(())
    }

    /// Counts `settled` batches towards the commit policy; returns whether a commit is due.
    /// Takes no lock (see `acks_since_commit`).
    fn note_settled(&self, settled: u32) -> bool {
        let before = self
            .acks_since_commit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(settled))
            })
            .unwrap_or_else(|n| n);
        let acks = before.saturating_add(settled);
        match self.config.commit_policy {
            CommitPolicy::EveryAck => true,
            CommitPolicy::Interval {
                interval_ms,
                acks_max,
            } => acks >= acks_max || self.interval_elapsed(interval_ms),
        }
    }

    /// Whether `interval_ms` passed since the last commit.
    fn interval_elapsed(&self, interval_ms: u64) -> bool {
        self.clock
            .now_ms()
            .saturating_sub(self.last_commit_ms.load(Ordering::Acquire))
            >= interval_ms
    }

    /// After a commit (or finding nothing to commit) that saw `seen` settles: those are done,
    /// and the interval starts again. Called with `commit` held.
    fn restart_interval(&self, seen: u32) {
        self.acks_since_commit.fetch_sub(seen, Ordering::AcqRel);
        self.last_commit_ms
            .store(self.clock.now_ms(), Ordering::Release);
    }

    fn commit_if_due(&self) -> Result<()> {
        if let CommitPolicy::Interval { interval_ms, .. } = self.config.commit_policy {
            let due = self.acks_since_commit.load(Ordering::Acquire) > 0
                && self.interval_elapsed(interval_ms);
            if due {
                self.commit()?;
            }
        }
        Ok(())
    }

    /// When to wake for an [`Attempt::Wait`]: at the reader's next scheduled change (a lease
    /// expiry, a nack delay, a due interval commit; by the reader's clock) or at `deadline`,
    /// whichever comes first.
    pub fn wake_instant(&self, until_ms: Option<u64>, deadline: Instant) -> Instant {
        let interval_due = match self.config.commit_policy {
            // Only acks waiting to be committed make the interval a reason to wake up.
            CommitPolicy::Interval { interval_ms, .. } => {
                (self.acks_since_commit.load(Ordering::Acquire) > 0).then(|| {
                    self.last_commit_ms
                        .load(Ordering::Acquire)
                        .saturating_add(interval_ms)
                })
            }
            CommitPolicy::EveryAck => None,
        };
        let next_ms = match (until_ms, interval_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next_ms {
            Some(until_ms) => {
                let wait = Duration::from_millis(until_ms.saturating_sub(self.clock.now_ms()));
                (Instant::now() + wait).min(deadline)
            }
            None => deadline,
        }
    }
}

/// The longest nack reason kept (it is copied into every dead-lettered event's headers).
pub const NACK_REASON_BYTES_MAX: usize = 1024;

/// `reason` cut to at most `bytes_max` bytes, at a character boundary.
fn truncate_reason(reason: &str, bytes_max: usize) -> &str {
    let mut end = reason.len().min(bytes_max);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A random base for a reader's batch ids: ids never repeat across the readers a group has over
/// time (restarts, rejoins), so a stale id is unknown instead of naming someone else's batch.
fn id_base() -> u64 {
    static READERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The high 32 bits are random; ids count up in the low 32 bits.
    weir_log::sim::SplitMix64::new(seed).next() & !0xffff_ffff
}

/// The error for a refused settle of batch `id` of `partition`, naming its offsets if `state`
/// still knows them.
fn settle_error(error: SettleError, id: BatchId, partition: u32, state: &PartitionState) -> Error {
    let batch = BatchRef {
        id,
        partition,
        first_offset: state.first_offset_of(id),
    };
    match error {
        SettleError::Unknown => Error::UnknownBatch(batch),
        SettleError::Expired => Error::LeaseExpired(batch),
        SettleError::AlreadySettled => Error::AlreadySettled(batch),
    }
}
