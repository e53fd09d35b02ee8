//! Model test: through any sequence of commits (right and wrong expectations, forwards and
//! backwards), batches, resets, group deletions, clock moves and reopens, the store behaves
//! like a `BTreeMap<(group, topic, partition), Committed>` under the commit rule — same
//! answers, same refusals, same contents after every step.
//!
//! Cases: `PROPTEST_CASES` (default 512).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use weir_offsets::{
    Clock, Commit, CommitExpectation, Committed, Config, Error, ManualClock, OffsetStore,
};

const GROUPS: [&str; 3] = ["a", "aa", "b"];
const TOPICS: [&str; 2] = ["t", "t-"];
const PARTITIONS: [u32; 3] = [0, 1, 256];
const METADATA: [&str; 2] = ["", "m"];

type Key = (&'static str, &'static str, u32);
type Model = BTreeMap<Key, Committed>;

/// Which expectation a commit carries.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The model's current value: the compare-and-set part passes.
    Current,
    /// "Nothing committed".
    Absent,
    /// An arbitrary offset: usually stale.
    Offset(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    topic: usize,
    partition: usize,
    offset: u64,
    expect: Expect,
    metadata: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Commit {
        group: usize,
        entry: Entry,
    },
    Batch {
        group: usize,
        entries: Vec<Entry>,
    },
    Reset {
        group: usize,
        topic: usize,
        partition: usize,
        offset: u64,
    },
    DeleteGroup {
        group: usize,
    },
    AdvanceClock {
        ms: u64,
    },
    Reopen,
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        6 => Just(Expect::Current),
        1 => Just(Expect::Absent),
        1 => (0..12u64).prop_map(Expect::Offset),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0..TOPICS.len(),
        0..PARTITIONS.len(),
        0..12u64,
        expect(),
        0..METADATA.len(),
    )
        .prop_map(|(topic, partition, offset, expect, metadata)| Entry {
            topic,
            partition,
            offset,
            expect,
            metadata,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..GROUPS.len(), entry()).prop_map(|(group, entry)| Op::Commit { group, entry }),
        3 => (0..GROUPS.len(), prop::collection::vec(entry(), 0..5))
            .prop_map(|(group, entries)| Op::Batch { group, entries }),
        2 => (0..GROUPS.len(), 0..TOPICS.len(), 0..PARTITIONS.len(), 0..12u64)
            .prop_map(|(group, topic, partition, offset)| Op::Reset { group, topic, partition, offset }),
        1 => (0..GROUPS.len()).prop_map(|group| Op::DeleteGroup { group }),
        2 => (1..1000u64).prop_map(|ms| Op::AdvanceClock { ms }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model says an operation returns: `Ok` or the error's essentials.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Conflict {
        topic: String,
        partition: u32,
        actual: Option<u64>,
    },
    Backwards {
        topic: String,
        partition: u32,
        current: u64,
    },
    Duplicate {
        topic: String,
        partition: u32,
    },
}

fn outcome_of<T>(result: Result<T, Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(Error::Conflict {
            topic,
            partition,
            actual,
            ..
        }) => Outcome::Conflict {
            topic,
            partition,
            actual,
        },
        Err(Error::Backwards {
            topic,
            partition,
            current,
            ..
        }) => Outcome::Backwards {
            topic,
            partition,
            current,
        },
        Err(Error::DuplicatePartition { topic, partition }) => {
            Outcome::Duplicate { topic, partition }
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn expectation(model: &Model, key: Key, expect: Expect) -> CommitExpectation {
    match expect {
        Expect::Current => model.get(&key).map(|c| c.offset).into(),
        Expect::Absent => CommitExpectation::Absent,
        Expect::Offset(offset) => CommitExpectation::Offset(offset),
    }
}

/// The model's batch commit: duplicates refused first, then the rule for each entry in order;
/// the first refusal leaves the model unchanged.
fn model_batch(model: &mut Model, commits: &[(Key, Commit<'static>)], now_ms: u64) -> Outcome {
    let mut seen = HashSet::new();
    for (_, commit) in commits {
        if !seen.insert((commit.topic, commit.partition)) {
            return Outcome::Duplicate {
                topic: commit.topic.to_string(),
                partition: commit.partition,
            };
        }
    }
    for (key, commit) in commits {
        let current = model.get(key).map(|c| c.offset);
        if CommitExpectation::from(current) != commit.expected {
            return Outcome::Conflict {
                topic: commit.topic.to_string(),
                partition: commit.partition,
                actual: current,
            };
        }
        if let Some(current) = current.filter(|&current| commit.offset < current) {
            return Outcome::Backwards {
                topic: commit.topic.to_string(),
                partition: commit.partition,
                current,
            };
        }
    }
    for (key, commit) in commits {
        let committed = Committed {
            offset: commit.offset,
            commit_time_ms: now_ms,
            metadata: commit.metadata.to_string(),
        };
        model.insert(*key, committed);
    }
    Outcome::Ok
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> OffsetStore {
    match OffsetStore::open(&Config::new(dir)) {
        Ok(store) => store.with_clock(clock.clone()),
        Err(error) => panic!("open: {error}"),
    }
}

/// The store's whole contents, read through the public API.
fn contents(store: &OffsetStore) -> Model {
    let mut contents = Model::new();
    let groups = store.list_groups().unwrap_or_else(|e| panic!("list: {e}"));
    for group in groups {
        let group: &'static str = GROUPS
            .iter()
            .find(|g| **g == group)
            .unwrap_or_else(|| panic!("{group}"));
        let description = store
            .describe_group(group)
            .unwrap_or_else(|e| panic!("describe: {e}"));
        assert!(
            !description.partitions.is_empty(),
            "a listed group has offsets"
        );
        for partition in description.partitions {
            let topic: &'static str = TOPICS
                .iter()
                .find(|t| **t == partition.topic)
                .unwrap_or_else(|| panic!("{}", partition.topic));
            contents.insert((group, topic, partition.partition), partition.committed);
        }
    }
    contents
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let clock = Arc::new(ManualClock::new(1_000));
    let mut store = open(dir.path(), &clock);
    let mut model = Model::new();
    for (step, op) in ops.iter().enumerate() {
        let now_ms = clock.now_ms();
        match op {
            Op::Commit { group, entry } => {
                let group = GROUPS[*group];
                let (key, commit) = to_commit(&model, group, entry);
                let mut expected_model = model.clone();
                let expected = model_batch(&mut expected_model, &[(key, commit)], now_ms);
                let actual = store.commit(group, commit);
                if let Ok(committed) = &actual {
                    prop_assert_eq!(Some(committed), expected_model.get(&key), "step {}", step);
                }
                prop_assert_eq!(outcome_of(actual), expected, "step {}: {:?}", step, op);
                model = expected_model;
            }
            Op::Batch { group, entries } => {
                let group = GROUPS[*group];
                let commits: Vec<(Key, Commit<'static>)> = entries
                    .iter()
                    .map(|entry| to_commit(&model, group, entry))
                    .collect();
                let expected = model_batch(&mut model, &commits, now_ms);
                let plain: Vec<Commit<'static>> = commits.iter().map(|(_, c)| *c).collect();
                prop_assert_eq!(
                    outcome_of(store.commit_batch(group, &plain)),
                    expected,
                    "step {}: {:?}",
                    step,
                    op
                );
            }
            Op::Reset {
                group,
                topic,
                partition,
                offset,
            } => {
                let key = (GROUPS[*group], TOPICS[*topic], PARTITIONS[*partition]);
                let result = store.reset(key.0, key.1, key.2, *offset);
                prop_assert_eq!(outcome_of(result), Outcome::Ok);
                model.insert(
                    key,
                    Committed {
                        offset: *offset,
                        commit_time_ms: now_ms,
                        metadata: String::new(),
                    },
                );
            }
            Op::DeleteGroup { group } => {
                let group = GROUPS[*group];
                let before = model.len();
                model.retain(|key, _| key.0 != group);
                let deleted = store
                    .delete_group(group)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(deleted, before - model.len());
            }
            Op::AdvanceClock { ms } => clock.advance(*ms),
            Op::Reopen => {
                drop(store);
                store = open(dir.path(), &clock);
            }
        }
        prop_assert_eq!(&contents(&store), &model, "after step {}: {:?}", step, op);
    }
    Ok(())
}

fn to_commit(model: &Model, group: &'static str, entry: &Entry) -> (Key, Commit<'static>) {
    let key = (group, TOPICS[entry.topic], PARTITIONS[entry.partition]);
    let commit = Commit::new(
        key.1,
        key.2,
        entry.offset,
        expectation(model, key, entry.expect),
    )
    .with_metadata(METADATA[entry.metadata]);
    (key, commit)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_a_map_under_the_commit_rule(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}

/// A fixed sequence covering each refusal once, so the model's own rules are checked even if
/// the generator drifts.
#[test]
fn every_refusal_in_one_sequence() -> Result<(), TestCaseError> {
    let entry = |partition, offset, expect| Entry {
        topic: 0,
        partition,
        offset,
        expect,
        metadata: 1,
    };
    run(&[
        Op::Commit {
            group: 0,
            entry: entry(0, 5, Expect::Current),
        },
        Op::Commit {
            group: 0,
            entry: entry(0, 4, Expect::Current),
        },
        Op::Commit {
            group: 0,
            entry: entry(0, 9, Expect::Absent),
        },
        Op::Commit {
            group: 0,
            entry: entry(0, 9, Expect::Offset(3)),
        },
        Op::Batch {
            group: 0,
            entries: vec![entry(1, 1, Expect::Current), entry(1, 2, Expect::Current)],
        },
        Op::Batch {
            group: 0,
            entries: vec![entry(1, 1, Expect::Current), entry(0, 1, Expect::Current)],
        },
        Op::Reopen,
        Op::Reset {
            group: 0,
            topic: 0,
            partition: 0,
            offset: 1,
        },
        Op::AdvanceClock { ms: 3 },
        Op::Commit {
            group: 0,
            entry: entry(0, 1, Expect::Current),
        },
        Op::DeleteGroup { group: 0 },
        Op::Reopen,
    ])
}
