//! The offsets suite (issue 3): durable commit rates of `weir-offsets`, each next to a baseline
//! measured in the same run, in the same directory.
//!
//! - `commit_durable_single`: one partition's commit per call, each durable (sled flush plus
//!   fdatasync) before the next; baseline: a raw loop of 32-byte appends, each followed by
//!   `fdatasync`, the floor for any durable write on this disk.
//! - `commit_batched_100_partitions`: 100 partitions' commits per call, in one transaction and
//!   one sync, counted per partition; baseline: the single-commit rate.
//!
//! Figures are medians over rounds that alternate between the measured loops, so a burst of
//! load on a shared machine hits all of them alike.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use weir_offsets::{Commit, CommitExpectation, Config, OffsetStore};

use crate::harness::{run_for, scratch_dir, Figure, Options};

const GROUP: &str = "bench";
const TOPIC: &str = "events";
const BATCH_PARTITIONS: u32 = 100;
const RAW_WRITE_BYTES: usize = 32;

/// Runs the offsets suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let (rounds, round) = if options.quick {
        (1, Duration::from_millis(300))
    } else {
        (5, Duration::from_secs(2))
    };
    let scratch = scratch_dir(options);
    let store = OffsetStore::open(&Config::new(scratch.path().join("offsets")))
        .unwrap_or_else(|error| panic!("open the offsets store: {error}"));
    let mut raw = RawSync::new(&scratch.path().join("raw-fdatasync"));
    let mut single = SingleCommits::default();
    let mut batched = BatchedCommits::new();

    // Warm up: the first commits create sled's segments and the raw file's first blocks.
    for _ in 0..20 {
        raw.step();
        single.step(&store);
        batched.step(&store);
    }

    let (mut raw_rates, mut single_rates, mut batched_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw_rates.push(rate(run_for(round, || raw.step()), 1));
        single_rates.push(rate(run_for(round, || single.step(&store)), 1));
        batched_rates.push(rate(
            run_for(round, || batched.step(&store)),
            BATCH_PARTITIONS,
        ));
    }
    let (raw, single, batched) = (
        median(raw_rates),
        median(single_rates),
        median(batched_rates),
    );
    vec![
        Figure::new(
            "commit_durable_single",
            single,
            "commits/s",
            "raw 32 B append + fdatasync loop",
            raw,
            "≥ 0.8× baseline",
        ),
        Figure::new(
            "commit_batched_100_partitions",
            batched,
            "commits/s",
            "commit_durable_single",
            single,
            "≥ 50× baseline",
        ),
    ]
}

/// Calls per second, times `per_call` items per call.
fn rate((calls, elapsed): (u64, Duration), per_call: u32) -> f64 {
    (calls as f64 * f64::from(per_call)) / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The baseline: small appends to a plain file, each made durable with `fdatasync`.
struct RawSync {
    file: File,
}

impl RawSync {
    fn new(path: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
        RawSync { file }
    }

    fn step(&mut self) {
        self.file
            .write_all(&[0x5a; RAW_WRITE_BYTES])
            .and_then(|()| self.file.sync_data())
            .unwrap_or_else(|error| panic!("raw append + fdatasync: {error}"));
    }
}

/// One partition committed again and again, each commit expecting the previous one.
#[derive(Default)]
struct SingleCommits {
    committed: Option<u64>,
}

impl SingleCommits {
    fn step(&mut self, store: &OffsetStore) {
        let offset = self.committed.map_or(1, |offset| offset + 1);
        let commit = Commit::new(TOPIC, 0, offset, self.committed.into());
        store
            .commit(GROUP, commit)
            .unwrap_or_else(|error| panic!("commit: {error}"));
        self.committed = Some(offset);
    }
}

/// Partitions 1..=100 committed together, each expecting its previous offset.
struct BatchedCommits {
    committed: Option<u64>,
}

impl BatchedCommits {
    fn new() -> Self {
        BatchedCommits { committed: None }
    }

    fn step(&mut self, store: &OffsetStore) {
        let offset = self.committed.map_or(1, |offset| offset + 1);
        let expected = CommitExpectation::from(self.committed);
        let commits: Vec<Commit<'_>> = (1..=BATCH_PARTITIONS)
            .map(|partition| Commit::new(TOPIC, partition, offset, expected))
            .collect();
        store
            .commit_batch(GROUP, &commits)
            .unwrap_or_else(|error| panic!("commit batch: {error}"));
        self.committed = Some(offset);
    }
}
