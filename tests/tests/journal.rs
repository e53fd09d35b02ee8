//! The store's journal (`docs/durability.md`, "The journal") through the public API over
//! weir-log's fault-injecting `SimStorage`: small appends are durable by the journal alone
//! (their segments are not fsynced), so a power cut that drops every unsynced byte must find
//! them again at open; a deleted topic's journaled frames never reach a new topic of the same
//! name; a damaged acknowledged block is reported, not cut; a failed journal write or fsync
//! is fail-stop; a full device makes the segments take over; big appends bypass the journal;
//! retired files leave nothing behind; a frame after missing events is refused unless repair
//! asks to skip it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_log::sim::{CrashMode, SimStorage};
use weir_log::Storage;
use weir_store::{Error, Partitioning, Record, Store, StoreBuilder, TopicConfig};

/// A store's data directory over a fresh `SimStorage` (sled's offsets live under the
/// temporary directory).
struct Fixture {
    dir: tempfile::TempDir,
    sim: SimStorage,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            sim: SimStorage::new(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn builder(&self) -> StoreBuilder {
        Store::builder(self.root()).config(self.builder_config())
    }

    /// The configuration [`Fixture::builder`] opens with.
    fn builder_config(&self) -> weir_store::StoreConfig {
        let mut config = weir_store::StoreConfig::default();
        config.storage = Arc::new(self.sim.clone());
        config.maintenance_interval_ms = 3_600_000;
        config
    }

    /// Opens the store from `builder` and creates `topic` with `partitions`.
    fn start(&self, builder: StoreBuilder, topic: &str, partitions: u32) -> Store {
        let store = builder.open().unwrap();
        store
            .create_topic(topic, TopicConfig::with_partitions(partitions))
            .unwrap();
        store
    }

    /// Cuts the power under `store` (every unsynced byte dropped) and makes what is left
    /// this fixture's storage.
    fn cut(&mut self, store: Store) {
        let image = self.sim.power_cut(CrashMode::DropUnsynced);
        drop(store);
        self.sim = image;
    }

    fn open(&self) -> weir_store::Result<Store> {
        self.builder().open()
    }

    /// Makes the journal directory's entries durable, opens the store, and expects it to
    /// refuse as corrupt; returns the message.
    fn open_fails_as_corrupt(&self) -> String {
        self.sim.sync_dir(&self.root().join("journal")).unwrap();
        let error = self.open().unwrap_err();
        assert!(error.is_corruption(), "{error}");
        error.to_string()
    }

    fn journal_files(&self) -> Vec<PathBuf> {
        let dir = self.root().join("journal");
        let mut names = self.sim.list_dir(&dir).unwrap_or_default();
        names.sort();
        names.into_iter().map(|name| dir.join(name)).collect()
    }
}

fn values(store: &Store, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let log = store.partition_log(topic, partition).unwrap();
    let batch = log.read(log.start_offset(), 100_000, usize::MAX).unwrap();
    batch.iter().map(|event| event.value.to_vec()).collect()
}

fn append(store: &Store, topic: &str, partition: u32, value: &[u8]) -> weir_store::Result<u64> {
    let produced = store.append(
        topic,
        &[Record::new(value.to_vec())],
        Partitioning::Partition(partition),
    )?;
    Ok(produced.positions[0].1)
}

/// Appends `count` single-event appends to each partition, round by round, each value made
/// by `value(partition, n)`; returns what was acknowledged per partition.
fn fill_with(
    store: &Store,
    topic: &str,
    partitions: u32,
    count: usize,
    value: impl Fn(u32, usize) -> Vec<u8>,
) -> Vec<Vec<Vec<u8>>> {
    let mut acked = vec![Vec::new(); partitions as usize];
    for n in 0..count {
        for partition in 0..partitions {
            let v = value(partition, n);
            append(store, topic, partition, &v).unwrap();
            acked[partition as usize].push(v);
        }
    }
    acked
}

fn fill(store: &Store, topic: &str, partitions: u32, count: usize) -> Vec<Vec<Vec<u8>>> {
    fill_with(store, topic, partitions, count, |partition, n| {
        format!("{topic}/{partition}/{n}").into_bytes()
    })
}

fn assert_holds(store: &Store, topic: &str, acked: &[Vec<Vec<u8>>]) {
    for (partition, acked) in acked.iter().enumerate() {
        let read = values(store, topic, partition as u32);
        // The first difference, not two long lists.
        let differs = read.iter().zip(acked).position(|(r, a)| r != a);
        assert!(
            differs.is_none() && read.len() == acked.len(),
            "partition {partition}: {} events read, {} acknowledged, first difference at {differs:?}",
            read.len(),
            acked.len()
        );
    }
}

#[test]
fn small_appends_survive_a_power_cut_that_drops_every_unsynced_segment_byte() {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder(), "orders", 3);
    let acked = fill(&store, "orders", 3, 40);
    fixture.cut(store);

    let reopened = fixture.open().unwrap();
    assert_holds(&reopened, "orders", &acked);
    let report = &reopened.recovery_report().journal;
    assert_eq!(report.files, 1);
    // The segments lost their unsynced tails: the journal wrote every event back.
    let restored: u64 = report.restored.iter().map(|(_, _, events)| events).sum();
    assert_eq!(restored, 120, "{report:?}");
    // And the store takes appends after the replay, at the next offsets.
    assert_eq!(append(&reopened, "orders", 1, b"after").unwrap(), 40);
    drop(reopened);
    // A clean close leaves no journal file, and the next open has nothing to replay.
    assert!(fixture.journal_files().is_empty());
    let again = fixture.open().unwrap();
    assert_eq!(again.recovery_report().journal.files, 0);
    assert_eq!(values(&again, "orders", 1).len(), 41);
}

#[test]
fn retired_journal_files_are_removed_after_their_segments_are_fsynced() {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder().journal_bytes_max(64 * 1024), "big", 2);
    let acked = fill_with(&store, "big", 2, 200, |_, n| vec![n as u8; 1000]);
    // ~400 KB went through 64 KiB files: only the current one is left.
    let files = fixture.journal_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0] > fixture.root().join("journal/00000000000000000005.wjl"),
        "several files were retired: {files:?}"
    );
    fixture.cut(store);
    assert_holds(&fixture.open().unwrap(), "big", &acked);
}

#[test]
fn a_deleted_topic_s_journaled_events_never_reach_a_new_topic_of_the_same_name() {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder(), "orders", 1);
    fill(&store, "orders", 1, 5);
    store.delete_topic("orders").unwrap();
    store
        .create_topic("orders", TopicConfig::default())
        .unwrap();
    let acked = fill(&store, "orders", 1, 2);
    fixture.cut(store);

    let reopened = fixture.open().unwrap();
    assert_holds(&reopened, "orders", &acked);
    assert_eq!(reopened.recovery_report().journal.skipped_deleted, 5);
}

#[test]
fn a_damaged_acknowledged_journal_block_is_reported_not_cut() {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder(), "orders", 1);
    fill(&store, "orders", 1, 3);
    fixture.cut(store);
    let files = fixture.journal_files();
    assert_eq!(files.len(), 1);
    let mut bytes = fixture.sim.read_file(&files[0]).unwrap();
    // A bit of the first block's body (the journal header is 32 bytes, a block's 8).
    bytes[32 + 8 + 20] ^= 0x10;
    assert!(fixture.sim.write_file(&files[0], &bytes));
    let message = fixture.open_fails_as_corrupt();
    assert!(
        message.contains("00000000000000000000.wjl") && message.contains("byte 32"),
        "{message}"
    );
}

#[test]
fn a_failed_journal_write_or_fsync_stops_appends_until_reopen_and_loses_nothing_acknowledged() {
    // An append's storage calls: the segment write, then the journal's write and fsync.
    for (k, journal_failed) in [(1, false), (2, true), (3, true)] {
        let mut fixture = Fixture::new();
        let store = fixture.start(fixture.builder(), "orders", 2);
        let acked = fill(&store, "orders", 2, 3);
        fixture.sim.fail_call(Some(k));
        let error = append(&store, "orders", 0, b"x").unwrap_err();
        assert_eq!(
            matches!(error, Error::JournalPoisoned { .. }),
            journal_failed,
            "call {k}: {error}"
        );
        fixture.sim.fail_call(None);
        if journal_failed {
            // Fail-stop: no partition takes a journaled append any more.
            let again = append(&store, "orders", 1, b"y").unwrap_err();
            assert!(matches!(again, Error::JournalPoisoned { .. }), "{again}");
        }
        fixture.cut(store);
        let reopened = fixture.open().unwrap();
        for (partition, acked) in acked.iter().enumerate() {
            let read = values(&reopened, "orders", partition as u32);
            assert!(read.starts_with(acked), "call {k}");
            // The failed append may or may not be there; nothing else is.
            assert!(read.len() <= acked.len() + 1, "call {k}");
        }
        append(&reopened, "orders", 0, b"z").unwrap();
    }
}

#[test]
fn appends_over_the_journal_frame_limit_fsync_their_own_segment() {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder().journal_frame_bytes_max(1024), "mixed", 1);
    let (big, small) = (vec![9u8; 4096], b"small".to_vec());
    append(&store, "mixed", 0, &big).unwrap();
    append(&store, "mixed", 0, &small).unwrap();
    fixture.cut(store);
    let reopened = fixture.open().unwrap();
    assert_eq!(values(&reopened, "mixed", 0), [big, small]);
    let report = &reopened.recovery_report().journal;
    // Only the small one came back from the journal: the big one's segment was fsynced.
    assert_eq!(report.restored, [("mixed".to_string(), 0, 1)], "{report:?}");
}

/// Fills a journal until its zeros run out on a device with `slack` bytes free; with
/// `resume`, frees the device and appends more in the same process before the power cut.
fn full_device(slack: u64, resume: bool) {
    let mut fixture = Fixture::new();
    let store = fixture.start(fixture.builder(), "orders", 2);
    let mut acked = fill(&store, "orders", 2, 3);
    // The segments' frames land in the zeros written ahead of their ends (1 MiB), and the
    // journal's in its own (1 MiB): once the journal's run out, its zeros do not fit, then
    // (with little slack) neither do its blocks, and the segments are fsynced instead.
    let sim = fixture.sim.clone();
    sim.capacity_bytes(Some(sim.used_bytes() + slack));
    let full = fill_with(&store, "orders", 2, 700, |p, n| {
        let mut value = format!("full {p} {n} ").into_bytes();
        value.resize(1000, b'.');
        value
    });
    // 1.4 MB went by: the journal holds only the blocks that fit.
    let journal = fixture.journal_files();
    let bytes = sim.read_file(&journal[0]).unwrap();
    let decoded = weir_store::journal_format::decode_journal(&bytes).unwrap();
    let journaled: usize = decoded.blocks.iter().map(|b| b.entries.len()).sum();
    assert!(
        journaled < 6 + 1400,
        "slack {slack}: {journaled} appends journaled"
    );
    sim.capacity_bytes(None);
    for (partition, acked) in acked.iter_mut().enumerate() {
        acked.extend(full[partition].iter().cloned());
    }
    if resume {
        let after = fill(&store, "orders", 2, 20);
        for (partition, acked) in acked.iter_mut().enumerate() {
            acked.extend(after[partition].iter().cloned());
        }
    }
    // A cut now loses nothing that was acknowledged while the journal could not take it
    // (without `resume`, before anything else could fsync those partitions).
    fixture.cut(store);
    let reopened = fixture.open().unwrap();
    assert_holds(&reopened, "orders", &acked);
    append(&reopened, "orders", 0, b"after").unwrap();
}

#[test]
fn on_a_full_device_journaled_appends_fsync_their_segments_instead() {
    // Neither the zeros nor a block fit.
    full_device(10, false);
    // The zeros do not fit, but a block does: later zeros must never touch it.
    full_device(2_000, false);
    // And the journal takes appends again once space is freed.
    full_device(2_000, true);
}

/// The id `topic.json` gives a topic (read by hand: the tests see only the public API).
fn topic_id(fixture: &Fixture, topic: &str) -> u64 {
    let path = fixture.root().join("topics").join(topic).join("topic.json");
    let json = String::from_utf8(fixture.sim.read_file(&path).unwrap()).unwrap();
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
fn a_journaled_frame_after_missing_events_is_damage_that_repair_marks_lost() {
    use weir_store::journal_format::{encode_header, BlockBuilder};
    let fixture = Fixture::new();
    fixture.start(fixture.builder(), "t", 1).close().unwrap();
    // A journal holding an event at offset 3 of a partition that ends at 0.
    let mut frame = Vec::new();
    weir_log::format::encode_frame(&mut frame, 3, &[weir_log::AppendEvent::value(b"x")], &[1]);
    let mut block = BlockBuilder::new();
    block.push(topic_id(&fixture, "t"), 0, &frame);
    let mut file = encode_header(9).to_vec();
    file.extend_from_slice(block.finish(9, 32));
    let path = fixture.root().join("journal/00000000000000000009.wjl");
    let written = fixture
        .sim
        .open(&path, weir_log::OpenMode::CreateNew)
        .unwrap();
    written.write_all_at(&file, 0).unwrap();
    written.sync_data().unwrap();
    // The store opens; the partition is damaged (read-only, nothing changed), the journal kept.
    let store = fixture.builder().open().unwrap();
    let damaged = store.damaged_partitions();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        damaged[0].damage.contains("offset 3") || damaged[0].damage.contains("up to 4"),
        "{damaged:?}"
    );
    assert!(store
        .append(
            "t",
            &[weir_store::Record::new("y")],
            weir_store::Partitioning::Partition(0)
        )
        .is_err());
    store.close().unwrap();
    drop(store);
    assert!(
        fixture.sim.read_file(&path).is_some(),
        "the journal is kept for repair"
    );
    // Repair marks offsets 0..3 lost and writes the journaled event back at 3.
    let config = fixture.builder_config();
    let inspection = weir_store::recovery::inspect_with(fixture.root(), &config).unwrap();
    let plans = inspection.repair_plan();
    assert_eq!(plans.len(), 1, "{plans:#?}");
    assert_eq!(plans[0].2.lost, vec![0..3]);
    weir_store::recovery::repair(fixture.root(), &inspection, 5_000, &config).unwrap();
    let repaired = fixture.builder().open().unwrap();
    assert!(repaired.damaged_partitions().is_empty());
    let log = repaired.partition_log("t", 0).unwrap();
    assert_eq!(log.read(0, 10, usize::MAX).unwrap().lost(), Some(0..3));
    assert_eq!(log.read(3, 10, usize::MAX).unwrap().len(), 1);
    assert!(matches!(
        repaired
            .replay("t", 0, weir_store::ReplayFrom::Earliest, Default::default())
            .unwrap()
            .next(),
        Some(Err(weir_store::Error::EventsLost {
            first_offset: 0,
            end_offset: 3,
            ..
        }))
    ));
}
