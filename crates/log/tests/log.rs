//! Behaviour of the log through its public API: appends, reads, limits, rolling, time lookups,
//! retention, reopen, waiting, locking and fail-stop.

use std::sync::Arc;
use std::time::Duration;

use weir_log::sim::SimStorage;
use weir_log::{AppendEvent, Error, Header, Log, LogConfig, ManualClock, ReadEnd, SyncPolicy};

fn small_config() -> LogConfig {
    let mut config = LogConfig::default();
    config.segment_bytes_max = 4096;
    config.index_interval_bytes = 256;
    config
}

fn sim_log(storage: &SimStorage, clock: &ManualClock, config: LogConfig) -> Log {
    Log::open_with(
        "/data/p0",
        config,
        Arc::new(storage.clone()),
        Arc::new(clock.clone()),
    )
    .expect("open")
}

fn values(log: &Log, from: u64, max: usize) -> Vec<(u64, Vec<u8>)> {
    let batch = log.read(from, max, usize::MAX).expect("read");
    batch
        .iter()
        .map(|event| (event.offset, event.value.to_vec()))
        .collect()
}

#[test]
fn append_assigns_dense_offsets_and_reads_back_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.recovery_report().created);
    let headers = [
        Header {
            name: "trace",
            value: b"abc",
        },
        Header {
            name: "empty",
            value: b"",
        },
    ];
    let first = log
        .append(&[
            AppendEvent {
                timestamp_ms: Some(10),
                key: Some(b"k1"),
                headers: &headers,
                value: b"one",
            },
            AppendEvent {
                timestamp_ms: Some(11),
                key: None,
                headers: &[],
                value: b"",
            },
        ])
        .unwrap();
    assert_eq!(first, 0);
    assert_eq!(log.append(&[AppendEvent::value(b"three")]).unwrap(), 2);
    assert_eq!(log.end_offset(), 3);
    let batch = log.read(0, 10, usize::MAX).unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(batch.end(), ReadEnd::EndOfLog);
    let events = batch.events();
    assert_eq!(events[0].offset, 0);
    assert_eq!(events[0].timestamp_ms, 10);
    assert_eq!(events[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(events[0].headers.len(), 2);
    assert_eq!(events[0].headers[0].0, "trace");
    assert_eq!(&events[0].headers[0].1[..], b"abc");
    assert_eq!(&events[0].value[..], b"one");
    assert_eq!(events[1].key, None);
    assert!(events[1].value.is_empty());
    assert_eq!(&events[2].value[..], b"three");
    assert!(
        events[2].timestamp_ms > 1_600_000_000_000,
        "stamped with the wall clock"
    );
    // Reading from the middle of a frame starts at the asked offset.
    assert_eq!(
        values(&log, 1, 10),
        vec![(1, vec![]), (2, b"three".to_vec())]
    );
    assert!(log.read(3, 10, usize::MAX).unwrap().is_empty());
    assert!(matches!(
        log.read(4, 10, usize::MAX),
        Err(Error::OffsetOutOfRange {
            offset: 4,
            start: 0,
            end: 3
        })
    ));
}

#[test]
fn limits_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::default();
    config.event_bytes_max = 100;
    config.append_events_max = 3;
    config.append_bytes_max = 250;
    let log = Log::open(dir.path(), config).unwrap();
    assert!(matches!(log.append(&[]), Err(Error::EmptyAppend)));
    let big = [0u8; 200];
    assert!(matches!(
        log.append(&[AppendEvent::value(b"ok"), AppendEvent::value(&big)]),
        Err(Error::EventTooLarge {
            index: 1,
            bytes: 218,
            bytes_max: 100
        })
    ));
    let four = [AppendEvent::value(b"a"); 4];
    assert!(matches!(
        log.append(&four),
        Err(Error::AppendTooLarge {
            what: "events",
            actual: 4,
            limit: 3,
            ..
        })
    ));
    let eighty = [0u8; 80];
    let three = [AppendEvent::value(&eighty); 3];
    assert!(matches!(
        log.append(&three),
        Err(Error::AppendTooLarge {
            what: "bytes",
            limit: 250,
            ..
        })
    ));
    assert_eq!(log.end_offset(), 0);
    assert_eq!(log.append(&[AppendEvent::value(b"fine")]).unwrap(), 0);
    assert_eq!(values(&log, 0, 10), vec![(0, b"fine".to_vec())]);
}

#[test]
fn bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LogConfig::default();
    config.segment_bytes_max = 10;
    assert!(matches!(
        Log::open(dir.path(), config),
        Err(Error::InvalidConfig {
            field: "segment_bytes_max",
            ..
        })
    ));
    let mut config = LogConfig::default();
    config.sync_policy = SyncPolicy::IntervalLossy { interval_ms: 0 };
    assert!(matches!(
        Log::open(dir.path(), config),
        Err(Error::InvalidConfig {
            field: "sync_policy",
            ..
        })
    ));
    let mut config = LogConfig::default();
    config.event_bytes_max = config.append_bytes_max;
    assert!(matches!(
        Log::open(dir.path(), config),
        Err(Error::InvalidConfig {
            field: "event_bytes_max",
            ..
        })
    ));
}

#[test]
fn expected_offset_is_optimistic_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(
        log.append_expected(&[AppendEvent::value(b"a")], 0).unwrap(),
        0
    );
    let error = log
        .append_expected(&[AppendEvent::value(b"b")], 0)
        .unwrap_err();
    assert!(matches!(
        error,
        Error::UnexpectedOffset {
            expected: 0,
            actual: 1
        }
    ));
    assert!(error.to_string().contains("ends at 1"), "{error}");
    assert_eq!(
        log.append_expected(&[AppendEvent::value(b"b")], 1).unwrap(),
        1
    );
}

#[test]
fn max_events_and_max_bytes_bound_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let value = [7u8; 82]; // 100 encoded bytes per event
    let events = [AppendEvent::value(&value); 10];
    log.append(&events).unwrap();
    let batch = log.read(0, 4, usize::MAX).unwrap();
    assert_eq!((batch.len(), batch.end()), (4, ReadEnd::Full));
    let batch = log.read(2, 100, 350).unwrap();
    assert_eq!(
        (batch.first_offset(), batch.len(), batch.end()),
        (2, 3, ReadEnd::ByteLimit)
    );
    assert_eq!(batch.event_bytes(), 300);
    // At least one event even when it alone is over the byte limit.
    let batch = log.read(5, 100, 10).unwrap();
    assert_eq!((batch.first_offset(), batch.len()), (5, 1));
    assert_eq!(log.read(3, 0, usize::MAX).unwrap().len(), 0);
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    let value = [1u8; 300];
    for i in 0..100u64 {
        let v = [&value[..], &i.to_le_bytes()].concat();
        assert_eq!(log.append(&[AppendEvent::value(&v)]).unwrap(), i);
    }
    let stats = log.stats().unwrap();
    assert!(
        stats.segments > 5,
        "expected several segments, got {}",
        stats.segments
    );
    let all = values(&log, 0, 1000);
    assert_eq!(all.len(), 100);
    for (i, (offset, v)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(&v[300..], &(i as u64).to_le_bytes());
    }
    for from in [0, 13, 14, 50, 99] {
        assert_eq!(values(&log, from, 1).first().map(|(o, _)| *o), Some(from));
    }
    let report = log.verify().unwrap();
    assert_eq!(report.frames, 100);
    assert_eq!(report.segments, stats.segments);
}

#[test]
fn segments_roll_by_age() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let mut config = LogConfig::default();
    config.segment_age_max_ms = Some(60_000);
    let log = sim_log(&storage, &clock, config);
    log.append(&[AppendEvent::value(b"a")]).unwrap();
    clock.advance(59_999);
    log.append(&[AppendEvent::value(b"b")]).unwrap();
    assert_eq!(log.stats().unwrap().segments, 1);
    clock.advance(1);
    log.append(&[AppendEvent::value(b"c")]).unwrap();
    assert_eq!(log.stats().unwrap().segments, 2);
    assert_eq!(values(&log, 0, 10).len(), 3);
}

#[test]
fn offset_for_time_finds_the_first_event_at_or_after() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    // Timestamps 0, 10, 20, ... but with one out-of-order event at offset 30 (ts 5).
    for i in 0..200u64 {
        let ts = if i == 30 { 5 } else { i * 10 };
        let value = [0u8; 60];
        log.append(&[AppendEvent {
            timestamp_ms: Some(ts),
            key: None,
            headers: &[],
            value: &value,
        }])
        .unwrap();
    }
    assert!(log.stats().unwrap().segments > 2);
    assert_eq!(log.offset_for_time(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_time(1).unwrap(), Some(1));
    assert_eq!(log.offset_for_time(10).unwrap(), Some(1));
    assert_eq!(log.offset_for_time(11).unwrap(), Some(2));
    assert_eq!(log.offset_for_time(1234).unwrap(), Some(124));
    assert_eq!(log.offset_for_time(1990).unwrap(), Some(199));
    assert_eq!(log.offset_for_time(1991).unwrap(), None);
    // Reopen (indexes loaded from files, sealed summaries lazily) gives the same answers.
    log.close().unwrap();
    drop(log);
    let log = sim_log(&storage, &clock, small_config());
    assert!(log.recovery_report().clean_shutdown);
    assert_eq!(log.offset_for_time(1234).unwrap(), Some(124));
    assert_eq!(log.offset_for_time(300).unwrap(), Some(30 + 1));
}

#[test]
fn retention_removes_whole_sealed_segments_by_size_and_age() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000_000);
    let mut config = small_config();
    config.retention_bytes_max = Some(12_000);
    let log = sim_log(&storage, &clock, config.clone());
    let value = [0u8; 500];
    for _ in 0..100 {
        log.append(&[AppendEvent::value(&value)]).unwrap();
    }
    let stats = log.stats().unwrap();
    assert!(
        stats.bytes <= 12_000 + 4096,
        "retention keeps the log near its limit: {stats:?}"
    );
    assert!(stats.start_offset > 0);
    assert!(matches!(
        log.read(0, 1, usize::MAX),
        Err(Error::OffsetOutOfRange { offset: 0, .. })
    ));
    assert_eq!(
        values(&log, stats.start_offset, 1000).len() as u64,
        100 - stats.start_offset
    );
    log.close().unwrap();
    drop(log);
    // The start offset survives a reopen.
    let log = sim_log(&storage, &clock, config);
    assert_eq!(log.start_offset(), stats.start_offset);
    drop(log);

    let mut config = small_config();
    config.retention_age_max_ms = Some(60_000);
    let storage = SimStorage::new();
    let log = sim_log(&storage, &clock, config);
    for _ in 0..20 {
        log.append(&[AppendEvent::value(&value)]).unwrap();
    }
    assert_eq!(log.apply_retention().unwrap().segments_removed.len(), 0);
    clock.advance(60_001);
    let report = log.apply_retention().unwrap();
    assert!(!report.segments_removed.is_empty());
    assert_eq!(log.start_offset(), report.start_offset);
    // The active segment is never removed, so the newest events stay readable.
    assert_eq!(
        values(&log, log.start_offset(), 100)
            .last()
            .map(|(o, _)| *o),
        Some(19)
    );
}

#[test]
fn truncate_before_moves_the_start_and_persists_it() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    let value = [0u8; 500];
    for _ in 0..40 {
        log.append(&[AppendEvent::value(&value)]).unwrap();
    }
    let segments_before = log.stats().unwrap().segments;
    let report = log.truncate_before(25).unwrap();
    assert_eq!(report.start_offset, 25);
    assert!(!report.segments_removed.is_empty());
    assert!(log.stats().unwrap().segments < segments_before);
    assert!(matches!(
        log.read(24, 1, usize::MAX),
        Err(Error::OffsetOutOfRange {
            offset: 24,
            start: 25,
            ..
        })
    ));
    assert_eq!(values(&log, 25, 1)[0].0, 25);
    assert_eq!(log.offset_for_time(0).unwrap(), Some(25));
    assert!(matches!(
        log.truncate_before(41),
        Err(Error::OffsetOutOfRange { .. })
    ));
    drop(log);
    let log = sim_log(&storage, &clock, small_config());
    assert_eq!(log.start_offset(), 25);
    assert_eq!(values(&log, 25, 100).len(), 15);
}

#[test]
fn reopen_after_clean_close_skips_the_scan_and_continues() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    for i in 0..50u64 {
        log.append(&[AppendEvent::value(&i.to_le_bytes())]).unwrap();
    }
    log.close().unwrap();
    assert!(matches!(
        log.append(&[AppendEvent::value(b"x")]),
        Err(Error::Closed)
    ));
    drop(log);
    let log = sim_log(&storage, &clock, small_config());
    let report = log.recovery_report().clone();
    assert!(report.clean_shutdown);
    // Only the active segment's frames after its index's last entry are checked.
    assert_eq!(report.segments_scanned, 1);
    let tail_max = u64::from(small_config().index_interval_bytes) + 64;
    assert!(
        report.bytes_scanned <= tail_max,
        "{} bytes scanned after a clean close",
        report.bytes_scanned
    );
    assert_eq!(report.end_offset, 50);
    assert_eq!(log.append(&[AppendEvent::value(b"next")]).unwrap(), 50);
    assert_eq!(values(&log, 0, 100).len(), 51);
    // The marker is gone once the log is open: a crash now is not mistaken for a clean close.
    let after_crash = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
    let log2 = Log::open_with(
        "/data/p0",
        small_config(),
        Arc::new(after_crash),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert!(!log2.recovery_report().clean_shutdown);
    assert_eq!(log2.end_offset(), 51);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(matches!(
        Log::open(dir.path(), LogConfig::default()),
        Err(Error::Locked { .. })
    ));
    log.close().unwrap();
    let again = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(again.recovery_report().clean_shutdown);
}

#[test]
fn wait_for_blocks_until_the_event_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    assert!(!log.wait_for(0, Duration::from_millis(20)).unwrap());
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append(&[AppendEvent::value(b"late")]).unwrap()
        })
    };
    assert!(log.wait_for(0, Duration::from_secs(10)).unwrap());
    assert_eq!(writer.join().unwrap(), 0);
    log.close().unwrap();
    assert!(matches!(
        log.wait_for(5, Duration::from_secs(1)),
        Err(Error::Closed)
    ));
}

#[test]
fn wait_for_async_wakes_without_blocking_a_thread() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Wake, Waker};

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(log.wait_for_async(0));
    assert!(future.as_mut().poll(&mut context).is_pending());
    assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
    log.append(&[AppendEvent::value(b"x")]).unwrap();
    assert!(
        flag.0.load(std::sync::atomic::Ordering::SeqCst),
        "the append woke the waiter"
    );
    assert!(matches!(
        future.as_mut().poll(&mut context),
        Poll::Ready(Ok(()))
    ));
}

#[test]
fn concurrent_appenders_share_fsyncs_and_get_unique_offsets() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = Arc::new(sim_log(&storage, &clock, LogConfig::default()));
    // An fsync that takes a moment, as a disk's does: with an instant one, 16 threads on two
    // busy cores can happen to run one after another and never share one (a CI run once saw
    // exactly that).
    storage.sync_delay(Some(std::time::Duration::from_micros(200)));
    let calls_before = storage.calls();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..50u64)
                    .map(|i| {
                        let value = [t as u8, i as u8];
                        let offset = log.append(&[AppendEvent::value(&value)]).unwrap();
                        // Acknowledged means visible (durable) already.
                        assert!(log.end_offset() > offset);
                        (offset, value)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, [u8; 2])> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // One write per append; fsyncs are shared, so well under 2 calls per append in total.
    let calls = storage.calls() - calls_before;
    acked.sort();
    assert_eq!(acked.len(), 800);
    for (i, (offset, value)) in acked.iter().enumerate() {
        assert_eq!(*offset, i as u64, "offsets are dense and unique");
        assert_eq!(values(&log, *offset, 1)[0].1, value.to_vec());
    }
    assert!(
        calls < 800 * 2,
        "expected group commit, saw {calls} storage calls for 800 appends"
    );
}

/// Appenders that pile up behind a slow fsync all wait for the next one (parked), which one of
/// them leads: every append returns, offsets are dense, and fsyncs are few.
#[test]
fn appenders_behind_a_slow_fsync_share_the_next_one() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = Arc::new(sim_log(&storage, &clock, LogConfig::default()));
    storage.sync_delay(Some(std::time::Duration::from_millis(2)));
    let calls_before = storage.calls();
    let (done, finished) = std::sync::mpsc::channel();
    for t in 0..32u8 {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let offsets: Vec<u64> = (0..20u8)
                .map(|i| log.append(&[AppendEvent::value(&[t, i])]).unwrap())
                .collect();
            done.send(offsets).unwrap();
        });
    }
    let mut acked: Vec<u64> = (0..32)
        .flat_map(|_| {
            finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("an appender never returned: a waiter was left without a leader")
        })
        .collect();
    acked.sort_unstable();
    assert_eq!(acked, (0..640).collect::<Vec<u64>>());
    assert_eq!(log.end_offset(), 640);
    // 640 writes; with 32 appenders behind each 2 ms fsync, far fewer than 640 fsyncs.
    let calls = storage.calls() - calls_before;
    assert!(calls < 640 + 200, "{calls} storage calls for 640 appends");
}

/// A roll fsyncs the segment it seals while a group-commit round may be fsyncing the same file:
/// the two must not run at once (a writeback error is reported to one fsync of an open file
/// only, so the other could return `Ok` for pages that never reached the disk). Found in
/// review: roll and close called `sync_data` beside the group commit.
#[test]
fn a_roll_never_fsyncs_a_segment_beside_a_running_group_commit() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let mut config = LogConfig::default();
    config.segment_bytes_max = 4096;
    let log = Arc::new(sim_log(&storage, &clock, config));
    storage.sync_delay(Some(std::time::Duration::from_millis(1)));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..60u8 {
                    log.append(&[AppendEvent::value(&[t; 100])]).unwrap();
                    let _ = i;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        log.stats().unwrap().segments > 10,
        "the appends must roll often"
    );
    assert_eq!(
        storage.concurrent_syncs_of_one_file_max(),
        1,
        "two fsyncs of one segment file ran at once"
    );
}

/// An fsync that fails while appenders are parked behind it wakes every one of them with an
/// error; none hangs, and every append acknowledged before it survives a reopen.
#[test]
fn a_failed_fsync_wakes_every_parked_appender() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = Arc::new(sim_log(&storage, &clock, LogConfig::default()));
    storage.sync_delay(Some(std::time::Duration::from_millis(1)));
    storage.fail_call(Some(150));
    let (done, finished) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..16u8 {
        let (log, done) = (log.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let error = loop {
                match log.append(&[AppendEvent::value(&[t])]) {
                    Ok(offset) => acked.push(offset),
                    Err(error) => break error,
                }
            };
            done.send((acked, error)).unwrap();
        }));
    }
    let mut acked = Vec::new();
    for _ in 0..16 {
        let (offsets, error) = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("an appender never returned after the failed fsync");
        assert!(matches!(error, Error::Poisoned { .. }), "{error}");
        acked.extend(offsets);
    }
    assert!(!acked.is_empty());
    // Every thread has answered; let go of their handles on the log before reopening it.
    for thread in threads {
        thread.join().unwrap();
    }
    drop(log);
    storage.fail_call(None);
    storage.sync_delay(None);
    let log = sim_log(&storage, &clock, LogConfig::default());
    let end = log.end_offset();
    for offset in acked {
        assert!(
            offset < end,
            "acknowledged offset {offset} lost (end {end})"
        );
    }
}

#[test]
fn a_failed_fsync_poisons_the_log_until_reopen() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, LogConfig::default());
    log.append(&[AppendEvent::value(b"durable")]).unwrap();
    storage.fail_call(Some(2)); // 1: the write, 2: the fsync
    let error = log.append(&[AppendEvent::value(b"lost")]).unwrap_err();
    assert!(matches!(error, Error::Poisoned { .. }), "{error}");
    assert!(error.to_string().contains("fsync"), "{error}");
    assert!(log.poisoned().is_some());
    // The fsync is never retried: later appends are refused, nothing more is acknowledged.
    assert!(matches!(
        log.append(&[AppendEvent::value(b"later")]),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(
        log.end_offset(),
        1,
        "the failed append never became visible"
    );
    assert!(matches!(log.close(), Err(Error::Poisoned { .. })));
    drop(log);
    let log = sim_log(&storage, &clock, LogConfig::default());
    assert!(!log.recovery_report().clean_shutdown);
    let recovered = values(&log, 0, 10);
    assert_eq!(recovered[0], (0, b"durable".to_vec()));
    assert!(recovered.len() <= 2);
    assert_eq!(
        log.append(&[AppendEvent::value(b"again")]).unwrap(),
        recovered.len() as u64
    );
}

#[test]
fn weaker_policies_show_written_events_and_sync_on_request() {
    for policy in [
        SyncPolicy::NeverLossy,
        SyncPolicy::IntervalLossy { interval_ms: 1_000 },
    ] {
        let storage = SimStorage::new();
        let clock = ManualClock::new(1_000);
        let mut config = LogConfig::default();
        config.sync_policy = policy;
        let log = sim_log(&storage, &clock, config.clone());
        log.append(&[AppendEvent::value(b"a")]).unwrap();
        assert_eq!(log.end_offset(), 1);
        let lost = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        let after = Log::open_with(
            "/data/p0",
            config.clone(),
            Arc::new(lost),
            Arc::new(clock.clone()),
        )
        .unwrap();
        assert_eq!(
            after.end_offset(),
            0,
            "{policy:?}: unsynced and acknowledged, so lost in a power cut"
        );
        drop(after);
        if let SyncPolicy::IntervalLossy { .. } = policy {
            clock.advance(1_000);
            log.append(&[AppendEvent::value(b"b")]).unwrap(); // the interval passed: this one syncs
        } else {
            log.sync().unwrap();
        }
        let kept = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        let after =
            Log::open_with("/data/p0", config, Arc::new(kept), Arc::new(clock.clone())).unwrap();
        assert!(after.end_offset() >= 1, "{policy:?}: synced events survive");
    }
}

#[test]
fn a_clean_open_does_not_read_every_segment() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    let value = [0u8; 1000];
    for _ in 0..400 {
        log.append(&[AppendEvent::value(&value)]).unwrap();
    }
    let segments = log.stats().unwrap().segments;
    assert!(segments >= 100, "{segments} segments");
    log.close().unwrap();
    drop(log);
    let before = storage.calls();
    let log = sim_log(&storage, &clock, small_config());
    let calls = storage.calls() - before;
    assert!(log.recovery_report().clean_shutdown);
    // A handful of calls (list, lock, checkpoint, the active segment and its index), not one
    // per segment.
    assert!(
        calls < 40,
        "a clean open of {segments} segments made {calls} storage calls"
    );
    // Sealed segments are loaded on demand and read back intact.
    assert_eq!(log.read(0, 1, usize::MAX).unwrap().len(), 1);
    assert_eq!(log.read(200, 1, usize::MAX).unwrap().first_offset(), 200);
}

#[test]
fn split_front_hands_out_consecutive_slices_of_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let values: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i % 7)]).collect();
    for chunk in values.chunks(9) {
        let events: Vec<AppendEvent<'_>> = chunk.iter().map(|v| AppendEvent::value(v)).collect();
        log.append(&events).unwrap();
    }
    let mut batch = log.read(3, 100, usize::MAX).unwrap();
    let mut next = 3u64;
    for size in [1usize, 2, 5, 9, 1, 4, 100] {
        let front = batch.split_front(size);
        let got: Vec<(u64, Vec<u8>)> = front.iter().map(|e| (e.offset, e.value.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> = (next..(next + size as u64).min(40))
            .map(|o| (o, values[o as usize].clone()))
            .collect();
        assert_eq!(got, want, "slice of {size} from {next}");
        assert_eq!(front.events().len(), want.len());
        next += want.len() as u64;
        assert_eq!(batch.first_offset(), next);
    }
    assert!(batch.is_empty());
}

#[test]
fn zeros_are_written_ahead_of_the_end_and_cut_when_sealing_closing_and_recovering() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let mut config = LogConfig::default();
    config.segment_bytes_max = 256 * 1024;
    config.preallocate_bytes = 64 * 1024;
    let log = sim_log(&storage, &clock, config.clone());
    let value = [7u8; 100];
    for _ in 0..10 {
        log.append(&[AppendEvent::value(&value)]).unwrap();
    }
    let active = std::path::Path::new("/data/p0/00000000000000000000.log");
    let written = storage.read_file(active).unwrap();
    assert!(
        written.len() >= 64 * 1024,
        "zeros ahead of the end: the file is {} bytes",
        written.len()
    );
    // A crash now (everything written survives, as after kill -9): recovery cuts the zeros,
    // says they were only zeros, and keeps every event.
    let image = storage.power_cut(weir_log::sim::CrashMode::Scramble { seed: 1 });
    let crashed = Log::open_with(
        "/data/p0",
        config.clone(),
        Arc::new(image.clone()),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let torn = crashed.recovery_report().torn_tail.clone();
    if let Some(torn) = &torn {
        assert!(torn.zeros_only, "{torn:?}");
    }
    assert_eq!(crashed.end_offset(), 10);
    let after = image.read_file(active).unwrap();
    assert!(
        after.len() < 4096,
        "the zeros were cut: {} bytes",
        after.len()
    );
    drop(crashed);
    // Appends large enough to roll: every sealed segment is exactly as long as its frames.
    let big = vec![1u8; 40 * 1024];
    for _ in 0..20 {
        log.append(&[AppendEvent::value(&big)]).unwrap();
    }
    log.close().unwrap();
    let reopened = sim_log(&storage, &clock, config);
    assert!(reopened.recovery_report().clean_shutdown);
    assert!(reopened.recovery_report().torn_tail.is_none());
    assert_eq!(reopened.end_offset(), 30);
    assert!(reopened.verify().is_ok());
    let names = weir_log::Storage::list_dir(&storage, std::path::Path::new("/data/p0")).unwrap();
    for name in names {
        if name.ends_with(".log") {
            let path = std::path::Path::new("/data/p0").join(&name);
            let bytes = storage.read_file(&path).unwrap();
            assert_ne!(bytes.last(), Some(&0), "{name} ends in zeros");
        }
    }
}

/// Appends `value` through `append_start_with`, keeping the frame a journal would keep, and
/// acknowledges it as journaled (no fsync of the segment).
fn journaled_append(log: &Log, value: &[u8], frames: &mut Vec<Vec<u8>>) -> u64 {
    let pending = log
        .append_start_with(&[AppendEvent::value(value)], None, &mut |frame, point| {
            assert_eq!(point.end_offset(), point.first_offset() + 1);
            frames.push(frame.to_vec());
        })
        .unwrap();
    pending.journaled().unwrap()
}

#[test]
fn journaled_appends_are_visible_without_a_segment_fsync_and_restored_from_their_frames() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    let mut frames = Vec::new();
    for i in 0..20u8 {
        assert_eq!(journaled_append(&log, &[i; 100], &mut frames), u64::from(i));
    }
    // Readers see them: the journal made them durable.
    assert_eq!(log.end_offset(), 20);
    assert_eq!(values(&log, 0, 100).len(), 20);
    // Nothing but the rolls fsynced the segments, so a power cut loses the active one's tail.
    let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
    drop(log);
    let log = sim_log(&image, &clock, small_config());
    let kept = log.end_offset();
    assert!(kept < 20, "the unsynced tail is gone ({kept})");
    // A frame past the end (events missing before it) is refused.
    let error = log.restore_frame(&frames[19]).unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedOffset { expected: 19, actual } if actual == kept),
        "{error}"
    );
    // Written back in order: the frames the log holds are skipped, the rest appended.
    let restored: u64 = frames.iter().map(|f| log.restore_frame(f).unwrap()).sum();
    assert_eq!(restored, 20 - kept);
    log.sync_segment().unwrap();
    let expected: Vec<(u64, Vec<u8>)> = (0..20u8).map(|i| (u64::from(i), vec![i; 100])).collect();
    assert_eq!(values(&log, 0, 100), expected);
    // Restoring again changes nothing, and the restored events survive the next cut.
    assert_eq!(
        frames
            .iter()
            .map(|f| log.restore_frame(f).unwrap())
            .sum::<u64>(),
        0
    );
    let image = image.power_cut(weir_log::sim::CrashMode::DropUnsynced);
    drop(log);
    let log = sim_log(&image, &clock, small_config());
    assert_eq!(values(&log, 0, 100), expected);
}

#[test]
fn an_append_behind_one_waiting_for_the_segment_fsync_is_marked_as_after_a_gap() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, LogConfig::default());
    // Written, not yet fsynced, not journaled.
    let plain = log
        .append_start(&[AppendEvent::value(b"plain")], None)
        .unwrap();
    // A journal writing the next frame as it is would hold a frame after a gap (after a crash
    // its replay could not tell lost events from unacknowledged ones): the point says so.
    let mut points = Vec::new();
    let next = log
        .append_start_with(&[AppendEvent::value(b"next")], None, &mut |_, p| {
            points.push(p)
        })
        .unwrap();
    assert!(points[0].after_gap());
    // Marking it would claim `plain` durable too: refused.
    assert!(!log.mark_journaled(points[0]));
    assert_eq!(log.end_offset(), 0);
    // What the journal does first: fsync the segment, which covers both.
    log.sync_segment().unwrap();
    assert!(log.mark_journaled(points[0]));
    assert_eq!(log.end_offset(), 2);
    assert_eq!(next.journaled().unwrap(), 1);
    assert_eq!(plain.wait().unwrap(), 0);
    // Frames right after journaled ones are not after a gap.
    let third = log
        .append_start_with(&[AppendEvent::value(b"third")], None, &mut |_, p| {
            points.push(p)
        })
        .unwrap();
    let fourth = log
        .append_start_with(&[AppendEvent::value(b"fourth")], None, &mut |_, p| {
            points.push(p)
        })
        .unwrap();
    assert!(!points[1].after_gap() && !points[2].after_gap());
    assert!(log.mark_journaled(points[1]) && log.mark_journaled(points[2]));
    assert_eq!(
        (third.journaled().unwrap(), fourth.journaled().unwrap()),
        (2, 3)
    );
    assert_eq!(log.end_offset(), 4);
}

#[test]
fn retention_never_records_a_start_past_what_the_segments_hold() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(1_000);
    let log = sim_log(&storage, &clock, small_config());
    let mut frames = Vec::new();
    for i in 0..30u8 {
        journaled_append(&log, &[i; 100], &mut frames);
    }
    // Into the active segment, past what its last fsync covered: the segments are fsynced
    // first, so the recorded start never passes the end a power cut leaves.
    log.truncate_before(29).unwrap();
    let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
    drop(log);
    let log = sim_log(&image, &clock, small_config());
    assert_eq!(log.start_offset(), 29);
    assert_eq!(values(&log, 29, 10), [(29, vec![29u8; 100])]);
}

#[test]
fn a_log_whose_close_failed_never_passes_for_fsynced() {
    let mut failed_before_the_fsync = 0;
    for k in 1..=6 {
        let storage = SimStorage::new();
        let clock = ManualClock::new(1_000);
        let log = sim_log(&storage, &clock, LogConfig::default());
        journaled_append(&log, b"only in a journal", &mut Vec::new());
        storage.fail_call(Some(k));
        let closed = log.close();
        storage.fail_call(None);
        // What a journal asks before it forgets the frame: Ok only if it is on disk, whatever
        // step of the close failed (a close again says no more than this).
        let synced = log.sync_segment();
        assert_eq!(log.close().is_ok(), synced.is_ok(), "call {k}: {closed:?}");
        if closed.is_err() && synced.is_err() {
            failed_before_the_fsync += 1;
        }
        let image = storage.power_cut(weir_log::sim::CrashMode::DropUnsynced);
        drop(log);
        if synced.is_ok() {
            let log = sim_log(&image, &clock, LogConfig::default());
            assert_eq!(log.end_offset(), 1, "call {k}: said fsynced, but lost");
        }
    }
    assert!(
        failed_before_the_fsync > 0,
        "some failure came before the fsync"
    );
}
