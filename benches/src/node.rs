//! The node suite (issue 6): a node started by the harness on loopback, driven through
//! weir-client, with the embedded store measured in the same run as the baseline. Client and
//! node share the machine's cores, as in the peers' figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_client::{
    Client, ClientConfig, ConsumerSettings, Partitioning as WirePartitioning, Record as WireRecord,
};
use weir_store::{ConsumerConfig, Partitioning, Record, Store, TopicConfig};

use crate::harness::{self, Figure, Options};

const PARTITIONS: u32 = 4;
const PRODUCERS: usize = 4;

/// Runs the node suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let seconds = Duration::from_secs(if options.quick { 2 } else { 6 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut figures = Vec::new();

    for (name, size, unit) in [
        ("node_produce_100B_batch1000", 100usize, "events/s"),
        ("node_produce_1KiB_batch1000", 1024, "MB/s"),
    ] {
        let dir = harness::scratch_dir(options);
        let embedded = embedded_produce(dir.path(), size, seconds);
        drop(dir);
        let dir = harness::scratch_dir(options);
        let remote = runtime.block_on(node_produce(dir.path(), size, seconds));
        drop(dir);
        let (value, baseline, target) = if unit == "MB/s" {
            (
                remote * size as f64 / 1e6,
                embedded * size as f64 / 1e6,
                ">= 700 MB/s",
            )
        } else {
            (remote, embedded, ">= 1,500,000 events/s and >= 0.5x")
        };
        figures.push(Figure::new(
            name,
            value,
            unit,
            "embedded store, same workload",
            baseline,
            target,
        ));
    }

    let events = if options.quick { 400_000 } else { 2_000_000 };
    let dir = harness::scratch_dir(options);
    let (remote, embedded) = runtime.block_on(consume(dir.path(), events));
    figures.push(Figure::new(
        "node_consume_ack_100B_batch1000",
        remote,
        "events/s",
        "embedded consumer, same events",
        embedded,
        ">= 3,000,000 events/s",
    ));

    let dir = harness::scratch_dir(options);
    let batches = if options.quick { 50 } else { 200 };
    let (p50, p99, embedded_p99) = runtime.block_on(produce_latency(dir.path(), batches));
    let mut figure = Figure::new(
        "node_produce_latency_1KiB_batch1000_p99",
        p99,
        "ms",
        "embedded append p99, same rate",
        embedded_p99,
        "reported",
    );
    figure.ratio = p99 / embedded_p99;
    figures.push(figure);
    figures.push(Figure::new(
        "node_produce_latency_1KiB_batch1000_p50",
        p50,
        "ms",
        "embedded append p99, same rate",
        embedded_p99,
        "reported",
    ));

    let dir = harness::scratch_dir(options);
    if let Some((rss, baseline)) = runtime.block_on(rss_64_connections(dir.path(), seconds)) {
        figures.push(Figure::new(
            "node_rss_64_connections",
            rss,
            "MiB",
            "idle node's RSS",
            baseline,
            "< 256 MiB",
        ));
    }
    figures
}

fn records(size: usize) -> Vec<Record> {
    (0..1000).map(|_| Record::new(vec![7u8; size])).collect()
}

fn wire_records(size: usize) -> Vec<WireRecord> {
    (0..1000)
        .map(|_| WireRecord::new(vec![7u8; size]))
        .collect()
}

/// Events/s of `PRODUCERS` threads appending 1000-event batches round-robin, embedded.
fn embedded_produce(dir: &std::path::Path, size: usize, duration: Duration) -> f64 {
    let store = Store::open(dir.join("store")).expect("store");
    store
        .create_topic("bench", TopicConfig::with_partitions(PARTITIONS))
        .expect("topic");
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (store, produced) = (store.clone(), produced.clone());
            std::thread::spawn(move || {
                let batch = records(size);
                while started.elapsed() < duration {
                    store
                        .append("bench", &batch, Partitioning::RoundRobin)
                        .expect("append");
                    produced.fetch_add(1000, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("producer");
    }
    let rate = produced.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    store.close().expect("close");
    rate
}

struct Node {
    address: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_node(dir: &std::path::Path) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let dir = dir.join("node");
    let store = tokio::task::spawn_blocking(move || Store::open(dir))
        .await
        .expect("join")
        .expect("store");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = weir_node::NodeConfig::default();
    config.admin_listen = None;
    let task = tokio::spawn(weir_node::run(listener, None, store, config, async move {
        let _ = stopped.await;
    }));
    Node {
        address,
        stop,
        task,
    }
}

async fn stop_node(node: Node) {
    let _ = node.stop.send(());
    node.task.await.expect("join").expect("node");
}

/// Events/s of `PRODUCERS` connections appending 1000-event batches round-robin, via a node.
async fn node_produce(dir: &std::path::Path, size: usize, duration: Duration) -> f64 {
    let node = start_node(dir).await;
    let admin = Client::connect(node.address, ClientConfig::default())
        .await
        .expect("connect");
    admin
        .create_topic("bench", PARTITIONS, Default::default())
        .await
        .expect("topic");
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PRODUCERS {
        let client = Client::connect(node.address, ClientConfig::default())
            .await
            .expect("connect");
        let produced = produced.clone();
        tasks.push(tokio::spawn(async move {
            // Built once and sent again and again, as the embedded run appends one batch
            // again and again (a clone shares the values).
            let batch = wire_records(size);
            while started.elapsed() < duration {
                client
                    .append("bench", batch.clone(), WirePartitioning::RoundRobin)
                    .await
                    .expect("append");
                produced.fetch_add(1000, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("producer");
    }
    let rate = produced.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop_node(node).await;
    rate
}

/// Events/s consumed with batch acks (1000 per batch) via a node, and embedded.
async fn consume(dir: &std::path::Path, events: u64) -> (f64, f64) {
    let node = start_node(dir).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .expect("connect");
    // Filling only: consumption is what is measured.
    let settings = weir_proto::TopicSettings {
        sync_policy: Some(weir_proto::SyncPolicy::NeverLossy),
        ..Default::default()
    };
    client
        .create_topic("consume", PARTITIONS, settings)
        .await
        .expect("topic");
    for _ in 0..events / 1000 {
        client
            .append("consume", wire_records(100), WirePartitioning::RoundRobin)
            .await
            .expect("fill");
    }
    let settings = ConsumerSettings {
        batch_size: 1000,
        max_wait_ms: 1,
        commit_policy: weir_proto::CommitPolicy::Interval {
            interval_ms: 100,
            acks_max: 10_000,
        },
        ..ConsumerSettings::default()
    };
    let consumed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let client = Client::connect(node.address, ClientConfig::default())
            .await
            .expect("connect");
        let consumed = consumed.clone();
        tasks.push(tokio::spawn(async move {
            let consumer = client.consumer("bench", "consume", settings);
            while consumed.load(Ordering::Relaxed) < events {
                if let Some(batch) = consumer
                    .next_batch(Duration::from_millis(100))
                    .await
                    .expect("fetch")
                {
                    consumed.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    consumer.ack(&batch).await.expect("ack");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("consumer");
    }
    let remote = consumed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop_node(node).await;

    // The same events consumed embedded (the node's data directory, reopened).
    let store = Store::open(dir.join("node")).expect("store");
    let mut config = ConsumerConfig::default();
    config.batch_size = 1000;
    config.max_wait_ms = 1;
    config.commit_policy = weir_store::CommitPolicy::Interval {
        interval_ms: 100,
        acks_max: 10_000,
    };
    let consumer = store
        .consumer("embedded", "consume", config)
        .expect("consumer");
    let started = Instant::now();
    let mut consumed = 0u64;
    while consumed < events {
        if let Some(batch) = consumer
            .next_batch(Duration::from_millis(100))
            .expect("fetch")
        {
            consumed += batch.events.len() as u64;
            consumer.ack(&batch).expect("ack");
        }
    }
    let embedded = consumed as f64 / started.elapsed().as_secs_f64();
    drop(consumer);
    store.close().expect("close");
    (remote, embedded)
}

/// p50 and p99 ms of a durable 1000 × 1 KiB append at 20 batches/s via a node, and the p99 of
/// the same embedded.
async fn produce_latency(dir: &std::path::Path, batches: usize) -> (f64, f64, f64) {
    let node = start_node(dir).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .expect("connect");
    client
        .create_topic("latency", 1, Default::default())
        .await
        .expect("topic");
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let records = wire_records(1024);
        let started = Instant::now();
        client
            .append("latency", records, WirePartitioning::Partition(0))
            .await
            .expect("append");
        samples.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_node(node).await;
    let p50 = harness::percentile(&mut samples, 50.0).as_secs_f64() * 1000.0;
    let p99 = harness::percentile(&mut samples, 99.0).as_secs_f64() * 1000.0;

    let dir = dir.join("embedded");
    let embedded = tokio::task::spawn_blocking(move || {
        let store = Store::open(&dir).expect("store");
        store
            .create_topic("latency", TopicConfig::default())
            .expect("topic");
        let mut samples = Vec::with_capacity(batches);
        for _ in 0..batches {
            let records = records(1024);
            let started = Instant::now();
            store
                .append("latency", &records, Partitioning::Partition(0))
                .expect("append");
            samples.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        store.close().expect("close");
        harness::percentile(&mut samples, 99.0).as_secs_f64() * 1000.0
    })
    .await
    .expect("join");
    (p50, p99, embedded)
}

/// Peak RSS (MiB) of a `weir serve` process serving 64 connections that produce and consume,
/// and its RSS when idle. Needs the release binary: `cargo build --release -p weir-node`.
async fn rss_64_connections(dir: &std::path::Path, duration: Duration) -> Option<(f64, f64)> {
    // Next to this harness's own executable: the same target directory, wherever that is
    // (`CARGO_TARGET_DIR`), not necessarily the workspace's `target/`.
    let binary = std::env::current_exe().ok()?.parent()?.join("weir");
    if !binary.exists() {
        eprintln!("node_rss_64_connections: build the node first (cargo build --release -p weir-node); skipped");
        return None;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        probe.local_addr().ok()?.port()
    };
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut child = std::process::Command::new(&binary)
        .args([
            "serve",
            "--no-admin",
            "--listen",
            &address.to_string(),
            "--data-dir",
        ])
        .arg(dir.join("rss"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut client = None;
    for _ in 0..100 {
        if let Ok(connected) = Client::connect(address, ClientConfig::default()).await {
            client = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client?;
    client
        .create_topic("rss", PARTITIONS, Default::default())
        .await
        .ok()?;
    let idle = rss_mib(child.id(), "VmRSS")?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = Client::connect(address, ClientConfig::default())
            .await
            .ok()?;
        tasks.push(tokio::spawn(async move {
            let consumer = client.consumer(
                "rss",
                "rss",
                ConsumerSettings {
                    batch_size: 100,
                    max_wait_ms: 5,
                    ..ConsumerSettings::default()
                },
            );
            while started.elapsed() < duration {
                if i % 2 == 0 {
                    let records: Vec<WireRecord> =
                        (0..100).map(|_| WireRecord::new(vec![1u8; 1024])).collect();
                    let _ = client
                        .append("rss", records, WirePartitioning::RoundRobin)
                        .await;
                } else if let Ok(Some(batch)) = consumer.next_batch(Duration::from_millis(50)).await
                {
                    let _ = consumer.ack(&batch).await;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let peak = rss_mib(child.id(), "VmHWM")?;
    // SIGTERM: a graceful shutdown.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    Some((peak, idle))
}

fn rss_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
