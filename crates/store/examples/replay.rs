//! Replay a partition from an offset and from a time, without touching any group's offsets.
//!
//! `cargo run -p weir-store --example replay`

use weir_store::{Partitioning, Record, ReplayFrom, ReplayOptions, Store, TopicConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("weir-replay-{}", std::process::id()));
    let store = Store::open(&dir)?;
    store.create_topic("sensor", TopicConfig::default())?;
    // One reading a minute, with producer-set timestamps.
    let start_ms = 1_764_000_000_000u64;
    let records: Vec<Record> = (0..10u64)
        .map(|i| Record::new(format!("reading {i}")).timestamp_ms(start_ms + i * 60_000))
        .collect();
    store.append("sensor", &records, Partitioning::Partition(0))?;

    println!("from offset 7:");
    for event in store.replay("sensor", 0, ReplayFrom::Offset(7), ReplayOptions::default())? {
        let event = event?;
        println!(
            "  {} {}",
            event.offset,
            String::from_utf8_lossy(&event.value)
        );
    }
    println!("from 3 minutes after the first reading, up to offset 6:");
    let from = ReplayFrom::TimeMs(start_ms + 3 * 60_000);
    for event in store.replay("sensor", 0, from, ReplayOptions::default().to_offset(6))? {
        let event = event?;
        println!(
            "  {} {} (ts {})",
            event.offset,
            String::from_utf8_lossy(&event.value),
            event.timestamp_ms
        );
    }
    store.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
