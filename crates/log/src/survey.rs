//! The survey: what a partition directory holds, read without changing a byte — the facts that
//! the recovery decision ([`crate::recovery::decide`]) judges. Open, `weir verify` and `weir
//! repair` all start here, so they judge the same facts the same way.
//!
//! A survey reads as much as its [`Depth`] asks:
//! - [`Depth::Open`] reads what an open must read to decide: every segment's header, every
//!   sealed segment rolled after the recovery checkpoint's segment (all of them without a
//!   checkpoint), and the active segment — all of it, or, after a clean shutdown whose index
//!   agrees with the file, only the frames after the index's last entry (every read of a new
//!   event starts at or after that entry, so no read crosses bytes that were not checked);
//! - [`Depth::Full`] reads every frame of every segment and checks every index file, and after
//!   an invalid frame looks for where valid frames resume, so that repair knows what is lost.
//!
//! Invariants: files are opened with [`OpenMode::Read`] only; nothing is created, truncated,
//! renamed or removed; every length read from disk is capped before it is used to allocate.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{
    self, Checkpoint, IndexFile, CHECKPOINT_LEN, INDEX_FILE_LEN_MAX, SEGMENT_HEADER_LEN,
};
use crate::log::{CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE};
use crate::scan::{self, IndexBuilder};
use crate::segment::{self, parse_file_name, INDEX_SUFFIX, SEGMENT_SUFFIX, TMP_SUFFIX};
use crate::storage::{self, OpenMode, Storage, StorageFile};

/// How much of a directory a survey reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// What an open reads (see the module docs).
    Open,
    /// Everything: every frame, every index.
    Full,
}

/// The recovery checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointState {
    /// No checkpoint file (a log that was never opened to the end, or an old one).
    Missing,
    /// An intact checkpoint.
    Valid(Checkpoint),
    /// A checkpoint that fails its checks.
    Damaged {
        /// Why.
        reason: String,
    },
}

/// A segment's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderState {
    /// Intact, and names the base offset of the file name.
    Valid {
        /// The segment format version.
        version: u32,
        /// When the segment was created (ms since the Unix epoch).
        created_ms: u64,
    },
    /// Damaged, short, or naming another base offset.
    Damaged {
        /// Why.
        reason: String,
    },
    /// Not read: an open survey does not read the sealed segments before the checkpoint's
    /// (their headers are checked when a read first opens them).
    NotChecked,
}

/// The state of a segment's index file (derived data).
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
    /// Not checked (an open survey, or a segment that is itself damaged).
    NotChecked,
}

impl IndexState {
    /// True if the index would have to be rebuilt.
    pub fn needs_rebuild(&self) -> bool {
        !matches!(self, IndexState::Intact | IndexState::NotChecked)
    }
}

/// Where valid frames begin again after an invalid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// The byte position of the first valid frame after the invalid one.
    pub position: u64,
    /// Its first offset: the events between the invalid frame's first offset and this one are
    /// the ones the damage holds.
    pub offset: u64,
}

/// The first invalid frame of a run of frames, and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFrame {
    /// Its byte position.
    pub position: u64,
    /// The offset the frame should start with (the end of the valid frames before it).
    pub offset: u64,
    /// Why it is invalid.
    pub reason: String,
    /// Where valid frames resume (the first valid frame after it whose offsets can follow).
    pub resumed: Option<Resumed>,
    /// Valid-looking frames after it (up to a bounded search), counting from `resumed`.
    pub frames_after: u64,
    /// The largest durable offset recorded by the frames after it: when one of them was
    /// written, the segment was fsynced up to there (evidence that the invalid frame had been
    /// made durable if it is past `offset`).
    pub durable_offset_after: Option<u64>,
    /// Every byte from `position` to the end of the file is zero.
    pub zeros_only: bool,
}

/// What a scan of a segment's frames found.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// Where the scan began (the first frame, or the tail after a trusted index's last entry).
    pub from_position: u64,
    /// Valid frames read from `from_position` up to the first invalid one.
    pub frames: u64,
    /// The position after the last valid frame of the prefix.
    pub valid_end: u64,
    /// The offset after the last valid frame of the prefix.
    pub next_offset: u64,
    /// Invalid runs, in file order (at most one in an open survey: the scan stops there).
    pub invalid: Vec<InvalidFrame>,
    /// Full surveys only: after the last invalid run, where valid frames resumed up to the end
    /// of the file: (valid end position, next offset).
    pub end_after_resume: Option<(u64, u64)>,
    /// The index of the valid prefix (for open to reuse).
    pub(crate) index: IndexBuilder,
}

impl SegmentScan {
    /// The first invalid frame, if any.
    pub fn first_invalid(&self) -> Option<&InvalidFrame> {
        self.invalid.first()
    }
}

/// What a survey found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentSurvey {
    /// The segment file.
    pub path: PathBuf,
    /// Its base offset (from the file name).
    pub base_offset: u64,
    /// The file's length in bytes (0 if the survey did not read the segment).
    pub file_bytes: u64,
    /// Its header.
    pub header: HeaderState,
    /// Its frames, if this survey read them.
    pub scan: Option<SegmentScan>,
    /// Its index file (checked by full surveys; the active segment's by open surveys after a
    /// clean shutdown).
    pub index: IndexState,
    /// The index file, when it was read and trusted (the active segment after a clean
    /// shutdown).
    pub(crate) trusted_index: Option<IndexFile>,
}

/// Everything a survey found in one partition directory.
#[derive(Debug, Clone)]
pub struct Survey {
    /// The directory.
    pub dir: PathBuf,
    /// How much was read.
    pub depth: Depth,
    /// The recovery checkpoint.
    pub checkpoint: CheckpointState,
    /// The clean-shutdown marker is there (the last close was clean).
    pub clean_shutdown: bool,
    /// Every segment file, oldest first.
    pub segments: Vec<SegmentSurvey>,
    /// Temporary files (an atomic replacement a crash interrupted).
    pub temporary_files: Vec<PathBuf>,
    /// Index files without a segment.
    pub orphan_indexes: Vec<PathBuf>,
}

impl Survey {
    /// The checkpoint, if intact.
    pub fn valid_checkpoint(&self) -> Option<Checkpoint> {
        match self.checkpoint {
            CheckpointState::Valid(checkpoint) => Some(checkpoint),
            _ => None,
        }
    }
}

/// Surveys the partition directory `dir` (see the module docs). An empty or missing directory
/// surveys as no segments.
///
/// # Errors
/// [`Error::Io`] if a file cannot be read. Damage is not an error: it is in the survey.
pub fn survey(storage: &dyn Storage, dir: &Path, depth: Depth) -> Result<Survey> {
    let names = match storage.list_dir(dir) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(Error::io("list directory", dir, error)),
    };
    let mut found = Survey {
        dir: dir.to_path_buf(),
        depth,
        checkpoint: CheckpointState::Missing,
        clean_shutdown: false,
        segments: Vec::new(),
        temporary_files: Vec::new(),
        orphan_indexes: Vec::new(),
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
            found.temporary_files.push(dir.join(name));
        } else if name == CLEAN_SHUTDOWN_FILE {
            found.clean_shutdown = true;
        } else if name == CHECKPOINT_FILE {
            has_checkpoint = true;
        }
    }
    bases.sort_unstable();
    index_bases.sort_unstable();
    found.temporary_files.sort();
    for base in index_bases {
        if bases.binary_search(&base).is_err() {
            found
                .orphan_indexes
                .push(dir.join(segment::index_file_name(base)));
        }
    }
    if has_checkpoint {
        found.checkpoint = read_checkpoint(storage, &dir.join(CHECKPOINT_FILE))?;
    }
    let checkpoint = found.valid_checkpoint();
    let interval = crate::LogConfig::default().index_interval_bytes;
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let active = next_base.is_none();
        // An open reads the sealed segments rolled after the checkpoint's segment (without an
        // intact checkpoint, every one: nothing says they were ever fsynced in full).
        let after_checkpoint = checkpoint.is_none_or(|c| base > c.segment_base_offset);
        let read_frames = depth == Depth::Full || active || after_checkpoint;
        let trust_index = depth == Depth::Open && active && found.clean_shutdown;
        found.segments.push(survey_segment(
            storage,
            dir,
            base,
            SegmentReading {
                read_frames,
                trust_index,
                check_index: depth == Depth::Full,
                resume_after_damage: depth == Depth::Full,
                next_base,
                index_interval_bytes: interval,
            },
        )?);
    }
    Ok(found)
}

/// What to read of one segment.
struct SegmentReading {
    read_frames: bool,
    trust_index: bool,
    check_index: bool,
    resume_after_damage: bool,
    next_base: Option<u64>,
    index_interval_bytes: u32,
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

fn survey_segment(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    reading: SegmentReading,
) -> Result<SegmentSurvey> {
    let path = dir.join(segment::segment_file_name(base));
    let index_path = dir.join(segment::index_file_name(base));
    if !reading.read_frames {
        return Ok(SegmentSurvey {
            path,
            base_offset: base,
            file_bytes: 0,
            header: HeaderState::NotChecked,
            scan: None,
            index: IndexState::NotChecked,
            trusted_index: None,
        });
    }
    let file = storage
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io("open segment", &path, e))?;
    let file_bytes = file
        .len()
        .map_err(|e| Error::io("read length of segment", &path, e))?;
    let header = match segment::check_header(&*file, &path, base, file_bytes) {
        Ok(header) => HeaderState::Valid {
            version: header.version,
            created_ms: header.created_ms,
        },
        Err(Error::Corrupt { reason, .. }) => HeaderState::Damaged { reason },
        Err(other) => return Err(other),
    };
    let mut found = SegmentSurvey {
        path: path.clone(),
        base_offset: base,
        file_bytes,
        header,
        scan: None,
        index: IndexState::NotChecked,
        trusted_index: None,
    };
    let mut start = scan::ScanStart::first_frame(base, reading.index_interval_bytes);
    if reading.trust_index {
        if let Some(index) = segment::read_index_file(storage, &index_path)
            .filter(|index| index.base_offset == base && index.end_position == file_bytes)
        {
            start = scan::ScanStart::after_index(&index, reading.index_interval_bytes);
            found.index = IndexState::Intact;
            found.trusted_index = Some(index);
        }
    }
    if file_bytes <= SEGMENT_HEADER_LEN as u64 {
        // A segment of a header (or less) has no frames to scan.
        found.scan = Some(SegmentScan {
            from_position: SEGMENT_HEADER_LEN as u64,
            frames: 0,
            valid_end: SEGMENT_HEADER_LEN as u64,
            next_offset: base,
            invalid: Vec::new(),
            end_after_resume: None,
            index: IndexBuilder::new(base, reading.index_interval_bytes),
        });
        if found
            .trusted_index
            .as_ref()
            .is_some_and(|index| index.end_offset != base)
        {
            found.trusted_index = None;
            found.index = IndexState::NotChecked;
        }
        return Ok(found);
    }
    let scan = scan::scan_segment(
        &*file,
        &path,
        start,
        file_bytes,
        reading.resume_after_damage,
    )?;
    if let Some(index) = &found.trusted_index {
        // The tail after the index's last entry must end where the index says.
        let agrees = scan.invalid.is_empty()
            && scan.valid_end == index.end_position
            && scan.next_offset == index.end_offset;
        if !agrees {
            found.trusted_index = None;
            found.index = IndexState::NotChecked;
            let start = scan::ScanStart::first_frame(base, reading.index_interval_bytes);
            found.scan = Some(scan::scan_segment(
                &*file,
                &path,
                start,
                file_bytes,
                reading.resume_after_damage,
            )?);
            return Ok(found);
        }
    }
    if reading.check_index && scan.invalid.is_empty() {
        let end_offset_expected = reading.next_base.unwrap_or(scan.next_offset);
        found.index = index_state(
            storage,
            &index_path,
            base,
            end_offset_expected,
            scan.valid_end,
            &*file,
            &path,
        )?;
    }
    found.scan = Some(scan);
    Ok(found)
}

/// Checks the index file at `path` against what the scan found: the segment's end offset and
/// position, and every entry pointing at a frame that starts with its offset.
fn index_state(
    storage: &dyn Storage,
    path: &Path,
    base: u64,
    end_offset: u64,
    end_position: u64,
    segment_file: &dyn StorageFile,
    segment_path: &Path,
) -> Result<IndexState> {
    let file = match storage.open(path, OpenMode::Read) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(IndexState::Missing)
        }
        Err(error) => return Err(Error::io("open index", path, error)),
    };
    let len = file
        .len()
        .map_err(|e| Error::io("read length of index", path, e))?;
    if len > INDEX_FILE_LEN_MAX {
        return Ok(IndexState::Damaged {
            reason: format!("{len} bytes, over the limit of {INDEX_FILE_LEN_MAX}"),
        });
    }
    let mut bytes = vec![0u8; len as usize];
    storage::read_exact_at(&*file, &mut bytes, 0).map_err(|e| Error::io("read", path, e))?;
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
