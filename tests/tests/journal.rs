//! The store's journal (`docs/durability.md`, "The journal") through the public API over
//! weir-log's fault-injecting `SimStorage`: small appends are durable by the journal alone
//! (their segments are not fsynced), so a power cut that drops every unsynced byte must find
//! them again at open; a deleted topic's journaled frames never reach a new topic of the same
//! name; a damaged acknowledged block is reported, not cut; a failed journal write or fsync
//! is fail-stop; big appends bypass the journal; retired files leave nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_log::sim::{CrashMode, SimStorage};
use weir_store::{Error, Partitioning, Record, Store, StoreBuilder, TopicConfig};

fn builder(root: &Path, sim: &SimStorage) -> StoreBuilder {
    Store::builder(root)
        .storage(Arc::new(sim.clone()))
        .maintenance_interval(Duration::from_secs(3600))
}

fn open(root: &Path, sim: &SimStorage) -> weir_store::Result<Store> {
    builder(root, sim).open()
}

fn values(store: &Store, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let log = store.partition_log(topic, partition).unwrap();
    let batch = log.read(log.start_offset(), 100_000, usize::MAX).unwrap();
    batch.iter().map(|event| event.value.to_vec()).collect()
}

fn value(topic: &str, partition: u32, n: usize) -> Vec<u8> {
    format!("{topic}/{partition}/{n}").into_bytes()
}

/// Appends `count` single-event appends to each partition, round by round; returns what was
/// acknowledged per partition.
fn fill(store: &Store, topic: &str, partitions: u32, count: usize) -> Vec<Vec<Vec<u8>>> {
    let mut acked = vec![Vec::new(); partitions as usize];
    for n in 0..count {
        for partition in 0..partitions {
            let v = value(topic, partition, n);
            store
                .append(
                    topic,
                    &[Record::new(v.clone())],
                    Partitioning::Partition(partition),
                )
                .unwrap();
            acked[partition as usize].push(v);
        }
    }
    acked
}

fn journal_files(sim: &SimStorage, root: &Path) -> Vec<PathBuf> {
    use weir_log::Storage;
    let dir = root.join("journal");
    let mut names = sim.list_dir(&dir).unwrap_or_default();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}

#[test]
fn small_appends_survive_a_power_cut_that_drops_every_unsynced_segment_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = open(root, &sim).unwrap();
    store
        .create_topic("orders", TopicConfig::with_partitions(3))
        .unwrap();
    let acked = fill(&store, "orders", 3, 40);
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);

    let reopened = open(root, &image).unwrap();
    for partition in 0..3 {
        assert_eq!(
            values(&reopened, "orders", partition),
            acked[partition as usize],
            "partition {partition}"
        );
    }
    let report = &reopened.recovery_report().journal;
    assert_eq!(report.files, 1);
    // The segments lost their unsynced tails: the journal wrote every event back.
    let restored: u64 = report.restored.iter().map(|(_, _, events)| events).sum();
    assert_eq!(restored, 120, "{report:?}");
    // And the store takes appends after the replay, at the next offsets.
    let produced = reopened
        .append(
            "orders",
            &[Record::new(b"after".to_vec())],
            Partitioning::Partition(1),
        )
        .unwrap();
    assert_eq!(produced.positions, [(1, 40)]);
    drop(reopened);
    // A clean close leaves no journal file, and the next open has nothing to replay.
    assert!(journal_files(&image, root).is_empty());
    let again = open(root, &image).unwrap();
    assert_eq!(again.recovery_report().journal.files, 0);
    assert_eq!(values(&again, "orders", 1).len(), 41);
}

#[test]
fn retired_journal_files_are_removed_after_their_segments_are_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = builder(root, &sim)
        .journal_bytes_max(64 * 1024)
        .open()
        .unwrap();
    store
        .create_topic("big", TopicConfig::with_partitions(2))
        .unwrap();
    let mut acked = vec![Vec::new(); 2];
    for n in 0..200u32 {
        for partition in 0..2u32 {
            let v = vec![n as u8; 1000];
            store
                .append(
                    "big",
                    &[Record::new(v.clone())],
                    Partitioning::Partition(partition),
                )
                .unwrap();
            acked[partition as usize].push(v);
        }
    }
    // ~400 KB went through 64 KiB files: only the current one is left.
    let files = journal_files(&sim, root);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0] > root.join("journal/00000000000000000005.wjl"),
        "several files were retired: {files:?}"
    );
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);
    let reopened = open(root, &image).unwrap();
    for partition in 0..2 {
        assert_eq!(
            values(&reopened, "big", partition),
            acked[partition as usize]
        );
    }
}

#[test]
fn a_deleted_topic_s_journaled_events_never_reach_a_new_topic_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = open(root, &sim).unwrap();
    store
        .create_topic("orders", TopicConfig::default())
        .unwrap();
    fill(&store, "orders", 1, 5);
    store.delete_topic("orders").unwrap();
    store
        .create_topic("orders", TopicConfig::default())
        .unwrap();
    let acked = fill(&store, "orders", 1, 2);
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);

    let reopened = open(root, &image).unwrap();
    assert_eq!(values(&reopened, "orders", 0), acked[0]);
    assert_eq!(reopened.recovery_report().journal.skipped_deleted, 5);
}

#[test]
fn a_damaged_acknowledged_journal_block_is_reported_not_cut() {
    use weir_log::Storage;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = open(root, &sim).unwrap();
    store
        .create_topic("orders", TopicConfig::default())
        .unwrap();
    fill(&store, "orders", 1, 3);
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);
    let files = journal_files(&image, root);
    assert_eq!(files.len(), 1);
    let mut bytes = image.read_file(&files[0]).unwrap();
    // A bit of the first block's body (the journal header is 32 bytes, a block's 8).
    bytes[32 + 8 + 20] ^= 0x10;
    assert!(image.write_file(&files[0], &bytes));
    image.sync_dir(&root.join("journal")).unwrap();

    let error = open(root, &image).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("00000000000000000000.wjl") && message.contains("byte 32"),
        "{message}"
    );
}

#[test]
fn a_failed_journal_write_or_fsync_stops_appends_until_reopen_and_loses_nothing_acknowledged() {
    // An append's storage calls: the segment write, then the journal's write and fsync.
    for (k, journal_failed) in [(1, false), (2, true), (3, true)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new();
        let store = open(root, &sim).unwrap();
        store
            .create_topic("orders", TopicConfig::with_partitions(2))
            .unwrap();
        let acked = fill(&store, "orders", 2, 3);
        sim.fail_call(Some(k));
        let error = store
            .append(
                "orders",
                &[Record::new(b"x".to_vec())],
                Partitioning::Partition(0),
            )
            .unwrap_err();
        assert_eq!(
            matches!(error, Error::JournalPoisoned { .. }),
            journal_failed,
            "call {k}: {error}"
        );
        sim.fail_call(None);
        if journal_failed {
            // Fail-stop: no partition takes a journaled append any more.
            let again = store
                .append(
                    "orders",
                    &[Record::new(b"y".to_vec())],
                    Partitioning::Partition(1),
                )
                .unwrap_err();
            assert!(matches!(again, Error::JournalPoisoned { .. }), "{again}");
        }
        let image = sim.power_cut(CrashMode::DropUnsynced);
        drop(store);
        let reopened = open(root, &image).unwrap();
        for partition in 0..2u32 {
            let read = values(&reopened, "orders", partition);
            assert!(read.starts_with(&acked[partition as usize]), "call {k}");
            // The failed append may or may not be there; nothing else is.
            assert!(
                read.len() <= acked[partition as usize].len() + 1,
                "call {k}"
            );
        }
        reopened
            .append(
                "orders",
                &[Record::new(b"z".to_vec())],
                Partitioning::Partition(0),
            )
            .unwrap();
    }
}

#[test]
fn appends_over_the_journal_frame_limit_fsync_their_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = builder(root, &sim)
        .journal_frame_bytes_max(1024)
        .open()
        .unwrap();
    store.create_topic("mixed", TopicConfig::default()).unwrap();
    let big = vec![9u8; 4096];
    store
        .append(
            "mixed",
            &[Record::new(big.clone())],
            Partitioning::Partition(0),
        )
        .unwrap();
    let small = b"small".to_vec();
    store
        .append(
            "mixed",
            &[Record::new(small.clone())],
            Partitioning::Partition(0),
        )
        .unwrap();
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);
    let reopened = open(root, &image).unwrap();
    assert_eq!(values(&reopened, "mixed", 0), [big, small]);
    let report = &reopened.recovery_report().journal;
    // Only the small one came back from the journal: the big one's segment was fsynced.
    assert_eq!(report.restored, [("mixed".to_string(), 0, 1)], "{report:?}");
}

#[test]
fn on_a_full_device_journaled_appends_fsync_their_segments_instead() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = open(root, &sim).unwrap();
    store
        .create_topic("orders", TopicConfig::with_partitions(2))
        .unwrap();
    let mut acked = fill(&store, "orders", 2, 3);
    // The segments' frames land in zeros written ahead of their ends, so only the journal's
    // block has to grow a file: it does not fit, and the segments are fsynced instead.
    sim.capacity_bytes(Some(sim.used_bytes() + 10));
    let journal = journal_files(&sim, root);
    let journal_len = sim.read_file(&journal[0]).unwrap().len();
    for n in 0..3 {
        for partition in 0..2u32 {
            let v = format!("full {partition} {n}").into_bytes();
            store
                .append(
                    "orders",
                    &[Record::new(v.clone())],
                    Partitioning::Partition(partition),
                )
                .unwrap();
            acked[partition as usize].push(v);
        }
    }
    // The blocks that did not fit were cut again: the journal did not grow.
    assert_eq!(sim.read_file(&journal[0]).unwrap().len(), journal_len);
    sim.capacity_bytes(None);
    for partition in 0..2u32 {
        let v = format!("after {partition}").into_bytes();
        store
            .append(
                "orders",
                &[Record::new(v.clone())],
                Partitioning::Partition(partition),
            )
            .unwrap();
        acked[partition as usize].push(v);
    }
    let image = sim.power_cut(CrashMode::DropUnsynced);
    drop(store);
    let reopened = open(root, &image).unwrap();
    for partition in 0..2u32 {
        assert_eq!(
            values(&reopened, "orders", partition),
            acked[partition as usize]
        );
    }
}

/// The id `topic.json` gives a topic (read by hand: the tests see only the public API).
fn topic_id(sim: &SimStorage, root: &Path, topic: &str) -> u64 {
    let json = String::from_utf8(
        sim.read_file(&root.join("topics").join(topic).join("topic.json"))
            .unwrap(),
    )
    .unwrap();
    let at = json.find("\"id\":").expect("an id") + 5;
    json[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_journaled_frame_after_missing_events_is_corruption_unless_repair_skips_it() {
    use weir_log::Storage;
    use weir_store::journal_format::{encode_header, BlockBuilder};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let sim = SimStorage::new();
    let store = open(root, &sim).unwrap();
    store.create_topic("t", TopicConfig::default()).unwrap();
    store.close().unwrap();
    drop(store);
    // A journal holding an event at offset 3 of a partition that ends at 0.
    let mut frame = Vec::new();
    weir_log::format::encode_frame(&mut frame, 3, &[weir_log::AppendEvent::value(b"x")], &[1]);
    let mut block = BlockBuilder::new();
    block.push(topic_id(&sim, root, "t"), 0, &frame);
    let mut file = encode_header(9).to_vec();
    file.extend_from_slice(block.finish(9, 32));
    let path = root.join("journal/00000000000000000009.wjl");
    let written = sim.open(&path, weir_log::OpenMode::CreateNew).unwrap();
    written.write_all_at(&file, 0).unwrap();
    written.sync_data().unwrap();
    sim.sync_dir(&root.join("journal")).unwrap();

    let error = open(root, &sim).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(
        error.to_string().contains("offset 3") && error.to_string().contains("ends at 0"),
        "{error}"
    );
    let repaired = builder(root, &sim).journal_skip_gaps(true).open().unwrap();
    assert_eq!(
        repaired.recovery_report().journal.gaps_skipped,
        [("t".to_string(), 0, 3, 1)]
    );
    assert_eq!(values(&repaired, "t", 0).len(), 0);
}
