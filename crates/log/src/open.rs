//! Recovery at open (`docs/durability.md`, "Recovery"): what [`crate::Log::open`] does to a
//! directory before the log takes writes — leftovers removed, the checkpoint read, sealed
//! segments rolled after it checked, the active segment scanned and the recovery decision
//! applied to its first invalid frame — and the report of what it did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::append::create_segment_file;
use crate::atomic;
use crate::clock::Clock;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::format::{self, Checkpoint, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::log::{EndPoint, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE};
use crate::recovery::{self, IndexBuilder, Verdict};
use crate::segment::{
    self, parse_file_name, Segment, Summary, INDEX_SUFFIX, SEGMENT_SUFFIX, TMP_SUFFIX,
};
use crate::storage::{OpenMode, Storage, StorageFile};

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

pub(crate) struct Opened {
    pub(crate) segments: BTreeMap<u64, Arc<Segment>>,
    pub(crate) active_file: Arc<dyn StorageFile>,
    pub(crate) end: EndPoint,
    pub(crate) created_ms: u64,
    pub(crate) index: IndexBuilder,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) report: RecoveryReport,
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

/// Recovery at open (see `docs/durability.md`).
pub(crate) struct Opener<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) config: &'a LogConfig,
    pub(crate) storage: &'a dyn Storage,
    pub(crate) clock: &'a dyn Clock,
}

impl Opener<'_> {
    pub(crate) fn open(&self) -> Result<Opened> {
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
