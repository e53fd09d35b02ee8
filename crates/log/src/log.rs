//! [`Log`]: one partition's log. It owns the writer (offset assignment, framing, rolling),
//! group commit (one fsync shared by every appender waiting), visibility (readers see only
//! durable events under [`SyncPolicy::Always`]), reads, waiting for new events, retention, the
//! recovery checkpoint and recovery itself at open.
//!
//! Locks, always taken in this order: `writer` → `fsync` → `sync` → `visible`; `maintenance` and
//! `checkpoint` are never held while waiting for another lock of this list except `segments`,
//! which is only ever held briefly and last.
//!
//! Invariants:
//! - offsets are assigned densely under the writer lock, once;
//! - an append is acknowledged only after an fsync that covers it succeeded (`Always`);
//! - `visible` ≤ `durable` ≤ written under `Always`; `visible` = written otherwise;
//! - after a failed fsync, or a failed write other than a full device, the log is poisoned:
//!   nothing more is acknowledged; a full device fails the append and cuts its partial bytes;
//! - fsyncs of segment files run one at a time (`fsync`), and none starts after a failed one:
//!   Linux reports a writeback error to one fsync of an open file only, so a second fsync
//!   running beside a failing one could return `Ok` for pages that never reached the disk;
//! - the checkpoint never names a position that is not durable.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::atomic;
use crate::clock::{Clock, SystemClock};
use crate::config::{LogConfig, SyncPolicy};
use crate::error::{Error, Result};
use crate::format::{
    self, AppendEvent, Checkpoint, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::read::{self, Collector, ReadBatch};
use crate::recovery::{self, IndexBuilder, Verdict};
use crate::segment::{
    self, lock, parse_file_name, read, write, Segment, Summary, INDEX_SUFFIX, SEGMENT_SUFFIX,
    TMP_SUFFIX,
};
use crate::storage::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};

/// File name of the recovery checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// File name of the clean-shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// File name of the lock file.
pub const LOCK_FILE: &str = "lock";

/// A point in the log: the next offset and where it would be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EndPoint {
    next_offset: u64,
    segment_base: u64,
    position: u64,
}

impl EndPoint {
    /// True if `self` is later in the log than `other`.
    fn is_after(&self, other: &EndPoint) -> bool {
        (self.next_offset, self.segment_base, self.position)
            > (other.next_offset, other.segment_base, other.position)
    }
}

/// What recovery did when the log opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// True if the log was created by this open.
    pub created: bool,
    /// True if the previous close was clean and the scan of the active segment was skipped.
    pub clean_shutdown: bool,
    /// Number of segments after recovery.
    pub segments: usize,
    /// Segments whose frames were scanned and checked.
    pub segments_scanned: usize,
    /// Bytes scanned.
    pub bytes_scanned: u64,
    /// The torn tail that was cut, if any.
    pub torn_tail: Option<TornTail>,
    /// An empty segment whose header was torn while it was being created, rewritten.
    pub segment_reinitialized: Option<PathBuf>,
    /// Leftover files removed (temporary files, segments below the start offset, orphan
    /// indexes).
    pub files_removed: Vec<PathBuf>,
    /// The log's end offset after recovery.
    pub end_offset: u64,
}

/// A torn tail that recovery cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the cut was made (the first invalid frame).
    pub position: u64,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// Why the frame at `position` was invalid.
    pub reason: String,
    /// Valid-looking frames found after the invalid one and cut with it (writes that reached
    /// the disk out of order; none was acknowledged).
    pub valid_frames_discarded: u64,
    /// Every byte cut was zero: the zeros written ahead of the end
    /// ([`LogConfig::preallocate_bytes`]) or sectors never written — the usual tail after a
    /// crash, with nothing in it.
    pub zeros_only: bool,
}

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Segment files removed.
    pub segments_removed: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes_removed: u64,
    /// The log's start offset afterwards.
    pub start_offset: u64,
}

/// What [`Log::verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Frames checked.
    pub frames: u64,
    /// Bytes checked.
    pub bytes: u64,
}

/// Sizes and times of a log, for describing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// First readable offset.
    pub start_offset: u64,
    /// Offset after the last visible event.
    pub end_offset: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Number of segments.
    pub segments: usize,
}

struct Writer {
    active: Arc<Segment>,
    file: Arc<dyn StorageFile>,
    end: EndPoint,
    /// How far the active file is known to hold zeros written ahead of `end` (a hint: a wrong
    /// value costs speed, never data — sealing and closing cut the file by its real length).
    allocated_end: u64,
    created_ms: u64,
    index: IndexBuilder,
    buffer: Vec<u8>,
    timestamps: Vec<u64>,
    closed: bool,
    /// The close fsynced everything written (see [`Log::sync_segment`]).
    synced_at_close: bool,
    /// The offset after the last frame handed to an outside journal (see
    /// [`Log::append_start_with`]).
    journaled_end: u64,
}

struct SyncState {
    durable: EndPoint,
    /// How far the segment files are fsynced: `durable` without what only an outside journal
    /// holds. Checkpoints and retention go by this, never by `durable`.
    fsynced: EndPoint,
    in_progress: bool,
    last_sync_ms: u64,
    /// Appenders parked until a round makes their events durable (see `wait_durable`).
    waiters: Vec<SyncWaiter>,
}

/// An appender waiting for a group commit: parked, and unparked by whoever makes its events
/// durable (or picks it to lead the next round, or poisons the log).
struct SyncWaiter {
    end_offset: u64,
    thread: std::thread::Thread,
}

struct Visible {
    end: EndPoint,
    start_offset: u64,
    closed: bool,
    wakers: Vec<Waker>,
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    lock_file: Mutex<Option<Box<dyn StorageLock>>>,
    writer: Mutex<Writer>,
    /// Held through every fsync of a segment file and the poisoning that follows a failed one
    /// (see [`Log::fsync_segment`]).
    fsync: Mutex<()>,
    sync: Mutex<SyncState>,
    /// `sync.durable.next_offset`, readable without the lock: a woken waiter checks it and
    /// returns without contending for `sync` (64 appenders re-taking one lock after every
    /// fsync cost more than the fsync did).
    durable_next_offset: AtomicU64,
    visible: Mutex<Visible>,
    visible_changed: Condvar,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    checkpoint: Mutex<Checkpoint>,
    maintenance: Mutex<()>,
    poison: OnceLock<Arc<Error>>,
    report: RecoveryReport,
    sync_observer: OnceLock<SyncObserver>,
}

/// Called after every fsync of appended data with how long it took (for metrics).
pub type SyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// One partition's durable, segmented, append-only log. `Send + Sync`: share it with `Arc`.
///
/// See the crate docs for an example.
pub struct Log {
    inner: Inner,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("start_offset", &self.start_offset())
            .field("end_offset", &self.end_offset())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the real file system, recovering it if
    /// the last close was not clean.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], [`Error::Locked`], [`Error::Io`], and [`Error::Corrupt`] if
    /// acknowledged data is damaged (never repaired silently).
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        Log::open_with(dir, config, Arc::new(StdStorage), Arc::new(SystemClock))
    }

    /// Opens the log on the given storage and clock (tests use [`crate::sim::SimStorage`] and
    /// [`crate::ManualClock`]).
    ///
    /// # Errors
    /// As [`Log::open`].
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Log> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            storage
                .sync_dir(parent)
                .map_err(|e| Error::io("fsync directory", parent, e))?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = storage.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: lock_path.clone(),
            },
            _ => Error::io("lock", &lock_path, e),
        })?;
        let opened = Opener {
            dir: &dir,
            config: &config,
            storage: &*storage,
            clock: &*clock,
        }
        .open()?;
        let Opened {
            segments,
            active_file,
            end,
            created_ms,
            index,
            checkpoint,
            report,
        } = opened;
        let active = segments
            .values()
            .next_back()
            .cloned()
            .expect("open leaves at least one segment");
        tracing::info!(
            dir = %dir.display(),
            start_offset = checkpoint.start_offset,
            end_offset = end.next_offset,
            clean = report.clean_shutdown,
            torn_tail = report.torn_tail.is_some(),
            "log opened"
        );
        let now = clock.now_ms();
        Ok(Log {
            inner: Inner {
                writer: Mutex::new(Writer {
                    active,
                    file: active_file,
                    end,
                    allocated_end: end.position,
                    created_ms,
                    index,
                    buffer: Vec::new(),
                    timestamps: Vec::new(),
                    closed: false,
                    synced_at_close: false,
                    journaled_end: 0,
                }),
                fsync: Mutex::new(()),
                sync: Mutex::new(SyncState {
                    durable: end,
                    fsynced: end,
                    in_progress: false,
                    last_sync_ms: now,
                    waiters: Vec::new(),
                }),
                durable_next_offset: AtomicU64::new(end.next_offset),
                visible: Mutex::new(Visible {
                    end,
                    start_offset: checkpoint.start_offset,
                    closed: false,
                    wakers: Vec::new(),
                }),
                visible_changed: Condvar::new(),
                segments: RwLock::new(segments),
                checkpoint: Mutex::new(checkpoint),
                maintenance: Mutex::new(()),
                poison: OnceLock::new(),
                report,
                sync_observer: OnceLock::new(),
                dir,
                config,
                storage,
                clock,
                lock_file: Mutex::new(Some(lock_file)),
            },
        })
    }

    /// What recovery did when this log opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// The first readable offset.
    pub fn start_offset(&self) -> u64 {
        lock(&self.inner.visible).start_offset
    }

    /// The offset after the last event readers may see (durable events under
    /// [`SyncPolicy::Always`]).
    pub fn end_offset(&self) -> u64 {
        lock(&self.inner.visible).end.next_offset
    }

    /// The offset the next append will get (ahead of [`Log::end_offset`] while appends wait
    /// for their fsync).
    pub fn next_offset(&self) -> u64 {
        lock(&self.inner.writer).end.next_offset
    }

    /// Installs a function called after every fsync of appended data with its duration (once;
    /// later calls are ignored). weir-store uses it for its fsync metrics.
    pub fn observe_syncs(&self, observer: SyncObserver) {
        let _ = self.inner.sync_observer.set(observer);
    }

    /// Fsyncs a segment file (`sync_data`) after every write so far, one fsync at a time: under
    /// the `fsync` lock, refused once the log is poisoned, and a failure poisons the log before
    /// the lock is let go. A writeback error is reported to one fsync of a file description
    /// only; without this, a roll's or a close's fsync running beside a group commit's failing
    /// one could return `Ok` and mark unwritten events durable.
    ///
    /// # Errors
    /// [`Error::Poisoned`], also for the fsync that failed.
    fn fsync_segment(&self, file: &dyn StorageFile, path: &Path) -> Result<()> {
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
    fn timed_sync(&self, file: &dyn StorageFile) -> std::io::Result<()> {
        let started = Instant::now();
        let result = file.sync_data();
        if let Some(observer) = self.inner.sync_observer.get() {
            observer(started.elapsed());
        }
        result
    }

    /// The error that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.poison.get().cloned()
    }

    /// Appends `events` atomically (all survive a crash or none does) and returns the first
    /// event's offset. Under [`SyncPolicy::Always`] it returns only once the events are
    /// fsynced; concurrent callers share fsyncs.
    ///
    /// # Errors
    /// [`Error::EmptyAppend`], [`Error::EventTooLarge`], [`Error::AppendTooLarge`],
    /// [`Error::InvalidEvent`] (checked before anything is written); [`Error::Io`] if the write
    /// or fsync failed and [`Error::Poisoned`] once any has (nothing is acknowledged after a
    /// failure); [`Error::Closed`].
    pub fn append(&self, events: &[AppendEvent<'_>]) -> Result<u64> {
        self.append_inner(events, None)
    }

    /// Appends only if the log's next offset is `expected_offset` (optimistic concurrency).
    ///
    /// # Errors
    /// [`Error::UnexpectedOffset`] naming the actual next offset; otherwise as [`Log::append`].
    pub fn append_expected(&self, events: &[AppendEvent<'_>], expected_offset: u64) -> Result<u64> {
        self.append_inner(events, Some(expected_offset))
    }

    fn append_inner(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
    ) -> Result<u64> {
        self.append_start(events, expected_offset)?.wait()
    }

    /// The first half of an append: checks, assigns offsets and writes the frame, without
    /// waiting for its fsync. Nothing is acknowledged until [`PendingAppend::wait`] returns;
    /// use it to write to several logs first and then wait for all of their fsyncs (weir-store
    /// does this for a produce that spans partitions).
    ///
    /// # Errors
    /// As [`Log::append`] (`expected_offset` as [`Log::append_expected`]).
    pub fn append_start(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
    ) -> Result<PendingAppend<'_>> {
        self.write_frame(events, expected_offset, None, true)
    }

    /// [`Log::append_start`] for a caller that keeps its own journal (weir-store's): after the
    /// frame is written, and while no other append can be written to this log, `journal` gets
    /// the frame's bytes (as `docs/format.md` lays them out, its base offset inside). So a
    /// journal that records frames in the order it is called records each log's frames in
    /// offset order. Once the journal has made the frame durable, [`PendingAppend::journaled`]
    /// acknowledges it without an fsync of the segment.
    ///
    /// A journal must never hold a frame after a gap (after a crash its replay could not tell
    /// unacknowledged events from lost ones). If an earlier append on this log is neither
    /// durable nor journaled (it waits for the log's own fsync), the frame's
    /// [`JournalPoint::after_gap`] says so: the journal must then call [`Log::sync_segment`]
    /// before it writes the frame, which makes everything before it durable.
    ///
    /// # Errors
    /// As [`Log::append_start`]; `journal` is not called if the append fails.
    pub fn append_start_with(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
        journal: &mut dyn FnMut(&[u8], JournalPoint),
    ) -> Result<PendingAppend<'_>> {
        self.write_frame(events, expected_offset, Some(journal), true)
    }

    /// Assigns offsets and writes the frame of an append; `limits` says whether the
    /// configured limits apply (not to a frame restored from a journal: it was accepted once).
    fn write_frame(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
        journal: Option<&mut JournalFn<'_>>,
        limits: bool,
    ) -> Result<PendingAppend<'_>> {
        let frame_len = self.check_append_within(events, limits)?;
        let inner = &self.inner;
        let (first_offset, end, rolled, journaled) = {
            let mut writer = lock(&inner.writer);
            self.check_writable(&writer)?;
            if let Some(expected) = expected_offset {
                if expected != writer.end.next_offset {
                    return Err(Error::UnexpectedOffset {
                        expected,
                        actual: writer.end.next_offset,
                    });
                }
            }
            let now = inner.clock.now_ms();
            let rolled = self.should_roll(&writer, frame_len, now);
            if rolled {
                self.roll(&mut writer, now)?;
            }
            let first_offset = writer.end.next_offset;
            let writer = &mut *writer;
            writer.timestamps.clear();
            writer
                .timestamps
                .extend(events.iter().map(|event| event.timestamp_ms.unwrap_or(now)));
            writer.buffer.clear();
            let len =
                format::encode_frame(&mut writer.buffer, first_offset, events, &writer.timestamps);
            debug_assert_eq!(len, frame_len);
            debug_assert!(
                format::check_frame(&writer.buffer).is_ok(),
                "a frame must check before it is written"
            );
            let position = writer.end.position;
            self.preallocate(writer, position + len as u64)?;
            if let Err(source) = writer.file.write_all_at(&writer.buffer, position) {
                return Err(self.write_failed(writer, position, source));
            }
            writer.allocated_end = writer.allocated_end.max(position + len as u64);
            let timestamp_max_ms = writer.timestamps.iter().copied().max().unwrap_or(0);
            let entries_before = writer.index.entries.len();
            writer
                .index
                .on_frame(position, first_offset, len as u32, timestamp_max_ms);
            writer.end.position += len as u64;
            writer.end.next_offset += events.len() as u64;
            let new_entry = writer.index.entries.get(entries_before).copied();
            let (end, index_ts) = (writer.end, writer.index.timestamp_max_ms);
            writer.active.update_summary(|summary| {
                summary.end_offset = end.next_offset;
                summary.end_position = end.position;
                summary.timestamp_max_ms = index_ts;
                if let Some(entry) = new_entry {
                    summary.entries.push(entry);
                }
            });
            if !inner.config.sync_policy.is_durable() {
                self.publish(end);
            }
            // After a gap if something before it is neither durable nor journaled.
            let journaled = match journal {
                Some(journal) => {
                    let covered = writer
                        .journaled_end
                        .max(inner.durable_next_offset.load(Ordering::Acquire));
                    let point = JournalPoint {
                        first_offset,
                        end,
                        after_gap: covered < first_offset,
                    };
                    journal(&writer.buffer, point);
                    writer.journaled_end = end.next_offset;
                    true
                }
                None => false,
            };
            (first_offset, end, rolled, journaled)
        };
        Ok(PendingAppend {
            log: self,
            first_offset,
            end,
            rolled,
            journaled,
        })
    }

    /// Marks an append durable that an outside journal has fsynced: if every event before it
    /// is durable, it is now (readers see it); otherwise (an earlier append on this log was
    /// not journaled and its fsync has not ended) this waits for the log's own fsync, which
    /// covers both.
    fn finish_journaled(&self, first_offset: u64, end: EndPoint, rolled: bool) -> Result<()> {
        let inner = &self.inner;
        if let Some(cause) = inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        let point = JournalPoint {
            first_offset,
            end,
            after_gap: false,
        };
        if !self.mark_journaled(point) {
            self.wait_durable(end.next_offset)?;
        }
        if rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(())
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
            self.check_writable(&writer)?;
        }
        self.lead_sync(true)
    }

    /// Writes a frame taken from an outside journal back into the log after a crash
    /// (weir-store's journal replay). A frame whose events the log already holds is skipped
    /// (`Ok(0)`); a frame that starts at the log's end is appended with its events'
    /// timestamps, keys, headers and values, but not fsynced (call [`Log::sync_segment`] after
    /// the last one). Returns the events written.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the bytes are not a valid frame; [`Error::UnexpectedOffset`] if
    /// the frame starts past the log's end or overlaps it (events are missing between them, or
    /// the frame disagrees with the log); as [`Log::append`] otherwise.
    pub fn restore_frame(&self, frame: &[u8]) -> Result<u64> {
        let header = format::check_frame(frame).map_err(|e| Error::Corrupt {
            file: self.inner.dir.clone(),
            position: 0,
            reason: format!("a journaled frame is not valid: {e}"),
        })?;
        let end = self.end_offset_written();
        if header.end_offset() <= end {
            return Ok(0);
        }
        if header.base_offset != end {
            return Err(Error::UnexpectedOffset {
                expected: header.base_offset,
                actual: end,
            });
        }
        let views: Vec<format::EventView<'_>> =
            format::FrameEvents::new(&frame[..header.frame_len as usize], &header).collect();
        let headers: Vec<Vec<format::Header<'_>>> =
            views.iter().map(|v| v.headers().collect()).collect();
        let events: Vec<AppendEvent<'_>> = views
            .iter()
            .zip(&headers)
            .map(|(view, headers)| AppendEvent {
                timestamp_ms: Some(view.timestamp_ms),
                key: view.key,
                headers,
                value: view.value,
            })
            .collect();
        // The limits configured now do not apply: the frame was accepted under the ones of
        // the time, and refusing it would lose acknowledged events.
        let pending = self.write_frame(&events, Some(header.base_offset), None, false)?;
        if pending.rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(u64::from(header.event_count))
    }

    /// The offset after the last written event (durable or not).
    fn end_offset_written(&self) -> u64 {
        lock(&self.inner.writer).end.next_offset
    }

    /// The second half of an append: waits as the sync policy requires.
    fn finish_append(&self, end_offset: u64, rolled: bool) -> Result<()> {
        let inner = &self.inner;
        match inner.config.sync_policy {
            SyncPolicy::Always => self.wait_durable(end_offset)?,
            SyncPolicy::IntervalLossy { interval_ms } => {
                let due = inner
                    .clock
                    .now_ms()
                    .saturating_sub(lock(&inner.sync).last_sync_ms)
                    >= interval_ms;
                if due {
                    self.wait_durable(end_offset)?;
                }
            }
            SyncPolicy::NeverLossy => {}
        }
        if rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(())
    }

    /// Checks an append against the limits (and the log's health) without writing anything:
    /// what [`Log::append`] checks first. weir-store checks every partition of a produce this
    /// way before writing to any of them.
    ///
    /// # Errors
    /// As the checks of [`Log::append`]; [`Error::Poisoned`].
    pub fn validate_append(&self, events: &[AppendEvent<'_>]) -> Result<()> {
        self.check_append(events)?;
        if let Some(cause) = self.inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    /// Checks an append against the limits before anything is written; returns its frame length.
    fn check_append(&self, events: &[AppendEvent<'_>]) -> Result<usize> {
        self.check_append_within(events, true)
    }

    /// [`Log::check_append`], with the configured limits or only the format's.
    fn check_append_within(&self, events: &[AppendEvent<'_>], limits: bool) -> Result<usize> {
        let config = &self.inner.config;
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
        if limits && events.len() > config.append_events_max as usize {
            return Err(Error::AppendTooLarge {
                what: "events",
                actual: events.len() as u64,
                limit: u64::from(config.append_events_max),
                field: "append_events_max",
            });
        }
        let mut frame_len = FRAME_HEADER_LEN;
        for (index, event) in events.iter().enumerate() {
            let len = event.encoded_len().ok_or(Error::InvalidEvent {
                index,
                reason: "a key, value, header name or header count is too large for the format",
            })?;
            if limits && len > config.event_bytes_max as usize {
                return Err(Error::EventTooLarge {
                    index,
                    bytes: len as u64,
                    bytes_max: u64::from(config.event_bytes_max),
                });
            }
            frame_len += len;
        }
        if limits && frame_len > config.append_bytes_max as usize {
            return Err(Error::AppendTooLarge {
                what: "bytes",
                actual: frame_len as u64,
                limit: u64::from(config.append_bytes_max),
                field: "append_bytes_max",
            });
        }
        Ok(frame_len)
    }

    fn check_writable(&self, writer: &Writer) -> Result<()> {
        if let Some(cause) = self.inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if writer.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn should_roll(&self, writer: &Writer, frame_len: usize, now_ms: u64) -> bool {
        let config = &self.inner.config;
        let has_data = writer.end.position > SEGMENT_HEADER_LEN as u64;
        let too_big = writer.end.position + frame_len as u64 > config.segment_bytes_max;
        let too_old = config
            .segment_age_max_ms
            .is_some_and(|age| now_ms.saturating_sub(writer.created_ms) >= age);
        has_data && (too_big || too_old)
    }

    /// Seals the active segment (fsynced, index written) and starts a new one whose header
    /// and directory entry are durable before anything is written to it.
    fn roll(&self, writer: &mut Writer, now_ms: u64) -> Result<()> {
        let inner = &self.inner;
        self.cut_preallocated(writer)?;
        self.fsync_segment(&*writer.file, &writer.active.path)?;
        self.mark_fsynced(writer.end);
        if let Some(index) = writer.active.index_file() {
            if let Err(error) =
                segment::write_index_file(&*inner.storage, &writer.active.index_path, &index, false)
            {
                tracing::warn!(%error, "could not write the index of a sealed segment; it will be rebuilt");
            }
        }
        let base_offset = writer.end.next_offset;
        let segment = Segment::new(&inner.dir, base_offset);
        let file = match create_segment_file(
            &*inner.storage,
            &inner.dir,
            &segment.path,
            base_offset,
            now_ms,
        ) {
            Ok(file) => file,
            Err(error) if error.is_storage_full() => {
                // The old segment stays active (it was just fsynced); take the half-made file
                // away so the next roll can create it again.
                let removed = inner
                    .storage
                    .remove_file(&segment.path)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| Error::io("remove a half-created segment", &segment.path, e))
                    .and_then(|()| {
                        inner
                            .storage
                            .sync_dir(&inner.dir)
                            .map_err(|e| Error::io("fsync directory", &inner.dir, e))
                    });
                return match removed {
                    Ok(()) => Err(error),
                    Err(cleanup) => Err(self.poison(cleanup)),
                };
            }
            Err(error) => return Err(self.poison(error)),
        };
        let segment = Arc::new(segment.with_file(file.clone()));
        segment.set_summary(Summary::empty(base_offset));
        write(&inner.segments).insert(base_offset, segment.clone());
        writer.active = segment;
        writer.file = file;
        writer.end = EndPoint {
            next_offset: base_offset,
            segment_base: base_offset,
            position: SEGMENT_HEADER_LEN as u64,
        };
        writer.allocated_end = writer.end.position;
        writer.created_ms = now_ms;
        writer.index = IndexBuilder::new(base_offset, inner.config.index_interval_bytes);
        self.mark_fsynced(writer.end);
        let end = writer.end;
        let refreshed = self.update_checkpoint(|checkpoint| {
            checkpoint.segment_base_offset = end.segment_base;
            checkpoint.position = end.position;
            checkpoint.next_offset = end.next_offset;
        });
        self.checkpoint_lags_if_full(refreshed)?;
        tracing::debug!(dir = %inner.dir.display(), base_offset, "rolled to a new segment");
        Ok(())
    }

    /// Records that everything up to `end` is durable and shows it to readers.
    fn mark_durable(&self, end: EndPoint) {
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
    fn mark_fsynced(&self, end: EndPoint) {
        {
            let mut sync = lock(&self.inner.sync);
            if end.is_after(&sync.fsynced) {
                sync.fsynced = end;
            }
        }
        self.mark_durable(end);
    }

    /// Lets readers see up to `end`, if that is further than they see now.
    fn publish(&self, end: EndPoint) {
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

    /// Writes zeros ahead of the end so that the frame ending at `needed_end` lands in blocks
    /// the file already has (see [`LogConfig::preallocate_bytes`]). Large frames skip it. A
    /// full device is not an error here: the zeros that fit are cut again and the frame is
    /// written without them (and meets the full device itself, if it does not fit either).
    fn preallocate(&self, writer: &mut Writer, needed_end: u64) -> Result<()> {
        let config = &self.inner.config;
        let chunk = config.preallocate_bytes;
        let frame_len = needed_end - writer.end.position;
        // Only fsync-per-append pays for a growing file; the lossy policies sync rarely and
        // would only write every byte twice.
        let syncs_often = matches!(config.sync_policy, SyncPolicy::Always);
        if needed_end <= writer.allocated_end
            || chunk == 0
            || frame_len >= chunk / 2
            || !syncs_often
        {
            return Ok(());
        }
        let from = writer.allocated_end.max(writer.end.position);
        let to = (needed_end + chunk).min(config.segment_bytes_max.max(needed_end));
        let mut position = from;
        while position < to {
            let len = (to - position).min(ZEROS.len() as u64) as usize;
            if let Err(source) = writer.file.write_all_at(&ZEROS[..len], position) {
                let error = Error::write(
                    "write zeros ahead of the end of",
                    &writer.active.path,
                    source,
                );
                if !error.is_storage_full() {
                    return Err(self.poison(error));
                }
                if let Err(source) = writer.file.set_len(from) {
                    return Err(self.poison(Error::io(
                        "cut zeros that did not fit from",
                        &writer.active.path,
                        source,
                    )));
                }
                writer.allocated_end = from;
                return Ok(());
            }
            position += len as u64;
        }
        writer.allocated_end = to;
        Ok(())
    }

    /// Cuts the zeros written ahead of the end of the active file (before it is sealed or
    /// closed), by the file's real length. The caller's fsync makes the cut durable.
    fn cut_preallocated(&self, writer: &mut Writer) -> Result<()> {
        let path = &writer.active.path;
        let len = writer
            .file
            .len()
            .map_err(|e| self.poison(Error::io("read the length of", path, e)))?;
        if len > writer.end.position {
            writer.file.set_len(writer.end.position).map_err(|e| {
                self.poison(Error::io("cut the zeros ahead of the end of", path, e))
            })?;
        }
        writer.allocated_end = writer.end.position;
        Ok(())
    }

    /// A failed write of a frame at `position`: on a full device the partial bytes are cut away
    /// and the log stays writable (nothing of the append was acknowledged, and every frame
    /// before `position` is untouched); any other write error poisons the log.
    fn write_failed(&self, writer: &Writer, position: u64, source: std::io::Error) -> Error {
        let error = Error::write("write", &writer.active.path, source);
        if !error.is_storage_full() {
            return self.poison(error);
        }
        match writer.file.set_len(position) {
            Ok(()) => {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "append refused: the device is full");
                error
            }
            Err(source) => self.poison(Error::io(
                "cut a partial frame after a full-device write from",
                &writer.active.path,
                source,
            )),
        }
    }

    /// Poisons the log with `error` (the first error wins) and wakes every waiter; returns the
    /// error for the caller that hit it.
    fn poison(&self, error: Error) -> Error {
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
    fn lead_round(&self, mut sync: MutexGuard<'_, SyncState>) -> Result<()> {
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
    fn lead_sync(&self, force: bool) -> Result<()> {
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
    /// under [`SyncPolicy::IntervalLossy`].
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed (the log is then poisoned).
    pub fn sync(&self) -> Result<()> {
        let end = lock(&self.inner.writer).end.next_offset;
        self.wait_durable(end)
    }

    /// A checkpoint refresh that failed only because the device is full is not an error for
    /// the caller: the old checkpoint stays on disk and is still true (recovery scans a little
    /// more), and the next refresh tries again.
    fn checkpoint_lags_if_full(&self, refreshed: Result<()>) -> Result<()> {
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
    fn update_checkpoint(&self, change: impl FnOnce(&mut Checkpoint)) -> Result<()> {
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

    /// Reads up to `max_events` events from `from_offset`, stopping before the event that would
    /// take the encoded size over `max_bytes` (but always returning at least one event if any
    /// is visible). Every frame's CRC is checked. An empty batch means `from_offset` is the end.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the start or past the end; [`Error::Corrupt`] if a
    /// frame fails its checks; [`Error::Io`].
    pub fn read(&self, from_offset: u64, max_events: usize, max_bytes: usize) -> Result<ReadBatch> {
        let inner = &self.inner;
        let (start, end) = self.visible_range()?;
        if from_offset < start || from_offset > end.next_offset {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                start,
                end: end.next_offset,
            });
        }
        let mut collector = Collector::new(from_offset, max_events, max_bytes);
        while !collector.is_done() && collector.next_offset() < end.next_offset {
            let offset = collector.next_offset();
            let (segment, next_base) = self.segment_for(offset);
            let Some(segment) = segment else { break };
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                let Some(next_base) = next_base else { break };
                self.sealed_info(&segment, next_base)?.end_position
            };
            let (position, first_offset) = segment.seek(offset);
            let file = match segment.file(&*inner.storage) {
                Ok(file) => file,
                Err(error) => return Err(self.out_of_range_or(error, offset)),
            };
            // About the bytes wanted: the events asked for at ~256 bytes each (within
            // `max_bytes`), plus the distance from the indexed frame to `offset`.
            let skip_bytes = usize::try_from(offset - first_offset).unwrap_or(usize::MAX);
            let hint = max_events
                .saturating_mul(256)
                .min(max_bytes)
                .saturating_add(skip_bytes.saturating_mul(64));
            read::read_frames(
                &*file,
                &segment.path,
                position,
                first_offset,
                limit,
                hint,
                |frame| {
                    collector.offer(frame);
                    !collector.is_done()
                },
            )?;
            if collector.next_offset() == offset {
                // The index promised events here and there were none: never loop on it.
                break;
            }
        }
        Ok(collector.finish())
    }

    /// The first offset whose event has a timestamp ≥ `timestamp_ms`, or `None` if no visible
    /// event is that recent. Timestamps need not be ordered: this is the first such offset in
    /// log order.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if a frame fails its checks; [`Error::Io`].
    pub fn offset_for_time(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        let inner = &self.inner;
        let (start, end) = self.visible_range()?;
        let segments: Vec<(Arc<Segment>, Option<u64>)> = {
            let map = read(&inner.segments);
            let keys: Vec<u64> = map.keys().copied().collect();
            map.values()
                .enumerate()
                .map(|(i, segment)| (segment.clone(), keys.get(i + 1).copied()))
                .collect()
        };
        for (segment, next_base) in segments {
            if segment.base_offset >= end.next_offset || next_base.is_some_and(|next| next <= start)
            {
                continue;
            }
            let (limit, timestamp_max_ms) = if segment.base_offset == end.segment_base {
                let info = segment
                    .info()
                    .unwrap_or_else(|| Summary::empty(segment.base_offset).info());
                (end.position, info.timestamp_max_ms)
            } else {
                let Some(next_base) = next_base else { continue };
                let info = self.sealed_info(&segment, next_base)?;
                (info.end_position, info.timestamp_max_ms)
            };
            if timestamp_max_ms < timestamp_ms {
                continue;
            }
            let (position, first_offset) = segment.seek_time(timestamp_ms);
            let file = segment.file(&*inner.storage)?;
            let mut found = None;
            read::read_frames(
                &*file,
                &segment.path,
                position,
                first_offset,
                limit,
                usize::MAX,
                |frame| {
                    if frame.header.timestamp_max_ms >= timestamp_ms {
                        found = frame
                            .events()
                            .find(|event| {
                                event.offset >= start && event.timestamp_ms >= timestamp_ms
                            })
                            .map(|event| event.offset);
                    }
                    found.is_none()
                },
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Blocks until the event at `offset` is visible (then `true`) or `timeout` passes
    /// (`false`).
    ///
    /// # Errors
    /// [`Error::Closed`] if the log closes, [`Error::Poisoned`] if it fails, while waiting.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut visible = lock(&inner.visible);
        loop {
            if visible.end.next_offset > offset {
                return Ok(true);
            }
            if let Some(cause) = inner.poison.get() {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if visible.closed {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            visible = inner
                .visible_changed
                .wait_timeout(visible, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// A future that resolves once the event at `offset` is visible, without blocking a
    /// thread: usable from any async runtime (wrap it in the runtime's timeout).
    pub fn wait_for_async(&self, offset: u64) -> WaitForOffset<'_> {
        WaitForOffset { log: self, offset }
    }

    /// Moves the start offset to `offset` and removes the sealed segments wholly below it.
    /// Reading below the new start is an error; the bytes of a segment that straddles it
    /// stay on disk until the whole segment is below the start.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] past the end; [`Error::Io`].
    pub fn truncate_before(&self, offset: u64) -> Result<RetentionReport> {
        let inner = &self.inner;
        let _maintenance = lock(&inner.maintenance);
        let (start, end) = self.visible_range()?;
        if offset > end.next_offset {
            return Err(Error::OffsetOutOfRange {
                offset,
                start,
                end: end.next_offset,
            });
        }
        if offset <= start {
            return Ok(RetentionReport {
                start_offset: start,
                ..RetentionReport::default()
            });
        }
        // The new start must never pass the fsynced end (under a lossy policy the events below
        // `offset` may not be synced yet, and a journal's may be in the journal only), or a
        // power cut could leave a start past the end.
        if offset > lock(&inner.sync).fsynced.next_offset {
            self.lead_sync(true)?;
        }
        let victims: Vec<(Arc<Segment>, u64)> = self
            .sealed_segments()
            .into_iter()
            .filter(|(_, next_base)| *next_base <= offset)
            .collect();
        self.remove_segments(offset, victims)
    }

    /// Applies the retention limits (`retention_bytes_max`, `retention_age_max_ms`), removing
    /// whole sealed segments from the oldest. Runs by itself after every roll; call it from a
    /// timer for age-based retention of an idle log.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Corrupt`] if a segment's size or age cannot be read.
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        let inner = &self.inner;
        let config = &inner.config;
        if config.retention_bytes_max.is_none() && config.retention_age_max_ms.is_none() {
            return Ok(RetentionReport {
                start_offset: self.start_offset(),
                ..RetentionReport::default()
            });
        }
        let _maintenance = lock(&inner.maintenance);
        let now = inner.clock.now_ms();
        let sealed = self.sealed_segments();
        let mut total = lock(&inner.writer).end.position;
        let mut infos = Vec::with_capacity(sealed.len());
        for (segment, next_base) in &sealed {
            let info = self.sealed_info(segment, *next_base)?;
            total += info.end_position;
            infos.push(info);
        }
        let mut victims = Vec::new();
        for ((segment, next_base), info) in sealed.into_iter().zip(infos) {
            let too_old = config
                .retention_age_max_ms
                .is_some_and(|age| now.saturating_sub(age) > info.timestamp_max_ms);
            let too_big = config.retention_bytes_max.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            total -= info.end_position;
            victims.push((segment, next_base));
        }
        let start = self.start_offset();
        let new_start = victims
            .last()
            .map_or(start, |(_, next_base)| (*next_base).max(start));
        self.remove_segments(new_start, victims)
    }

    /// Persists `new_start` in the checkpoint, then removes `victims` (sealed segments below it).
    fn remove_segments(
        &self,
        new_start: u64,
        victims: Vec<(Arc<Segment>, u64)>,
    ) -> Result<RetentionReport> {
        let inner = &self.inner;
        // The checkpoint may lag in a segment this removes (a refresh that met a full device
        // after a roll), whether or not `new_start` is in the active segment (`truncate_before`
        // may cut into it): move it to the fsynced end, so that it never names a segment that
        // is gone. The fsynced end is in the active segment (a roll fsyncs and marks the new
        // segment's start fsynced), which is never a victim.
        let durable = lock(&inner.sync).fsynced;
        debug_assert!(victims
            .iter()
            .all(|(segment, _)| segment.base_offset != durable.segment_base));
        self.update_checkpoint(|checkpoint| {
            checkpoint.start_offset = checkpoint.start_offset.max(new_start);
            let names_a_victim = victims
                .iter()
                .any(|(segment, _)| segment.base_offset == checkpoint.segment_base_offset);
            if names_a_victim {
                checkpoint.segment_base_offset = durable.segment_base;
                checkpoint.position = durable.position;
                checkpoint.next_offset = durable.next_offset;
            }
        })?;
        {
            let mut visible = lock(&inner.visible);
            visible.start_offset = visible.start_offset.max(new_start);
        }
        let mut report = RetentionReport {
            start_offset: self.start_offset(),
            ..RetentionReport::default()
        };
        if victims.is_empty() {
            return Ok(report);
        }
        {
            let mut map = write(&inner.segments);
            for (segment, _) in &victims {
                map.remove(&segment.base_offset);
            }
        }
        for (segment, _) in victims {
            report.bytes_removed += segment.info().map_or(0, |info| info.end_position);
            inner
                .storage
                .remove_file(&segment.path)
                .map_err(|e| Error::io("remove segment", &segment.path, e))?;
            if let Err(error) = inner.storage.remove_file(&segment.index_path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io("remove index", &segment.index_path, error));
                }
            }
            report.segments_removed.push(segment.path.clone());
        }
        inner
            .storage
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io("fsync directory", &inner.dir, e))?;
        tracing::info!(dir = %inner.dir.display(), removed = report.segments_removed.len(), start_offset = report.start_offset, "retention removed segments");
        Ok(report)
    }

    /// Sizes of the log. Loads the summaries of sealed segments that were not read yet.
    ///
    /// # Errors
    /// As [`Log::read`].
    pub fn stats(&self) -> Result<LogStats> {
        let (start, end) = self.visible_range()?;
        let sealed = self.sealed_segments();
        let mut bytes = end.position;
        for (segment, next_base) in &sealed {
            bytes += self.sealed_info(segment, *next_base)?.end_position;
        }
        Ok(LogStats {
            start_offset: start,
            end_offset: end.next_offset,
            bytes,
            segments: sealed.len() + 1,
        })
    }

    /// Checks every frame of every segment (CRC, structure, dense offsets) up to the visible
    /// end, reading everything: an offline-style verification of a live log.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and position of the first damage; [`Error::Io`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let inner = &self.inner;
        let (_, end) = self.visible_range()?;
        let segments: Vec<Arc<Segment>> = read(&inner.segments).values().cloned().collect();
        let mut report = VerifyReport::default();
        for segment in segments {
            if segment.base_offset > end.segment_base {
                break;
            }
            let file = segment.file(&*inner.storage)?;
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                file.len()
                    .map_err(|e| Error::io("read length of segment", &segment.path, e))?
            };
            segment::check_header(
                &*file,
                &segment.path,
                segment.base_offset,
                limit.max(SEGMENT_HEADER_LEN as u64),
            )?;
            let reached = read::read_frames(
                &*file,
                &segment.path,
                SEGMENT_HEADER_LEN as u64,
                segment.base_offset,
                limit,
                usize::MAX,
                |_| {
                    report.frames += 1;
                    true
                },
            )?;
            report.bytes += reached;
            report.segments += 1;
        }
        Ok(report)
    }

    /// Closes the log cleanly: fsyncs, writes the active segment's index, the checkpoint and
    /// the clean-shutdown marker (so the next open skips the scan), and releases the lock.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if the log failed earlier (it is closed all the same, uncleanly);
    /// [`Error::Io`].
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        let mut writer = lock(&inner.writer);
        if writer.closed {
            // Closed before: whether that close made everything durable is what counts.
            return match inner.poison.get() {
                Some(cause) if !writer.synced_at_close => Err(Error::Poisoned {
                    cause: cause.clone(),
                }),
                _ => Ok(()),
            };
        }
        writer.closed = true;
        let result = self.close_cleanly(&mut writer);
        drop(writer);
        lock(&inner.visible).closed = true;
        self.inner.visible_changed.notify_all();
        // Take the wakers out before waking them: a waker may poll inline and lock `visible`.
        let wakers = std::mem::take(&mut lock(&inner.visible).wakers);
        for waker in wakers {
            waker.wake();
        }
        lock(&inner.lock_file).take();
        result
    }

    fn close_cleanly(&self, writer: &mut Writer) -> Result<()> {
        let inner = &self.inner;
        if let Some(cause) = inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        self.cut_preallocated(writer)?;
        self.fsync_segment(&*writer.file, &writer.active.path)?;
        self.mark_fsynced(writer.end);
        writer.synced_at_close = true;
        if let Some(index) = writer.active.index_file() {
            segment::write_index_file(&*inner.storage, &writer.active.index_path, &index, true)?;
        }
        let end = writer.end;
        self.update_checkpoint(|checkpoint| {
            checkpoint.segment_base_offset = end.segment_base;
            checkpoint.position = end.position;
            checkpoint.next_offset = end.next_offset;
        })?;
        let marker = inner.dir.join(CLEAN_SHUTDOWN_FILE);
        inner
            .storage
            .open(&marker, OpenMode::CreateTruncate)
            .map_err(|e| Error::io("create", &marker, e))?;
        inner
            .storage
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io("fsync directory", &inner.dir, e))?;
        Ok(())
    }

    fn visible_range(&self) -> Result<(u64, EndPoint)> {
        let visible = lock(&self.inner.visible);
        if visible.closed {
            return Err(Error::Closed);
        }
        Ok((visible.start_offset, visible.end))
    }

    /// The segment holding `offset` and the base offset of the one after it.
    fn segment_for(&self, offset: u64) -> (Option<Arc<Segment>>, Option<u64>) {
        let map = read(&self.inner.segments);
        let segment = map
            .range(..=offset)
            .next_back()
            .map(|(_, segment)| segment.clone());
        let next = map.range(offset + 1..).next().map(|(base, _)| *base);
        (segment, next)
    }

    /// Sealed segments, oldest first, with the base offset of their successor.
    fn sealed_segments(&self) -> Vec<(Arc<Segment>, u64)> {
        let map = read(&self.inner.segments);
        let segments: Vec<&Arc<Segment>> = map.values().collect();
        segments
            .windows(2)
            .map(|pair| (pair[0].clone(), pair[1].base_offset))
            .collect()
    }

    fn sealed_info(&self, segment: &Segment, next_base: u64) -> Result<segment::SummaryInfo> {
        segment.sealed_info(
            &*self.inner.storage,
            next_base,
            self.inner.config.index_interval_bytes,
        )
    }

    /// A segment file vanished under a reader: if retention moved the start past `offset`,
    /// say so; otherwise it is the I/O error it is.
    fn out_of_range_or(&self, error: Error, offset: u64) -> Error {
        let visible = lock(&self.inner.visible);
        if offset < visible.start_offset {
            Error::OffsetOutOfRange {
                offset,
                start: visible.start_offset,
                end: visible.end.next_offset,
            }
        } else {
            error
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::warn!(dir = %self.inner.dir.display(), %error, "the log could not close cleanly");
        }
    }
}

/// What [`Log::append_start_with`] hands each frame to: its bytes and where it sits.
type JournalFn<'a> = dyn FnMut(&[u8], JournalPoint) + 'a;

/// Where a journaled append's frame sits in its log: what [`Log::mark_journaled`] needs
/// once the journal has made the frame durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPoint {
    first_offset: u64,
    end: EndPoint,
    after_gap: bool,
}

impl JournalPoint {
    /// The offset of the frame's first event.
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the frame's last event.
    pub fn end_offset(&self) -> u64 {
        self.end.next_offset
    }

    /// True if, when the frame was written, an earlier append on its log was neither durable
    /// nor journaled: the journal must call [`Log::sync_segment`] before it writes the frame,
    /// so that it never holds a frame after events a crash could take back.
    pub fn after_gap(&self) -> bool {
        self.after_gap
    }
}

/// An append whose frame is written but not yet acknowledged (see [`Log::append_start`]).
#[derive(Debug)]
#[must_use = "an append is acknowledged only once `wait` returns"]
pub struct PendingAppend<'a> {
    log: &'a Log,
    first_offset: u64,
    end: EndPoint,
    rolled: bool,
    journaled: bool,
}

impl PendingAppend<'_> {
    /// The offset assigned to the first event (not yet durable).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the append's last event: [`Log::wait_durable`] with it waits for
    /// this append (and everything before it).
    pub fn end_offset(&self) -> u64 {
        self.end.next_offset
    }

    /// Waits until the append is durable under the log's sync policy (group commit), and
    /// returns its first offset: the acknowledgement.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed.
    pub fn wait(self) -> Result<u64> {
        self.log.finish_append(self.end.next_offset, self.rolled)?;
        Ok(self.first_offset)
    }

    /// Acknowledges an append started with [`Log::append_start_with`] once the caller's
    /// journal has fsynced its frame: readers see it now, and no fsync of the segment is
    /// needed (unless an earlier append on this log is still waiting for one, which this then
    /// waits for). Returns its first offset.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if the log is; [`Error::Io`] if the fsync it waited for failed.
    pub fn journaled(self) -> Result<u64> {
        if !self.journaled {
            return self.wait();
        }
        self.log
            .finish_journaled(self.first_offset, self.end, self.rolled)?;
        Ok(self.first_offset)
    }
}

/// Future returned by [`Log::wait_for_async`].
#[derive(Debug)]
pub struct WaitForOffset<'a> {
    log: &'a Log,
    offset: u64,
}

impl Future for WaitForOffset<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let inner = &self.log.inner;
        let mut visible = lock(&inner.visible);
        if visible.end.next_offset > self.offset {
            return Poll::Ready(Ok(()));
        }
        if let Some(cause) = inner.poison.get() {
            return Poll::Ready(Err(Error::Poisoned {
                cause: cause.clone(),
            }));
        }
        if visible.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if !visible
            .wakers
            .iter()
            .any(|waker| waker.will_wake(cx.waker()))
        {
            visible.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Moves the checkpoint's durable position to `durable`, only forwards by position in the log
/// (segment, then byte): a round that fsynced the end of a segment before a roll must not move
/// it back from the new segment into the old one (at the same offset), which retention may have
/// removed since.
fn advance_checkpoint(checkpoint: &mut Checkpoint, durable: EndPoint) {
    if (durable.segment_base, durable.position)
        > (checkpoint.segment_base_offset, checkpoint.position)
    {
        checkpoint.segment_base_offset = durable.segment_base;
        checkpoint.position = durable.position;
        checkpoint.next_offset = durable.next_offset;
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

/// Creates a segment file whose header and directory entry are durable before it is returned.
fn create_segment_file(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    base_offset: u64,
    now_ms: u64,
) -> Result<Arc<dyn StorageFile>> {
    let file = storage
        .open(path, OpenMode::CreateNew)
        .map_err(|e| Error::write("create segment", path, e))?;
    let header = SegmentHeader {
        base_offset,
        created_ms: now_ms,
    }
    .encode();
    file.write_all_at(&header, 0)
        .map_err(|e| Error::write("write segment header", path, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(file)
}

struct Opened {
    segments: BTreeMap<u64, Arc<Segment>>,
    active_file: Arc<dyn StorageFile>,
    end: EndPoint,
    created_ms: u64,
    index: IndexBuilder,
    checkpoint: Checkpoint,
    report: RecoveryReport,
}

/// True if the bytes `from..to` of `file` are all zero.
fn all_zeros(file: &dyn StorageFile, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut position = from;
    while position < to {
        let want = (to - position).min(buffer.len() as u64) as usize;
        let read = file.read_at(&mut buffer[..want], position)?;
        if read == 0 {
            break;
        }
        if buffer[..read].iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
        position += read as u64;
    }
    Ok(true)
}

/// Zeros for [`Log::preallocate`], written 64 KiB at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Recovery at open (see `docs/durability.md`).
struct Opener<'a> {
    dir: &'a Path,
    config: &'a LogConfig,
    storage: &'a dyn Storage,
    clock: &'a dyn Clock,
}

impl Opener<'_> {
    fn open(&self) -> Result<Opened> {
        let dir = self.dir;
        let storage = self.storage;
        let mut report = RecoveryReport::default();
        let names = storage
            .list_dir(dir)
            .map_err(|e| Error::io("list directory", dir, e))?;
        let mut bases = Vec::new();
        let mut index_bases = Vec::new();
        let mut clean = false;
        let mut has_checkpoint = false;
        for name in &names {
            if let Some(base) = parse_file_name(name, SEGMENT_SUFFIX) {
                bases.push(base);
            } else if let Some(base) = parse_file_name(name, INDEX_SUFFIX) {
                index_bases.push(base);
            } else if name.ends_with(TMP_SUFFIX) {
                self.remove(&dir.join(name), &mut report)?;
            } else if name == CLEAN_SHUTDOWN_FILE {
                clean = true;
            } else if name == CHECKPOINT_FILE {
                has_checkpoint = true;
            }
        }
        bases.sort_unstable();
        let checkpoint = if has_checkpoint {
            Some(self.read_checkpoint()?)
        } else {
            None
        };
        if bases.is_empty() {
            if let Some(checkpoint) = checkpoint {
                return Err(Error::corrupt(
                    dir.join(CHECKPOINT_FILE),
                    0,
                    format!(
                        "the checkpoint names segment {} but the directory holds no segment",
                        checkpoint.segment_base_offset
                    ),
                ));
            }
            return self.create(report);
        }
        let start_offset = checkpoint.map_or(bases[0], |c| c.start_offset);
        if start_offset < bases[0] {
            return Err(Error::corrupt(
                dir.join(segment::segment_file_name(bases[0])),
                0,
                format!(
                    "the log starts at offset {start_offset} but its first segment starts at {}",
                    bases[0]
                ),
            ));
        }
        if let Some(checkpoint) = checkpoint {
            if bases
                .binary_search(&checkpoint.segment_base_offset)
                .is_err()
            {
                return Err(Error::corrupt(
                    dir.join(segment::segment_file_name(checkpoint.segment_base_offset)),
                    0,
                    "the segment named by the recovery checkpoint is missing",
                ));
            }
        }
        // Segments wholly below the start offset are leftovers of an interrupted retention.
        while bases.len() > 1 && bases[1] <= start_offset {
            let base = bases.remove(0);
            self.remove(&dir.join(segment::segment_file_name(base)), &mut report)?;
        }
        for base in index_bases {
            if bases.binary_search(&base).is_err() {
                self.remove(&dir.join(segment::index_file_name(base)), &mut report)?;
            }
        }
        if clean {
            // Removed before anything is written, so a crash from here on is never mistaken
            // for a clean shutdown.
            self.remove(&dir.join(CLEAN_SHUTDOWN_FILE), &mut report)?;
            report.files_removed.pop();
        }
        // Always, not only when recovery changed the directory: a process killed between
        // creating a segment file and fsyncing the directory leaves an entry that is in the
        // page cache but maybe not on disk, and appends to that segment are about to be
        // acknowledged.
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;

        let mut segments = BTreeMap::new();
        for &base in &bases {
            segments.insert(base, Arc::new(Segment::new(dir, base)));
        }
        let active_base = *bases.last().expect("not empty");
        let checkpoint_base = checkpoint.map(|c| c.segment_base_offset);
        // Sealed segments after the checkpoint's segment were rolled after the last checkpoint
        // was written: verify them now (without a checkpoint, all of them).
        for pair in bases.windows(2) {
            let (base, next_base) = (pair[0], pair[1]);
            if checkpoint_base.is_some_and(|c| base <= c) {
                continue;
            }
            let segment = &segments[&base];
            let file = segment.file(storage)?;
            let len = file
                .len()
                .map_err(|e| Error::io("read length of segment", &segment.path, e))?;
            let summary =
                segment.rebuild(&*file, len, next_base, self.config.index_interval_bytes)?;
            report.segments_scanned += 1;
            report.bytes_scanned += len;
            let index = summary.to_index_file(base);
            segment.set_summary(summary);
            if let Err(error) =
                segment::write_index_file(storage, &segment.index_path, &index, false)
            {
                tracing::warn!(%error, "could not write a rebuilt index");
            }
        }

        let active = segments[&active_base].clone();
        let file = storage
            .open(&active.path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open segment", &active.path, e))?;
        let mut file_len = file
            .len()
            .map_err(|e| Error::io("read length of segment", &active.path, e))?;
        let checkpoint_position = checkpoint
            .filter(|c| c.segment_base_offset == active_base)
            .map(|c| c.position);
        let created_ms = match segment::check_header(&*file, &active.path, active_base, file_len) {
            Ok(header) => header.created_ms,
            Err(error)
                if file_len <= SEGMENT_HEADER_LEN as u64 && checkpoint_position.is_none() =>
            {
                // The segment was being created when the process stopped: its header was never
                // synced, so nothing was ever written to it. Start it again.
                tracing::warn!(path = %active.path.display(), %error, "rewriting the torn header of an empty segment");
                let now = self.clock.now_ms();
                let header = SegmentHeader {
                    base_offset: active_base,
                    created_ms: now,
                }
                .encode();
                file.set_len(0)
                    .map_err(|e| Error::io("truncate", &active.path, e))?;
                file.write_all_at(&header, 0)
                    .map_err(|e| Error::io("write segment header", &active.path, e))?;
                file.sync_data()
                    .map_err(|e| Error::io("fsync", &active.path, e))?;
                report.segment_reinitialized = Some(active.path.clone());
                file_len = SEGMENT_HEADER_LEN as u64;
                now
            }
            Err(error) => return Err(error),
        };

        let trusted = if clean {
            self.trusted_active_summary(&active, file_len)
        } else {
            None
        };
        let (summary, index) = match trusted {
            Some(found) => {
                report.clean_shutdown = true;
                found
            }
            None => {
                self.scan_active(&active, &*file, file_len, checkpoint_position, &mut report)?
            }
        };
        // Everything recovery keeps must be durable before a checkpoint can name it (after a
        // kill -9 the page cache may hold bytes that never reached the disk).
        file.sync_data()
            .map_err(|e| Error::io("fsync", &active.path, e))?;
        let end = EndPoint {
            next_offset: summary.end_offset,
            segment_base: active_base,
            position: summary.end_position,
        };
        active.set_file(file.clone());
        active.set_summary(summary);

        if start_offset > end.next_offset {
            return Err(Error::corrupt(
                &active.path,
                end.position,
                format!(
                    "the log ends at offset {} but its checkpoint says it starts at {start_offset}",
                    end.next_offset
                ),
            ));
        }
        let new_checkpoint = Checkpoint {
            start_offset,
            segment_base_offset: active_base,
            position: end.position,
            next_offset: end.next_offset,
        };
        if checkpoint != Some(new_checkpoint) {
            let path = dir.join(CHECKPOINT_FILE);
            atomic::write_file(storage, &path, &new_checkpoint.encode(), true)?;
            storage
                .sync_dir(dir)
                .map_err(|e| Error::io("fsync directory", dir, e))?;
        }
        report.segments = segments.len();
        report.end_offset = end.next_offset;
        if let Some(torn) = report.torn_tail.as_ref().filter(|torn| torn.zeros_only) {
            tracing::info!(
                file = %torn.file.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                "recovery cut the zeros after the last frame (written ahead of the end, or never written)"
            );
        } else if let Some(torn) = &report.torn_tail {
            tracing::warn!(
                file = %torn.file.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                reason = %torn.reason,
                valid_frames_discarded = torn.valid_frames_discarded,
                "recovery cut a torn tail"
            );
        }
        Ok(Opened {
            segments,
            active_file: file,
            end,
            created_ms,
            index,
            checkpoint: new_checkpoint,
            report,
        })
    }

    /// After a clean shutdown: the active segment's index, if it matches the file exactly.
    fn trusted_active_summary(
        &self,
        active: &Segment,
        file_len: u64,
    ) -> Option<(Summary, IndexBuilder)> {
        let index = segment::read_index_file(self.storage, &active.index_path)?;
        if index.base_offset != active.base_offset || index.end_position != file_len {
            return None;
        }
        // Rebuild the builder's running state so later appends continue the same index.
        let last_position = index
            .entries
            .last()
            .map_or(SEGMENT_HEADER_LEN as u64, |e| u64::from(e.position));
        let mut builder = IndexBuilder::new(active.base_offset, self.config.index_interval_bytes);
        builder.entries = index.entries.clone();
        builder.timestamp_max_ms = index.timestamp_max_ms;
        builder.set_bytes_since_entry(file_len - last_position);
        let summary = Summary {
            end_offset: index.end_offset,
            end_position: index.end_position,
            timestamp_max_ms: index.timestamp_max_ms,
            entries: index.entries,
        };
        Some((summary, builder))
    }

    /// Scans the active segment, applying the recovery decision to its first invalid frame.
    fn scan_active(
        &self,
        active: &Segment,
        file: &dyn StorageFile,
        file_len: u64,
        checkpoint_position: Option<u64>,
        report: &mut RecoveryReport,
    ) -> Result<(Summary, IndexBuilder)> {
        let outcome = recovery::scan(
            file,
            &active.path,
            active.base_offset,
            file_len,
            self.config.index_interval_bytes,
        )?;
        report.segments_scanned += 1;
        report.bytes_scanned += file_len;
        let invalid_at = outcome.invalid.as_ref().map(|invalid| invalid.position);
        match recovery::decide(false, invalid_at, checkpoint_position) {
            Verdict::Clean => {}
            Verdict::Corrupt { position } => {
                let reason = outcome
                    .invalid
                    .map(|invalid| invalid.reason)
                    .unwrap_or_default();
                return Err(Error::corrupt(
                    &active.path,
                    position,
                    format!("invalid frame below the recovery checkpoint: {reason}"),
                ));
            }
            Verdict::Truncate { position } => {
                let valid_frames_discarded = recovery::count_frames_after(
                    file,
                    &active.path,
                    position,
                    file_len,
                    outcome.next_offset,
                )?;
                let zeros_only = valid_frames_discarded == 0
                    && all_zeros(file, position, file_len)
                        .map_err(|e| Error::io("read the torn tail of", &active.path, e))?;
                file.set_len(position)
                    .map_err(|e| Error::io("truncate torn tail of", &active.path, e))?;
                report.torn_tail = Some(TornTail {
                    file: active.path.clone(),
                    position,
                    bytes_cut: file_len - position,
                    reason: outcome
                        .invalid
                        .as_ref()
                        .map(|invalid| invalid.reason.clone())
                        .unwrap_or_default(),
                    valid_frames_discarded,
                    zeros_only,
                });
            }
        }
        if let Some(checkpoint_position) = checkpoint_position {
            if outcome.valid_end < checkpoint_position {
                return Err(Error::corrupt(
                    &active.path,
                    outcome.valid_end,
                    format!("the segment ends before the recovery checkpoint at byte {checkpoint_position}"),
                ));
            }
        }
        let summary = Summary {
            end_offset: outcome.next_offset,
            end_position: outcome.valid_end,
            timestamp_max_ms: outcome.index.timestamp_max_ms,
            entries: outcome.index.entries.clone(),
        };
        Ok((summary, outcome.index))
    }

    fn create(&self, mut report: RecoveryReport) -> Result<Opened> {
        let dir = self.dir;
        let now = self.clock.now_ms();
        let segment = Segment::new(dir, 0);
        let file = create_segment_file(self.storage, dir, &segment.path, 0, now)?;
        let checkpoint = Checkpoint {
            start_offset: 0,
            segment_base_offset: 0,
            position: SEGMENT_HEADER_LEN as u64,
            next_offset: 0,
        };
        let path = dir.join(CHECKPOINT_FILE);
        atomic::write_file(self.storage, &path, &checkpoint.encode(), true)?;
        self.storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        let segment = Arc::new(segment.with_file(file.clone()));
        segment.set_summary(Summary::empty(0));
        let mut segments = BTreeMap::new();
        segments.insert(0, segment);
        report.created = true;
        report.segments = 1;
        Ok(Opened {
            segments,
            active_file: file,
            end: EndPoint {
                next_offset: 0,
                segment_base: 0,
                position: SEGMENT_HEADER_LEN as u64,
            },
            created_ms: now,
            index: IndexBuilder::new(0, self.config.index_interval_bytes),
            checkpoint,
            report,
        })
    }

    fn read_checkpoint(&self) -> Result<Checkpoint> {
        let path = self.dir.join(CHECKPOINT_FILE);
        let file = self
            .storage
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file
            .len()
            .map_err(|e| Error::io("read length of", &path, e))?;
        if len != format::CHECKPOINT_LEN as u64 {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "checkpoint is {len} bytes, expected {}",
                    format::CHECKPOINT_LEN
                ),
            ));
        }
        let mut bytes = [0u8; format::CHECKPOINT_LEN];
        crate::storage::read_exact_at(&*file, &mut bytes, 0)
            .map_err(|e| Error::io("read", &path, e))?;
        Checkpoint::decode(&bytes).map_err(|e| Error::decode(&path, 0, e))
    }

    fn remove(&self, path: &Path, report: &mut RecoveryReport) -> Result<()> {
        self.storage
            .remove_file(path)
            .map_err(|e| Error::io("remove", path, e))?;
        report.files_removed.push(path.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
