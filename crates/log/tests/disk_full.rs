//! A full device ([`SimStorage::capacity_bytes`], the simulated `ENOSPC`): appends fail with
//! [`Error::StorageFull`] and are not acknowledged, the log is not poisoned, nothing already
//! acknowledged changes, partial bytes are cut, and appends resume once space is freed — across
//! segment rolls, and with a power cut (unsynced writes scrambled) after the episode.
//! The same behaviour on a real, size-capped tmpfs is checked against the node in
//! `crates/node/tests/disk_full.rs`.

use std::sync::Arc;

use weir_log::sim::{CrashMode, SimStorage, SplitMix64};
use weir_log::{AppendEvent, Error, Log, LogConfig, ManualClock};

const DIR: &str = "/data/p0";

fn open(storage: &SimStorage, config: &LogConfig) -> weir_log::Result<Log> {
    Log::open_with(
        DIR,
        config.clone(),
        Arc::new(storage.clone()),
        Arc::new(ManualClock::new(1_000)),
    )
}

fn value(index: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Every value of the log from its start, checking that offsets are dense.
fn contents(log: &Log) -> Vec<Vec<u8>> {
    let start = log.start_offset();
    let mut values = Vec::new();
    let mut from = start;
    loop {
        let batch = log.read(from, 10_000, usize::MAX).unwrap();
        if batch.is_empty() {
            return values;
        }
        for event in batch.iter() {
            assert_eq!(
                event.offset,
                start + values.len() as u64,
                "offsets are dense"
            );
            values.push(event.value.to_vec());
        }
        from = batch.next_offset();
    }
}

fn config() -> LogConfig {
    let mut config = LogConfig::default();
    config.segment_bytes_max = 8192;
    config.index_interval_bytes = 512;
    config.checkpoint_interval_bytes = 1024;
    config
}

/// Appends `value(next)` until the device refuses; returns the acknowledged values.
fn fill(log: &Log, acked: &mut Vec<Vec<u8>>, len: usize) -> Error {
    loop {
        let v = value(acked.len() as u64, len);
        match log.append(&[AppendEvent::value(&v)]) {
            Ok(offset) => {
                assert_eq!(offset, acked.len() as u64, "offsets stay dense");
                acked.push(v);
            }
            Err(error) => return error,
        }
    }
}

#[test]
fn a_full_device_refuses_appends_without_poisoning_and_writing_resumes_when_space_is_freed() {
    let storage = SimStorage::new();
    let log = open(&storage, &config()).unwrap();
    let mut acked = Vec::new();
    let mut episodes = 0;
    let mut refused = 0;
    // Several episodes at different sizes, so that the device fills in a frame write, in a
    // segment roll (header) and in checkpoint refreshes.
    for (round, len) in [(0u64, 300usize), (1, 17), (2, 1_000), (3, 5), (4, 2_500)] {
        storage.capacity_bytes(Some(40_000 + round * 9_013));
        let error = fill(&log, &mut acked, len);
        assert!(
            error.is_storage_full(),
            "round {round}: expected a full-device error, got {error}"
        );
        let text = error.to_string();
        assert!(text.contains("no space left"), "{text}");
        assert!(
            log.poisoned().is_none(),
            "a full device must not poison the log"
        );
        // Still full: refused again, and the end does not move.
        let end = log.end_offset();
        for _ in 0..3 {
            let v = value(acked.len() as u64, len);
            let error = log.append(&[AppendEvent::value(&v)]).unwrap_err();
            assert!(error.is_storage_full(), "{error}");
            refused += 1;
        }
        assert_eq!(log.end_offset(), end);
        let start = log.start_offset() as usize;
        assert_eq!(
            contents(&log),
            acked[start..],
            "round {round}: acknowledged events unchanged"
        );
        // Free space: retention cannot run on a full device, so the test raises the limit.
        storage.capacity_bytes(None);
        let v = value(acked.len() as u64, len);
        log.append(&[AppendEvent::value(&v)])
            .expect("writing resumes");
        acked.push(v);
        episodes += 1;
        // Keep the device from growing without bound: drop old segments.
        log.truncate_before(log.end_offset().saturating_sub(20))
            .unwrap();
    }
    assert_eq!(episodes, 5);
    assert!(refused >= 15);
    // The verify pass and a reopen find a clean log.
    let report = log.verify().unwrap();
    assert!(report.frames > 0, "{report:?}");
    log.close().unwrap();
    let reopened = open(&storage, &config()).unwrap();
    assert_eq!(reopened.end_offset(), acked.len() as u64);
    assert!(reopened.recovery_report().torn_tail.is_none());
    let start = reopened.start_offset() as usize;
    assert_eq!(contents(&reopened), acked[start..]);
}

#[test]
fn power_cuts_after_disk_full_episodes_keep_every_acknowledged_append() {
    let seeds: u64 = std::env::var("WEIR_DISK_FULL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        let mut rng = SplitMix64::new(seed);
        let storage = SimStorage::new();
        let log = open(&storage, &config()).unwrap();
        let mut attempted: Vec<Vec<u8>> = Vec::new();
        let mut acked_end = 0u64;
        let mut refusals = 0;
        for step in 0..200u64 {
            if step % 40 == 0 {
                let cap = 20_000 + rng.below(30_000);
                storage.capacity_bytes(Some(cap));
            }
            if step % 40 == 30 {
                storage.capacity_bytes(None);
            }
            let len = 1 + rng.below(1_500) as usize;
            let v = value(seed * 1_000 + step, len);
            let offset = log.end_offset();
            match log.append(&[AppendEvent::value(&v)]) {
                Ok(first) => {
                    assert_eq!(first, offset);
                    attempted.truncate(offset as usize);
                    attempted.push(v);
                    acked_end = first + 1;
                }
                Err(error) => {
                    assert!(error.is_storage_full(), "seed {seed}: {error}");
                    assert!(log.poisoned().is_none());
                    refusals += 1;
                    // A refused append may still be on disk after a cut (never acknowledged),
                    // but it never takes its offset from a later acknowledged one.
                    attempted.truncate(offset as usize);
                    attempted.push(v);
                }
            }
        }
        assert!(refusals > 0, "seed {seed}: the device never filled");
        let image = storage.power_cut(CrashMode::Scramble { seed });
        drop(log);
        let recovered = open(&image, &config())
            .unwrap_or_else(|e| panic!("seed {seed}: recovery after disk-full episodes: {e}"));
        let values = contents(&recovered);
        let end = values.len() as u64;
        assert!(
            end >= acked_end,
            "seed {seed}: lost acknowledged appends ({end} < {acked_end})"
        );
        for (offset, got) in values.iter().enumerate() {
            assert_eq!(
                Some(got),
                attempted.get(offset),
                "seed {seed}: offset {offset} holds bytes that were never appended there"
            );
        }
    }
}

/// Segments of 4 KiB without zeros ahead, and the 100-byte value the checkpoint tests append.
fn small_segments() -> (LogConfig, Vec<u8>) {
    let mut config = config();
    config.segment_bytes_max = 4096;
    config.preallocate_bytes = 0;
    (config, value(7, 100))
}

/// How many appends of `v` fit in the first segment (the next one rolls), and the bytes one
/// of them adds to the device.
fn first_segment(config: &LogConfig, v: &[u8]) -> (u64, u64) {
    let storage = SimStorage::new();
    let log = open(&storage, config).unwrap();
    let (mut count, mut frame_bytes) = (0, 0);
    while log.stats().unwrap().segments == 1 {
        let used = storage.used_bytes();
        log.append(&[AppendEvent::value(v)]).unwrap();
        if log.stats().unwrap().segments == 1 {
            frame_bytes = storage.used_bytes() - used;
        }
        count += 1;
    }
    (count - 1, frame_bytes)
}

/// A roll on a nearly full device can create its segment but not refresh the checkpoint, which
/// then still names the sealed segment. Retention that later removes that segment must not
/// leave the checkpoint naming it: after a power cut the log must still open with everything.
/// (Found in review: the checkpoint kept the removed segment and the next open failed.)
#[test]
fn retention_after_a_checkpoint_that_lagged_on_a_full_device_keeps_the_log_openable() {
    let (config, v) = small_segments();
    let (before_roll, _) = first_segment(&config, &v);
    let mut lagged = 0;
    for headroom in 0..400u64 {
        let storage = SimStorage::new();
        let log = open(&storage, &config).unwrap();
        for _ in 0..before_roll {
            log.append(&[AppendEvent::value(&v)]).unwrap();
        }
        storage.capacity_bytes(Some(storage.used_bytes() + headroom));
        let mut refused = false;
        for _ in 0..60 {
            if log.append(&[AppendEvent::value(&v)]).is_err() {
                refused = true;
                break;
            }
        }
        storage.capacity_bytes(None);
        let acked_end = log.end_offset();
        if refused {
            lagged += 1;
        }
        log.truncate_before(acked_end).unwrap();
        let image = storage.power_cut(CrashMode::DropUnsynced);
        drop(log);
        let reopened = open(&image, &config).unwrap_or_else(|e| {
            panic!("headroom {headroom}: the log does not open after retention: {e}")
        });
        assert_eq!(reopened.end_offset(), acked_end, "headroom {headroom}");
    }
    assert!(lagged > 0, "the device never filled");
}

/// The checkpoint as it is on the device now.
fn checkpoint_now(storage: &SimStorage) -> weir_log::format::Checkpoint {
    let bytes = storage
        .read_file(&std::path::Path::new(DIR).join(weir_log::CHECKPOINT_FILE))
        .expect("a checkpoint file");
    weir_log::format::Checkpoint::decode(&bytes).expect("a sound checkpoint")
}

/// As above, but with an event acknowledged in the new segment while the checkpoint still names
/// the sealed one, and `truncate_before` cutting into the active segment: the checkpoint must
/// move off the segment it removes. (Found in review: the guard only moved it when the new
/// start was at or below the active segment's base, and the next open failed.)
#[test]
fn truncating_into_the_active_segment_moves_a_lagging_checkpoint_off_the_removed_one() {
    let (config, v) = small_segments();
    let (before_roll, frame_bytes) = first_segment(&config, &v);
    let mut exercised = 0;
    for extra in 0..200u64 {
        let storage = SimStorage::new();
        let log = open(&storage, &config).unwrap();
        for _ in 0..before_roll {
            log.append(&[AppendEvent::value(&v)]).unwrap();
        }
        // The roll on a nearly full device: room for the new segment and `extra` bytes more.
        storage.capacity_bytes(Some(storage.used_bytes() + extra));
        let _ = log.append(&[AppendEvent::value(&v)]);
        if log.stats().unwrap().segments != 2 || checkpoint_now(&storage).segment_base_offset != 0 {
            continue;
        }
        // The checkpoint lags in segment 0. An event is acknowledged in segment 1 with room for
        // exactly its frame, so the refresh after it finds the device full too.
        if log.end_offset() == before_roll {
            storage.capacity_bytes(Some(storage.used_bytes() + frame_bytes));
            if log.append(&[AppendEvent::value(&v)]).is_err() {
                continue;
            }
        }
        if checkpoint_now(&storage).segment_base_offset != 0 {
            continue;
        }
        exercised += 1;
        storage.capacity_bytes(None);
        let end = log.end_offset();
        assert!(end > before_roll, "extra {extra}");
        log.truncate_before(end).unwrap();
        let image = storage.power_cut(CrashMode::DropUnsynced);
        drop(log);
        let reopened = open(&image, &config).unwrap_or_else(|e| {
            panic!("extra {extra}: the log does not open after the truncation: {e}")
        });
        assert_eq!(reopened.start_offset(), end, "extra {extra}");
        assert_eq!(reopened.end_offset(), end, "extra {extra}");
    }
    assert!(exercised > 0, "no roll left the checkpoint lagging");
}
