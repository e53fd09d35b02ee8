//! Recovery at open (`docs/durability.md`, "Recovery"): a [`Depth::Open`] survey of the
//! directory, [`recovery::decide`] on it, and then — only if the decision found no damage — its
//! actions: leftovers removed, the clean-shutdown marker removed, a torn tail cut and fsynced,
//! the checkpoint rewritten. With damage, nothing is written: the log refuses to open, or
//! opens read-only below the damage ([`OnDamage`]), as its caller asks.

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
use crate::recovery::{self, Action, Damage, DamageKind, Decision, Evidence, TornTail};
use crate::scan::IndexBuilder;
use crate::segment::{self, Segment, Summary};
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::survey::{self, Depth, HeaderState, Survey};

/// What an open does when recovery finds damage (see [`OpenOptions`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse to open: [`Error::Corrupt`] naming the first damage's file and byte.
    #[default]
    Refuse,
    /// Open read-only: reads see the events below the first damage; appends fail with
    /// [`Error::Damaged`] until `weir repair` mends it (weir-store opens its partitions so, so
    /// that one damaged partition does not stop the others).
    ReadOnly,
}

/// How to open a log, beyond its [`LogConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// What outside witnesses know of the log (weir-store's journal and committed offsets).
    pub evidence: Evidence,
    /// What to do about damage.
    pub on_damage: OnDamage,
}

/// What recovery did when the log opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// True if the log was created by this open.
    pub created: bool,
    /// True if the previous close was clean (the active segment's index was trusted and only
    /// the frames after its last entry were checked).
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
    /// Damage found: the log opened read-only below it ([`OnDamage::ReadOnly`]) and nothing
    /// was written.
    pub damage: Vec<Damage>,
}

pub(crate) struct Opened {
    pub(crate) segments: BTreeMap<u64, Arc<Segment>>,
    pub(crate) active_file: Arc<dyn StorageFile>,
    pub(crate) end: EndPoint,
    pub(crate) created_ms: u64,
    pub(crate) active_version: u32,
    pub(crate) index: IndexBuilder,
    pub(crate) checkpoint: Checkpoint,
    pub(crate) report: RecoveryReport,
}

/// Recovery at open (see `docs/durability.md`).
pub(crate) struct Opener<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) config: &'a LogConfig,
    pub(crate) storage: &'a dyn Storage,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) options: &'a OpenOptions,
}

impl Opener<'_> {
    pub(crate) fn open(&self) -> Result<Opened> {
        let survey = survey::survey(self.storage, self.dir, Depth::Open)?;
        let decision = recovery::decide(&survey, &self.options.evidence);
        if !decision.damage.is_empty() {
            for damage in &decision.damage {
                tracing::error!(file = %damage.file.display(), position = damage.position, reason = %damage.reason, "recovery found damage to acknowledged data; nothing was changed");
            }
            return match self.options.on_damage {
                OnDamage::Refuse => {
                    Err(recovery::corrupt_error(&decision).expect("damage is not empty"))
                }
                OnDamage::ReadOnly => self.open_damaged(&survey, &decision),
            };
        }
        if decision.create {
            return self.create(RecoveryReport::default());
        }
        self.apply(&survey, &decision)
    }

    /// Applies a decision without damage.
    fn apply(&self, survey: &Survey, decision: &Decision) -> Result<Opened> {
        let dir = self.dir;
        let storage = self.storage;
        let mut report = RecoveryReport::default();
        for action in &decision.actions {
            if let Action::RemoveLeftover { path, .. } = action {
                storage
                    .remove_file(path)
                    .map_err(|e| Error::io("remove", path, e))?;
                report.files_removed.push(path.clone());
            }
        }
        if survey.clean_shutdown {
            // Removed before anything is written, so a crash from here on is never mistaken
            // for a clean shutdown.
            let marker = dir.join(CLEAN_SHUTDOWN_FILE);
            storage
                .remove_file(&marker)
                .map_err(|e| Error::io("remove", &marker, e))?;
        }
        // Always, not only when recovery changed the directory: a process killed between
        // creating a segment file and fsyncing the directory leaves an entry that is in the
        // page cache but maybe not on disk, and appends to that segment are about to be
        // acknowledged.
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;

        let removed: Vec<&PathBuf> = report.files_removed.iter().collect();
        let kept: Vec<&survey::SegmentSurvey> = survey
            .segments
            .iter()
            .filter(|s| !removed.contains(&&s.path))
            .collect();
        let mut segments = BTreeMap::new();
        for found in &kept {
            let segment = Segment::new(dir, found.base_offset);
            segments.insert(found.base_offset, Arc::new(segment));
        }
        let (active_found, sealed) = kept.split_last().expect("a log with segments");
        for (i, found) in sealed.iter().enumerate() {
            // Sealed segments rolled after the checkpoint were scanned (and found whole): keep
            // their summaries and write their indexes.
            let Some(scan) = &found.scan else { continue };
            report.segments_scanned += 1;
            report.bytes_scanned += found.file_bytes;
            let summary = summary_of(scan);
            let index = summary.to_index_file(found.base_offset);
            debug_assert_eq!(
                Some(scan.next_offset),
                kept.get(i + 1).map(|s| s.base_offset)
            );
            segments[&found.base_offset].set_summary(summary);
            if let Err(error) = segment::write_index_file(
                storage,
                &segments[&found.base_offset].index_path,
                &index,
                false,
            ) {
                tracing::warn!(%error, "could not write a rebuilt index");
            }
        }

        let active = segments[&active_found.base_offset].clone();
        let file = storage
            .open(&active.path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open segment", &active.path, e))?;
        let scan = active_found
            .scan
            .as_ref()
            .expect("an open survey scans the active segment");
        let (mut created_ms, mut version) = match active_found.header {
            HeaderState::Valid {
                version,
                created_ms,
            } => (created_ms, version),
            HeaderState::Damaged { .. } | HeaderState::NotChecked => {
                (0, format::SEGMENT_FORMAT_VERSION)
            }
        };
        let mut summary = summary_of(scan);
        let mut index = scan.index.clone();
        report.clean_shutdown = active_found.trusted_index.is_some();
        report.segments_scanned += 1;
        report.bytes_scanned += active_found.file_bytes.saturating_sub(scan.from_position);
        for action in &decision.actions {
            match action {
                Action::RewriteEmptyHeader { path } => {
                    // The segment was being created when the process stopped: its header was
                    // never synced, so nothing was ever written to it. Start it again.
                    tracing::warn!(path = %path.display(), "rewriting the torn header of an empty segment");
                    let now = self.clock.now_ms();
                    let header = SegmentHeader {
                        version: format::SEGMENT_FORMAT_VERSION,
                        base_offset: active.base_offset,
                        created_ms: now,
                    }
                    .encode();
                    file.set_len(0)
                        .map_err(|e| Error::io("truncate", &active.path, e))?;
                    file.write_all_at(&header, 0)
                        .map_err(|e| Error::io("write segment header", &active.path, e))?;
                    report.segment_reinitialized = Some(active.path.clone());
                    created_ms = now;
                    version = format::SEGMENT_FORMAT_VERSION;
                    summary = Summary::empty(active.base_offset);
                    index = IndexBuilder::new(active.base_offset, self.config.index_interval_bytes);
                }
                Action::CutTornTail(torn) => {
                    file.set_len(torn.position)
                        .map_err(|e| Error::io("truncate torn tail of", &active.path, e))?;
                    report.torn_tail = Some(torn.clone());
                }
                Action::RemoveLeftover { .. } => {}
            }
        }
        // Everything recovery keeps must be durable before a checkpoint can name it (after a
        // kill -9 the page cache may hold bytes that never reached the disk).
        file.sync_data()
            .map_err(|e| Error::io("fsync", &active.path, e))?;
        let end = EndPoint {
            next_offset: summary.end_offset,
            segment_base: active.base_offset,
            position: summary.end_position,
        };
        debug_assert_eq!(end.next_offset, decision.end_offset);
        active.set_file(file.clone());
        active.set_summary(summary);
        let checkpoint = decision.checkpoint.unwrap_or(Checkpoint {
            start_offset: decision.start_offset,
            segment_base_offset: end.segment_base,
            position: end.position,
            next_offset: end.next_offset,
        });
        if decision.checkpoint.is_some() {
            let path = dir.join(CHECKPOINT_FILE);
            atomic::write_file(storage, &path, &checkpoint.encode(), true)?;
            storage
                .sync_dir(dir)
                .map_err(|e| Error::io("fsync directory", dir, e))?;
        }
        report.segments = segments.len();
        report.end_offset = end.next_offset;
        log_torn_tail(report.torn_tail.as_ref());
        Ok(Opened {
            segments,
            active_file: file,
            end,
            created_ms,
            active_version: version,
            index,
            checkpoint,
            report,
        })
    }

    /// Opens read-only below the damage, writing nothing.
    fn open_damaged(&self, survey: &Survey, decision: &Decision) -> Result<Opened> {
        let Some(active_found) = survey.segments.last() else {
            // Nothing to read at all: there is no log to open, even read-only.
            return Err(recovery::corrupt_error(decision).expect("damage is not empty"));
        };
        let mut segments = BTreeMap::new();
        for found in &survey.segments {
            let segment = Segment::new(self.dir, found.base_offset);
            if let Some(scan) = &found.scan {
                if scan.invalid.is_empty() || found.base_offset == active_found.base_offset {
                    segment.set_summary(summary_of(scan));
                }
            }
            segments.insert(found.base_offset, Arc::new(segment));
        }
        let active = segments[&active_found.base_offset].clone();
        let file = self
            .storage
            .open(&active.path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", &active.path, e))?;
        active.set_file(file.clone());
        if active.info().is_none() {
            active.set_summary(Summary::empty(active.base_offset));
        }
        let active_info = active.info().expect("set above");
        let mut end = EndPoint {
            next_offset: active_info.end_offset,
            segment_base: active.base_offset,
            position: active_info.end_position,
        };
        if let Some(first) = decision
            .damage
            .iter()
            .filter(|d| d.blocks_reads_at().is_some())
            .min_by_key(|d| d.blocks_reads_at())
        {
            end = damaged_end(survey, first, end, self.storage);
        }
        let checkpoint = survey.valid_checkpoint().unwrap_or(Checkpoint {
            start_offset: decision.start_offset,
            segment_base_offset: end.segment_base,
            position: end.position,
            next_offset: end.next_offset,
        });
        let report = RecoveryReport {
            clean_shutdown: active_found.trusted_index.is_some(),
            segments: segments.len(),
            end_offset: end.next_offset,
            damage: decision.damage.clone(),
            ..RecoveryReport::default()
        };
        let (created_ms, version) = match active_found.header {
            HeaderState::Valid {
                version,
                created_ms,
            } => (created_ms, version),
            HeaderState::Damaged { .. } | HeaderState::NotChecked => {
                (0, format::SEGMENT_FORMAT_VERSION)
            }
        };
        Ok(Opened {
            segments,
            active_file: file,
            end,
            created_ms,
            active_version: version,
            index: active_found.scan.as_ref().map_or_else(
                || IndexBuilder::new(active.base_offset, self.config.index_interval_bytes),
                |scan| scan.index.clone(),
            ),
            checkpoint,
            report,
        })
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
            active_version: format::SEGMENT_FORMAT_VERSION,
            index: IndexBuilder::new(0, self.config.index_interval_bytes),
            checkpoint,
            report,
        })
    }
}

/// The summary of a segment's valid prefix, from its scan.
fn summary_of(scan: &survey::SegmentScan) -> Summary {
    Summary {
        end_offset: scan.next_offset,
        end_position: scan.valid_end,
        timestamp_max_ms: scan.index.timestamp_max_ms,
        entries: scan.index.entries.clone(),
    }
}

/// Where reads stop in a damaged log: at the damage that blocks reads first.
fn damaged_end(
    survey: &Survey,
    damage: &Damage,
    active_end: EndPoint,
    storage: &dyn Storage,
) -> EndPoint {
    let segment_of = |path: &Path| {
        survey
            .segments
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.base_offset)
    };
    match damage.kind {
        DamageKind::Frame { offset, .. } | DamageKind::Gap { from: offset, .. } => {
            match segment_of(&damage.file) {
                Some(segment_base) => EndPoint {
                    next_offset: offset,
                    segment_base,
                    position: damage.position,
                },
                None => active_end,
            }
        }
        DamageKind::MissingSegment { base_offset } => {
            // The segment before the missing one, read to its end (sealed segments are whole).
            match survey
                .segments
                .iter()
                .rev()
                .find(|s| s.base_offset < base_offset)
            {
                Some(before) => EndPoint {
                    next_offset: base_offset.min(active_end.next_offset),
                    segment_base: before.base_offset,
                    // An open survey does not read sealed segments before the checkpoint's:
                    // their length is the file's (sealed segments are whole).
                    position: storage
                        .open(&before.path, OpenMode::Read)
                        .and_then(|file| file.len())
                        .unwrap_or(before.file_bytes),
                },
                None => EndPoint {
                    next_offset: survey.segments[0].base_offset,
                    segment_base: survey.segments[0].base_offset,
                    position: SEGMENT_HEADER_LEN as u64,
                },
            }
        }
        _ => active_end,
    }
}

fn log_torn_tail(torn: Option<&TornTail>) {
    match torn {
        Some(torn) if torn.zeros_only => tracing::info!(
            file = %torn.file.display(),
            position = torn.position,
            bytes_cut = torn.bytes_cut,
            "recovery cut the zeros after the last frame (written ahead of the end, or never written)"
        ),
        Some(torn) => match torn.restored_to {
            Some(restored_to) => tracing::warn!(
                file = %torn.file.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                reason = %torn.reason,
                restored_to,
                "recovery cut a torn tail; the store's journal writes its acknowledged events back"
            ),
            None => tracing::warn!(
                file = %torn.file.display(),
                position = torn.position,
                bytes_cut = torn.bytes_cut,
                reason = %torn.reason,
                valid_frames_discarded = torn.valid_frames_discarded,
                "recovery cut a torn tail (never acknowledged)"
            ),
        },
        None => {}
    }
}
