//! Exactly-once processing with `Consumer::ack_with`: count events per key, keeping the counts
//! in a tree of your own in the store, written in the same durable step as the group's
//! progress past each batch. However the process dies — kill -9 included — every event is
//! counted exactly once: a crash keeps a batch's counts and its acknowledgement together, or
//! neither (and the batch is then delivered again).
//!
//! ```sh
//! cargo run -p weir-store --example exactly_once
//! ```
//!
//! `tests/tests/exactly_once.rs` runs [`count`] in a child process, kills it at random moments
//! again and again, and checks the counts.

use std::time::Duration;

use weir_store::{
    ConflictableTransactionError, ConsumerConfig, Partitioning, Record, Store, TopicConfig,
};

/// The tree that holds the counts: key → count (u64, little-endian).
pub const COUNTS: &str = "counts";

/// Consumes `topic` as group `group`, adding each event to its key's count in [`COUNTS`] in the
/// same durable step as the acknowledgement; returns once `idle` passes without a batch.
///
/// # Errors
/// The store's errors.
pub fn count(store: &Store, group: &str, topic: &str, idle: Duration) -> weir_store::Result<u64> {
    let counts = store.user_tree(COUNTS)?;
    let mut config = ConsumerConfig::default();
    config.batch_size = 50;
    // One batch per partition at a time: each batch's end is the offset kept with its counts.
    config.max_in_flight = 1;
    let consumer = store.consumer(group, topic, config)?;
    let mut counted = 0;
    while let Some(batch) = consumer.next_batch(idle)? {
        let outcome = consumer.ack_with(&batch, &counts, |tree| {
            // May run more than once (a retried transaction): it only reads and writes the tree.
            for event in batch.events.iter() {
                let key = event.key.unwrap_or(b"(none)");
                let before = tree.get(key)?.map_or(0, |value| {
                    u64::from_le_bytes(value.as_ref().try_into().unwrap_or_default())
                });
                tree.insert(key, &(before + 1).to_le_bytes())?;
            }
            Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
        })?;
        if outcome.is_ok() {
            counted += batch.events.len() as u64;
        }
    }
    Ok(counted)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.create_topic("clicks", TopicConfig::with_partitions(2))?;
    let records: Vec<Record> = (0..300)
        .map(|i| Record::new(format!("click {i}")).key(format!("page-{}", i % 3)))
        .collect();
    store.append("clicks", &records, Partitioning::ByKey)?;
    let counted = count(&store, "counter", "clicks", Duration::from_millis(200))?;
    let counts = store.user_tree(COUNTS)?;
    for (key, value) in counts.scan_prefix(b"page-")? {
        let value = u64::from_le_bytes(value.as_slice().try_into()?);
        println!("{}: {value}", String::from_utf8_lossy(&key));
    }
    println!("{counted} events counted, each exactly once");
    store.close()?;
    Ok(())
}
