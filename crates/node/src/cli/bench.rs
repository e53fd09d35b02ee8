//! `weir bench`: a load generator against a node (`--server`) or a data directory
//! (`--data-dir`, the embedded store without any network), in the manner of the streaming
//! servers' perf tools: producers append fixed-size events in batches for a duration while
//! consumers of a fresh group read them; it prints throughput and latency percentiles (append
//! latency per request; end-to-end latency from the event's timestamp to its delivery, at
//! millisecond resolution).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use weir_client::{ConsumerSettings, Partitioning, Record};

use crate::cli::exit;
use crate::cli::output::print_table;
use crate::cli::target::{connect, open_store, NodeArgs};
use crate::cli::time::{now_ms, parse_duration};

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The topic to load (created if missing).
    #[arg(long, default_value = "weir-bench")]
    topic: String,
    /// Partitions of the topic, if it is created.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Concurrent producers.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Consumers (members of one fresh group); 0 for produce only.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Bytes of each event's value.
    #[arg(long, default_value_t = 100)]
    event_bytes: usize,
    /// Events per append, and per consumer batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// How long to produce, e.g. 10s, 1m.
    #[arg(long, default_value = "10s")]
    duration: String,
    #[command(flatten)]
    node: NodeArgs,
    /// Load the embedded store in this data directory instead of a node (created if missing;
    /// no node may have it open).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Where the load goes.
#[derive(Debug, Clone)]
enum Backend {
    Remote(weir_client::Client),
    Local(weir_store::Store),
}

/// What one side measured.
#[derive(Debug, Default)]
struct Side {
    events: u64,
    latencies_us: Vec<u64>,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let duration =
        parse_duration(&args.duration).map_err(|e| exit::usage(format!("--duration: {e}")))?;
    if args.producers == 0 {
        return Err(exit::usage("--producers must be at least 1"));
    }
    let backend = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Backend::Local(open_store(dir).await?)
        }
        None => Backend::Remote(connect(&args.node).await?),
    };
    backend.create_topic(&args.topic, args.partitions).await?;
    let group = format!("weir-bench-{}-{}", std::process::id(), now_ms());
    let settings = ConsumerSettings {
        batch_size: args.batch_size,
        ..ConsumerSettings::default()
    };
    let started = Instant::now();
    let deadline = started + duration;
    let value: Arc<Vec<u8>> = Arc::new(vec![b'w'; args.event_bytes]);
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let backend = backend.clone();
        let topic = args.topic.clone();
        let value = value.clone();
        let batch = args.batch_size as usize;
        producers.push(tokio::spawn(async move {
            let mut side = Side::default();
            while Instant::now() < deadline {
                let records: Vec<Vec<u8>> = (0..batch).map(|_| value.to_vec()).collect();
                let sent = Instant::now();
                backend.append(&topic, records).await?;
                side.latencies_us
                    .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                side.events += batch as u64;
            }
            anyhow::Ok(side)
        }));
    }
    let mut consumers = Vec::new();
    // Consumers start at the topic's end: they measure this run's events only.
    if args.consumers > 0 {
        backend.reset_to_latest(&group, &args.topic).await?;
    }
    for _ in 0..args.consumers {
        let backend = backend.clone();
        let topic = args.topic.clone();
        let group = group.clone();
        consumers.push(tokio::spawn(async move {
            backend
                .consume(&group, &topic, settings, deadline + Duration::from_secs(1))
                .await
        }));
    }
    let mut produced = Side::default();
    for task in producers {
        let side = task.await.context("a producer task failed")??;
        produced.events += side.events;
        produced.latencies_us.extend(side.latencies_us);
    }
    let produce_secs = started.elapsed().as_secs_f64();
    let mut consumed = Side::default();
    for task in consumers {
        let side = task.await.context("a consumer task failed")??;
        consumed.events += side.events;
        consumed.latencies_us.extend(side.latencies_us);
    }
    if let Backend::Local(store) = &backend {
        let _ = backend.delete_group(&group).await;
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("closing the store")??;
    } else {
        let _ = backend.delete_group(&group).await;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "weir bench: {} producer(s), {} consumer(s), {}-byte events, batches of {}, {:.1} s, {}",
        args.producers,
        args.consumers,
        args.event_bytes,
        args.batch_size,
        duration.as_secs_f64(),
        match &args.data_dir {
            Some(dir) => format!("embedded store in {}", dir.display()),
            None => format!("node at {}", args.node.server),
        }
    )?;
    let mut rows = vec![row(
        "produce (append latency)",
        &mut produced,
        produce_secs,
        args.event_bytes,
        1,
    )];
    if args.consumers > 0 {
        rows.push(row(
            "consume (end-to-end latency)",
            &mut consumed,
            produce_secs,
            args.event_bytes,
            1000,
        ));
    }
    print_table(
        &mut out,
        &[
            "", "EVENTS", "EVENTS/S", "MIB/S", "P50", "P99", "P999", "MAX",
        ],
        &rows,
    )?;
    Ok(0)
}

/// A table row; `unit_us` is the resolution of the latencies (1 µs, or 1000 for ms).
fn row(name: &str, side: &mut Side, secs: f64, event_bytes: usize, unit_us: u64) -> Vec<String> {
    side.latencies_us.sort_unstable();
    let percentile = |p: f64| -> String {
        if side.latencies_us.is_empty() {
            return "-".into();
        }
        let rank = ((p * side.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, side.latencies_us.len());
        latency(side.latencies_us[rank - 1].saturating_mul(unit_us))
    };
    let rate = side.events as f64 / secs.max(1e-9);
    vec![
        name.to_string(),
        side.events.to_string(),
        format!("{rate:.0}"),
        format!("{:.2}", rate * event_bytes as f64 / (1024.0 * 1024.0)),
        percentile(0.50),
        percentile(0.99),
        percentile(0.999),
        percentile(1.0),
    ]
}

fn latency(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

impl Backend {
    async fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        match self {
            Backend::Remote(client) => {
                match client
                    .create_topic(topic, partitions, Default::default())
                    .await
                {
                    Err(error) if error.code() == Some(weir_client::ErrorCode::TopicExists) => {
                        Ok(())
                    }
                    other => Ok(other?),
                }
            }
            Backend::Local(store) => {
                match store
                    .create_topic(topic, weir_store::TopicConfig::with_partitions(partitions))
                {
                    Err(weir_store::Error::TopicExists(_)) => Ok(()),
                    other => Ok(other?),
                }
            }
        }
    }

    async fn append(&self, topic: &str, values: Vec<Vec<u8>>) -> anyhow::Result<()> {
        match self {
            Backend::Remote(client) => {
                let records = values.into_iter().map(Record::new).collect();
                client
                    .append(topic, records, Partitioning::RoundRobin)
                    .await?;
            }
            Backend::Local(store) => {
                let records: Vec<_> = values.into_iter().map(weir_store::Record::new).collect();
                store
                    .append_async(topic, records, weir_store::Partitioning::RoundRobin)
                    .await?;
            }
        }
        Ok(())
    }

    async fn reset_to_latest(&self, group: &str, topic: &str) -> anyhow::Result<()> {
        match self {
            Backend::Remote(client) => {
                client
                    .reset_group(group, topic, weir_client::ResetTo::Latest, None)
                    .await?;
            }
            Backend::Local(store) => {
                store.reset_group(group, topic, weir_store::ResetTo::Latest, None)?;
            }
        }
        Ok(())
    }

    async fn delete_group(&self, group: &str) -> anyhow::Result<()> {
        match self {
            Backend::Remote(client) => client.delete_group(group).await?,
            Backend::Local(store) => store.delete_group(group)?,
        }
        Ok(())
    }

    /// Consumes until `until`, acking every batch; latencies are end-to-end, in ms.
    async fn consume(
        &self,
        group: &str,
        topic: &str,
        settings: ConsumerSettings,
        until: Instant,
    ) -> anyhow::Result<Side> {
        let mut side = Side::default();
        let poll = Duration::from_millis(200);
        match self {
            Backend::Remote(client) => {
                let consumer = client.consumer(group, topic, settings);
                while Instant::now() < until {
                    let Some(batch) = consumer.next_batch(poll).await? else {
                        continue;
                    };
                    let now = now_ms();
                    for event in &batch.events {
                        side.latencies_us
                            .push(now.saturating_sub(event.timestamp_ms));
                    }
                    side.events += batch.events.len() as u64;
                    consumer.ack(&batch).await?;
                }
            }
            Backend::Local(store) => {
                let mut config = weir_store::ConsumerConfig::default();
                config.batch_size = settings.batch_size;
                let consumer = store.consumer(group, topic, config)?;
                while Instant::now() < until {
                    let Some(batch) = consumer.next_batch_async(poll).await? else {
                        continue;
                    };
                    let now = now_ms();
                    for event in &batch.events {
                        side.latencies_us
                            .push(now.saturating_sub(event.timestamp_ms));
                    }
                    side.events += batch.events.len() as u64;
                    tokio::task::block_in_place(|| consumer.ack(&batch))?;
                }
            }
        }
        Ok(side)
    }
}
