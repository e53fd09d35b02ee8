//! Consumer groups in the store: a [`Group`] is one (group, topic) active in this process, with
//! one `PartitionReader` per partition sharing one wake-up signal; every [`Consumer`] of the
//! group is a member leasing batches from those readers. Also group description and reset.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use weir_batch::{Attempt, Batch, BatchId, PartitionReader, Signal, WaitSet};

use crate::dead_letter::{dead_letter_topic, TopicDeadLetterSink};
use crate::error::{Error, Result};
use crate::store::{lock, Inner, Store};
use crate::topic::Topic;

/// A consumer group's batch settings (weir-batch's [`weir_batch::BatchConfig`]).
pub type ConsumerConfig = weir_batch::BatchConfig;

/// One (group, topic) active in this process.
pub(crate) struct Group {
    pub name: String,
    pub topic: String,
    pub config: ConsumerConfig,
    pub readers: Vec<Arc<PartitionReader>>,
    signal: Arc<Signal>,
    next_partition: AtomicUsize,
    /// Per partition that fails to deliver (a damaged one, say): when its failure was last
    /// logged, and how many since were not (every consumer's every attempt meets it again).
    failures_logged: std::sync::Mutex<std::collections::HashMap<u32, (Option<Instant>, u64)>>,
}

/// A partition's failure to deliver is logged at most this often.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// The group's shared state: the existing one if a member is alive, otherwise new readers
    /// resuming at the committed offsets.
    pub(crate) fn join(
        inner: &Arc<Inner>,
        name: &str,
        topic: &Topic,
        config: ConsumerConfig,
    ) -> Result<Arc<Group>> {
        config.validate()?;
        let key = (name.to_string(), topic.meta.name.clone());
        let mut groups = lock(&inner.groups);
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            if group.config != config {
                return Err(Error::GroupConfigMismatch {
                    group: name.to_string(),
                    topic: topic.meta.name.clone(),
                });
            }
            return Ok(group);
        }
        let signal = Signal::new();
        let sink = Arc::new(TopicDeadLetterSink {
            store: Arc::downgrade(inner),
            topic: dead_letter_topic(name),
        });
        let offsets: Arc<dyn weir_batch::OffsetCommits> = Arc::new(crate::store::ClosableOffsets(
            Arc::downgrade(&inner.offsets()?),
        ));
        let mut readers = Vec::with_capacity(topic.partitions.len());
        for (partition, log) in topic.partitions.iter().enumerate() {
            let reader = PartitionReader::open(
                name,
                &topic.meta.name,
                partition as u32,
                log.clone(),
                offsets.clone(),
                sink.clone(),
                config.clone(),
                inner.config.clock.clone(),
            )?
            .with_signal(signal.clone());
            readers.push(Arc::new(reader));
        }
        let group = Arc::new(Group {
            name: name.to_string(),
            topic: topic.meta.name.clone(),
            config,
            readers,
            signal,
            next_partition: AtomicUsize::new(0),
            failures_logged: std::sync::Mutex::default(),
        });
        groups.retain(|_, group| group.strong_count() > 0);
        groups.insert(key, Arc::downgrade(&group));
        tracing::info!(group = name, topic = %topic.meta.name, "consumer group active");
        Ok(group)
    }

    /// One pass over the partitions (starting after the last one served): a batch, or the
    /// wait that covers them all.
    fn attempt(&self, deadline: Instant) -> Result<std::result::Result<Batch, Option<WaitSet>>> {
        let seen = self.signal.generation();
        let count = self.readers.len();
        let start = self.next_partition.fetch_add(1, Ordering::Relaxed);
        let mut wait_until = deadline;
        let mut logs = Vec::new();
        let mut failure: Option<(u32, weir_batch::Error)> = None;
        for i in 0..count {
            let reader = &self.readers[(start + i) % count];
            let attempt = match reader.try_next_batch() {
                Ok(attempt) => attempt,
                Err(error) => {
                    // One failing partition must not starve the others: serve them, and
                    // report the failure only if none had a batch.
                    self.log_failure(reader.partition(), &error);
                    failure.get_or_insert((reader.partition(), error));
                    continue;
                }
            };
            match attempt {
                Attempt::Batch(batch) => {
                    crate::metrics::delivered(&self.name, &self.topic, &batch);
                    return Ok(Ok(batch));
                }
                Attempt::Wait {
                    until_ms,
                    log_offset,
                } => {
                    wait_until = wait_until.min(reader.wake_instant(until_ms, deadline));
                    if let Some(offset) = log_offset {
                        logs.push((reader.log().clone(), offset));
                    }
                }
            }
        }
        if let Some((partition, source)) = failure {
            return Err(Error::Partition {
                topic: self.topic.clone(),
                partition,
                source: Box::new(source),
            });
        }
        if Instant::now() >= deadline {
            return Ok(Err(None));
        }
        let mut wait = WaitSet::new(self.signal.clone(), seen, wait_until);
        for (log, offset) in logs {
            wait.log(log, offset);
        }
        Ok(Err(Some(wait)))
    }

    fn reader(&self, partition: u32) -> Result<&Arc<PartitionReader>> {
        self.readers
            .get(partition as usize)
            .ok_or_else(|| Error::PartitionOutOfRange {
                topic: self.topic.clone(),
                partition,
                partitions: self.readers.len() as u32,
            })
    }

    /// Logs a partition's failure to deliver, at most once per [`FAILURE_LOG_INTERVAL`],
    /// saying how many were not logged since.
    fn log_failure(&self, partition: u32, error: &weir_batch::Error) {
        let mut logged = lock(&self.failures_logged);
        let now = Instant::now();
        let entry = logged.entry(partition).or_insert((None, 0));
        if entry
            .0
            .is_some_and(|last| now.duration_since(last) < FAILURE_LOG_INTERVAL)
        {
            entry.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut entry.1);
        entry.0 = Some(now);
        tracing::warn!(group = %self.name, topic = %self.topic, partition, %error, suppressed, "a partition failed to deliver ({suppressed} more like this in the last interval not logged)");
    }

    /// Wakes every member waiting on this group.
    pub(crate) fn wake(&self) {
        self.signal.notify();
    }

    /// Commits every partition's barrier now.
    pub(crate) fn commit_all(&self) -> Result<()> {
        for reader in &self.readers {
            reader.commit()?;
        }
        Ok(())
    }
}

/// A member of a consumer group: leases batches, acks and nacks them.
///
/// Members of one group share its state; dropping the last member of a group leaves its
/// committed offsets in place and forgets its in-memory leases (they would have expired).
#[derive(Debug, Clone)]
pub struct Consumer {
    // Keeps the store open while a member is alive.
    _store: Store,
    group: Arc<Group>,
}

impl Consumer {
    pub(crate) fn new(store: Store, group: Arc<Group>) -> Self {
        Consumer {
            _store: store,
            group,
        }
    }

    /// Every call on a consumer of a closed store fails with [`Error::Closed`] (the store's
    /// offsets are let go at close, whoever still holds a consumer).
    fn check_open(&self) -> Result<()> {
        self._store.inner.check_open()
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.group.topic
    }

    /// Waits up to `timeout` for the next batch of any partition; `None` if none came (a
    /// normal answer). Redeliveries come before newer batches of their partition.
    ///
    /// # Errors
    /// [`Error::Batch`] if a log cannot be read, the dead-letter topic cannot be written, or a
    /// due commit failed.
    pub fn next_batch(&self, timeout: Duration) -> Result<Option<Batch>> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.group.attempt(deadline)? {
                Ok(batch) => return Ok(Some(batch)),
                Err(None) => return Ok(None),
                Err(Some(wait)) => wait.block(),
            }
        }
    }

    /// [`Consumer::next_batch`] for async code: waits without blocking a thread, on any
    /// executor.
    ///
    /// # Errors
    /// As [`Consumer::next_batch`].
    pub async fn next_batch_async(&self, timeout: Duration) -> Result<Option<Batch>> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            // An attempt may read the log, commit offsets or append dead letters (fsyncs): it
            // runs on the store's blocking pool, never on the caller's executor thread.
            let group = self.group.clone();
            let attempt = self
                ._store
                .inner
                .pool
                .run(move || group.attempt(deadline))
                .await;
            match attempt.unwrap_or(Err(Error::Closed))? {
                Ok(batch) => return Ok(Some(batch)),
                Err(None) => return Ok(None),
                Err(Some(wait)) => wait.await,
            }
        }
    }

    /// Acknowledges a batch; the group's committed offset advances over every batch
    /// acknowledged without a gap (per the commit policy).
    ///
    /// # Errors
    /// [`Error::Batch`] for an unknown, expired or already settled batch, or a failed commit.
    pub fn ack(&self, batch: &Batch) -> Result<()> {
        self.ack_id(batch.partition, batch.id)
    }

    /// Acknowledges `batch` together with `writes` to your own `tree`, in one durable step:
    /// the group's committed offset moves past the batch and the writes are applied, both or
    /// neither, and only then is the batch acknowledged. A crash can therefore never keep the
    /// writes without the progress or the progress without the writes: every batch's effect is
    /// applied exactly once (`examples/exactly_once.rs` counts events per key so, across kill
    /// -9). `writes` may run more than once (a transaction retried on a conflict): keep it free
    /// of other effects. Returning `Err(ConflictableTransactionError::Abort(e))` from it gives
    /// up: nothing is written, the batch stays leased, and `Ok(Err(e))` is returned.
    ///
    /// The group must run with `max_in_flight = 1` (each partition strictly in order), so that
    /// the batch's end is exactly the offset committed with the writes. This commit is made
    /// whatever the commit policy.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Batch`] if `max_in_flight` is not 1, or for an unknown,
    /// expired or already settled batch; [`Error::Offsets`] if the durable step failed (nothing
    /// was written, the batch stays leased).
    pub fn ack_with<T, E>(
        &self,
        batch: &Batch,
        tree: &crate::UserTree,
        writes: impl Fn(&crate::UserWrites) -> crate::ConflictableTransactionResult<T, E>,
    ) -> Result<std::result::Result<T, E>> {
        self.check_open()?;
        let offsets = self._store.inner.offsets()?;
        let user = tree.handle()?;
        let (group, topic, partition) = (&self.group.name, &self.group.topic, batch.partition);
        let reader = self.group.reader(partition)?;
        let outcome = reader.ack_with(batch.id, |end, expected| {
            let commit = weir_offsets::Commit::new(
                topic,
                partition,
                end,
                weir_offsets::CommitExpectation::from(expected),
            );
            Ok(offsets.commit_with(group, &[commit], &user, &writes)?)
        })?;
        if outcome.is_ok() {
            crate::metrics::acked(group, topic);
        }
        Ok(outcome)
    }

    /// [`Consumer::ack`] for async code: the ack is recorded at once, and a commit the policy
    /// wants now (an fsync of the offsets store) runs on the store's blocking pool, so no
    /// executor thread blocks. Works on any executor.
    ///
    /// # Errors
    /// As [`Consumer::ack`].
    pub async fn ack_async(&self, batch: &Batch) -> Result<()> {
        self.check_open()?;
        let (partition, id) = (batch.partition, batch.id);
        match self.try_ack_id_deferring_commit(partition, id)? {
            Some(false) => Ok(()),
            Some(true) => {
                let consumer = self.clone();
                self.run_blocking(move || consumer.commit_partition(partition))
                    .await
            }
            // The partition is busy (a fetch reads the log): ack where blocking is fine.
            None => {
                let consumer = self.clone();
                self.run_blocking(move || consumer.ack_id(partition, id))
                    .await
            }
        }
    }

    /// [`Consumer::nack`] for async code (the nack waits for the partition's state, which a
    /// fetch may hold through disk I/O: it runs on the store's blocking pool).
    ///
    /// # Errors
    /// As [`Consumer::nack`].
    pub async fn nack_async(
        &self,
        batch: &Batch,
        delay: Duration,
        reason: Option<&str>,
    ) -> Result<()> {
        self.check_open()?;
        let consumer = self.clone();
        let (partition, id) = (batch.partition, batch.id);
        let reason = reason.map(str::to_string);
        self.run_blocking(move || consumer.nack_id(partition, id, delay, reason.as_deref()))
            .await
    }

    /// Runs `work` on the store's blocking pool.
    async fn run_blocking(&self, work: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
        self._store
            .inner
            .pool
            .run(work)
            .await
            .unwrap_or(Err(Error::Closed))
    }

    /// Events the group has yet to deliver on this topic: those at the partitions' ends never
    /// delivered, and those waiting to be delivered again (batches out with members are not
    /// counted). 0 means the group has caught up: a consumer that wants to stop there need not
    /// wait for a `next_batch` to time out.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn undelivered_events(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.group.readers.iter().map(|r| r.undelivered()).sum())
    }

    /// True when the group has caught up with the topic ([`Consumer::undelivered_events`] is
    /// 0).
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn caught_up(&self) -> Result<bool> {
        Ok(self.undelivered_events()? == 0)
    }

    /// Acknowledges a batch by partition and id (e.g. from another process's record).
    ///
    /// # Errors
    /// As [`Consumer::ack`]; [`Error::PartitionOutOfRange`].
    pub fn ack_id(&self, partition: u32, id: BatchId) -> Result<()> {
        self.check_open()?;
        self.group.reader(partition)?.ack(id)?;
        crate::metrics::acked(&self.group.name, &self.group.topic);
        Ok(())
    }

    /// [`Consumer::ack_id`] without blocking, for async callers (the node): records the ack
    /// in memory and says whether the commit policy wants a commit now — `Some(true)`: call
    /// [`Consumer::commit_partition`] (which blocks on the offsets store's sync) before treating
    /// the ack as done. `None` if the partition is busy (a fetch reading the log or writing a
    /// dead letter): nothing was done; ack with [`Consumer::ack_id`] on a thread that may
    /// block.
    ///
    /// # Errors
    /// As [`Consumer::ack_id`], but never a failed commit.
    pub fn try_ack_id_deferring_commit(&self, partition: u32, id: BatchId) -> Result<Option<bool>> {
        self.check_open()?;
        let Some(acked) = self.group.reader(partition)?.try_ack_deferring_commit(id) else {
            return Ok(None);
        };
        let due = acked?;
        crate::metrics::acked(&self.group.name, &self.group.topic);
        Ok(Some(due))
    }

    /// Commits one partition's acknowledged progress now, if it moved (blocks on the offsets
    /// store's sync).
    ///
    /// # Errors
    /// [`Error::Batch`] if the commit failed; [`Error::PartitionOutOfRange`].
    pub fn commit_partition(&self, partition: u32) -> Result<()> {
        self.check_open()?;
        self.group.reader(partition)?.commit()?;
        Ok(())
    }

    /// Gives a batch back for redelivery after `delay` (or dead-lettering once it reached
    /// `max_attempts`), with an optional reason carried into the dead letter.
    ///
    /// # Errors
    /// [`Error::Batch`] for an unknown, expired or already settled batch.
    pub fn nack(&self, batch: &Batch, delay: Duration, reason: Option<&str>) -> Result<()> {
        self.nack_id(batch.partition, batch.id, delay, reason)
    }

    /// [`Consumer::nack`] by partition and id.
    ///
    /// # Errors
    /// As [`Consumer::nack`]; [`Error::PartitionOutOfRange`].
    pub fn nack_id(
        &self,
        partition: u32,
        id: BatchId,
        delay: Duration,
        reason: Option<&str>,
    ) -> Result<()> {
        self.check_open()?;
        self.group.reader(partition)?.nack(id, delay, reason)?;
        Ok(())
    }

    /// Commits the group's acknowledged progress now (for the interval commit policy).
    ///
    /// # Errors
    /// [`Error::Batch`] if a commit failed.
    pub fn commit(&self) -> Result<()> {
        self.check_open()?;
        self.group.commit_all()
    }
}

/// Where [`Store::reset_group`] moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The partition's first readable offset.
    Earliest,
    /// The partition's end: only new events are delivered.
    Latest,
    /// This offset (clamped into the partition's range).
    Offset(u64),
    /// The first event at or after this time (ms since the Unix epoch); the end if none.
    TimeMs(u64),
}

/// A group's progress, per topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The group.
    pub group: String,
    /// Per (topic, partition).
    pub partitions: Vec<GroupPartitionStatus>,
}

/// One partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupPartitionStatus {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The committed offset (next to read).
    pub committed_offset: u64,
    /// The partition's end offset.
    pub end_offset: u64,
    /// Events not yet committed.
    pub lag_events: u64,
    /// Newest event's timestamp minus the first uncommitted event's (0 without lag).
    pub lag_ms: u64,
    /// Whether a consumer of this group is active in this process.
    pub active: bool,
    /// Batches leased or waiting for redelivery.
    pub in_flight: u32,
    /// Age of the oldest unacknowledged batch, in ms.
    pub oldest_unacked_age_ms: Option<u64>,
    /// Redeliveries since the group became active.
    pub redeliveries: u64,
    /// Batches dead-lettered since the group became active.
    pub dead_letters: u64,
}

pub(crate) fn describe_group(inner: &Arc<Inner>, group: &str) -> Result<GroupDescription> {
    inner.check_open()?;
    weir_offsets::validate_name(group)?;
    let mut partitions = Vec::new();
    let active: Vec<Arc<Group>> = lock(&inner.groups)
        .iter()
        .filter(|((name, _), _)| name == group)
        .filter_map(|(_, g)| g.upgrade())
        .collect();
    for g in &active {
        for reader in &g.readers {
            let stats = reader.stats()?;
            partitions.push(GroupPartitionStatus {
                topic: g.topic.clone(),
                partition: reader.partition(),
                committed_offset: stats.committed_offset,
                end_offset: stats.end_offset,
                lag_events: stats.lag_events,
                lag_ms: stats.lag_ms,
                active: true,
                in_flight: stats.state.in_flight,
                oldest_unacked_age_ms: stats.state.oldest_unacked_age_ms,
                redeliveries: stats.state.redeliveries,
                dead_letters: stats.state.dead_letters,
            });
        }
    }
    for committed in inner.offsets()?.describe_group(group)?.partitions {
        if active.iter().any(|g| g.topic == committed.topic) {
            continue;
        }
        let Ok(topic) = inner.topic(&committed.topic) else {
            continue;
        };
        let Ok(log) = topic.log(committed.partition) else {
            continue;
        };
        let offset = committed.committed.offset;
        let end = log.end_offset();
        let lag_events = end.saturating_sub(offset);
        let lag_ms = if lag_events == 0 || offset < log.start_offset() {
            0
        } else {
            let at = |o: u64| {
                let batch = log.read(o, 1, usize::MAX).ok()?;
                let timestamp = batch.iter().next().map(|e| e.timestamp_ms);
                timestamp
            };
            match (at(offset), at(end - 1)) {
                (Some(first), Some(head)) => head.saturating_sub(first),
                _ => 0,
            }
        };
        partitions.push(GroupPartitionStatus {
            topic: committed.topic.clone(),
            partition: committed.partition,
            committed_offset: offset,
            end_offset: end,
            lag_events,
            lag_ms,
            active: false,
            in_flight: 0,
            oldest_unacked_age_ms: None,
            redeliveries: 0,
            dead_letters: 0,
        });
    }
    if partitions.is_empty() {
        return Err(Error::UnknownGroup(group.to_string()));
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(GroupDescription {
        group: group.to_string(),
        partitions,
    })
}

pub(crate) fn reset_group(
    inner: &Arc<Inner>,
    group: &str,
    topic_name: &str,
    to: ResetTo,
    partition: Option<u32>,
) -> Result<Vec<(u32, u64)>> {
    inner.check_open()?;
    weir_offsets::validate_name(group)?;
    // Held across the check and the writes, so no member can join in between.
    let groups = lock(&inner.groups);
    let active = groups
        .get(&(group.to_string(), topic_name.to_string()))
        .is_some_and(|state| state.strong_count() > 0);
    if active {
        return Err(Error::GroupActive {
            group: group.to_string(),
            topic: topic_name.to_string(),
        });
    }
    let topic = inner.topic(topic_name)?;
    let partitions: Vec<u32> = match partition {
        Some(partition) => {
            topic.log(partition)?;
            vec![partition]
        }
        None => (0..topic.partition_count()).collect(),
    };
    let mut moved = Vec::new();
    for partition in partitions {
        let log = topic.log(partition)?;
        let (start, end) = (log.start_offset(), log.end_offset());
        let offset = match to {
            ResetTo::Earliest => start,
            ResetTo::Latest => end,
            ResetTo::Offset(offset) => offset.clamp(start, end),
            ResetTo::TimeMs(time) => log
                .offset_for_time(time)
                .map_err(|e| Error::from_log(topic_name, partition, e))?
                .unwrap_or(end),
        };
        inner
            .offsets()?
            .reset(group, topic_name, partition, offset)?;
        moved.push((partition, offset));
    }
    drop(groups);
    tracing::info!(group, topic = topic_name, ?to, "group reset");
    Ok(moved)
}
