//! The store suite (issue 5): durable keyed produce from many threads, end-to-end latency from
//! `append` to a consumer, and a consumer group of four members — each next to a baseline
//! measured in the same run.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_store::{CommitPolicy, ConsumerConfig, Partitioning, Record, Store, TopicConfig};

use crate::harness::{self, Figure, Options};

/// Runs the store suite.
pub fn run(options: &Options) -> Vec<Figure> {
    let seconds = if options.quick { 2 } else { 8 };
    let mut figures = Vec::new();

    let dir = harness::scratch_dir(options);
    let baseline = fsync_batch_rate(dir.path(), Duration::from_secs(seconds.min(3)));
    let rate = produce_keyed(dir.path(), Duration::from_secs(seconds));
    figures.push(Figure::new(
        "produce_keyed_100B",
        rate,
        "events/s",
        "1 thread: 100 x 100 B write + fdatasync",
        baseline,
        ">= 500,000 events/s",
    ));

    let dir = harness::scratch_dir(options);
    let (p50, p99) = end_to_end_latency(dir.path(), if options.quick { 1_000 } else { 5_000 });
    let fsync_p99 = fsync_p99_us(dir.path(), if options.quick { 300 } else { 2_000 });
    let mut figure = Figure::new(
        "end_to_end_latency_durable_p99",
        p99,
        "us",
        "p99 of a 4 KiB write + fdatasync",
        fsync_p99,
        "ratio (p99 / fsync p99) <= 3",
    );
    figure.ratio = p99 / fsync_p99;
    figures.push(figure);
    let mut figure = Figure::new(
        "end_to_end_latency_durable_p50",
        p50,
        "us",
        "p99 of a 4 KiB write + fdatasync",
        fsync_p99,
        "reported",
    );
    figure.ratio = p50 / fsync_p99;
    figures.push(figure);

    let dir = harness::scratch_dir(options);
    let (group_rate, read_rate) =
        consume_group(dir.path(), if options.quick { 400_000 } else { 2_000_000 });
    figures.push(Figure::new(
        "consume_group_4_members",
        group_rate,
        "events/s",
        "1 thread reading every partition (weir-log)",
        read_rate,
        "reported",
    ));
    figures
}

/// One thread writing 100 events of 100 B (with a length and CRC each) then fdatasync, per batch.
fn fsync_batch_rate(dir: &std::path::Path, duration: Duration) -> f64 {
    let path = dir.join("baseline-fsync");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("baseline file");
    let value = [7u8; 100];
    let mut batch = Vec::with_capacity(100 * 108);
    let (calls, elapsed) = harness::run_for(duration, || {
        batch.clear();
        for _ in 0..100 {
            batch.extend_from_slice(&(value.len() as u32).to_le_bytes());
            batch.extend_from_slice(&crc32fast::hash(&value).to_le_bytes());
            batch.extend_from_slice(&value);
        }
        file.write_all(&batch).expect("write");
        file.sync_data().expect("fdatasync");
    });
    (calls * 100) as f64 / elapsed.as_secs_f64()
}

fn produce_keyed(dir: &std::path::Path, duration: Duration) -> f64 {
    let store = Store::open(dir.join("store")).expect("store");
    store
        .create_topic("bench", TopicConfig::with_partitions(16))
        .expect("topic");
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let store = store.clone();
            let produced = produced.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    let records: Vec<Record> = (0..100u64)
                        .map(|i| {
                            Record::new(vec![7u8; 100]).key(format!("key-{t}-{}", (n + i) % 1000))
                        })
                        .collect();
                    n += 100;
                    store
                        .append("bench", &records, Partitioning::ByKey)
                        .expect("append");
                    produced.fetch_add(100, Ordering::Relaxed);
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

/// p50 and p99 in µs from `append` starting to the consumer holding the event, at 1,000
/// events/s, durable.
fn end_to_end_latency(dir: &std::path::Path, events: u64) -> (f64, f64) {
    let store = Store::open(dir.join("store")).expect("store");
    store
        .create_topic("latency", TopicConfig::default())
        .expect("topic");
    let mut config = ConsumerConfig::default();
    config.batch_size = 1;
    config.commit_policy = CommitPolicy::Interval {
        interval_ms: 100,
        acks_max: 10_000,
    };
    let consumer = store
        .consumer("latency", "latency", config)
        .expect("consumer");
    let origin = Instant::now();
    let producer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..events {
                let due = origin + Duration::from_micros(i * 1000);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let sent_us = origin.elapsed().as_micros() as u64;
                store
                    .append(
                        "latency",
                        &[Record::new(sent_us.to_le_bytes().to_vec())],
                        Partitioning::Partition(0),
                    )
                    .expect("append");
            }
        })
    };
    let mut latencies = Vec::with_capacity(events as usize);
    while (latencies.len() as u64) < events {
        let Some(batch) = consumer
            .next_batch(Duration::from_secs(5))
            .expect("next batch")
        else {
            break;
        };
        let received_us = origin.elapsed().as_micros() as u64;
        for event in &batch.events {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&event.value[..8]);
            latencies.push(Duration::from_micros(received_us - u64::from_le_bytes(raw)));
        }
        consumer.ack(&batch).expect("ack");
    }
    producer.join().expect("producer");
    drop(consumer);
    store.close().expect("close");
    let p50 = harness::percentile(&mut latencies, 50.0).as_secs_f64() * 1e6;
    let p99 = harness::percentile(&mut latencies, 99.0).as_secs_f64() * 1e6;
    (p50, p99)
}

fn fsync_p99_us(dir: &std::path::Path, rounds: usize) -> f64 {
    let path = dir.join("baseline-4k");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("baseline file");
    let block = [1u8; 4096];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
        samples.push(started.elapsed());
        std::thread::sleep(Duration::from_micros(500));
    }
    harness::percentile(&mut samples, 99.0).as_secs_f64() * 1e6
}

/// Events/s of 4 members of one group over 16 partitions with batch acks, and of one thread
/// reading the same partitions directly.
fn consume_group(dir: &std::path::Path, events: u64) -> (f64, f64) {
    let store = Store::open(dir.join("store")).expect("store");
    let mut topic = TopicConfig::with_partitions(16);
    topic.sync = weir_store::TopicSync::NeverLossy; // filling only; consumption is what is measured
    store.create_topic("group", topic).expect("topic");
    let per_partition = events / 16;
    let value = vec![7u8; 100];
    for partition in 0..16 {
        let records: Vec<Record> = (0..1000).map(|_| Record::new(value.clone())).collect();
        for _ in 0..per_partition / 1000 {
            store
                .append("group", &records, Partitioning::Partition(partition))
                .expect("append");
        }
    }
    let total = per_partition / 1000 * 1000 * 16;

    let started = Instant::now();
    let mut read = 0u64;
    for partition in 0..16 {
        let log = store.partition_log("group", partition).expect("log");
        let mut offset = 0;
        while offset < log.end_offset() {
            let batch = log.read(offset, 1000, usize::MAX).expect("read");
            read += batch.iter().map(|e| e.value.len() as u64).sum::<u64>() / 100;
            offset = batch.next_offset();
        }
    }
    let read_rate = read as f64 / started.elapsed().as_secs_f64();

    let mut config = ConsumerConfig::default();
    config.batch_size = 1000;
    config.max_wait_ms = 1;
    config.commit_policy = CommitPolicy::Interval {
        interval_ms: 100,
        acks_max: 10_000,
    };
    let consumed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let members: Vec<_> = (0..4)
        .map(|_| {
            let consumer = store
                .consumer("bench", "group", config.clone())
                .expect("consumer");
            let consumed = consumed.clone();
            std::thread::spawn(move || {
                while consumed.load(Ordering::Relaxed) < total {
                    let Some(batch) = consumer
                        .next_batch(Duration::from_millis(50))
                        .expect("next batch")
                    else {
                        continue;
                    };
                    consumed.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    consumer.ack(&batch).expect("ack");
                }
            })
        })
        .collect();
    for member in members {
        member.join().expect("member");
    }
    let group_rate = consumed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    store.close().expect("close");
    (group_rate, read_rate)
}
