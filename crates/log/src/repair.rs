//! Repair: mending a damaged partition directory so that it opens clean, losing only what is
//! damaged. [`plan`] is pure — it turns the damage [`recovery::decide`] found in a
//! [`Depth::Full`] survey into steps and says exactly which offsets are lost; [`apply`] carries
//! the steps out on a stopped directory. `weir repair` prints the plan, and applies it only
//! when asked.
//!
//! What each kind of damage becomes (`docs/operations.md`, "Verify and repair"):
//! - damaged frames: a lost-events marker written over exactly the damaged bytes (so every
//!   frame after them keeps its position), standing for the offsets they held; intact frames
//!   after the damage are kept, and offsets stay dense;
//! - a damaged tail of the active segment, or acknowledged events missing at the end: a marker
//!   appended for the offsets a witness says were acknowledged (and nothing restores);
//! - a damaged segment header: rewritten (its base offset is the file name's), nothing lost;
//! - a damaged or wrong checkpoint: rewritten from what the segments hold, nothing lost;
//! - a missing segment, or a gap between segments: a marker for the missing offsets;
//! - every index of a segment the repair touched, or that is missing, damaged or stale:
//!   rebuilt, so that `weir verify` calls the directory clean afterwards.
//!
//! Invariant: nothing is written before the plan is complete; each step rewrites bytes that
//! were already damaged (or appends), and every file written is fsynced, so a crash during a
//! repair leaves damage that the next survey finds again (repair is idempotent).

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::error::{Error, Result};
use crate::format::{
    self, Checkpoint, SegmentHeader, FRAME_HEADER_LEN, FRAME_LEN_MAX, SEGMENT_HEADER_LEN,
};
use crate::log::{CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE};
use crate::recovery::{self, DamageKind, Evidence};
use crate::scan::{self, ScanStart};
use crate::segment;
use crate::storage::{OpenMode, Storage};
use crate::survey::{Depth, Survey};

/// One step of a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairStep {
    /// Write a lost-events marker over `len` damaged bytes of `file` at `position`, standing
    /// for `count` events from `first_offset`.
    WriteMarker {
        /// The segment file.
        file: PathBuf,
        /// Where the damaged bytes start.
        position: u64,
        /// How many bytes the marker covers (the damaged ones).
        len: u32,
        /// The first lost offset.
        first_offset: u64,
        /// How many offsets are lost (0: the damaged bytes held none).
        count: u32,
    },
    /// Cut `file` at `position` and write a marker there (the end of a segment whose tail is
    /// damaged, or missing events at a log's end).
    CutAndMark {
        /// The segment file.
        file: PathBuf,
        /// Where the marker goes (the end of the valid frames).
        position: u64,
        /// The first lost offset.
        first_offset: u64,
        /// How many offsets are lost.
        count: u32,
    },
    /// Create a segment that holds only a marker (a segment that is missing).
    CreateSegment {
        /// The segment file.
        file: PathBuf,
        /// Its base offset: the first lost offset.
        base_offset: u64,
        /// How many offsets are lost.
        count: u32,
    },
    /// Rewrite a segment's damaged header (its frames are kept).
    RewriteHeader {
        /// The segment file.
        file: PathBuf,
        /// Its base offset (the file name's).
        base_offset: u64,
    },
    /// Rewrite the recovery checkpoint.
    WriteCheckpoint(Checkpoint),
}

impl std::fmt::Display for RepairStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepairStep::WriteMarker {
                file,
                position,
                len,
                first_offset,
                count,
            } => write!(
                f,
                "write a lost-events marker over the {len} damaged bytes at byte {position} of {} \
                 (offsets {first_offset}..{})",
                file.display(),
                first_offset + u64::from(*count)
            ),
            RepairStep::CutAndMark {
                file,
                position,
                first_offset,
                count,
            } => write!(
                f,
                "cut {} at byte {position} and write a lost-events marker for offsets \
                 {first_offset}..{} there",
                file.display(),
                first_offset + u64::from(*count)
            ),
            RepairStep::CreateSegment {
                file,
                base_offset,
                count,
            } => write!(
                f,
                "create the missing segment {} holding a lost-events marker for offsets \
                 {base_offset}..{}",
                file.display(),
                base_offset + u64::from(*count)
            ),
            RepairStep::RewriteHeader { file, base_offset } => write!(
                f,
                "rewrite the damaged header of {} (base offset {base_offset}); its frames are \
                 kept",
                file.display()
            ),
            RepairStep::WriteCheckpoint(c) => write!(
                f,
                "rewrite the recovery checkpoint (start offset {}, segment {}, byte {}, next \
                 offset {})",
                c.start_offset, c.segment_base_offset, c.position, c.next_offset
            ),
        }
    }
}

/// How to mend one partition directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// The partition directory.
    pub dir: PathBuf,
    /// The steps, in order.
    pub steps: Vec<RepairStep>,
    /// The offsets lost (markers stand for them; readers and consumers report them).
    pub lost: Vec<Range<u64>>,
    /// Segments whose index files are rebuilt (touched, or missing, damaged or stale).
    pub rebuild_indexes: Vec<PathBuf>,
    /// What the repair cannot mend and leaves as it is, in words.
    pub unrepairable: Vec<String>,
    /// Things worth saying (what was rebuilt without loss, what could not be known).
    pub notes: Vec<String>,
}

impl RepairPlan {
    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.rebuild_indexes.is_empty()
    }

    /// Events lost in all.
    pub fn events_lost(&self) -> u64 {
        self.lost.iter().map(|range| range.end - range.start).sum()
    }
}

/// Plans the repair of the directory a [`Depth::Full`] `survey` describes, given what outside
/// witnesses know (`evidence`). Pure.
pub fn plan(survey: &Survey, evidence: &Evidence) -> RepairPlan {
    debug_assert_eq!(survey.depth, Depth::Full, "repair plans from a full survey");
    let decision = recovery::decide(survey, evidence);
    let mut plan = RepairPlan {
        dir: survey.dir.clone(),
        ..RepairPlan::default()
    };
    let segment_index = |path: &Path| survey.segments.iter().position(|s| s.path == path);
    let mut checkpoint_wrong = false;
    // The log's end after the repair: (active segment, position, next offset). Past an
    // invalid run of the active segment only if that run is damage (a marker then stands for
    // it and the frames after it are kept); a torn tail, and whatever follows it, is cut by
    // the next open and never counts.
    let active_damaged = survey.segments.last().is_some_and(|active| {
        decision.damage.iter().any(|damage| {
            damage.file == active.path && matches!(damage.kind, DamageKind::Frame { .. })
        })
    });
    let mut end = survey.segments.last().and_then(|active| {
        active
            .scan
            .as_ref()
            .map(|scan| match scan.end_after_resume {
                Some((position, next_offset)) if active_damaged => {
                    (active.base_offset, position, next_offset)
                }
                _ => (active.base_offset, scan.valid_end, scan.next_offset),
            })
    });
    for damage in &decision.damage {
        match &damage.kind {
            DamageKind::Frame {
                offset,
                resumed,
                sealed_end,
                acknowledged_end,
            } => {
                let Some(i) = segment_index(&damage.file) else {
                    continue;
                };
                let found = &survey.segments[i];
                let resumed =
                    resumed.filter(|r| r.position - damage.position >= FRAME_HEADER_LEN as u64);
                match (resumed, sealed_end) {
                    (Some(resumed), _) => {
                        let len = resumed.position - damage.position;
                        match (u32::try_from(len), u32::try_from(resumed.offset - offset)) {
                            (Ok(len), Ok(count)) if len <= FRAME_LEN_MAX => {
                                plan.steps.push(RepairStep::WriteMarker {
                                    file: damage.file.clone(),
                                    position: damage.position,
                                    len,
                                    first_offset: *offset,
                                    count,
                                });
                                push_lost(&mut plan.lost, *offset, resumed.offset);
                            }
                            _ => plan.unrepairable.push(format!(
                                "{}: {} damaged bytes at byte {} holding offsets {offset}..{} are \
                                 too many for one marker",
                                damage.file.display(),
                                len,
                                damage.position,
                                resumed.offset
                            )),
                        }
                    }
                    (None, Some(sealed_end)) => {
                        let count = sealed_end.saturating_sub(*offset);
                        cut_and_mark(&mut plan, &damage.file, damage.position, *offset, count);
                    }
                    (None, None) if acknowledged_end.is_none() => {
                        // A later invalid run at the very end of the active segment, after
                        // damage: a torn tail, which the next open cuts.
                        plan.notes.push(format!(
                            "{}: the torn tail at byte {} is cut by the next open (never \
                             acknowledged)",
                            damage.file.display(),
                            damage.position
                        ));
                        continue;
                    }
                    (None, None) => {
                        // The active segment's tail: lost up to what a witness says was
                        // acknowledged, less what the journal restores.
                        let acknowledged = acknowledged_end.unwrap_or(*offset).max(*offset);
                        let until = restored_from(evidence, *offset, acknowledged);
                        cut_and_mark(
                            &mut plan,
                            &damage.file,
                            damage.position,
                            *offset,
                            until - offset,
                        );
                        end = Some((found.base_offset, damage.position, until));
                    }
                }
                plan.rebuild_indexes.push(damage.file.clone());
            }
            DamageKind::Header => {
                if let Some(i) = segment_index(&damage.file) {
                    plan.steps.push(RepairStep::RewriteHeader {
                        file: damage.file.clone(),
                        base_offset: survey.segments[i].base_offset,
                    });
                    plan.notes.push(format!(
                        "{}: the segment header is rebuilt from the file name; no event is lost",
                        damage.file.display()
                    ));
                }
            }
            DamageKind::Checkpoint | DamageKind::StartBeforeSegments => {
                checkpoint_wrong = true;
                plan.notes.push(
                    "the recovery checkpoint is rebuilt from the segments; no event is lost (the \
                     log's start offset becomes its first segment's base offset, and \
                     retention moves it on again)"
                        .to_string(),
                );
            }
            DamageKind::MissingSegment { base_offset } => {
                let next = survey
                    .segments
                    .iter()
                    .map(|s| s.base_offset)
                    .find(|&b| b > *base_offset);
                let until = next.unwrap_or_else(|| {
                    survey
                        .valid_checkpoint()
                        .map_or(*base_offset, |c| c.next_offset)
                        .max(evidence.acknowledged_end)
                });
                match u32::try_from(until.saturating_sub(*base_offset)) {
                    Ok(count) => {
                        plan.steps.push(RepairStep::CreateSegment {
                            file: damage.file.clone(),
                            base_offset: *base_offset,
                            count,
                        });
                        push_lost(&mut plan.lost, *base_offset, until);
                        plan.rebuild_indexes.push(damage.file.clone());
                        if next.is_none() {
                            end = Some((
                                *base_offset,
                                SEGMENT_HEADER_LEN as u64 + FRAME_HEADER_LEN as u64,
                                until,
                            ));
                        }
                    }
                    Err(_) => plan.unrepairable.push(format!(
                        "{}: the missing segment held more offsets than one marker stands for",
                        damage.file.display()
                    )),
                }
            }
            DamageKind::Gap { from, to } if to > from => {
                cut_and_mark(&mut plan, &damage.file, damage.position, *from, to - from);
                plan.rebuild_indexes.push(damage.file.clone());
            }
            DamageKind::Gap { from, to } => plan.unrepairable.push(format!(
                "{}: the sealed segment holds offsets up to {from}, past the next segment's \
                 start {to}: the segments overlap; move one aside by hand",
                damage.file.display()
            )),
            DamageKind::MissingEvents { from, to } => {
                let until = restored_from(evidence, *from, *to);
                if until > *from {
                    cut_and_mark(
                        &mut plan,
                        &damage.file,
                        damage.position,
                        *from,
                        until - from,
                    );
                    plan.rebuild_indexes.push(damage.file.clone());
                    if let Some(i) = segment_index(&damage.file) {
                        end = Some((survey.segments[i].base_offset, damage.position, until));
                    }
                }
            }
            DamageKind::NoSegments => {
                let start = survey.valid_checkpoint().map_or(0, |c| c.start_offset);
                let until = survey
                    .valid_checkpoint()
                    .map_or(0, |c| c.next_offset)
                    .max(evidence.acknowledged_end)
                    .max(start);
                let file = survey.dir.join(segment::segment_file_name(start));
                match u32::try_from(until - start) {
                    Ok(count) => {
                        plan.steps.push(RepairStep::CreateSegment {
                            file: file.clone(),
                            base_offset: start,
                            count,
                        });
                        push_lost(&mut plan.lost, start, until);
                        plan.rebuild_indexes.push(file);
                        end = Some((
                            start,
                            SEGMENT_HEADER_LEN as u64 + FRAME_HEADER_LEN as u64,
                            until,
                        ));
                    }
                    Err(_) => plan.unrepairable.push(format!(
                        "{}: every segment is gone, and more offsets than one marker stands for",
                        survey.dir.display()
                    )),
                }
            }
        }
    }
    // Indexes that are missing, damaged or stale are rebuilt too, so that verify is clean.
    for found in &survey.segments {
        if found.index.needs_rebuild() && !plan.rebuild_indexes.contains(&found.path) {
            plan.rebuild_indexes.push(found.path.clone());
        }
    }
    plan.rebuild_indexes.sort();
    plan.rebuild_indexes.dedup();
    // The checkpoint names the repaired end whenever anything about the end changed.
    let changes_end = plan.steps.iter().any(|step| {
        matches!(
            step,
            RepairStep::CutAndMark { .. } | RepairStep::CreateSegment { .. }
        )
    }) || checkpoint_wrong;
    if changes_end && plan.unrepairable.is_empty() {
        if let Some((segment_base_offset, position, next_offset)) = end {
            let first_base = survey
                .segments
                .first()
                .map_or(segment_base_offset, |s| s.base_offset);
            let start_offset = survey
                .valid_checkpoint()
                .map_or(first_base, |c| c.start_offset)
                .max(first_base)
                .min(next_offset);
            let position = if let Some(RepairStep::CutAndMark { position: at, .. }) =
                plan.steps.iter().rev().find(|step| {
                    matches!(step, RepairStep::CutAndMark { file, .. }
                        if segment_index(file).map(|i| survey.segments[i].base_offset)
                            == Some(segment_base_offset))
                }) {
                at + FRAME_HEADER_LEN as u64
            } else {
                position
            };
            plan.steps.push(RepairStep::WriteCheckpoint(Checkpoint {
                start_offset,
                segment_base_offset,
                position,
                next_offset,
            }));
        }
    }
    plan
}

/// Where a lost range starting at `from` ends: at the first offset the journal restores, or at
/// `acknowledged`.
fn restored_from(evidence: &Evidence, from: u64, acknowledged: u64) -> u64 {
    evidence
        .restorable
        .iter()
        .filter(|range| range.end > from)
        .map(|range| range.start.max(from))
        .min()
        .unwrap_or(acknowledged)
        .min(acknowledged)
}

fn cut_and_mark(plan: &mut RepairPlan, file: &Path, position: u64, first_offset: u64, count: u64) {
    match u32::try_from(count) {
        Ok(count) => {
            plan.steps.push(RepairStep::CutAndMark {
                file: file.to_path_buf(),
                position,
                first_offset,
                count,
            });
            push_lost(
                &mut plan.lost,
                first_offset,
                first_offset + u64::from(count),
            );
        }
        Err(_) => plan.unrepairable.push(format!(
            "{}: offsets {first_offset}..{} are more than one marker stands for",
            file.display(),
            first_offset + count
        )),
    }
}

fn push_lost(lost: &mut Vec<Range<u64>>, from: u64, to: u64) {
    if to > from {
        lost.push(from..to);
    }
}

/// Carries out `plan` on a stopped directory (nothing may have it open), then rebuilds the
/// indexes it names and removes the clean-shutdown marker (the next open checks the active
/// segment whole). `now_ms` stamps the markers.
///
/// # Errors
/// [`Error::Io`] naming the step and file that failed; the directory is then partly repaired,
/// and a new survey and plan finish the job.
pub fn apply(storage: &dyn Storage, plan: &RepairPlan, now_ms: u64) -> Result<()> {
    let dir = &plan.dir;
    for step in &plan.steps {
        match step {
            RepairStep::WriteMarker {
                file,
                position,
                len,
                first_offset,
                count,
            } => {
                let mut marker = Vec::with_capacity(*len as usize);
                format::encode_lost_marker(&mut marker, *first_offset, *count, now_ms, *len);
                write_and_sync(storage, file, &marker, *position, None)?;
                upgrade_header(storage, file)?;
            }
            RepairStep::CutAndMark {
                file,
                position,
                first_offset,
                count,
            } => {
                let mut marker = Vec::with_capacity(FRAME_HEADER_LEN);
                format::encode_lost_marker(
                    &mut marker,
                    *first_offset,
                    *count,
                    now_ms,
                    FRAME_HEADER_LEN as u32,
                );
                write_and_sync(storage, file, &marker, *position, Some(*position))?;
                upgrade_header(storage, file)?;
            }
            RepairStep::CreateSegment {
                file,
                base_offset,
                count,
            } => {
                let header = SegmentHeader {
                    version: format::SEGMENT_FORMAT_VERSION,
                    base_offset: *base_offset,
                    created_ms: now_ms,
                }
                .encode();
                let mut bytes = header.to_vec();
                format::encode_lost_marker(
                    &mut bytes,
                    *base_offset,
                    *count,
                    now_ms,
                    FRAME_HEADER_LEN as u32,
                );
                let created = storage
                    .open(file, OpenMode::CreateNew)
                    .map_err(|e| Error::io("create segment", file, e))?;
                created
                    .write_all_at(&bytes, 0)
                    .map_err(|e| Error::io("write", file, e))?;
                created
                    .sync_data()
                    .map_err(|e| Error::io("fsync", file, e))?;
            }
            RepairStep::RewriteHeader { file, base_offset } => {
                let header = SegmentHeader {
                    version: format::SEGMENT_FORMAT_VERSION,
                    base_offset: *base_offset,
                    created_ms: now_ms,
                }
                .encode();
                write_and_sync(storage, file, &header, 0, None)?;
            }
            RepairStep::WriteCheckpoint(checkpoint) => {
                atomic::write_file(
                    storage,
                    &dir.join(CHECKPOINT_FILE),
                    &checkpoint.encode(),
                    true,
                )?;
            }
        }
    }
    for path in &plan.rebuild_indexes {
        rebuild_index(storage, dir, path)?;
    }
    match storage.remove_file(&dir.join(CLEAN_SHUTDOWN_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", dir.join(CLEAN_SHUTDOWN_FILE), error))
        }
        _ => {}
    }
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Writes `bytes` at `position` of `file` (cutting it there first, with `cut_at`) and fsyncs.
fn write_and_sync(
    storage: &dyn Storage,
    file: &Path,
    bytes: &[u8],
    position: u64,
    cut_at: Option<u64>,
) -> Result<()> {
    let handle = storage
        .open(file, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open segment", file, e))?;
    if let Some(cut) = cut_at {
        handle
            .set_len(cut)
            .map_err(|e| Error::io("truncate", file, e))?;
    }
    handle
        .write_all_at(bytes, position)
        .map_err(|e| Error::io("write", file, e))?;
    handle.sync_data().map_err(|e| Error::io("fsync", file, e))
}

/// A segment that now holds a marker must say version 2 (a version 1 reader would take the
/// marker for damage); an intact version 1 header is rewritten as version 2.
fn upgrade_header(storage: &dyn Storage, file: &Path) -> Result<()> {
    let handle = storage
        .open(file, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open segment", file, e))?;
    let len = handle
        .len()
        .map_err(|e| Error::io("read length of segment", file, e))?;
    let base = segment::parse_file_name(
        &file.file_name().unwrap_or_default().to_string_lossy(),
        ".log",
    )
    .unwrap_or_default();
    if let Ok(header) = segment::check_header(&*handle, file, base, len) {
        if header.version < format::SEGMENT_FORMAT_VERSION {
            let upgraded = SegmentHeader {
                version: format::SEGMENT_FORMAT_VERSION,
                ..header
            }
            .encode();
            handle
                .write_all_at(&upgraded, 0)
                .map_err(|e| Error::io("write segment header", file, e))?;
            handle
                .sync_data()
                .map_err(|e| Error::io("fsync", file, e))?;
        }
    }
    Ok(())
}

/// Scans a repaired segment and writes its index.
fn rebuild_index(storage: &dyn Storage, dir: &Path, path: &Path) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let Some(base) = segment::parse_file_name(&name, ".log") else {
        return Ok(());
    };
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open segment", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("read length of segment", path, e))?;
    let interval = crate::LogConfig::default().index_interval_bytes;
    let scan = scan::scan_segment(
        &*file,
        path,
        ScanStart::first_frame(base, interval),
        len,
        false,
    )?;
    if !scan.invalid.is_empty() {
        // Still damaged (a step could not mend it): leave the index to the next repair.
        return Ok(());
    }
    let index = format::IndexFile {
        base_offset: base,
        end_offset: scan.next_offset,
        end_position: scan.valid_end,
        timestamp_max_ms: scan.index.timestamp_max_ms,
        entries: scan.index.entries,
    };
    segment::write_index_file(
        storage,
        &dir.join(segment::index_file_name(base)),
        &index,
        true,
    )
}
