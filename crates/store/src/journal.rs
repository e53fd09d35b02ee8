//! The store-wide journal: one file that makes the small appends of every durable topic
//! durable with one fsync per group commit, however many partitions they went to. It owns the
//! `journal/` directory, its group commit, its rotation and its replay at open; the bytes are
//! `journal_format.rs`, the rules `docs/durability.md`, "The journal".
//!
//! An append's frame is written to its partition's segment first (not fsynced), then copied
//! into the journal's open block while the partition's writer lock is still held, so each
//! partition's frames reach the journal in offset order. A group commit writes the block,
//! fsyncs the journal, marks the frames durable in their logs (in journal order) and wakes the
//! appenders. When a file passes `journal_bytes_max` a new one takes the writes, the segments
//! the old one covered are fsynced, and the old one is removed. A crash leaves the segments'
//! unsynced tails to recovery, which cuts what is torn; the store then writes the journaled
//! frames the segments lack back into them before anything else reads or writes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use weir_log::{is_storage_full, JournalPoint, Log, OpenMode, Storage, StorageFile};

use crate::error::{Error, Result};
use crate::journal_format::{self, BlockBuilder, JournalCorrupt, JOURNAL_HEADER_LEN};
use crate::recovery::{journal_file_name, JournalSurvey, JOURNAL_DIR, JOURNAL_TMP_SUFFIX};
use crate::store::lock;
use crate::topic::{self, Topic};

/// Zeros written ahead of a journal file's end at a time (see `Journal::zeros_ahead`).
const ZEROS_AHEAD_BYTES: u64 = 1 << 20;
/// The zeros it writes, a slice at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The store's journal (see the module docs).
pub(crate) struct Journal {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    bytes_max: u64,
    state: Mutex<State>,
    /// Signalled when a group commit ends (or fails).
    committed: Condvar,
    poison: OnceLock<String>,
    /// The files replayed at open hold frames of damaged partitions: never removed by this
    /// run (`weir repair` writes them back).
    keep_files: bool,
}

struct State {
    /// The block the next group commit writes.
    block: BlockBuilder,
    /// Where the block's frames sit in their logs, in block order.
    marks: Vec<(Arc<Log>, JournalPoint)>,
    /// A spare `marks` buffer, swapped in by each group commit (keeps its capacity).
    spare_marks: Vec<(Arc<Log>, JournalPoint)>,
    /// The ticket of the next journaled frame.
    next_ticket: u64,
    /// Every frame whose ticket is below this is durable (in the journal, or in its segment).
    durable_ticket: u64,
    /// The store closed: no group commit starts any more.
    closed: bool,
    /// The file length at which starting a new file last failed on a full device (retried
    /// once the file grew past it).
    rotation_failed_at: u64,
    /// A group commit is running.
    leading: bool,
    /// A spare block buffer, swapped in by each group commit.
    spare: BlockBuilder,
    file: Arc<dyn StorageFile>,
    sequence: u64,
    file_len: u64,
    /// How far the file holds bytes already (zeros written ahead of `file_len`, so that a
    /// commit's fdatasync seldom has to commit a new file size as well).
    allocated_end: u64,
    /// The logs with frames in the current file: fsynced before the file is removed.
    touched: HashMap<usize, Arc<Log>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Held by a group commit's leader while it writes: dropped armed (a panic), it poisons the
/// journal and wakes everyone waiting, who would otherwise wait for a commit that never ends.
struct LeadGuard<'a>(Option<&'a Journal>);

impl LeadGuard<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if let Some(journal) = self.0.take() {
            let _ = journal.fail(Error::JournalPoisoned {
                cause: "a group commit panicked".into(),
            });
        }
    }
}

fn file_name(sequence: u64) -> String {
    journal_file_name(sequence)
}

/// What replaying the journal at open did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalRecovery {
    /// Journal files read (a clean close leaves none).
    pub files: usize,
    /// Journaled frames written back into partitions whose segments lacked them (a crash lost
    /// their unsynced bytes), as (topic, partition, events).
    pub restored: Vec<(String, u32, u64)>,
    /// Bytes of torn tails cut from journal files: the group commit a crash interrupted
    /// (never acknowledged).
    pub torn_bytes: u64,
    /// Journaled frames of topics deleted since.
    pub skipped_deleted: u64,
    /// Journaled frames not written back because their partition is damaged (it opened
    /// read-only): the journal files are kept for `weir repair`.
    pub skipped_damaged: u64,
    /// Only with `StoreConfig::journal_repair` (`weir repair`): damaged journal blocks
    /// skipped.
    pub damaged_blocks: usize,
    /// Only with `StoreConfig::journal_repair`: events recorded as lost because a journaled
    /// frame followed them and the partition lacked them (a damaged block held them), as
    /// (topic, partition, first offset, end offset).
    pub lost: Vec<(String, u32, u64, u64)>,
}

impl Journal {
    /// Replays the journal files in `root` into `topics` (see the module docs), fsyncs the
    /// partitions it wrote to, removes the files, and starts a new one.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and byte position if a journal file is damaged where
    /// it was acknowledged, or holds a frame its partition cannot take (events missing
    /// between the partition's end and the frame); [`Error::Io`]; [`Error::Log`].
    pub(crate) fn open(
        root: &Path,
        config: &crate::config::StoreConfig,
        topics: &BTreeMap<String, Arc<Topic>>,
        survey: &JournalSurvey,
    ) -> Result<(Journal, JournalRecovery)> {
        let storage = config.storage.clone();
        let bytes_max = config.journal_bytes_max;
        let dir = root.join(JOURNAL_DIR);
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        topic::sync_dir(&*storage, root)?;
        for path in &survey.interrupted {
            // A file whose creation a crash interrupted: it never took a block.
            storage
                .remove_file(path)
                .map_err(|e| Error::io("remove", path, e))?;
        }
        for path in &survey.foreign {
            tracing::warn!(path = %path.display(), "ignoring a file in the journal directory that is not a journal file");
        }
        let recovery = replay(&*storage, topics, survey, config.journal_repair)?;
        let sequence = survey.files.last().map_or(0, |file| file.sequence + 1);
        let file = create_file(&dir, &*storage, sequence)?;
        // The new file is in place: the old ones are no longer needed (their frames are
        // fsynced in the segments) — unless a damaged partition could not take its frames:
        // then they stay for `weir repair` (the next open replays them again, harmlessly).
        if recovery.skipped_damaged == 0 {
            for old in &survey.files {
                storage
                    .remove_file(&old.path)
                    .map_err(|e| Error::io("remove", &old.path, e))?;
            }
        } else {
            tracing::warn!(
                frames = recovery.skipped_damaged,
                "journal files kept: they hold frames of damaged partitions, for `weir repair`"
            );
        }
        topic::sync_dir(&*storage, &dir)?;
        let journal = Journal {
            dir,
            storage,
            bytes_max,
            state: Mutex::new(State {
                block: BlockBuilder::new(),
                marks: Vec::new(),
                spare_marks: Vec::new(),
                next_ticket: 0,
                durable_ticket: 0,
                closed: false,
                rotation_failed_at: 0,
                leading: false,
                spare: BlockBuilder::new(),
                file,
                sequence,
                file_len: JOURNAL_HEADER_LEN as u64,
                allocated_end: JOURNAL_HEADER_LEN as u64,
                touched: HashMap::new(),
            }),
            committed: Condvar::new(),
            poison: OnceLock::new(),
            keep_files: recovery.skipped_damaged > 0,
        };
        Ok((journal, recovery))
    }

    /// Fails if an earlier write or fsync of the journal failed.
    pub(crate) fn check(&self) -> Result<()> {
        match self.poison.get() {
            Some(cause) => Err(Error::JournalPoisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Adds a frame just written to `log` to the next group commit; returns its ticket for
    /// [`Journal::wait`]. Called from `Log::append_start_with`'s callback, under the log's
    /// writer lock.
    pub(crate) fn add(
        &self,
        log: &Arc<Log>,
        topic_id: u64,
        partition: u32,
        frame: &[u8],
        point: JournalPoint,
    ) -> u64 {
        let mut state = lock(&self.state);
        state.block.push(topic_id, partition, frame);
        state.marks.push((log.clone(), point));
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        ticket
    }

    /// Waits until the frame of `ticket` (and every one before it) is durable in the journal,
    /// leading a group commit if none is running.
    ///
    /// # Errors
    /// [`Error::JournalPoisoned`] if the journal failed (now or earlier).
    pub(crate) fn wait(&self, ticket: u64) -> Result<()> {
        let mut state = lock(&self.state);
        loop {
            // Durable first: a failure after this ticket's commit does not take it back.
            if state.durable_ticket > ticket {
                return Ok(());
            }
            self.check()?;
            if state.closed {
                return Err(Error::Closed);
            }
            if state.leading {
                state = self
                    .committed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            } else {
                state = self.commit(state)?;
            }
        }
    }

    /// One group commit: writes the open block, fsyncs, marks its frames durable in their
    /// logs, and rotates the file if it is full.
    fn commit<'a>(&'a self, mut state: MutexGuard<'a, State>) -> Result<MutexGuard<'a, State>> {
        let state_ref = &mut *state;
        std::mem::swap(&mut state_ref.block, &mut state_ref.spare);
        state_ref.block.clear();
        let spare_marks = std::mem::take(&mut state_ref.spare_marks);
        let mut marks = std::mem::replace(&mut state_ref.marks, spare_marks);
        let last_ticket = state_ref.next_ticket;
        let mut block = std::mem::take(&mut state_ref.spare);
        let position = state_ref.file_len;
        state_ref.file_len += block.len() as u64;
        let allocated_end = state_ref.allocated_end;
        let block_end = state_ref.file_len;
        for (log, _) in &marks {
            state_ref
                .touched
                .entry(Arc::as_ptr(log) as usize)
                .or_insert_with(|| log.clone());
        }
        let file = state_ref.file.clone();
        let sequence = state_ref.sequence;
        let path = self.dir.join(file_name(sequence));
        state_ref.leading = true;
        drop(state);
        // A panic below (a bug) must not leave every appender waiting for a commit that never
        // ends: the guard poisons the journal and wakes them.
        let guard = LeadGuard(Some(self));

        // A frame written after a gap (an earlier append on its log waits for the log's own
        // fsync) waits for that fsync here first: the journal never holds a frame after events
        // a crash could take back.
        let gaps = marks.iter().filter(|(_, point)| point.after_gap());
        if let Err(error) = sync_segments(
            gaps,
            "fsyncing a partition's segment before a frame that follows a gap",
        ) {
            guard.disarm();
            return Err(self.fail(error));
        }
        let allocated_end =
            match self.zeros_ahead(&*file, &path, allocated_end, position, block_end) {
                // The block itself makes the file at least this long once written.
                Ok(end) => end.max(block_end),
                Err(error) => {
                    guard.disarm();
                    return Err(self.fail(error));
                }
            };
        let started = std::time::Instant::now();
        let mut full = None;
        if let Err(source) = file.write_all_at(block.finish(sequence, position), position) {
            if !is_storage_full(&source) {
                guard.disarm();
                return Err(self.fail(Error::io("write", &path, source)));
            }
            if let Err(error) =
                self.make_durable_in_segments(&*file, &path, position, &marks, &source)
            {
                guard.disarm();
                return Err(self.fail(error));
            }
            full = Some(position);
        } else {
            let written = file.sync_data().map_err(|e| Error::io("fsync", &path, e));
            crate::metrics::journal_synced(started.elapsed());
            if let Err(error) = written {
                guard.disarm();
                return Err(self.fail(error));
            }
            // In journal order, so a log's frames are marked in offset order.
            for (log, point) in &marks {
                log.mark_journaled(*point);
            }
        }
        marks.clear();
        block.clear();
        let mut state = lock(&self.state);
        state.spare = block;
        state.spare_marks = marks;
        state.durable_ticket = last_ticket;
        state.allocated_end = allocated_end;
        if let Some(position) = full {
            state.file_len = position;
            state.allocated_end = position;
        }
        let rotation_due = state.file_len >= self.bytes_max
            && state.file_len > state.rotation_failed_at
            && !state.closed;
        let rotation = if rotation_due {
            // Still leading, so no other commit writes meanwhile; the appenders of this one
            // are released first.
            self.committed.notify_all();
            let sequence = state.sequence + 1;
            drop(state);
            let created = create_file(&self.dir, &*self.storage, sequence);
            state = lock(&self.state);
            self.rotate(&mut state, created)
        } else {
            None
        };
        state.leading = false;
        self.committed.notify_all();
        guard.disarm();
        if let Some(old) = rotation {
            drop(state);
            self.retire(old);
            state = lock(&self.state);
        }
        Ok(state)
    }

    /// Writes zeros ahead of the end when a block would reach past what the file holds, a
    /// chunk at a time: overwriting bytes the file has, most commits' fdatasync flushes data
    /// only, without a new file size to commit (the trick weir-log uses for its segments).
    /// Returns how far the file now holds bytes. On a full device the zeros are cut again and
    /// the block is written without them.
    ///
    /// Zeros go only past the block's `position`: everything before it is written blocks,
    /// which zeros must never touch. A block larger than half a chunk, or one that reaches
    /// the size at which the file is retired, gets none (it pays for its own size change).
    fn zeros_ahead(
        &self,
        file: &dyn StorageFile,
        path: &Path,
        allocated_end: u64,
        position: u64,
        block_end: u64,
    ) -> Result<u64> {
        let from = allocated_end.max(position);
        let to = (block_end + ZEROS_AHEAD_BYTES).min(self.bytes_max);
        if block_end <= from || block_end - position >= ZEROS_AHEAD_BYTES / 2 || to <= block_end {
            return Ok(from);
        }
        let mut at = from;
        while at < to {
            let len = (to - at).min(ZEROS.len() as u64) as usize;
            match file.write_all_at(&ZEROS[..len], at) {
                Ok(()) => at += len as u64,
                Err(source) if is_storage_full(&source) => {
                    file.set_len(from)
                        .map_err(|e| Error::io("cut zeros that did not fit from", path, e))?;
                    return Ok(from);
                }
                Err(source) => {
                    return Err(Error::io("write zeros ahead of the end of", path, source))
                }
            }
        }
        Ok(to)
    }

    /// Fail-stop: a failed write or fsync is never retried, and nothing more is acknowledged.
    /// Returns the error everyone waiting gets.
    fn fail(&self, error: Error) -> Error {
        let mut state = lock(&self.state);
        let error = self.poison_with(error);
        state.leading = false;
        error
    }

    /// Poisons the journal with `error` and wakes everyone waiting (the caller holds the
    /// state); returns the error they get.
    fn poison_with(&self, error: Error) -> Error {
        tracing::error!(%error, "the store's journal failed; refusing appends until reopen");
        let _ = self.poison.set(error.to_string());
        self.committed.notify_all();
        Error::JournalPoisoned {
            cause: error.to_string(),
        }
    }

    /// A block that did not fit on the device (still leading, so no later block is written
    /// meanwhile): its partial bytes are cut off again, and its frames are made durable the
    /// other way, by fsyncing their segments (their bytes are written already; the next block
    /// goes where this one began). A failure of either is fail-stop: the journal is poisoned
    /// before any later block could hold a frame that follows one that is not durable.
    fn make_durable_in_segments(
        &self,
        file: &dyn StorageFile,
        path: &Path,
        position: u64,
        marks: &[(Arc<Log>, JournalPoint)],
        source: &std::io::Error,
    ) -> Result<()> {
        file.set_len(position)
            .map_err(|e| Error::io("cut a journal block that did not fit from", path, e))?;
        tracing::warn!(journal = %path.display(), %source, "the device is full: a journal block did not fit; its partitions' segments are fsynced instead");
        sync_segments(
            marks.iter(),
            "the device is full, and fsyncing a partition's segment instead of the journal",
        )
    }

    /// Puts the new file `created` in place for the next group commits (called by the leader,
    /// so no block is being written); returns the old one's path and the logs it covers. A
    /// full device leaves the current file in use (it keeps growing), retried once it grew; a
    /// failed fsync poisons the journal.
    fn rotate(
        &self,
        state: &mut State,
        created: Result<Arc<dyn StorageFile>>,
    ) -> Option<(PathBuf, Vec<Arc<Log>>)> {
        match created {
            Ok(file) => {
                state.rotation_failed_at = 0;
                let sequence = state.sequence + 1;
                let old = self.dir.join(file_name(state.sequence));
                state.file = file;
                state.sequence = sequence;
                state.file_len = JOURNAL_HEADER_LEN as u64;
                state.allocated_end = JOURNAL_HEADER_LEN as u64;
                let logs = std::mem::take(&mut state.touched).into_values().collect();
                Some((old, logs))
            }
            // Only a write that did not fit: a failed fsync is fail-stop below.
            Err(Error::Io { op, source, .. })
                if matches!(op, "create" | "write" | "rename into place")
                    && is_storage_full(&source) =>
            {
                tracing::warn!(%source, "the device is full: starting a new journal file failed; the current one keeps growing");
                state.rotation_failed_at = state.file_len;
                None
            }
            Err(error) => {
                // An fsync (of the new file or the directory) failed: never retried.
                drop(self.poison_with(error));
                None
            }
        }
    }

    /// Fsyncs the segments holding the frames of a retired journal file, then removes it. If
    /// a segment cannot be fsynced (its log is poisoned), the file stays until the store is
    /// reopened, which replays it.
    fn retire(&self, (path, logs): (PathBuf, Vec<Arc<Log>>)) {
        for log in logs {
            // A log that closed cleanly (its topic was deleted, or the store is closing)
            // fsynced its segment then, and says Ok.
            match log.sync_segment() {
                Ok(()) => {}
                Err(error) => {
                    tracing::error!(%error, journal = %path.display(), "a partition of a retired journal file could not be fsynced; the file stays until the store reopens");
                    return;
                }
            }
        }
        let removed = self
            .storage
            .remove_file(&path)
            .map_err(|e| Error::io("remove", &path, e))
            .and_then(|()| topic::sync_dir(&*self.storage, &self.dir));
        if let Err(error) = removed {
            tracing::warn!(%error, "removing a retired journal file failed; the next open replays it (harmlessly)");
        }
    }

    /// At close, after the topics closed: if every partition's segment is fsynced (each
    /// closed cleanly), removes the journal files, which then hold nothing the segments lack;
    /// otherwise keeps them for the next open to replay.
    pub(crate) fn close(&self, topics: &[Arc<Topic>]) -> Result<()> {
        {
            // No group commit (or rotation) starts after this; wait for one that runs.
            let mut state = lock(&self.state);
            state.closed = true;
            while state.leading {
                state = self
                    .committed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        if self.keep_files {
            // Frames of a damaged partition, which could not take them: for `weir repair`.
            tracing::warn!(
                "the journal stays: it holds frames of damaged partitions, for `weir repair`"
            );
            return Ok(());
        }
        for topic in topics {
            for (partition, log) in topic.partitions.iter().enumerate() {
                if let Err(error) = log.sync_segment() {
                    tracing::warn!(topic = %topic.meta.name, partition, %error, "a partition did not close cleanly: the journal stays for the next open to replay");
                    return Ok(());
                }
            }
        }
        // A retirement may still be removing its file: gone already is fine.
        let _state = lock(&self.state);
        let names = self
            .storage
            .list_dir(&self.dir)
            .map_err(|e| Error::io("list", &self.dir, e))?;
        for name in names {
            let path = self.dir.join(name);
            match self.storage.remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove", &path, e))
                }
                _ => {}
            }
        }
        topic::sync_dir(&*self.storage, &self.dir)
    }
}

/// Fsyncs the segment of each log among `marks` once; `what` names the step in an error
/// (which poisons the journal: a failed fsync is fail-stop).
fn sync_segments<'a>(
    marks: impl Iterator<Item = &'a (Arc<Log>, JournalPoint)>,
    what: &str,
) -> Result<()> {
    let mut synced: Vec<*const Log> = Vec::new();
    for (log, _) in marks {
        if synced.contains(&Arc::as_ptr(log)) {
            continue;
        }
        synced.push(Arc::as_ptr(log));
        log.sync_segment().map_err(|error| Error::JournalPoisoned {
            cause: format!("{what} failed: {error}"),
        })?;
    }
    Ok(())
}

/// Creates journal file `sequence` whole: header written and fsynced under a temporary name,
/// renamed into place, directory fsynced.
fn create_file(dir: &Path, storage: &dyn Storage, sequence: u64) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(file_name(sequence));
    let tmp = dir.join(format!("{}{JOURNAL_TMP_SUFFIX}", file_name(sequence)));
    let file = storage
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all_at(&journal_format::encode_header(sequence), 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io("rename into place", &path, e))?;
    topic::sync_dir(storage, dir)?;
    Ok(file)
}

/// Writes the journaled frames the partitions lack back into them, in journal order, and
/// fsyncs every partition the journal names. A damaged partition (opened read-only) is left
/// alone. With `repair`, damaged blocks are skipped and a gap before a journaled frame is
/// recorded as lost events.
fn replay(
    storage: &dyn Storage,
    topics: &BTreeMap<String, Arc<Topic>>,
    survey: &JournalSurvey,
    repair: bool,
) -> Result<JournalRecovery> {
    let by_id: HashMap<u64, &Arc<Topic>> = topics
        .values()
        .map(|topic| (topic.meta.id, topic))
        .collect();
    let mut recovery = JournalRecovery {
        files: survey.files.len(),
        ..JournalRecovery::default()
    };
    let mut restored: BTreeMap<(String, u32), (Arc<Log>, u64)> = BTreeMap::new();
    for file in &survey.files {
        let path = &file.path;
        let bytes = topic::read_whole(storage, path, usize::MAX as u64)?;
        let salvaged = match journal_format::salvage_journal(&bytes) {
            Ok(salvaged) if file.damage.is_empty() || repair => salvaged,
            Ok(_) | Err(_) if repair => {
                recovery.damaged_blocks += file.damage.len();
                continue;
            }
            Ok(_) | Err(_) => {
                let first = file.damage.first().cloned().unwrap_or(JournalCorrupt {
                    position: 0,
                    reason: "the journal file does not decode".into(),
                });
                return Err(Error::Corrupt {
                    path: path.clone(),
                    reason: first.to_string(),
                });
            }
        };
        recovery.damaged_blocks += salvaged.damage.len();
        for damage in &salvaged.damage {
            tracing::warn!(journal = %path.display(), position = damage.position, reason = %damage.reason, "skipped a damaged journal block (repair)");
        }
        let decoded = salvaged.journal;
        if !decoded.tail_is_zeros {
            tracing::warn!(journal = %path.display(), position = decoded.valid_len, bytes = decoded.torn_bytes, "cut a torn tail from the journal (a group commit a crash interrupted; never acknowledged)");
            recovery.torn_bytes += decoded.torn_bytes;
        }
        for block in &decoded.blocks {
            for entry in &block.entries {
                let Some(topic) = by_id.get(&entry.topic_id) else {
                    recovery.skipped_deleted += 1;
                    continue;
                };
                let name = &topic.meta.name;
                let log = topic.log(entry.partition).map_err(|_| Error::Corrupt {
                    path: path.clone(),
                    reason: format!(
                        "the block at byte {} holds a frame for partition {} of topic {name:?}, which has {}",
                        block.position, entry.partition, topic.partition_count()
                    ),
                })?;
                if log.damage().is_some() {
                    recovery.skipped_damaged += 1;
                    continue;
                }
                // Every partition named is fsynced below, restored or not: after a process
                // crash its segment may hold the frames only in the page cache.
                let slot = restored
                    .entry((name.clone(), entry.partition))
                    .or_insert_with(|| (log.clone(), 0));
                let mut written = log.restore_frame(entry.frame);
                if let Err(weir_log::Error::UnexpectedOffset { expected, actual }) = written {
                    if repair && expected > actual {
                        log.append_lost(actual, expected)
                            .map_err(|e| Error::from_log(name, entry.partition, e))?;
                        tracing::warn!(topic = %name, partition = entry.partition, first_offset = actual, end_offset = expected, "recorded as lost the events a damaged journal block held (repair)");
                        recovery
                            .lost
                            .push((name.clone(), entry.partition, actual, expected));
                        written = log.restore_frame(entry.frame);
                    }
                }
                match written {
                    Ok(events) => slot.1 += events,
                    Err(weir_log::Error::UnexpectedOffset { expected, actual }) => {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            reason: format!(
                                "the block at byte {} holds events from offset {expected} of topic {name:?} partition {}, but the partition ends at {actual}: acknowledged events between are missing",
                                block.position, entry.partition
                            ),
                        })
                    }
                    Err(error) => return Err(Error::from_log(name, entry.partition, error)),
                }
            }
        }
    }
    for ((name, partition), (log, events)) in restored {
        log.sync_segment()
            .map_err(|e| Error::from_log(&name, partition, e))?;
        if events > 0 {
            tracing::warn!(topic = %name, partition, events, "wrote journaled events back into a partition whose segment had lost them");
            recovery.restored.push((name, partition, events));
        }
    }
    Ok(recovery)
}
