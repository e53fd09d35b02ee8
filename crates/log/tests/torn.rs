//! Damaged segment bytes: a segment cut at every byte, zero/garbage/hole tails, and every bit
//! flip of a frame. A torn tail of the active segment above the recovery checkpoint is cut and
//! reported; damage to acknowledged bytes (a sealed segment, or below the checkpoint) makes the
//! open fail with the file and byte position, and is never cut silently.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_log::format::{check_frame, SEGMENT_HEADER_LEN};
use weir_log::sim::{SimStorage, SplitMix64};
use weir_log::storage::{OpenMode, Storage};
use weir_log::{
    AppendEvent, Error, Log, LogConfig, ManualClock, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE,
};

const DIR: &str = "/data/p0";

fn segment_path(base: u64) -> PathBuf {
    Path::new(DIR).join(format!("{base:020}.log"))
}

fn open(storage: &SimStorage, config: &LogConfig) -> weir_log::Result<Log> {
    Log::open_with(
        DIR,
        config.clone(),
        Arc::new(storage.clone()),
        Arc::new(ManualClock::new(1_000)),
    )
}

/// Appends of 1–3 events with 0–4 KiB values; returns the values of each append.
fn build(storage: &SimStorage, config: &LogConfig, appends: usize, seed: u64) -> Vec<Vec<Vec<u8>>> {
    build_with(storage, config, appends, seed, 4096)
}

/// As [`build`], with values of at most `value_len_max` bytes.
fn build_with(
    storage: &SimStorage,
    config: &LogConfig,
    appends: usize,
    seed: u64,
    value_len_max: u64,
) -> Vec<Vec<Vec<u8>>> {
    let log = open(storage, config).expect("open");
    let mut rng = SplitMix64::new(seed);
    let mut all = Vec::new();
    for a in 0..appends {
        let count = 1 + rng.below(3) as usize;
        let values: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                let len = rng.below(value_len_max + 1) as usize;
                (0..len)
                    .map(|i| (i as u64 ^ a as u64 ^ seed) as u8)
                    .collect()
            })
            .collect();
        let events: Vec<AppendEvent<'_>> = values.iter().map(|v| AppendEvent::value(v)).collect();
        log.append(&events).expect("append");
        all.push(values);
    }
    log.close().expect("close");
    all
}

/// Positions of frame ends in a segment file.
fn frame_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        let header = check_frame(&bytes[at..]).expect("built segments are valid");
        at += header.frame_len as usize;
        ends.push(at);
    }
    ends
}

/// A fresh storage holding only `bytes` as segment 0 (no checkpoint, no index, no marker): the
/// state after a crash in which nothing of the tail is known to be durable.
fn storage_with_segment(bytes: &[u8]) -> SimStorage {
    let storage = SimStorage::new();
    storage.create_dir_all(Path::new(DIR)).unwrap();
    let file = storage.open(&segment_path(0), OpenMode::CreateNew).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
    storage.sync_dir(Path::new(DIR)).unwrap();
    storage
}

fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let batch = log.read(from, 10_000, usize::MAX).expect("read");
        if batch.is_empty() {
            return out;
        }
        from = batch.next_offset();
        out.extend(batch.iter().map(|event| event.value.to_vec()));
    }
}

fn flatten(appends: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    appends.iter().flatten().cloned().collect()
}

#[test]
fn a_segment_cut_at_every_byte_keeps_exactly_the_whole_appends_before_the_cut() {
    let storage = SimStorage::new();
    let config = LogConfig::default();
    let appends = build(&storage, &config, 40, 7);
    let bytes = storage.read_file(&segment_path(0)).unwrap();
    let ends = frame_ends(&bytes);
    assert!(
        flatten(&appends).len() >= 64,
        "the issue asks for at least 64 events"
    );
    for cut in 0..=bytes.len() {
        let storage = storage_with_segment(&bytes[..cut]);
        let whole = ends.iter().filter(|&&end| end <= cut).count();
        let expected = flatten(&appends[..whole]);
        let log = open(&storage, &config).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let report = log.recovery_report().clone();
        let at_boundary = cut == SEGMENT_HEADER_LEN || ends.contains(&cut);
        assert_eq!(
            report.torn_tail.is_some(),
            cut > SEGMENT_HEADER_LEN && !at_boundary,
            "cut at {cut}"
        );
        assert_eq!(
            report.segment_reinitialized.is_some(),
            cut < SEGMENT_HEADER_LEN,
            "cut at {cut}"
        );
        assert_eq!(read_all(&log), expected, "cut at {cut}");
        drop(log);
        // A second open changes nothing.
        let log = open(&storage, &config).unwrap();
        assert!(
            log.recovery_report().torn_tail.is_none(),
            "cut at {cut}: second open cut again"
        );
        assert_eq!(log.end_offset(), expected.len() as u64, "cut at {cut}");
    }
}

#[test]
fn zero_garbage_and_hole_tails_are_dropped_as_torn() {
    let storage = SimStorage::new();
    let config = LogConfig::default();
    let appends = build(&storage, &config, 12, 11);
    let bytes = storage.read_file(&segment_path(0)).unwrap();
    let ends = frame_ends(&bytes);
    let all = flatten(&appends);
    let mut rng = SplitMix64::new(99);
    for tail_len in [1usize, 7, 8, 31, 512, 4096, 8192] {
        for garbage in [false, true] {
            let mut damaged = bytes.clone();
            damaged.extend((0..tail_len).map(|_| if garbage { rng.next() as u8 } else { 0 }));
            let log = open(&storage_with_segment(&damaged), &config).unwrap();
            let torn = log
                .recovery_report()
                .torn_tail
                .clone()
                .expect("a tail was cut");
            assert_eq!(
                (torn.position, torn.bytes_cut),
                (bytes.len() as u64, tail_len as u64)
            );
            assert_eq!(
                read_all(&log),
                all,
                "tail of {tail_len} bytes (garbage: {garbage})"
            );
        }
    }
    // A 4 KiB zero hole inside the last frame (as a power-loss simulator produced).
    let last_start = ends[ends.len() - 2];
    let mut damaged = bytes.clone();
    let hole_start = last_start + 40;
    let hole_end = (hole_start + 4096).min(damaged.len());
    assert!(
        hole_end > hole_start,
        "the last frame is long enough for a hole"
    );
    damaged[hole_start..hole_end].fill(0);
    let log = open(&storage_with_segment(&damaged), &config).unwrap();
    assert_eq!(
        log.recovery_report().torn_tail.as_ref().map(|t| t.position),
        Some(last_start as u64)
    );
    assert_eq!(read_all(&log), flatten(&appends[..appends.len() - 1]));
}

#[test]
fn every_bit_flip_of_the_last_frame_is_a_torn_tail() {
    let storage = SimStorage::new();
    let config = LogConfig::default();
    let appends = build_with(&storage, &config, 3, 5, 400);
    let bytes = storage.read_file(&segment_path(0)).unwrap();
    let ends = frame_ends(&bytes);
    let last_start = ends[ends.len() - 2];
    let expected = flatten(&appends[..appends.len() - 1]);
    assert!(bytes.len() - last_start > 60, "a frame with a value");
    for bit in last_start * 8..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let log = open(&storage_with_segment(&damaged), &config).unwrap();
        let torn = log.recovery_report().torn_tail.clone();
        assert_eq!(
            torn.map(|t| t.position),
            Some(last_start as u64),
            "bit {bit}"
        );
        assert_eq!(read_all(&log), expected, "bit {bit}");
    }
}

#[test]
fn every_bit_flip_below_the_recovery_checkpoint_is_corruption() {
    let storage = SimStorage::new();
    let config = LogConfig::default();
    build_with(&storage, &config, 4, 3, 400);
    // The log was closed cleanly: its checkpoint covers every frame. Each image below loses the
    // clean-shutdown marker so that the open scans the active segment as after a crash.
    let bytes = storage.read_file(&segment_path(0)).unwrap();
    let ends = frame_ends(&bytes);
    let (start, end) = (ends[0], ends[1]);
    assert!(end - start > 60, "a frame with a value");
    for bit in start * 8..end * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        assert!(image.write_file(&segment_path(0), &damaged));
        image
            .remove_file(&Path::new(DIR).join(CLEAN_SHUTDOWN_FILE))
            .unwrap();
        match open(&image, &config) {
            Err(Error::Corrupt {
                file,
                position,
                reason,
            }) => {
                assert_eq!(file, segment_path(0), "bit {bit}");
                assert_eq!(position, start as u64, "bit {bit}: {reason}");
                assert!(
                    reason.contains("recovery checkpoint"),
                    "bit {bit}: {reason}"
                );
            }
            other => panic!("bit {bit}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn every_bit_flip_in_a_sealed_segment_is_corruption() {
    let storage = SimStorage::new();
    let mut config = LogConfig::default();
    config.segment_bytes_max = 4096;
    build_with(&storage, &config, 30, 13, 400);
    let sealed = segment_path(0);
    let bytes = storage.read_file(&sealed).unwrap();
    let ends = frame_ends(&bytes);
    let segments = storage
        .list_dir(Path::new(DIR))
        .unwrap()
        .iter()
        .filter(|name| name.ends_with(".log"))
        .count();
    assert!(segments > 2, "segment 0 is sealed");
    let (start, end) = (SEGMENT_HEADER_LEN, ends[0]);
    assert!(end - start > 60, "a frame with a value");
    for bit in start * 8..end * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        // With the checkpoint lost, recovery verifies every segment at open.
        let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        assert!(image.write_file(&sealed, &damaged));
        image
            .remove_file(&Path::new(DIR).join(CHECKPOINT_FILE))
            .unwrap();
        match open(&image, &config) {
            Err(Error::Corrupt { file, position, .. }) => {
                assert_eq!(
                    (file, position),
                    (sealed.clone(), start as u64),
                    "bit {bit}"
                );
            }
            other => panic!("bit {bit}: expected corruption at open, got {other:?}"),
        }
        // With the checkpoint in place the open trusts sealed segments (it does not read every
        // segment), and the damage is reported when the frame is read — never returned.
        let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        assert!(image.write_file(&sealed, &damaged));
        image
            .remove_file(&Path::new(DIR).join("00000000000000000000.index"))
            .unwrap();
        let log = open(&image, &config).unwrap();
        match log.read(0, 10, usize::MAX) {
            Err(Error::Corrupt { file, position, .. }) => {
                assert_eq!(
                    (file, position),
                    (sealed.clone(), start as u64),
                    "bit {bit}"
                );
            }
            other => panic!("bit {bit}: expected corruption on read, got {other:?}"),
        }
        assert!(log.verify().is_err(), "bit {bit}: verify reports it too");
    }
}
