//! Metrics through the `metrics` facade: the store records, the embedder (or the node's
//! Prometheus exporter) chooses the recorder. Without a recorder these calls cost almost
//! nothing. Names (all prefixed `weir_`):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `weir_append_calls_total` | counter | topic |
//! | `weir_append_events_total` | counter | topic |
//! | `weir_append_bytes_total` | counter | topic |
//! | `weir_append_seconds` | histogram (durable append latency) | topic |
//! | `weir_fsyncs_total` | counter | topic |
//! | `weir_fsync_seconds` | histogram | topic |
//! | `weir_journal_fsyncs_total` | counter (group commits of the store's journal) | |
//! | `weir_journal_fsync_seconds` | histogram | |
//! | `weir_batches_delivered_total` | counter | group, topic |
//! | `weir_batches_redelivered_total` | counter | group, topic |
//! | `weir_batches_acked_total` | counter | group, topic |
//! | `weir_batches_dead_lettered_total` | counter (absolute, from the maintenance pass) | group, topic, partition |
//! | `weir_group_lag_events` | gauge | group, topic, partition |
//! | `weir_group_lag_seconds` | gauge | group, topic, partition |
//! | `weir_group_in_flight_batches` | gauge | group, topic, partition |
//! | `weir_partitions_damaged` | gauge: partitions whose acknowledged data is damaged (reads stop at the damage, appends refused until `weir repair`) | |
//! | `weir_partition_damaged` | gauge, 1 while the partition is damaged | topic, partition |

use std::sync::Arc;
use std::time::Duration;

use weir_batch::{Batch, PartitionStats};

use crate::topic::Topic;

pub(crate) fn appended(topic: &str, events: usize, bytes: usize, elapsed: Duration) {
    let topic = topic.to_string();
    metrics::counter!("weir_append_calls_total", "topic" => topic.clone()).increment(1);
    metrics::counter!("weir_append_events_total", "topic" => topic.clone())
        .increment(events as u64);
    metrics::counter!("weir_append_bytes_total", "topic" => topic.clone()).increment(bytes as u64);
    metrics::histogram!("weir_append_seconds", "topic" => topic).record(elapsed.as_secs_f64());
}

/// One group commit of the store's journal (write and fsync) took `elapsed`.
pub(crate) fn journal_synced(elapsed: Duration) {
    metrics::counter!("weir_journal_fsyncs_total").increment(1);
    metrics::histogram!("weir_journal_fsync_seconds").record(elapsed.as_secs_f64());
}

/// Installs the fsync observer on each partition of a topic.
pub(crate) fn observe_topic(topic: &Topic) {
    for log in &topic.partitions {
        let name = topic.meta.name.clone();
        log.observe_syncs(Arc::new(move |elapsed: Duration| {
            metrics::counter!("weir_fsyncs_total", "topic" => name.clone()).increment(1);
            metrics::histogram!("weir_fsync_seconds", "topic" => name.clone())
                .record(elapsed.as_secs_f64());
        }));
    }
}

pub(crate) fn delivered(group: &str, topic: &str, batch: &Batch) {
    let labels = [("group", group.to_string()), ("topic", topic.to_string())];
    if batch.attempt > 1 {
        metrics::counter!("weir_batches_redelivered_total", &labels).increment(1);
    } else {
        metrics::counter!("weir_batches_delivered_total", &labels).increment(1);
    }
}

pub(crate) fn acked(group: &str, topic: &str) {
    metrics::counter!("weir_batches_acked_total", "group" => group.to_string(), "topic" => topic.to_string())
        .increment(1);
}

pub(crate) fn group_partition(group: &str, topic: &str, partition: u32, stats: &PartitionStats) {
    let labels = [
        ("group", group.to_string()),
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ];
    metrics::gauge!("weir_group_lag_events", &labels).set(stats.lag_events as f64);
    metrics::gauge!("weir_group_lag_seconds", &labels).set(stats.lag_ms as f64 / 1000.0);
    metrics::gauge!("weir_group_in_flight_batches", &labels).set(f64::from(stats.state.in_flight));
    metrics::counter!("weir_batches_dead_lettered_total", &labels)
        .absolute(stats.state.dead_letters);
}

/// Whether one partition is damaged (set every maintenance pass).
pub(crate) fn partition_damaged(topic: &str, partition: u32, damaged: bool) {
    metrics::gauge!("weir_partition_damaged", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(if damaged { 1.0 } else { 0.0 });
}

/// How many partitions are damaged.
pub(crate) fn partitions_damaged(count: usize) {
    metrics::gauge!("weir_partitions_damaged").set(count as f64);
}
