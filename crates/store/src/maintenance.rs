//! The store's background thread: on every `maintenance_interval_ms` it applies retention to
//! every partition, fsyncs `IntervalLossy` topics (so an idle topic's last writes do not wait
//! for the next append), refreshes every partition's recovery checkpoint to what is fsynced,
//! commits the acknowledged progress of interval-policy groups, and publishes group metrics
//! and which partitions are damaged. It holds only a weak reference to the store and stops when the
//! store closes.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::config::TopicSync;
use crate::store::{lock, Inner};

pub(crate) fn start(
    store: Weak<Inner>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    interval_ms: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("weir-store-maintenance".into())
        .spawn(move || loop {
            {
                let (stopped, wake) = &*stop;
                let guard = lock(stopped);
                let (guard, _) = wake
                    .wait_timeout_while(guard, Duration::from_millis(interval_ms), |stopped| {
                        !*stopped
                    })
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if *guard {
                    return;
                }
            }
            let Some(inner) = store.upgrade() else { return };
            run_once(&inner);
        })
        .expect("the maintenance thread starts")
}

fn run_once(inner: &Inner) {
    let mut damaged = 0usize;
    for topic in inner.topics_snapshot() {
        for (partition, log) in topic.partitions.iter().enumerate() {
            let is_damaged = log.damage().is_some();
            crate::metrics::partition_damaged(&topic.meta.name, partition as u32, is_damaged);
            if is_damaged {
                // Reads only until `weir repair`: nothing to sync, retain or checkpoint.
                damaged += 1;
                continue;
            }
            if let TopicSync::IntervalLossy { .. } = topic.meta.config.sync {
                if let Err(error) = log.sync() {
                    tracing::error!(topic = %topic.meta.name, partition, %error, "interval fsync failed");
                }
            }
            // So that an event damaged after its acknowledgement is known for acknowledged even
            // when nothing was appended after it (docs/durability.md, "Recovery").
            if let Err(error) = log.refresh_checkpoint() {
                tracing::error!(topic = %topic.meta.name, partition, %error, "refreshing the recovery checkpoint failed");
            }
            if let Err(error) = log.apply_retention() {
                tracing::warn!(topic = %topic.meta.name, partition, %error, "retention failed");
            }
        }
    }
    crate::metrics::partitions_damaged(damaged);
    // The offsets store's witness follows its durable commits (a store that opens with fewer
    // lost some: docs/format.md, "Offsets store").
    if let Ok(offsets) = inner.offsets() {
        if let Err(error) = offsets.seal() {
            tracing::error!(%error, "sealing the offsets store's witness failed");
        }
    }
    let groups: Vec<_> = lock(&inner.groups)
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    for group in groups {
        if matches!(
            group.config.commit_policy,
            weir_batch::CommitPolicy::Interval { .. }
        ) {
            if let Err(error) = group.commit_all() {
                tracing::warn!(group = %group.name, %error, "interval commit failed");
            }
        }
        for reader in &group.readers {
            if let Ok(stats) = reader.stats() {
                crate::metrics::group_partition(
                    &group.name,
                    &group.topic,
                    reader.partition(),
                    &stats,
                );
            }
        }
    }
}
