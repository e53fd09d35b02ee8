//! The batch state machine of one (group, partition): which offsets are leased, waiting for
//! redelivery or acknowledged, and where the ack barrier stands. Pure: it takes the time as an
//! argument and knows nothing of files, threads or the log; the driver (`reader.rs`) reads
//! events and commits offsets around it.
//!
//! Every offset in `barrier..next_fetch` belongs to exactly one *range* (a batch, fixed when it
//! is first delivered): leased (delivered, lease running), waiting (nacked or expired, to be
//! redelivered with the same events) or acknowledged. The barrier is the end of the longest
//! acknowledged prefix; nothing past an unacknowledged event is ever committed.
//!
//! Invariants, asserted after every transition in debug builds (`check_invariants`):
//! - `committed ≤ barrier ≤ next_fetch`;
//! - the ranges tile `barrier..next_fetch` exactly, and the first one is not acknowledged;
//! - leased + waiting ranges ≤ `max_in_flight`;
//! - the lease index names exactly the leased ranges.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

/// Identifies one delivery of a batch (a redelivery gets a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a batch holds the events it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It holds `batch_size` events.
    Full,
    /// The next event would have taken it over `batch_bytes_max`.
    ByteLimit,
    /// Fewer events were at the tail of the log and `max_wait_ms` ran out.
    TailWait,
    /// The events after it were lost (damaged, and replaced by `weir repair` with a marker that
    /// the group steps over) or are damaged (the next fetch fails with the damage).
    BeforeLost,
}

/// The limits the state machine enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateConfig {
    /// Leased plus waiting batches allowed at once (1 = strictly ordered).
    pub max_in_flight: u32,
    /// How long a lease lasts.
    pub ack_timeout_ms: u64,
    /// Deliveries before a batch is dead-lettered.
    pub max_attempts: u32,
}

/// A lease on a batch: what the consumer must ack or nack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// This delivery's id.
    pub id: BatchId,
    /// First offset of the batch.
    pub first_offset: u64,
    /// Offset after the batch's last event.
    pub end_offset: u64,
    /// 1 for the first delivery, +1 for each redelivery.
    pub attempt: u32,
    /// Why the batch closed when it was first delivered.
    pub close_reason: CloseReason,
    /// When the lease runs out (ms, by the machine's clock).
    pub lease_expires_ms: u64,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Redeliver the waiting batch `first_offset..end_offset`: read exactly those events and
    /// call [`PartitionState::lease_redelivery`].
    Redeliver {
        /// First offset.
        first_offset: u64,
        /// End offset.
        end_offset: u64,
    },
    /// The batch reached `max_attempts`: hand its events to the dead-letter sink, then call
    /// [`PartitionState::dead_lettered`].
    DeadLetter {
        /// First offset.
        first_offset: u64,
        /// End offset.
        end_offset: u64,
        /// Deliveries made.
        attempts: u32,
        /// The reason given with the last nack, if any.
        last_reason: Option<String>,
    },
    /// Read new events from `from` and call [`PartitionState::lease_new`] with what was found.
    Fetch {
        /// The next offset never delivered.
        from: u64,
    },
    /// Nothing to deliver now; something may change at `until_ms` (a lease expiry or the end
    /// of a nack delay), or on an ack, nack or new events.
    Wait {
        /// The next scheduled change, if any.
        until_ms: Option<u64>,
    },
}

/// Why an ack or nack was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleError {
    /// No batch with this id was delivered (or it is too old to remember).
    Unknown,
    /// The lease ran out and the batch was redelivered: the new holder settles it.
    Expired,
    /// The batch was already acknowledged, nacked or dead-lettered through this id.
    AlreadySettled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    Nacked,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RangeState {
    Leased {
        id: BatchId,
        attempt: u32,
        lease_expires_ms: u64,
    },
    Waiting {
        attempts: u32,
        not_before_ms: u64,
    },
    Acked,
}

#[derive(Debug, Clone)]
struct Range {
    end: u64,
    close_reason: CloseReason,
    state: RangeState,
    first_delivered_ms: u64,
    last_reason: Option<String>,
}

/// Figures for visibility.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Leased plus waiting batches.
    pub in_flight: u32,
    /// Age of the oldest delivered but unacknowledged batch (ms), if any.
    pub oldest_unacked_age_ms: Option<u64>,
    /// Batches delivered for the first time.
    pub delivered: u64,
    /// Redeliveries (after a nack or an expired lease).
    pub redeliveries: u64,
    /// Batches acknowledged.
    pub acked: u64,
    /// Batches dead-lettered.
    pub dead_letters: u64,
    /// Events removed by retention before they were delivered (skipped, never seen).
    pub skipped_events: u64,
    /// Events lost to damage (`weir repair` replaced them with a marker), stepped over.
    pub lost_events: u64,
}

/// Acknowledged batches allowed behind the barrier per unit of `max_in_flight`.
const ACKED_BEHIND_PER_IN_FLIGHT: usize = 64;

/// How many settled ids are remembered to tell "expired" and "already settled" from "unknown".
const RECENT_IDS_MAX: usize = 4096;

/// The state machine of one (group, partition).
#[derive(Debug, Clone)]
pub struct PartitionState {
    config: StateConfig,
    committed: u64,
    barrier: u64,
    next_fetch: u64,
    ranges: BTreeMap<u64, Range>,
    leases: HashMap<BatchId, u64>,
    next_id: u64,
    recent: VecDeque<(BatchId, u64, Outcome)>,
    tail_wait_started_ms: Option<u64>,
    stats: StateStats,
}

impl PartitionState {
    /// Starts this machine's batch ids at `base` (ids must not repeat across the machines a
    /// group has over time: the reader passes a random base, so a stale id from an earlier
    /// machine is unknown rather than someone else's batch).
    #[must_use]
    pub fn with_id_base(mut self, base: u64) -> Self {
        assert!(
            self.stats.delivered == 0 && self.ranges.is_empty(),
            "set the id base before delivering"
        );
        self.next_id = base.max(1);
        self
    }

    /// A machine resuming at `committed` (the next offset to read), as after a restart: no
    /// batch in flight, delivery starts at the committed offset.
    pub fn new(config: StateConfig, committed: u64) -> Self {
        assert!(
            config.max_in_flight >= 1 && config.ack_timeout_ms >= 1 && config.max_attempts >= 1
        );
        PartitionState {
            config,
            committed,
            barrier: committed,
            next_fetch: committed,
            ranges: BTreeMap::new(),
            leases: HashMap::new(),
            next_id: 1,
            recent: VecDeque::new(),
            tail_wait_started_ms: None,
            stats: StateStats::default(),
        }
    }

    /// The committed offset as last reported by [`PartitionState::set_committed`].
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The end of the acknowledged prefix: what may be committed.
    pub fn barrier(&self) -> u64 {
        self.barrier
    }

    /// The next offset never delivered.
    pub fn next_fetch(&self) -> u64 {
        self.next_fetch
    }

    /// When the current tail wait started, if the driver is waiting for a batch to fill.
    pub fn tail_wait_started_ms(&mut self, now_ms: u64) -> u64 {
        *self.tail_wait_started_ms.get_or_insert(now_ms)
    }

    /// Decides what to do next, first expiring the leases that ran out by `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Next {
        self.expire(now_ms);
        let due = self
            .ranges
            .iter()
            .find_map(|(&first, range)| match range.state {
                RangeState::Waiting {
                    attempts,
                    not_before_ms,
                } if not_before_ms <= now_ms => {
                    Some((first, range.end, attempts, range.last_reason.clone()))
                }
                _ => None,
            });
        if let Some((first_offset, end_offset, attempts, last_reason)) = due {
            return if attempts >= self.config.max_attempts {
                Next::DeadLetter {
                    first_offset,
                    end_offset,
                    attempts,
                    last_reason,
                }
            } else {
                Next::Redeliver {
                    first_offset,
                    end_offset,
                }
            };
        }
        // Acknowledged batches waiting behind an unacknowledged one are not in flight, but
        // they are bounded too, so a stuck batch cannot let the backlog behind it grow.
        if self.window() < self.config.max_in_flight && self.ranges.len() < self.ranges_max() {
            return Next::Fetch {
                from: self.next_fetch,
            };
        }
        Next::Wait {
            until_ms: self.next_deadline_ms(),
        }
    }

    /// The next time something scheduled happens (a lease expiry or a nack delay ending).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.ranges
            .values()
            .filter_map(|range| match range.state {
                RangeState::Leased {
                    lease_expires_ms, ..
                } => Some(lease_expires_ms),
                RangeState::Waiting { not_before_ms, .. } => Some(not_before_ms),
                RangeState::Acked => None,
            })
            .min()
    }

    /// Leases a new batch of `count` events from `from` (which must be what
    /// [`Next::Fetch`] named).
    ///
    /// # Panics
    /// If `from` is not the next offset to fetch, `count` is 0, or the window is full: the
    /// driver must follow [`PartitionState::poll`].
    pub fn lease_new(
        &mut self,
        from: u64,
        count: u64,
        close_reason: CloseReason,
        now_ms: u64,
    ) -> Lease {
        assert_eq!(
            from, self.next_fetch,
            "a new batch starts at the next offset to fetch"
        );
        assert!(count >= 1, "a batch holds at least one event");
        assert!(
            self.window() < self.config.max_in_flight,
            "the in-flight window is full"
        );
        let id = self.new_id();
        let lease_expires_ms = now_ms.saturating_add(self.config.ack_timeout_ms);
        self.ranges.insert(
            from,
            Range {
                end: from + count,
                close_reason,
                state: RangeState::Leased {
                    id,
                    attempt: 1,
                    lease_expires_ms,
                },
                first_delivered_ms: now_ms,
                last_reason: None,
            },
        );
        self.leases.insert(id, from);
        self.next_fetch = from + count;
        self.tail_wait_started_ms = None;
        self.stats.delivered += 1;
        self.check_invariants();
        Lease {
            id,
            first_offset: from,
            end_offset: from + count,
            attempt: 1,
            close_reason,
            lease_expires_ms,
        }
    }

    /// Retention removed the never-delivered events `from..to` (the log's start moved past the
    /// next offset to fetch): delivery continues at `to`, and the removed span counts as
    /// settled so the barrier can pass it once the batches before it are acknowledged. Returns
    /// the number of events skipped.
    ///
    /// # Panics
    /// If `from` is not the next offset to fetch or `to` is not past it.
    pub fn skip_removed(&mut self, from: u64, to: u64) -> u64 {
        let skipped = self.skip(from, to);
        self.stats.skipped_events += skipped;
        skipped
    }

    /// The never-delivered events `from..to` were lost to damage (a marker `weir repair` wrote
    /// stands for them): as [`PartitionState::skip_removed`], counted as lost.
    ///
    /// # Panics
    /// If `from` is not the next offset to fetch or `to` is not past it.
    pub fn skip_lost(&mut self, from: u64, to: u64) -> u64 {
        let skipped = self.skip(from, to);
        self.stats.lost_events += skipped;
        skipped
    }

    fn skip(&mut self, from: u64, to: u64) -> u64 {
        assert_eq!(
            from, self.next_fetch,
            "a skip starts at the next offset to fetch"
        );
        assert!(to > from, "a skip moves forward");
        if self.ranges.is_empty() {
            self.barrier = to;
        } else {
            self.ranges.insert(
                from,
                Range {
                    end: to,
                    close_reason: CloseReason::Full,
                    state: RangeState::Acked,
                    first_delivered_ms: 0,
                    last_reason: None,
                },
            );
        }
        self.next_fetch = to;
        self.tail_wait_started_ms = None;
        self.check_invariants();
        to - from
    }

    /// Leases the waiting batch at `first_offset` again (same events, next attempt).
    ///
    /// # Panics
    /// If that batch is not waiting: the driver must follow [`PartitionState::poll`].
    pub fn lease_redelivery(&mut self, first_offset: u64, now_ms: u64) -> Lease {
        let id = self.new_id();
        let lease_expires_ms = now_ms.saturating_add(self.config.ack_timeout_ms);
        let range = self
            .ranges
            .get_mut(&first_offset)
            .expect("a redelivery names a waiting batch");
        let RangeState::Waiting { attempts, .. } = range.state else {
            panic!("only a waiting batch is redelivered");
        };
        let attempt = attempts + 1;
        range.state = RangeState::Leased {
            id,
            attempt,
            lease_expires_ms,
        };
        let lease = Lease {
            id,
            first_offset,
            end_offset: range.end,
            attempt,
            close_reason: range.close_reason,
            lease_expires_ms,
        };
        self.leases.insert(id, first_offset);
        self.stats.redeliveries += 1;
        self.check_invariants();
        lease
    }

    /// Acknowledges a delivery: its batch is done. A late ack of an expired lease is accepted
    /// while the batch waits for redelivery (nobody else holds it yet).
    ///
    /// # Errors
    /// [`SettleError`] saying why the id cannot be acknowledged.
    pub fn ack(&mut self, id: BatchId) -> Result<(), SettleError> {
        let first = match self.leases.remove(&id) {
            Some(first) => first,
            None => {
                let first = self.recent_outcome(id)?;
                let waiting = matches!(
                    self.ranges.get(&first).map(|r| &r.state),
                    Some(RangeState::Waiting { .. })
                );
                if !waiting {
                    return Err(SettleError::Expired);
                }
                first
            }
        };
        if let Some(range) = self.ranges.get_mut(&first) {
            range.state = RangeState::Acked;
        }
        self.remember(id, first, Outcome::Acked);
        self.stats.acked += 1;
        self.advance_barrier();
        self.check_invariants();
        Ok(())
    }

    /// The first offset of the batch delivered as `id`, if it is leased or remembered.
    pub fn first_offset_of(&self, id: BatchId) -> Option<u64> {
        self.leases.get(&id).copied().or_else(|| {
            self.recent
                .iter()
                .rev()
                .find(|(recent, _, _)| *recent == id)
                .map(|(_, first, _)| *first)
        })
    }

    /// The offsets `first..end` of the batch delivered as `id`, if [`PartitionState::ack`]
    /// would accept it now, and whether acknowledging it would move the barrier to `end` (it is
    /// the first unacknowledged batch). Changes nothing.
    ///
    /// # Errors
    /// [`SettleError`] as [`PartitionState::ack`] would give it.
    pub fn ackable(&self, id: BatchId) -> Result<(u64, u64, bool), SettleError> {
        let first = match self.leases.get(&id) {
            Some(&first) => first,
            None => {
                let first = self.recent_outcome(id)?;
                let waiting = matches!(
                    self.ranges.get(&first).map(|r| &r.state),
                    Some(RangeState::Waiting { .. })
                );
                if !waiting {
                    return Err(SettleError::Expired);
                }
                first
            }
        };
        let end = self.ranges.get(&first).map_or(first, |range| range.end);
        Ok((first, end, first == self.barrier))
    }

    /// Gives a delivery back: its batch waits `delay_ms`, then is redelivered (or dead-lettered
    /// if it reached `max_attempts`).
    ///
    /// # Errors
    /// [`SettleError`] saying why the id cannot be nacked.
    pub fn nack(
        &mut self,
        id: BatchId,
        delay_ms: u64,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<(), SettleError> {
        let Some(first) = self.leases.remove(&id) else {
            self.recent_outcome(id)?;
            return Err(SettleError::Expired);
        };
        let range = self.ranges.get_mut(&first).expect("a lease names a range");
        let RangeState::Leased { attempt, .. } = range.state else {
            unreachable!("the lease index names only leased ranges");
        };
        range.state = RangeState::Waiting {
            attempts: attempt,
            not_before_ms: now_ms.saturating_add(delay_ms),
        };
        if reason.is_some() {
            range.last_reason = reason;
        }
        self.remember(id, first, Outcome::Nacked);
        self.check_invariants();
        Ok(())
    }

    /// Records that the waiting batch at `first_offset` was handed to the dead-letter sink: it
    /// now counts as acknowledged.
    ///
    /// # Panics
    /// If that batch is not waiting.
    pub fn dead_lettered(&mut self, first_offset: u64) {
        let range = self
            .ranges
            .get_mut(&first_offset)
            .expect("a dead letter names a waiting batch");
        assert!(
            matches!(range.state, RangeState::Waiting { .. }),
            "only a waiting batch is dead-lettered"
        );
        range.state = RangeState::Acked;
        self.stats.dead_letters += 1;
        self.advance_barrier();
        self.check_invariants();
    }

    /// Records that retention removed the events of the waiting batch at `first_offset` before
    /// it could be delivered again: it counts as settled (its events are gone for everyone) and
    /// the barrier may pass it. Returns the number of events.
    ///
    /// # Panics
    /// If that batch is not waiting.
    pub fn removed_while_waiting(&mut self, first_offset: u64) -> u64 {
        let range = self
            .ranges
            .get_mut(&first_offset)
            .expect("a removed batch names a waiting batch");
        assert!(
            matches!(range.state, RangeState::Waiting { .. }),
            "only a waiting batch is given up as removed"
        );
        range.state = RangeState::Acked;
        let events = range.end - first_offset;
        self.stats.skipped_events += events;
        self.advance_barrier();
        self.check_invariants();
        events
    }

    /// Records that `offset` is durably committed.
    ///
    /// # Panics
    /// If `offset` is past the barrier: nothing past an unacknowledged event is committed.
    pub fn set_committed(&mut self, offset: u64) {
        assert!(
            offset <= self.barrier,
            "a commit never passes the ack barrier"
        );
        self.committed = self.committed.max(offset);
        self.check_invariants();
    }

    /// Figures for visibility at `now_ms`.
    pub fn stats(&self, now_ms: u64) -> StateStats {
        let mut stats = self.stats;
        stats.in_flight = self.window();
        stats.oldest_unacked_age_ms = self
            .ranges
            .values()
            .filter(|range| range.state != RangeState::Acked)
            .map(|range| now_ms.saturating_sub(range.first_delivered_ms))
            .max();
        stats
    }

    /// The waiting batches' first offsets and the leased ones', for tests and descriptions.
    pub fn in_flight_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges
            .iter()
            .filter(|(_, range)| range.state != RangeState::Acked)
            .map(|(&first, range)| (first, range.end))
            .collect()
    }

    /// Events of batches waiting to be delivered again (nacked, or their lease ran out).
    pub fn waiting_events(&self) -> u64 {
        self.ranges
            .iter()
            .filter(|(_, range)| matches!(range.state, RangeState::Waiting { .. }))
            .map(|(&first, range)| range.end - first)
            .sum()
    }

    /// The most batches (of any state) between the barrier and the next fetch.
    fn ranges_max(&self) -> usize {
        (self.config.max_in_flight as usize).saturating_mul(ACKED_BEHIND_PER_IN_FLIGHT)
    }

    fn window(&self) -> u32 {
        self.ranges
            .values()
            .filter(|range| range.state != RangeState::Acked)
            .count() as u32
    }

    fn new_id(&mut self) -> BatchId {
        let id = BatchId(self.next_id);
        self.next_id += 1;
        id
    }

    fn expire(&mut self, now_ms: u64) {
        let expired: Vec<(BatchId, u64, u32)> = self
            .ranges
            .iter()
            .filter_map(|(&first, range)| match range.state {
                RangeState::Leased {
                    id,
                    attempt,
                    lease_expires_ms,
                } if lease_expires_ms <= now_ms => Some((id, first, attempt)),
                _ => None,
            })
            .collect();
        for (id, first, attempt) in expired {
            self.leases.remove(&id);
            if let Some(range) = self.ranges.get_mut(&first) {
                range.state = RangeState::Waiting {
                    attempts: attempt,
                    not_before_ms: now_ms,
                };
            }
            self.remember(id, first, Outcome::Expired);
        }
        self.check_invariants();
    }

    fn advance_barrier(&mut self) {
        while let Some(entry) = self.ranges.first_entry() {
            if entry.get().state != RangeState::Acked {
                break;
            }
            assert_eq!(*entry.key(), self.barrier, "ranges start at the barrier");
            self.barrier = entry.remove().end;
        }
    }

    fn remember(&mut self, id: BatchId, first: u64, outcome: Outcome) {
        if self.recent.len() == RECENT_IDS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back((id, first, outcome));
    }

    /// What happened to an id that holds no lease: its batch's first offset if it expired,
    /// otherwise the error to give.
    fn recent_outcome(&self, id: BatchId) -> Result<u64, SettleError> {
        match self
            .recent
            .iter()
            .rev()
            .find(|(recent, _, _)| *recent == id)
        {
            Some((_, first, Outcome::Expired)) => Ok(*first),
            Some(_) => Err(SettleError::AlreadySettled),
            None => Err(SettleError::Unknown),
        }
    }

    /// Asserts the invariants (debug builds only; they are cheap but not free).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(
            self.committed <= self.barrier,
            "committed {} > barrier {}",
            self.committed,
            self.barrier
        );
        assert!(
            self.barrier <= self.next_fetch,
            "barrier {} > next fetch {}",
            self.barrier,
            self.next_fetch
        );
        let mut expected = self.barrier;
        for (&first, range) in &self.ranges {
            assert_eq!(first, expected, "ranges tile barrier..next_fetch");
            assert!(range.end > first, "a range holds at least one offset");
            expected = range.end;
        }
        assert_eq!(expected, self.next_fetch, "ranges end at next_fetch");
        if let Some(range) = self.ranges.values().next() {
            assert!(
                range.state != RangeState::Acked,
                "an acknowledged range at the barrier is absorbed"
            );
        }
        assert!(
            self.window() <= self.config.max_in_flight,
            "window over max_in_flight"
        );
        let leased = self
            .ranges
            .values()
            .filter(|range| matches!(range.state, RangeState::Leased { .. }))
            .count();
        assert_eq!(
            leased,
            self.leases.len(),
            "the lease index names exactly the leased ranges"
        );
        for (id, first) in &self.leases {
            let state = &self.ranges[first].state;
            assert!(matches!(state, RangeState::Leased { id: leased_id, .. } if leased_id == id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_in_flight: u32) -> StateConfig {
        StateConfig {
            max_in_flight,
            ack_timeout_ms: 1000,
            max_attempts: 3,
        }
    }

    #[test]
    fn events_removed_before_delivery_are_skipped_and_the_barrier_passes_them_in_order() {
        // Nothing in flight: the barrier jumps with the fetch position.
        let mut state = PartitionState::new(config(2), 10);
        assert_eq!(state.skip_removed(10, 40), 30);
        assert_eq!((state.barrier(), state.next_fetch()), (40, 40));
        assert_eq!(state.poll(0), Next::Fetch { from: 40 });
        // A batch in flight before the removed span: the barrier waits for it, then passes
        // both it and the span.
        let a = state.lease_new(40, 5, CloseReason::Full, 0);
        assert_eq!(state.skip_removed(45, 60), 15);
        assert_eq!(state.poll(0), Next::Fetch { from: 60 });
        assert_eq!(
            state.barrier(),
            40,
            "an unacknowledged batch holds the barrier"
        );
        state.ack(a.id).unwrap();
        assert_eq!(state.barrier(), 60);
        assert_eq!(state.stats(0).skipped_events, 45);
    }

    #[test]
    fn a_waiting_batch_whose_events_were_removed_is_given_up_and_the_barrier_passes_it() {
        let mut state = PartitionState::new(config(2), 0);
        let a = state.lease_new(0, 10, CloseReason::Full, 0);
        let b = state.lease_new(10, 10, CloseReason::Full, 0);
        state.nack(a.id, 0, None, 0).unwrap();
        state.ack(b.id).unwrap();
        assert_eq!(state.barrier(), 0);
        assert_eq!(state.removed_while_waiting(0), 10);
        assert_eq!(
            state.barrier(),
            20,
            "the removed batch no longer holds the barrier"
        );
        assert_eq!(state.stats(0).skipped_events, 10);
        assert_eq!(state.poll(0), Next::Fetch { from: 20 });
    }

    #[test]
    fn acks_out_of_order_wait_behind_the_gap() {
        let mut state = PartitionState::new(config(3), 100);
        assert_eq!(state.poll(0), Next::Fetch { from: 100 });
        let a = state.lease_new(100, 10, CloseReason::Full, 0);
        let b = state.lease_new(110, 10, CloseReason::Full, 0);
        let c = state.lease_new(120, 5, CloseReason::TailWait, 0);
        assert_eq!(
            state.poll(0),
            Next::Wait {
                until_ms: Some(1000)
            }
        );
        state.ack(c.id).unwrap();
        state.ack(b.id).unwrap();
        assert_eq!(
            state.barrier(),
            100,
            "nothing passes the unacknowledged first batch"
        );
        state.ack(a.id).unwrap();
        assert_eq!(state.barrier(), 125);
        assert!(matches!(state.ack(a.id), Err(SettleError::AlreadySettled)));
        assert!(matches!(state.ack(BatchId(999)), Err(SettleError::Unknown)));
    }

    #[test]
    fn an_expired_lease_is_redelivered_with_the_same_events_before_newer_batches() {
        let mut state = PartitionState::new(config(2), 0);
        let a = state.lease_new(0, 10, CloseReason::Full, 0);
        let b = state.lease_new(10, 10, CloseReason::Full, 0);
        state.ack(b.id).unwrap();
        // An acknowledged batch is no longer in flight, even while it waits behind the barrier.
        assert_eq!(state.poll(999), Next::Fetch { from: 20 });
        // Once the lease ran out, the redelivery goes before any newer batch.
        assert_eq!(
            state.poll(1000),
            Next::Redeliver {
                first_offset: 0,
                end_offset: 10
            }
        );
        let again = state.lease_redelivery(0, 1000);
        assert_eq!(
            (again.first_offset, again.end_offset, again.attempt),
            (0, 10, 2)
        );
        assert!(
            matches!(state.ack(a.id), Err(SettleError::Expired)),
            "the old holder lost the lease"
        );
        state.ack(again.id).unwrap();
        assert_eq!(state.barrier(), 20);
        assert_eq!(state.stats(1000).redeliveries, 1);
    }

    #[test]
    fn a_late_ack_is_accepted_while_nobody_else_holds_the_batch() {
        let mut state = PartitionState::new(config(1), 0);
        let a = state.lease_new(0, 5, CloseReason::Full, 0);
        assert!(matches!(state.poll(5000), Next::Redeliver { .. }));
        state.ack(a.id).unwrap();
        assert_eq!(state.barrier(), 5);
    }

    #[test]
    fn nack_delays_redelivery_and_dead_letters_after_max_attempts() {
        let mut state = PartitionState::new(config(1), 0);
        let mut lease = state.lease_new(0, 4, CloseReason::Full, 0);
        for attempt in 1..=3 {
            assert_eq!(lease.attempt, attempt);
            state
                .nack(lease.id, 50, Some(format!("failure {attempt}")), 100)
                .unwrap();
            assert_eq!(
                state.poll(149),
                Next::Wait {
                    until_ms: Some(150)
                },
                "the window is held: strictly ordered"
            );
            if attempt < 3 {
                assert_eq!(
                    state.poll(150),
                    Next::Redeliver {
                        first_offset: 0,
                        end_offset: 4
                    }
                );
                lease = state.lease_redelivery(0, 150);
            }
        }
        assert_eq!(
            state.poll(150),
            Next::DeadLetter {
                first_offset: 0,
                end_offset: 4,
                attempts: 3,
                last_reason: Some("failure 3".into())
            }
        );
        state.dead_lettered(0);
        assert_eq!(state.barrier(), 4);
        assert_eq!(state.poll(150), Next::Fetch { from: 4 });
        assert_eq!(state.stats(150).dead_letters, 1);
    }

    #[test]
    fn commits_follow_the_barrier() {
        let mut state = PartitionState::new(config(1), 7);
        let lease = state.lease_new(7, 3, CloseReason::Full, 0);
        state.ack(lease.id).unwrap();
        state.set_committed(10);
        assert_eq!(state.committed(), 10);
    }

    #[test]
    #[should_panic(expected = "a commit never passes the ack barrier")]
    fn committing_past_the_barrier_is_a_bug() {
        let mut state = PartitionState::new(config(1), 0);
        state.lease_new(0, 3, CloseReason::Full, 0);
        state.set_committed(3);
    }
}
