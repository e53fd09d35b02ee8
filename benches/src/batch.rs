//! The batch suite (issue 4): consuming with acks through the batch reader, against a plain
//! sequential weir-log read of the same events measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_batch::{BatchConfig, CommitPolicy, MemoryDeadLetterSink, PartitionReader};
use weir_log::{AppendEvent, Log, LogConfig, SyncPolicy, SystemClock};
use weir_offsets::{Config, OffsetStore};

use crate::harness::{self, Figure, Options};

/// Runs the batch suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let events: u64 = if options.quick { 300_000 } else { 3_000_000 };
    let dir = harness::scratch_dir(options);
    let log = Arc::new(fill(dir.path(), events));
    let read_rate = plain_read_rate(&log, events);
    let mut figures = Vec::new();

    let rate = consume_rate(dir.path(), &log, "batch1000", 1000, events);
    figures.push(Figure::new(
        "consume_ack_100B_batch1000",
        rate,
        "events/s",
        "sequential weir-log read, same events",
        read_rate,
        ">= 5,000,000 events/s and >= 0.5x",
    ));
    let single_events = if options.quick { 20_000 } else { 200_000 };
    let rate = consume_rate(dir.path(), &log, "batch1", 1, single_events);
    figures.push(Figure::new(
        "consume_ack_100B_batch1",
        rate,
        "events/s",
        "sequential weir-log read, same events",
        read_rate,
        "reported (cost of per-event acks)",
    ));
    let (latency_ms, sleep_overshoot_ms) =
        redelivery_latency(dir.path(), &log, if options.quick { 5 } else { 20 });
    figures.push(Figure::new(
        "redelivery_latency",
        latency_ms,
        "ms",
        "overshoot of a 100 ms thread sleep",
        sleep_overshoot_ms,
        "reported (ack_timeout = 100 ms)",
    ));
    figures
}

fn fill(dir: &std::path::Path, events: u64) -> Log {
    let mut config = LogConfig::default();
    config.sync_policy = SyncPolicy::NeverLossy;
    let log = Log::open(dir.join("log"), config).expect("open log");
    let value = [7u8; 100];
    let batch = vec![AppendEvent::value(&value); 1000];
    for _ in 0..events / 1000 {
        log.append(&batch).expect("append");
    }
    log.sync().expect("sync");
    log
}

/// Events per second of a plain sequential read with checksums, touching every value.
fn plain_read_rate(log: &Log, events: u64) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut offset = 0;
        let mut bytes = 0usize;
        while offset < events {
            let batch = log.read(offset, 1000, usize::MAX).expect("read");
            bytes += batch.iter().map(|event| event.value.len()).sum::<usize>();
            offset = batch.next_offset();
        }
        assert!(bytes > 0);
        best = best.max(events as f64 / started.elapsed().as_secs_f64());
    }
    best
}

fn reader(
    dir: &std::path::Path,
    log: &Arc<Log>,
    group: &str,
    batch_size: u32,
    ack_timeout_ms: u64,
) -> PartitionReader {
    let offsets = Arc::new(
        OffsetStore::open(&Config::new(dir.join(format!("offsets-{group}")))).expect("offsets"),
    );
    let mut config = BatchConfig::default();
    config.batch_size = batch_size;
    config.ack_timeout_ms = ack_timeout_ms;
    config.max_wait_ms = 1;
    // The barrier is committed durably every 100 ms.
    config.commit_policy = CommitPolicy::Interval {
        interval_ms: 100,
        acks_max: u32::MAX,
    };
    PartitionReader::open(
        group,
        "bench",
        0,
        log.clone(),
        offsets,
        Arc::new(MemoryDeadLetterSink::default()),
        config,
        Arc::new(SystemClock),
    )
    .expect("reader")
}

/// Fetch → touch every event → ack, with the barrier committed durably every 100 ms.
fn consume_rate(
    dir: &std::path::Path,
    log: &Arc<Log>,
    group: &str,
    batch_size: u32,
    events: u64,
) -> f64 {
    let reader = reader(dir, log, group, batch_size, 30_000);
    let started = Instant::now();
    let mut consumed = 0u64;
    let mut bytes = 0usize;
    while consumed < events {
        let batch = reader
            .next_batch(Duration::from_secs(5))
            .expect("next batch")
            .expect("events are there");
        bytes += batch
            .events
            .iter()
            .map(|event| event.value.len())
            .sum::<usize>();
        consumed += batch.events.len() as u64;
        reader.ack(batch.id).expect("ack");
    }
    reader.commit().expect("final commit");
    assert!(bytes > 0);
    consumed as f64 / started.elapsed().as_secs_f64()
}

/// Milliseconds from a lease's expiry to the redelivered batch reaching a waiting consumer,
/// and the overshoot of a plain 100 ms sleep as the baseline (the timer's own latency).
fn redelivery_latency(dir: &std::path::Path, log: &Arc<Log>, rounds: u32) -> (f64, f64) {
    let reader = reader(dir, log, "redelivery", 10, 100);
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let batch = reader
            .next_batch(Duration::from_secs(5))
            .expect("next batch")
            .expect("events");
        let expires_ms = batch.lease_expires_ms;
        let again = reader
            .next_batch(Duration::from_secs(5))
            .expect("next batch")
            .expect("redelivered");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as f64;
        assert_eq!(
            (again.first_offset, again.attempt),
            (batch.first_offset, batch.attempt + 1)
        );
        latencies.push(now_ms - expires_ms as f64);
        reader.ack(again.id).expect("ack");
    }
    let mut overshoots = Vec::new();
    for _ in 0..rounds.min(5) {
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        overshoots.push(started.elapsed().as_secs_f64() * 1000.0 - 100.0);
    }
    (
        harness::median(&mut latencies),
        harness::median(&mut overshoots),
    )
}
