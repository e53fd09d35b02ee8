//! `weir verify --data-dir D` and `weir repair --data-dir D`: they print what weir-store's
//! inspection found and decided ([`weir_store::recovery::inspect`]) — the same survey and
//! decision the next open runs, plus a full read of every frame and index — and decide
//! nothing themselves. Both hold the data directory's lock while they run, so no node starts
//! under them.
//!
//! Exit codes of verify: 0 clean, 1 repairable (the next open fixes it without losing an
//! acknowledged event: a torn tail, leftovers; or an index to rebuild), 2 damaged
//! (acknowledged data, or what recovery needs to judge it, is damaged: such a partition opens
//! read-only below the damage, and some damage keeps the store from opening at all, until
//! `weir repair`), 3 the check could not run.
//!
//! Repair prints its plan — exactly which offsets are lost — and changes something only with
//! `--yes`. Afterwards the directory verifies clean.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_log::recovery::{Decision, Health};
use weir_store::recovery::{PartitionInspection, StoreInspection};

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

fn exit_code(health: Health) -> i32 {
    match health {
        Health::Clean => 0,
        Health::Repairable => 1,
        Health::Damaged => 2,
    }
}

fn cannot_check(error: anyhow::Error) -> anyhow::Error {
    exit::with_code(CANNOT_CHECK, format!("{error:#}"))
}

pub(crate) fn verify(args: &VerifyArgs) -> anyhow::Result<i32> {
    crate::cli::init_logging();
    let _lock = lock_data_dir(&args.data_dir).map_err(cannot_check)?;
    let inspection = weir_store::recovery::inspect(&args.data_dir)
        .context("inspecting the data directory")
        .map_err(cannot_check)?;
    let mut out = std::io::stdout().lock();
    print_inspection(&mut out, &inspection, args.verbose)?;
    let health = inspection.health();
    writeln!(
        out,
        "result: {} (exit code {})",
        match health {
            Health::Clean => "clean",
            Health::Repairable =>
                "repairable: the next open of the store fixes it without losing an acknowledged event",
            Health::Damaged =>
                "damaged: acknowledged data is damaged; `weir repair` mends it, losing only the damaged offsets",
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

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Clean => "clean",
        Health::Repairable => "repairable",
        Health::Damaged => "DAMAGED",
    }
}

fn print_inspection(
    out: &mut impl Write,
    inspection: &StoreInspection,
    verbose: bool,
) -> std::io::Result<()> {
    for partition in &inspection.partitions {
        print_partition(out, partition, verbose)?;
    }
    if let Some(groups) = inspection.groups {
        writeln!(out, "offsets: opens, {groups} group(s)")?;
    }
    for problem in &inspection.problems {
        writeln!(
            out,
            "{}: {}: {}",
            health_word(problem.health),
            problem.path.display(),
            problem.text
        )?;
    }
    Ok(())
}

fn print_partition(
    out: &mut impl Write,
    partition: &PartitionInspection,
    verbose: bool,
) -> std::io::Result<()> {
    let survey = &partition.full_survey;
    let frames: u64 = survey
        .segments
        .iter()
        .filter_map(|s| s.scan.as_ref())
        .map(|scan| scan.frames)
        .sum();
    writeln!(
        out,
        "{}/{}: {} — {} segment(s), {frames} frame(s), offsets {}..{}",
        partition.topic,
        partition.partition,
        health_word(partition.health()),
        survey.segments.len(),
        partition.full.start_offset,
        partition.full.end_offset
    )?;
    if verbose {
        writeln!(
            out,
            "  checkpoint: {:?}; clean shutdown: {}",
            survey.checkpoint, survey.clean_shutdown
        )?;
        if partition.evidence.acknowledged_end > 0 {
            writeln!(
                out,
                "  witnesses: {} says offsets up to {} were acknowledged",
                partition.evidence.acknowledged_by, partition.evidence.acknowledged_end
            )?;
        }
        for segment in &survey.segments {
            let (frames, valid_end, next_offset) = segment
                .scan
                .as_ref()
                .map_or((0, 0, segment.base_offset), |s| {
                    (s.frames, s.valid_end, s.next_offset)
                });
            writeln!(
                out,
                "  {}: {} bytes, {frames} frame(s), offsets {}..{next_offset}, valid to byte \
                 {valid_end}, header {:?}, index {:?}",
                segment.path.display(),
                segment.file_bytes,
                segment.base_offset,
                segment.header,
                segment.index
            )?;
        }
    }
    print_decision(out, "the next open", &partition.at_open)?;
    if partition.full.damage != partition.at_open.damage {
        // Damage where an open does not read (sealed segments before the checkpoint, the
        // active segment before its index's last entry): a read that reaches it stops there,
        // and the partition then takes no more writes.
        for damage in &partition.full.damage {
            if !partition.at_open.damage.contains(damage) {
                writeln!(
                    out,
                    "  damage (found by a full read; the node finds it when a read reaches it, \
                     then stops writes to this partition): {damage}"
                )?;
            }
        }
    }
    for segment in &survey.segments {
        if segment.index.needs_rebuild() {
            writeln!(
                out,
                "  index of {} needs rebuilding ({:?}): it is rebuilt when first read, or by \
                 `weir repair`",
                segment.path.display(),
                segment.index
            )?;
        }
    }
    Ok(())
}

fn print_decision(out: &mut impl Write, who: &str, decision: &Decision) -> std::io::Result<()> {
    if !decision.damage.is_empty() {
        for damage in &decision.damage {
            writeln!(out, "  damage: {damage}")?;
        }
        writeln!(
            out,
            "  {who} changes nothing here: it opens this partition read-only, with reads \
             stopping at offset {} and appends refused, until `weir repair`",
            decision.readable_end
        )?;
        return Ok(());
    }
    for action in &decision.actions {
        writeln!(out, "  {who} will: {action}")?;
    }
    Ok(())
}

pub(crate) fn repair(args: &RepairArgs) -> anyhow::Result<i32> {
    crate::cli::init_logging();
    let lock = lock_data_dir(&args.data_dir).map_err(cannot_check)?;
    let inspection = weir_store::recovery::inspect(&args.data_dir)
        .context("inspecting the data directory")
        .map_err(cannot_check)?;
    let mut out = std::io::stdout().lock();
    if inspection.health() == Health::Clean {
        writeln!(out, "nothing to repair: the data directory is clean")?;
        return Ok(0);
    }
    let plans = inspection.repair_plan();
    let mut unrepairable = false;
    for (topic, partition, plan) in &plans {
        for step in &plan.steps {
            writeln!(out, "{topic}/{partition}: {step}")?;
        }
        if !plan.rebuild_indexes.is_empty() {
            writeln!(
                out,
                "{topic}/{partition}: rebuild the index of {} segment(s)",
                plan.rebuild_indexes.len()
            )?;
        }
        for note in &plan.notes {
            writeln!(out, "{topic}/{partition}: {note}")?;
        }
        for lost in &plan.lost {
            writeln!(
                out,
                "{topic}/{partition}: offsets {}..{} are LOST ({} event(s)); readers and \
                 consumers report them and step over them",
                lost.start,
                lost.end,
                lost.end - lost.start
            )?;
        }
        if plan.lost.is_empty() && plan.unrepairable.is_empty() {
            writeln!(out, "{topic}/{partition}: no event is lost")?;
        }
        for what in &plan.unrepairable {
            unrepairable = true;
            writeln!(out, "{topic}/{partition}: CANNOT REPAIR: {what}")?;
        }
    }
    for missing in &inspection.missing_partitions {
        writeln!(
            out,
            "{}/{}: create the missing partition directory{}",
            missing.topic,
            missing.partition,
            if missing.evidence.acknowledged_end > 0 {
                format!(
                    "; offsets 0..{} are LOST ({} says they were acknowledged)",
                    missing.evidence.acknowledged_end, missing.evidence.acknowledged_by
                )
            } else {
                "; nothing says it held events".to_string()
            }
        )?;
    }
    for problem in &inspection.problems {
        writeln!(
            out,
            "{}: {}: {}",
            health_word(problem.health),
            problem.path.display(),
            problem.text
        )?;
    }
    if unrepairable {
        out.flush()?;
        return Err(exit::with_code(
            exit::ERROR,
            "some damage cannot be repaired by this command (see above); nothing was changed",
        ));
    }
    if !args.yes {
        out.flush()?;
        return Err(exit::with_code(
            exit::ERROR,
            "nothing was changed: run again with --yes to do the above",
        ));
    }
    // The repair takes the data directory's lock itself.
    drop(lock);
    let outcome = weir_store::recovery::repair(
        &args.data_dir,
        &inspection,
        crate::cli::time::now_ms(),
        &weir_store::StoreConfig::default(),
    )
    .context("repairing")?;
    for (topic, partition, first, end) in &outcome.recovery.journal.lost {
        writeln!(
            out,
            "{topic}/{partition}: offsets {first}..{end} are LOST: a damaged journal block held \
             them and the partition lacked them"
        )?;
    }
    for done in &outcome.offsets {
        writeln!(out, "offsets: {done}")?;
    }
    let lost: u64 = outcome
        .partitions
        .iter()
        .map(|(_, _, p)| p.events_lost())
        .sum::<u64>()
        + outcome
            .recovery
            .journal
            .lost
            .iter()
            .map(|(_, _, first, end)| end - first)
            .sum::<u64>();
    if outcome.after != Health::Clean {
        out.flush()?;
        return Err(exit::with_code(
            exit::ERROR,
            format!(
                "the repair did not leave the directory clean (verify says {:?}): run `weir \
                 verify` to see what is left",
                outcome.after
            ),
        ));
    }
    writeln!(
        out,
        "repaired: {} partition(s) mended, {} created, {lost} event(s) lost, {} torn tail(s) \
         cut at open, {} journaled event(s) written back",
        outcome.partitions.len(),
        outcome.partitions_created.len(),
        outcome.recovery.torn_tails() + outcome.recovery.zero_tails(),
        outcome
            .recovery
            .journal
            .restored
            .iter()
            .map(|(_, _, events)| events)
            .sum::<u64>()
    )?;
    Ok(0)
}
