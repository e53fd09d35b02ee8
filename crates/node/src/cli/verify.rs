//! `weir verify --data-dir D` and `weir repair --data-dir D`.
//!
//! Verify is an offline, read-only check of a stopped node's data directory: every segment and
//! index of every partition (through `weir_log::inspect`, which reuses recovery's own scan and
//! decision), every topic's metadata, and the offsets store (opened on a copy in a temporary
//! directory, so that sled writes nothing in the original). It holds the data directory's lock
//! while it runs, so no node can start under it, and writes nothing.
//!
//! Exit codes: 0 clean, 1 repairable (recovery at the next open fixes it without losing an
//! acknowledged event: a torn tail, an index to rebuild, leftovers), 2 corrupt (acknowledged
//! data is damaged; the node refuses to open), 3 the check could not run.
//!
//! Repair is separate and explicit: it prints what it would cut and what is lost, and changes
//! something only with `--yes`. It cuts a corrupt partition at its first damage (truncating that
//! segment, removing the segments after it, rewriting the recovery checkpoint), moves a damaged
//! offsets store aside, then opens the store once so recovery does the rest.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_log::format::{Checkpoint, SegmentHeader, SEGMENT_HEADER_LEN};
use weir_log::inspect::{self, CheckpointState, Health, PartitionInspection};

use crate::cli::exit::{self, CANNOT_CHECK};

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The data directory of a stopped node.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Also list every segment with its frames, offsets and index state.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    /// The data directory of a stopped node.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Do it: without this flag repair only prints what it would do.
    #[arg(long)]
    yes: bool,
}

/// What verify found in a whole data directory.
#[derive(Debug, Default)]
struct Report {
    partitions: Vec<(String, u32, PartitionInspection)>,
    /// Problems outside the partitions' logs: (health, description).
    other: Vec<(Health, String)>,
    /// Offsets store state: `Ok(groups)` or why it does not open.
    offsets: Option<Result<usize, String>>,
    /// The offsets store does not open (repair moves it aside).
    offsets_damaged: bool,
}

impl Report {
    fn health(&self) -> Health {
        self.partitions
            .iter()
            .map(|(_, _, p)| p.health())
            .chain(self.other.iter().map(|(h, _)| *h))
            .max()
            .unwrap_or(Health::Clean)
    }
}

fn exit_code(health: Health) -> i32 {
    match health {
        Health::Clean => 0,
        Health::Repairable => 1,
        Health::Corrupt => 2,
    }
}

fn cannot_check(error: anyhow::Error) -> anyhow::Error {
    exit::with_code(CANNOT_CHECK, format!("{error:#}"))
}

pub(crate) fn verify(args: &VerifyArgs) -> anyhow::Result<i32> {
    crate::cli::init_logging();
    let _lock = lock_data_dir(&args.data_dir).map_err(cannot_check)?;
    let report = inspect_data_dir(&args.data_dir).map_err(cannot_check)?;
    let mut out = std::io::stdout().lock();
    print_report(&mut out, &report, args.verbose)?;
    let health = report.health();
    writeln!(
        out,
        "result: {} (exit code {})",
        match health {
            Health::Clean => "clean",
            Health::Repairable =>
                "repairable: the next open of the store fixes it without losing an acknowledged event",
            Health::Corrupt =>
                "corrupt: acknowledged data is damaged; the store will not open until `weir repair` cuts it",
        },
        exit_code(health)
    )?;
    Ok(exit_code(health))
}

/// Takes the data directory's lock (without creating anything), so no node starts under us.
fn lock_data_dir(root: &Path) -> anyhow::Result<Option<fs::File>> {
    if !root.is_dir() {
        anyhow::bail!("no data directory at {}", root.display());
    }
    let path = root.join(weir_store::LOCK_FILE);
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot open {}", path.display())),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
            "the data directory {} is in use (a running `weir serve`?): stop the node first",
            root.display()
        ),
        Err(fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn inspect_data_dir(root: &Path) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let topics_dir = root.join("topics");
    if topics_dir.is_dir() {
        for name in sorted_names(&topics_dir)? {
            inspect_topic(&topics_dir, &name, &mut report)?;
        }
    } else if root.join("offsets").exists() {
        report.other.push((
            Health::Corrupt,
            format!("{} is missing", topics_dir.display()),
        ));
    }
    inspect_journal(root, &mut report)?;
    inspect_offsets(root, &mut report)?;
    Ok(report)
}

/// The names in a directory, sorted.
fn sorted_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    names.sort();
    Ok(names)
}

/// The store's journal: files a run that did not close cleanly left (the next open writes back
/// what the partitions lack, then removes them); damage to an acknowledged block is corruption.
fn inspect_journal(root: &Path, report: &mut Report) -> anyhow::Result<()> {
    let dir = root.join("journal");
    if !dir.is_dir() {
        return Ok(());
    }
    for name in sorted_names(&dir)? {
        let path = dir.join(&name);
        if name.ends_with(".tmp") {
            report.other.push((
                Health::Repairable,
                format!(
                    "{}: an interrupted creation of a journal file; the next open removes it",
                    path.display()
                ),
            ));
            continue;
        }
        if !name.ends_with(".wjl") {
            continue;
        }
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        match weir_store::journal_format::decode_journal(&bytes) {
            Err(corrupt) => report.other.push((
                Health::Corrupt,
                format!("{}: corruption {corrupt}", path.display()),
            )),
            Ok(decoded) => {
                let entries: usize = decoded.blocks.iter().map(|b| b.entries.len()).sum();
                let mut text = format!(
                    "{}: {entries} journaled append(s) of a run that did not close cleanly; the next open writes back what the partitions lack",
                    path.display()
                );
                if !decoded.tail_is_zeros {
                    text.push_str(&format!(
                        ", and cuts a torn tail of {} byte(s) at byte {} (never acknowledged)",
                        decoded.torn_bytes, decoded.valid_len
                    ));
                }
                report.other.push((Health::Repairable, text));
            }
        }
    }
    Ok(())
}

fn inspect_topic(topics_dir: &Path, name: &str, report: &mut Report) -> anyhow::Result<()> {
    let dir = topics_dir.join(name);
    if !dir.is_dir() {
        return Ok(());
    }
    let meta_path = dir.join("topic.json");
    if name.starts_with(".deleted-") || !meta_path.exists() {
        report.other.push((
            Health::Repairable,
            format!(
                "{}: an interrupted topic {}; the next open removes it",
                dir.display(),
                if name.starts_with(".deleted-") {
                    "deletion"
                } else {
                    "creation"
                }
            ),
        ));
        return Ok(());
    }
    let partitions = match read_partition_count(&meta_path) {
        Ok(partitions) => partitions,
        Err(error) => {
            report.other.push((
                Health::Corrupt,
                format!("{}: corruption at byte 0: {error:#}", meta_path.display()),
            ));
            return Ok(());
        }
    };
    for partition in 0..partitions {
        let partition_dir = dir.join(partition.to_string());
        if !partition_dir.is_dir() {
            report.other.push((
                Health::Corrupt,
                format!(
                    "{}: the partition's directory is missing (its events are lost; the next open creates it empty)",
                    partition_dir.display()
                ),
            ));
            continue;
        }
        let inspection = inspect::inspect(&partition_dir)
            .with_context(|| format!("cannot inspect {}", partition_dir.display()))?;
        report
            .partitions
            .push((name.to_string(), partition, inspection));
    }
    Ok(())
}

fn read_partition_count(path: &Path) -> anyhow::Result<u32> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).context("the topic metadata is not valid JSON")?;
    value["config"]["partitions"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p >= 1)
        .context("the topic metadata names no partition count")
}

/// Opens a copy of the offsets store, so that sled cannot write in the original.
fn inspect_offsets(root: &Path, report: &mut Report) -> anyhow::Result<()> {
    let dir = root.join("offsets");
    if !dir.is_dir() {
        if !report.partitions.is_empty() {
            report.other.push((
                Health::Repairable,
                format!(
                    "{}: the offsets store is missing; the next open starts an empty one and every group restarts from the beginning (events are delivered again, never skipped)",
                    dir.display()
                ),
            ));
        }
        return Ok(());
    }
    let scratch = tempfile::tempdir().context("cannot make a temporary directory")?;
    let copy = scratch.path().join("offsets");
    copy_dir(&dir, &copy)?;
    let opened = weir_offsets::OffsetStore::open(&weir_offsets::Config::new(&copy));
    let store = match opened {
        Ok(store) => store,
        Err(error) => {
            report.offsets = Some(Err(error.to_string()));
            report.offsets_damaged = true;
            report.other.push((
                Health::Corrupt,
                format!(
                    "{}: the offsets store does not open: {error}",
                    dir.display()
                ),
            ));
            return Ok(());
        }
    };
    let groups = match store.list_groups() {
        Ok(groups) => groups,
        Err(error) => {
            report.offsets_damaged = true;
            report.other.push((
                Health::Corrupt,
                format!("{}: cannot list the groups: {error}", dir.display()),
            ));
            return Ok(());
        }
    };
    for group in &groups {
        match store.describe_group(group) {
            Err(error) => report.other.push((
                Health::Corrupt,
                format!(
                    "{}: group {group:?}: {error} (`weir group reset` or `weir group delete` overwrites it)",
                    dir.display()
                ),
            )),
            Ok(description) => {
                for committed in description.partitions {
                    let end = report
                        .partitions
                        .iter()
                        .find(|(t, p, _)| *t == committed.topic && *p == committed.partition)
                        .map(|(_, _, inspection)| inspection.end_offset);
                    if let Some(end) = end {
                        if committed.committed.offset > end {
                            report.other.push((
                                Health::Repairable,
                                format!(
                                    "group {group:?} has committed offset {} on {}/{} past its end {end}; the next open clamps it",
                                    committed.committed.offset, committed.topic, committed.partition
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    report.offsets = Some(Ok(groups.len()));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Clean => "clean",
        Health::Repairable => "repairable",
        Health::Corrupt => "CORRUPT",
    }
}

fn print_report(out: &mut impl Write, report: &Report, verbose: bool) -> std::io::Result<()> {
    for (topic, partition, inspection) in &report.partitions {
        let frames: u64 = inspection.segments.iter().map(|s| s.frames).sum();
        writeln!(
            out,
            "{topic}/{partition}: {} — {} segment(s), {frames} frame(s), offsets {}..{}",
            health_word(inspection.health()),
            inspection.segments.len(),
            inspection.start_offset,
            inspection.end_offset
        )?;
        if verbose {
            let checkpoint = match &inspection.checkpoint {
                CheckpointState::Missing => "missing".to_string(),
                CheckpointState::Valid(c) => format!(
                    "segment {} byte {} (next offset {}), start offset {}",
                    c.segment_base_offset, c.position, c.next_offset, c.start_offset
                ),
                CheckpointState::Damaged { reason } => format!("damaged: {reason}"),
            };
            writeln!(
                out,
                "  checkpoint: {checkpoint}; clean shutdown: {}",
                inspection.clean_shutdown
            )?;
            for segment in &inspection.segments {
                writeln!(
                    out,
                    "  {}{}: {} bytes, {} frame(s), offsets {}..{}, valid to byte {}, index {:?}",
                    segment.path.display(),
                    if segment.active { " (active)" } else { "" },
                    segment.file_bytes,
                    segment.frames,
                    segment.base_offset,
                    segment.next_offset,
                    segment.valid_end,
                    segment.index
                )?;
            }
        }
        for segment in &inspection.segments {
            if let Some(torn) = &segment.torn_tail {
                writeln!(
                    out,
                    "  torn tail: {} at byte {} ({} bytes): {}",
                    segment.path.display(),
                    torn.position,
                    torn.bytes,
                    torn.reason
                )?;
            }
        }
        for corruption in inspection.log_corruption.iter().chain(
            inspection
                .segments
                .iter()
                .filter_map(|s| s.corruption.as_ref()),
        ) {
            writeln!(
                out,
                "  corruption: {} at byte {}: {}",
                corruption.file.display(),
                corruption.position,
                corruption.reason
            )?;
        }
        for action in inspection.recovery_actions() {
            writeln!(out, "  recovery would: {action}")?;
        }
    }
    match &report.offsets {
        Some(Ok(groups)) => writeln!(out, "offsets: opens, {groups} group(s)")?,
        Some(Err(error)) => writeln!(out, "offsets: does not open: {error}")?,
        None => {}
    }
    for (health, problem) in &report.other {
        writeln!(out, "{}: {problem}", health_word(*health))?;
    }
    Ok(())
}

pub(crate) fn repair(args: &RepairArgs) -> anyhow::Result<i32> {
    crate::cli::init_logging();
    let lock = lock_data_dir(&args.data_dir).map_err(cannot_check)?;
    let report = inspect_data_dir(&args.data_dir).map_err(cannot_check)?;
    let mut out = std::io::stdout().lock();
    if report.health() == Health::Clean {
        writeln!(out, "nothing to repair: the data directory is clean")?;
        return Ok(0);
    }
    let mut cuts = Vec::new();
    for (topic, partition, inspection) in &report.partitions {
        if let Some(cut) = plan_cut(inspection) {
            writeln!(out, "{topic}/{partition}: {}", cut.describe())?;
            cuts.push(cut);
        } else {
            for action in inspection.recovery_actions() {
                writeln!(out, "{topic}/{partition}: the next open will {action}")?;
            }
        }
    }
    let offsets_aside = args
        .data_dir
        .join(format!("offsets.damaged-{}", crate::cli::time::now_ms()));
    if report.offsets_damaged {
        writeln!(
            out,
            "offsets: move the damaged store to {}; every group restarts from the beginning (events are delivered again, never skipped)",
            offsets_aside.display()
        )?;
    }
    for (health, problem) in &report.other {
        if *health == Health::Repairable {
            writeln!(out, "the next open will fix: {problem}")?;
        } else if !problem.contains("offsets store does not open") {
            writeln!(out, "not repaired by this command: {problem}")?;
        }
    }
    if !args.yes {
        out.flush()?;
        return Err(exit::with_code(
            exit::ERROR,
            "nothing was changed: run again with --yes to do the above",
        ));
    }
    for cut in &cuts {
        cut.apply()
            .with_context(|| format!("cutting {}", cut.segment.display()))?;
    }
    if report.offsets_damaged {
        fs::rename(args.data_dir.join("offsets"), &offsets_aside).with_context(|| {
            format!(
                "cannot move the offsets store to {}",
                offsets_aside.display()
            )
        })?;
    }
    drop(lock);
    // Recovery does the rest (torn tails, indexes, leftovers, clamping offsets).
    // A cut partition may end before frames the journal holds for it: those are lost with
    // the cut, so the open skips them (and says so) instead of refusing.
    let store = weir_store::Store::builder(&args.data_dir)
        .journal_skip_gaps(!cuts.is_empty())
        .open()
        .with_context(|| format!("opening {} after the repair", args.data_dir.display()))?;
    let recovery = store.recovery_report().clone();
    for (topic, partition, first, events) in &recovery.journal.gaps_skipped {
        writeln!(
            out,
            "{topic}/{partition}: {events} journaled event(s) from offset {first} lost with the cut (events before them are gone)"
        )?;
    }
    store
        .close()
        .context("closing the store after the repair")?;
    writeln!(
        out,
        "repaired: {} partition(s) cut, {} torn tail(s) cut at open, {} committed offset(s) clamped",
        cuts.len(),
        recovery.torn_tails() + recovery.zero_tails(),
        recovery.offsets_clamped.len()
    )?;
    Ok(0)
}

/// How a corrupt partition is cut: at the first damage, keeping everything before it.
#[derive(Debug)]
struct Cut {
    dir: PathBuf,
    /// The segment cut (its header is rewritten if it was damaged).
    segment: PathBuf,
    base_offset: u64,
    position: u64,
    rewrite_header: bool,
    /// Segments removed whole (with their indexes).
    removed: Vec<PathBuf>,
    /// The new recovery checkpoint.
    checkpoint: Checkpoint,
    /// What is lost: offsets `checkpoint.next_offset..lost_end` (an estimate from the valid
    /// frames found after the damage), and bytes.
    lost_end: u64,
    lost_bytes: u64,
    reason: String,
}

impl Cut {
    fn describe(&self) -> String {
        let mut text = format!(
            "cut {} at byte {} ({}), removing {} byte(s)",
            self.segment.display(),
            self.position,
            self.reason,
            self.lost_bytes
        );
        if !self.removed.is_empty() {
            text.push_str(&format!(" and {} later segment(s)", self.removed.len()));
        }
        if self.lost_end > self.checkpoint.next_offset {
            text.push_str(&format!(
                "; events {}..{} (at least) are LOST",
                self.checkpoint.next_offset, self.lost_end
            ));
        } else {
            text.push_str(&format!(
                "; every event from offset {} on is LOST",
                self.checkpoint.next_offset
            ));
        }
        text
    }

    fn apply(&self) -> anyhow::Result<()> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.segment)
            .with_context(|| format!("cannot open {}", self.segment.display()))?;
        if self.rewrite_header {
            file.set_len(0)?;
            let header = SegmentHeader {
                base_offset: self.base_offset,
                created_ms: crate::cli::time::now_ms(),
            }
            .encode();
            std::os::unix::fs::FileExt::write_all_at(&file, &header, 0)?;
        }
        file.set_len(self.position)?;
        file.sync_all()?;
        for path in &self.removed {
            fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
        // Indexes are derived data; recovery rebuilds the ones it needs.
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let removable = path.extension().is_some_and(|e| e == "index")
                || path
                    .file_name()
                    .is_some_and(|n| n == weir_log::CLEAN_SHUTDOWN_FILE);
            if removable {
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        let checkpoint = self.dir.join(weir_log::CHECKPOINT_FILE);
        let temporary = self.dir.join(format!("{}.tmp", weir_log::CHECKPOINT_FILE));
        {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(&self.checkpoint.encode())?;
            file.sync_all()?;
        }
        fs::rename(&temporary, &checkpoint)?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// The cut for a partition's first corruption, if it has one.
fn plan_cut(inspection: &PartitionInspection) -> Option<Cut> {
    let corruption = inspection.first_corruption()?;
    // The segment holding the damage: the one whose file it names, else (damage to the
    // checkpoint or a missing segment) the last segment, keeping all that is valid.
    let index = inspection
        .segments
        .iter()
        .position(|s| s.path == corruption.file)
        .or_else(|| inspection.segments.len().checked_sub(1))?;
    let segment = &inspection.segments[index];
    let header_len = SEGMENT_HEADER_LEN as u64;
    let (position, rewrite_header) = if segment.path == corruption.file {
        if corruption.position < header_len {
            (header_len, true)
        } else {
            (segment.valid_end.min(corruption.position), false)
        }
    } else {
        let end = segment
            .torn_tail
            .as_ref()
            .map_or(segment.valid_end, |t| t.position);
        (end.max(header_len), segment.valid_end < header_len)
    };
    let next_offset = if rewrite_header {
        segment.base_offset
    } else {
        segment.next_offset
    };
    let removed: Vec<PathBuf> = inspection.segments[index + 1..]
        .iter()
        .map(|s| s.path.clone())
        .collect();
    let lost_end = inspection.segments[index..]
        .iter()
        .map(|s| s.next_offset)
        .chain(match &inspection.checkpoint {
            CheckpointState::Valid(c) => Some(c.next_offset),
            _ => None,
        })
        .max()
        .unwrap_or(next_offset);
    let lost_bytes = segment.file_bytes.saturating_sub(position)
        + inspection.segments[index + 1..]
            .iter()
            .map(|s| s.file_bytes)
            .sum::<u64>();
    let start_offset = match &inspection.checkpoint {
        CheckpointState::Valid(c) => c.start_offset.min(next_offset),
        _ => inspection
            .segments
            .first()
            .map_or(next_offset, |s| s.base_offset),
    };
    Some(Cut {
        dir: inspection.dir.clone(),
        segment: segment.path.clone(),
        base_offset: segment.base_offset,
        position,
        rewrite_header,
        removed,
        checkpoint: Checkpoint {
            start_offset: start_offset
                .max(inspection.segments.first().map_or(0, |s| s.base_offset)),
            segment_base_offset: segment.base_offset,
            position,
            next_offset,
        },
        lost_end,
        lost_bytes,
        reason: corruption.reason.clone(),
    })
}
