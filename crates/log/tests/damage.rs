//! Damage to a log's files, as an operator or a failing disk would cause it: what open,
//! the survey's decision (`weir verify`) and repair make of it. Acknowledged events are never
//! cut as a torn tail; an open that finds damage changes nothing; reads stop at damage, not
//! before it; damage stops writes; repair loses only the damaged offsets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_log::format::SEGMENT_HEADER_LEN;
use weir_log::sim::{CrashMode, SimStorage};
use weir_log::survey::{self, Depth};
use weir_log::{
    recovery, repair, AppendEvent, Error, Evidence, Health, Log, LogConfig, ManualClock, OnDamage,
    OpenOptions, ReadEnd,
};

const DIR: &str = "/data/p0";

fn config() -> LogConfig {
    let mut config = LogConfig::default();
    config.segment_bytes_max = 64 * 1024;
    config.index_interval_bytes = 1024;
    config
}

fn open(storage: &SimStorage, options: &OpenOptions) -> weir_log::Result<Log> {
    Log::open_with_options(
        DIR,
        config(),
        Arc::new(storage.clone()),
        Arc::new(ManualClock::new(1_000)),
        options,
    )
}

fn read_only() -> OpenOptions {
    OpenOptions {
        on_damage: OnDamage::ReadOnly,
        ..OpenOptions::default()
    }
}

/// Appends `frames` appends of `events` events of ~100 bytes each.
fn fill(log: &Log, frames: usize, events: usize) {
    let value = [7u8; 100];
    for _ in 0..frames {
        let batch: Vec<AppendEvent<'_>> = (0..events).map(|_| AppendEvent::value(&value)).collect();
        log.append(&batch).unwrap();
    }
}

fn segment_path(base: u64) -> PathBuf {
    Path::new(DIR).join(format!("{base:020}.log"))
}

/// Flips one byte of `path` in `storage` (live and durable).
fn flip(storage: &SimStorage, path: &Path, at: usize) {
    let mut bytes = storage.read_file(path).expect("file exists");
    bytes[at] ^= 0x5a;
    assert!(storage.write_file(path, &bytes));
}

/// Every file of the partition, for checking that nothing changed.
fn snapshot(storage: &SimStorage) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = weir_log::Storage::list_dir(storage, Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|name| name != "lock")
        .map(|name| {
            let bytes = storage
                .read_file(&Path::new(DIR).join(&name))
                .unwrap_or_default();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn values(log: &Log, from: u64) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut at = from;
    loop {
        match log.read(at, 10_000, usize::MAX) {
            Ok(batch) => {
                offsets.extend(batch.iter().map(|e| e.offset));
                if let Some(lost) = batch.lost() {
                    at = lost.end;
                    continue;
                }
                if batch.is_empty() {
                    return offsets;
                }
                at = batch.next_offset();
            }
            Err(_) => return offsets,
        }
    }
}

/// Case 1 of issue 15: three acknowledged frames, a process crash (the checkpoint lags), one
/// byte flipped in the first frame. The later frames record that the segment was fsynced past
/// it: damage, never a torn tail.
#[test]
fn a_flipped_acknowledged_frame_is_damage_not_a_torn_tail() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 3, 100);
    assert_eq!(log.end_offset(), 300);
    let crashed = storage.power_cut(CrashMode::ProcessCrash);
    drop(log);
    flip(&crashed, &segment_path(0), SEGMENT_HEADER_LEN + 500);
    let before = snapshot(&crashed);
    let refused = open(&crashed, &OpenOptions::default());
    assert!(
        matches!(refused, Err(Error::Corrupt { position: 40, .. })),
        "{refused:?}"
    );
    assert_eq!(snapshot(&crashed), before, "a refused open changed bytes");
    // Read-only: nothing below the damage to read, appends refused, nothing written.
    let log = open(&crashed, &read_only()).unwrap();
    assert_eq!(log.end_offset(), 0);
    assert!(log.damage().is_some());
    assert!(matches!(
        log.append(&[AppendEvent::value(b"x")]),
        Err(Error::Damaged { .. })
    ));
    assert!(matches!(
        log.read(0, 10, usize::MAX),
        Err(Error::Damaged { .. })
    ));
    log.close().unwrap();
    drop(log);
    assert_eq!(
        snapshot(&crashed),
        before,
        "a read-only open and close changed bytes"
    );
}

/// Without the later frames' evidence (one frame, checkpoint behind), the same flip is a torn
/// tail: nothing on disk can tell them apart. With an outside witness (a committed offset), it
/// is damage again.
#[test]
fn a_lone_flipped_frame_is_a_torn_tail_unless_a_witness_vouches_for_it() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 1, 100);
    let crashed = storage.power_cut(CrashMode::ProcessCrash);
    drop(log);
    flip(&crashed, &segment_path(0), SEGMENT_HEADER_LEN + 500);
    let witnessed = OpenOptions {
        evidence: Evidence {
            acknowledged_end: 100,
            acknowledged_by: "group g's committed offset".into(),
            restorable: Vec::new(),
        },
        on_damage: OnDamage::Refuse,
    };
    assert!(matches!(
        open(&crashed, &witnessed),
        Err(Error::Corrupt { .. })
    ));
    let log = open(&crashed, &OpenOptions::default()).unwrap();
    assert_eq!(log.end_offset(), 0);
    assert!(log.recovery_report().torn_tail.is_some());
}

/// Case 3: after a clean close, one byte flipped in the active segment's last frame. The open
/// checks the frames after the index's last entry, finds it, and takes no writes (it used to
/// acknowledge appends that no read could reach).
#[test]
fn a_clean_close_does_not_hide_a_damaged_last_frame() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 6, 5);
    log.close().unwrap();
    drop(log);
    let len = storage.read_file(&segment_path(0)).unwrap().len();
    flip(&storage, &segment_path(0), len - 10);
    assert!(matches!(
        open(&storage, &OpenOptions::default()),
        Err(Error::Corrupt { .. })
    ));
    let log = open(&storage, &read_only()).unwrap();
    assert_eq!(log.end_offset(), 25);
    assert_eq!(values(&log, 0).len(), 25);
    assert!(matches!(
        log.append(&[AppendEvent::value(b"x")]),
        Err(Error::Damaged { .. })
    ));
}

/// Case 7: a flip in a sealed segment (not read at open). A read across it returns the events
/// before it; the next read fails; appends stop.
#[test]
fn reads_stop_at_damage_not_before_it() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 40, 20);
    assert!(log.stats().unwrap().segments >= 2);
    log.close().unwrap();
    drop(log);
    // The fourth frame of the first segment.
    let frame_len = {
        let bytes = storage.read_file(&segment_path(0)).unwrap();
        u32::from_le_bytes(bytes[44..48].try_into().unwrap()) as usize
    };
    flip(
        &storage,
        &segment_path(0),
        SEGMENT_HEADER_LEN + 3 * frame_len + 100,
    );
    let log = open(&storage, &OpenOptions::default()).unwrap();
    assert!(log.damage().is_none(), "open does not read sealed segments");
    let batch = log.read(0, 1000, usize::MAX).unwrap();
    assert_eq!(batch.len(), 60, "the events before the damage");
    assert_eq!(batch.end(), ReadEnd::Damaged);
    assert!(matches!(
        log.read(60, 1000, usize::MAX),
        Err(Error::Corrupt { .. })
    ));
    assert!(log.damage().is_some());
    assert!(matches!(
        log.append(&[AppendEvent::value(b"x")]),
        Err(Error::Damaged { .. })
    ));
}

/// Case 5 and 6 of repair: a flip in a sealed frame costs exactly that frame's offsets (a
/// marker stands for them, the frames after it are kept); a flip in a header costs nothing.
/// Afterwards a full survey is clean.
#[test]
fn repair_loses_only_the_damaged_offsets() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 40, 20);
    log.close().unwrap();
    drop(log);
    let frame_len = {
        let bytes = storage.read_file(&segment_path(0)).unwrap();
        u32::from_le_bytes(bytes[44..48].try_into().unwrap()) as usize
    };
    flip(
        &storage,
        &segment_path(0),
        SEGMENT_HEADER_LEN + 3 * frame_len + 100,
    );
    let second = {
        let names = weir_log::Storage::list_dir(&storage, Path::new(DIR)).unwrap();
        let mut segments: Vec<String> = names.into_iter().filter(|n| n.ends_with(".log")).collect();
        segments.sort();
        Path::new(DIR).join(&segments[1])
    };
    flip(&storage, &second, 20);
    let full = survey::survey(&storage, Path::new(DIR), Depth::Full).unwrap();
    let decision = recovery::decide(&full, &Evidence::default());
    assert_eq!(decision.health(), Health::Damaged);
    assert_eq!(decision.damage.len(), 2, "{:#?}", decision.damage);
    let plan = repair::plan(&full, &Evidence::default());
    assert!(plan.unrepairable.is_empty(), "{plan:#?}");
    assert_eq!(plan.lost, vec![60..80], "{plan:#?}");
    repair::apply(&storage, &plan, 5_000).unwrap();
    let after = survey::survey(&storage, Path::new(DIR), Depth::Full).unwrap();
    let decision = recovery::decide(&after, &Evidence::default());
    assert_eq!(decision.health(), Health::Clean, "{decision:#?}");
    let log = open(&storage, &OpenOptions::default()).unwrap();
    let read = values(&log, 0);
    assert_eq!(read.len(), 800 - 20);
    assert!(read.iter().all(|o| !(60..80).contains(o)));
    let lost = log.read(60, 10, usize::MAX).unwrap();
    assert!(lost.is_empty());
    assert_eq!(lost.lost(), Some(60..80));
    // Appends go on after the end: offsets are never reused.
    assert_eq!(log.append(&[AppendEvent::value(b"new")]).unwrap(), 800);
}

/// The damaged tail of the active segment that a witness says was acknowledged: repair writes
/// a marker for the acknowledged offsets, so the next append gets the offset after them.
#[test]
fn repair_marks_acknowledged_events_missing_at_the_end() {
    let storage = SimStorage::new();
    let log = open(&storage, &OpenOptions::default()).unwrap();
    fill(&log, 1, 100);
    let crashed = storage.power_cut(CrashMode::ProcessCrash);
    drop(log);
    let mut bytes = crashed.read_file(&segment_path(0)).unwrap();
    bytes.truncate(SEGMENT_HEADER_LEN + 300);
    assert!(crashed.write_file(&segment_path(0), &bytes));
    let evidence = Evidence {
        acknowledged_end: 100,
        acknowledged_by: "group g's committed offset".into(),
        restorable: Vec::new(),
    };
    let full = survey::survey(&crashed, Path::new(DIR), Depth::Full).unwrap();
    assert_eq!(recovery::decide(&full, &evidence).health(), Health::Damaged);
    let plan = repair::plan(&full, &evidence);
    assert_eq!(plan.lost, vec![0..100], "{plan:#?}");
    repair::apply(&crashed, &plan, 5_000).unwrap();
    let log = open(
        &crashed,
        &OpenOptions {
            evidence,
            on_damage: OnDamage::Refuse,
        },
    )
    .unwrap();
    assert_eq!(log.end_offset(), 100);
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().lost(), Some(0..100));
    assert_eq!(log.append(&[AppendEvent::value(b"x")]).unwrap(), 100);
}
