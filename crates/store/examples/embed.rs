//! Produce and consume with acknowledgements, embedded.
//!
//! `cargo run -p weir-store --example embed` (data in `./weir-data/embed`; run it again and
//! the group resumes where it stopped).

use std::time::Duration;

use weir_store::{ConsumerConfig, Partitioning, Record, Store, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open("weir-data/embed")?;
    if !store.list_topics()?.contains(&"orders".to_string()) {
        store.create_topic("orders", TopicConfig::with_partitions(4))?;
    }

    // Events with the same key land on the same partition, in order. `append` returns once
    // they are fsynced.
    let records: Vec<Record> = (0..20)
        .map(|i| Record::new(format!("order {i} created")).key(format!("customer-{}", i % 5)))
        .collect();
    let produced = store.append("orders", &records, Partitioning::ByKey)?;
    println!(
        "produced {} events; the first went to partition {} offset {}",
        produced.positions.len(),
        produced.positions[0].0,
        produced.positions[0].1
    );

    let mut config = ConsumerConfig::default();
    config.batch_size = 5;
    config.max_wait_ms = 50;
    let consumer = store.consumer("billing", "orders", config)?;
    while let Some(batch) = consumer.next_batch(Duration::from_millis(200))? {
        for event in &batch.events {
            println!(
                "partition {} offset {:>3}: {}",
                batch.partition,
                event.offset,
                String::from_utf8_lossy(event.value)
            );
        }
        // Processing succeeded: acknowledge. The group's committed offset moves past the batch
        // (and past every batch acknowledged before it without a gap).
        consumer.ack(&batch)?;
    }
    for partition in store.describe_group("billing")?.partitions {
        println!(
            "partition {}: committed {} of {} (lag {})",
            partition.partition,
            partition.committed_offset,
            partition.end_offset,
            partition.lag_events
        );
    }
    store.close()?;
    Ok(())
}
