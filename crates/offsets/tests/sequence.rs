//! The commit sequence: every write that changes the offsets takes the next number, stored
//! with the write, so that a reopened store knows the highest one it holds — also after the
//! value that held it was deleted — and a format 2 store is migrated to format 3 (values of
//! version 3, a store id, a sequence floor) on open.

use std::path::Path;
use std::time::{Duration, Instant};

use weir_offsets::sled::transaction::ConflictableTransactionError;
use weir_offsets::{
    sled, Commit, CommitExpectation, Config, DecodeError, Error, OffsetStore, TREE_NAME,
};

use CommitExpectation::{Absent, Offset};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn open(dir: &Path) -> OffsetStore {
    OffsetStore::open(&Config::new(dir)).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// sled on `dir`, once the store that had it open has let go of sled's file lock.
fn reopen_sled(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("reopen sled: {error}"),
        }
    }
}

fn meta_get(db: &sled::Db, key: &str) -> Option<Vec<u8>> {
    db.open_tree("weir-offsets/meta")
        .and_then(|meta| meta.get(key))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|value| value.to_vec())
}

#[test]
fn every_write_takes_the_next_commit_sequence_and_a_reopen_finds_it() -> Result<(), Error> {
    let dir = tempdir();
    let store_id;
    {
        let store = open(dir.path());
        store_id = store.store_id();
        assert_ne!(store_id, 0);
        assert_eq!(store.commit_seq(), 0, "a new store");
        assert_eq!(store.open_report().commit_seq, 0);

        store.commit("g", Commit::new("t", 0, 5, Absent))?;
        assert_eq!(store.commit_seq(), 1);
        // Two blocks: one transaction, one number.
        store.commit_batch(
            "g",
            &[
                Commit::new("t", 1, 5, Absent),
                Commit::new("t", 64, 5, Absent),
            ],
        )?;
        assert_eq!(store.commit_seq(), 2);
        let user = store.user_tree("user")?;
        let with = store.commit_with("h", &[Commit::new("t", 0, 1, Absent)], &user, |_| {
            Ok::<_, ConflictableTransactionError<()>>(())
        })?;
        assert_eq!(with, Ok(()));
        assert_eq!(store.commit_seq(), 3);
        store.reset("g", "t", 0, 2)?;
        assert_eq!(store.commit_seq(), 4);

        // Refused or empty writes take no number (found by the crash test: an empty batch
        // took a number it did not store, and the witness then named a commit the store
        // never held).
        let stale = store.commit("g", Commit::new("t", 0, 9, Offset(5)));
        assert!(matches!(stale, Err(Error::Conflict { .. })));
        store.commit_batch("g", &[])?;
        let only_user = store.commit_with("h", &[], &user, |user| {
            user.insert("k", "v")?;
            Ok::<_, ConflictableTransactionError<()>>(())
        })?;
        assert_eq!(only_user, Ok(()));
        assert_eq!(store.delete_topic("none")?, 0);
        assert_eq!(store.delete_group("nobody")?, 0);
        assert!(store.clamp_to_log_ends(|_, _| None)?.clamped.is_empty());
        assert_eq!(store.commit_seq(), 4);

        // A clamp takes a number per block it writes.
        let report = store.clamp_to_log_ends(|_, partition| (partition == 1).then_some(3))?;
        assert_eq!(report.clamped.len(), 1, "{report:?}");
        assert_eq!(store.commit_seq(), 5);
        store.commit("k", Commit::new("t", 0, 7, Absent))?;
        assert_eq!(store.commit_seq(), 6);
    }
    {
        let store = open(dir.path());
        assert_eq!(store.store_id(), store_id, "the id is kept");
        assert_eq!(store.commit_seq(), 6);
        // Deleting the group that holds the highest number: the floor keeps it.
        assert_eq!(store.delete_group("k")?, 1);
        assert_eq!(store.commit_seq(), 7);
    }
    {
        let store = open(dir.path());
        assert_eq!(store.commit_seq(), 7, "the deletion's number survives it");
        assert_eq!(store.delete_topic("t")?, 4);
        assert_eq!(store.list_groups()?, Vec::<String>::new());
        assert_eq!(store.commit_seq(), 8);
    }
    let store = open(dir.path());
    assert_eq!(store.commit_seq(), 8, "an empty store keeps its number");
    assert!(store.open_report().corrupt.is_empty());
    Ok(())
}

#[test]
fn a_damaged_meta_number_fails_the_open() {
    let dir = tempdir();
    drop(open(dir.path()));
    for key in ["seq_floor", "store_id"] {
        {
            let db = reopen_sled(dir.path());
            let meta = db
                .open_tree("weir-offsets/meta")
                .unwrap_or_else(|e| panic!("{e}"));
            let mut value = meta
                .get(key)
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|v| v.to_vec())
                .unwrap_or_else(|| panic!("no {key}"));
            value[0] ^= 0x01;
            meta.insert(key, value)
                .and_then(|_| db.flush())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let opened = OffsetStore::open(&Config::new(dir.path()));
        assert!(
            matches!(opened, Err(Error::Damaged { problem, .. }) if problem.contains("corrupt")),
            "{key}: {opened:?}"
        );
    }
}

/// A format 2 store (values of version 2, no store id, no floor, as builds before 8 Dec 2026
/// wrote it) is migrated on open: its values are readable, its marker says format 3, and a
/// corrupt value is left as it is and reported, without stopping the open.
#[test]
fn a_format_2_store_is_migrated_to_format_3_on_open() -> Result<(), Error> {
    let dir = tempdir();
    // The example of docs/format.md: group "g1", topic "orders", block 4 (partition 258, slot
    // 2), offset 0x0102030405060708 at 1,764,064,800,000 ms with metadata "hi".
    let key: &[u8] = b"g1\0orders\0\0\0\0\x04";
    let value_v2: &[u8] = &[
        0x02, 0xcd, 0x6f, 0x2c, 0x8b, 0x01, 0x02, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x00, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x02, 0x00, b'h', b'i',
    ];
    let corrupt_key: &[u8] = b"g1\0orders\0\0\0\0\x05";
    {
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = db
            .open_tree("weir-offsets/meta")
            .unwrap_or_else(|e| panic!("{e}"));
        let tree = db.open_tree(TREE_NAME).unwrap_or_else(|e| panic!("{e}"));
        let mut damaged = value_v2.to_vec();
        damaged[20] ^= 0x01;
        meta.insert("store", "weir-offsets format 2")
            .and_then(|_| tree.insert(key, value_v2))
            .and_then(|_| tree.insert(corrupt_key, damaged))
            .and_then(|_| db.flush())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::create(dir.path().join("weir-offsets.marker"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let corrupt_name = "group \"g1\" topic \"orders\" partitions 320..=383";
    let store_id;
    {
        let store = open(dir.path());
        let report = store.open_report().clone();
        assert_eq!(report.migrated_from, Some(2));
        assert_eq!(report.commit_seq, 1, "the migration is write 1");
        assert_eq!(store.commit_seq(), 1);
        store_id = store.store_id();
        assert_ne!(store_id, 0);
        assert_eq!(report.store_id, store_id);
        assert_eq!(report.corrupt.len(), 1, "{report:?}");
        assert_eq!(report.corrupt[0].key, corrupt_name);
        assert!(matches!(
            report.corrupt[0].problem,
            DecodeError::UnknownVersion {
                version: 2,
                expected: 3
            }
        ));
        let committed = store.get("g1", "orders", 258)?;
        assert_eq!(
            committed
                .as_ref()
                .map(|c| (c.offset, c.commit_time_ms, c.metadata.as_str())),
            Some((0x0102_0304_0506_0708, 1_764_064_800_000, "hi"))
        );
        let unreadable = store.get("g1", "orders", 320);
        assert!(matches!(unreadable, Err(Error::Corrupt { ref key, .. }) if key == corrupt_name));
    }
    {
        let store = open(dir.path());
        let report = store.open_report();
        assert_eq!(report.migrated_from, None, "migrated once");
        assert_eq!((report.store_id, report.commit_seq), (store_id, 1));
        assert_eq!(report.corrupt.len(), 1);
    }
    let db = reopen_sled(dir.path());
    assert_eq!(
        meta_get(&db, "store").as_deref(),
        Some(&b"weir-offsets format 3"[..])
    );
    let floor = meta_get(&db, "seq_floor").unwrap_or_default();
    assert_eq!(floor.get(..8), Some(&1u64.to_le_bytes()[..]));
    let id = meta_get(&db, "store_id").unwrap_or_default();
    assert_eq!(id.get(..8), Some(&store_id.to_le_bytes()[..]));
    let tree = db.open_tree(TREE_NAME).unwrap_or_else(|e| panic!("{e}"));
    let migrated = tree
        .get(key)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    assert_eq!(migrated.first(), Some(&3), "rewritten as version 3");
    assert_eq!(migrated.get(5..13), Some(&1u64.to_le_bytes()[..]));
    Ok(())
}
