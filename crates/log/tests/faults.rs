//! Faults through the storage seam ([`SimStorage`]):
//!
//! 1. every storage call of a ~200-call workload is failed in turn: the error reaches the
//!    caller, nothing that failed is acknowledged, and the log reopens to a valid prefix that
//!    holds every acknowledged append;
//! 2. seeded power cuts at a random storage call, with unsynced writes dropped, reordered or
//!    torn: no acknowledged append or truncation is lost, the recovered log is an exact prefix
//!    of what was appended, and recovery is idempotent. `WEIR_POWER_CUT_SEEDS=N` runs more
//!    seeds (default 10,000); `WEIR_POWER_CUT_SEED=S` replays one;
//! 3. the checks check: the same suite over a storage whose fsync (or directory fsync) lies
//!    must find lost acknowledged appends.

use std::path::Path;
use std::sync::Arc;

use weir_log::sim::{CrashMode, SimStorage, SplitMix64};
use weir_log::{AppendEvent, Log, LogConfig, ManualClock};

const DIR: &str = "/data/p0";

fn open(storage: &SimStorage, config: &LogConfig, clock: &ManualClock) -> weir_log::Result<Log> {
    Log::open_with(
        DIR,
        config.clone(),
        Arc::new(storage.clone()),
        Arc::new(clock.clone()),
    )
}

fn value(seed: u64, index: usize, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Every event of the log, from its start: (start offset, values).
fn contents(log: &Log) -> Result<(u64, Vec<Vec<u8>>), String> {
    let start = log.start_offset();
    let mut values = Vec::new();
    let mut from = start;
    loop {
        let batch = log
            .read(from, 10_000, usize::MAX)
            .map_err(|e| format!("read from {from}: {e}"))?;
        if batch.is_empty() {
            return Ok((start, values));
        }
        for event in batch.iter() {
            let expected = start + values.len() as u64;
            if event.offset != expected {
                return Err(format!(
                    "offsets not dense: {} where {expected} was expected",
                    event.offset
                ));
            }
            values.push(event.value.to_vec());
        }
        from = batch.next_offset();
    }
}

/// Checks a recovered log against what was attempted and acknowledged.
fn check_recovered(
    log: &Log,
    attempted: &[Vec<u8>],
    acked_end: u64,
    acked_start: u64,
) -> Result<(u64, Vec<Vec<u8>>), String> {
    let (start, values) = contents(log)?;
    let end = start + values.len() as u64;
    if end < acked_end {
        return Err(format!(
            "lost acknowledged events: the log ends at {end}, {acked_end} were acknowledged"
        ));
    }
    if end > attempted.len() as u64 {
        return Err(format!(
            "the log ends at {end} but only {} events were appended",
            attempted.len()
        ));
    }
    if start < acked_start {
        return Err(format!(
            "lost an acknowledged truncation: start {start} < {acked_start}"
        ));
    }
    for (i, value) in values.iter().enumerate() {
        let offset = start as usize + i;
        if *value != attempted[offset] {
            return Err(format!(
                "offset {offset} holds bytes that were never appended there"
            ));
        }
    }
    Ok((start, values))
}

/// The ~200-call workload of the fail-the-Nth-call sweep. Returns (attempted, acked end).
fn fail_nth_workload(
    storage: &SimStorage,
    config: &LogConfig,
    clock: &ManualClock,
) -> (Vec<Vec<u8>>, u64, bool) {
    let mut attempted = Vec::new();
    let mut acked_end = 0u64;
    let mut saw_error = false;
    let log = match open(storage, config, clock) {
        Ok(log) => log,
        Err(_) => {
            saw_error = true;
            match open(storage, config, clock) {
                Ok(log) => log,
                Err(error) => panic!("a single failed call must not break the next open: {error}"),
            }
        }
    };
    for i in 0..40 {
        let v = value(1, i, 300 + (i * 37) % 600);
        attempted.push(v.clone());
        match log.append(&[AppendEvent::value(&v)]) {
            Ok(offset) => {
                assert_eq!(offset, i as u64, "offsets are dense");
                assert!(
                    !saw_error || log.poisoned().is_none(),
                    "nothing is acknowledged after a failure"
                );
                acked_end = offset + 1;
            }
            Err(_) => {
                saw_error = true;
                assert!(log.poisoned().is_some() || log.end_offset() == acked_end);
            }
        }
        if i == 20 && log.truncate_before(3).is_err() {
            saw_error = true;
        }
    }
    if log.close().is_err() {
        saw_error = true;
    }
    (attempted, acked_end, saw_error)
}

#[test]
fn failing_each_storage_call_in_turn_loses_no_acknowledged_append() {
    let mut config = LogConfig::default();
    config.segment_bytes_max = 4096;
    let clock = ManualClock::new(1_000);
    let clean = SimStorage::new();
    let (_, acked, saw_error) = fail_nth_workload(&clean, &config, &clock);
    assert!(!saw_error && acked == 40);
    let total = clean.calls();
    assert!(total >= 150, "the workload makes {total} storage calls");
    for n in 1..=total {
        let storage = SimStorage::new();
        storage.fail_call(Some(n));
        let (attempted, acked_end, saw_error) = fail_nth_workload(&storage, &config, &clock);
        assert_eq!(storage.failures(), 1, "call {n} was failed");
        assert!(
            saw_error || acked_end == 40,
            "call {n}: the error reached no caller"
        );
        storage.fail_call(None);
        let image = storage.power_cut(CrashMode::DropUnsynced);
        let log = open(&image, &config, &clock)
            .unwrap_or_else(|e| panic!("call {n}: reopen failed: {e}"));
        if let Err(problem) = check_recovered(&log, &attempted, acked_end, 0) {
            panic!("failing call {n}: {problem}");
        }
    }
}

/// One seeded run: a random workload, a power cut at a random storage call, recovery and the
/// oracle. `Err` describes the violation.
fn power_cut_run(seed: u64, lying_sync: bool, lying_dir_sync: bool) -> Result<RunStats, String> {
    let mut rng = SplitMix64::new(seed);
    let clock = ManualClock::new(1_000_000);
    let mut config = LogConfig::default();
    config.segment_bytes_max = [4096, 8192, 65536][rng.below(3) as usize];
    // A checkpoint on every sync is the slowest setting; keep it rare so that most crash points
    // fall between a frame's write and its fsync, where torn tails come from.
    config.checkpoint_interval_bytes = [1, 2000, 20_000, 64 << 20, 64 << 20][rng.below(5) as usize];
    config.index_interval_bytes = [64, 4096][rng.below(2) as usize];
    if rng.below(4) == 0 {
        config.retention_bytes_max = Some(20_000);
    }
    // A third of the runs use the never-sync policy: appends are then acknowledged unsynced, so
    // the oracle only holds the log to what an explicit `sync` or `close` made durable — and
    // the power cut finds many unsynced writes to drop, reorder and tear.
    let lossy = rng.below(3) == 0;
    if lossy {
        config.sync_policy = weir_log::SyncPolicy::NeverLossy;
    }
    let storage = SimStorage::new();
    storage.lying_sync(lying_sync);
    storage.lying_dir_sync(lying_dir_sync);
    let mode = if rng.below(4) == 0 {
        CrashMode::DropUnsynced
    } else {
        CrashMode::Scramble { seed }
    };
    storage.crash_at_call(1 + rng.below(250), mode);

    let mut attempted: Vec<Vec<u8>> = Vec::new();
    let mut acked_end = 0u64;
    let mut acked_start = 0u64;
    let mut log = Some(open(&storage, &config, &clock).map_err(|e| format!("first open: {e}"))?);
    for step in 0..80 {
        if storage.has_crash_image() {
            break;
        }
        let current = log.as_ref().expect("open");
        match rng.below(20) {
            0 => {
                let to = rng
                    .below(attempted.len() as u64 + 1)
                    .min(current.end_offset());
                current
                    .truncate_before(to)
                    .map_err(|e| format!("step {step}: truncate: {e}"))?;
                if !storage.has_crash_image() {
                    acked_start = acked_start.max(to);
                }
            }
            1 => {
                current
                    .apply_retention()
                    .map_err(|e| format!("step {step}: retention: {e}"))?;
            }
            3 => {
                current
                    .sync()
                    .map_err(|e| format!("step {step}: sync: {e}"))?;
                if !storage.has_crash_image() {
                    acked_end = attempted.len() as u64;
                }
            }
            2 => {
                let old = log.take().expect("open");
                old.close()
                    .map_err(|e| format!("step {step}: close: {e}"))?;
                drop(old);
                if !storage.has_crash_image() {
                    acked_end = attempted.len() as u64;
                }
                log = Some(
                    open(&storage, &config, &clock)
                        .map_err(|e| format!("step {step}: reopen: {e}"))?,
                );
            }
            _ => {
                clock.advance(rng.below(1000));
                let count = 1 + rng.below(4) as usize;
                let values: Vec<Vec<u8>> = (0..count)
                    .map(|i| value(seed, attempted.len() + i, rng.below(1500) as usize))
                    .collect();
                let events: Vec<AppendEvent<'_>> =
                    values.iter().map(|v| AppendEvent::value(v)).collect();
                attempted.extend(values.iter().cloned());
                let first = current
                    .append(&events)
                    .map_err(|e| format!("step {step}: append: {e}"))?;
                if first + count as u64 != attempted.len() as u64 {
                    return Err(format!(
                        "step {step}: append got offset {first}, expected {}",
                        attempted.len() - count
                    ));
                }
                if !lossy && !storage.has_crash_image() {
                    acked_end = attempted.len() as u64;
                }
            }
        }
    }
    let image = storage
        .take_crash_image()
        .unwrap_or_else(|| storage.power_cut(mode));
    drop(log);
    let recovered =
        open(&image, &config, &clock).map_err(|e| format!("open after the power cut: {e}"))?;
    let torn = recovered.recovery_report().torn_tail.is_some();
    let recovered_discarded = recovered
        .recovery_report()
        .torn_tail
        .as_ref()
        .is_some_and(|tail| tail.valid_frames_discarded > 0);
    let first = check_recovered(&recovered, &attempted, acked_end, acked_start)?;
    // Recovery is idempotent: a second recovery (after another power cut) changes nothing.
    drop(recovered);
    let again = image.power_cut(CrashMode::DropUnsynced);
    let recovered = open(&again, &config, &clock).map_err(|e| format!("second open: {e}"))?;
    if recovered.recovery_report().torn_tail.is_some() {
        return Err("the second recovery cut a tail again".into());
    }
    let second = check_recovered(&recovered, &attempted, acked_end, acked_start)?;
    if first != second {
        return Err("the second recovery recovered something else".into());
    }
    let discarded = recovered_discarded;
    Ok(RunStats {
        acked_events: acked_end,
        torn_tail: torn,
        unacked_survived: first.0 + first.1.len() as u64 > acked_end,
        valid_frames_discarded: discarded,
    })
}

/// What one run exercised, so the suite can show it covers the interesting cases.
#[derive(Debug, Clone, Copy)]
struct RunStats {
    acked_events: u64,
    torn_tail: bool,
    unacked_survived: bool,
    valid_frames_discarded: bool,
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("WEIR_POWER_CUT_SEED") {
        return vec![seed.parse().expect("WEIR_POWER_CUT_SEED is a number")];
    }
    let count = std::env::var("WEIR_POWER_CUT_SEEDS").map_or(10_000, |n| {
        n.parse().expect("WEIR_POWER_CUT_SEEDS is a number")
    });
    (0..count).collect()
}

#[test]
fn seeded_power_cuts_lose_no_acknowledged_append() {
    let seeds = seeds();
    let (mut torn, mut acked, mut unacked_survived, mut discarded) = (0, 0, 0, 0);
    for &seed in &seeds {
        match power_cut_run(seed, false, false) {
            Ok(stats) => {
                torn += usize::from(stats.torn_tail);
                acked += usize::from(stats.acked_events > 0);
                unacked_survived += usize::from(stats.unacked_survived);
                discarded += usize::from(stats.valid_frames_discarded);
            }
            Err(problem) => panic!(
                "power-cut seed {seed} failed: {problem}\nreplay: WEIR_POWER_CUT_SEED={seed} cargo test -p weir-log --test faults seeded"
            ),
        }
    }
    eprintln!(
        "{} power-cut seeds passed: {acked} with acknowledged appends, {torn} with a torn tail cut, {unacked_survived} where unacknowledged appends survived, {discarded} where valid frames after a torn one were cut",
        seeds.len()
    );
    if seeds.len() >= 100 {
        assert!(
            torn * 50 >= seeds.len(),
            "too few runs cut a torn tail ({torn}): the crash points miss the writes"
        );
        assert!(
            acked * 2 >= seeds.len(),
            "too few runs acknowledged anything ({acked})"
        );
    }
}

#[test]
fn the_power_cut_suite_catches_a_lying_fsync() {
    let caught = (0..200)
        .filter(|&seed| power_cut_run(seed, true, false).is_err())
        .count();
    assert!(
        caught > 20,
        "a sync that does nothing must lose acknowledged appends; caught in {caught} of 200 seeds"
    );
}

#[test]
fn the_power_cut_suite_catches_a_missing_directory_fsync() {
    let caught = (0..200)
        .filter(|&seed| power_cut_run(seed, false, true).is_err())
        .count();
    assert!(
        caught > 5,
        "unsynced directory entries must lose acknowledged data; caught in {caught} of 200 seeds"
    );
}

#[test]
fn open_sees_segments_the_directory_lists() {
    // Sanity for the suite: the sim directory is where the log writes.
    let storage = SimStorage::new();
    let clock = ManualClock::new(0);
    drop(open(&storage, &LogConfig::default(), &clock).unwrap());
    let names = weir_log::Storage::list_dir(&storage, Path::new(DIR)).unwrap();
    assert!(names.iter().any(|name| name.ends_with(".log")), "{names:?}");
}
