use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_store::{Partitioning, Record, Store, TopicConfig};
fn main() {
    let secs: u64 = std::env::args().nth(1).map_or(5, |a| a.parse().unwrap());
    let dir = tempfile::tempdir_in("/work").unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    store
        .create_topic("bench", TopicConfig::with_partitions(16))
        .unwrap();
    let produced = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let duration = Duration::from_secs(secs);
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
                        .unwrap();
                    produced.fetch_add(100, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "{:.0} events/s",
        produced.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    );
    store.close().unwrap();
}
