//! `weir consume TOPIC --group G`: prints a consumer group's batches and acknowledges each one
//! only after all its events were written to stdout and flushed. If writing fails (a closed
//! pipe: the program reading stdout exited), the batch is not acknowledged and the command
//! exits: the node delivers the batch again once its lease runs out (`--ack-timeout-ms`).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use weir_client::{Batch, ConsumerSettings};

use crate::cli::exit;
use crate::cli::output::{EventFormat, EventWriter};
use crate::cli::target::{with_target, TargetArgs};

/// Longest single long poll, so that `--idle-exit-ms` and Ctrl-C are noticed.
const POLL: Duration = Duration::from_millis(1000);

#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// The consumer group (its committed offsets say where to resume).
    #[arg(long)]
    group: String,
    /// Output: raw values or JSON lines.
    #[arg(long, value_enum, default_value_t)]
    format: EventFormat,
    /// Print each event with a template instead, e.g. '{offset} {key} {value}' (fields:
    /// {offset} {partition} {timestamp} {timestamp_ms} {key} {value} {header.NAME}).
    #[arg(long, conflicts_with = "format")]
    template: Option<String>,
    /// Stop once this many events were printed. Batches are printed and acknowledged whole,
    /// so the last batch may take the count past N (bound it with --batch-size).
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// Stop when no batch arrived for this long, in ms [default: wait forever].
    #[arg(long, value_name = "MS")]
    idle_exit_ms: Option<u64>,
    /// Events per batch. Every member of a group must use the same batch settings.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// How long a batch waits at the end of the log to fill up, in ms.
    #[arg(long, default_value_t = 100)]
    wait_ms: u64,
    /// How long a batch is leased before it is delivered again, in ms.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    ack_timeout_ms: u64,
    #[command(flatten)]
    target: TargetArgs,
}

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<i32> {
    let mut writer = EventWriter::stdout(args.format, args.template.as_deref())?;
    let settings = ConsumerSettings {
        batch_size: args.batch_size,
        max_wait_ms: args.wait_ms,
        ack_timeout_ms: args.ack_timeout_ms,
        ..ConsumerSettings::default()
    };
    let target = args.target.clone();
    with_target(&target, |client| async move {
        // The topic must exist: say so at once rather than on the first fetch.
        client.describe_topic(&args.topic).await?;
        let consumer = client.consumer(&args.group, &args.topic, settings);
        let mut printed = 0u64;
        let mut last_batch = Instant::now();
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            if args.max.is_some_and(|max| printed >= max) {
                break;
            }
            let poll = match args.idle_exit_ms {
                Some(idle) => {
                    let left = Duration::from_millis(idle).saturating_sub(last_batch.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    left.min(POLL)
                }
                None => POLL,
            };
            let batch = tokio::select! {
                _ = &mut interrupted => break,
                batch = consumer.next_batch(poll) => batch?,
            };
            let Some(batch) = batch else { continue };
            last_batch = Instant::now();
            if let Err(error) = write_batch(&mut writer, &batch) {
                let last = batch.first_offset + batch.events.len() as u64;
                let why = if error.kind() == ErrorKind::BrokenPipe {
                    "stdout was closed".to_string()
                } else {
                    format!("cannot write to stdout: {error}")
                };
                return Err(exit::with_code(
                    exit::ERROR,
                    format!(
                        "{why}; batch {} of partition {} (offsets {}..{}) was not acknowledged and will be delivered again",
                        batch.id, batch.partition, batch.first_offset, last
                    ),
                ));
            }
            consumer.ack(&batch).await?;
            printed += batch.events.len() as u64;
        }
        Ok(0)
    })
    .await
}

fn write_batch<W: std::io::Write>(
    writer: &mut EventWriter<W>,
    batch: &Batch,
) -> std::io::Result<()> {
    for event in &batch.events {
        writer.write_event(batch.partition, event)?;
    }
    writer.flush()
}
