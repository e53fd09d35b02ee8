//! Several members of one consumer group, one of which crashes holding a batch: its lease runs
//! out and another member gets the same events again (attempt 2). Nothing is lost, and the
//! group's committed offset never passes an unacknowledged event.
//!
//! `cargo run -p weir-store --example consumer_group`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_store::{ConsumerConfig, Partitioning, Record, Store, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("weir-consumer-group-{}", std::process::id()));
    let store = Store::open(&dir)?;
    store.create_topic("jobs", TopicConfig::with_partitions(2))?;
    for i in 0..40 {
        // Round-robin: each append goes to the next partition.
        store.append(
            "jobs",
            &[Record::new(format!("job {i}"))],
            Partitioning::RoundRobin,
        )?;
    }

    let mut config = ConsumerConfig::default();
    config.batch_size = 5;
    config.max_wait_ms = 20;
    config.ack_timeout_ms = 300; // a crashed member's batches come back after 300 ms

    // Two healthy members join; then a third takes a batch and crashes without acknowledging.
    let healthy: Vec<_> = (1..=2)
        .map(|_| store.consumer("workers", "jobs", config.clone()))
        .collect::<Result<_, _>>()?;
    let crashing = store.consumer("workers", "jobs", config.clone())?;
    let lost = crashing
        .next_batch(Duration::from_secs(1))?
        .expect("events are there");
    println!(
        "member 0 took partition {} offsets {}..{} and crashed",
        lost.partition,
        lost.first_offset,
        lost.end_offset()
    );
    drop(crashing);

    let processed = Arc::new(AtomicUsize::new(0));
    let members: Vec<_> = healthy
        .into_iter()
        .enumerate()
        .map(|(i, consumer)| {
            let member = i + 1;
            let processed = processed.clone();
            std::thread::spawn(move || {
                while let Ok(Some(batch)) = consumer.next_batch(Duration::from_millis(800)) {
                    println!(
                        "member {member}: partition {} offsets {}..{} attempt {}",
                        batch.partition,
                        batch.first_offset,
                        batch.end_offset(),
                        batch.attempt
                    );
                    processed.fetch_add(batch.events.len(), Ordering::SeqCst);
                    consumer.ack(&batch).expect("ack");
                }
            })
        })
        .collect();
    for member in members {
        member.join().expect("member thread");
    }
    println!(
        "processed {} events: all 40 produced, the crashed member's batch again as attempt 2",
        processed.load(Ordering::SeqCst)
    );
    for partition in store.describe_group("workers")?.partitions {
        println!(
            "partition {}: committed {} / end {}",
            partition.partition, partition.committed_offset, partition.end_offset
        );
    }
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
