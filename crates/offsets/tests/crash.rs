//! Crash test: a child process commits offsets in a loop and is killed with SIGKILL at a random
//! moment (sometimes while it is still opening the store); the parent reopens the store after
//! every kill and checks that
//! - every commit the child saw return (and printed afterwards) is there: the committed offset
//!   is at least the last printed one for each partition;
//! - no value is corrupt (every group describes cleanly);
//! - no offset went backwards since the previous cycle;
//! - commits made with `commit_with` kept their user-tree write: for group `gw`, the mirrored
//!   value equals the committed offset exactly (both or neither survived);
//! - the store opens against its witness: the child seals now and then (and is killed at any
//!   point of a seal too), and a witness never names more than the store holds.
//!
//! This is `harness = false`: the same binary runs as the parent, or as the child when
//! `WEIR_OFFSETS_CRASH_CHILD` names the directory. A kill tests process crashes: the kernel
//! keeps whatever the child wrote, synced or not, so this does not test power cuts.
//!
//! `WEIR_OFFSETS_CRASH_CYCLES` (default 200) and `WEIR_OFFSETS_CRASH_SEED` (default: from the
//! time; printed) make a run longer or repeat one.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_offsets::sled::transaction::ConflictableTransactionError;
use weir_offsets::{Commit, CommitExpectation, Config, OffsetStore};

const CHILD_ENV: &str = "WEIR_OFFSETS_CRASH_CHILD";
const CYCLES_ENV: &str = "WEIR_OFFSETS_CRASH_CYCLES";
const SEED_ENV: &str = "WEIR_OFFSETS_CRASH_SEED";
const CYCLES_DEFAULT: u32 = 200;

/// Groups committed with `commit`/`commit_batch`; `WITH_GROUP` commits with `commit_with`.
const PLAIN_GROUPS: [&str; 2] = ["g0", "g1"];
const WITH_GROUP: &str = "gw";
const TOPIC: &str = "t";
const PARTITIONS: u32 = 4;
const MIRROR_TREE: &str = "mirror";

/// The longest a child lives before the kill; uniform from 0, so some kills land during open.
const LIFETIME_MS_MAX: u64 = 40;

type Key = (String, u32);

fn main() {
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok());
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(Path::new(&dir), seed.unwrap_or(0)),
        None => parent(seed),
    }
}

/// The store in `root/offsets`, its witness beside it.
fn config(root: &Path) -> Config {
    Config::new(root.join("offsets")).with_witness_path(root.join("offsets.witness"))
}

fn mirror_key(group: &str, partition: u32) -> String {
    format!("{group}/{TOPIC}/{partition}")
}

/// Commits forever, printing each commit after it returned.
fn child(dir: &Path, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let store = OffsetStore::open(&config(dir)).unwrap_or_else(|e| panic!("child open: {e}"));
    let mirror = store
        .user_tree(MIRROR_TREE)
        .unwrap_or_else(|e| panic!("child user tree: {e}"));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let current = |group: &str, partition| {
        let committed = store
            .get(group, TOPIC, partition)
            .unwrap_or_else(|e| panic!("child get: {e}"));
        committed.map(|c| c.offset)
    };
    loop {
        if rng.u8(0..4) == 0 {
            store.seal().unwrap_or_else(|e| panic!("child seal: {e}"));
        }
        match rng.u8(0..3) {
            0 => {
                let group = PLAIN_GROUPS[rng.usize(0..PLAIN_GROUPS.len())];
                let partition = rng.u32(0..PARTITIONS);
                let before = current(group, partition);
                let offset = before.unwrap_or(0) + rng.u64(0..5);
                let commit = Commit::new(TOPIC, partition, offset, before.into());
                store
                    .commit(group, commit)
                    .unwrap_or_else(|e| panic!("child commit: {e}"));
                print_commit(&mut out, group, partition, offset);
            }
            1 => {
                let group = PLAIN_GROUPS[rng.usize(0..PLAIN_GROUPS.len())];
                let mut commits: Vec<(u32, u64, CommitExpectation)> = Vec::new();
                for partition in 0..PARTITIONS {
                    if rng.bool() {
                        let before = current(group, partition);
                        commits.push((
                            partition,
                            before.unwrap_or(0) + rng.u64(1..5),
                            before.into(),
                        ));
                    }
                }
                let batch: Vec<Commit<'_>> = commits
                    .iter()
                    .map(|&(p, offset, expected)| Commit::new(TOPIC, p, offset, expected))
                    .collect();
                store
                    .commit_batch(group, &batch)
                    .unwrap_or_else(|e| panic!("child batch: {e}"));
                for &(partition, offset, _) in &commits {
                    print_commit(&mut out, group, partition, offset);
                }
            }
            _ => {
                let partition = rng.u32(0..PARTITIONS);
                let before = current(WITH_GROUP, partition);
                let offset = before.unwrap_or(0) + rng.u64(1..5);
                let commit = Commit::new(TOPIC, partition, offset, before.into());
                let key = mirror_key(WITH_GROUP, partition);
                let outcome = store.commit_with(WITH_GROUP, &[commit], &mirror, |mirror| {
                    mirror.insert(key.as_bytes(), &offset.to_le_bytes())?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                });
                match outcome {
                    Ok(Ok(())) => print_commit(&mut out, WITH_GROUP, partition, offset),
                    Ok(Err(())) => panic!("child commit_with: aborted"),
                    Err(e) => panic!("child commit_with: {e}"),
                }
            }
        }
    }
}

fn print_commit(out: &mut impl Write, group: &str, partition: u32, offset: u64) {
    // A failed print means the parent is gone: stop.
    if writeln!(out, "{group} {partition} {offset}")
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn parent(seed: Option<u64>) {
    let cycles = std::env::var(CYCLES_ENV)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let seed = seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("crash: {cycles} cycles, seed {seed} (repeat with {SEED_ENV}={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let started = Instant::now();

    let mut printed: BTreeMap<Key, u64> = BTreeMap::new();
    let mut seen: BTreeMap<Key, u64> = BTreeMap::new();
    let mut acknowledged = 0usize;
    let mut cycles_with_commits = 0u32;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, rng.u64(..).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the child: {e}"));
        std::thread::sleep(Duration::from_millis(rng.u64(0..=LIFETIME_MS_MAX)));
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!(
                "cycle {cycle}: the child exited by itself ({status}) before the kill:\n{stderr}"
            );
        }
        child.kill().unwrap_or_else(|e| panic!("kill: {e}")); // SIGKILL on Unix
        let _status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        let mut output = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut output)
                .unwrap_or_else(|e| panic!("read the child's output: {e}"));
        }

        // Only whole lines: a line cut by the kill was never completely printed.
        let whole = &output[..output.rfind('\n').map_or(0, |end| end + 1)];
        let mut lines = 0;
        for line in whole.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [group, partition, offset] = fields[..] else {
                panic!("cycle {cycle}: bad line {line:?}")
            };
            let partition: u32 = partition
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let offset: u64 = offset.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let last = printed.entry((group.to_string(), partition)).or_insert(0);
            *last = (*last).max(offset);
            lines += 1;
        }
        acknowledged += lines;
        cycles_with_commits += u32::from(lines > 0);

        check(dir.path(), cycle, &printed, &mut seen);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "crash: {cycles} kills in {elapsed:.1?}; {acknowledged} acknowledged commits, all found; \
         {} cycles killed before any commit returned",
        cycles - cycles_with_commits
    );
    assert!(
        acknowledged > 0 && cycles_with_commits >= cycles / 4,
        "too few cycles got as far as a commit ({cycles_with_commits} of {cycles}): the test checked little"
    );
}

/// Reopens the store and checks it against what the children printed and what was seen before.
fn check(dir: &Path, cycle: u32, printed: &BTreeMap<Key, u64>, seen: &mut BTreeMap<Key, u64>) {
    let store =
        OffsetStore::open(&config(dir)).unwrap_or_else(|e| panic!("cycle {cycle}: reopen: {e}"));
    let mirror = store
        .user_tree(MIRROR_TREE)
        .unwrap_or_else(|e| panic!("cycle {cycle}: user tree: {e}"));
    let mut now: BTreeMap<Key, u64> = BTreeMap::new();
    for group in store
        .list_groups()
        .unwrap_or_else(|e| panic!("cycle {cycle}: list: {e}"))
    {
        let description = store
            .describe_group(&group)
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        for partition in description.partitions {
            assert_eq!(partition.topic, TOPIC);
            now.insert(
                (group.clone(), partition.partition),
                partition.committed.offset,
            );
        }
    }
    for (key, &last_printed) in printed {
        let found = now.get(key).copied();
        assert!(
            found.is_some_and(|offset| offset >= last_printed),
            "cycle {cycle}: {key:?}: the child printed a commit of {last_printed}, the store has {found:?}"
        );
    }
    for (key, &before) in seen.iter() {
        let found = now.get(key).copied();
        assert!(
            found.is_some_and(|offset| offset >= before),
            "cycle {cycle}: {key:?} went back from {before} to {found:?}"
        );
    }
    for partition in 0..PARTITIONS {
        let committed = now.get(&(WITH_GROUP.to_string(), partition)).copied();
        let key = mirror_key(WITH_GROUP, partition);
        let mirrored = mirror
            .get(key.as_bytes())
            .unwrap_or_else(|e| panic!("cycle {cycle}: mirror: {e}"));
        let mirrored = mirrored.map(|bytes| {
            let bytes: [u8; 8] = bytes
                .as_ref()
                .try_into()
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            u64::from_le_bytes(bytes)
        });
        assert_eq!(
            mirrored, committed,
            "cycle {cycle}: {key}: user write and offset diverged"
        );
    }
    *seen = now;
}
