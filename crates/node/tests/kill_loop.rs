//! Kill -9 loop: the real `weir serve` process on one data directory, killed with SIGKILL at a
//! uniformly random moment of each cycle and restarted, with producers and consumers driven
//! through weir-client (see `common/mod.rs` for the records and the oracle).
//!
//! Each cycle spawns the node and draws the kill moment uniformly in
//! `[0, WEIR_KILL_WINDOW_MS]` (default 500 ms) from the spawn, so some kills land while the
//! store is still opening and recovering. Until the kill, the cycle first checks what the
//! earlier cycles left (reads every partition from where the last check stopped, and every
//! group's committed offsets), then runs 4 producers (batches of 1-8 events to random
//! partitions of two topics, one of them rolling a segment every 16 KiB) and one consumer per
//! group (acks committed before they return). Every 50th cycle, and at the end, a node that is
//! not killed until the check is done re-reads everything from offset 0.
//!
//! `WEIR_KILL_CYCLES=100000` runs the long mode (default 300), on a fresh data directory every
//! `WEIR_KILL_CYCLES_PER_DIR` cycles (default 500); `WEIR_KILL_SEED=S` replays the kill moments
//! and workload choices of a run (the timing of the processes still varies).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{GroupSpec, Id, Node, Oracle, TopicSpec};
use weir_client::{Partitioning, TopicSettings};

const PRODUCERS: u32 = 4;
const FULL_CHECK_EVERY: u64 = 50;
const GROUPS: [&str; 2] = ["g-orders", "g-rolls"];

#[derive(Debug, Default)]
struct Figures {
    kills_before_recovered: AtomicU64,
    kills_before_serving: AtomicU64,
    cycles_checked: AtomicU64,
    events_attempted: AtomicU64,
    torn_tails: AtomicU64,
    full_checks: AtomicU64,
}

struct Run {
    port: u16,
    data_dir: std::path::PathBuf,
    log_path: std::path::PathBuf,
    oracle: Oracle,
    topics: Vec<TopicSpec>,
    figures: Figures,
    seed: u64,
}

#[test]
fn kill_loop() {
    let cycles = common::env_number("WEIR_KILL_CYCLES", 300);
    let window_ms = common::env_number("WEIR_KILL_WINDOW_MS", 500);
    // Data only grows (no retention, so that every acknowledged event stays checkable), and
    // with it each start's recovery and each full check: the long mode starts a fresh data
    // directory every this many cycles.
    let per_directory = common::env_number("WEIR_KILL_CYCLES_PER_DIR", 500).max(1);
    let seed = common::seed("WEIR_KILL_SEED");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut done = 0;
    let mut directory = 0;
    while done < cycles {
        let these = per_directory.min(cycles - done);
        runtime.block_on(kill_loop_async(
            these,
            window_ms,
            seed.wrapping_add(directory),
        ));
        done += these;
        directory += 1;
    }
    if directory > 1 {
        println!("kill loop: {cycles} cycles over {directory} data directories passed");
    }
}

/// `cycles` cycles on one fresh data directory, then the final full check.
async fn kill_loop_async(cycles: u64, window_ms: u64, seed: u64) {
    let started = Instant::now();
    // Kept when the test fails, for a post-mortem: the data directory, the last node's log and
    // the offsets directory as the last cycle's node found it.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    println!("data directory {}", dir.display());
    let topics = vec![
        TopicSpec {
            name: "orders".into(),
            partitions: 3,
        },
        TopicSpec {
            name: "rolls".into(),
            partitions: 2,
        },
    ];
    let groups = GROUPS
        .iter()
        .enumerate()
        .map(|(topic, name)| GroupSpec {
            name: (*name).into(),
            topic: topic as u8,
        })
        .collect();
    let run = Arc::new(Run {
        port: common::pick_port(),
        data_dir: dir.join("data"),
        log_path: dir.join("node.log"),
        oracle: Oracle::new(topics.clone(), groups),
        topics,
        figures: Figures::default(),
        seed,
    });
    create_topics(&run).await;

    let mut rng = fastrand::Rng::with_seed(seed);
    for cycle in 1..=cycles {
        let kill_after = Duration::from_micros(rng.u64(0..=window_ms * 1000));
        one_cycle(&run, cycle, kill_after, rng.u64(..)).await;
        if cycle % FULL_CHECK_EVERY == 0 || cycle == cycles {
            full_check(&run, cycle).await;
            println!(
                "  {cycle} cycles, {:.1} s: full check passed",
                common::secs(started)
            );
        }
    }

    let f = &run.figures;
    let counts = run.oracle.counts();
    let (present, acked_present) = run.oracle.presence();
    println!(
        "kill loop: {cycles} kill -9 cycles (+{} full checks) on one data directory in {:.1} s, \
         seed {seed}, window {window_ms} ms",
        f.full_checks.load(Ordering::Relaxed),
        common::secs(started),
    );
    println!(
        "  kills before recovery finished: {}; after recovery, before serving: {}; cycles \
         whose check of the earlier cycles completed: {}",
        f.kills_before_recovered.load(Ordering::Relaxed),
        f.kills_before_serving.load(Ordering::Relaxed),
        f.cycles_checked.load(Ordering::Relaxed),
    );
    println!(
        "  appends acknowledged: {} ({} events, of {} sent); events present at the end: \
         {present}, of which unacknowledged but present: {}",
        counts.appends_acked,
        counts.events_acked,
        f.events_attempted.load(Ordering::Relaxed),
        present - acked_present,
    );
    println!(
        "  deliveries: {} events; acks returned (durable commits): {}; group checks: {}; \
         events read back by the checks: {}; torn tails recovery reported: {}",
        counts.events_delivered,
        counts.acks_returned,
        counts.group_checks,
        counts.events_scanned,
        f.torn_tails.load(Ordering::Relaxed),
    );
    assert!(counts.events_acked > 0, "nothing was ever acknowledged");
    assert!(counts.acks_returned > 0, "no ack ever returned");
    common::assert_no_violations(&run.oracle, "at the end");
    std::fs::remove_dir_all(&dir).expect("remove the data directory");
}

async fn create_topics(run: &Arc<Run>) {
    let node = Node::spawn(&run.data_dir, run.port, &run.log_path);
    let client = connect_or_fail(run, "setup").await;
    for (t, spec) in run.topics.iter().enumerate() {
        let mut settings = TopicSettings::default();
        if t == 1 {
            settings.segment_bytes_max = Some(16 << 10);
        }
        client
            .create_topic(&spec.name, spec.partitions, settings)
            .await
            .expect("create a topic");
    }
    drop(client);
    node.kill().await.expect("the setup node");
}

/// A client of a node that is not killed until it is done. A slow start is no failure (a
/// loaded machine can stall a debug build for a long time), a node that never serves is.
async fn connect_or_fail(run: &Run, name: &str) -> weir_client::Client {
    let deadline = Instant::now() + Duration::from_secs(300);
    match common::connect(run.port, name, || Instant::now() > deadline).await {
        Some(client) => client,
        None => panic!(
            "the node did not serve within 300 s; its log:\n{}",
            std::fs::read_to_string(&run.log_path).unwrap_or_default()
        ),
    }
}

async fn one_cycle(run: &Arc<Run>, cycle: u64, kill_after: Duration, seed: u64) {
    common::copy_dir(
        &run.data_dir.join("offsets"),
        &run.data_dir.with_file_name("offsets-before-last-start"),
    );
    let node = Node::spawn(&run.data_dir, run.port, &run.log_path);
    let killed = Arc::new(AtomicBool::new(false));
    let driver = tokio::spawn(drive(run.clone(), cycle, killed.clone(), seed));
    tokio::time::sleep(kill_after).await;
    let log = match node.kill().await {
        Ok(log) => log,
        Err(why) => panic!("cycle {cycle} (seed {}): {why}", run.seed),
    };
    killed.store(true, Ordering::SeqCst);
    if tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .is_err()
    {
        panic!(
            "cycle {cycle} (seed {}): clients still busy 30 s after the kill",
            run.seed
        );
    }
    let f = &run.figures;
    f.torn_tails.fetch_add(log.torn_tails, Ordering::Relaxed);
    if !log.recovered {
        f.kills_before_recovered.fetch_add(1, Ordering::Relaxed);
    } else if !log.serving {
        f.kills_before_serving.fetch_add(1, Ordering::Relaxed);
    }
    common::assert_no_violations(
        &run.oracle,
        &format!(
            "cycle {cycle} (seed {}, killed after {kill_after:?})",
            run.seed
        ),
    );
}

/// Everything a cycle does until its node dies: check what earlier cycles left, then load.
async fn drive(run: Arc<Run>, cycle: u64, killed: Arc<AtomicBool>, seed: u64) {
    let give_up = || killed.load(Ordering::SeqCst);
    let Some(client) = common::connect(run.port, "checker", give_up).await else {
        return;
    };
    if run.oracle.scan(&client).await.is_err() || run.oracle.check_groups(&client).await.is_err() {
        return;
    }
    run.figures.cycles_checked.fetch_add(1, Ordering::Relaxed);
    let mut tasks = Vec::new();
    for i in 0..PRODUCERS {
        let producer = u32::try_from(cycle).expect("cycles fit in u32") * PRODUCERS + i;
        tasks.push(tokio::spawn(produce(
            run.clone(),
            killed.clone(),
            cycle as u32,
            producer,
            seed ^ u64::from(i),
        )));
    }
    for group in 0..GROUPS.len() {
        tasks.push(tokio::spawn(consume(run.clone(), killed.clone(), group)));
    }
    for task in tasks {
        task.await.expect("a client task panicked");
    }
}

async fn produce(run: Arc<Run>, killed: Arc<AtomicBool>, epoch: u32, producer: u32, seed: u64) {
    let name = format!("producer-{producer}");
    let Some(client) = common::connect(run.port, &name, || killed.load(Ordering::SeqCst)).await
    else {
        return;
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seq = 0u64;
    while !killed.load(Ordering::SeqCst) {
        let topic = rng.u8(0..run.topics.len() as u8);
        let spec = &run.topics[topic as usize];
        let partition = rng.u32(0..spec.partitions);
        let events = rng.u64(1..=8);
        let ids = Id {
            topic,
            partition,
            epoch,
            producer,
            seq,
        }
        .run(events);
        seq += events;
        run.figures
            .events_attempted
            .fetch_add(events, Ordering::Relaxed);
        let records = ids.iter().map(|&id| common::record(id)).collect();
        match client
            .append(&spec.name, records, Partitioning::Partition(partition))
            .await
        {
            Ok(positions) => run.oracle.acked(&ids, &positions),
            Err(error) if common::is_disconnect(&error) => return,
            Err(error) => {
                run.oracle
                    .violation(format!("{name}: an append failed: {error}"));
                return;
            }
        }
    }
}

async fn consume(run: Arc<Run>, killed: Arc<AtomicBool>, group: usize) {
    let name = GROUPS[group];
    let Some(client) = common::connect(run.port, name, || killed.load(Ordering::SeqCst)).await
    else {
        return;
    };
    // Group i consumes topic i.
    let topic = &run.topics[group].name;
    let consumer = client.consumer(name, topic, common::consumer_settings(8));
    while !killed.load(Ordering::SeqCst) {
        let batch = match consumer.next_batch(Duration::from_millis(50)).await {
            Ok(Some(batch)) => batch,
            Ok(None) => continue,
            Err(error) if common::is_disconnect(&error) => return,
            Err(error) => {
                run.oracle
                    .violation(format!("group {name}: a fetch failed: {error}"));
                return;
            }
        };
        run.oracle.delivered(group, &batch);
        match consumer.ack(&batch).await {
            Ok(()) => run.oracle.ack_returned(group, &batch),
            Err(error) if common::is_disconnect(&error) => return,
            Err(error) => {
                run.oracle
                    .violation(format!("group {name}: an ack failed: {error}"));
                return;
            }
        }
    }
}

/// A node that lives until everything is re-read from offset 0 and every group is checked.
async fn full_check(run: &Arc<Run>, cycle: u64) {
    let node = Node::spawn(&run.data_dir, run.port, &run.log_path);
    let client = connect_or_fail(run, "full-check").await;
    run.oracle.restart_scan();
    run.oracle
        .scan(&client)
        .await
        .expect("the full check's reads");
    run.oracle
        .check_groups(&client)
        .await
        .expect("the full check's group checks");
    drop(client);
    let log = match node.kill().await {
        Ok(log) => log,
        Err(why) => panic!("full check after cycle {cycle} (seed {}): {why}", run.seed),
    };
    run.figures
        .torn_tails
        .fetch_add(log.torn_tails, Ordering::Relaxed);
    run.figures.full_checks.fetch_add(1, Ordering::Relaxed);
    common::assert_no_violations(&run.oracle, &format!("full check after cycle {cycle}"));
}
