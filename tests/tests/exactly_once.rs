//! Exactly-once across kill -9 (issue 16, item 6): a child process runs the `exactly_once`
//! example's [`count`] — events per key, counted in a tree of the store written in the same
//! durable step as each batch's acknowledgement (`Consumer::ack_with`) — and is killed with
//! SIGKILL at random moments, again and again, while the parent keeps producing. At the end
//! every key's count equals the events produced for it: none counted twice, none missed.
//!
//! `harness = false`: the same binary is the parent, or the child when
//! `WEIR_EXACTLY_ONCE_CHILD` names the data directory. `WEIR_EXACTLY_ONCE_CYCLES` (default 30)
//! and `WEIR_EXACTLY_ONCE_SEED` make a run longer or repeat one.

#[path = "../../crates/store/examples/exactly_once.rs"]
#[allow(dead_code)]
mod example;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_store::{Partitioning, Record, Store, TopicConfig};

const CHILD_ENV: &str = "WEIR_EXACTLY_ONCE_CHILD";
const TOPIC: &str = "clicks";
const GROUP: &str = "counter";
const KEYS: u64 = 7;

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir)),
        None => parent(),
    }
}

/// Counts until there is nothing left (or the parent kills it).
fn child(dir: &Path) {
    let store = Store::open(dir).expect("open the store");
    let counted = example::count(&store, GROUP, TOPIC, Duration::from_millis(300)).expect("count");
    println!("{counted}");
    store.close().expect("close");
}

fn parent() {
    let cycles: u32 = env_number("WEIR_EXACTLY_ONCE_CYCLES", 30);
    let seed = env_number("WEIR_EXACTLY_ONCE_SEED", {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64
    });
    println!("exactly_once: {cycles} cycles, WEIR_EXACTLY_ONCE_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut produced: BTreeMap<String, u64> = BTreeMap::new();
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .create_topic(TOPIC, TopicConfig::with_partitions(3))
            .expect("create");
        store.close().expect("close");
    }
    let mut next = 0u64;
    let mut kills = 0;
    for cycle in 0..cycles {
        // Produce a round (the child is not running: one process per data directory).
        {
            let store = Store::open(dir.path()).expect("open to produce");
            let records: Vec<Record> = (0..rng.u64(50..400))
                .map(|_| {
                    let key = format!("key-{}", next % KEYS);
                    next += 1;
                    *produced.entry(key.clone()).or_default() += 1;
                    Record::new(format!("event {next}")).key(key)
                })
                .collect();
            store
                .append(TOPIC, &records, Partitioning::ByKey)
                .expect("produce");
            store.close().expect("close");
        }
        // Count in a child, killed at a random moment (sometimes while it opens the store).
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        std::thread::sleep(Duration::from_millis(rng.u64(0..120)));
        if child.try_wait().expect("poll the child").is_none() {
            child.kill().expect("kill the child");
            kills += 1;
        }
        let status = child.wait().expect("reap the child");
        if cycle % 10 == 0 {
            println!("cycle {cycle}: child {status}");
        }
    }
    // A last child counts what is left, without a kill.
    let status = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("run the last child");
    assert!(status.success(), "the last child failed: {status}");
    let store = Store::open(dir.path()).expect("open to check");
    let counts = store.user_tree(example::COUNTS).expect("the counts");
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    for (key, value) in counts.scan_prefix(b"key-").expect("scan") {
        let value = u64::from_le_bytes(value.as_slice().try_into().expect("8 bytes"));
        found.insert(String::from_utf8(key).expect("utf-8"), value);
    }
    assert_eq!(
        found, produced,
        "every event counted exactly once (after {kills} kills; seed {seed})"
    );
    store.close().expect("close");
    println!(
        "exactly_once: {} events over {KEYS} keys counted exactly once across {kills} kills",
        next
    );
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
