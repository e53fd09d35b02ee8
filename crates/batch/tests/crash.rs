//! Crash test with real files and real processes: a child process consumes a partition in
//! batches and acks them with random delays; the parent kills it with SIGKILL at a random
//! moment (some during startup), restarts it, and checks after every cycle:
//!
//! - the committed offset never goes backwards and is at least the last commit the child saw
//!   return;
//! - the restarted child's first batch starts exactly at the committed offset;
//! - no event below the committed offset is ever delivered again, and every event below it
//!   was delivered at least once (at-least-once: duplicates only from uncommitted batches).
//!
//! `WEIR_BATCH_CRASH_CYCLES=N` runs more cycles (default 200). The same binary is the child
//! when `WEIR_BATCH_CRASH_CHILD` names a data directory.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_batch::{BatchConfig, CommitPolicy, MemoryDeadLetterSink, PartitionReader};
use weir_log::sim::SplitMix64;
use weir_log::{AppendEvent, Log, LogConfig, SystemClock};
use weir_offsets::{Config, OffsetStore};

const EVENTS: u64 = 50_000;
const GROUP: &str = "crash";
const TOPIC: &str = "events";

fn main() {
    if let Ok(dir) = std::env::var("WEIR_BATCH_CRASH_CHILD") {
        child(Path::new(&dir));
        return;
    }
    let cycles: u64 = std::env::var("WEIR_BATCH_CRASH_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let started = Instant::now();
    parent(cycles);
    println!(
        "crash: {cycles} kill -9 cycles passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

fn open_offsets(dir: &Path) -> OffsetStore {
    OffsetStore::open(&Config::new(dir.join("offsets"))).expect("open the offsets store")
}

fn committed(dir: &Path) -> u64 {
    let store = open_offsets(dir);
    store
        .get(GROUP, TOPIC, 0)
        .expect("read the committed offset")
        .map_or(0, |c| c.offset)
}

fn parent(cycles: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let log = Log::open(dir.path().join("log"), LogConfig::default()).expect("open log");
        let values: Vec<[u8; 8]> = (0..EVENTS).map(u64::to_le_bytes).collect();
        for chunk in values.chunks(1000) {
            let events: Vec<AppendEvent<'_>> =
                chunk.iter().map(|v| AppendEvent::value(v)).collect();
            log.append(&events).expect("append");
        }
        log.close().expect("close");
    }
    let mut rng = SplitMix64::new(0x5eed);
    let mut delivered: BTreeSet<u64> = BTreeSet::new();
    let mut committed_floor = 0u64;
    for cycle in 0..cycles {
        let at_start = committed(dir.path());
        assert!(
            at_start >= committed_floor,
            "cycle {cycle}: committed offset went back from {committed_floor} to {at_start}"
        );
        let interval = rng.below(2) == 0;
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .env("WEIR_BATCH_CRASH_CHILD", dir.path())
            .env(
                "WEIR_BATCH_CRASH_INTERVAL",
                if interval { "1" } else { "0" },
            )
            .env("WEIR_BATCH_CRASH_SEED", rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        child.kill().expect("SIGKILL the child");
        let stdout = child.stdout.take().expect("piped");
        child.wait().expect("reap the child");
        let mut first_batch = true;
        let mut last_commit_seen = at_start;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next(), fields.next()) {
                (Some("B"), Some(first), Some(end)) => {
                    let (first, end): (u64, u64) =
                        (first.parse().expect("offset"), end.parse().expect("offset"));
                    if first_batch {
                        assert_eq!(
                            first, at_start,
                            "cycle {cycle}: delivery resumed at {first}, committed is {at_start}"
                        );
                        first_batch = false;
                    }
                    assert!(first >= at_start, "cycle {cycle}: offset {first} below the committed {at_start} delivered again");
                    delivered.extend(first..end);
                }
                (Some("C"), Some(offset), None) => {
                    last_commit_seen = last_commit_seen.max(offset.parse().expect("offset"));
                }
                _ => {} // a line cut by the kill
            }
        }
        let after = committed(dir.path());
        assert!(
            after >= last_commit_seen,
            "cycle {cycle}: a commit that returned ({last_commit_seen}) was lost: {after}"
        );
        assert!(after <= EVENTS, "cycle {cycle}: committed past the log end");
        if let Some(missing) = (0..after).find(|offset| !delivered.contains(offset)) {
            panic!("cycle {cycle}: offset {missing} is below the committed {after} but was never delivered");
        }
        committed_floor = after;
    }
    assert!(committed_floor > 0, "the children made progress");
}

fn child(dir: &Path) {
    let seed: u64 = std::env::var("WEIR_BATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let interval = std::env::var("WEIR_BATCH_CRASH_INTERVAL").as_deref() == Ok("1");
    let mut rng = SplitMix64::new(seed);
    let log = Arc::new(Log::open(dir.join("log"), LogConfig::default()).expect("open log"));
    let offsets = Arc::new(open_offsets(dir));
    let mut config = BatchConfig::default();
    config.batch_size = 1 + rng.below(50) as u32;
    config.max_in_flight = 1 + rng.below(3) as u32;
    if interval {
        config.commit_policy = CommitPolicy::Interval {
            interval_ms: 5,
            acks_max: 4,
        };
    }
    let max_in_flight_config = config.max_in_flight;
    let reader = PartitionReader::open(
        GROUP,
        TOPIC,
        0,
        log,
        offsets,
        Arc::new(MemoryDeadLetterSink::default()),
        config,
        Arc::new(SystemClock),
    )
    .expect("open reader");
    let max_in_flight = max_in_flight_config as usize;
    let stdout = std::io::stdout();
    let mut held = Vec::new();
    loop {
        // Ack in a random order after a random delay, sometimes holding several batches.
        if held.len() >= max_in_flight || (!held.is_empty() && rng.below(2) == 0) {
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
            let id = held.swap_remove(rng.below(held.len() as u64) as usize);
            reader.ack(id).expect("ack");
            let committed = reader.stats().expect("stats").committed_offset;
            writeln!(stdout.lock(), "C {committed}").expect("stdout");
            continue;
        }
        match reader
            .next_batch(Duration::from_millis(50))
            .expect("next batch")
        {
            Some(batch) => {
                writeln!(
                    stdout.lock(),
                    "B {} {}",
                    batch.first_offset,
                    batch.end_offset()
                )
                .expect("stdout");
                held.push(batch.id);
            }
            None if held.is_empty() => break,
            None => {}
        }
    }
}
