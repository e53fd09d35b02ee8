//! The offset store's behaviour through its public API: the commit rule, batches, commits
//! atomic with the caller's writes, admin operations, the clamp, names, and what a damaged
//! value or directory looks like to the caller.

use std::path::Path;
use std::sync::Arc;

use weir_offsets::sled::transaction::ConflictableTransactionError;
use weir_offsets::{
    sled, ClampReport, Clamped, Commit, CommitExpectation, Committed, Config, DecodeError, Error,
    GroupPartition, ManualClock, NameKind, OffsetStore, METADATA_BYTES_MAX, TREE_NAME,
};

use CommitExpectation::{Absent, Offset};

const START_MS: u64 = 1_764_064_800_000;

fn open(dir: &std::path::Path) -> (OffsetStore, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let store = OffsetStore::open(&Config::new(dir)).map(|s| s.with_clock(clock.clone()));
    (
        store.unwrap_or_else(|e| panic!("open {}: {e}", dir.display())),
        clock,
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

#[test]
fn a_commit_is_read_back_with_its_time_and_metadata() -> Result<(), Error> {
    let dir = tempdir();
    let (store, clock) = open(dir.path());
    assert_eq!(store.get("g", "t", 0)?, None);
    let committed = store.commit("g", Commit::new("t", 0, 10, Absent).with_metadata("host-a"))?;
    let expected = Committed {
        offset: 10,
        commit_time_ms: START_MS,
        metadata: "host-a".into(),
    };
    assert_eq!(committed, expected);
    assert_eq!(store.get("g", "t", 0)?, Some(expected));

    // Committing the same offset again is allowed: it refreshes time and metadata.
    clock.advance(5);
    store.commit("g", Commit::new("t", 0, 10, Offset(10)))?;
    let again = store.get("g", "t", 0)?;
    assert_eq!(
        again,
        Some(Committed {
            offset: 10,
            commit_time_ms: START_MS + 5,
            metadata: String::new()
        })
    );
    Ok(())
}

#[test]
fn compare_and_set_refuses_a_stale_writer_and_says_what_is_committed() -> Result<(), Error> {
    let dir = tempdir();
    let (store, _clock) = open(dir.path());

    let on_nothing = store.commit("g", Commit::new("t", 0, 5, Offset(3)));
    assert!(matches!(
        on_nothing,
        Err(Error::Conflict { ref group, ref topic, partition: 0, expected: Offset(3), actual: None })
            if group == "g" && topic == "t"
    ));
    assert_eq!(
        store.get("g", "t", 0)?,
        None,
        "a refused commit writes nothing"
    );

    store.commit("g", Commit::new("t", 0, 5, Absent))?;
    let second_creator = store.commit("g", Commit::new("t", 0, 9, Absent));
    assert!(matches!(
        second_creator,
        Err(Error::Conflict {
            expected: Absent,
            actual: Some(5),
            ..
        })
    ));
    let stale = store.commit("g", Commit::new("t", 0, 9, Offset(4)));
    assert!(matches!(
        stale,
        Err(Error::Conflict {
            expected: Offset(4),
            actual: Some(5),
            ..
        })
    ));
    assert_eq!(store.get("g", "t", 0)?.map(|c| c.offset), Some(5));
    Ok(())
}

#[test]
fn commits_never_move_back_but_a_reset_does() -> Result<(), Error> {
    let dir = tempdir();
    let (store, clock) = open(dir.path());
    store.commit("g", Commit::new("t", 1, 50, Absent).with_metadata("m"))?;
    let back = store.commit("g", Commit::new("t", 1, 49, Offset(50)));
    assert!(matches!(
        back,
        Err(Error::Backwards {
            current: 50,
            requested: 49,
            partition: 1,
            ..
        })
    ));
    let message = back.map_err(|e| e.to_string()).unwrap_err();
    assert!(message.contains("a reset does"), "{message}");
    assert_eq!(store.get("g", "t", 1)?.map(|c| c.offset), Some(50));

    clock.advance(1);
    let reset = store.reset("g", "t", 1, 7)?;
    assert_eq!(
        reset,
        Committed {
            offset: 7,
            commit_time_ms: START_MS + 1,
            metadata: String::new()
        }
    );
    assert_eq!(store.get("g", "t", 1)?, Some(reset));
    // After a reset, commits go on from the new offset.
    store.commit("g", Commit::new("t", 1, 8, Offset(7)))?;
    // A reset also creates an offset that did not exist.
    assert_eq!(store.reset("g", "t", 2, 3)?.offset, 3);
    Ok(())
}

#[test]
fn a_batch_is_all_or_nothing() -> Result<(), Error> {
    let dir = tempdir();
    let (store, clock) = open(dir.path());
    store.commit("g", Commit::new("t", 7, 70, Absent))?;

    // Partition 7's expectation is stale: nothing of the batch is written.
    let batch: Vec<Commit<'_>> = (0..10).map(|p| Commit::new("t", p, 100, Absent)).collect();
    let refused = store.commit_batch("g", &batch);
    assert!(matches!(
        refused,
        Err(Error::Conflict {
            partition: 7,
            actual: Some(70),
            ..
        })
    ));
    let described = store.describe_group("g")?;
    assert_eq!(described.partitions.len(), 1);
    assert_eq!(described.partitions[0].committed.offset, 70);

    clock.advance(9);
    let batch: Vec<Commit<'_>> = (0..10)
        .map(|p| Commit::new("t", p, 100, if p == 7 { Offset(70) } else { Absent }))
        .collect();
    assert_eq!(store.commit_batch("g", &batch)?, START_MS + 9);
    let described = store.describe_group("g")?;
    assert_eq!(described.partitions.len(), 10);
    assert!(described
        .partitions
        .iter()
        .all(|p| p.committed.offset == 100 && p.committed.commit_time_ms == START_MS + 9));

    let backwards_in_batch = [
        Commit::new("t", 0, 101, Offset(100)),
        Commit::new("t", 1, 99, Offset(100)),
    ];
    let refused = store.commit_batch("g", &backwards_in_batch);
    assert!(matches!(
        refused,
        Err(Error::Backwards { partition: 1, .. })
    ));
    assert_eq!(
        store.get("g", "t", 0)?.map(|c| c.offset),
        Some(100),
        "partition 0 was not written"
    );
    Ok(())
}

#[test]
fn usage_errors_name_the_problem() -> Result<(), Error> {
    let dir = tempdir();
    let (store, _clock) = open(dir.path());

    let bad_group = store.commit("a/b", Commit::new("t", 0, 1, Absent));
    assert!(matches!(
        bad_group,
        Err(Error::InvalidName {
            kind: NameKind::Group,
            ..
        })
    ));
    let message = bad_group.map_err(|e| e.to_string()).unwrap_err();
    assert!(
        message.contains("\"a/b\"") && message.contains("[A-Za-z0-9._-]{1,249}"),
        "{message}"
    );
    assert!(matches!(
        store.get("g", "..", 0),
        Err(Error::InvalidName {
            kind: NameKind::Topic,
            ..
        })
    ));
    assert!(matches!(
        store.describe_group(""),
        Err(Error::InvalidName {
            kind: NameKind::Group,
            ..
        })
    ));
    assert!(matches!(
        store.delete_group("."),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        store.reset("g", "t t", 0, 0),
        Err(Error::InvalidName {
            kind: NameKind::Topic,
            ..
        })
    ));

    let longest = "m".repeat(METADATA_BYTES_MAX);
    store.commit("g", Commit::new("t", 0, 1, Absent).with_metadata(&longest))?;
    assert_eq!(
        store.get("g", "t", 0)?.map(|c| c.metadata.len()),
        Some(METADATA_BYTES_MAX)
    );
    let too_long = "m".repeat(METADATA_BYTES_MAX + 1);
    let refused = store.commit(
        "g",
        Commit::new("t", 0, 2, Offset(1)).with_metadata(&too_long),
    );
    assert!(matches!(
        refused,
        Err(Error::MetadataTooLong {
            bytes: 4097,
            maximum: 4096,
            ..
        })
    ));

    let twice = [
        Commit::new("t", 3, 1, Absent),
        Commit::new("u", 3, 1, Absent),
        Commit::new("t", 3, 2, Absent),
    ];
    let refused = store.commit_batch("g", &twice);
    assert!(
        matches!(refused, Err(Error::DuplicatePartition { ref topic, partition: 3 }) if topic == "t")
    );
    assert_eq!(store.get("g", "u", 3)?, None);

    let config = Config {
        cache_capacity_bytes: 1,
        ..Config::new(dir.path().join("other"))
    };
    assert!(matches!(
        OffsetStore::open(&config),
        Err(Error::InvalidConfig {
            field: "cache_capacity_bytes",
            ..
        })
    ));
    Ok(())
}

#[test]
fn groups_are_listed_described_and_deleted_without_touching_their_neighbours() -> Result<(), Error>
{
    let dir = tempdir();
    let (store, _clock) = open(dir.path());
    assert_eq!(store.list_groups()?, Vec::<String>::new());
    // "a" is a prefix of "a-b", "a.b" and "aa": their keys must not mix.
    for group in ["aa", "a", "b", "a-b", "a.b"] {
        for (topic, partition) in [("t", 256), ("t", 2), ("s", 9), ("t", 10), ("t-", 0)] {
            store.commit(group, Commit::new(topic, partition, 1, Absent))?;
        }
    }
    assert_eq!(store.list_groups()?, ["a", "a-b", "a.b", "aa", "b"]);
    let described = store.describe_group("a")?;
    assert_eq!(described.group, "a");
    let order: Vec<(&str, u32)> = described
        .partitions
        .iter()
        .map(|p| (p.topic.as_str(), p.partition))
        .collect();
    assert_eq!(
        order,
        [("s", 9), ("t", 2), ("t", 10), ("t", 256), ("t-", 0)]
    );
    assert!(store.describe_group("zz")?.partitions.is_empty());

    assert_eq!(store.delete_group("a")?, 5);
    assert_eq!(store.delete_group("a")?, 0);
    assert_eq!(store.list_groups()?, ["a-b", "a.b", "aa", "b"]);
    assert_eq!(store.get("a", "t", 2)?, None);
    assert_eq!(store.get("aa", "t", 2)?.map(|c| c.offset), Some(1));
    // A deleted group starts afresh.
    store.commit("a", Commit::new("t", 2, 1, Absent))?;
    Ok(())
}

#[test]
fn everything_survives_a_reopen() -> Result<(), Error> {
    let dir = tempdir();
    {
        let (store, _clock) = open(dir.path());
        store.commit("g", Commit::new("t", 0, 10, Absent).with_metadata("x"))?;
        store.commit_batch(
            "h",
            &[
                Commit::new("t", 0, 1, Absent),
                Commit::new("t", 1, 2, Absent),
            ],
        )?;
        store.reset("g", "t", 1, 4)?;
        store.delete_group("h")?;
        // A second store on the same directory is refused while this one is open.
        let second = OffsetStore::open(&Config::new(dir.path()));
        assert!(matches!(second, Err(Error::Locked { .. })));
    }
    let (store, _clock) = open(dir.path());
    assert_eq!(
        store.get("g", "t", 0)?,
        Some(Committed {
            offset: 10,
            commit_time_ms: START_MS,
            metadata: "x".into()
        })
    );
    assert_eq!(store.get("g", "t", 1)?.map(|c| c.offset), Some(4));
    assert_eq!(store.list_groups()?, ["g"]);
    Ok(())
}

#[test]
fn the_clamp_moves_offsets_past_the_log_end_back_and_reports_them() -> Result<(), Error> {
    let dir = tempdir();
    {
        let (store, clock) = open(dir.path());
        store.commit("g", Commit::new("t", 0, 100, Absent).with_metadata("m"))?;
        store.commit("g", Commit::new("t", 1, 50, Absent))?;
        store.commit("h", Commit::new("t", 0, 80, Absent))?;
        store.commit("h", Commit::new("gone", 0, 5, Absent))?;
        clock.advance(1000);
        let ends = |topic: &str, partition: u32| match (topic, partition) {
            ("t", 0) => Some(90),
            ("t", 1) => Some(50),
            _ => None,
        };
        let report = store.clamp_to_log_ends(ends)?;
        let at = |group: &str, topic: &str, partition| GroupPartition {
            group: group.into(),
            topic: topic.into(),
            partition,
        };
        assert_eq!(
            report,
            ClampReport {
                examined: 4,
                clamped: vec![Clamped {
                    at: at("g", "t", 0),
                    committed: 100,
                    log_end: 90
                }],
                without_log_end: vec![at("h", "gone", 0)],
                corrupt: Vec::new(),
            }
        );
        assert_eq!(
            store.get("g", "t", 0)?,
            Some(Committed {
                offset: 90,
                commit_time_ms: START_MS + 1000,
                metadata: "m".into()
            })
        );
        // A second clamp finds nothing more to do.
        assert!(store.clamp_to_log_ends(ends)?.clamped.is_empty());
    }
    let (store, _clock) = open(dir.path());
    assert_eq!(
        store.get("g", "t", 0)?.map(|c| c.offset),
        Some(90),
        "the clamp is durable"
    );
    assert_eq!(store.get("h", "t", 0)?.map(|c| c.offset), Some(80));
    Ok(())
}

type Abort = ConflictableTransactionError<&'static str>;

#[test]
fn commit_with_writes_offsets_and_user_state_together_or_not_at_all() -> Result<(), Error> {
    let dir = tempdir();
    let (store, _clock) = open(dir.path());
    let results = store.user_tree("results")?;

    let outcome = store.commit_with(
        "g",
        &[Commit::new("t", 0, 10, Absent)],
        &results,
        |results| {
            results.insert("sum", &45u64.to_le_bytes())?;
            Ok::<_, Abort>("done")
        },
    )?;
    assert_eq!(outcome, Ok("done"));
    assert_eq!(store.get("g", "t", 0)?.map(|c| c.offset), Some(10));
    let sum = results.get("sum").map_err(|e| panic!("{e}"));
    assert_eq!(
        sum.ok().flatten().as_deref(),
        Some(&45u64.to_le_bytes()[..])
    );

    // The caller aborts: neither the offset nor the user write happens.
    let outcome = store.commit_with(
        "g",
        &[Commit::new("t", 0, 20, Offset(10))],
        &results,
        |results| {
            results.insert("sum", &0u64.to_le_bytes())?;
            Err::<(), _>(Abort::Abort("bad input"))
        },
    )?;
    assert_eq!(outcome, Err("bad input"));
    assert_eq!(store.get("g", "t", 0)?.map(|c| c.offset), Some(10));

    // The offsets are refused: the user write does not happen either.
    let refused = store.commit_with(
        "g",
        &[Commit::new("t", 0, 20, Offset(3))],
        &results,
        |results| {
            results.insert("sum", &0u64.to_le_bytes())?;
            Ok::<_, Abort>(())
        },
    );
    assert!(matches!(
        refused,
        Err(Error::Conflict {
            actual: Some(10),
            ..
        })
    ));
    let sum = results.get("sum").map_err(|e| panic!("{e}"));
    assert_eq!(
        sum.ok().flatten().as_deref(),
        Some(&45u64.to_le_bytes()[..])
    );
    Ok(())
}

#[test]
fn commit_with_refuses_trees_it_cannot_make_atomic() -> Result<(), Error> {
    let dir = tempdir();
    let (store, _clock) = open(dir.path());
    let other_dir = tempdir();
    let (other, _clock) = open(other_dir.path());
    let foreign = other.user_tree("results")?;
    let refused = store.commit_with("g", &[Commit::new("t", 0, 1, Absent)], &foreign, |_| {
        Ok::<_, Abort>(())
    });
    assert!(matches!(refused, Err(Error::ForeignTree { ref name, .. }) if name == "results"));
    assert_eq!(store.get("g", "t", 0)?, None);
    assert!(matches!(
        store.user_tree(TREE_NAME),
        Err(Error::ForeignTree { .. })
    ));
    assert!(matches!(
        store.user_tree("weir-offsets/meta"),
        Err(Error::ForeignTree { .. })
    ));
    Ok(())
}

/// Opens a store on a sled database of our own, so the test can write into the offsets tree.
fn open_with_raw_tree(dir: &std::path::Path) -> (OffsetStore, sled::Tree) {
    let db = sled::Config::new()
        .path(dir)
        .open()
        .unwrap_or_else(|e| panic!("sled open: {e}"));
    let raw = db
        .open_tree(TREE_NAME)
        .unwrap_or_else(|e| panic!("open tree: {e}"));
    let store = OffsetStore::open_in(db, dir).unwrap_or_else(|e| panic!("open_in: {e}"));
    (store, raw)
}

#[test]
fn a_damaged_value_is_a_corruption_error_naming_its_key() -> Result<(), Error> {
    let dir = tempdir();
    let (store, raw) = open_with_raw_tree(dir.path());
    store.commit("g", Commit::new("t", 2, 1, Absent))?;
    // group "g", topic "t", block 1 (partitions 64..=127), written by hand; the value is
    // garbage.
    raw.insert(b"g\0t\0\0\0\0\x01", &b"garbage!"[..])
        .map_err(|e| panic!("{e}"))
        .ok();

    let expected_key = "group \"g\" topic \"t\" partitions 64..=127";
    let read = store.get("g", "t", 67);
    assert!(matches!(
        read,
        Err(Error::Corrupt { ref key, source: DecodeError::UnknownVersion { version: b'g', .. }, .. })
            if key == expected_key
    ));
    let message = read.map_err(|e| e.to_string()).unwrap_err();
    assert!(
        message.contains(expected_key) && message.contains("never skipped"),
        "{message}"
    );
    assert!(
        matches!(store.describe_group("g"), Err(Error::Corrupt { ref key, .. }) if key == expected_key)
    );
    // The clamp skips the corrupt value, names it, and clamps the rest.
    let clamp = store.clamp_to_log_ends(|_, _| Some(0))?;
    assert_eq!(clamp.corrupt, [expected_key]);
    assert_eq!(clamp.clamped.len(), 1);
    assert_eq!(
        store.get("g", "t", 2)?.map(|c| c.offset),
        Some(0),
        "the readable block was clamped"
    );
    let commit = store.commit("g", Commit::new("t", 67, 5, Absent));
    assert!(matches!(commit, Err(Error::Corrupt { ref key, .. }) if key == expected_key));

    // A value with the right version but a flipped bit fails its checksum.
    let mut flipped = raw
        .get(b"g\0t\0\0\0\0\0")
        .ok()
        .flatten()
        .map(|v| v.to_vec())
        .unwrap_or_default();
    assert_eq!(flipped.len(), 14 + 19, "one entry, no metadata");
    flipped[10] ^= 0x01;
    raw.insert(b"g\0t\0\0\0\0\0", flipped)
        .map_err(|e| panic!("{e}"))
        .ok();
    assert!(matches!(
        store.get("g", "t", 2),
        Err(Error::Corrupt {
            source: DecodeError::Checksum { .. },
            ..
        })
    ));

    // The operator's way out: a reset overwrites a damaged value; the block's other partitions
    // (unreadable already) are left with no committed offset.
    assert_eq!(store.reset("g", "t", 67, 0)?.offset, 0);
    assert_eq!(store.get("g", "t", 67)?.map(|c| c.offset), Some(0));
    assert_eq!(store.get("g", "t", 64)?, None);

    // A key that is not ours is named in escaped form.
    raw.insert(b"no terminator", &b""[..])
        .map_err(|e| panic!("{e}"))
        .ok();
    let listed = store.list_groups();
    assert!(matches!(
        listed,
        Err(Error::Corrupt { ref key, source: DecodeError::Key { .. }, .. })
            if key == "undecodable key b\"no terminator\""
    ));
    // Deleting a group does not need its values to decode (a corrupt one counts as one).
    assert_eq!(store.delete_group("g")?, 2);
    Ok(())
}

#[test]
fn open_in_needs_the_directory_of_the_database() {
    let dir = tempdir();
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let elsewhere = tempdir();
    let opened = OffsetStore::open_in(db, elsewhere.path());
    assert!(matches!(opened, Err(Error::Io { ref path, .. }) if path.ends_with("db")));
}

/// The examples in `docs/format.md` ("Offsets store") are the bytes a commit puts on disk.
#[test]
fn the_bytes_on_disk_match_the_examples_in_docs_format_md() -> Result<(), Error> {
    let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/format.md");
    let spec = std::fs::read_to_string(&spec_path)
        .unwrap_or_else(|e| panic!("{}: {e}", spec_path.display()));
    let section = spec
        .split("## Offsets store (weir-offsets)")
        .nth(1)
        .unwrap_or_else(|| panic!("no offsets section"));
    let example = |after: &str| -> Vec<u8> {
        let start = section
            .find(after)
            .unwrap_or_else(|| panic!("no example after {after:?}"))
            + after.len();
        let quoted = section[start..]
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("no bytes after {after:?}"));
        quoted
            .split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).unwrap_or_else(|e| panic!("{byte}: {e}")))
            .collect()
    };
    let key = example("(block 4, slot 2) →");
    let value = example("under the key of the example above →");

    let dir = tempdir();
    let (store, raw) = open_with_raw_tree(dir.path());
    let store = store.with_clock(Arc::new(ManualClock::new(1_764_064_800_000)));
    store.commit(
        "g1",
        Commit::new("orders", 258, 0x0102_0304_0506_0708, Absent).with_metadata("hi"),
    )?;
    let entries: Vec<(Vec<u8>, Vec<u8>)> = raw
        .iter()
        .map(|entry| {
            entry
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert_eq!(entries, [(key, value)]);
    Ok(())
}

#[test]
fn concurrent_writers_never_overwrite_each_other() -> Result<(), Error> {
    let dir = tempdir();
    let (store, _clock) = open(dir.path());
    let store = Arc::new(store);
    // Four threads race to advance the same partitions by one, each from the value it read;
    // partition 0 by single commits, partitions 1 and 2 together in batches.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> Result<(u64, u64), Error> {
                let (mut singles, mut batches) = (0, 0);
                for _ in 0..50 {
                    let current = store.get("g", "t", 0)?.map(|c| c.offset);
                    let next = current.map_or(1, |offset| offset + 1);
                    match store.commit("g", Commit::new("t", 0, next, current.into())) {
                        Ok(_) => singles += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(other) => return Err(other),
                    }
                    let current = store.get("g", "t", 1)?.map(|c| c.offset);
                    let next = current.map_or(1, |offset| offset + 1);
                    let batch = [1, 2].map(|p| Commit::new("t", p, next, current.into()));
                    match store.commit_batch("g", &batch) {
                        Ok(_) => batches += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
                Ok((singles, batches))
            })
        })
        .collect();
    let (mut singles, mut batches) = (0, 0);
    for thread in threads {
        let (s, b) = thread
            .join()
            .unwrap_or_else(|_| panic!("a writer thread panicked"))?;
        singles += s;
        batches += b;
    }
    // Every successful commit advanced by exactly one: none was lost to an overwrite.
    assert_eq!(store.get("g", "t", 0)?.map(|c| c.offset), Some(singles));
    assert_eq!(store.get("g", "t", 1)?.map(|c| c.offset), Some(batches));
    assert_eq!(store.get("g", "t", 2)?.map(|c| c.offset), Some(batches));
    assert!(
        singles >= 50 && batches >= 50,
        "each round has a winner: {singles} {batches}"
    );
    Ok(())
}

/// sled on `dir`, once the store that had it open has let go of sled's file lock (its
/// background threads release it shortly after the drop).
fn reopen_sled(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(error) if std::time::Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("reopen sled: {error}"),
        }
    }
}

/// A format 1 store (one value per partition, as builds before 28 Nov 2026 wrote it) is
/// migrated to blocks when it opens, whole, and keeps every committed offset.
#[test]
fn a_format_1_store_is_migrated_on_open() -> Result<(), Error> {
    let dir = tempdir();
    // Format 1 values (golden bytes of docs/format.md): offset 0x0102030405060708 at
    // 1,764,064,800,000 ms with metadata "hi"; offset 42 at 7 ms with none.
    let hi: &[u8] = &[
        0x01, 0xc8, 0xbb, 0x28, 0x39, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0xad,
        0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x02, 0x00, b'h', b'i',
    ];
    let forty_two: &[u8] = &[
        0x01, 0xf1, 0x2f, 0xf5, 0xa0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x00,
        0x00,
    ];
    {
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = db
            .open_tree("weir-offsets/meta")
            .unwrap_or_else(|e| panic!("{e}"));
        let old = db
            .open_tree("weir-offsets/v1")
            .unwrap_or_else(|e| panic!("{e}"));
        let writes = [
            meta.insert("store", "weir-offsets format 1"),
            old.insert(b"g\0t\0\0\0\0\x03", hi),
            old.insert(b"g\0t\0\0\0\0\x46", forty_two),
            old.insert(b"h\0u\0\xff\xff\xff\xff", forty_two),
        ];
        for write in writes {
            write.unwrap_or_else(|e| panic!("{e}"));
        }
        db.flush().unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::create(dir.path().join("weir-offsets.marker"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    for _ in 0..2 {
        let store = OffsetStore::open(&Config::new(dir.path()))?;
        let hi = store.get("g", "t", 3)?;
        assert_eq!(
            hi.as_ref()
                .map(|c| (c.offset, c.commit_time_ms, c.metadata.as_str())),
            Some((0x0102_0304_0506_0708, 1_764_064_800_000, "hi"))
        );
        assert_eq!(store.get("g", "t", 70)?.map(|c| c.offset), Some(42));
        assert_eq!(store.get("h", "u", u32::MAX)?.map(|c| c.offset), Some(42));
        assert_eq!(store.list_groups()?, ["g", "h"]);
        let partitions: Vec<u32> = store
            .describe_group("g")?
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(partitions, [3, 70]);
        drop(store);
    }

    // The old tree is empty and the marker says format 3.
    let db = reopen_sled(dir.path());
    let old = db
        .open_tree("weir-offsets/v1")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(old.is_empty());
    let marker = db
        .open_tree("weir-offsets/meta")
        .and_then(|meta| meta.get("store"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(marker.as_deref(), Some(&b"weir-offsets format 3"[..]));
    Ok(())
}

/// A corrupt format 1 value fails the open, naming it, and leaves the store as it was.
#[test]
fn a_corrupt_format_1_value_fails_the_migration_and_changes_nothing() {
    let dir = tempdir();
    {
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = db
            .open_tree("weir-offsets/meta")
            .unwrap_or_else(|e| panic!("{e}"));
        let old = db
            .open_tree("weir-offsets/v1")
            .unwrap_or_else(|e| panic!("{e}"));
        meta.insert("store", "weir-offsets format 1")
            .and_then(|_| old.insert(b"g\0t\0\0\0\0\x03", &b"garbage"[..]))
            .and_then(|_| db.flush())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let opened = OffsetStore::open(&Config::new(dir.path()));
    assert!(
        matches!(opened, Err(Error::Corrupt { ref key, .. })
            if key == "group \"g\" topic \"t\" partition 3 (format 1, being migrated)"),
        "{opened:?}"
    );
    drop(opened);
    let db = reopen_sled(dir.path());
    let old = db
        .open_tree("weir-offsets/v1")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.len(), 1);
}

/// Two stores on one database (`open_in` twice) committing neighbouring partitions — one block —
/// at the same time: every commit that returned is kept (a block is written by compare-and-swap,
/// never blindly over a neighbour's commit).
#[test]
fn two_stores_on_one_database_never_overwrite_a_blocks_neighbours() -> Result<(), Error> {
    let dir = tempdir();
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let stores = [
        Arc::new(OffsetStore::open_in(db.clone(), dir.path())?),
        Arc::new(OffsetStore::open_in(db, dir.path())?),
    ];
    let threads: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(writer, store)| {
            let store = Arc::clone(store);
            std::thread::spawn(move || -> Result<(), Error> {
                let partition = writer as u32;
                let mut committed = None;
                for offset in 1..=400u64 {
                    store.commit("g", Commit::new("t", partition, offset, committed.into()))?;
                    // A batch over two blocks too: this writer's partitions 64 + p and 128 + p.
                    let batch = [64, 128]
                        .map(|base| Commit::new("t", base + partition, offset, committed.into()));
                    store.commit_batch("g", &batch)?;
                    committed = Some(offset);
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .unwrap_or_else(|_| panic!("a writer thread panicked"))?;
    }
    for partition in [0, 1, 64, 65, 128, 129] {
        assert_eq!(
            stores[0].get("g", "t", partition)?.map(|c| c.offset),
            Some(400),
            "partition {partition}"
        );
    }
    Ok(())
}

/// A batch is checked in the caller's order: a refused commit before a commit whose block is
/// corrupt is what the error names.
#[test]
fn a_batch_names_its_first_problem_in_the_callers_order() -> Result<(), Error> {
    let dir = tempdir();
    let (store, raw) = open_with_raw_tree(dir.path());
    store.commit("g", Commit::new("a", 0, 5, Absent))?;
    raw.insert(b"g\0b\0\0\0\0\0", &b"garbage!"[..])
        .map_err(|e| panic!("{e}"))
        .ok();
    let conflict_first = [
        Commit::new("a", 0, 9, Absent),
        Commit::new("b", 0, 9, Absent),
    ];
    assert!(matches!(
        store.commit_batch("g", &conflict_first),
        Err(Error::Conflict { ref topic, .. }) if topic == "a"
    ));
    let corrupt_first = [
        Commit::new("b", 0, 9, Absent),
        Commit::new("a", 0, 9, Absent),
    ];
    assert!(matches!(
        store.commit_batch("g", &corrupt_first),
        Err(Error::Corrupt { .. })
    ));
    Ok(())
}
