//! Read-only inspection of a partition directory, for `weir verify`: what every segment, index
//! and the recovery checkpoint hold, and what recovery would do at the next open — without
//! opening the log, taking its lock or writing a byte.
//!
//! The same rules as recovery apply, from the same code: frames are scanned with
//! `recovery::scan`, the first invalid frame is judged with `recovery::decide`, and headers are
//! checked with `segment::check_header`. Where recovery checks only what it must at open (the
//! active segment and sealed segments rolled after the checkpoint), inspection checks every
//! segment and every index, as a full offline check should.
//!
//! Invariants: files are opened with [`OpenMode::Read`] only; nothing is created, truncated,
//! renamed or removed; lengths read from disk are capped before allocating.

use std::path::{Path, PathBuf};

use crate::format::{self, Checkpoint, IndexFile, CHECKPOINT_LEN, INDEX_FILE_LEN_MAX};
use crate::log::{CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE};
use crate::recovery::{self, Verdict};
use crate::segment::{self, parse_file_name, INDEX_SUFFIX, SEGMENT_SUFFIX, TMP_SUFFIX};
use crate::storage::{self, OpenMode, StdStorage, Storage, StorageFile};
use crate::{Error, LogConfig, Result};

/// How healthy a partition (or a whole data directory) is, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Nothing to do: the log opens as it is.
    Clean,
    /// Recovery fixes it at the next open without losing an acknowledged event: a torn tail,
    /// a missing, damaged or stale index (derived data), leftover files.
    Repairable,
    /// Acknowledged data is damaged: the log refuses to open until an operator acts.
    Corrupt,
}

/// Damage to acknowledged data: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The damaged file.
    pub file: PathBuf,
    /// The byte position of the first invalid byte or frame.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

/// A torn tail that recovery would cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTailFound {
    /// Where recovery would cut (the first invalid frame).
    pub position: u64,
    /// Bytes recovery would remove.
    pub bytes: u64,
    /// Why the frame at `position` is invalid.
    pub reason: String,
    /// Valid-looking frames after the invalid one that would be cut with it (writes that
    /// reached the disk out of order; none was acknowledged).
    pub valid_frames_after: u64,
}

/// The state of a segment's index file (derived data: any problem is rebuilt at open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexState {
    /// Present, intact, agrees with its segment.
    Intact,
    /// Not there.
    Missing,
    /// Unreadable or fails its checks.
    Damaged {
        /// Why.
        reason: String,
    },
    /// Intact but describes other contents than the segment holds (stale).
    Disagrees {
        /// How.
        reason: String,
    },
    /// Not checked, because the segment itself is corrupt.
    NotChecked,
}

impl IndexState {
    /// True if recovery would rebuild the index.
    pub fn needs_rebuild(&self) -> bool {
        !matches!(self, IndexState::Intact | IndexState::NotChecked)
    }
}

/// What one segment file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInspection {
    /// The segment file.
    pub path: PathBuf,
    /// Its base offset (from the file name).
    pub base_offset: u64,
    /// True for the last segment (the one appends go to).
    pub active: bool,
    /// The file's length in bytes.
    pub file_bytes: u64,
    /// Valid frames found.
    pub frames: u64,
    /// The position after the last valid frame.
    pub valid_end: u64,
    /// The offset after the last valid frame's events.
    pub next_offset: u64,
    /// The torn tail recovery would cut (active segment only).
    pub torn_tail: Option<TornTailFound>,
    /// Damage to acknowledged data in this segment.
    pub corruption: Option<Corruption>,
    /// The header of an empty active segment was torn while it was created; recovery rewrites
    /// it.
    pub header_rewritten: bool,
    /// The segment's index file.
    pub index: IndexState,
}

/// The recovery checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointState {
    /// No checkpoint file (a log that was never opened to the end, or an old one).
    Missing,
    /// An intact checkpoint.
    Valid(Checkpoint),
    /// A checkpoint that fails its checks (the log refuses to open).
    Damaged {
        /// Why.
        reason: String,
    },
}

/// Everything [`inspect`] found in one partition directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionInspection {
    /// The directory.
    pub dir: PathBuf,
    /// The recovery checkpoint.
    pub checkpoint: CheckpointState,
    /// True if the clean-shutdown marker is there (the last close was clean).
    pub clean_shutdown: bool,
    /// The segments recovery would keep, oldest first.
    pub segments: Vec<SegmentInspection>,
    /// Files recovery would remove: temporary files, orphan indexes, segments wholly below the
    /// start offset (left by an interrupted retention).
    pub leftovers: Vec<PathBuf>,
    /// Damage that belongs to no one segment (a damaged checkpoint, a missing segment).
    pub log_corruption: Vec<Corruption>,
    /// The first readable offset.
    pub start_offset: u64,
    /// The log's end offset after recovery (the end of the valid prefix).
    pub end_offset: u64,
}

impl PartitionInspection {
    /// The worst problem found.
    pub fn health(&self) -> Health {
        if self.first_corruption().is_some() {
            Health::Corrupt
        } else if !self.leftovers.is_empty()
            || self
                .segments
                .iter()
                .any(|s| s.torn_tail.is_some() || s.header_rewritten || s.index.needs_rebuild())
        {
            Health::Repairable
        } else {
            Health::Clean
        }
    }

    /// The first damage to acknowledged data, in log order (log-level damage first).
    pub fn first_corruption(&self) -> Option<&Corruption> {
        self.log_corruption
            .first()
            .or_else(|| self.segments.iter().find_map(|s| s.corruption.as_ref()))
    }

    /// What the next open would do, one sentence per action.
    pub fn recovery_actions(&self) -> Vec<String> {
        let mut actions = Vec::new();
        if let Some(corruption) = self.first_corruption() {
            actions.push(format!(
                "refuse to open: corruption in {} at byte {} ({})",
                corruption.file.display(),
                corruption.position,
                corruption.reason
            ));
            return actions;
        }
        for leftover in &self.leftovers {
            actions.push(format!("remove the leftover {}", leftover.display()));
        }
        for segment in &self.segments {
            if segment.header_rewritten {
                actions.push(format!(
                    "rewrite the torn header of the empty segment {}",
                    segment.path.display()
                ));
            }
            if let Some(torn) = &segment.torn_tail {
                let mut action = format!(
                    "cut the torn tail of {} at byte {} ({} bytes, never acknowledged: {})",
                    segment.path.display(),
                    torn.position,
                    torn.bytes,
                    torn.reason
                );
                if torn.valid_frames_after > 0 {
                    action.push_str(&format!(
                        "; {} valid-looking frames after it are cut with it",
                        torn.valid_frames_after
                    ));
                }
                actions.push(action);
            }
            if segment.index.needs_rebuild() {
                actions.push(format!(
                    "rebuild the index of {} ({})",
                    segment.path.display(),
                    index_problem(&segment.index)
                ));
            }
        }
        actions
    }
}

/// A few words on an index problem.
fn index_problem(state: &IndexState) -> String {
    match state {
        IndexState::Intact => "intact".into(),
        IndexState::Missing => "missing".into(),
        IndexState::Damaged { reason } => format!("damaged: {reason}"),
        IndexState::Disagrees { reason } => format!("stale: {reason}"),
        IndexState::NotChecked => "not checked".into(),
    }
}

/// Inspects the partition directory `dir` on the real file system, read-only.
///
/// # Errors
/// [`Error::Io`] if the directory or a file cannot be read. Damage is not an error: it is
/// reported in the [`PartitionInspection`].
pub fn inspect(dir: impl AsRef<Path>) -> Result<PartitionInspection> {
    inspect_with(dir.as_ref(), &StdStorage)
}

/// [`inspect`] through a [`Storage`] (tests use [`crate::sim::SimStorage`]).
///
/// # Errors
/// As [`inspect`].
pub fn inspect_with(dir: &Path, storage: &dyn Storage) -> Result<PartitionInspection> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut report = PartitionInspection {
        dir: dir.to_path_buf(),
        checkpoint: CheckpointState::Missing,
        clean_shutdown: false,
        segments: Vec::new(),
        leftovers: Vec::new(),
        log_corruption: Vec::new(),
        start_offset: 0,
        end_offset: 0,
    };
    let mut bases = Vec::new();
    let mut index_bases = Vec::new();
    let mut has_checkpoint = false;
    for name in &names {
        if let Some(base) = parse_file_name(name, SEGMENT_SUFFIX) {
            bases.push(base);
        } else if let Some(base) = parse_file_name(name, INDEX_SUFFIX) {
            index_bases.push(base);
        } else if name.ends_with(TMP_SUFFIX) {
            report.leftovers.push(dir.join(name));
        } else if name == CLEAN_SHUTDOWN_FILE {
            report.clean_shutdown = true;
        } else if name == CHECKPOINT_FILE {
            has_checkpoint = true;
        }
    }
    bases.sort_unstable();
    index_bases.sort_unstable();
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    if has_checkpoint {
        report.checkpoint = read_checkpoint(storage, &checkpoint_path)?;
    }
    let checkpoint = match &report.checkpoint {
        CheckpointState::Valid(checkpoint) => Some(*checkpoint),
        CheckpointState::Damaged { reason } => {
            report.log_corruption.push(Corruption {
                file: checkpoint_path.clone(),
                position: 0,
                reason: format!("damaged recovery checkpoint: {reason}"),
            });
            None
        }
        CheckpointState::Missing => None,
    };
    if bases.is_empty() {
        if let Some(checkpoint) = checkpoint {
            report.log_corruption.push(Corruption {
                file: checkpoint_path,
                position: 0,
                reason: format!(
                    "the checkpoint names segment {} but the directory holds no segment",
                    checkpoint.segment_base_offset
                ),
            });
        }
        // Otherwise an empty directory: the next open creates the log.
        return Ok(report);
    }
    let start_offset = checkpoint.map_or(bases[0], |c| c.start_offset);
    report.start_offset = start_offset;
    if start_offset < bases[0] {
        report.log_corruption.push(Corruption {
            file: dir.join(segment::segment_file_name(bases[0])),
            position: 0,
            reason: format!(
                "the log starts at offset {start_offset} but its first segment starts at {}",
                bases[0]
            ),
        });
    }
    if let Some(checkpoint) = checkpoint {
        if bases
            .binary_search(&checkpoint.segment_base_offset)
            .is_err()
        {
            report.log_corruption.push(Corruption {
                file: dir.join(segment::segment_file_name(checkpoint.segment_base_offset)),
                position: 0,
                reason: "the segment named by the recovery checkpoint is missing".into(),
            });
        }
    }
    while bases.len() > 1 && bases[1] <= start_offset {
        let base = bases.remove(0);
        report
            .leftovers
            .push(dir.join(segment::segment_file_name(base)));
    }
    for base in index_bases {
        if bases.binary_search(&base).is_err() {
            report
                .leftovers
                .push(dir.join(segment::index_file_name(base)));
        }
    }
    let interval = LogConfig::default().index_interval_bytes;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let checkpoint_position = checkpoint
            .filter(|c| c.segment_base_offset == base)
            .map(|c| c.position);
        let segment =
            inspect_segment(storage, dir, base, next_base, checkpoint_position, interval)?;
        report.segments.push(segment);
    }
    report.end_offset = report
        .segments
        .last()
        .map_or(start_offset, |s| s.next_offset);
    Ok(report)
}

fn read_checkpoint(storage: &dyn Storage, path: &Path) -> Result<CheckpointState> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("read length of", path, e))?;
    if len != CHECKPOINT_LEN as u64 {
        return Ok(CheckpointState::Damaged {
            reason: format!("it is {len} bytes, expected {CHECKPOINT_LEN}"),
        });
    }
    let mut bytes = [0u8; CHECKPOINT_LEN];
    storage::read_exact_at(&*file, &mut bytes, 0).map_err(|e| Error::io("read", path, e))?;
    Ok(match Checkpoint::decode(&bytes) {
        Ok(checkpoint) => CheckpointState::Valid(checkpoint),
        Err(error) => CheckpointState::Damaged {
            reason: error.to_string(),
        },
    })
}

/// Inspects one segment; `next_base` is the next segment's base offset (`None` for the active
/// segment) and `checkpoint_position` the checkpoint's position if it lies in this segment.
fn inspect_segment(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    next_base: Option<u64>,
    checkpoint_position: Option<u64>,
    index_interval_bytes: u32,
) -> Result<SegmentInspection> {
    let path = dir.join(segment::segment_file_name(base));
    let sealed = next_base.is_some();
    let file = storage
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io("open segment", &path, e))?;
    let file_bytes = file
        .len()
        .map_err(|e| Error::io("read length of segment", &path, e))?;
    let mut inspection = SegmentInspection {
        path: path.clone(),
        base_offset: base,
        active: !sealed,
        file_bytes,
        frames: 0,
        valid_end: 0,
        next_offset: base,
        torn_tail: None,
        corruption: None,
        header_rewritten: false,
        index: IndexState::NotChecked,
    };
    let header_len = format::SEGMENT_HEADER_LEN as u64;
    if let Err(error) = segment::check_header(&*file, &path, base, file_bytes) {
        if !sealed && file_bytes <= header_len && checkpoint_position.is_none() {
            // As at open: an empty segment whose header never reached the disk whole.
            inspection.header_rewritten = true;
            inspection.valid_end = header_len;
            inspection.index = index_state(storage, dir, base, base, header_len, &*file, &path)?;
            return Ok(inspection);
        }
        inspection.corruption = Some(corruption_of(error, &path));
        return Ok(inspection);
    }
    let outcome = recovery::scan(&*file, &path, base, file_bytes, index_interval_bytes)?;
    inspection.valid_end = outcome.valid_end;
    inspection.next_offset = outcome.next_offset;
    inspection.frames = count_frames(&*file, &path, outcome.valid_end)?;
    let invalid_at = outcome.invalid.as_ref().map(|invalid| invalid.position);
    let reason = outcome
        .invalid
        .as_ref()
        .map(|invalid| invalid.reason.clone())
        .unwrap_or_default();
    match recovery::decide(sealed, invalid_at, checkpoint_position) {
        Verdict::Clean => {}
        Verdict::Corrupt { position } => {
            let reason = if sealed {
                format!("invalid frame in a sealed segment: {reason}")
            } else {
                format!("invalid frame below the recovery checkpoint: {reason}")
            };
            inspection.corruption = Some(Corruption {
                file: path.clone(),
                position,
                reason,
            });
            return Ok(inspection);
        }
        Verdict::Truncate { position } => {
            let valid_frames_after = recovery::count_frames_after(
                &*file,
                &path,
                position,
                file_bytes,
                outcome.next_offset,
            )?;
            inspection.torn_tail = Some(TornTailFound {
                position,
                bytes: file_bytes - position,
                reason,
                valid_frames_after,
            });
        }
    }
    if let Some(checkpoint_position) = checkpoint_position {
        if outcome.valid_end < checkpoint_position {
            inspection.torn_tail = None;
            inspection.corruption = Some(Corruption {
                file: path.clone(),
                position: outcome.valid_end,
                reason: format!(
                    "the segment ends before the recovery checkpoint at byte {checkpoint_position}"
                ),
            });
            return Ok(inspection);
        }
    }
    if let Some(next_base) = next_base {
        if outcome.next_offset != next_base {
            inspection.corruption = Some(Corruption {
                file: path.clone(),
                position: outcome.valid_end,
                reason: format!(
                    "sealed segment ends at offset {} but the next segment starts at {next_base}",
                    outcome.next_offset
                ),
            });
            return Ok(inspection);
        }
    }
    inspection.index = index_state(
        storage,
        dir,
        base,
        outcome.next_offset,
        outcome.valid_end,
        &*file,
        &path,
    )?;
    Ok(inspection)
}

/// A log error met while checking, as a corruption finding (position 0 unless it names one).
fn corruption_of(error: Error, path: &Path) -> Corruption {
    match error {
        Error::Corrupt {
            file,
            position,
            reason,
        } => Corruption {
            file,
            position,
            reason,
        },
        other => Corruption {
            file: path.to_path_buf(),
            position: 0,
            reason: other.to_string(),
        },
    }
}

/// Counts the valid frames before `valid_end` (the scan validated them; this only walks their
/// lengths).
fn count_frames(file: &dyn StorageFile, path: &Path, valid_end: u64) -> Result<u64> {
    let mut position = format::SEGMENT_HEADER_LEN as u64;
    let mut frames = 0;
    let mut length = [0u8; 8];
    while position < valid_end {
        storage::read_exact_at(file, &mut length, position)
            .map_err(|e| Error::io("read segment", path, e))?;
        match format::peek_frame_len(&length) {
            Ok(Some(len)) if len > 0 => position += u64::from(len),
            _ => break,
        }
        frames += 1;
    }
    Ok(frames)
}

/// Checks the index file of the segment `base` against what the scan found: the segment's
/// end offset and position, and every entry pointing at a frame that starts with its offset.
fn index_state(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    end_offset: u64,
    end_position: u64,
    segment_file: &dyn StorageFile,
    segment_path: &Path,
) -> Result<IndexState> {
    let path = dir.join(segment::index_file_name(base));
    let file = match storage.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(IndexState::Missing)
        }
        Err(error) => return Err(Error::io("open index", &path, error)),
    };
    let len = file
        .len()
        .map_err(|e| Error::io("read length of index", &path, e))?;
    if len > INDEX_FILE_LEN_MAX {
        return Ok(IndexState::Damaged {
            reason: format!("{len} bytes, over the limit of {INDEX_FILE_LEN_MAX}"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    storage::read_exact_at(&*file, &mut bytes, 0).map_err(|e| Error::io("read", &path, e))?;
    let index = match IndexFile::decode(&bytes) {
        Ok(index) => index,
        Err(error) => {
            return Ok(IndexState::Damaged {
                reason: error.to_string(),
            })
        }
    };
    if index.base_offset != base || index.end_offset != end_offset {
        return Ok(IndexState::Disagrees {
            reason: format!(
                "it covers offsets {}..{}, the segment holds {base}..{end_offset}",
                index.base_offset, index.end_offset
            ),
        });
    }
    if index.end_position != end_position {
        return Ok(IndexState::Disagrees {
            reason: format!(
                "it says the segment ends at byte {}, the valid data ends at byte {end_position}",
                index.end_position
            ),
        });
    }
    for entry in &index.entries {
        let position = u64::from(entry.position);
        let expected = base + u64::from(entry.relative_offset);
        if frame_base_offset(segment_file, segment_path, position, end_position)? != Some(expected)
        {
            return Ok(IndexState::Disagrees {
                reason: format!(
                    "its entry for offset {expected} points at byte {position}, where no frame \
                     starts with that offset"
                ),
            });
        }
    }
    Ok(IndexState::Intact)
}

/// The base offset of the valid frame at `position`, if one starts there and ends by
/// `end_position`.
fn frame_base_offset(
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    end_position: u64,
) -> Result<Option<u64>> {
    let mut length = [0u8; 8];
    if position + 8 > end_position {
        return Ok(None);
    }
    storage::read_exact_at(file, &mut length, position)
        .map_err(|e| Error::io("read segment", path, e))?;
    let frame_len = match format::peek_frame_len(&length) {
        Ok(Some(len)) if position + u64::from(len) <= end_position => len,
        _ => return Ok(None),
    };
    let mut frame = vec![0u8; frame_len as usize];
    storage::read_exact_at(file, &mut frame, position)
        .map_err(|e| Error::io("read segment", path, e))?;
    Ok(format::check_frame(&frame)
        .ok()
        .map(|header| header.base_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppendEvent, Log};

    fn log_with_segments(dir: &Path) {
        let config = LogConfig {
            segment_bytes_max: crate::SEGMENT_BYTES_MIN,
            ..LogConfig::default()
        };
        let log = Log::open(dir, config).expect("open");
        let value = [7u8; 500];
        for _ in 0..30 {
            log.append(&[AppendEvent::value(&value)]).expect("append");
        }
        log.close().expect("close");
    }

    #[test]
    fn a_cleanly_closed_log_is_clean() {
        let dir = tempfile::tempdir().expect("temp dir");
        log_with_segments(dir.path());
        let report = inspect(dir.path()).expect("inspect");
        assert!(report.segments.len() > 1, "{report:?}");
        assert_eq!(report.health(), Health::Clean, "{report:?}");
        assert_eq!(report.end_offset, 30);
        assert_eq!(report.segments.iter().map(|s| s.frames).sum::<u64>(), 30);
        assert!(report.recovery_actions().is_empty());
    }

    #[test]
    fn a_flipped_byte_in_a_sealed_segment_is_corruption_and_nothing_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        log_with_segments(dir.path());
        let first = dir.path().join(segment::segment_file_name(0));
        let mut bytes = std::fs::read(&first).expect("read");
        bytes[200] ^= 0xff;
        std::fs::write(&first, &bytes).expect("write");
        let report = inspect(dir.path()).expect("inspect");
        assert_eq!(report.health(), Health::Corrupt);
        let corruption = report.first_corruption().expect("corruption");
        assert_eq!(corruption.file, first);
        assert_eq!(std::fs::read(&first).expect("read"), bytes);
    }

    #[test]
    fn a_torn_tail_and_a_missing_index_are_repairable() {
        let dir = tempfile::tempdir().expect("temp dir");
        log_with_segments(dir.path());
        let report = inspect(dir.path()).expect("inspect");
        let active = report.segments.last().expect("segments").path.clone();
        let len = std::fs::metadata(&active).expect("stat").len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&active)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[1, 2, 3, 0, 0]))
            .expect("append garbage");
        std::fs::remove_file(dir.path().join(CLEAN_SHUTDOWN_FILE)).expect("marker");
        std::fs::remove_file(dir.path().join(segment::index_file_name(0))).expect("index");
        let report = inspect(dir.path()).expect("inspect");
        assert_eq!(report.health(), Health::Repairable, "{report:?}");
        let torn = report.segments.last().and_then(|s| s.torn_tail.clone());
        assert_eq!(torn.map(|t| (t.position, t.bytes)), Some((len, 5)));
        assert_eq!(report.segments[0].index, IndexState::Missing);
        assert_eq!(
            report.recovery_actions().len(),
            2,
            "{:?}",
            report.recovery_actions()
        );
    }
}
