//! **The recovery decision**: [`decide`], the one pure function that judges what a [`Survey`]
//! found (the survey reads; `scan.rs` is its reader). Open applies its actions, `weir verify`
//! prints them, `weir repair` plans from the same damage; none of them decides on its own.
//!
//! The decision table (`docs/durability.md`, "Recovery"):
//!
//! | what the survey found                                                | verdict             |
//! |----------------------------------------------------------------------|---------------------|
//! | an invalid frame in a sealed segment                                 | damage              |
//! | an invalid frame in the active segment below the recovery checkpoint | damage              |
//! | an invalid frame followed by a frame that records a durable end past it | damage           |
//! | an invalid frame, or a short log, where an outside witness (the store's journal, a group's committed offset) says events were acknowledged that nothing will restore | damage |
//! | any other invalid frame in the active segment                        | torn tail: cut      |
//! | a damaged header (but the torn header of an empty new segment), a damaged checkpoint, a missing segment, a gap between segments | damage |
//!
//! A torn tail is normal after a power cut: unsynced writes may be missing, zeroed, garbage or
//! out of order, and none of them was acknowledged. Damage is never cut by open: the log opens
//! read-only below it, or refuses (the caller chooses), having written nothing.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::format::{Checkpoint, SEGMENT_HEADER_LEN};
use crate::survey::{HeaderState, InvalidFrame, Resumed, Survey};

/// What an outside witness knows of a log that the log's own files may not show: the store's
/// journal (frames it holds and writes back after recovery) and committed consumer offsets of
/// a durable topic (a group saw, so the log had made durable, every event before them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Every offset below this was acknowledged (0: no witness says anything).
    pub acknowledged_end: u64,
    /// Who says so, for messages ("the store's journal", "group billing's committed offset").
    pub acknowledged_by: String,
    /// Offsets the witness holds and writes back after the log's own recovery (the journal).
    pub restorable: Vec<Range<u64>>,
}

impl Evidence {
    /// The first offset in `from..to` that nothing restores, if any.
    fn first_unrestorable(&self, from: u64, to: u64) -> Option<u64> {
        let mut at = from;
        while at < to {
            match self
                .restorable
                .iter()
                .filter(|range| range.start <= at && range.end > at)
                .map(|range| range.end)
                .max()
            {
                Some(end) => at = end,
                None => return Some(at),
            }
        }
        None
    }
}

/// How healthy a partition (or a whole data directory) is, worst last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Nothing to do: the log opens as it is.
    #[default]
    Clean,
    /// Open fixes it without losing an acknowledged event (a torn tail, leftovers, the torn
    /// header of an empty new segment); or (full surveys) a derived file to rebuild.
    Repairable,
    /// Acknowledged data, or what recovery needs to judge it, is damaged: the log opens
    /// read-only below the damage (or refuses) until `weir repair`.
    Damaged,
}

/// Damage to acknowledged data, or to what recovery needs to judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file (or the file that should be there).
    pub file: PathBuf,
    /// The byte position of the damage in `file`.
    pub position: u64,
    /// What kind of damage.
    pub kind: DamageKind,
    /// What is wrong, in words.
    pub reason: String,
}

impl Damage {
    /// The first offset reads cannot pass because of this damage, if it blocks reads.
    pub fn blocks_reads_at(&self) -> Option<u64> {
        match self.kind {
            DamageKind::Frame { offset, .. } => Some(offset),
            DamageKind::Gap { from, .. } | DamageKind::MissingEvents { from, .. } => Some(from),
            DamageKind::MissingSegment { .. } | DamageKind::NoSegments => Some(0),
            DamageKind::Header | DamageKind::Checkpoint | DamageKind::StartBeforeSegments => None,
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.file.display(),
            self.position,
            self.reason
        )
    }
}

/// The kinds of [`Damage`], with what repair needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// An invalid frame where the events were acknowledged.
    Frame {
        /// The offset the frame should start with.
        offset: u64,
        /// Where valid frames resume after it, if anywhere in the segment.
        resumed: Option<Resumed>,
        /// For a sealed segment: its end offset (the next segment's base offset).
        sealed_end: Option<u64>,
        /// The events up to here were acknowledged (evidence), if more than the damaged
        /// frames show.
        acknowledged_end: Option<u64>,
    },
    /// A segment's header (the frames may be intact).
    Header,
    /// The recovery checkpoint.
    Checkpoint,
    /// The checkpoint names a segment that is not there.
    MissingSegment {
        /// Its base offset.
        base_offset: u64,
    },
    /// A sealed segment ends at `from` but the next one starts at `to`.
    Gap {
        /// Where the sealed segment ends.
        from: u64,
        /// Where the next segment starts.
        to: u64,
    },
    /// Acknowledged events `from..to` are missing at the log's end (a witness says so).
    MissingEvents {
        /// The log's end.
        from: u64,
        /// The end of what was acknowledged.
        to: u64,
    },
    /// The checkpoint's start offset is below the first segment.
    StartBeforeSegments,
    /// A checkpoint or a witness, but no segment at all.
    NoSegments,
}

/// A torn tail: a frame a crash cut short (and anything after it), never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Where the cut is made (the first invalid frame).
    pub position: u64,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// Why the frame at `position` was invalid.
    pub reason: String,
    /// Valid-looking frames found after the invalid one and cut with it (writes that reached
    /// the disk out of order; none was acknowledged).
    pub valid_frames_discarded: u64,
    /// Every byte cut was zero: the zeros written ahead of the end
    /// ([`crate::LogConfig::preallocate_bytes`]) or sectors never written — the usual tail
    /// after a crash, with nothing in it.
    pub zeros_only: bool,
    /// The offset up to which an outside journal writes the cut events back (they were
    /// acknowledged through it), if it holds any of them.
    pub restored_to: Option<u64>,
}

/// What open does to a directory that is not damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove a leftover: a temporary file, an index without a segment, or a segment wholly
    /// below the start offset (an interrupted retention).
    RemoveLeftover {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// Rewrite the torn header of the empty segment a crash interrupted the creation of.
    RewriteEmptyHeader {
        /// The segment file.
        path: PathBuf,
    },
    /// Cut a torn tail.
    CutTornTail(TornTail),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RemoveLeftover { path, what } => {
                write!(f, "remove {} ({what})", path.display())
            }
            Action::RewriteEmptyHeader { path } => write!(
                f,
                "rewrite the torn header of the empty segment {}",
                path.display()
            ),
            Action::CutTornTail(torn) => {
                write!(
                    f,
                    "cut the torn tail of {} at byte {} ({} bytes: {}",
                    torn.file.display(),
                    torn.position,
                    torn.bytes_cut,
                    torn.reason
                )?;
                if torn.zeros_only {
                    write!(f, "; only zeros")?;
                } else if torn.valid_frames_discarded > 0 {
                    write!(
                        f,
                        "; {} valid-looking frames after it, never acknowledged",
                        torn.valid_frames_discarded
                    )?;
                }
                match torn.restored_to {
                    Some(end) => write!(
                        f,
                        "; the journal writes its events back up to offset {end})"
                    ),
                    None => write!(f, "; never acknowledged)"),
                }
            }
        }
    }
}

/// The recovery decision for one partition directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Damage found (empty: none). With damage, open changes nothing.
    pub damage: Vec<Damage>,
    /// What open does when there is no damage, in order.
    pub actions: Vec<Action>,
    /// The log's first readable offset.
    pub start_offset: u64,
    /// The log's end after the actions (before an outside journal writes anything back).
    pub end_offset: u64,
    /// Reads see offsets below this: the end, or the first damage that blocks reads.
    pub readable_end: u64,
    /// The checkpoint open writes (when it differs from the one on disk).
    pub checkpoint: Option<Checkpoint>,
    /// The directory holds no segment and no damage: open creates the log.
    pub create: bool,
}

impl Decision {
    /// The verdict.
    pub fn health(&self) -> Health {
        if !self.damage.is_empty() {
            Health::Damaged
        } else if self.actions.is_empty() {
            Health::Clean
        } else {
            Health::Repairable
        }
    }

    /// The cut torn tail, if any.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.actions.iter().find_map(|action| match action {
            Action::CutTornTail(torn) => Some(torn),
            _ => None,
        })
    }
}

/// **The recovery decision**: what `survey` means, given what outside witnesses know. Pure.
/// See the module docs for the table.
pub fn decide(survey: &Survey, evidence: &Evidence) -> Decision {
    let mut damage = Vec::new();
    let mut actions = Vec::new();
    let checkpoint = survey.valid_checkpoint();
    let checkpoint_path = survey.dir.join(crate::log::CHECKPOINT_FILE);
    if let crate::survey::CheckpointState::Damaged { reason } = &survey.checkpoint {
        damage.push(Damage {
            file: checkpoint_path.clone(),
            position: 0,
            kind: DamageKind::Checkpoint,
            reason: format!(
                "the recovery checkpoint is damaged ({reason}): without it, recovery cannot tell \
                 an acknowledged frame from a torn one"
            ),
        });
    }
    for path in &survey.temporary_files {
        actions.push(Action::RemoveLeftover {
            path: path.clone(),
            what: "an interrupted replacement",
        });
    }
    for path in &survey.orphan_indexes {
        actions.push(Action::RemoveLeftover {
            path: path.clone(),
            what: "an index without a segment",
        });
    }
    if survey.segments.is_empty() {
        let witness = checkpoint.is_some() || evidence.acknowledged_end > 0;
        if witness {
            damage.push(Damage {
                file: survey.dir.clone(),
                position: 0,
                kind: DamageKind::NoSegments,
                reason: match checkpoint {
                    Some(c) => format!(
                        "the checkpoint names segment {} but the directory holds no segment",
                        c.segment_base_offset
                    ),
                    None => format!(
                        "{} says offsets up to {} were acknowledged, but the directory holds no \
                         segment",
                        evidence.acknowledged_by, evidence.acknowledged_end
                    ),
                },
            });
        }
        return finish(damage, actions, 0, 0, None, !witness);
    }
    let first_base = survey.segments[0].base_offset;
    let start_offset = checkpoint.map_or(first_base, |c| c.start_offset);
    if start_offset < first_base {
        damage.push(Damage {
            file: survey.segments[0].path.clone(),
            position: 0,
            kind: DamageKind::StartBeforeSegments,
            reason: format!(
                "the log starts at offset {start_offset} but its first segment starts at \
                 {first_base}"
            ),
        });
    }
    if let Some(c) = checkpoint {
        if !survey
            .segments
            .iter()
            .any(|s| s.base_offset == c.segment_base_offset)
        {
            damage.push(Damage {
                file: survey
                    .dir
                    .join(crate::segment::segment_file_name(c.segment_base_offset)),
                position: 0,
                kind: DamageKind::MissingSegment {
                    base_offset: c.segment_base_offset,
                },
                reason: "the segment named by the recovery checkpoint is missing".into(),
            });
        }
    }
    // Segments wholly below the start offset are leftovers of an interrupted retention.
    let mut first_kept = 0;
    while first_kept + 1 < survey.segments.len()
        && survey.segments[first_kept + 1].base_offset <= start_offset
    {
        actions.push(Action::RemoveLeftover {
            path: survey.segments[first_kept].path.clone(),
            what: "a segment below the start offset (an interrupted retention)",
        });
        first_kept += 1;
    }
    let kept = &survey.segments[first_kept..];
    let last = kept.len() - 1;
    let mut end_offset = start_offset;
    let mut end_position = SEGMENT_HEADER_LEN as u64;
    for (i, segment) in kept.iter().enumerate() {
        let active = i == last;
        let next_base = kept.get(i + 1).map(|s| s.base_offset);
        let checkpoint_here = checkpoint.filter(|c| c.segment_base_offset == segment.base_offset);
        if let HeaderState::Damaged { reason } = &segment.header {
            let empty_new = active
                && segment.file_bytes <= SEGMENT_HEADER_LEN as u64
                && checkpoint_here.is_none();
            if empty_new {
                actions.push(Action::RewriteEmptyHeader {
                    path: segment.path.clone(),
                });
                end_offset = segment.base_offset;
                end_position = SEGMENT_HEADER_LEN as u64;
                continue;
            }
            damage.push(Damage {
                file: segment.path.clone(),
                position: 0,
                kind: DamageKind::Header,
                reason: format!("the segment header is damaged: {reason}"),
            });
        }
        let Some(scan) = &segment.scan else {
            continue;
        };
        if !active {
            for invalid in &scan.invalid {
                damage.push(frame_damage(
                    &segment.path,
                    invalid,
                    next_base,
                    None,
                    "an invalid frame in a sealed segment (sealed segments are fsynced whole)",
                ));
            }
            let end = scan.end_after_resume.map_or(scan.next_offset, |e| e.1);
            let next_base = next_base.unwrap_or(end);
            // Only when the scan reached the file's end through valid frames (no invalid run,
            // or the last one resumed): a damaged tail is the frame damage above already.
            let reached_end = scan
                .invalid
                .last()
                .is_none_or(|invalid| invalid.resumed.is_some());
            if end != next_base && reached_end {
                damage.push(Damage {
                    file: segment.path.clone(),
                    position: scan.end_after_resume.map_or(scan.valid_end, |e| e.0),
                    kind: DamageKind::Gap {
                        from: end,
                        to: next_base,
                    },
                    reason: format!(
                        "the sealed segment ends at offset {end} but the next segment starts at \
                         {next_base}"
                    ),
                });
            }
            continue;
        }
        // The active segment.
        end_offset = scan.next_offset;
        end_position = scan.valid_end;
        let acknowledged = evidence.acknowledged_end;
        match scan.first_invalid() {
            Some(invalid) => {
                let below_checkpoint = checkpoint_here.filter(|c| c.position > invalid.position);
                let durable_after = invalid
                    .durable_offset_after
                    .filter(|&durable| durable > invalid.offset);
                let unrestorable = (acknowledged > invalid.offset)
                    .then(|| evidence.first_unrestorable(invalid.offset, acknowledged))
                    .flatten();
                let why = if let Some(c) = below_checkpoint {
                    Some(format!(
                        "an invalid frame below the recovery checkpoint (byte {}): it was fsynced",
                        c.position
                    ))
                } else if let Some(durable) = durable_after {
                    Some(format!(
                        "an invalid frame that a later frame shows was fsynced (written when the \
                         segment was fsynced up to offset {durable})"
                    ))
                } else {
                    unrestorable.map(|at| {
                        format!(
                            "an invalid frame holding acknowledged events: {} says offsets up to \
                             {acknowledged} were acknowledged, and nothing restores offset {at}",
                            evidence.acknowledged_by
                        )
                    })
                };
                match why {
                    Some(why) => {
                        let acknowledged_end = [
                            below_checkpoint.map(|c| c.next_offset),
                            durable_after,
                            unrestorable.map(|_| acknowledged),
                        ]
                        .into_iter()
                        .flatten()
                        .max();
                        damage.push(frame_damage(
                            &segment.path,
                            invalid,
                            None,
                            acknowledged_end,
                            &why,
                        ));
                        for later in &scan.invalid[1..] {
                            damage.push(frame_damage(
                                &segment.path,
                                later,
                                None,
                                None,
                                "an invalid frame between valid frames",
                            ));
                        }
                    }
                    None => {
                        let restored_to = (acknowledged > invalid.offset).then_some(acknowledged);
                        actions.push(Action::CutTornTail(TornTail {
                            file: segment.path.clone(),
                            position: invalid.position,
                            bytes_cut: segment.file_bytes - invalid.position,
                            reason: invalid.reason.clone(),
                            valid_frames_discarded: invalid.frames_after,
                            zeros_only: invalid.zeros_only,
                            restored_to,
                        }));
                    }
                }
            }
            None => {
                if let Some(c) = checkpoint_here.filter(|c| c.position > scan.valid_end) {
                    damage.push(Damage {
                        file: segment.path.clone(),
                        position: scan.valid_end,
                        kind: DamageKind::MissingEvents {
                            from: scan.next_offset,
                            to: c.next_offset.max(scan.next_offset),
                        },
                        reason: format!(
                            "the segment ends before the recovery checkpoint at byte {}",
                            c.position
                        ),
                    });
                } else if let Some(at) = (acknowledged > scan.next_offset)
                    .then(|| evidence.first_unrestorable(scan.next_offset, acknowledged))
                    .flatten()
                {
                    damage.push(Damage {
                        file: segment.path.clone(),
                        position: scan.valid_end,
                        kind: DamageKind::MissingEvents {
                            from: scan.next_offset,
                            to: acknowledged,
                        },
                        reason: format!(
                            "{} says offsets up to {acknowledged} were acknowledged, but the log \
                             ends at {} and nothing restores offset {at}",
                            evidence.acknowledged_by, scan.next_offset
                        ),
                    });
                }
            }
        }
    }
    if end_offset < start_offset && damage.is_empty() {
        damage.push(Damage {
            file: kept[last].path.clone(),
            position: end_position,
            kind: DamageKind::MissingEvents {
                from: end_offset,
                to: start_offset,
            },
            reason: format!(
                "the log ends at offset {end_offset} but its checkpoint says it starts at \
                 {start_offset}"
            ),
        });
    }
    let new_checkpoint = Checkpoint {
        start_offset,
        segment_base_offset: kept[last].base_offset,
        position: end_position,
        next_offset: end_offset,
    };
    let checkpoint_write = (checkpoint != Some(new_checkpoint)).then_some(new_checkpoint);
    finish(
        damage,
        actions,
        start_offset,
        end_offset,
        checkpoint_write,
        false,
    )
}

fn finish(
    damage: Vec<Damage>,
    actions: Vec<Action>,
    start_offset: u64,
    end_offset: u64,
    checkpoint: Option<Checkpoint>,
    create: bool,
) -> Decision {
    let readable_end = damage
        .iter()
        .filter_map(Damage::blocks_reads_at)
        .fold(end_offset, u64::min)
        .max(start_offset.min(end_offset));
    if damage.is_empty() {
        Decision {
            damage,
            actions,
            start_offset,
            end_offset,
            readable_end,
            checkpoint,
            create,
        }
    } else {
        // Damage: open changes nothing.
        Decision {
            damage,
            actions: Vec::new(),
            start_offset,
            end_offset,
            readable_end,
            checkpoint: None,
            create: false,
        }
    }
}

fn frame_damage(
    path: &Path,
    invalid: &InvalidFrame,
    sealed_end: Option<u64>,
    acknowledged_end: Option<u64>,
    why: &str,
) -> Damage {
    let mut reason = format!("{why}: {}", invalid.reason);
    match invalid.resumed {
        Some(resumed) => reason.push_str(&format!(
            "; valid frames resume at byte {} with offset {}",
            resumed.position, resumed.offset
        )),
        None => reason.push_str("; no valid frame follows in the segment"),
    }
    Damage {
        file: path.to_path_buf(),
        position: invalid.position,
        kind: DamageKind::Frame {
            offset: invalid.offset,
            resumed: invalid.resumed,
            sealed_end,
            acknowledged_end,
        },
        reason,
    }
}

/// Refuses the open with the first damage, as [`Error::Corrupt`] naming its file and position.
pub(crate) fn corrupt_error(decision: &Decision) -> Option<Error> {
    decision.damage.first().map(|first| Error::Corrupt {
        file: first.file.clone(),
        position: first.position,
        reason: first.reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::IndexBuilder;
    use crate::survey::{CheckpointState, Depth, IndexState, SegmentScan, SegmentSurvey};

    fn segment(base: u64, active: bool, scan: SegmentScan) -> SegmentSurvey {
        let _ = active;
        SegmentSurvey {
            path: PathBuf::from(format!("{base:020}.log")),
            base_offset: base,
            file_bytes: 10_000,
            header: HeaderState::Valid {
                version: 2,
                created_ms: 0,
            },
            scan: Some(scan),
            index: IndexState::NotChecked,
            trusted_index: None,
        }
    }

    fn scan(next_offset: u64, valid_end: u64, invalid: Option<InvalidFrame>) -> SegmentScan {
        SegmentScan {
            from_position: 40,
            frames: 1,
            valid_end,
            next_offset,
            invalid: invalid.into_iter().collect(),
            end_after_resume: None,
            index: IndexBuilder::new(0, 4096),
        }
    }

    fn invalid(position: u64, offset: u64, durable_after: Option<u64>) -> InvalidFrame {
        InvalidFrame {
            position,
            offset,
            reason: "bad crc".into(),
            resumed: None,
            frames_after: 0,
            durable_offset_after: durable_after,
            zeros_only: false,
        }
    }

    fn survey(checkpoint: Option<Checkpoint>, segments: Vec<SegmentSurvey>) -> Survey {
        Survey {
            dir: PathBuf::from("p"),
            depth: Depth::Open,
            checkpoint: checkpoint.map_or(CheckpointState::Missing, CheckpointState::Valid),
            clean_shutdown: false,
            segments,
            temporary_files: Vec::new(),
            orphan_indexes: Vec::new(),
        }
    }

    fn checkpoint(segment: u64, position: u64, next_offset: u64) -> Checkpoint {
        Checkpoint {
            start_offset: 0,
            segment_base_offset: segment,
            position,
            next_offset,
        }
    }

    #[test]
    fn decision_table() {
        let none = Evidence::default();
        // Clean.
        let clean = survey(None, vec![segment(0, true, scan(10, 500, None))]);
        assert_eq!(decide(&clean, &none).health(), Health::Clean);
        // An invalid frame in a sealed segment: damage, whatever else.
        let sealed = survey(
            Some(checkpoint(100, 40, 100)),
            vec![
                segment(0, false, scan(50, 500, Some(invalid(500, 50, None)))),
                segment(100, true, scan(100, 40, None)),
            ],
        );
        assert_eq!(decide(&sealed, &none).health(), Health::Damaged);
        assert_eq!(decide(&sealed, &none).readable_end, 50);
        // In the active segment, below the checkpoint: damage.
        let below = survey(
            Some(checkpoint(0, 800, 20)),
            vec![segment(
                0,
                true,
                scan(10, 500, Some(invalid(500, 10, None))),
            )],
        );
        assert_eq!(decide(&below, &none).health(), Health::Damaged);
        // At or above the checkpoint, nothing after it: a torn tail.
        let torn = survey(
            Some(checkpoint(0, 500, 10)),
            vec![segment(
                0,
                true,
                scan(10, 500, Some(invalid(500, 10, None))),
            )],
        );
        let decision = decide(&torn, &none);
        assert_eq!(decision.health(), Health::Repairable);
        assert_eq!(decision.torn_tail().map(|t| t.position), Some(500));
        assert_eq!(decision.end_offset, 10);
        // A later frame records that the segment was fsynced past the invalid frame: damage.
        let fsynced_past = survey(
            Some(checkpoint(0, 40, 0)),
            vec![segment(
                0,
                true,
                scan(10, 500, Some(invalid(500, 10, Some(12)))),
            )],
        );
        assert_eq!(decide(&fsynced_past, &none).health(), Health::Damaged);
        // ... but a durable end at the frame itself says nothing about it.
        let not_past = survey(
            Some(checkpoint(0, 40, 0)),
            vec![segment(
                0,
                true,
                scan(10, 500, Some(invalid(500, 10, Some(10)))),
            )],
        );
        assert_eq!(decide(&not_past, &none).health(), Health::Repairable);
    }

    #[test]
    fn outside_witnesses_make_a_cut_damage_unless_they_restore_it() {
        let torn = survey(
            Some(checkpoint(0, 40, 0)),
            vec![segment(
                0,
                true,
                scan(10, 500, Some(invalid(500, 10, None))),
            )],
        );
        let committed = Evidence {
            acknowledged_end: 15,
            acknowledged_by: "group g's committed offset".into(),
            restorable: Vec::new(),
        };
        let decision = decide(&torn, &committed);
        assert_eq!(decision.health(), Health::Damaged);
        assert!(decision.actions.is_empty(), "damage changes nothing");
        let journal = Evidence {
            acknowledged_end: 15,
            acknowledged_by: "the store's journal".into(),
            restorable: vec![10..12, 12..15],
        };
        let decision = decide(&torn, &journal);
        assert_eq!(decision.health(), Health::Repairable);
        assert_eq!(decision.torn_tail().and_then(|t| t.restored_to), Some(15));
        // A journal that starts past the cut: the events between are gone.
        let gap = Evidence {
            acknowledged_end: 15,
            acknowledged_by: "the store's journal".into(),
            restorable: std::iter::once(12..15).collect(),
        };
        assert_eq!(decide(&torn, &gap).health(), Health::Damaged);
        // A clean log shorter than a witness says: missing events.
        let short = survey(None, vec![segment(0, true, scan(10, 500, None))]);
        assert_eq!(decide(&short, &committed).health(), Health::Damaged);
        assert_eq!(decide(&short, &gap).health(), Health::Damaged);
        let restored = Evidence {
            restorable: std::iter::once(10..15).collect(),
            ..journal
        };
        assert_eq!(decide(&short, &restored).health(), Health::Clean);
    }

    #[test]
    fn a_damaged_header_is_damage_unless_it_is_an_empty_new_segment() {
        let mut header = segment(0, true, scan(0, 40, None));
        header.header = HeaderState::Damaged {
            reason: "bad magic".into(),
        };
        header.file_bytes = 30;
        assert_eq!(
            decide(&survey(None, vec![header.clone()]), &Evidence::default()).health(),
            Health::Repairable
        );
        header.file_bytes = 4000;
        let decision = decide(&survey(None, vec![header]), &Evidence::default());
        assert_eq!(decision.health(), Health::Damaged);
        // Reads are not blocked by a header.
        assert_eq!(decision.readable_end, decision.end_offset);
    }
}
