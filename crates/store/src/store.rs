//! [`Store`]: one data directory holding topics (one weir-log per partition), the consumer
//! groups' committed offsets (weir-offsets) and the groups active in this process. It owns
//! opening and recovery, topic administration, produce, replay, group administration, and the
//! background maintenance thread.
//!
//! Layout of a data directory (see `docs/format.md`, "Store directory"):
//!
//! ```text
//! <root>/weir.lock                 exclusive lock: one process per data directory
//! <root>/offsets/                  weir-offsets (sled)
//! <root>/topics/<name>/topic.json  topic metadata
//! <root>/topics/<name>/<p>/        weir-log of partition p
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use weir_log::{AppendEvent, Header};
use weir_offsets::OffsetStore;

use crate::blocking::BlockingPool;
use crate::config::{StoreConfig, TopicConfig, TopicSync};
use crate::consumer::{Consumer, ConsumerConfig, Group};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::metrics as store_metrics;
use crate::partitioner::{partition_for_key, Partitioning};
use crate::recovery::{JournalSurvey, Witnesses};
use crate::replay::{Replay, ReplayFrom, ReplayOptions};
use crate::topic::{self, Topic, TopicMeta, DELETED_PREFIX, TOPIC_FORMAT_VERSION};

/// Bytes reserved per event for the source headers a dead letter adds (names, offsets, the
/// group and topic names and a nack reason of up to 1 KiB).
const DEAD_LETTER_HEADER_BYTES: u64 = 1700;

/// The lock file of a data directory.
pub const LOCK_FILE: &str = "weir.lock";

/// The offsets store's witness file, beside (not inside) its directory, so that it outlives a
/// deleted `offsets/` (`docs/format.md`, "Offsets store").
pub const OFFSETS_WITNESS_FILE: &str = "offsets.witness";

/// How the store opens its offsets store under `root`.
pub(crate) fn offsets_config(root: &Path) -> weir_offsets::Config {
    weir_offsets::Config::new(root.join("offsets"))
        .with_witness_path(root.join(OFFSETS_WITNESS_FILE))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, consistent after every critical section.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An event to produce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Milliseconds since the Unix epoch; `None` stamps it at append.
    pub timestamp_ms: Option<u64>,
    /// The key: chooses the partition under [`Partitioning::ByKey`].
    pub key: Option<Bytes>,
    /// Headers, name → bytes.
    pub headers: Vec<(String, Bytes)>,
    /// The value.
    pub value: Bytes,
}

impl Record {
    /// A record with only a value.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Record {
            value: value.into(),
            ..Record::default()
        }
    }

    /// The same record with a key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same record with one more header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same record with an explicit timestamp.
    #[must_use]
    pub fn timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// Where each produced record landed, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// (partition, offset) of each record.
    pub positions: Vec<(u32, u64)>,
}

/// A topic's description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// The settings.
    pub config: TopicConfig,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: u64,
    /// Per partition.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionDescription {
    /// The partition.
    pub partition: u32,
    /// First readable offset.
    pub start_offset: u64,
    /// Offset after the last visible event.
    pub end_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Segments.
    pub segments: usize,
    /// Timestamp of the oldest readable event.
    pub oldest_timestamp_ms: Option<u64>,
    /// Timestamp of the newest event.
    pub newest_timestamp_ms: Option<u64>,
}

/// A partition whose acknowledged data is damaged (see [`Store::damaged_partitions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DamagedPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Reads see offsets below this.
    pub readable_end: u64,
    /// The damage: file, byte position, what is wrong.
    pub damage: String,
}

/// What opening the store did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreRecoveryReport {
    /// Each partition's recovery.
    pub partitions: Vec<PartitionRecovery>,
    /// Committed offsets that pointed past their log's end and were moved back to it.
    pub offsets_clamped: Vec<weir_offsets::Clamped>,
    /// Topic directories of an interrupted creation or deletion, removed.
    pub topics_removed: Vec<String>,
    /// What the replay of the store's journal did (events written back into partitions whose
    /// segments a crash cut short).
    pub journal: crate::journal::JournalRecovery,
}

impl StoreRecoveryReport {
    /// The partitions whose acknowledged data is damaged: they opened read-only below the
    /// damage and take no writes until `weir repair` mends them.
    pub fn damaged(&self) -> impl Iterator<Item = &PartitionRecovery> {
        self.partitions
            .iter()
            .filter(|p| !p.report.damage.is_empty())
    }

    /// Torn tails cut, over all partitions: tails that held something other than zeros (a
    /// write a crash cut short, or writes that reached the disk out of order).
    pub fn torn_tails(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.report.torn_tail.as_ref().is_some_and(|t| !t.zeros_only))
            .count()
    }

    /// Tails of only zeros cut, over all partitions: the zeros written ahead of the end of the
    /// active segment (or sectors never written), the usual state after a crash.
    pub fn zero_tails(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.report.torn_tail.as_ref().is_some_and(|t| t.zeros_only))
            .count()
    }
}

/// One partition's recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecovery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What the log did.
    pub report: weir_log::RecoveryReport,
}

/// Builds a [`Store`]: `Store::builder(path).event_bytes_max(..).open()`.
#[derive(Debug)]
#[must_use]
pub struct StoreBuilder {
    root: PathBuf,
    config: StoreConfig,
}

impl StoreBuilder {
    /// The largest encoded event (default 1 MiB).
    pub fn event_bytes_max(mut self, bytes: u32) -> Self {
        self.config.event_bytes_max = bytes;
        self
    }

    /// The largest encoded append to one partition (default 16 MiB).
    pub fn append_bytes_max(mut self, bytes: u32) -> Self {
        self.config.append_bytes_max = bytes;
        self
    }

    /// How often the maintenance thread runs (default 1 s).
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.config.maintenance_interval_ms =
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Threads for the async API's blocking calls (default 16).
    pub fn blocking_threads(mut self, threads: usize) -> Self {
        self.config.blocking_threads = threads;
        self
    }

    /// The largest append frame made durable by the store's journal (default 64 KiB; 0 turns
    /// the journal off). See [`StoreConfig::journal_frame_bytes_max`].
    pub fn journal_frame_bytes_max(mut self, bytes: u32) -> Self {
        self.config.journal_frame_bytes_max = bytes;
        self
    }

    /// The size at which a journal file is retired (default 64 MiB). See
    /// [`StoreConfig::journal_bytes_max`].
    pub fn journal_bytes_max(mut self, bytes: u64) -> Self {
        self.config.journal_bytes_max = bytes;
        self
    }

    /// Open as `weir repair` does (default false): salvage damaged journal files, and record
    /// as lost the events a damaged block held where a partition lacks them. See
    /// [`StoreConfig::journal_repair`].
    pub fn journal_repair(mut self, repair: bool) -> Self {
        self.config.journal_repair = repair;
        self
    }

    /// The clock for timestamps and leases (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn weir_log::Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// The file system under topics and partitions (default the real one, [`weir_log::StdStorage`]).
    /// Fault tests pass [`weir_log::sim::SimStorage`]; consumer-group offsets stay in sled on
    /// the real file system under `root/offsets`.
    pub fn storage(mut self, storage: Arc<dyn weir_log::Storage>) -> Self {
        self.config.storage = storage;
        self
    }

    /// The whole configuration at once.
    pub fn config(mut self, config: StoreConfig) -> Self {
        self.config = config;
        self
    }

    /// Opens (creating if needed) the store, recovering every partition.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::Locked`], [`Error::Io`]; [`Error::Log`] or
    /// [`Error::Corrupt`] if acknowledged data or metadata is damaged; [`Error::Offsets`].
    pub fn open(self) -> Result<Store> {
        Store::open_with(self.root, self.config)
    }
}

/// A data directory of topics and consumer groups. `Clone + Send + Sync`: clones share the
/// same store.
///
/// See the crate docs for an example.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub topics_dir: PathBuf,
    pub config: StoreConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    topic_admin: Mutex<()>,
    /// The offsets store; taken (and so closed: sled and its lock let go) by `close`. Readers
    /// hold it only weakly ([`ClosableOffsets`]), so a consumer that outlives the store cannot
    /// keep it open.
    offsets: Mutex<Option<Arc<OffsetStore>>>,
    pub groups: Mutex<HashMap<(String, String), Weak<Group>>>,
    pub pool: BlockingPool,
    closed: AtomicBool,
    report: StoreRecoveryReport,
    lock_file: Mutex<Option<Box<dyn weir_log::StorageLock>>>,
    journal: Journal,
    maintenance: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    nonce: AtomicU64,
}

impl Store {
    /// A builder for the store in `root`.
    pub fn builder(root: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            root: root.as_ref().to_path_buf(),
            config: StoreConfig::default(),
        }
    }

    /// Opens the store in `root` with default settings.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        Store::builder(root).open()
    }

    fn open_with(root: PathBuf, config: StoreConfig) -> Result<Store> {
        config.validate()?;
        let storage = config.storage.clone();
        storage
            .create_dir_all(&root)
            .map_err(|e| Error::io("create data directory", &root, e))?;
        let lock_path = root.join(LOCK_FILE);
        let lock_file = match storage.lock(&lock_path) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { path: lock_path })
            }
            Err(e) => return Err(Error::io("lock", &lock_path, e)),
        };
        let topics_dir = root.join("topics");
        storage
            .create_dir_all(&topics_dir)
            .map_err(|e| Error::io("create directory", &topics_dir, e))?;
        topic::sync_dir(&*storage, &root)?;

        // First everything recovery decides on, read without changing a byte: the journal,
        // the committed offsets and the topics' metadata. A start that refuses refuses here,
        // having written nothing (`docs/durability.md`, "Recovery").
        let journal_survey = JournalSurvey::read(&*storage, &root)?;
        if !config.journal_repair {
            if let Some((path, corrupt)) = journal_survey.damage().next() {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{corrupt}: an acknowledged journal block is damaged (`weir repair` \
                         writes back every valid block and records what the damaged one held, \
                         where the partitions lack it, as lost)"
                    ),
                });
            }
        }
        let offsets = Arc::new(
            OffsetStore::open(&offsets_config(&root))?
                .with_clock(Arc::new(ClockAdapter(config.clock.clone()))),
        );
        for corrupt in &offsets.open_report().corrupt {
            tracing::error!(key = %corrupt.key, problem = %corrupt.problem, "a committed offset is damaged: its group cannot read it until `weir group reset` or `weir repair`");
        }
        let mut witnesses =
            Witnesses::from_journal(&journal_survey).repairing(config.journal_repair);
        witnesses.add_committed(&offsets)?;
        let mut names: Vec<String> = storage
            .list_dir(&topics_dir)
            .map_err(|e| Error::io("list", &topics_dir, e))?;
        names.sort();
        let mut interrupted = Vec::new();
        let mut metas = Vec::new();
        for name in names {
            let dir = topics_dir.join(&name);
            if name.starts_with(DELETED_PREFIX) || !topic::meta_exists(&*storage, &dir)? {
                if !name.starts_with(DELETED_PREFIX) && topic::holds_events(&*storage, &dir)? {
                    return Err(Error::Corrupt {
                        path: dir.join(topic::TOPIC_FILE),
                        reason: "the topic's metadata file is missing, but its partitions hold \
                                 events (restore topic.json from a backup, or write it again \
                                 by hand from docs/format.md; nothing was changed)"
                            .into(),
                    });
                }
                // An interrupted deletion, or a creation that never reached its metadata file.
                interrupted.push((name, dir));
                continue;
            }
            let meta = topic::read_checked_meta(&*storage, &dir, &config)?;
            for partition in 0..meta.config.partitions {
                let partition_dir = dir.join(partition.to_string());
                if storage.list_dir(&partition_dir).is_err() {
                    return Err(Error::Corrupt {
                        path: partition_dir,
                        reason: "the partition's directory is missing: its events are lost \
                                 (`weir repair` creates it, marking what groups and the journal \
                                 say it held as lost)"
                            .into(),
                    });
                }
            }
            metas.push((name, dir, meta));
        }

        let mut report = StoreRecoveryReport::default();
        for (name, dir) in interrupted {
            tracing::warn!(dir = %dir.display(), "removing an incomplete topic directory");
            storage
                .remove_dir_all(&dir)
                .map_err(|e| Error::io("remove", &dir, e))?;
            topic::sync_dir(&*storage, &topics_dir)?;
            report.topics_removed.push(name);
        }
        let mut topics = BTreeMap::new();
        for (name, dir, meta) in metas {
            let topic = Topic::open(dir, meta, &config, &witnesses)?;
            for (partition, log) in topic.partitions.iter().enumerate() {
                report.partitions.push(PartitionRecovery {
                    topic: name.clone(),
                    partition: partition as u32,
                    report: log.recovery_report().clone(),
                });
            }
            topics.insert(name, Arc::new(topic));
        }
        // Before anything reads the partitions (the clamp below included): write back the
        // journaled events that a crash took from the segments.
        let (journal, journal_recovery) = Journal::open(&root, &config, &topics, &journal_survey)?;
        report.journal = journal_recovery;
        // A committed offset never points past the durable log end. (Not at a damaged
        // partition: its end is where reads stop, and its committed offsets are the evidence
        // of what `weir repair` must mark lost.)
        let clamp = offsets.clamp_to_log_ends(|topic, partition| {
            topics
                .get(topic)
                .and_then(|t: &Arc<Topic>| t.partitions.get(partition as usize))
                .filter(|log| log.damage().is_none())
                .map(|log| log.end_offset())
        })?;
        for clamped in &clamp.clamped {
            tracing::warn!(group = %clamped.at.group, topic = %clamped.at.topic, partition = clamped.at.partition, committed = clamped.committed, log_end = clamped.log_end, "clamped a committed offset to the log end");
        }
        report.offsets_clamped = clamp.clamped;
        // Offsets of topics that no longer exist (deleted by a version that kept them): a topic
        // created again under the name would start at 0 and the group would skip its events.
        let mut gone: Vec<&str> = clamp
            .without_log_end
            .iter()
            .map(|at| at.topic.as_str())
            .filter(|topic| !topics.contains_key(*topic))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        for topic in gone {
            let removed = offsets.delete_topic(topic)?;
            tracing::warn!(
                topic,
                removed,
                "deleted committed offsets of a topic that does not exist"
            );
        }
        tracing::info!(
            root = %root.display(),
            topics = topics.len(),
            partitions = report.partitions.len(),
            damaged_partitions = report.damaged().count(),
            torn_tails = report.torn_tails(),
            zero_tails = report.zero_tails(),
            offsets_clamped = report.offsets_clamped.len(),
            journal_files = report.journal.files,
            journal_partitions_restored = report.journal.restored.len(),
            "store opened"
        );

        let inner = Arc::new(Inner {
            topics_dir,
            pool: BlockingPool::new(config.blocking_threads),
            config,
            topics: RwLock::new(topics),
            topic_admin: Mutex::new(()),
            offsets: Mutex::new(Some(offsets)),
            groups: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            report,
            lock_file: Mutex::new(Some(lock_file)),
            journal,
            maintenance: Mutex::new(None),
            stop: Arc::default(),
            nonce: AtomicU64::new(0),
            root,
        });
        let mut damaged = 0;
        for topic in inner.topics_snapshot() {
            store_metrics::observe_topic(&topic);
            for (partition, log) in topic.partitions.iter().enumerate() {
                let is_damaged = log.damage().is_some();
                damaged += usize::from(is_damaged);
                store_metrics::partition_damaged(&topic.meta.name, partition as u32, is_damaged);
            }
        }
        store_metrics::partitions_damaged(damaged);
        let handle = crate::maintenance::start(
            Arc::downgrade(&inner),
            inner.stop.clone(),
            inner.config.maintenance_interval_ms,
        );
        *lock(&inner.maintenance) = Some(handle);
        Ok(Store { inner })
    }

    /// What opening the store did (torn tails cut, offsets clamped, leftovers removed).
    pub fn recovery_report(&self) -> &StoreRecoveryReport {
        &self.inner.report
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// A tree of your own in the store's offsets database, named `name`: write to it in the
    /// same durable step as a consumer's acknowledgement ([`Consumer::ack_with`]), so that each
    /// batch's effect is kept exactly once, across any crash; read it any time.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Offsets`] for a name reserved for the offsets store (names
    /// starting with `weir-offsets`).
    pub fn user_tree(&self, name: &str) -> Result<crate::UserTree> {
        self.inner.offsets()?.user_tree(name)?;
        Ok(crate::UserTree::new(self.clone(), name.to_string()))
    }

    /// The partitions whose acknowledged data is damaged (found at open, or since by a read):
    /// they serve reads below the damage and take no appends until `weir repair` mends them.
    /// The rest of the store works on.
    pub fn damaged_partitions(&self) -> Vec<DamagedPartition> {
        let mut damaged = Vec::new();
        for topic in self.inner.topics_snapshot() {
            for (partition, log) in topic.partitions.iter().enumerate() {
                if let Some(damage) = log.damage() {
                    damaged.push(DamagedPartition {
                        topic: topic.meta.name.clone(),
                        partition: partition as u32,
                        readable_end: log.end_offset(),
                        damage: damage.to_string(),
                    });
                }
            }
        }
        damaged
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidConfig`], [`Error::TopicExists`], [`Error::Io`].
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.inner.create_topic(name, config)
    }

    /// The topics' names, sorted.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn list_topics(&self) -> Result<Vec<String>> {
        self.inner.check_open()?;
        Ok(self.inner.topics_read().keys().cloned().collect())
    }

    /// A topic's settings and, per partition, its offsets, size and timestamps.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; [`Error::Log`] if a partition cannot be read.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.inner.topic(name)?;
        let mut partitions = Vec::new();
        for (index, log) in topic.partitions.iter().enumerate() {
            let partition = index as u32;
            let stats = log
                .stats()
                .map_err(|e| Error::from_log(name, partition, e))?;
            let timestamp_at = |offset: u64| -> Result<Option<u64>> {
                if offset >= stats.end_offset {
                    return Ok(None);
                }
                let batch = log
                    .read(offset, 1, usize::MAX)
                    .map_err(|e| Error::from_log(name, partition, e))?;
                let timestamp = batch.iter().next().map(|event| event.timestamp_ms);
                Ok(timestamp)
            };
            partitions.push(PartitionDescription {
                partition,
                start_offset: stats.start_offset,
                end_offset: stats.end_offset,
                bytes: stats.bytes,
                segments: stats.segments,
                oldest_timestamp_ms: timestamp_at(stats.start_offset)?,
                newest_timestamp_ms: if stats.end_offset > stats.start_offset {
                    timestamp_at(stats.end_offset - 1)?
                } else {
                    None
                },
            });
        }
        Ok(TopicDescription {
            name: topic.meta.name.clone(),
            config: topic.meta.config.clone(),
            created_ms: topic.meta.created_ms,
            partitions,
        })
    }

    /// Deletes a topic and its data. Groups' committed offsets for it are kept (they are
    /// clamped if a topic of the same name is created again).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`]; [`Error::GroupActive`] if a group consumes it in this process;
    /// [`Error::Io`].
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        inner.check_open()?;
        let _admin = lock(&inner.topic_admin);
        let topic = inner.topic(name)?;
        if let Some((group, topic_name)) =
            inner.active_groups().into_iter().find(|(_, t)| t == name)
        {
            return Err(Error::GroupActive {
                group,
                topic: topic_name,
            });
        }
        // The groups' offsets go first, durably: a topic created again under this name starts
        // at offset 0, and an old offset there would skip its first events. (A crash between
        // the two leaves the topic with its events and no offsets: redelivery, never a skip.)
        inner.offsets()?.delete_topic(name)?;
        topic.close()?;
        inner.topics_write().remove(name);
        drop(topic);
        topic::remove_topic_dir(
            &*inner.config.storage,
            &inner.topics_dir,
            name,
            inner.nonce.fetch_add(1, Ordering::Relaxed),
        )?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Appends `records` to `topic`, choosing partitions by `partitioning`; returns where each
    /// landed once they are durable (under the topic's sync policy). The records bound for one
    /// partition are appended atomically. Safe from many threads at once: appends to one
    /// partition share fsyncs.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::PartitionOutOfRange`], [`Error::InvalidEvent`]
    /// (limits are checked before anything is written), [`Error::Log`].
    pub fn append(
        &self,
        topic: &str,
        records: impl AsRef<[Record]>,
        partitioning: Partitioning,
    ) -> Result<Produced> {
        self.inner
            .append(topic, records.as_ref(), partitioning, None)
    }

    /// Appends `records` to one partition only if its end offset is `expected_offset`
    /// (optimistic concurrency); returns the first offset.
    ///
    /// # Errors
    /// [`Error::UnexpectedOffset`] naming the actual end; otherwise as [`Store::append`].
    pub fn append_expected(
        &self,
        topic: &str,
        partition: u32,
        records: impl AsRef<[Record]>,
        expected_offset: u64,
    ) -> Result<u64> {
        let produced = self.inner.append(
            topic,
            records.as_ref(),
            Partitioning::Partition(partition),
            Some(expected_offset),
        )?;
        Ok(produced
            .positions
            .first()
            .map_or(expected_offset, |&(_, offset)| offset))
    }

    /// [`Store::append`] for async code: the fsync wait runs on the store's blocking pool, so
    /// no runtime thread blocks. Works on any executor. Takes the records as [`Store::append`]
    /// does (a slice is copied — the values' bytes are shared, not copied — and a `Vec` moved).
    ///
    /// # Errors
    /// As [`Store::append`]; [`Error::Closed`] if the store closed first.
    pub async fn append_async(
        &self,
        topic: &str,
        records: impl Into<Vec<Record>>,
        partitioning: Partitioning,
    ) -> Result<Produced> {
        let records: Vec<Record> = records.into();
        let inner = self.inner.clone();
        let topic = topic.to_string();
        let completion = self
            .inner
            .pool
            .run(move || inner.append(&topic, &records, partitioning, None));
        completion.await.unwrap_or(Err(Error::Closed))
    }

    /// A consumer of `topic` in `group`. Consumers of the same group and topic in this process
    /// are members of one group: they lease batches from the same cursor, and each sees the
    /// redeliveries of the others' expired batches.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::UnknownTopic`], [`Error::Batch`] for a bad config,
    /// [`Error::GroupConfigMismatch`] if the group runs with other settings.
    pub fn consumer(&self, group: &str, topic: &str, config: ConsumerConfig) -> Result<Consumer> {
        weir_offsets::validate_name(group)?;
        // The group's dead letters must always fit the dead-letter topic: its name, and a whole
        // batch (with the source headers) in one append.
        weir_offsets::validate_name(&crate::dead_letter::dead_letter_topic(group))?;
        let events_max = weir_log::LogConfig::default().append_events_max;
        if config.batch_size > events_max {
            return Err(Error::InvalidConfig {
                field: "batch_size".into(),
                reason: format!("{} is over {events_max}, the most events one append (and so one dead letter) may hold", config.batch_size),
            });
        }
        let dead_letter_bytes = config
            .batch_bytes_max
            .saturating_add(u64::from(config.batch_size) * DEAD_LETTER_HEADER_BYTES);
        if dead_letter_bytes > u64::from(self.inner.config.append_bytes_max) {
            return Err(Error::InvalidConfig {
                field: "batch_bytes_max".into(),
                reason: format!(
                    "a dead-lettered batch of {} bytes plus its source headers would not fit in one append ({} bytes, append_bytes_max)",
                    config.batch_bytes_max, self.inner.config.append_bytes_max
                ),
            });
        }
        let topic_handle = self.inner.topic(topic)?;
        let group_state = Group::join(&self.inner, group, &topic_handle, config)?;
        Ok(Consumer::new(self.clone(), group_state))
    }

    /// Replays one partition of `topic` from an offset or a time (see [`ReplayOptions`]).
    /// Replay never moves a group's offsets.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::PartitionOutOfRange`], [`Error::OffsetOutOfRange`]
    /// for an offset past the end or below the start.
    pub fn replay(
        &self,
        topic: &str,
        partition: u32,
        from: ReplayFrom,
        options: ReplayOptions,
    ) -> Result<Replay> {
        let topic_handle = self.inner.topic(topic)?;
        let log = topic_handle.log(partition)?.clone();
        Replay::new(
            topic,
            partition,
            log,
            from,
            options,
            self.inner.config.clock.now_ms(),
        )
    }

    /// Every group with committed offsets or consumers in this process, sorted.
    ///
    /// # Errors
    /// [`Error::Offsets`].
    pub fn list_groups(&self) -> Result<Vec<String>> {
        self.inner.check_open()?;
        let mut groups = self.inner.offsets()?.list_groups()?;
        groups.extend(
            self.inner
                .active_groups()
                .into_iter()
                .map(|(group, _)| group),
        );
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// A group's progress per topic partition: committed and end offsets, lag in events and
    /// in time, in-flight batches, oldest unacknowledged age, redeliveries and dead letters
    /// (the last four only for groups consuming in this process).
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::Offsets`], [`Error::Log`].
    pub fn describe_group(&self, group: &str) -> Result<crate::consumer::GroupDescription> {
        crate::consumer::describe_group(&self.inner, group)
    }

    /// Moves a group's committed offset for `topic` (one partition, or all) to `to`. The group
    /// must have no consumers in this process.
    ///
    /// # Errors
    /// [`Error::GroupActive`], [`Error::UnknownTopic`], [`Error::PartitionOutOfRange`],
    /// [`Error::Offsets`].
    pub fn reset_group(
        &self,
        group: &str,
        topic: &str,
        to: crate::consumer::ResetTo,
        partition: Option<u32>,
    ) -> Result<Vec<(u32, u64)>> {
        crate::consumer::reset_group(&self.inner, group, topic, to, partition)
    }

    /// Deletes a group's committed offsets. The group must have no consumers in this process.
    ///
    /// # Errors
    /// [`Error::GroupActive`], [`Error::UnknownGroup`], [`Error::Offsets`].
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let inner = &self.inner;
        inner.check_open()?;
        weir_offsets::validate_name(group)?;
        // Held across the check and the delete, so no member can join in between.
        let groups = lock(&inner.groups);
        if let Some(((_, topic), _)) = groups
            .iter()
            .find(|((g, _), state)| g == group && state.strong_count() > 0)
        {
            return Err(Error::GroupActive {
                group: group.to_string(),
                topic: topic.clone(),
            });
        }
        if inner.offsets()?.delete_group(group)? == 0 {
            return Err(Error::UnknownGroup(group.to_string()));
        }
        drop(groups);
        Ok(())
    }

    /// Closes the store: stops maintenance, commits every active group's acknowledged
    /// progress, closes every partition cleanly and releases the lock. Later calls fail with
    /// [`Error::Closed`]. Dropping the last clone closes it too (errors are logged).
    ///
    /// # Errors
    /// The first failure; the store is closed all the same.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    /// Reads events of one partition from `offset` (up to `max_events` and about `max_bytes`),
    /// without waiting. The node's read path; replay wraps it.
    ///
    /// # Errors
    /// As [`Store::replay`].
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<weir_log::ReadBatch> {
        let topic_handle = self.inner.topic(topic)?;
        let log = topic_handle.log(partition)?;
        log.read(offset, max_events, max_bytes)
            .map_err(|e| Error::from_log(topic, partition, e))
    }

    /// The log of one partition (for the node's long-poll reads).
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], [`Error::PartitionOutOfRange`].
    pub fn partition_log(&self, topic: &str, partition: u32) -> Result<Arc<weir_log::Log>> {
        let topic_handle = self.inner.topic(topic)?;
        Ok(topic_handle.log(partition)?.clone())
    }

    /// The number of partitions of a topic.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.inner.topic(topic)?.partition_count())
    }
}

impl Inner {
    /// The offsets store, while the store is open.
    pub(crate) fn offsets(&self) -> Result<Arc<OffsetStore>> {
        lock(&self.offsets).clone().ok_or(Error::Closed)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn topics_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn topics_snapshot(&self) -> Vec<Arc<Topic>> {
        self.topics_read().values().cloned().collect()
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        self.topics_read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// (group, topic) of every group with consumers in this process.
    pub(crate) fn active_groups(&self) -> Vec<(String, String)> {
        lock(&self.groups)
            .iter()
            .filter(|(_, group)| group.strong_count() > 0)
            .map(|((group, topic), _)| (group.clone(), topic.clone()))
            .collect()
    }

    pub(crate) fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_open()?;
        weir_offsets::validate_name(name)?;
        if name.starts_with(DELETED_PREFIX) {
            // Open removes such directories as interrupted deletions.
            return Err(Error::InvalidConfig {
                field: "topic name".into(),
                reason: format!(
                    "names starting with {DELETED_PREFIX:?} are reserved for topics being deleted"
                ),
            });
        }
        config.validate(&self.config)?;
        let _admin = lock(&self.topic_admin);
        // Checked again under the admin lock: close() takes it before closing the topics.
        self.check_open()?;
        if self.topics_read().contains_key(name) {
            return Err(Error::TopicExists(name.to_string()));
        }
        let meta = TopicMeta {
            format_version: TOPIC_FORMAT_VERSION,
            name: name.to_string(),
            id: topic::new_topic_id(),
            created_ms: self.config.clock.now_ms(),
            config,
        };
        let topic = Topic::create(&self.topics_dir, meta, &self.config)?;
        store_metrics::observe_topic(&topic);
        self.topics_write()
            .insert(name.to_string(), Arc::new(topic));
        tracing::info!(topic = name, "topic created");
        Ok(())
    }

    pub(crate) fn append(
        &self,
        topic_name: &str,
        records: &[Record],
        partitioning: Partitioning,
        expected_offset: Option<u64>,
    ) -> Result<Produced> {
        let topic = self.topic(topic_name)?;
        if records.is_empty() {
            return Err(Error::InvalidRequest(
                "an append needs at least one record".into(),
            ));
        }
        let partitions = topic.partition_count();
        // Which partition each record goes to.
        let targets: Vec<u32> = match partitioning {
            Partitioning::Partition(partition) => {
                topic.log(partition)?;
                vec![partition; records.len()]
            }
            Partitioning::RoundRobin => vec![topic.next_round_robin(); records.len()],
            Partitioning::ByKey => {
                let keyless = topic.next_round_robin();
                records
                    .iter()
                    .map(|record| {
                        record
                            .key
                            .as_ref()
                            .map_or(keyless, |key| partition_for_key(key, partitions))
                    })
                    .collect()
            }
        };
        let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, &partition) in targets.iter().enumerate() {
            by_partition.entry(partition).or_default().push(index);
        }
        if expected_offset.is_some() && by_partition.len() != 1 {
            return Err(Error::InvalidRequest(
                "expected_offset needs all records in one partition".into(),
            ));
        }
        let mut positions = vec![(0u32, 0u64); records.len()];
        let started = std::time::Instant::now();
        let groups: Vec<(u32, Vec<usize>)> = by_partition.into_iter().collect();
        let headers: Vec<Vec<Vec<Header<'_>>>> = groups
            .iter()
            .map(|(_, indexes)| {
                indexes
                    .iter()
                    .map(|&i| {
                        records[i]
                            .headers
                            .iter()
                            .map(|(name, value)| Header { name, value })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let events: Vec<Vec<AppendEvent<'_>>> = groups
            .iter()
            .zip(&headers)
            .map(|((_, indexes), headers)| {
                indexes
                    .iter()
                    .zip(headers)
                    .map(|(&i, headers)| AppendEvent {
                        timestamp_ms: records[i].timestamp_ms,
                        key: records[i].key.as_deref(),
                        headers,
                        value: &records[i].value,
                    })
                    .collect()
            })
            .collect();
        // Check every partition's part before writing any: a produce that breaks a limit
        // writes nothing at all.
        for ((partition, _), events) in groups.iter().zip(&events) {
            topic
                .log(*partition)?
                .validate_append(events)
                .map_err(|e| Error::from_log(topic_name, *partition, e))?;
        }
        // Small appends to a durable topic go through the store's journal (one fsync for all
        // their partitions); the rest fsync their own segments.
        let journaled_max = if topic.meta.config.sync == TopicSync::Always {
            self.config.journal_frame_bytes_max as usize
        } else {
            0
        };
        if journaled_max > 0 {
            self.journal.check()?;
        }
        // Write every partition's frame first, then wait for their fsyncs: the waits overlap
        // with other producers' group commits instead of running one after another.
        let mut pending = Vec::with_capacity(groups.len());
        let mut journal_ticket = None;
        for ((partition, indexes), events) in groups.iter().zip(&events) {
            let partition = *partition;
            let log = topic.log(partition)?;
            let bytes: usize = events.iter().map(|e| e.encoded_len().unwrap_or(0)).sum();
            let journaled = weir_log::format::FRAME_HEADER_LEN + bytes <= journaled_max;
            let written = if journaled {
                log.append_start_with(events, expected_offset, &mut |frame, point| {
                    let ticket = self
                        .journal
                        .add(log, topic.meta.id, partition, frame, point);
                    journal_ticket = Some(ticket);
                })
            } else {
                log.append_start(events, expected_offset)
            }
            .map_err(|e| Error::from_log(topic_name, partition, e))?;
            pending.push((partition, indexes, written, events.len(), bytes, journaled));
        }
        // Start the fsyncs of the partitions not journaled (all but the last one, unless a
        // journal commit is this thread's to lead) on the blocking pool, so that they run at
        // once; the waits below then find them done or in progress (or lead them). A helper
        // never waits behind a running fsync (`start_sync` returns at once then), so the
        // pool's threads all lead fsyncs instead of parking as followers.
        let own = usize::from(journal_ticket.is_none());
        let segment_synced = pending.iter().filter(|p| !p.5);
        let handed_off = segment_synced.clone().count().saturating_sub(own);
        for (partition, _, written, _, _, _) in segment_synced.take(handed_off) {
            let log = topic.partitions[*partition as usize].clone();
            let end = written.end_offset();
            drop(self.pool.run(move || log.start_sync(end)));
        }
        if let Some(ticket) = journal_ticket {
            self.journal.wait(ticket)?;
        }
        // The last partition's fsync is this thread's to lead: wait for it first, so that it
        // starts now rather than after every other partition's wait.
        for (partition, indexes, written, count, bytes, journaled) in pending.into_iter().rev() {
            let first = if journaled {
                written.journaled()
            } else {
                written.wait()
            }
            .map_err(|e| Error::from_log(topic_name, partition, e))?;
            store_metrics::appended(topic_name, count, bytes, started.elapsed());
            for (n, &i) in indexes.iter().enumerate() {
                positions[i] = (partition, first + n as u64);
            }
        }
        Ok(Produced { positions })
    }

    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        {
            let (stopped, wake) = &*self.stop;
            *lock(stopped) = true;
            wake.notify_all();
        }
        if let Some(handle) = lock(&self.maintenance).take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let mut first_error: Option<Error> = None;
        let groups: Vec<Arc<Group>> = lock(&self.groups)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        // Groups are committed before the topic-admin lock is taken: a fetch in flight may
        // hold a partition's lock while it creates the group's dead-letter topic (which takes
        // the admin lock), and a commit takes the partition's lock — taking them the other way
        // round here could deadlock with it. (The creation then finds the store closed.)
        for group in groups {
            // Members waiting on a full window would otherwise sleep until their deadline.
            group.wake();
            if let Err(error) = group.commit_all() {
                tracing::error!(group = %group.name, %error, "committing a group at close failed");
                first_error.get_or_insert(error);
            }
        }
        // No topic is created or deleted while the topics close: `create_topic` checks
        // `closed` again under this lock.
        let _admin = lock(&self.topic_admin);
        let topics = self.topics_snapshot();
        for topic in &topics {
            if let Err(error) = topic.close() {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self.journal.close(&topics) {
            first_error.get_or_insert(error);
        }
        // The witness names every commit made durable until now; then the offsets store is let
        // go (sled closes, its lock is released), whoever else still holds a consumer: a store
        // that closed can be opened again at once.
        if let Some(offsets) = lock(&self.offsets).take() {
            if let Err(error) = offsets.seal() {
                tracing::error!(%error, "sealing the offsets store's witness at close failed");
                first_error.get_or_insert(error.into());
            }
            drop(offsets);
        }
        self.pool.stop();
        lock(&self.lock_file).take();
        tracing::info!(root = %self.root.display(), "store closed");
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(root = %self.root.display(), %error, "the store did not close cleanly");
        }
    }
}

/// Lets weir-offsets use the store's clock.
#[derive(Debug)]
struct ClockAdapter(Arc<dyn weir_log::Clock>);

impl weir_offsets::Clock for ClockAdapter {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

/// The offsets store as the batch readers see it: held weakly, so that closing the store
/// closes it (sled and its lock let go) even while consumers live on; they then get
/// [`weir_batch::Error::Closed`].
#[derive(Debug)]
pub(crate) struct ClosableOffsets(pub(crate) std::sync::Weak<OffsetStore>);

impl ClosableOffsets {
    fn store(&self) -> weir_batch::Result<Arc<OffsetStore>> {
        self.0.upgrade().ok_or(weir_batch::Error::Closed)
    }
}

impl weir_batch::OffsetCommits for ClosableOffsets {
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> weir_batch::Result<Option<u64>> {
        self.store()?.committed(group, topic, partition)
    }

    fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
        expected: Option<u64>,
    ) -> weir_batch::Result<()> {
        weir_batch::OffsetCommits::commit(
            &*self.store()?,
            group,
            topic,
            partition,
            offset,
            expected,
        )
    }

    fn reset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> weir_batch::Result<()> {
        weir_batch::OffsetCommits::reset(&*self.store()?, group, topic, partition, offset)
    }
}
