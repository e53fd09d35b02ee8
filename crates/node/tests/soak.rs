//! Soak: 64 producers and 64 consumers against the real `weir serve` process for 60 s
//! (`WEIR_SOAK_SECS=600` for the long mode), the node SIGKILLed and restarted every 10 s
//! (`WEIR_SOAK_KILL_EVERY_SECS`); clients reconnect and carry on. The oracle of
//! `common/mod.rs` holds throughout: consumers check every event delivered to them, after each
//! restart a checker reads what is new in every partition and checks every group's committed
//! offsets, and at the end a fresh node re-reads everything from offset 0.
//!
//! Every producer and every consumer has a connection of its own, as 128 separate client
//! processes would: each restart is then a reconnection storm of 128 handshakes, and one slow
//! long poll cannot delay another task's appends (pipelining on a shared connection is covered
//! by the loopback tests).
//!
//! Reported: events acknowledged, throughput, ack latency of appends (send to ack, on an
//! established connection; an append cut by a kill fails and is not counted, so outages are
//! excluded and reported separately as the time from each kill to the first ack after it), and
//! the node's peak RSS (VmHWM read just before each kill).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{GroupSpec, Id, Node, Oracle, TopicSpec};
use weir_client::{Client, Partitioning, TopicSettings};

const PRODUCERS: u32 = 64;
const GROUPS: usize = 4;
const MEMBERS_PER_GROUP: usize = 16;
const TOPICS: u8 = 2;
const PARTITIONS: u32 = 8;

struct Soak {
    port: u16,
    oracle: Oracle,
    topics: Vec<TopicSpec>,
    groups: Vec<GroupSpec>,
    /// The node lifetime now serving (or starting); 1 for the first node.
    generation: AtomicU32,
    stop: AtomicBool,
    started: Instant,
    /// Per generation: when the node before it was killed, and the first ack it gave.
    kills_ns: Mutex<Vec<u64>>,
    first_ack_ns: Mutex<Vec<Option<u64>>>,
    events_attempted: AtomicU64,
}

impl Soak {
    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

#[test]
fn soak() {
    let secs = common::env_number("WEIR_SOAK_SECS", 60);
    let kill_every = common::env_number("WEIR_SOAK_KILL_EVERY_SECS", 10);
    let seed = common::seed("WEIR_SOAK_SEED");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(soak_async(secs, kill_every, seed));
}

async fn soak_async(secs: u64, kill_every: u64, seed: u64) {
    // Kept when the test fails, for a post-mortem.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    println!("data directory {}", dir.display());
    let data_dir = dir.join("data");
    let log_path = dir.join("node.log");
    let topics: Vec<TopicSpec> = (0..TOPICS)
        .map(|t| TopicSpec {
            name: format!("soak-{t}"),
            partitions: PARTITIONS,
        })
        .collect();
    let groups: Vec<GroupSpec> = (0..GROUPS)
        .map(|g| GroupSpec {
            name: format!("group-{g}"),
            topic: (g % TOPICS as usize) as u8,
        })
        .collect();
    let soak = Arc::new(Soak {
        port: common::pick_port(),
        oracle: Oracle::new(topics.clone(), groups.clone()),
        topics,
        groups,
        generation: AtomicU32::new(1),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        kills_ns: Mutex::new(vec![0, 0]),
        first_ack_ns: Mutex::new(vec![None, None]),
        events_attempted: AtomicU64::new(0),
    });

    let mut node = Node::spawn(&data_dir, soak.port, &log_path);
    {
        let setup = connect_or_fail(&soak, "setup").await;
        for (t, spec) in soak.topics.iter().enumerate() {
            let mut settings = TopicSettings::default();
            if t == 1 {
                settings.segment_bytes_max = Some(1 << 20);
            }
            setup
                .create_topic(&spec.name, spec.partitions, settings)
                .await
                .expect("create a topic");
        }
    }

    let mut workers = Vec::new();
    for producer in 0..PRODUCERS {
        workers.push(tokio::spawn(produce(
            soak.clone(),
            producer,
            seed ^ u64::from(producer),
        )));
    }
    for group in 0..GROUPS {
        for member in 0..MEMBERS_PER_GROUP {
            workers.push(tokio::spawn(consume(soak.clone(), group, member)));
        }
    }

    let load_started = Instant::now();
    let deadline = load_started + Duration::from_secs(secs);
    let mut peak_rss_kib = 0u64;
    let mut torn_tails = 0u64;
    let mut kills = 0u64;
    let mut checker = tokio::spawn(check(soak.clone(), 1));
    loop {
        let next_kill = Instant::now() + Duration::from_secs(kill_every);
        if next_kill >= deadline {
            tokio::time::sleep_until(deadline.into()).await;
            break;
        }
        tokio::time::sleep_until(next_kill.into()).await;
        peak_rss_kib = peak_rss_kib.max(node.peak_rss_kib().unwrap_or(0));
        let log = node.kill().await.unwrap_or_else(|why| panic!("{why}"));
        torn_tails += log.torn_tails;
        kills += 1;
        let generation = soak.generation.load(Ordering::SeqCst) + 1;
        soak.kills_ns.lock().expect("lock").push(soak.now_ns());
        soak.first_ack_ns.lock().expect("lock").push(None);
        soak.generation.store(generation, Ordering::SeqCst);
        node = Node::spawn(&data_dir, soak.port, &log_path);
        let _ = checker.await;
        checker = tokio::spawn(check(soak.clone(), generation));
    }
    let load_secs = load_started.elapsed().as_secs_f64();

    soak.stop.store(true, Ordering::SeqCst);
    let mut latencies_us: Vec<u32> = Vec::new();
    let mut events_acked = 0u64;
    for worker in workers {
        let (latencies, events) = tokio::time::timeout(Duration::from_secs(60), worker)
            .await
            .expect("a client task still busy 60 s after the stop")
            .expect("a client task panicked");
        latencies_us.extend(latencies);
        events_acked += events;
    }
    let _ = checker.await;
    peak_rss_kib = peak_rss_kib.max(node.peak_rss_kib().unwrap_or(0));
    torn_tails += node
        .kill()
        .await
        .unwrap_or_else(|why| panic!("{why}"))
        .torn_tails;
    common::assert_no_violations(&soak.oracle, "during the soak");

    // The final check: a fresh node, everything re-read from offset 0.
    let check_started = Instant::now();
    let node = Node::spawn(&data_dir, soak.port, &log_path);
    let client = connect_or_fail(&soak, "final-check").await;
    soak.oracle.restart_scan();
    soak.oracle.scan(&client).await.expect("the final reads");
    soak.oracle
        .check_groups(&client)
        .await
        .expect("the final group checks");
    drop(client);
    torn_tails += node
        .kill()
        .await
        .unwrap_or_else(|why| panic!("{why}"))
        .torn_tails;
    let check_secs = check_started.elapsed().as_secs_f64();

    latencies_us.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let at = ((latencies_us.len() as f64 * q) as usize).min(latencies_us.len() - 1);
        f64::from(latencies_us[at]) / 1000.0
    };
    let outages_ms: Vec<f64> = {
        let kills_ns = soak.kills_ns.lock().expect("lock");
        let first_ack_ns = soak.first_ack_ns.lock().expect("lock");
        (2..kills_ns.len())
            .filter_map(|g| first_ack_ns[g].map(|ack| (ack - kills_ns[g]) as f64 / 1e6))
            .collect()
    };
    let outage_total_s: f64 = outages_ms.iter().sum::<f64>() / 1000.0;
    let counts = soak.oracle.counts();
    let (present, acked_present) = soak.oracle.presence();
    println!(
        "soak: {load_secs:.1} s of load, {PRODUCERS} producers and {} consumers ({GROUPS} \
         groups of {MEMBERS_PER_GROUP}) on {TOPICS} topics of {PARTITIONS} partitions, one \
         connection each; {kills} kill -9 restarts (every {kill_every} s); seed {seed}",
        GROUPS * MEMBERS_PER_GROUP,
    );
    println!(
        "  acknowledged: {events_acked} events in {} appends (of {} events sent); present \
         at the end: {present}, of which unacknowledged but present: {}",
        latencies_us.len(),
        soak.events_attempted.load(Ordering::Relaxed),
        present - acked_present,
    );
    println!(
        "  throughput: {:.0} events/s over the whole run, {:.0} events/s excluding outages",
        events_acked as f64 / load_secs,
        events_acked as f64 / (load_secs - outage_total_s).max(1e-3),
    );
    println!(
        "  ack latency (appends of 1-4 events, outages excluded): p50 {:.2} ms, p99 {:.2} ms, \
         p99.9 {:.2} ms, max {:.2} ms",
        quantile(0.50),
        quantile(0.99),
        quantile(0.999),
        quantile(1.0),
    );
    println!(
        "  outages (kill to the first ack after it): {} measured, mean {:.0} ms, max {:.0} ms",
        outages_ms.len(),
        outages_ms.iter().sum::<f64>() / outages_ms.len().max(1) as f64,
        outages_ms.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "  node peak RSS (VmHWM before each kill, max): {:.1} MiB",
        peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  deliveries: {} events; acks returned (durable commits): {}; group checks: {}; \
         events read back by the checks: {}; torn tails recovery reported: {torn_tails}; \
         final check {check_secs:.1} s",
        counts.events_delivered, counts.acks_returned, counts.group_checks, counts.events_scanned,
    );
    assert_eq!(counts.events_acked, events_acked);
    assert!(events_acked > 0, "nothing was acknowledged");
    assert!(counts.acks_returned > 0, "no ack ever returned");
    common::assert_no_violations(&soak.oracle, "at the end");
    std::fs::remove_dir_all(&dir).expect("remove the data directory");
}

/// A client of a node that is not killed until it is done. A slow start is no failure (a
/// loaded machine can stall a debug build for a long time), a node that never serves is.
async fn connect_or_fail(soak: &Soak, name: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(300);
    common::connect(soak.port, name, || Instant::now() > deadline)
        .await
        .expect("the node did not serve within 300 s")
}

/// A connection and the generation it serves, or `None` once the soak stops.
async fn session(soak: &Soak, client: Option<Client>, name: &str) -> Option<(Client, u32)> {
    let client = match client {
        None => common::connect(soak.port, name, || soak.stopped()).await?,
        Some(client) => loop {
            if soak.stopped() {
                return None;
            }
            match client.reconnect().await {
                Ok(()) => break client,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        },
    };
    // Read after the handshake: events sent on this connection land in this generation (if
    // the node was replaced since, the connection is dead and nothing lands).
    let generation = soak.generation.load(Ordering::SeqCst);
    Some((client, generation))
}

/// Appends until the soak stops; returns the ack latencies (µs) and the events acknowledged.
async fn produce(soak: Arc<Soak>, producer: u32, seed: u64) -> (Vec<u32>, u64) {
    let name = format!("producer-{producer}");
    let topic = (producer % u32::from(TOPICS)) as u8;
    let topic_name = soak.topics[topic as usize].name.clone();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut latencies = Vec::new();
    let mut acked = 0u64;
    let mut seq = 0u64;
    let mut client = None;
    while let Some((connected, epoch)) = session(&soak, client.take(), &name).await {
        loop {
            if soak.stopped() {
                return (latencies, acked);
            }
            let partition = rng.u32(0..PARTITIONS);
            let events = rng.u64(1..=4);
            let ids = Id {
                topic,
                partition,
                epoch,
                producer,
                seq,
            }
            .run(events);
            seq += events;
            soak.events_attempted.fetch_add(events, Ordering::Relaxed);
            let records = ids.iter().map(|&id| common::record(id)).collect();
            let sent = Instant::now();
            match connected
                .append(&topic_name, records, Partitioning::Partition(partition))
                .await
            {
                Ok(positions) => {
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    acked += events;
                    soak.oracle.acked(&ids, &positions);
                    let mut first = soak.first_ack_ns.lock().expect("lock");
                    if first[epoch as usize].is_none() {
                        first[epoch as usize] = Some(soak.now_ns());
                    }
                }
                Err(error) if common::is_disconnect(&error) => break,
                Err(error) => {
                    soak.oracle
                        .violation(format!("{name}: an append failed: {error}"));
                    return (latencies, acked);
                }
            }
        }
        client = Some(connected);
    }
    (latencies, acked)
}

/// Consumes as a member of `group` until the soak stops.
async fn consume(soak: Arc<Soak>, group: usize, member: usize) -> (Vec<u32>, u64) {
    let spec = &soak.groups[group];
    let name = format!("{}-member-{member}", spec.name);
    let topic_name = soak.topics[spec.topic as usize].name.clone();
    let mut client = None;
    while let Some((connected, _)) = session(&soak, client.take(), &name).await {
        let consumer = connected.consumer(&spec.name, &topic_name, common::consumer_settings(32));
        loop {
            if soak.stopped() {
                return (Vec::new(), 0);
            }
            let batch = match consumer.next_batch(Duration::from_millis(50)).await {
                Ok(Some(batch)) => batch,
                Ok(None) => continue,
                Err(error) if common::is_disconnect(&error) => break,
                Err(error) => {
                    soak.oracle
                        .violation(format!("{name}: a fetch failed: {error}"));
                    return (Vec::new(), 0);
                }
            };
            soak.oracle.delivered(group, &batch);
            match consumer.ack(&batch).await {
                Ok(()) => soak.oracle.ack_returned(group, &batch),
                Err(error) if common::is_disconnect(&error) => break,
                Err(error) => {
                    soak.oracle
                        .violation(format!("{name}: an ack failed: {error}"));
                    return (Vec::new(), 0);
                }
            }
        }
        client = Some(connected);
    }
    (Vec::new(), 0)
}

/// After a restart: reads what is new in every partition and checks the groups (while the
/// load runs; a kill cuts it short and the next one resumes the reads).
async fn check(soak: Arc<Soak>, generation: u32) {
    let gone = || soak.stopped() || soak.generation.load(Ordering::SeqCst) != generation;
    let Some(client) = common::connect(soak.port, "checker", gone).await else {
        return;
    };
    if soak.oracle.scan(&client).await.is_ok() {
        let _ = soak.oracle.check_groups(&client).await;
    }
}
