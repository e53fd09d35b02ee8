//! End to end through weir-store's public API: producers on many threads while several members
//! of one group ack, nack and stop; then close and reopen mid-stream.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_log::sim::SplitMix64;
use weir_store::{CommitPolicy, ConsumerConfig, Partitioning, Record, Store, TopicConfig};

/// Bytes by (partition, offset), shared between threads.
type SharedValues = Arc<Mutex<BTreeMap<(u32, u64), Vec<u8>>>>;

#[derive(Debug, Clone, Copy)]
struct Delivery {
    partition: u32,
    first: u64,
    end: u64,
    attempt: u32,
}

#[test]
fn many_producers_and_members_deliver_everything_in_order_and_commit_only_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .maintenance_interval(Duration::from_millis(20))
        .open()
        .unwrap();
    const PARTITIONS: u32 = 4;
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 400;
    store
        .create_topic("t", TopicConfig::with_partitions(PARTITIONS))
        .unwrap();
    let mut config = ConsumerConfig::default();
    config.batch_size = 10;
    config.max_wait_ms = 20;
    config.ack_timeout_ms = 300;
    config.max_in_flight = 1;
    config.max_attempts = 1000;

    let produced: SharedValues = Arc::default();
    let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let acked: Arc<Mutex<BTreeSet<(u32, u64)>>> = Arc::default();
    let delivered_values: SharedValues = Arc::default();
    let producing = Arc::new(AtomicBool::new(true));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let store = store.clone();
            let produced = produced.clone();
            std::thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let value = format!("p{p}-{i}").into_bytes();
                    let record = Record::new(value.clone()).key(format!("key-{}", i % 13));
                    let position = store
                        .append("t", &[record], Partitioning::ByKey)
                        .unwrap()
                        .positions[0];
                    produced.lock().unwrap().insert(position, value);
                }
            })
        })
        .collect();

    let members: Vec<_> = (0..3u64)
        .map(|m| {
            let consumer = store.consumer("g", "t", config.clone()).unwrap();
            let (deliveries, acked, delivered_values, producing) = (
                deliveries.clone(),
                acked.clone(),
                delivered_values.clone(),
                producing.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(m + 1);
                let started = Instant::now();
                let mut idle = 0;
                loop {
                    // Member 2 stops for good after a while, holding a batch it never acks.
                    if m == 2 && started.elapsed() > Duration::from_millis(150) {
                        if let Some(abandoned) =
                            consumer.next_batch(Duration::from_millis(100)).unwrap()
                        {
                            deliveries.lock().unwrap().push(Delivery {
                                partition: abandoned.partition,
                                first: abandoned.first_offset,
                                end: abandoned.end_offset(),
                                attempt: abandoned.attempt,
                            });
                        }
                        return;
                    }
                    let Some(batch) = consumer.next_batch(Duration::from_millis(100)).unwrap()
                    else {
                        idle += 1;
                        if !producing.load(Ordering::SeqCst) && idle > 15 {
                            return;
                        }
                        continue;
                    };
                    idle = 0;
                    deliveries.lock().unwrap().push(Delivery {
                        partition: batch.partition,
                        first: batch.first_offset,
                        end: batch.end_offset(),
                        attempt: batch.attempt,
                    });
                    for event in &batch.events {
                        delivered_values
                            .lock()
                            .unwrap()
                            .insert((batch.partition, event.offset), event.value.to_vec());
                    }
                    match rng.below(10) {
                        0 => consumer
                            .nack(&batch, Duration::from_millis(5), Some("transient"))
                            .unwrap(),
                        1 => {} // stall: never ack; the lease runs out and the batch is redelivered
                        _ => {
                            if consumer.ack(&batch).is_ok() {
                                let mut acked = acked.lock().unwrap();
                                acked.extend(
                                    (batch.first_offset..batch.end_offset())
                                        .map(|o| (batch.partition, o)),
                                );
                            }
                        }
                    }
                }
            })
        })
        .collect();

    for producer in producers {
        producer.join().unwrap();
    }
    producing.store(false, Ordering::SeqCst);
    // Wait until the group committed everything (the stopped member's batch expires and is
    // redelivered to the others).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let description = store.describe_group("g").unwrap();
        if description
            .partitions
            .iter()
            .all(|p| p.committed_offset == p.end_offset)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not finish: {description:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for member in members {
        member.join().unwrap();
    }

    let produced = produced.lock().unwrap();
    assert_eq!(produced.len(), PRODUCERS * PER_PRODUCER);
    let delivered_values = delivered_values.lock().unwrap();
    let acked = acked.lock().unwrap();
    for (position, value) in produced.iter() {
        assert_eq!(
            delivered_values.get(position),
            Some(value),
            "{position:?} delivered with its bytes"
        );
        assert!(
            acked.contains(position),
            "{position:?} committed, so it must have been acknowledged"
        );
    }
    // Per partition (max_in_flight = 1), first deliveries tile the partition in offset order
    // with no overlap and no gap, and every redelivery repeats one of them. (Checked on the
    // set of deliveries: a member may record its batch a moment after receiving it.)
    let deliveries = deliveries.lock().unwrap();
    for partition in 0..PARTITIONS {
        let mut firsts: Vec<(u64, u64)> = deliveries
            .iter()
            .filter(|d| d.partition == partition && d.attempt == 1)
            .map(|d| (d.first, d.end))
            .collect();
        firsts.sort_unstable();
        let mut expected_next = 0;
        for &(first, end) in &firsts {
            assert_eq!(
                first, expected_next,
                "partition {partition}: new batches tile the log"
            );
            expected_next = end;
        }
        for d in deliveries
            .iter()
            .filter(|d| d.partition == partition && d.attempt > 1)
        {
            assert!(
                firsts.binary_search(&(d.first, d.end)).is_ok(),
                "partition {partition}: a redelivery repeats a delivered batch"
            );
        }
    }
    let redeliveries = deliveries.iter().filter(|d| d.attempt > 1).count();
    assert!(
        redeliveries > 0,
        "nacks and the stopped member caused redeliveries"
    );
}

#[test]
fn close_and_reopen_mid_stream_resumes_at_the_committed_offsets() {
    for interval in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ConsumerConfig::default();
        config.batch_size = 10;
        if interval {
            config.commit_policy = CommitPolicy::Interval {
                interval_ms: 60_000,
                acks_max: 1000,
            };
        }
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_topic("t", TopicConfig::default()).unwrap();
            let records: Vec<Record> = (0..100).map(|i| Record::new(format!("{i}"))).collect();
            store
                .append("t", &records, Partitioning::Partition(0))
                .unwrap();
            let consumer = store.consumer("g", "t", config.clone()).unwrap();
            for _ in 0..3 {
                let batch = consumer
                    .next_batch(Duration::from_secs(1))
                    .unwrap()
                    .unwrap();
                consumer.ack(&batch).unwrap();
            }
            // A fourth batch is delivered but not acknowledged when the store closes.
            let _unacked = consumer
                .next_batch(Duration::from_secs(1))
                .unwrap()
                .unwrap();
            store.close().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.describe_group("g").unwrap().partitions[0].committed_offset,
            30,
            "interval: {interval}"
        );
        let consumer = store.consumer("g", "t", config.clone()).unwrap();
        let batch = consumer
            .next_batch(Duration::from_secs(1))
            .unwrap()
            .unwrap();
        assert_eq!(
            (batch.first_offset, batch.attempt),
            (30, 1),
            "the unacknowledged batch comes again"
        );
        store
            .append(
                "t",
                &[Record::new("after reopen")],
                Partitioning::Partition(0),
            )
            .unwrap();
        assert_eq!(
            store.describe_topic("t").unwrap().partitions[0].end_offset,
            101
        );
    }
}
