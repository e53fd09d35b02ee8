//! Damage to a stopped store's files, as an operator or a failing disk would cause it, checked
//! against an oracle of acknowledged events and committed offsets (issue 15).
//!
//! The sweep (`damage_sweep_*`): for a store with several topics, sealed and active segments,
//! journaled and large appends and a consumer group — once closed cleanly and once killed
//! (journal files left, checkpoints refreshed by the maintenance pass) — every segment, index,
//! checkpoint, journal and offsets file gets single-byte flips and truncations (a seeded
//! sample in the default run; every byte and every length with `WEIR_DAMAGE_SWEEP=full`).
//! For each: `weir verify`'s inspection changes nothing; the open agrees with it (refuses
//! exactly when it says so, having written nothing; opens the partitions it calls damaged
//! read-only and the others writable); no acknowledged event is ever read back wrong or
//! missing without the partition reporting damage; committed offsets never move forward;
//! repair finishes, after which verify is clean and exactly the offsets reads report lost are
//! missing.
//!
//! The named tests `caseN_*` are the nine cases of issue 15, each failing on the code before
//! it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weir_log::sim::{CrashMode, SimStorage};
use weir_log::Health;
use weir_log::Storage;
use weir_store::recovery::{self, StoreInspection};
use weir_store::{ConsumerConfig, Partitioning, Record, Store, StoreConfig, TopicConfig};

/// Acknowledged events (topic, partition) → values by offset, and committed offsets.
#[derive(Debug, Clone, Default)]
struct Oracle {
    events: BTreeMap<(String, u32), Vec<Vec<u8>>>,
    committed: BTreeMap<(String, u32), u64>,
}

/// A store image: the simulated topics and journal, and the real offsets store files.
struct Image {
    sim: SimStorage,
    /// The offsets directory and witness, as files (relative path → bytes).
    offsets: Vec<(PathBuf, Vec<u8>)>,
    oracle: Oracle,
}

/// The data directory every case runs in (one at a time).
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self, sim: &SimStorage, maintenance_ms: u64) -> StoreConfig {
        let mut config = StoreConfig::default();
        config.storage = Arc::new(sim.clone());
        config.maintenance_interval_ms = maintenance_ms;
        config
    }

    /// Builds the workload; `crash` kills the store instead of closing it (after the
    /// maintenance pass refreshed checkpoints and sealed the offsets witness).
    fn build(&self, crash: bool) -> Image {
        let sim = SimStorage::new();
        let store = Store::builder(self.root())
            .config(self.config(&sim, 20))
            .open()
            .unwrap();
        let mut oracle = Oracle::default();
        let mut big = TopicConfig::with_partitions(1);
        big.segment_bytes_max = 96 * 1024;
        store.create_topic("big", big).unwrap();
        store
            .create_topic("small", TopicConfig::with_partitions(2))
            .unwrap();
        // Large appends (over the journal's 64 KiB): each fsyncs its own segment.
        for round in 0..5u32 {
            let records: Vec<Record> = (0..300u32)
                .map(|i| Record::new(format!("big-{round}-{i}-{}", "b".repeat(190))))
                .collect();
            append(&store, &mut oracle, "big", 0, &records);
        }
        // Small appends: made durable by the journal.
        for round in 0..20u32 {
            for partition in 0..2 {
                let records: Vec<Record> = (0..4u32)
                    .map(|i| Record::new(format!("small-{partition}-{round}-{i}")))
                    .collect();
                append(&store, &mut oracle, "small", partition, &records);
            }
        }
        // A group that consumed part of "small".
        let mut settings = ConsumerConfig::default();
        settings.batch_size = 10;
        let consumer = store.consumer("g", "small", settings).unwrap();
        for _ in 0..4 {
            let batch = consumer
                .next_batch(Duration::from_secs(2))
                .unwrap()
                .expect("a batch");
            consumer.ack(&batch).unwrap();
        }
        drop(consumer);
        for partition in store.describe_group("g").unwrap().partitions {
            oracle.committed.insert(
                (partition.topic.clone(), partition.partition),
                partition.committed_offset,
            );
        }
        // Let the maintenance pass refresh checkpoints and seal the witness.
        std::thread::sleep(Duration::from_millis(150));
        let sim = if crash {
            // Killed: what the process wrote survives, nothing more. (The store closes
            // afterwards on the old storage and the real offsets directory; every case puts the
            // copies taken here back first.)
            let image = sim.power_cut(CrashMode::ProcessCrash);
            let offsets = self.offsets_files();
            drop(store);
            return Image {
                sim: image,
                offsets,
                oracle,
            };
        } else {
            store.close().unwrap();
            drop(store);
            sim
        };
        Image {
            offsets: self.offsets_files(),
            sim,
            oracle,
        }
    }

    /// The offsets directory's files and the witness.
    fn offsets_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let dir = self.root().join("offsets");
        for entry in walk(&dir) {
            let relative = entry.strip_prefix(self.root()).unwrap().to_path_buf();
            files.push((relative, std::fs::read(&entry).unwrap()));
        }
        let witness = self.root().join(weir_store::OFFSETS_WITNESS_FILE);
        if let Ok(bytes) = std::fs::read(&witness) {
            files.push((PathBuf::from(weir_store::OFFSETS_WITNESS_FILE), bytes));
        }
        files
    }

    /// Puts `image`'s offsets files back on disk, and returns a fresh copy of its simulated
    /// files.
    fn restore(&self, image: &Image) -> SimStorage {
        let _ = std::fs::remove_dir_all(self.root().join("offsets"));
        let _ = std::fs::remove_file(self.root().join(weir_store::OFFSETS_WITNESS_FILE));
        for entry in std::fs::read_dir(self.root()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("offsets.damaged"))
            {
                std::fs::remove_dir_all(&path).unwrap();
            }
        }
        for (relative, bytes) in &image.offsets {
            let path = self.root().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        image.sim.power_cut(CrashMode::ProcessCrash)
    }
}

fn append(store: &Store, oracle: &mut Oracle, topic: &str, partition: u32, records: &[Record]) {
    let produced = store
        .append(topic, records, Partitioning::Partition(partition))
        .unwrap();
    let values = oracle
        .events
        .entry((topic.to_string(), partition))
        .or_default();
    for (record, &(_, offset)) in records.iter().zip(&produced.positions) {
        assert_eq!(offset as usize, values.len());
        values.push(record.value.to_vec());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every simulated file under `dir` (path → bytes).
fn sim_files(sim: &SimStorage, dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(names) = sim.list_dir(dir) else {
        return files;
    };
    for name in names {
        let path = dir.join(&name);
        match sim.read_file(&path) {
            Some(bytes) => {
                files.insert(path, bytes);
            }
            None => files.extend(sim_files(sim, &path)),
        }
    }
    files
}

/// What reading a partition from its start gives: the events (offset → value), the lost
/// ranges reported, and the error it stopped at, if any.
struct ReadBack {
    events: BTreeMap<u64, Vec<u8>>,
    lost: Vec<std::ops::Range<u64>>,
    stopped: Option<String>,
}

fn read_back(store: &Store, topic: &str, partition: u32) -> ReadBack {
    let log = store.partition_log(topic, partition).unwrap();
    let mut found = ReadBack {
        events: BTreeMap::new(),
        lost: Vec::new(),
        stopped: None,
    };
    let mut at = log.start_offset();
    loop {
        match log.read(at, 10_000, usize::MAX) {
            Ok(batch) => {
                for event in batch.iter() {
                    found.events.insert(event.offset, event.value.to_vec());
                }
                if let Some(lost) = batch.lost() {
                    at = lost.end;
                    found.lost.push(lost);
                    continue;
                }
                if batch.is_empty() {
                    return found;
                }
                at = batch.next_offset();
            }
            Err(error) => {
                found.stopped = Some(error.to_string());
                return found;
            }
        }
    }
}

/// One kind of damage.
#[derive(Debug, Clone)]
enum Damage {
    Flip { file: PathBuf, at: usize },
    Cut { file: PathBuf, len: usize },
}

/// Where a file lives: in the simulated storage, or (the offsets store) on disk.
fn is_offsets(file: &Path) -> bool {
    file.components().any(|c| c.as_os_str() == "offsets")
}

/// What a damage does to a file's bytes.
type Change = Box<dyn Fn(&mut Vec<u8>)>;

fn apply(bench: &Bench, sim: &SimStorage, damage: &Damage) {
    let (file, change): (&PathBuf, Change) = match damage {
        Damage::Flip { file, at } => {
            let at = *at;
            (file, Box::new(move |bytes: &mut Vec<u8>| bytes[at] ^= 0x5a))
        }
        Damage::Cut { file, len } => {
            let len = *len;
            (
                file,
                Box::new(move |bytes: &mut Vec<u8>| bytes.truncate(len)),
            )
        }
    };
    if is_offsets(file) {
        let path = bench.root().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        change(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
    } else {
        let mut bytes = sim.read_file(file).unwrap();
        change(&mut bytes);
        assert!(sim.write_file(file, &bytes));
    }
}

/// The outcome of one case, for the sweep's counts.
#[derive(Debug, Default)]
struct Counts {
    cases: usize,
    clean: usize,
    repairable: usize,
    damaged: usize,
    refused: usize,
    events_lost: u64,
}

/// Runs one case: see the module docs for what it checks.
fn check_case(bench: &Bench, image: &Image, damage: &Damage, counts: &mut Counts) {
    let sim = bench.restore(image);
    apply(bench, &sim, damage);
    let config = bench.config(&sim, 3_600_000);
    let root = bench.root();
    let witness = root.join(weir_store::OFFSETS_WITNESS_FILE);
    let before = (sim_files(&sim, root), std::fs::read(&witness).ok());

    // Verify changes nothing.
    let inspection = recovery::inspect_with(root, &config)
        .unwrap_or_else(|e| panic!("{damage:?}: inspect failed: {e}"));
    assert_eq!(
        (sim_files(&sim, root), std::fs::read(&witness).ok()),
        before,
        "{damage:?}: verify changed something"
    );
    counts.cases += 1;
    match inspection.health() {
        Health::Clean => counts.clean += 1,
        Health::Repairable => counts.repairable += 1,
        Health::Damaged => counts.damaged += 1,
    }

    // The open agrees with it.
    let opened = Store::builder(root).config(config.clone()).open();
    if inspection.refuses_open() {
        counts.refused += 1;
        assert!(
            opened.is_err(),
            "{damage:?}: verify says the store will not open, but it did: {:?}",
            inspection.problems
        );
        assert_eq!(
            (sim_files(&sim, root), std::fs::read(&witness).ok()),
            before,
            "{damage:?}: a refused open changed something"
        );
    } else {
        let store = opened.unwrap_or_else(|e| {
            panic!(
                "{damage:?}: verify says the store opens, but it refused: {e}; {:?}",
                inspection.problems
            )
        });
        check_open_store(&store, &inspection, image, damage);
        store.close().unwrap();
        drop(store);
    }

    // Repair finishes, and verify is clean afterwards.
    let inspection = recovery::inspect_with(root, &config).unwrap();
    if inspection.health() != Health::Clean {
        recovery::repair(root, &inspection, 1_700_000_000_000, &config)
            .unwrap_or_else(|e| panic!("{damage:?}: repair failed: {e}"));
    }
    let after = recovery::inspect_with(root, &config).unwrap();
    assert_eq!(
        after.health(),
        Health::Clean,
        "{damage:?}: not clean after repair: {:#?} {:#?}",
        after.problems,
        after
            .partitions
            .iter()
            .map(|p| (&p.topic, p.partition, &p.full.damage, &p.full.actions))
            .collect::<Vec<_>>()
    );
    let store = Store::builder(root).config(config).open().unwrap();
    assert!(store.damaged_partitions().is_empty(), "{damage:?}");
    for ((topic, partition), values) in &image.oracle.events {
        let read = read_back(&store, topic, *partition);
        assert_eq!(
            read.stopped, None,
            "{damage:?}: {topic}/{partition} after repair"
        );
        for (offset, value) in values.iter().enumerate() {
            let offset = offset as u64;
            match read.events.get(&offset) {
                Some(found) => assert_eq!(found, value, "{damage:?}: {topic}/{partition}@{offset}"),
                None => assert!(
                    read.lost.iter().any(|lost| lost.contains(&offset)),
                    "{damage:?}: {topic}/{partition}@{offset} missing after repair, not reported lost ({:?})",
                    read.lost
                ),
            }
        }
        let lost: u64 = read.lost.iter().map(|l| l.end - l.start).sum();
        counts.events_lost += lost;
        if !matches!(damage, Damage::Cut { .. }) && !is_segment(damage) {
            assert_eq!(lost, 0, "{damage:?}: only damaged segments lose events");
        }
        // Offsets are never reused: the next append goes after everything.
        let end = values.len() as u64;
        let next = store
            .append(
                topic,
                &[Record::new("after")],
                Partitioning::Partition(*partition),
            )
            .unwrap()
            .positions[0]
            .1;
        assert!(
            next >= end,
            "{damage:?}: {topic}/{partition} reused offset {next} < {end}"
        );
    }
    // Committed offsets never move forward (damage to the offsets store may move them back).
    if let Ok(group) = store.describe_group("g") {
        for partition in group.partitions {
            let oracle = image.oracle.committed[&(partition.topic.clone(), partition.partition)];
            assert!(
                partition.committed_offset <= oracle,
                "{damage:?}: an offset moved forward"
            );
        }
    }
    store.close().unwrap();
}

fn is_segment(damage: &Damage) -> bool {
    let file = match damage {
        Damage::Flip { file, .. } | Damage::Cut { file, .. } => file,
    };
    file.extension().is_some_and(|e| e == "log")
}

/// Right after an open: each partition is damaged exactly when verify said the open finds
/// damage; every event read back is the acknowledged one; a partition that reads fewer events
/// than were acknowledged reports damage; committed offsets are the oracle's.
fn check_open_store(store: &Store, inspection: &StoreInspection, image: &Image, damage: &Damage) {
    for partition in &inspection.partitions {
        let log = store
            .partition_log(&partition.topic, partition.partition)
            .unwrap();
        assert_eq!(
            log.damage().is_some(),
            !partition.at_open.damage.is_empty(),
            "{damage:?}: {}/{}: verify and open disagree ({:?})",
            partition.topic,
            partition.partition,
            partition.at_open.damage
        );
    }
    for ((topic, partition), values) in &image.oracle.events {
        let read = read_back(store, topic, *partition);
        for (offset, value) in &read.events {
            assert_eq!(
                Some(value),
                values.get(*offset as usize),
                "{damage:?}: {topic}/{partition}@{offset} read back wrong"
            );
        }
        let complete = (0..values.len() as u64).all(|o| read.events.contains_key(&o));
        if !complete {
            let log = store.partition_log(topic, *partition).unwrap();
            assert!(
                log.damage().is_some(),
                "{damage:?}: {topic}/{partition}: acknowledged events missing ({} of {}) and no damage reported (stopped: {:?})",
                read.events.len(),
                values.len(),
                read.stopped
            );
        }
    }
    if let Ok(group) = store.describe_group("g") {
        for partition in group.partitions {
            let oracle = image.oracle.committed[&(partition.topic.clone(), partition.partition)];
            assert_eq!(
                partition.committed_offset, oracle,
                "{damage:?}: a committed offset changed"
            );
        }
    }
}

/// The files damaged in a sweep: segments, indexes, checkpoints, journal files, and sled's
/// `db` of the offsets store.
fn sweep_files(image: &Image, root: &Path) -> Vec<(PathBuf, usize)> {
    let mut files: Vec<(PathBuf, usize)> = sim_files(&image.sim, root)
        .into_iter()
        .filter(|(path, _)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".log")
                || name.ends_with(".index")
                || name == "checkpoint"
                || name.ends_with(".wjl")
        })
        .map(|(path, bytes)| (path, bytes.len()))
        .collect();
    for (relative, bytes) in &image.offsets {
        if relative.file_name().is_some_and(|n| n == "db") {
            files.push((relative.clone(), bytes.len()));
        }
    }
    files
}

/// The damage of a sweep: every byte and every length with `WEIR_DAMAGE_SWEEP=full`, else a
/// seeded sample of `per_file` flips and a few cuts per file.
fn sweep_damage(files: &[(PathBuf, usize)], per_file: usize, seed: u64) -> Vec<Damage> {
    let full = std::env::var("WEIR_DAMAGE_SWEEP").is_ok_and(|v| v == "full");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut damage = Vec::new();
    for (file, len) in files {
        if *len == 0 {
            continue;
        }
        if full {
            damage.extend((0..*len).map(|at| Damage::Flip {
                file: file.clone(),
                at,
            }));
            damage.extend((0..*len).map(|len| Damage::Cut {
                file: file.clone(),
                len,
            }));
        } else {
            for _ in 0..per_file {
                damage.push(Damage::Flip {
                    file: file.clone(),
                    at: rng.usize(..*len),
                });
            }
            for _ in 0..per_file.div_ceil(3) {
                damage.push(Damage::Cut {
                    file: file.clone(),
                    len: rng.usize(..*len),
                });
            }
        }
    }
    damage
}

fn sweep(crash: bool, seed: u64) {
    let bench = Bench::new();
    let image = bench.build(crash);
    let files = sweep_files(&image, bench.root());
    assert!(
        files
            .iter()
            .any(|(f, _)| f.to_string_lossy().ends_with(".wjl"))
            || !crash
    );
    let per_file = std::env::var("WEIR_DAMAGE_SWEEP_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut counts = Counts::default();
    for damage in sweep_damage(&files, per_file, seed) {
        check_case(&bench, &image, &damage, &mut counts);
    }
    eprintln!(
        "damage sweep ({}): {counts:?}",
        if crash { "killed" } else { "closed" }
    );
    assert!(counts.damaged > 0 && counts.cases > 0);
}

#[test]
fn damage_sweep_of_a_cleanly_closed_store() {
    sweep(false, 15);
}

#[test]
fn damage_sweep_of_a_killed_store() {
    sweep(true, 16);
}

// ---- The nine cases of issue 15 ------------------------------------------------------------

/// A store over a fresh simulated storage, its maintenance pass off unless asked for.
struct Case {
    bench: Bench,
    sim: SimStorage,
}

impl Case {
    fn new() -> Case {
        Case {
            bench: Bench::new(),
            sim: SimStorage::new(),
        }
    }

    fn root(&self) -> &Path {
        self.bench.root()
    }

    fn config(&self) -> StoreConfig {
        self.bench.config(&self.sim, 3_600_000)
    }

    fn open(&self) -> weir_store::Result<Store> {
        Store::builder(self.root()).config(self.config()).open()
    }

    fn inspect(&self) -> StoreInspection {
        recovery::inspect_with(self.root(), &self.config()).unwrap()
    }

    /// Kills `store`: what it wrote survives (a process crash), and it never closes.
    fn kill(&mut self, store: Store) {
        let image = self.sim.power_cut(CrashMode::ProcessCrash);
        let offsets = self.bench.offsets_files();
        drop(store);
        self.bench.restore(&Image {
            sim: image.clone(),
            offsets,
            oracle: Oracle::default(),
        });
        self.sim = image;
    }

    fn repair(&self) -> recovery::RepairOutcome {
        let inspection = self.inspect();
        recovery::repair(self.root(), &inspection, 1_700_000_000_000, &self.config()).unwrap()
    }

    fn segments(&self, topic: &str, partition: u32) -> Vec<PathBuf> {
        let dir = self
            .root()
            .join("topics")
            .join(topic)
            .join(partition.to_string());
        let mut segments: Vec<PathBuf> = self
            .sim
            .list_dir(&dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .map(|n| dir.join(n))
            .collect();
        segments.sort();
        segments
    }

    fn flip(&self, file: &Path, at: usize) {
        let mut bytes = self.sim.read_file(file).unwrap();
        bytes[at] ^= 0x5a;
        assert!(self.sim.write_file(file, &bytes));
    }

    fn partition_files(&self, topic: &str, partition: u32) -> BTreeMap<PathBuf, Vec<u8>> {
        let dir = self
            .root()
            .join("topics")
            .join(topic)
            .join(partition.to_string());
        let mut files = sim_files(&self.sim, &dir);
        files.remove(&dir.join("lock"));
        files
    }
}

fn hundred_byte_records(count: usize, tag: &str) -> Vec<Record> {
    (0..count)
        .map(|i| Record::new(format!("{tag}-{i:05}-{}", "x".repeat(88))))
        .collect()
}

fn produce(store: &Store, topic: &str, partition: u32, records: &[Record]) -> u64 {
    store
        .append(topic, records, Partitioning::Partition(partition))
        .unwrap()
        .positions[0]
        .1
}

/// The first frame's position: right after the 40-byte segment header.
const FIRST_FRAME: usize = 40;

#[test]
fn case1_acknowledged_frames_are_never_cut_as_a_torn_tail() {
    let mut case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    for round in 0..3 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(1000, &format!("r{round}")),
        );
    }
    case.kill(store);
    let segment = case.segments("t", 0).remove(0);
    case.flip(&segment, FIRST_FRAME + 5_000);
    let files = case.partition_files("t", 0);
    // The store opens; the partition is damaged, read-only, and nothing of it was changed.
    let store = case.open().unwrap();
    let damaged = store.damaged_partitions();
    assert_eq!(damaged.len(), 1, "the damage went unreported: {damaged:?}");
    assert_eq!(damaged[0].readable_end, 0);
    assert!(matches!(
        store.append("t", &[Record::new("x")], Partitioning::Partition(0)),
        Err(error) if error.is_corruption()
    ));
    store.close().unwrap();
    drop(store);
    assert_eq!(
        case.partition_files("t", 0),
        files,
        "the open changed the damaged partition"
    );
    // Verify says so; repair loses exactly the damaged frame's 1,000 events.
    assert_eq!(case.inspect().health(), Health::Damaged);
    let repaired = case.repair();
    assert_eq!(repaired.partitions.len(), 1);
    assert_eq!(repaired.partitions[0].2.lost, vec![0..1000]);
    assert_eq!(case.inspect().health(), Health::Clean);
    let store = case.open().unwrap();
    let read = read_back(&store, "t", 0);
    assert_eq!(read.events.len(), 2000);
    assert_eq!(read.lost, vec![0..1000]);
    assert_eq!(produce(&store, "t", 0, &[Record::new("next")]), 3000);
}

#[test]
fn case2_a_start_that_finds_damage_writes_nothing_and_repair_can_finish() {
    let mut case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    // Large appends (segment fsync) with small journaled ones between them.
    for round in 0..3 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(1000, &format!("big{round}")),
        );
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(3, &format!("small{round}")),
        );
    }
    case.kill(store);
    let segment = case.segments("t", 0).remove(0);
    case.flip(&segment, FIRST_FRAME + 5_000);
    let files = case.partition_files("t", 0);
    let journal = sim_files(&case.sim, &case.root().join("journal"));
    let store = case.open().unwrap();
    assert_eq!(store.damaged_partitions().len(), 1);
    store.close().unwrap();
    drop(store);
    assert_eq!(
        case.partition_files("t", 0),
        files,
        "the open cut before it decided"
    );
    assert_eq!(
        sim_files(&case.sim, &case.root().join("journal"))
            .into_iter()
            .filter(|(path, _)| journal.contains_key(path))
            .count(),
        journal.len(),
        "the journal's frames of a damaged partition are kept for repair"
    );
    let repaired = case.repair();
    assert_eq!(repaired.partitions[0].2.lost, vec![0..1000]);
    assert_eq!(case.inspect().health(), Health::Clean);
    let store = case.open().unwrap();
    assert_eq!(read_back(&store, "t", 0).events.len(), 2009);
}

#[test]
fn case3_a_node_never_accepts_writes_after_a_damaged_last_frame() {
    let case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    for round in 0..6 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(100, &format!("r{round}")),
        );
    }
    store.close().unwrap();
    drop(store);
    let segment = case.segments("t", 0).pop().unwrap();
    let len = case.sim.read_file(&segment).unwrap().len();
    case.flip(&segment, len - 10);
    let store = case.open().unwrap();
    assert_eq!(store.damaged_partitions().len(), 1);
    assert!(store
        .append("t", &[Record::new("x")], Partitioning::Partition(0))
        .is_err());
    // Everything below the damage reads back.
    assert_eq!(read_back(&store, "t", 0).events.len(), 500);
}

/// A named way to damage a case's store.
type Setup = (&'static str, fn(&Case));

#[test]
fn case4_verify_and_open_decide_alike() {
    let setups: [Setup; 3] = [
        ("a flip in a sealed frame", |case| {
            let segment = case.segments("t", 0).remove(0);
            case.flip(&segment, FIRST_FRAME + 3_000);
        }),
        (
            "a flip in the active segment's last frame after a clean stop",
            |case| {
                let segment = case.segments("t", 0).pop().unwrap();
                let len = case.sim.read_file(&segment).unwrap().len();
                case.flip(&segment, len - 10);
            },
        ),
        ("a flip in a sealed segment's header", |case| {
            let segment = case.segments("t", 0).remove(0);
            case.flip(&segment, 20);
        }),
    ];
    for (what, damage) in setups {
        let case = Case::new();
        let store = case.open().unwrap();
        let mut config = TopicConfig::with_partitions(1);
        config.segment_bytes_max = 64 * 1024;
        store.create_topic("t", config).unwrap();
        for round in 0..8 {
            produce(
                &store,
                "t",
                0,
                &hundred_byte_records(200, &format!("r{round}")),
            );
        }
        store.close().unwrap();
        drop(store);
        assert!(case.segments("t", 0).len() >= 3);
        damage(&case);
        let inspection = case.inspect();
        assert_eq!(inspection.health(), Health::Damaged, "{what}");
        let at_open = !inspection.partitions[0].at_open.damage.is_empty();
        let store = case.open().unwrap();
        let log = store.partition_log("t", 0).unwrap();
        assert_eq!(
            log.damage().is_some(),
            at_open,
            "{what}: verify and open disagree"
        );
        // Either way, the damage is found by the read that reaches it, and reported.
        let read = read_back(&store, "t", 0);
        assert!(
            read.events.len() == 1600 || store.damaged_partitions().len() == 1,
            "{what}: events missing without damage"
        );
        store.close().unwrap();
    }
}

#[test]
fn case5_repair_rebuilds_a_damaged_header_losing_nothing() {
    for byte in [20, 28] {
        let case = Case::new();
        let store = case.open().unwrap();
        let mut config = TopicConfig::with_partitions(1);
        config.segment_bytes_max = 64 * 1024;
        store.create_topic("t", config).unwrap();
        for round in 0..6 {
            produce(
                &store,
                "t",
                0,
                &hundred_byte_records(200, &format!("r{round}")),
            );
        }
        store.close().unwrap();
        drop(store);
        let sealed = case.segments("t", 0).remove(1);
        case.flip(&sealed, byte);
        let inspection = case.inspect();
        let plans = inspection.repair_plan();
        assert_eq!(plans.len(), 1);
        assert!(plans[0].2.lost.is_empty(), "byte {byte}: {:#?}", plans[0].2);
        case.repair();
        assert_eq!(case.inspect().health(), Health::Clean);
        let store = case.open().unwrap();
        let read = read_back(&store, "t", 0);
        assert_eq!(read.events.len(), 1200, "byte {byte}");
        assert!(read.lost.is_empty());
    }
}

#[test]
fn case6_repair_mends_a_damaged_journal_block() {
    let mut case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(2))
        .unwrap();
    for round in 0..10 {
        for partition in 0..2 {
            produce(
                &store,
                "t",
                partition,
                &hundred_byte_records(3, &format!("r{round}")),
            );
        }
    }
    case.kill(store);
    let journal = sim_files(&case.sim, &case.root().join("journal"));
    let (path, bytes) = journal.iter().next().expect("a journal file");
    assert!(bytes.len() > 500);
    // A byte of the first block's body: a valid block follows, so it was acknowledged.
    case.flip(path, 32 + 8 + 40);
    let refused = case.open();
    assert!(
        matches!(&refused, Err(error) if error.is_corruption()),
        "{refused:?}"
    );
    assert_eq!(case.inspect().health(), Health::Damaged);
    let repaired = case.repair();
    assert!(repaired.recovery.journal.damaged_blocks >= 1);
    assert_eq!(case.inspect().health(), Health::Clean);
    let store = case.open().unwrap();
    // The process crash left every frame in its segment: nothing is lost.
    for partition in 0..2 {
        let read = read_back(&store, "t", partition);
        assert_eq!(read.events.len(), 30);
        assert!(read.lost.is_empty());
    }
}

#[test]
fn case7_reads_and_consumers_stop_at_damage_not_before_it() {
    let case = Case::new();
    let store = case.open().unwrap();
    let mut config = TopicConfig::with_partitions(2);
    config.segment_bytes_max = 16 * 1024;
    store.create_topic("t", config).unwrap();
    for round in 0..30 {
        for partition in 0..2 {
            produce(
                &store,
                "t",
                partition,
                &hundred_byte_records(7, &format!("r{round}")),
            );
        }
    }
    store.close().unwrap();
    drop(store);
    // Damage the tenth frame of partition 0's first (sealed) segment: offsets 63..70.
    let segment = case.segments("t", 0).remove(0);
    let frame_len = {
        let bytes = case.sim.read_file(&segment).unwrap();
        u32::from_le_bytes(bytes[FIRST_FRAME + 4..FIRST_FRAME + 8].try_into().unwrap()) as usize
    };
    case.flip(&segment, FIRST_FRAME + 9 * frame_len + 50);
    let store = case.open().unwrap();
    let log = store.partition_log("t", 0).unwrap();
    let batch = log.read(0, 1000, usize::MAX).unwrap();
    assert_eq!(batch.len(), 63, "the events before the damage");
    assert!(log.read(63, 1000, usize::MAX).is_err());
    // A consumer gets the events before the damage, then the error; the other partition goes on.
    let mut settings = ConsumerConfig::default();
    settings.batch_size = 10;
    let consumer = store.consumer("g", "t", settings).unwrap();
    let mut seen = [0usize; 2];
    let mut failed = false;
    for _ in 0..40 {
        match consumer.next_batch(Duration::from_millis(200)) {
            Ok(Some(batch)) => {
                seen[batch.partition as usize] += batch.events.len();
                consumer.ack(&batch).unwrap();
            }
            Ok(None) => break,
            Err(error) => {
                assert!(error.is_corruption(), "{error}");
                failed = true;
            }
        }
    }
    assert!(failed, "the consumer never learned of the damage");
    assert_eq!(seen[0], 63);
    assert_eq!(seen[1], 210);
}

#[test]
fn case8_damage_to_the_offsets_store_is_reported() {
    let case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    produce(&store, "t", 0, &hundred_byte_records(50, "r"));
    let mut settings = ConsumerConfig::default();
    settings.batch_size = 10;
    let consumer = store.consumer("g", "t", settings).unwrap();
    for _ in 0..3 {
        let batch = consumer
            .next_batch(Duration::from_secs(1))
            .unwrap()
            .unwrap();
        consumer.ack(&batch).unwrap();
    }
    drop(consumer);
    store.close().unwrap();
    drop(store);
    let db = case.root().join("offsets/db");
    let pristine = std::fs::read(&db).unwrap();
    let mut reported = 0;
    let step = (pristine.len() / 40).max(1);
    for at in (0..pristine.len()).step_by(step) {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x5a;
        std::fs::write(&db, &bytes).unwrap();
        let inspection = case.inspect();
        match case.open() {
            Ok(store) => {
                // Opened: the committed offset is exactly what was acknowledged.
                let group = store.describe_group("g").unwrap();
                assert_eq!(group.partitions[0].committed_offset, 30, "flip at {at}");
                assert!(!inspection.refuses_open());
                store.close().unwrap();
            }
            Err(error) => {
                reported += 1;
                assert!(
                    inspection.refuses_open(),
                    "flip at {at}: verify missed {error}"
                );
                assert_eq!(inspection.health(), Health::Damaged);
            }
        }
        std::fs::write(&db, &pristine).unwrap();
    }
    assert!(reported > 0);
    // Repair accepts what is there: the group restarts no later than it was.
    let mut bytes = pristine.clone();
    bytes[pristine.len() / 2] ^= 0x5a;
    std::fs::write(&db, &bytes).unwrap();
    if case.open().is_err() {
        case.repair();
        assert_eq!(case.inspect().health(), Health::Clean);
        let store = case.open().unwrap();
        let committed = store
            .describe_group("g")
            .map(|g| g.partitions.first().map_or(0, |p| p.committed_offset))
            .unwrap_or(0);
        assert!(committed <= 30);
    }
}

#[test]
fn case9_repair_leaves_verify_clean_a_deleted_offsets_store_is_reported_and_restored_tails_say_so()
{
    // A deleted offsets store: refused, reported, repaired (groups restart from the start).
    let case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    produce(&store, "t", 0, &hundred_byte_records(20, "r"));
    let consumer = store.consumer("g", "t", ConsumerConfig::default()).unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    consumer.ack(&batch).unwrap();
    drop(consumer);
    store.close().unwrap();
    drop(store);
    std::fs::remove_dir_all(case.root().join("offsets")).unwrap();
    let error = case.open().unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
    let inspection = case.inspect();
    assert!(inspection.refuses_open());
    case.repair();
    assert_eq!(
        case.inspect().health(),
        Health::Clean,
        "verify is clean after repair"
    );
    let store = case.open().unwrap();
    assert!(store.describe_group("g").is_err(), "the group starts over");
    store.close().unwrap();
    drop(store);

    // A torn tail the journal writes back is reported as restored, not as never acknowledged.
    let mut case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    for round in 0..5 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(3, &format!("r{round}")),
        );
    }
    // A power cut: the journaled frames' segment bytes were never fsynced.
    let image = case.sim.power_cut(CrashMode::DropUnsynced);
    let offsets = case.bench.offsets_files();
    drop(store);
    case.bench.restore(&Image {
        sim: image.clone(),
        offsets,
        oracle: Oracle::default(),
    });
    case.sim = image;
    let store = case.open().unwrap();
    let report = store.recovery_report();
    let torn = report.partitions[0].report.torn_tail.clone();
    if let Some(torn) = torn.filter(|t| !t.zeros_only) {
        assert!(torn.restored_to.is_some(), "{torn:?}");
    }
    assert_eq!(report.journal.restored.iter().map(|r| r.2).sum::<u64>(), 15);
    assert_eq!(read_back(&store, "t", 0).events.len(), 15);
}

/// Review finding F5: the journal holds the only copy (a power cut dropped the segments'
/// unsynced bytes) and one of its blocks is damaged: repair writes back every other block,
/// marks the damaged one's offsets lost, and converges to a clean directory.
#[test]
fn repair_converges_when_a_damaged_journal_block_held_the_only_copy() {
    let mut case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    for round in 0..6 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(3, &format!("r{round}")),
        );
    }
    let image = case.sim.power_cut(CrashMode::DropUnsynced);
    let offsets = case.bench.offsets_files();
    drop(store);
    case.bench.restore(&Image {
        sim: image.clone(),
        offsets,
        oracle: Oracle::default(),
    });
    case.sim = image;
    // Damage the third block (each append was its own group commit here).
    let journal = sim_files(&case.sim, &case.root().join("journal"));
    let (path, bytes) = journal.iter().next().expect("a journal file");
    let block_len = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize + 8;
    case.flip(path, 32 + 2 * block_len + 30);
    assert!(
        case.open().is_err(),
        "a damaged journal block refuses the open"
    );
    let outcome = case.repair();
    assert_eq!(outcome.after, Health::Clean, "{outcome:#?}");
    assert_eq!(outcome.recovery.journal.lost.len(), 1, "{outcome:#?}");
    let store = case.open().unwrap();
    let read = read_back(&store, "t", 0);
    assert_eq!(read.events.len(), 15);
    assert_eq!(read.lost, vec![6..9]);
    assert_eq!(produce(&store, "t", 0, &[Record::new("next")]), 18);
}

/// Review finding F1: a group joining a damaged partition must not move its committed offset
/// back to where reads stop (that offset is the evidence of what was acknowledged).
#[test]
fn a_group_joining_a_damaged_partition_keeps_its_committed_offset() {
    let case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    for round in 0..4 {
        produce(
            &store,
            "t",
            0,
            &hundred_byte_records(10, &format!("r{round}")),
        );
    }
    let consumer = store
        .consumer("g", "t", ConsumerConfig::default().batch_size(30))
        .unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    consumer.ack(&batch).unwrap();
    drop(consumer);
    store.close().unwrap();
    drop(store);
    // Damage the first frame: reads stop at offset 0; the group had committed 30.
    let segment = case.segments("t", 0).remove(0);
    case.flip(&segment, FIRST_FRAME + 100);
    let store = case.open().unwrap();
    assert_eq!(store.damaged_partitions().len(), 1);
    let consumer = store
        .consumer("g", "t", ConsumerConfig::default().batch_size(30))
        .unwrap();
    assert!(consumer.next_batch(Duration::from_millis(50)).is_err());
    drop(consumer);
    let committed = store.describe_group("g").unwrap().partitions[0].committed_offset;
    assert_eq!(committed, 30, "the committed offset was moved back");
}

/// Review finding F3: a topic whose `topic.json` is missing but whose partitions hold events is
/// damage (the open refuses, changing nothing), not an interrupted creation to remove.
#[test]
fn a_missing_topic_json_with_events_is_damage_not_an_interrupted_creation() {
    let case = Case::new();
    let store = case.open().unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    produce(&store, "t", 0, &hundred_byte_records(5, "r"));
    store.close().unwrap();
    drop(store);
    let meta = case.root().join("topics/t/topic.json");
    case.sim.remove_file(&meta).unwrap();
    let before = sim_files(&case.sim, case.root());
    assert!(case.open().is_err());
    assert_eq!(
        sim_files(&case.sim, case.root()),
        before,
        "the topic was removed"
    );
    let inspection = case.inspect();
    assert!(inspection.refuses_open());
    assert_eq!(inspection.health(), Health::Damaged);
}
