//! The store's part of recovery: what the witnesses outside a partition's own files know of it
//! — the store's journal (frames it holds and writes back) and the committed offsets of groups
//! on durable topics (a group saw, so the log had made durable, every event before its
//! offset) — turned into a [`weir_log::Evidence`] for weir-log's one recovery decision.
//!
//! Open, `weir verify` ([`inspect`]) and `weir repair` ([`StoreInspection::repair_plan`]) all
//! read the same witnesses the same way ([`Witnesses`]) and judge every partition with
//! [`weir_log::recovery::decide`]; none of them decides on its own. Reading is separate from
//! changing: everything here reads only, except [`repair()`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use weir_log::recovery::{self, Decision, Health};
use weir_log::repair::{self, RepairPlan};
use weir_log::survey::{self, Depth, Survey};
use weir_log::{Evidence, Storage};

use crate::config::TopicSync;
use crate::error::{Error, Result};
use crate::journal_format::{self, JournalCorrupt};
use crate::topic::{self, TopicMeta, DELETED_PREFIX, TOPIC_FILE};

/// The journal directory under the data directory.
pub(crate) const JOURNAL_DIR: &str = "journal";
/// Suffix of journal files.
pub(crate) const JOURNAL_SUFFIX: &str = ".wjl";
/// Suffix of a journal file being created.
pub(crate) const JOURNAL_TMP_SUFFIX: &str = ".tmp";

/// The name of journal file `sequence`.
pub(crate) fn journal_file_name(sequence: u64) -> String {
    format!("{sequence:020}{JOURNAL_SUFFIX}")
}

/// One journaled frame, as a witness: which partition, which offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournaledFrame {
    /// The topic's id (`topic.json`).
    pub topic_id: u64,
    /// The partition.
    pub partition: u32,
    /// The frame's first offset.
    pub first_offset: u64,
    /// The offset after its last event.
    pub end_offset: u64,
}

/// What one journal file holds, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalFileSurvey {
    /// The file.
    pub path: PathBuf,
    /// Its sequence (from its name).
    pub sequence: u64,
    /// Its frames, in journal order (damaged blocks skipped).
    pub frames: Vec<JournaledFrame>,
    /// Blocks damaged where they were acknowledged (a valid block follows each), or a damaged
    /// header (then nothing of the file is read): corruption.
    pub damage: Vec<JournalCorrupt>,
    /// A torn tail (the group commit a crash interrupted, never acknowledged): its position
    /// and length; `None` if the file ends with its last block or with zeros.
    pub torn: Option<(u64, u64)>,
}

/// The store's journal, read without changing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalSurvey {
    /// Its files, in sequence order.
    pub files: Vec<JournalFileSurvey>,
    /// Files a crash left while creating them (`.tmp`): never took a block.
    pub interrupted: Vec<PathBuf>,
    /// Other files in the directory (ignored).
    pub foreign: Vec<PathBuf>,
}

impl JournalSurvey {
    /// Reads the journal directory under `root` (none: an empty survey).
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be read.
    pub fn read(storage: &dyn Storage, root: &Path) -> Result<JournalSurvey> {
        let dir = root.join(JOURNAL_DIR);
        let names = match storage.list_dir(&dir) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(Error::io("list", &dir, error)),
        };
        let mut survey = JournalSurvey::default();
        for name in names {
            let path = dir.join(&name);
            if name.ends_with(JOURNAL_TMP_SUFFIX) {
                survey.interrupted.push(path);
                continue;
            }
            let sequence = name
                .strip_suffix(JOURNAL_SUFFIX)
                .filter(|digits| digits.len() == 20)
                .and_then(|digits| digits.parse::<u64>().ok());
            let Some(sequence) = sequence else {
                survey.foreign.push(path);
                continue;
            };
            let bytes = topic::read_whole(storage, &path, usize::MAX as u64)?;
            survey.files.push(survey_file(path, sequence, &bytes));
        }
        survey.files.sort_by_key(|file| file.sequence);
        survey.interrupted.sort();
        Ok(survey)
    }

    /// Damage to acknowledged journal blocks, over all files: (file, damage).
    pub fn damage(&self) -> impl Iterator<Item = (&Path, &JournalCorrupt)> {
        self.files
            .iter()
            .flat_map(|file| file.damage.iter().map(move |d| (file.path.as_path(), d)))
    }
}

/// Decodes one journal file (salvaging what a damaged block leaves).
fn survey_file(path: PathBuf, sequence: u64, bytes: &[u8]) -> JournalFileSurvey {
    let mut found = JournalFileSurvey {
        path,
        sequence,
        frames: Vec::new(),
        damage: Vec::new(),
        torn: None,
    };
    let salvaged = match journal_format::salvage_journal(bytes) {
        Ok(salvaged) => salvaged,
        Err(corrupt) => {
            found.damage.push(corrupt);
            return found;
        }
    };
    found.damage = salvaged.damage;
    let journal = salvaged.journal;
    if journal.sequence != sequence {
        found.damage.push(JournalCorrupt {
            position: 0,
            reason: format!(
                "its header says sequence {}, its name {sequence}",
                journal.sequence
            ),
        });
        return found;
    }
    if !journal.tail_is_zeros {
        found.torn = Some((journal.valid_len, journal.torn_bytes));
    }
    for block in &journal.blocks {
        for entry in &block.entries {
            match weir_log::format::check_frame(entry.frame) {
                Ok(header) => found.frames.push(JournaledFrame {
                    topic_id: entry.topic_id,
                    partition: entry.partition,
                    first_offset: header.base_offset,
                    end_offset: header.end_offset(),
                }),
                Err(error) => found.damage.push(JournalCorrupt {
                    position: block.position,
                    reason: format!("the block holds a frame that is not valid: {error}"),
                }),
            }
        }
    }
    found
}

/// The offset ranges the journal holds for one partition (each a run of consecutive frames),
/// and the journal file of the last one.
type JournalRuns = (Vec<Range<u64>>, PathBuf);

/// What the witnesses outside the partitions know: the journal's frames and the groups'
/// committed offsets.
#[derive(Debug, Clone, Default)]
pub struct Witnesses {
    /// Per (topic id, partition): the offset ranges the journal holds (restorable), and the
    /// journal file of the last one.
    journal: HashMap<(u64, u32), JournalRuns>,
    /// Per (topic name, partition): the highest committed offset and the group that committed
    /// it.
    committed: HashMap<(String, u32), (u64, String)>,
    /// The open is `weir repair`'s (`StoreConfig::journal_repair`): the journal's replay then
    /// records as lost what a partition lacks before a journaled frame, so everything up to the
    /// journal's last frame counts as restorable.
    repairing: bool,
}

impl Witnesses {
    /// The witnesses as `weir repair`'s open takes them (see [`Witnesses::repairing`]).
    #[must_use]
    pub fn repairing(mut self, repairing: bool) -> Witnesses {
        self.repairing = repairing;
        self
    }

    /// Reads the journal's frames.
    pub fn from_journal(journal: &JournalSurvey) -> Witnesses {
        let mut witnesses = Witnesses::default();
        for file in &journal.files {
            for frame in &file.frames {
                let (runs, last_file) = witnesses
                    .journal
                    .entry((frame.topic_id, frame.partition))
                    .or_insert_with(|| (Vec::new(), file.path.clone()));
                match runs.last_mut() {
                    Some(run) if run.end == frame.first_offset => run.end = frame.end_offset,
                    _ => runs.push(frame.first_offset..frame.end_offset),
                }
                last_file.clone_from(&file.path);
            }
        }
        witnesses
    }

    /// Adds the committed offsets of every group, but for values that fail their checks.
    pub fn add_committed(&mut self, offsets: &weir_offsets::OffsetStore) -> Result<()> {
        // The same reading `weir verify` gets from `weir_offsets::inspect`: every readable
        // value, only the corrupt ones left out (not their whole group).
        self.add_descriptions(&offsets.readable_groups()?);
        Ok(())
    }

    /// Adds the committed offsets of these groups.
    fn add_descriptions(&mut self, groups: &[weir_offsets::GroupDescription]) {
        for description in groups {
            for committed in &description.partitions {
                let slot = self
                    .committed
                    .entry((committed.topic.clone(), committed.partition))
                    .or_insert((0, String::new()));
                if committed.committed.offset > slot.0 {
                    *slot = (committed.committed.offset, description.group.clone());
                }
            }
        }
    }

    /// What the witnesses know of one partition. Committed offsets count only for durable
    /// topics: under a lossy policy a group may have seen events a power cut took back.
    pub(crate) fn evidence(&self, meta: &TopicMeta, partition: u32) -> Evidence {
        let mut evidence = Evidence::default();
        if let Some((runs, file)) = self.journal.get(&(meta.id, partition)) {
            evidence.acknowledged_end = runs.iter().map(|r| r.end).max().unwrap_or(0);
            if self.repairing {
                // Repair's replay writes back every journaled frame and marks the holes before
                // them lost: nothing up to the journal's end is left missing.
                evidence.restorable = std::iter::once(0..evidence.acknowledged_end).collect();
            } else {
                evidence.restorable.clone_from(runs);
            }
            evidence.acknowledged_by = format!("the store's journal ({})", file.display());
        }
        if meta.config.sync == TopicSync::Always {
            if let Some((offset, group)) = self.committed.get(&(meta.name.clone(), partition)) {
                if *offset > evidence.acknowledged_end {
                    evidence.acknowledged_end = *offset;
                    evidence.acknowledged_by = format!("group {group:?}'s committed offset");
                }
            }
        }
        evidence
    }
}

/// One partition of an inspected data directory.
#[derive(Debug, Clone)]
pub struct PartitionInspection {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Its directory.
    pub dir: PathBuf,
    /// What the witnesses know of it.
    pub evidence: Evidence,
    /// What the next open decides: the same survey and decision the open runs.
    pub at_open: Decision,
    /// What a full read of every frame and index finds.
    pub full_survey: Survey,
    /// The decision over the full survey.
    pub full: Decision,
}

impl PartitionInspection {
    /// The worse of the two verdicts.
    pub fn health(&self) -> Health {
        let full = match self.full.health() {
            // A stale or missing index is rebuilt when first read: repairable.
            Health::Clean
                if self
                    .full_survey
                    .segments
                    .iter()
                    .any(|s| s.index.needs_rebuild()) =>
            {
                Health::Repairable
            }
            other => other,
        };
        self.at_open.health().max(full)
    }
}

/// A partition whose directory is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The directory that should be there.
    pub dir: PathBuf,
    /// What the witnesses know it held.
    pub evidence: Evidence,
}

/// A problem outside the partitions' logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreProblem {
    /// How bad.
    pub health: Health,
    /// The store does not open until it is repaired (it refuses before writing anything).
    pub refuses_open: bool,
    /// The file.
    pub path: PathBuf,
    /// What is wrong, and what the next open or `weir repair` does about it.
    pub text: String,
}

/// A whole data directory, read without changing it: what `weir verify` prints and `weir
/// repair` plans from.
#[derive(Debug, Clone)]
pub struct StoreInspection {
    /// The data directory.
    pub root: PathBuf,
    /// Every partition of every topic whose metadata reads.
    pub partitions: Vec<PartitionInspection>,
    /// The journal.
    pub journal: JournalSurvey,
    /// Problems outside the partitions' logs.
    pub problems: Vec<StoreProblem>,
    /// Partition directories that are missing.
    pub missing_partitions: Vec<MissingPartition>,
    /// The offsets store's groups, if it opened.
    pub groups: Option<usize>,
    /// The offsets store does not open (its witness refuses it, or sled cannot read it).
    pub offsets_refused: bool,
    /// Committed offsets that fail their checks.
    pub offsets_corrupt_values: usize,
}

impl StoreInspection {
    /// True if the store does not open until it is repaired (damage to the journal, a topic's
    /// metadata, a partition directory or the offsets store): the open refuses before it
    /// writes anything.
    pub fn refuses_open(&self) -> bool {
        self.problems.iter().any(|problem| problem.refuses_open)
    }

    /// The worst problem found.
    pub fn health(&self) -> Health {
        self.partitions
            .iter()
            .map(PartitionInspection::health)
            .chain(self.problems.iter().map(|p| p.health))
            .max()
            .unwrap_or(Health::Clean)
    }

    /// Plans the repair of every damaged partition (pure).
    pub fn repair_plan(&self) -> Vec<(String, u32, RepairPlan)> {
        self.partitions
            .iter()
            .filter(|p| p.health() != Health::Clean)
            .map(|p| {
                (
                    p.topic.clone(),
                    p.partition,
                    repair::plan(&p.full_survey, &p.evidence),
                )
            })
            .filter(|(_, _, plan)| !plan.is_empty() || !plan.unrepairable.is_empty())
            .collect()
    }
}

/// Inspects the data directory `root` read-only (`weir verify`): every partition surveyed as
/// the next open would and in full, judged with the witnesses the open would have; the
/// journal; the offsets store (opened on a copy, so that sled writes nothing here).
///
/// # Errors
/// [`Error::Io`] if something cannot be read at all. Damage is in the inspection.
pub fn inspect(root: &Path) -> Result<StoreInspection> {
    inspect_with(root, &crate::StoreConfig::default())
}

/// [`inspect`] with the store's settings (its storage: fault tests pass a simulated one; its
/// limits, which topics' settings are checked against).
///
/// # Errors
/// As [`inspect`].
pub fn inspect_with(root: &Path, config: &crate::StoreConfig) -> Result<StoreInspection> {
    let storage = &*config.storage;
    let mut inspection = StoreInspection {
        root: root.to_path_buf(),
        partitions: Vec::new(),
        journal: JournalSurvey::read(storage, root)?,
        problems: Vec::new(),
        missing_partitions: Vec::new(),
        groups: None,
        offsets_refused: false,
        offsets_corrupt_values: 0,
    };
    for (path, corrupt) in inspection.journal.damage() {
        inspection.problems.push(StoreProblem {
            health: Health::Damaged,
            refuses_open: true,
            path: path.to_path_buf(),
            text: format!(
                "journal corruption at byte {}: {} (the store will not open; `weir repair` \
                 writes back every valid block and records the events the damaged one held, \
                 where the partitions lack them, as lost)",
                corrupt.position, corrupt.reason
            ),
        });
    }
    for file in &inspection.journal.files {
        if file.damage.is_empty() {
            let mut text = format!(
                "{} journaled append(s) of a run that did not close cleanly; the next open \
                 writes back what the partitions lack",
                file.frames.len()
            );
            if let Some((position, bytes)) = file.torn {
                text.push_str(&format!(
                    ", and cuts a torn tail of {bytes} byte(s) at byte {position} (never \
                     acknowledged)"
                ));
            }
            inspection.problems.push(StoreProblem {
                health: Health::Repairable,
                refuses_open: false,
                path: file.path.clone(),
                text,
            });
        }
    }
    for path in &inspection.journal.interrupted {
        inspection.problems.push(StoreProblem {
            health: Health::Repairable,
            refuses_open: false,
            path: path.clone(),
            text: "an interrupted creation of a journal file; the next open removes it".into(),
        });
    }
    let mut witnesses = Witnesses::from_journal(&inspection.journal);
    inspect_offsets(root, &mut inspection, &mut witnesses)?;
    let topics_dir = root.join("topics");
    let names = match storage.list_dir(&topics_dir) {
        Ok(mut names) => {
            names.sort();
            names
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(Error::io("list", &topics_dir, error)),
    };
    for name in names {
        let dir = topics_dir.join(&name);
        if storage.list_dir(&dir).is_err() {
            continue;
        }
        if !name.starts_with(DELETED_PREFIX)
            && !topic::meta_exists(storage, &dir)?
            && topic::holds_events(storage, &dir)?
        {
            inspection.problems.push(StoreProblem {
                health: Health::Damaged,
                refuses_open: true,
                path: dir.join(TOPIC_FILE),
                text: "the topic's metadata file is missing, but its partitions hold events (the \
                       store will not open; restore topic.json from a backup, or write it again \
                       by hand from docs/format.md)"
                    .into(),
            });
            continue;
        }
        if name.starts_with(DELETED_PREFIX) || !topic::meta_exists(storage, &dir)? {
            inspection.problems.push(StoreProblem {
                health: Health::Repairable,
                refuses_open: false,
                path: dir.clone(),
                text: format!(
                    "an interrupted topic {}; the next open removes it",
                    if name.starts_with(DELETED_PREFIX) {
                        "deletion"
                    } else {
                        "creation"
                    }
                ),
            });
            continue;
        }
        let meta = match topic::read_checked_meta(storage, &dir, config) {
            Ok(meta) => meta,
            Err(error) => {
                inspection.problems.push(StoreProblem {
                    health: Health::Damaged,
                    refuses_open: true,
                    path: dir.join(TOPIC_FILE),
                    text: format!("{error} (the store will not open)"),
                });
                continue;
            }
        };
        for partition in 0..meta.config.partitions {
            let partition_dir = dir.join(partition.to_string());
            let evidence = witnesses.evidence(&meta, partition);
            if storage.list_dir(&partition_dir).is_err() {
                inspection.missing_partitions.push(MissingPartition {
                    topic: name.clone(),
                    partition,
                    dir: partition_dir.clone(),
                    evidence: evidence.clone(),
                });
                inspection.problems.push(StoreProblem {
                    health: Health::Damaged,
                    refuses_open: true,
                    path: partition_dir,
                    text: format!(
                        "the partition's directory is missing: its events are lost (the store \
                         will not open; `weir repair` creates it{})",
                        if evidence.acknowledged_end > 0 {
                            format!(
                                " with offsets 0..{} marked lost, as {} says they were \
                                 acknowledged",
                                evidence.acknowledged_end, evidence.acknowledged_by
                            )
                        } else {
                            " empty".to_string()
                        }
                    ),
                });
                continue;
            }
            let surveyed = |depth| {
                survey::survey(storage, &partition_dir, depth)
                    .map_err(|e| Error::from_log(&name, partition, e))
            };
            let at_open = recovery::decide(&surveyed(Depth::Open)?, &evidence);
            let full_survey = surveyed(Depth::Full)?;
            let full = recovery::decide(&full_survey, &evidence);
            inspection.partitions.push(PartitionInspection {
                topic: name.clone(),
                partition,
                dir: partition_dir,
                evidence,
                at_open,
                full_survey,
                full,
            });
        }
    }
    Ok(inspection)
}

/// Inspects the offsets store and its witness (weir-offsets opens a copy: sled writes even
/// when it only reads) and adds the committed offsets to the witnesses; a store that would not
/// open, or a damaged value, is a problem.
fn inspect_offsets(
    root: &Path,
    inspection: &mut StoreInspection,
    witnesses: &mut Witnesses,
) -> Result<()> {
    let config = crate::store::offsets_config(root);
    let dir = config.directory.clone();
    if !dir.is_dir() && !root.join(crate::OFFSETS_WITNESS_FILE).exists() {
        // A data directory that never held groups.
        return Ok(());
    }
    let found = weir_offsets::inspect(&config)?;
    if let Some(error) = &found.open_error {
        inspection.offsets_refused = true;
        inspection.problems.push(StoreProblem {
            health: Health::Damaged,
            refuses_open: true,
            path: dir.clone(),
            text: format!(
                "the offsets store does not open: {error} (the store will not open; `weir \
                 repair` accepts what is there, or moves a store sled cannot read aside: \
                 groups then restart from the log start, events are delivered again, never \
                 skipped)"
            ),
        });
        return Ok(());
    }
    for corrupt in &found.corrupt {
        inspection.offsets_corrupt_values += 1;
        inspection.problems.push(StoreProblem {
            health: Health::Damaged,
            refuses_open: false,
            path: dir.clone(),
            text: format!(
                "a committed offset is damaged ({}: {}): its group cannot read it (`weir group \
                 reset` overwrites it; `weir repair` removes it, and the group reads those \
                 partitions again from the log start)",
                corrupt.key, corrupt.problem
            ),
        });
    }
    inspection.groups = Some(found.groups.len());
    witnesses.add_descriptions(&found.groups);
    Ok(())
}

/// What [`repair()`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Per partition repaired: its plan (carried out).
    pub partitions: Vec<(String, u32, RepairPlan)>,
    /// Partition directories created (they were missing), with the offsets marked lost.
    pub partitions_created: Vec<(String, u32, u64)>,
    /// Where the damaged offsets store was moved, if it was.
    pub offsets_moved_to: Option<PathBuf>,
    /// What was done to the offsets store, in words.
    pub offsets: Vec<String>,
    /// What the store's open afterwards did (journal replay, events lost to damaged journal
    /// blocks).
    pub recovery: crate::store::StoreRecoveryReport,
    /// What `weir verify` says of the directory afterwards (clean, unless something could not
    /// be repaired).
    pub after: Health,
}

/// Repairs the stopped data directory `root` from `inspection` (taken just before: the caller
/// lets go of the data directory's lock it inspected under, and this takes it): carries out every partition's plan, creates missing partition directories
/// (marking what witnesses say they held as lost), moves a damaged offsets store aside, then
/// opens the store once, salvaging the journal (events a damaged journal block held and the
/// partitions lack are recorded as lost), and closes it.
///
/// # Errors
/// [`Error::Io`] and [`Error::Log`] naming what failed; what was done stays done, and another
/// run finishes the job.
pub fn repair(
    root: &Path,
    inspection: &StoreInspection,
    now_ms: u64,
    config: &crate::StoreConfig,
) -> Result<RepairOutcome> {
    let storage = &*config.storage;
    let mut outcome = RepairOutcome::default();
    let lock_path = root.join(crate::LOCK_FILE);
    let lock = storage.lock(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: lock_path.clone(),
        },
        _ => Error::io("lock", &lock_path, e),
    })?;
    for (topic, partition, plan) in inspection.repair_plan() {
        repair::apply(storage, &plan, now_ms).map_err(|e| Error::from_log(&topic, partition, e))?;
        outcome.partitions.push((topic, partition, plan));
    }
    for missing in &inspection.missing_partitions {
        let (topic, partition) = (&missing.topic, missing.partition);
        storage
            .create_dir_all(&missing.dir)
            .map_err(|e| Error::io("create", &missing.dir, e))?;
        let lost = missing.evidence.acknowledged_end;
        if lost > 0 {
            let log = weir_log::Log::open_with(
                &missing.dir,
                weir_log::LogConfig::default(),
                config.storage.clone(),
                config.clock.clone(),
            )
            .map_err(|e| Error::from_log(topic, partition, e))?;
            log.append_lost(0, lost)
                .and_then(|()| log.sync_segment())
                .and_then(|()| log.close())
                .map_err(|e| Error::from_log(topic, partition, e))?;
        }
        outcome
            .partitions_created
            .push((topic.clone(), partition, lost));
    }
    if inspection.offsets_refused || inspection.offsets_corrupt_values > 0 {
        outcome.offsets = repair_offsets(root, now_ms, &mut outcome)?;
    }
    // The store's open takes the lock itself; recovery does the rest.
    drop(lock);
    let mut repairing = config.clone();
    repairing.journal_repair = true;
    let store = crate::Store::builder(root).config(repairing).open()?;
    outcome.recovery = store.recovery_report().clone();
    store.close()?;
    drop(store);
    // Say how it ended: the same inspection `weir verify` makes.
    outcome.after = inspect_with(root, config)?.health();
    Ok(outcome)
}

/// Mends the offsets store: a store sled cannot read is moved aside (every group restarts from
/// the log start), damaged values are removed (their partitions restart), and the witness is
/// made to accept what is there.
fn repair_offsets(root: &Path, now_ms: u64, outcome: &mut RepairOutcome) -> Result<Vec<String>> {
    let config = crate::store::offsets_config(root);
    let mut done = Vec::new();
    let unreadable = match weir_offsets::repair_witness(&config) {
        Ok(repaired) => {
            done.push(format!(
                "the witness now names commit {} of store {:#018x}{}",
                repaired.after.commit_seq,
                repaired.after.store_id,
                if repaired.store_created {
                    " (a new, empty store: every group restarts from the log start)"
                } else {
                    " (the store as it is: groups whose offsets it lost read those events again)"
                }
            ));
            false
        }
        Err(weir_offsets::Error::Open { .. } | weir_offsets::Error::Damaged { .. }) => true,
        Err(error) => return Err(error.into()),
    };
    if unreadable {
        let aside = root.join(format!("offsets.damaged-{now_ms}"));
        std::fs::rename(&config.directory, &aside)
            .map_err(|e| Error::io("move aside", &config.directory, e))?;
        topic::sync_dir(&weir_log::StdStorage, root)?;
        let repaired = weir_offsets::repair_witness(&config)?;
        done.push(format!(
            "the offsets store sled cannot read was moved to {}; a new one was created (store \
             {:#018x}): every group restarts from the log start",
            aside.display(),
            repaired.after.store_id
        ));
        outcome.offsets_moved_to = Some(aside);
    }
    let store = weir_offsets::OffsetStore::open(&config)?;
    let removed = store.remove_corrupt()?;
    if removed > 0 {
        done.push(format!(
            "{removed} damaged value(s) removed: their groups read those partitions again from \
             the log start"
        ));
    }
    store.close()?;
    Ok(done)
}
