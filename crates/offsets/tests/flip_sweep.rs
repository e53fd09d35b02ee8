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
//! By default a seeded sample of 200 flips and 50 cuts runs; `WEIR_OFFSETS_FLIP_SWEEP=full`
//! flips every byte and cuts at every length, and prints the counts.
//! `WEIR_OFFSETS_FLIP_SWEEP_SEED` changes the sample.

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

/// Builds the store in `dir` and returns the oracle: every committed offset.
fn build(dir: &Path) -> Oracle {
    let store = OffsetStore::open(&config(dir)).unwrap_or_else(|e| panic!("open: {e}"));
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

/// A fresh copy of the pristine store in `scratch`, with `damage` done to its `db`.
fn damaged_copy(pristine: &Path, scratch: &Path, damage: Option<Damage>) -> PathBuf {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).unwrap_or_else(|e| panic!("{e}"));
    }
    copy_dir(pristine, scratch);
    let db = scratch.join("offsets").join("db");
    let mut bytes = std::fs::read(&db).unwrap_or_else(|e| panic!("{e}"));
    if let Some(damage) = damage {
        damage.apply(&mut bytes);
    }
    std::fs::write(&db, bytes).unwrap_or_else(|e| panic!("{e}"));
    scratch.to_path_buf()
}

fn positions(length: usize, full: bool, sampled: usize, rng: &mut fastrand::Rng) -> Vec<usize> {
    if full || length <= sampled {
        (0..length).collect()
    } else {
        let mut chosen: Vec<usize> = (0..sampled).map(|_| rng.usize(..length)).collect();
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }
}

#[test]
fn damage_to_sleds_log_never_changes_a_committed_offset_silently() {
    let full = std::env::var("WEIR_OFFSETS_FLIP_SWEEP").is_ok_and(|v| v == "full");
    let seed = std::env::var("WEIR_OFFSETS_FLIP_SWEEP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let mut rng = fastrand::Rng::with_seed(seed);
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pristine = root.path().join("pristine");
    let oracle = build(&pristine);
    let scratch = root.path().join("scratch");
    // The undamaged copy opens, identical.
    let copy = damaged_copy(&pristine, &scratch, None);
    assert_eq!(outcome(&copy, &oracle), Ok(Outcome::Identical));

    let length = std::fs::metadata(pristine.join("offsets").join("db"))
        .unwrap_or_else(|e| panic!("{e}"))
        .len();
    let length = usize::try_from(length).unwrap_or_else(|e| panic!("{e}"));
    let mut violations = Vec::new();
    let mut report = |what: &str, cases: Vec<Damage>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for damage in cases {
            let copy = damaged_copy(&pristine, &scratch, Some(damage));
            let checked = catch_unwind(AssertUnwindSafe(|| outcome(&copy, &oracle)));
            let name = match checked {
                Ok(Ok(outcome)) => format!("{outcome:?}"),
                Ok(Err(violation)) => {
                    violations.push(format!("{damage:?}: {violation}"));
                    "VIOLATION".to_string()
                }
                Err(_panic) => {
                    violations.push(format!("{damage:?}: panicked"));
                    "PANIC".to_string()
                }
            };
            *counts.entry(name).or_default() += 1;
        }
        println!("{what} of db ({length} bytes, seed {seed:#x}, full: {full}): {counts:?}");
        counts
    };

    let flips = positions(length, full, FLIPS_SAMPLED, &mut rng)
        .into_iter()
        .map(Damage::Flip)
        .collect();
    let flip_counts = report("byte flips", flips);
    let cuts = positions(length, full, CUTS_SAMPLED, &mut rng)
        .into_iter()
        .map(Damage::Cut)
        .collect();
    let _cut_counts = report("cuts", cuts);
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        flip_counts.get("RefusedByWitness").copied().unwrap_or(0) > 0,
        "no flip made sled drop commits: the sweep did not reach what it is for ({flip_counts:?})"
    );
}
