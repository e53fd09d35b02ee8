//! [`Log`]: one partition's log — the handle, its shared state and its lifecycle (open,
//! close, sizes). The work is split by noun: `append.rs` (the writer: offsets, framing,
//! rolling), `commit.rs` (group commit and visibility), `checkpoint.rs` (the recovery
//! checkpoint), `reader.rs` (reads, time lookups, waits, verification), `retention.rs`, and
//! `open.rs` (recovery at open).
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
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::task::Waker;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::commit::SyncState;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::format::Checkpoint;
use crate::open::{OpenOptions, Opened, Opener, RecoveryReport};
use crate::scan::IndexBuilder;
use crate::segment::{self, lock, read, Segment};
use crate::storage::{OpenMode, StdStorage, Storage, StorageFile, StorageLock};

/// File name of the recovery checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// File name of the clean-shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// File name of the lock file.
pub const LOCK_FILE: &str = "lock";

/// A point in the log: the next offset and where it would be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndPoint {
    pub(crate) next_offset: u64,
    pub(crate) segment_base: u64,
    pub(crate) position: u64,
}

impl EndPoint {
    /// True if `self` is later in the log than `other`.
    pub(crate) fn is_after(&self, other: &EndPoint) -> bool {
        (self.next_offset, self.segment_base, self.position)
            > (other.next_offset, other.segment_base, other.position)
    }
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

pub(crate) struct Writer {
    pub(crate) active: Arc<Segment>,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) end: EndPoint,
    /// How far the active file is known to hold zeros written ahead of `end` (a hint: a wrong
    /// value costs speed, never data — sealing and closing cut the file by its real length).
    pub(crate) allocated_end: u64,
    pub(crate) created_ms: u64,
    /// The active segment's format version: frames written to a version 1 segment record no
    /// attributes, so that a build that reads only version 1 can still read it.
    pub(crate) active_version: u32,
    pub(crate) index: IndexBuilder,
    pub(crate) buffer: Vec<u8>,
    pub(crate) timestamps: Vec<u64>,
    pub(crate) closed: bool,
    /// The close fsynced everything written (see [`Log::sync_segment`]).
    pub(crate) synced_at_close: bool,
    /// The offset after the last frame handed to an outside journal (see
    /// [`Log::append_start_with`]).
    pub(crate) journaled_end: u64,
}

pub(crate) struct Visible {
    pub(crate) end: EndPoint,
    pub(crate) start_offset: u64,
    pub(crate) closed: bool,
    pub(crate) wakers: Vec<Waker>,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lock_file: Mutex<Option<Box<dyn StorageLock>>>,
    pub(crate) writer: Mutex<Writer>,
    /// Held through every fsync of a segment file and the poisoning that follows a failed one
    /// (see [`Log::fsync_segment`]).
    pub(crate) fsync: Mutex<()>,
    pub(crate) sync: Mutex<SyncState>,
    /// `sync.durable.next_offset`, readable without the lock: a woken waiter checks it and
    /// returns without contending for `sync` (64 appenders re-taking one lock after every
    /// fsync cost more than the fsync did).
    pub(crate) durable_next_offset: AtomicU64,
    /// `sync.fsynced.next_offset`: how far the segment files are fsynced, which every frame
    /// records when it is written (evidence for recovery, see `docs/durability.md`).
    pub(crate) fsynced_next_offset: AtomicU64,
    pub(crate) visible: Mutex<Visible>,
    pub(crate) visible_changed: Condvar,
    pub(crate) segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    pub(crate) checkpoint: Mutex<Checkpoint>,
    pub(crate) maintenance: Mutex<()>,
    pub(crate) poison: OnceLock<Arc<Error>>,
    /// Acknowledged data is damaged (found at open or by a read): no more writes.
    pub(crate) damage: OnceLock<Arc<Error>>,
    /// Opened read-only because of damage: nothing is ever written, not even at close.
    pub(crate) read_only: bool,
    pub(crate) report: RecoveryReport,
    pub(crate) sync_observer: OnceLock<SyncObserver>,
}

/// Called after every fsync of appended data with how long it took (for metrics).
pub type SyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// One partition's durable, segmented, append-only log. `Send + Sync`: share it with `Arc`.
///
/// See the crate docs for an example.
pub struct Log {
    pub(crate) inner: Inner,
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
        Log::open_with_options(dir, config, storage, clock, &OpenOptions::default())
    }

    /// Opens the log with what outside witnesses know of it and what to do about damage (see
    /// [`OpenOptions`]); weir-store opens its partitions so.
    ///
    /// # Errors
    /// As [`Log::open`]; with [`crate::OnDamage::ReadOnly`], damage opens the log read-only instead
    /// of failing (see [`Log::damage`]).
    pub fn open_with_options(
        dir: impl AsRef<Path>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        options: &OpenOptions,
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
            options,
        }
        .open()?;
        let Opened {
            segments,
            active_file,
            end,
            created_ms,
            active_version,
            index,
            checkpoint,
            report,
        } = opened;
        let damage = OnceLock::new();
        if let Some(first) = report.damage.first() {
            let _ = damage.set(Arc::new(Error::Corrupt {
                file: first.file.clone(),
                position: first.position,
                reason: first.reason.clone(),
            }));
        }
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
            damaged = !report.damage.is_empty(),
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
                    active_version,
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
                fsynced_next_offset: AtomicU64::new(end.next_offset),
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
                read_only: !report.damage.is_empty(),
                damage,
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
    /// [`crate::SyncPolicy::Always`]).
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

    /// The error that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.poison.get().cloned()
    }

    /// The damage to acknowledged data this log found (at open, or when a read reached it), if
    /// any: the log serves reads below it and refuses appends ([`Error::Damaged`]) until `weir
    /// repair` mends it.
    pub fn damage(&self) -> Option<Arc<Error>> {
        self.inner.damage.get().cloned()
    }

    /// Records damage a read found (the first one found wins) and stops writes.
    pub(crate) fn note_damage(&self, error: &Error) {
        if !error.is_corruption() {
            return;
        }
        let shared = Arc::new(Error::Corrupt {
            file: match error {
                Error::Corrupt { file, .. } => file.clone(),
                _ => self.inner.dir.clone(),
            },
            position: match error {
                Error::Corrupt { position, .. } => *position,
                _ => 0,
            },
            reason: match error {
                Error::Corrupt { reason, .. } => reason.clone(),
                other => other.to_string(),
            },
        });
        if self.inner.damage.set(shared).is_ok() {
            tracing::error!(dir = %self.inner.dir.display(), %error, "a read found damage to acknowledged data: this partition takes no more writes until `weir repair` mends it");
            // Readers waiting for new events learn that none will come.
            let wakers = std::mem::take(&mut lock(&self.inner.visible).wakers);
            self.inner.visible_changed.notify_all();
            for waker in wakers {
                waker.wake();
            }
        }
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
            bytes += match self.sealed_info(segment, *next_base) {
                Ok(info) => info.end_position,
                Err(error) if error.is_corruption() => {
                    // A damaged sealed segment still has a size.
                    self.note_damage(&error);
                    segment
                        .file(&*self.inner.storage)?
                        .len()
                        .map_err(|e| Error::io("read length of segment", &segment.path, e))?
                }
                Err(error) => return Err(error),
            };
        }
        Ok(LogStats {
            start_offset: start,
            end_offset: end.next_offset,
            bytes,
            segments: sealed.len() + 1,
        })
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
        if inner.read_only {
            // Opened read-only because of damage: nothing was written, nothing is.
            writer.synced_at_close = true;
            return Ok(());
        }
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
        if inner.damage.get().is_some() {
            // A read found damage: no clean-shutdown marker, so that the next open reads the
            // active segment whole again (and finds damage there, if it is there).
            return Ok(());
        }
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

    pub(crate) fn visible_range(&self) -> Result<(u64, EndPoint)> {
        let visible = lock(&self.inner.visible);
        if visible.closed {
            return Err(Error::Closed);
        }
        Ok((visible.start_offset, visible.end))
    }

    /// The segment holding `offset` and the base offset of the one after it.
    pub(crate) fn segment_for(&self, offset: u64) -> (Option<Arc<Segment>>, Option<u64>) {
        let map = read(&self.inner.segments);
        let segment = map
            .range(..=offset)
            .next_back()
            .map(|(_, segment)| segment.clone());
        let next = map.range(offset + 1..).next().map(|(base, _)| *base);
        (segment, next)
    }

    /// Sealed segments, oldest first, with the base offset of their successor.
    pub(crate) fn sealed_segments(&self) -> Vec<(Arc<Segment>, u64)> {
        let map = read(&self.inner.segments);
        let segments: Vec<&Arc<Segment>> = map.values().collect();
        segments
            .windows(2)
            .map(|pair| (pair[0].clone(), pair[1].base_offset))
            .collect()
    }

    pub(crate) fn sealed_info(
        &self,
        segment: &Segment,
        next_base: u64,
    ) -> Result<segment::SummaryInfo> {
        segment.sealed_info(
            &*self.inner.storage,
            next_base,
            self.inner.config.index_interval_bytes,
        )
    }

    /// A segment file vanished under a reader: if retention moved the start past `offset`,
    /// say so; otherwise it is the I/O error it is.
    pub(crate) fn out_of_range_or(&self, error: Error, offset: u64) -> Error {
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
