//! Damage sweep, as an operator found the problem: build a small store (groups, topics,
//! partitions in several blocks, commits, a reset, deletions), close it (sealing the witness),
//! then damage sled's log file `db` in a copy — one byte flipped, or the file cut short — and
//! open the copy. Against an oracle of the committed offsets, each open must either
//! - be refused (any error: sled's, the marker's, the witness's), or
//! - open, and every committed offset read back must equal the oracle's; a value whose checks
//!   fail may be unreadable (an error naming its key), but never another offset — not an older
//!   one (a group re-reading what it acknowledged), not a newer one, not a deleted group back,
//!   not a group gone.
//!
//! A second sweep does the same to a store that was closed and opened again, as stores in use
//! are: sled has then written a snapshot of its log (`snap.*`) and grown `db` with zeros to the
//! end of its segment; it damages the written part of `db`, its zero tail and the snapshot.
//!
//! By default a seeded sample runs (200 flips and 50 cuts of `db` in the first sweep);
//! `WEIR_OFFSETS_FLIP_SWEEP=full` flips every byte and cuts at every length (in the second
//! sweep: every byte of the written part of `db` and of the snapshot, a sample of the zero
//! tail), and prints the counts. `WEIR_OFFSETS_FLIP_SWEEP_SEED` changes the sample.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use weir_offsets::{Commit, CommitExpectation, Config, Error, OffsetStore};

type Oracle = BTreeMap<(String, String, u32), u64>;

const SEED: u64 = 0x00FF_5E75;
const FLIPS_SAMPLED: usize = 200;
const CUTS_SAMPLED: usize = 50;

fn config(dir: &Path) -> Config {
    Config::new(dir.join("offsets")).with_witness_path(dir.join("offsets.witness"))
}

fn commit(store: &OffsetStore, group: &str, topic: &str, partition: u32, offset: u64) {
    let current = store
        .get(group, topic, partition)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|c| c.offset);
    store
        .commit(
            group,
            Commit::new(topic, partition, offset, CommitExpectation::from(current)),
        )
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// Builds the store in `dir` and returns the oracle: every committed offset. With `reopen`,
/// the store is closed half way and opened again.
fn build(dir: &Path, reopen: bool) -> Oracle {
    let mut store = OffsetStore::open(&config(dir)).unwrap_or_else(|e| panic!("open: {e}"));
    let batch: Vec<Commit<'_>> = [0, 1, 2, 3, 64]
        .into_iter()
        .map(|p| Commit::new("a", p, 10 + u64::from(p), CommitExpectation::Absent))
        .collect();
    store
        .commit_batch("g1", &batch)
        .unwrap_or_else(|e| panic!("{e}"));
    commit(&store, "g2", "b", 0, 7);
    commit(&store, "g2", "b", 1, 8);
    commit(&store, "g3", "a", 0, 3);
    assert_eq!(
        store.delete_group("g3").unwrap_or_else(|e| panic!("{e}")),
        1
    );
    commit(&store, "g1", "a", 0, 20);
    store
        .reset("g2", "b", 1, 2)
        .unwrap_or_else(|e| panic!("{e}"));
    commit(&store, "g4", "a", 130, 44);
    if reopen {
        store.close().unwrap_or_else(|e| panic!("close: {e}"));
        store = OffsetStore::open(&config(dir)).unwrap_or_else(|e| panic!("reopen: {e}"));
    }
    commit(&store, "g1", "c", 0, 5);
    assert_eq!(store.delete_topic("c").unwrap_or_else(|e| panic!("{e}")), 1);
    commit(&store, "g2", "b", 0, 9);
    commit(&store, "g1", "a", 1, 30);
    let mut oracle = Oracle::new();
    for group in store.list_groups().unwrap_or_else(|e| panic!("{e}")) {
        let description = store
            .describe_group(&group)
            .unwrap_or_else(|e| panic!("{e}"));
        for p in description.partitions {
            let _none = oracle.insert((group.clone(), p.topic, p.partition), p.committed.offset);
        }
    }
    assert_eq!(oracle.len(), 8, "{oracle:?}");
    assert_eq!(store.commit_seq(), 12);
    store.close().unwrap_or_else(|e| panic!("close: {e}"));
    oracle
}

/// What an open of a damaged copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Refused by sled (`Error::Open`).
    RefusedBySled,
    /// Refused by the store marker (`Error::Damaged`).
    RefusedDamaged,
    /// Refused by the witness (`Error::Witness`): sled had silently dropped commits.
    RefusedByWitness,
    /// Refused otherwise.
    RefusedOther,
    /// Opened; a value failed its checks, was reported, and reads of it fail naming it.
    OpenedCorruptReported,
    /// Opened with every offset equal to the oracle's.
    Identical,
}

/// Opens the store in `dir` and compares it with the oracle; `Err` is a violation.
fn outcome(dir: &Path, oracle: &Oracle) -> Result<Outcome, String> {
    let store = match OffsetStore::open(&config(dir)) {
        Err(Error::Open { .. }) => return Ok(Outcome::RefusedBySled),
        Err(Error::Damaged { .. }) => return Ok(Outcome::RefusedDamaged),
        Err(Error::Witness { .. }) => return Ok(Outcome::RefusedByWitness),
        Err(_) => return Ok(Outcome::RefusedOther),
        Ok(store) => store,
    };
    let mut corrupt = !store.open_report().corrupt.is_empty();
    for ((group, topic, partition), &offset) in oracle {
        match store.get(group, topic, *partition) {
            Ok(Some(committed)) if committed.offset == offset => {}
            Ok(found) => {
                return Err(format!(
                    "{group}/{topic}/{partition}: {:?}, the oracle says {offset}",
                    found.map(|c| c.offset)
                ))
            }
            Err(Error::Corrupt { .. }) => corrupt = true,
            Err(other) => return Err(format!("{group}/{topic}/{partition}: {other}")),
        }
    }
    match store.list_groups() {
        Err(Error::Corrupt { .. }) => corrupt = true,
        Err(other) => return Err(format!("list groups: {other}")),
        Ok(groups) => {
            for group in groups {
                match store.describe_group(&group) {
                    Err(Error::Corrupt { .. }) => corrupt = true,
                    Err(other) => return Err(format!("describe {group}: {other}")),
                    Ok(description) => {
                        for p in description.partitions {
                            let key = (group.clone(), p.topic.clone(), p.partition);
                            if oracle.get(&key) != Some(&p.committed.offset) {
                                return Err(format!(
                                    "{group}/{}/{} is {}, the oracle says {:?}",
                                    p.topic,
                                    p.partition,
                                    p.committed.offset,
                                    oracle.get(&key)
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(if corrupt {
        Outcome::OpenedCorruptReported
    } else {
        Outcome::Identical
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            let _bytes = std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// What is done to `db`.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The byte at this position is flipped (every bit).
    Flip(usize),
    /// The file is cut to this length.
    Cut(usize),
}

impl Damage {
    fn apply(self, bytes: &mut Vec<u8>) {
        match self {
            Damage::Flip(at) => bytes[at] ^= 0xff,
            Damage::Cut(length) => bytes.truncate(length),
        }
    }
}

/// A fresh copy of the pristine store in `scratch`, with `damage` done to its `file`.
fn damaged_copy(pristine: &Path, scratch: &Path, file: &str, damage: Option<Damage>) -> PathBuf {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).unwrap_or_else(|e| panic!("{e}"));
    }
    copy_dir(pristine, scratch);
    let path = scratch.join("offsets").join(file);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Some(damage) = damage {
        damage.apply(&mut bytes);
    }
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    scratch.to_path_buf()
}

/// A store built for a sweep, its oracle, and what the sweep found.
struct Sweep {
    _root: tempfile::TempDir,
    pristine: PathBuf,
    scratch: PathBuf,
    oracle: Oracle,
    full: bool,
    seed: u64,
    rng: fastrand::Rng,
    violations: Vec<String>,
}

impl Sweep {
    fn new(reopen: bool) -> Sweep {
        let full = std::env::var("WEIR_OFFSETS_FLIP_SWEEP").is_ok_and(|v| v == "full");
        let seed = std::env::var("WEIR_OFFSETS_FLIP_SWEEP_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(SEED);
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pristine = root.path().join("pristine");
        let oracle = build(&pristine, reopen);
        let scratch = root.path().join("scratch");
        // The undamaged copy opens, identical.
        let copy = damaged_copy(&pristine, &scratch, "db", None);
        assert_eq!(outcome(&copy, &oracle), Ok(Outcome::Identical));
        Sweep {
            _root: root,
            pristine,
            scratch,
            oracle,
            full,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            violations: Vec::new(),
        }
    }

    /// The bytes of `file` in the pristine store.
    fn bytes(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.pristine.join("offsets").join(file)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The file name of sled's snapshot in the pristine store.
    fn snapshot(&self) -> String {
        let names: Vec<String> = std::fs::read_dir(self.pristine.join("offsets"))
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{e}"))
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.starts_with("snap."))
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names.into_iter().next().unwrap_or_default()
    }

    /// `count` positions in `range` (all of them in a full sweep, or if there are no more).
    fn positions(&mut self, range: std::ops::Range<usize>, count: usize) -> Vec<usize> {
        if self.full || range.len() <= count {
            range.collect()
        } else {
            let mut chosen: Vec<usize> =
                (0..count).map(|_| self.rng.usize(range.clone())).collect();
            chosen.sort_unstable();
            chosen.dedup();
            chosen
        }
    }

    /// Damages `file` each way of `cases` in a fresh copy, opens it, and counts the outcomes.
    fn run(&mut self, what: &str, file: &str, cases: Vec<Damage>) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let cases_len = cases.len();
        for damage in cases {
            let copy = damaged_copy(&self.pristine, &self.scratch, file, Some(damage));
            let checked = catch_unwind(AssertUnwindSafe(|| outcome(&copy, &self.oracle)));
            let name = match checked {
                Ok(Ok(outcome)) => format!("{outcome:?}"),
                Ok(Err(violation)) => {
                    self.violations
                        .push(format!("{file} {damage:?}: {violation}"));
                    "VIOLATION".to_string()
                }
                Err(_panic) => {
                    self.violations.push(format!("{file} {damage:?}: panicked"));
                    "PANIC".to_string()
                }
            };
            *counts.entry(name).or_default() += 1;
        }
        println!(
            "{what}: {cases_len} cases (seed {:#x}, full: {}): {counts:?}",
            self.seed, self.full
        );
        counts
    }

    fn assert_no_violation(&self) {
        assert!(self.violations.is_empty(), "{:#?}", self.violations);
    }
}

#[test]
fn damage_to_sleds_log_never_changes_a_committed_offset_silently() {
    let mut sweep = Sweep::new(false);
    let length = sweep.bytes("db").len();
    let flips = sweep
        .positions(0..length, FLIPS_SAMPLED)
        .into_iter()
        .map(Damage::Flip)
        .collect();
    let flip_counts = sweep.run(&format!("byte flips of db ({length} bytes)"), "db", flips);
    let cuts = sweep
        .positions(0..length, CUTS_SAMPLED)
        .into_iter()
        .map(Damage::Cut)
        .collect();
    let _cut_counts = sweep.run(&format!("cuts of db ({length} bytes)"), "db", cuts);
    sweep.assert_no_violation();
    assert!(
        flip_counts.get("RefusedByWitness").copied().unwrap_or(0) > 0,
        "no flip made sled drop commits: the sweep did not reach what it is for ({flip_counts:?})"
    );
}

#[test]
fn damage_to_a_reopened_stores_log_and_snapshot_never_changes_an_offset_silently() {
    let mut sweep = Sweep::new(true);
    let db = sweep.bytes("db");
    let written = db.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    assert!(
        written < db.len(),
        "sled grew db with zeros when it reopened"
    );
    let flips = sweep
        .positions(0..written, FLIPS_SAMPLED / 2)
        .into_iter()
        .map(Damage::Flip)
        .collect();
    let written_counts = sweep.run(
        &format!(
            "byte flips of the written part of db ({written} of {} bytes)",
            db.len()
        ),
        "db",
        flips,
    );
    // The zero tail: sampled even in a full sweep (it is most of the file).
    let full = std::mem::replace(&mut sweep.full, false);
    let tail = sweep
        .positions(written..db.len(), 20)
        .into_iter()
        .map(Damage::Flip)
        .collect();
    let _tail_counts = sweep.run("byte flips of the zero tail of db", "db", tail);
    sweep.full = full;
    let snapshot = sweep.snapshot();
    let snapshot_length = sweep.bytes(&snapshot).len();
    let flips = sweep
        .positions(0..snapshot_length, FLIPS_SAMPLED / 4)
        .into_iter()
        .map(Damage::Flip)
        .collect();
    let _snapshot_counts = sweep.run(
        &format!("byte flips of {snapshot} ({snapshot_length} bytes)"),
        &snapshot,
        flips,
    );
    let cuts = sweep
        .positions(0..snapshot_length, CUTS_SAMPLED / 5)
        .into_iter()
        .map(Damage::Cut)
        .collect();
    let _snapshot_cuts = sweep.run(&format!("cuts of {snapshot}"), &snapshot, cuts);
    sweep.assert_no_violation();
    assert!(
        written_counts.get("RefusedByWitness").copied().unwrap_or(0) > 0,
        "no flip made sled drop commits ({written_counts:?})"
    );
}
