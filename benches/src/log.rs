//! The log suite (issue 2): weir-log's append, read and open figures, each next to a plain-file
//! baseline measured in the same run, in the same scratch directory (so on the same disk).
//!
//! Every figure is the median of a few trials; a trial of the log and one of its baseline run
//! back to back, alternating which goes first, so a slow moment of the machine (another
//! process, writeback, the disk's discards) hits both. Values are pseudo-random bytes, prepared
//! once and reused, so neither side pays for making them. Removed data is committed (directory
//! fsync) before the next measurement.
//!
//! The baseline's record of one event has the same size as the log's encoded event without a
//! key or headers: 18 fixed bytes (value length u32, CRC-32 u32 of the rest of the record,
//! timestamp u64, flags u16), then the value. It is written through a plain `BufWriter` (with a
//! 128 KiB buffer, about the log's write size) and walked back by its length prefix.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_log::{AppendEvent, Log, LogConfig, SyncPolicy, CLEAN_SHUTDOWN_FILE};

use crate::harness::{self, median, percentile, run_for, Figure, Options};

/// Bytes of a small event's value.
const SMALL_VALUE_BYTES: usize = 100;
/// Bytes of a 1 KiB event's value.
const KIB_VALUE_BYTES: usize = 1024;
/// Events per append in the batched figures.
const BATCH_EVENTS: usize = 1000;
/// Fixed bytes of a baseline record (the same as the log's per-event framing).
const RECORD_FIXED_BYTES: usize = 18;
/// Buffer of the baseline's `BufWriter`: about one append of 1000 small events, so both sides
/// make the same number of `write` calls (the default 8 KiB buffer makes ~15 times as many, and
/// the baseline then measures system calls rather than writing).
const BASELINE_WRITE_BYTES: usize = 128 << 10;
/// Segments sealed in the clean-open figure.
const SEALED_SEGMENTS: usize = 1000;
/// Segment size of the clean-open figure.
const SMALL_SEGMENT_BYTES: u64 = 64 << 10;
/// Threads of the group-commit figure.
const APPENDER_THREADS: usize = 64;

/// How much each figure does; `--quick` shrinks everything. The fsync-bound figures run many
/// short trials: this disk's fsync latency drifts by 10× within a minute when other processes
/// use it, and short alternating trials keep each pair under the same conditions.
#[derive(Debug, Clone)]
struct Plan {
    /// Events written per trial of the no-sync append figure (and its baseline).
    nosync_events: usize,
    nosync_trials: usize,
    /// How long each durable-append trial runs, per side.
    always_duration: Duration,
    always_trials: usize,
    /// How long each group-commit trial runs, per side.
    concurrent_duration: Duration,
    concurrent_trials: usize,
    /// Events in the log (and baseline file) read back.
    read_events: usize,
    /// How long each read trial runs (whole passes over the data), per side.
    read_duration: Duration,
    read_trials: usize,
    open_clean_trials: usize,
    /// Bytes of the active segment recovered after a crash.
    crash_segment_bytes: u64,
    crash_trials: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                nosync_events: 500_000,
                nosync_trials: 3,
                always_duration: Duration::from_millis(200),
                always_trials: 2,
                concurrent_duration: Duration::from_millis(250),
                concurrent_trials: 2,
                read_events: 1_000_000,
                read_duration: Duration::from_millis(200),
                read_trials: 3,
                open_clean_trials: 3,
                crash_segment_bytes: 32 << 20,
                crash_trials: 3,
            }
        } else {
            Plan {
                nosync_events: 3_000_000,
                nosync_trials: 5,
                always_duration: Duration::from_millis(750),
                always_trials: 8,
                concurrent_duration: Duration::from_millis(750),
                concurrent_trials: 10,
                read_events: 4_000_000,
                read_duration: Duration::from_secs(1),
                read_trials: 5,
                open_clean_trials: 7,
                crash_segment_bytes: 256 << 20,
                crash_trials: 5,
            }
        }
    }
}

/// Runs the log suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let plan = Plan::new(options.quick);
    let scratch = harness::scratch_dir(options);
    let dir = scratch.path();
    let small = Values::new(BATCH_EVENTS, SMALL_VALUE_BYTES, 1);
    let large = Values::new(BATCH_EVENTS, KIB_VALUE_BYTES, 2);
    let started = Instant::now();
    // The fsync-bound figures first, while the disk is not yet busy with what the others wrote;
    // printed in the order.
    let concurrent = append_concurrent(dir, &plan, &small);
    let always = append_always(dir, &plan, &large);
    let nosync = append_nosync(dir, &plan, &small);
    let figures = vec![
        nosync,
        always,
        concurrent,
        read_sequential(dir, &plan, &small),
        open_clean(dir, &plan, &small),
        open_after_crash(dir, &plan, &small),
    ];
    progress(&format!(
        "suite done in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    figures
}

// ---- Figures ----------------------------------------------------------------------------------

/// `append_nosync_100B_batch1000`: events/s appended without fsync, vs a `BufWriter` + crc32.
fn append_nosync(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "append_nosync_100B_batch1000";
    progress(name);
    let events = values.events();
    let appends = plan.nosync_events.div_ceil(BATCH_EVENTS);
    let total = (appends * BATCH_EVENTS) as f64;
    let (mut log_rates, mut base_rates) = paired(
        plan.nosync_trials,
        |trial| {
            let log_dir = dir.join(format!("nosync-{trial}"));
            let log = open_log(&log_dir, config(SyncPolicy::NeverLossy));
            let started = Instant::now();
            for _ in 0..appends {
                must(log.append(&events), "append");
            }
            let rate = total / started.elapsed().as_secs_f64();
            must(log.close(), "close the log");
            drop(log);
            remove(&log_dir);
            rate
        },
        |trial| {
            let path = dir.join(format!("nosync-{trial}.baseline"));
            let elapsed = write_baseline_file(&path, values, appends);
            remove(&path);
            total / elapsed.as_secs_f64()
        },
    );
    Figure::new(
        name,
        median(&mut log_rates),
        "events/s",
        "BufWriter (128 KiB) + crc32 per event",
        median(&mut base_rates),
        "≥ 0.8× and ≥ 10,000,000 events/s",
    )
}

/// `append_always_1KiB_batch1000`: MB/s of values appended durably in 1000 × 1 KiB appends,
/// vs 1 MiB `write_all` + `sync_data` on a plain file.
fn append_always(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "append_always_1KiB_batch1000";
    progress(name);
    let events = values.events();
    let append_bytes = (BATCH_EVENTS * KIB_VALUE_BYTES) as f64;
    let chunk = vec![0x5au8; 1 << 20];
    let (mut log_rates, mut base_rates) = paired(
        plan.always_trials,
        |trial| {
            let log_dir = dir.join(format!("always-{trial}"));
            let log = open_log(&log_dir, config(SyncPolicy::Always));
            let (appends, elapsed) = run_for(plan.always_duration, || {
                must(log.append(&events), "append");
            });
            must(log.close(), "close the log");
            drop(log);
            remove(&log_dir);
            appends as f64 * append_bytes / 1e6 / elapsed.as_secs_f64()
        },
        |trial| {
            let path = dir.join(format!("always-{trial}.baseline"));
            let mut file = must(File::create(&path), "create the baseline file");
            let (writes, elapsed) = run_for(plan.always_duration, || {
                must(file.write_all(&chunk), "write");
                must(file.sync_data(), "fdatasync");
            });
            drop(file);
            remove(&path);
            writes as f64 * chunk.len() as f64 / 1e6 / elapsed.as_secs_f64()
        },
    );
    Figure::new(
        name,
        median(&mut log_rates),
        "MB/s",
        "1 MiB write_all + fdatasync",
        median(&mut base_rates),
        "≥ 0.7×",
    )
}

/// `append_always_concurrent64_single`: events/s from 64 threads each appending one 100 B event
/// at a time, durably, vs one thread doing write + fdatasync per event.
fn append_concurrent(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "append_always_concurrent64_single";
    progress(name);
    let (mut log_rates, mut base_rates) = paired(
        plan.concurrent_trials,
        |trial| {
            let log_dir = dir.join(format!("concurrent-{trial}"));
            let log = open_log(&log_dir, config(SyncPolicy::Always));
            let rate = concurrent_appends(&log, values, plan.concurrent_duration);
            must(log.close(), "close the log");
            drop(log);
            remove(&log_dir);
            rate
        },
        |trial| {
            let path = dir.join(format!("concurrent-{trial}.baseline"));
            let mut file = must(File::create(&path), "create the baseline file");
            let value = values.value(0);
            let (writes, elapsed) = run_for(plan.concurrent_duration, || {
                must(file.write_all(value), "write");
                must(file.sync_data(), "fdatasync");
            });
            drop(file);
            remove(&path);
            writes as f64 / elapsed.as_secs_f64()
        },
    );
    Figure::new(
        name,
        median(&mut log_rates),
        "events/s",
        "1 thread: write + fdatasync per event",
        median(&mut base_rates),
        "≥ 20× (group commit)",
    )
}

/// 64 threads appending one event at a time to `log` for `duration`: events/s.
fn concurrent_appends(log: &Log, values: &Values, duration: Duration) -> f64 {
    let stop = AtomicBool::new(false);
    let appended = AtomicU64::new(0);
    let barrier = Barrier::new(APPENDER_THREADS + 1);
    let started = std::thread::scope(|scope| {
        for thread in 0..APPENDER_THREADS {
            let (stop, appended, barrier) = (&stop, &appended, &barrier);
            let event = [AppendEvent::value(values.value(thread))];
            scope.spawn(move || {
                barrier.wait();
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    must(log.append(&event), "append");
                    count += 1;
                }
                appended.fetch_add(count, Ordering::Relaxed);
            });
        }
        barrier.wait();
        let started = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        // Leaving the scope joins the threads: their last appends are counted and timed.
        started
    });
    appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `read_sequential_100B`: events/s read back from the page cache through `Log::read` (CRCs
/// checked by the log), vs large buffered reads + crc32 per record of the baseline file.
fn read_sequential(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "read_sequential_100B";
    progress(name);
    let appends = plan.read_events.div_ceil(BATCH_EVENTS);
    let events_total = (appends * BATCH_EVENTS) as u64;
    let log_dir = dir.join("read");
    {
        let log = open_log(&log_dir, config(SyncPolicy::NeverLossy));
        let events = values.events();
        for _ in 0..appends {
            must(log.append(&events), "append");
        }
        must(log.close(), "close the log");
    }
    let log = open_log(&log_dir, config(SyncPolicy::NeverLossy));
    let path = dir.join("read.baseline");
    write_baseline_file(&path, values, appends);
    // What both sides must find: (events, sum of value length plus first byte).
    let expected = read_log_pass(&log);
    assert_eq!(
        expected.0, events_total,
        "the log holds every appended event"
    );
    assert_eq!(
        read_baseline_pass(&path),
        expected,
        "the baseline file holds the same values"
    );
    let (mut log_rates, mut base_rates) = paired(
        plan.read_trials,
        |_| {
            let (passes, elapsed) = run_for(plan.read_duration, || {
                assert_eq!(read_log_pass(&log), expected);
            });
            (passes * events_total) as f64 / elapsed.as_secs_f64()
        },
        |_| {
            let (passes, elapsed) = run_for(plan.read_duration, || {
                assert_eq!(read_baseline_pass(&path), expected);
            });
            (passes * events_total) as f64 / elapsed.as_secs_f64()
        },
    );
    must(log.close(), "close the log");
    drop(log);
    remove(&log_dir);
    remove(&path);
    Figure::new(
        name,
        median(&mut log_rates),
        "events/s",
        "1 MiB reads + crc32 per record (page cache)",
        median(&mut base_rates),
        "≥ 0.8× and ≥ 15,000,000 events/s",
    )
}

/// `open_clean_1000_segments`: ms to open a cleanly closed log of 1000 sealed segments, vs
/// listing its directory and opening and closing every file in it.
fn open_clean(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "open_clean_1000_segments";
    progress(name);
    let log_dir = dir.join("open-clean");
    let mut config = config(SyncPolicy::NeverLossy);
    config.segment_bytes_max = SMALL_SEGMENT_BYTES;
    // Appends of 100 events (~12 KB): five fill a segment.
    let events = &values.events()[..100];
    let segments = {
        let log = open_log(&log_dir, config.clone());
        loop {
            let stats = must(log.stats(), "stats");
            if stats.segments > SEALED_SEGMENTS {
                break stats.segments;
            }
            for _ in 0..5 {
                must(log.append(events), "append");
            }
        }
    };
    assert_eq!(
        segments,
        SEALED_SEGMENTS + 1,
        "sealed segments and the active one"
    );
    let (mut log_times, mut base_times) = paired(
        plan.open_clean_trials,
        |_| {
            let started = Instant::now();
            let log = open_log(&log_dir, config.clone());
            let elapsed = started.elapsed();
            let report = log.recovery_report();
            assert!(report.clean_shutdown, "the log was closed cleanly");
            assert_eq!(report.segments, segments);
            assert_eq!(report.segments_scanned, 0, "a clean open scans nothing");
            must(log.close(), "close the log");
            elapsed
        },
        |_| {
            let started = Instant::now();
            let mut files = 0usize;
            for entry in must(fs::read_dir(&log_dir), "list the log directory") {
                let entry = must(entry, "list the log directory");
                drop(must(File::open(entry.path()), "open a file of the log"));
                files += 1;
            }
            let elapsed = started.elapsed();
            assert!(files > segments, "the baseline opened every segment");
            elapsed
        },
    );
    remove(&log_dir);
    Figure::new(
        name,
        ms(percentile(&mut log_times, 50.0)),
        "ms",
        "read_dir + open/close every file",
        ms(percentile(&mut base_times, 50.0)),
        "< 200 ms",
    )
}

/// `open_after_crash`: ms to open a log whose last close was not clean, so recovery scans and
/// CRC-checks its whole active segment, vs reading that segment file sequentially with a crc32.
fn open_after_crash(dir: &Path, plan: &Plan, values: &Values) -> Figure {
    let name = "open_after_crash";
    progress(name);
    let log_dir = dir.join("open-crash");
    let mut config = config(SyncPolicy::NeverLossy);
    config.segment_bytes_max = 1 << 30;
    {
        let log = open_log(&log_dir, config.clone());
        let events = values.events();
        while must(log.stats(), "stats").bytes < plan.crash_segment_bytes {
            must(log.append(&events), "append");
        }
        must(log.close(), "close the log");
    }
    let segment = only_segment(&log_dir);
    let segment_bytes = must(fs::metadata(&segment), "stat the segment").len();
    let (mut log_times, mut base_times) = paired(
        plan.crash_trials,
        |_| {
            // What a crash leaves: the same files, without the clean-shutdown marker.
            must(
                fs::remove_file(log_dir.join(CLEAN_SHUTDOWN_FILE)),
                "remove the clean-shutdown marker",
            );
            let started = Instant::now();
            let log = open_log(&log_dir, config.clone());
            let elapsed = started.elapsed();
            let report = log.recovery_report();
            assert!(!report.clean_shutdown, "the open recovered");
            assert_eq!(report.segments, 1);
            assert_eq!(
                report.bytes_scanned, segment_bytes,
                "the whole segment scanned"
            );
            assert!(report.torn_tail.is_none());
            must(log.close(), "close the log");
            elapsed
        },
        |_| {
            let started = Instant::now();
            let (bytes, crc) = read_and_crc(&segment);
            let elapsed = started.elapsed();
            assert_eq!(bytes, segment_bytes);
            std::hint::black_box(crc);
            elapsed
        },
    );
    remove(&log_dir);
    Figure::new(
        name,
        ms(percentile(&mut log_times, 50.0)),
        "ms",
        &format!(
            "1 MiB reads + crc32 of the {} MiB segment",
            segment_bytes >> 20
        ),
        ms(percentile(&mut base_times, 50.0)),
        "∝ active segment only",
    )
}

/// Runs `trials` rounds of a measurement of the log and of its baseline, alternating which of
/// the two goes first (so neither always runs in the other's wake: writeback, discards, a warm
/// cache); returns the samples of each.
fn paired<T>(
    trials: usize,
    mut log: impl FnMut(usize) -> T,
    mut baseline: impl FnMut(usize) -> T,
) -> (Vec<T>, Vec<T>) {
    let (mut log_samples, mut baseline_samples) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        if trial % 2 == 0 {
            log_samples.push(log(trial));
            baseline_samples.push(baseline(trial));
        } else {
            baseline_samples.push(baseline(trial));
            log_samples.push(log(trial));
        }
    }
    (log_samples, baseline_samples)
}

// ---- Data -----------------------------------------------------------------------------------

/// `count` pseudo-random values of `len` bytes each, in one buffer.
#[derive(Debug)]
struct Values {
    bytes: Vec<u8>,
    len: usize,
}

impl Values {
    fn new(count: usize, len: usize, seed: u64) -> Values {
        // xorshift64*: values that do not compress or repeat, without a dependency.
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let bytes = (0..count * len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect();
        Values { bytes, len }
    }

    fn count(&self) -> usize {
        self.bytes.len() / self.len
    }

    fn value(&self, index: usize) -> &[u8] {
        let at = (index % self.count()) * self.len;
        &self.bytes[at..at + self.len]
    }

    /// One append's events, prepared once and reused.
    fn events(&self) -> Vec<AppendEvent<'_>> {
        self.bytes
            .chunks(self.len)
            .map(AppendEvent::value)
            .collect()
    }
}

/// Writes `batches` × `values.count()` baseline records through a plain `BufWriter` (one
/// timestamp per batch, as the log stamps one per append) and returns the time it took,
/// flush included, fsync not.
fn write_baseline_file(path: &Path, values: &Values, batches: usize) -> Duration {
    let file = must(File::create(path), "create the baseline file");
    let mut out = BufWriter::with_capacity(BASELINE_WRITE_BYTES, file);
    let value_len = u32::try_from(values.len).expect("small values");
    let started = Instant::now();
    for _ in 0..batches {
        let now = now_ms();
        for value in values.bytes.chunks(values.len) {
            let mut fixed = [0u8; RECORD_FIXED_BYTES];
            fixed[..4].copy_from_slice(&value_len.to_le_bytes());
            fixed[8..16].copy_from_slice(&now.to_le_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(&fixed[8..]);
            crc.update(value);
            fixed[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
            must(out.write_all(&fixed), "write");
            must(out.write_all(value), "write");
        }
    }
    must(out.flush(), "flush");
    started.elapsed()
}

/// One pass over the whole log in reads of 1000 events: (events, sum of value length plus
/// first byte).
fn read_log_pass(log: &Log) -> (u64, u64) {
    let end = log.end_offset();
    let mut offset = log.start_offset();
    let (mut events, mut sum) = (0u64, 0u64);
    while offset < end {
        let batch = must(log.read(offset, BATCH_EVENTS, usize::MAX), "read");
        for event in batch.iter() {
            events += 1;
            sum += event.value.len() as u64 + u64::from(event.value[0]);
        }
        offset = batch.next_offset();
    }
    (events, sum)
}

/// One pass over a baseline file in 1 MiB reads, checking each record's crc32: (events, sum of
/// value length plus first byte).
fn read_baseline_pass(path: &Path) -> (u64, u64) {
    let mut file = must(File::open(path), "open the baseline file");
    let mut buffer = vec![0u8; 1 << 20];
    let (mut filled, mut events, mut sum) = (0usize, 0u64, 0u64);
    loop {
        let read = must(file.read(&mut buffer[filled..]), "read the baseline file");
        if read == 0 {
            break;
        }
        filled += read;
        let mut at = 0usize;
        while at + RECORD_FIXED_BYTES <= filled {
            let record = &buffer[at..filled];
            let value_len = u32_at(record, 0) as usize;
            let record_len = RECORD_FIXED_BYTES + value_len;
            if record.len() < record_len {
                break;
            }
            let record = &record[..record_len];
            assert_eq!(
                crc32fast::hash(&record[8..]),
                u32_at(record, 4),
                "baseline record at byte {at} of the buffer is damaged"
            );
            events += 1;
            sum += value_len as u64 + u64::from(record[RECORD_FIXED_BYTES]);
            at += record_len;
        }
        buffer.copy_within(at..filled, 0);
        filled -= at;
    }
    assert_eq!(filled, 0, "the baseline file ends with a whole record");
    (events, sum)
}

/// Reads a whole file in 1 MiB reads and computes its crc32: (bytes, crc).
fn read_and_crc(path: &Path) -> (u64, u32) {
    let mut file = must(File::open(path), "open the segment");
    let mut buffer = vec![0u8; 1 << 20];
    let mut crc = crc32fast::Hasher::new();
    let mut bytes = 0u64;
    loop {
        let read = must(file.read(&mut buffer), "read the segment");
        if read == 0 {
            break;
        }
        crc.update(&buffer[..read]);
        bytes += read as u64;
    }
    (bytes, crc.finalize())
}

// ---- Helpers --------------------------------------------------------------------------------

fn config(sync_policy: SyncPolicy) -> LogConfig {
    let mut config = LogConfig::default();
    config.sync_policy = sync_policy;
    config
}

fn open_log(dir: &Path, config: LogConfig) -> Log {
    must(Log::open(dir, config), "open the log")
}

/// The one segment file of a log directory.
fn only_segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = must(fs::read_dir(dir), "list the log directory")
        .map(|entry| must(entry, "list the log directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    assert_eq!(segments.len(), 1, "one segment in {}", dir.display());
    segments.remove(0)
}

/// Removes a file or directory and commits the removal (fsync of its parent directory), so that
/// the file system's work of freeing its blocks (this disk is mounted with `discard`) is done
/// before the next measurement rather than during its first fsync.
fn remove(path: &Path) {
    if path.is_dir() {
        must(fs::remove_dir_all(path), "remove a directory");
    } else {
        must(fs::remove_file(path), "remove a file");
    }
    let parent = path.parent().expect("scratch paths have a parent");
    must(
        File::open(parent).and_then(|dir| dir.sync_all()),
        "fsync the scratch directory",
    );
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn progress(what: &str) {
    eprintln!("weir-bench log: {what}");
}

/// The value, or a panic naming what failed: a benchmark stops at the first error.
fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("weir-bench log: cannot {what}: {error}"))
}
