//! The witness file through the public API: written for a new store and sealed as commits
//! become durable; a store that lost commits, was created again, or is missing is refused,
//! and a refused open changes nothing; `repair_witness` accepts the loss; `inspect` reports the
//! same verdict without writing anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir_offsets::{
    inspect, repair_witness, sled, witness_decision, Commit, Config, Error, OffsetStore, Refusal,
    StoreFound, Verdict, Witness, WitnessFound, TREE_NAME,
};

struct Setup {
    _root: tempfile::TempDir,
    config: Config,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let config = Config::new(root.path().join("offsets"))
        .with_witness_path(root.path().join("offsets.witness"));
    Setup {
        _root: root,
        config,
    }
}

impl Setup {
    fn open(&self) -> OffsetStore {
        OffsetStore::open(&self.config).unwrap_or_else(|e| panic!("open: {e}"))
    }

    fn refused(&self) -> Refusal {
        match OffsetStore::open(&self.config) {
            Err(Error::Witness { refusal, .. }) => refusal,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(store) => panic!("opened: {:?}", store.open_report()),
        }
    }

    fn directory(&self) -> &Path {
        &self.config.directory
    }

    fn witness_path(&self) -> &Path {
        self.config
            .witness_path
            .as_deref()
            .unwrap_or_else(|| panic!("no witness path"))
    }

    fn witness(&self) -> Witness {
        let bytes = std::fs::read(self.witness_path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.len(), 32);
        let number = |at: usize| {
            let mut le = [0; 8];
            le.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(le)
        };
        Witness {
            store_id: number(12),
            commit_seq: number(20),
        }
    }
}

fn commit(store: &OffsetStore, group: &str, partition: u32, offset: u64) {
    let current = store
        .get(group, "t", partition)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|c| c.offset);
    store
        .commit(group, Commit::new("t", partition, offset, current.into()))
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// Every file under `dir` (and the witness) with its bytes, for "nothing changed" checks.
fn files(dir: &Path, witness: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                walk(&path, into);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
                let _previous = into.insert(path, bytes);
            }
        }
    }
    let mut all = BTreeMap::new();
    walk(dir, &mut all);
    if let Ok(bytes) = std::fs::read(witness) {
        let _previous = all.insert(witness.to_path_buf(), bytes);
    }
    all
}

/// Copies a directory (a "backup").
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

fn replace_dir(with: &Path, at: &Path) {
    std::fs::remove_dir_all(at).unwrap_or_else(|e| panic!("{e}"));
    copy_dir(with, at);
}

#[test]
fn a_new_store_writes_its_witness_and_seals_what_it_commits() {
    let setup = setup();
    let store_id = {
        let store = setup.open();
        assert_eq!(
            store.open_report().verdict,
            Some(Verdict::CreateWitness),
            "a first open"
        );
        let store_id = store.store_id();
        assert_eq!(
            setup.witness(),
            Witness {
                store_id,
                commit_seq: 0
            }
        );
        commit(&store, "g", 0, 5);
        commit(&store, "g", 1, 5);
        assert_eq!(setup.witness().commit_seq, 0, "not sealed yet");
        assert!(store.seal().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(setup.witness().commit_seq, 2);
        assert!(
            !store.seal().unwrap_or_else(|e| panic!("{e}")),
            "nothing new"
        );
        commit(&store, "g", 0, 6);
        store.close().unwrap_or_else(|e| panic!("close: {e}"));
        store_id
    };
    assert_eq!(
        setup.witness(),
        Witness {
            store_id,
            commit_seq: 3
        },
        "close seals"
    );
    {
        let store = setup.open();
        assert_eq!(store.open_report().verdict, Some(Verdict::Agree));
        commit(&store, "g", 0, 7);
        // Dropped without close: the drop seals.
    }
    assert_eq!(setup.witness().commit_seq, 4);
    assert!(!setup.witness_path().with_extension("witness.tmp").exists());
}

#[test]
fn a_deleted_offsets_directory_is_refused_and_nothing_is_created() {
    let setup = setup();
    let store_id = {
        let store = setup.open();
        commit(&store, "g", 0, 5);
        store.store_id()
    };
    std::fs::remove_dir_all(setup.directory()).unwrap_or_else(|e| panic!("{e}"));
    let witness_bytes = std::fs::read(setup.witness_path()).unwrap_or_else(|e| panic!("{e}"));
    let refusal = setup.refused();
    assert_eq!(
        refusal,
        Refusal::StoreMissing {
            witnessed: Witness {
                store_id,
                commit_seq: 1
            }
        }
    );
    let message = OffsetStore::open(&setup.config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for part in [
        "missing",
        &format!("{store_id:#018x}"),
        "commit 1",
        "weir repair",
        "log start",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(
        !setup.directory().exists(),
        "the open created the directory"
    );
    assert_eq!(
        std::fs::read(setup.witness_path()).ok(),
        Some(witness_bytes),
        "the witness changed"
    );

    // An empty directory in its place holds no store either, and stays empty.
    std::fs::create_dir(setup.directory()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(setup.refused(), Refusal::StoreMissing { .. }));
    let left = std::fs::read_dir(setup.directory())
        .unwrap_or_else(|e| panic!("{e}"))
        .count();
    assert_eq!(left, 0, "the refused open wrote into the directory");
}

#[test]
fn a_store_behind_its_witness_is_refused_and_the_refusal_changes_nothing() {
    let setup = setup();
    let backup = setup._root.path().join("backup");
    {
        let store = setup.open();
        commit(&store, "g", 0, 5);
        commit(&store, "h", 0, 5);
        store.close().unwrap_or_else(|e| panic!("{e}"));
    }
    copy_dir(setup.directory(), &backup);
    {
        let store = setup.open();
        commit(&store, "g", 0, 9);
        store.close().unwrap_or_else(|e| panic!("{e}"));
    }
    // sled lost the last commit: as if the directory went back to the backup.
    replace_dir(&backup, setup.directory());
    let before = files(setup.directory(), setup.witness_path());
    let refusal = setup.refused();
    assert!(
        matches!(
            refusal,
            Refusal::RolledBack {
                commit_seq: 2,
                witnessed: Witness { commit_seq: 3, .. },
                corrupt_values: 0
            }
        ),
        "{refusal:?}"
    );
    assert_eq!(
        refusal.to_string(),
        "sled lost committed offsets: it holds commits up to 2 but commit 3 was durable"
    );
    // Nothing of ours is written, and sled's log is as it was. (sled itself, whenever it
    // opens, writes a snapshot of its log, `snap.*`, and extends its log file with zeros to
    // the end of its segment: its own cache and room, no data.)
    let after = files(setup.directory(), setup.witness_path());
    let ours = |files: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        files
            .iter()
            .filter(|(path, _)| {
                !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("snap."))
            })
            .map(|(path, bytes)| (path.clone(), bytes.clone()))
            .collect()
    };
    assert_eq!(
        ours(&before).keys().collect::<Vec<_>>(),
        ours(&after).keys().collect::<Vec<_>>(),
        "files were created or removed"
    );
    for (path, bytes) in &ours(&before) {
        let now = after.get(path).map_or(&[][..], Vec::as_slice);
        let same = if path.ends_with("db") {
            now.starts_with(bytes) && now[bytes.len()..].iter().all(|&b| b == 0)
        } else {
            now == bytes.as_slice()
        };
        assert!(same, "{} changed", path.display());
    }

    // inspect says the same, and names what the store holds.
    let inspection = inspect(&setup.config).unwrap_or_else(|e| panic!("inspect: {e}"));
    assert!(!inspection.opens());
    assert!(matches!(
        inspection.verdict,
        Some(Verdict::Refuse(Refusal::RolledBack { commit_seq: 2, .. }))
    ));
    assert!(matches!(inspection.open_error, Some(Error::Witness { .. })));
    assert_eq!(inspection.commit_seq, Some(2));
    let offset = inspection
        .groups
        .iter()
        .find(|group| group.group == "g")
        .and_then(|group| group.partitions.first())
        .map(|p| p.committed.offset);
    assert_eq!(offset, Some(5), "the older offset");
    assert_eq!(
        files(setup.directory(), setup.witness_path()),
        after,
        "inspect wrote"
    );

    // The operator accepts the loss.
    let repair = repair_witness(&setup.config).unwrap_or_else(|e| panic!("repair: {e}"));
    assert_eq!(repair.after.commit_seq, 2);
    assert!(!repair.store_created);
    assert!(matches!(
        repair.before,
        WitnessFound::Valid(Witness { commit_seq: 3, .. })
    ));
    let store = setup.open();
    assert_eq!(store.open_report().verdict, Some(Verdict::Agree));
    assert_eq!(
        store
            .get("g", "t", 0)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|c| c.offset),
        Some(5)
    );
}

#[test]
fn another_store_in_the_place_of_the_witnessed_one_is_refused() {
    let setup = setup();
    let other = setup._root.path().join("other");
    {
        let store = setup.open();
        commit(&store, "g", 0, 5);
    }
    {
        let store = OffsetStore::open(&Config::new(&other)).unwrap_or_else(|e| panic!("{e}"));
        commit(&store, "g", 0, 5);
        commit(&store, "g", 0, 6);
    }
    replace_dir(&other, setup.directory());
    assert!(matches!(
        setup.refused(),
        Refusal::Recreated {
            store_id: Some(_),
            ..
        }
    ));
}

/// A format 2 store (from before witnesses) where a witness says a format 3 store was: refused
/// as re-created, and not migrated.
#[test]
fn a_refused_open_does_not_migrate() {
    let setup = setup();
    drop(setup.open());
    std::fs::remove_dir_all(setup.directory()).unwrap_or_else(|e| panic!("{e}"));
    {
        let db = sled::Config::new()
            .path(setup.directory())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = db
            .open_tree("weir-offsets/meta")
            .unwrap_or_else(|e| panic!("{e}"));
        let _tree = db.open_tree(TREE_NAME).unwrap_or_else(|e| panic!("{e}"));
        meta.insert("store", "weir-offsets format 2")
            .and_then(|_| db.flush())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::create(setup.directory().join("weir-offsets.marker"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(matches!(
        setup.refused(),
        Refusal::Recreated { store_id: None, .. }
    ));
    let db = sled::Config::new()
        .path(setup.directory())
        .open()
        .unwrap_or_else(|e| panic!("{e}"));
    let marker = db
        .open_tree("weir-offsets/meta")
        .and_then(|meta| meta.get("store"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(marker.as_deref(), Some(&b"weir-offsets format 2"[..]));
}

#[test]
fn a_damaged_witness_is_refused_until_repaired() {
    let setup = setup();
    {
        let store = setup.open();
        commit(&store, "g", 0, 5);
    }
    let mut bytes = std::fs::read(setup.witness_path()).unwrap_or_else(|e| panic!("{e}"));
    bytes[21] ^= 0x40;
    std::fs::write(setup.witness_path(), &bytes).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(setup.refused(), Refusal::WitnessInvalid { .. }));
    assert_eq!(
        std::fs::read(setup.witness_path()).ok(),
        Some(bytes),
        "the refused open rewrote the witness"
    );
    let repair = repair_witness(&setup.config).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(repair.before, WitnessFound::Invalid(_)));
    assert_eq!(repair.after.commit_seq, 1);
    assert_eq!(setup.open().commit_seq(), 1);
}

#[test]
fn a_store_from_before_witnesses_gets_one_and_a_lagging_witness_is_brought_up() {
    let setup = setup();
    {
        let store =
            OffsetStore::open(&Config::new(setup.directory())).unwrap_or_else(|e| panic!("{e}"));
        commit(&store, "g", 0, 5);
        commit(&store, "g", 1, 5);
    }
    assert!(!setup.witness_path().exists());
    let (store_id, old_witness) = {
        let store = setup.open();
        assert_eq!(store.open_report().verdict, Some(Verdict::CreateWitness));
        assert_eq!(setup.witness().commit_seq, 2);
        let old = std::fs::read(setup.witness_path()).unwrap_or_else(|e| panic!("{e}"));
        commit(&store, "g", 0, 6);
        (store.store_id(), old)
    };
    // A crash after a commit, before the seal: the witness says less than the store holds.
    std::fs::write(setup.witness_path(), old_witness).unwrap_or_else(|e| panic!("{e}"));
    let store = setup.open();
    assert_eq!(store.open_report().verdict, Some(Verdict::Agree));
    assert_eq!(
        setup.witness(),
        Witness {
            store_id,
            commit_seq: 3
        },
        "the open brought the witness up to the store"
    );
}

#[test]
fn a_missing_store_is_reported_by_inspect_and_recreated_by_repair() {
    let setup = setup();
    {
        let store = setup.open();
        commit(&store, "g", 0, 5);
    }
    std::fs::remove_dir_all(setup.directory()).unwrap_or_else(|e| panic!("{e}"));
    let inspection = inspect(&setup.config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inspection.found, Some(StoreFound::Missing));
    assert!(matches!(
        inspection.verdict,
        Some(Verdict::Refuse(Refusal::StoreMissing { .. }))
    ));
    assert!(!inspection.opens());
    assert!(!setup.directory().exists(), "inspect created the directory");

    let repair = repair_witness(&setup.config).unwrap_or_else(|e| panic!("{e}"));
    assert!(repair.store_created);
    let store = setup.open();
    assert_eq!(store.store_id(), repair.after.store_id);
    assert_eq!(
        store.list_groups().unwrap_or_else(|e| panic!("{e}")),
        Vec::<String>::new(),
        "every group restarts from the log start"
    );
}

#[test]
fn inspect_of_a_healthy_store_agrees_with_open_and_lists_corrupt_values() {
    let setup = setup();
    {
        let db = sled::Config::new()
            .path(setup.directory())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let raw = db.open_tree(TREE_NAME).unwrap_or_else(|e| panic!("{e}"));
        let store = OffsetStore::open_in(db, setup.directory()).unwrap_or_else(|e| panic!("{e}"));
        commit(&store, "g", 0, 5);
        commit(&store, "g", 70, 6);
        commit(&store, "h", 0, 7);
        // Damage the value of group "g", block 1 (partition 70) in place.
        let key = b"g\0t\0\0\0\0\x01";
        let mut value = raw
            .get(key)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|v| v.to_vec())
            .unwrap_or_default();
        value[20] ^= 0x01;
        raw.insert(key, value)
            .and_then(|_| raw.flush())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::File::create(setup.directory().join("weir-offsets.marker"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let witness = {
        let store = setup.open();
        assert_eq!(store.open_report().corrupt.len(), 1);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        setup.witness()
    };
    let before = files(setup.directory(), setup.witness_path());
    let inspection = inspect(&setup.config).unwrap_or_else(|e| panic!("{e}"));
    assert!(inspection.opens(), "{:?}", inspection.open_error);
    assert_eq!(inspection.verdict, Some(Verdict::Agree));
    assert_eq!(inspection.store_id, Some(witness.store_id));
    assert_eq!(inspection.commit_seq, Some(witness.commit_seq));
    assert_eq!(inspection.corrupt.len(), 1);
    assert_eq!(
        inspection.corrupt[0].key,
        "group \"g\" topic \"t\" partitions 64..=127"
    );
    let listed: Vec<(String, u32, u64)> = inspection
        .groups
        .iter()
        .flat_map(|group| {
            group
                .partitions
                .iter()
                .map(|p| (group.group.clone(), p.partition, p.committed.offset))
        })
        .collect();
    assert_eq!(listed, [("g".into(), 0, 5), ("h".into(), 0, 7)]);
    assert_eq!(
        files(setup.directory(), setup.witness_path()),
        before,
        "inspect wrote"
    );
    // One decision, two callers.
    let found = inspection
        .found
        .unwrap_or_else(|| panic!("inspect saw no store"));
    let witness_found = inspection
        .witness
        .clone()
        .unwrap_or_else(|| panic!("no witness"));
    assert_eq!(witness_decision(&witness_found, &found), Verdict::Agree);
}

#[test]
fn a_witness_inside_the_offsets_directory_is_refused_as_config() {
    let setup = setup();
    let config = Config::new(setup.directory()).with_witness_path(setup.directory().join("w"));
    assert!(matches!(
        OffsetStore::open(&config),
        Err(Error::InvalidConfig {
            field: "witness_path",
            ..
        })
    ));
}
