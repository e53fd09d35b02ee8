//! A damaged offsets directory makes opening fail with an error that says how an operator
//! recovers — never an empty store that would let groups start over silently.
//!
//! sled 0.34 opens a log file overwritten with garbage, or truncated, as an empty database;
//! the store marker (see `marker.rs`) turns that into [`Error::Damaged`].

use std::os::unix::fs::FileExt;
use std::path::Path;

use weir_offsets::{Commit, CommitExpectation, Config, Error, OffsetStore, RECOVERY};

fn filled(dir: &Path) {
    let store = OffsetStore::open(&Config::new(dir)).unwrap_or_else(|e| panic!("open: {e}"));
    let commits: Vec<Commit<'_>> = (0..50)
        .map(|p| Commit::new("t", p, 5, CommitExpectation::Absent))
        .collect();
    store
        .commit_batch("g", &commits)
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

fn reopen_error(dir: &Path) -> Error {
    match OffsetStore::open(&Config::new(dir)) {
        Ok(store) => panic!(
            "a damaged directory opened: {:?}",
            store.describe_group("g")
        ),
        Err(error) => error,
    }
}

fn write_file(path: &Path, f: impl FnOnce(&std::fs::File)) {
    let file = std::fs::OpenOptions::new().write(true).open(path);
    f(&file.unwrap_or_else(|e| panic!("open {}: {e}", path.display())));
}

#[test]
fn a_log_overwritten_with_garbage_is_reported_not_opened_empty() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    filled(dir.path());
    write_file(&dir.path().join("db"), |f| {
        f.write_all_at(&[0xab; 4096], 0)
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let error = reopen_error(dir.path());
    assert!(matches!(error, Error::Damaged { .. }), "{error}");
    assert!(error.to_string().contains(RECOVERY), "{error}");
}

#[test]
fn a_truncated_log_is_reported_not_opened_empty() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    filled(dir.path());
    write_file(&dir.path().join("db"), |f| {
        f.set_len(100).unwrap_or_else(|e| panic!("{e}"))
    });
    let error = reopen_error(dir.path());
    assert!(matches!(error, Error::Damaged { .. }), "{error}");
}

#[test]
fn a_garbage_sled_config_fails_to_open_with_the_recovery_advice() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    filled(dir.path());
    std::fs::write(dir.path().join("conf"), b"not a sled config").unwrap_or_else(|e| panic!("{e}"));
    let error = reopen_error(dir.path());
    assert!(matches!(error, Error::Open { .. }), "{error}");
    assert!(error.to_string().contains("never skipped"), "{error}");
}

/// Found by the node's kill -9 loop: a kill while sled's open writes its snapshot leaves an
/// empty `snap.<lsn>.generating`, which sled 0.34 then reads as the newest snapshot and fails
/// on with `Corruption`. Nothing is lost, so the store opens with every commit.
#[test]
fn a_snapshot_cut_by_a_crash_does_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    filled(dir.path());
    for leftover in [
        "snap.FFFFFFFFFFFFFFFF.generating",
        "snap.0000000000000001.generating",
    ] {
        std::fs::write(dir.path().join(leftover), b"").unwrap_or_else(|e| panic!("{e}"));
    }
    let store = OffsetStore::open(&Config::new(dir.path())).unwrap_or_else(|e| panic!("open: {e}"));
    let group = store
        .describe_group("g")
        .unwrap_or_else(|e| panic!("describe: {e}"));
    assert_eq!(group.partitions.len(), 50, "{group:?}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".generating")),
        "{names:?}"
    );
}

#[test]
fn moving_the_directory_aside_is_a_working_recovery() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let offsets = dir.path().join("offsets");
    filled(&offsets);
    write_file(&offsets.join("db"), |f| {
        f.set_len(0).unwrap_or_else(|e| panic!("{e}"))
    });
    assert!(matches!(reopen_error(&offsets), Error::Damaged { .. }));
    std::fs::rename(&offsets, dir.path().join("offsets.damaged")).unwrap_or_else(|e| panic!("{e}"));
    let store = OffsetStore::open(&Config::new(&offsets)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.list_groups().ok(),
        Some(Vec::new()),
        "a fresh store: groups start over"
    );
}
