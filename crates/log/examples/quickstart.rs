//! Appends a few events to a durable log in `./weir-data/quickstart`, reads them back, and
//! shows what recovery reported on open. Run it twice: the second run continues the log.
//!
//! `cargo run -p weir-log --example quickstart`

use weir_log::{AppendEvent, Header, Log, LogConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("weir-data").join("quickstart");
    let log = Log::open(&dir, LogConfig::default())?;
    let report = log.recovery_report();
    println!(
        "opened {} (created: {}, clean shutdown: {}, torn tail cut: {})",
        dir.display(),
        report.created,
        report.clean_shutdown,
        report.torn_tail.is_some()
    );

    let headers = [Header {
        name: "source",
        value: b"quickstart",
    }];
    let first = log.append(&[
        AppendEvent {
            timestamp_ms: None,
            key: Some(b"order-1"),
            headers: &headers,
            value: b"created",
        },
        AppendEvent {
            timestamp_ms: None,
            key: Some(b"order-1"),
            headers: &headers,
            value: b"paid",
        },
    ])?;
    println!("appended 2 events at offset {first}; they are fsynced: the append returned after the fsync");

    let start = log.start_offset();
    let batch = log.read(start, 1_000, 1 << 20)?;
    for event in batch.iter() {
        let key = event.key.map(String::from_utf8_lossy).unwrap_or_default();
        println!(
            "offset {:>4}  ts {}  key {:<8}  value {}",
            event.offset,
            event.timestamp_ms,
            key,
            String::from_utf8_lossy(event.value)
        );
    }
    if let Some(offset) = log.offset_for_time(0)? {
        println!("the first event at or after the epoch is at offset {offset}");
    }
    log.close()?;
    Ok(())
}
