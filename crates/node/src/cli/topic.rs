//! `weir topic create|list|describe|delete`.

use std::io::Write;

use serde_json::json;
use weir_client::{Limit, SyncPolicy, TopicDescription, TopicSettings};

use crate::cli::exit;
use crate::cli::output::print_table;
use crate::cli::target::{with_target, TargetArgs};
use crate::cli::time::{format_time, human_ms};

/// Table or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum TableFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic with a fixed number of partitions.
    Create {
        /// The topic's name: [A-Za-z0-9._-]{1,249}.
        topic: String,
        /// Number of partitions (fixed for the topic's life).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Delete a partition's oldest segments past this many bytes [default: unlimited].
        #[arg(long, value_name = "BYTES")]
        retention_bytes_max: Option<u64>,
        /// Delete segments whose newest event is older than this (e.g. 7d, 12h).
        #[arg(long, value_name = "DURATION")]
        retention_age_max: Option<String>,
        /// Roll to a new segment past this many bytes [default: 1 GiB].
        #[arg(long, value_name = "BYTES")]
        segment_bytes_max: Option<u64>,
        /// When appends are fsynced: `always` (durable, the default), `interval-lossy:MS` or
        /// `never-lossy` (both can lose acknowledged events on a power cut).
        #[arg(long, value_name = "POLICY")]
        sync: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the topics and their partition counts.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: TableFormat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show a topic's settings and, per partition, offsets, size and timestamps.
    Describe {
        /// The topic.
        topic: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: TableFormat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a topic and all its events.
    Delete {
        /// The topic.
        topic: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub(crate) async fn run(command: TopicCommand) -> anyhow::Result<i32> {
    match command {
        TopicCommand::Create {
            topic,
            partitions,
            retention_bytes_max,
            retention_age_max,
            segment_bytes_max,
            sync,
            target,
        } => {
            let settings = TopicSettings {
                retention_bytes_max: retention_bytes_max.map(Limit::Max),
                retention_age_max_ms: retention_age_max
                    .as_deref()
                    .map(|text| {
                        crate::cli::time::parse_duration(text)
                            .map(|d| Limit::Max(d.as_millis() as u64))
                            .map_err(|e| exit::usage(format!("--retention-age-max: {e}")))
                    })
                    .transpose()?,
                segment_bytes_max,
                segment_age_max_ms: None,
                sync_policy: sync.as_deref().map(parse_sync).transpose()?,
            };
            with_target(&target, |client| async move {
                client.create_topic(&topic, partitions, settings).await?;
                writeln!(
                    std::io::stdout(),
                    "created topic {topic} with {partitions} partition(s)"
                )?;
                Ok(0)
            })
            .await
        }
        TopicCommand::List { format, target } => {
            with_target(&target, |client| async move {
                let topics = client.list_topics().await?;
                let mut out = std::io::stdout().lock();
                match format {
                    TableFormat::Json => {
                        let list: Vec<_> = topics
                            .iter()
                            .map(|t| json!({"topic": t.topic, "partitions": t.partitions}))
                            .collect();
                        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                    }
                    TableFormat::Table => {
                        let rows: Vec<Vec<String>> = topics
                            .iter()
                            .map(|t| vec![t.topic.clone(), t.partitions.to_string()])
                            .collect();
                        print_table(&mut out, &["TOPIC", "PARTITIONS"], &rows)?;
                    }
                }
                Ok(0)
            })
            .await
        }
        TopicCommand::Describe {
            topic,
            format,
            target,
        } => {
            with_target(&target, |client| async move {
                let description = client.describe_topic(&topic).await?;
                let mut out = std::io::stdout().lock();
                match format {
                    TableFormat::Json => writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&describe_json(&description))?
                    )?,
                    TableFormat::Table => print_description(&mut out, &description)?,
                }
                Ok(0)
            })
            .await
        }
        TopicCommand::Delete { topic, target } => {
            with_target(&target, |client| async move {
                client.delete_topic(&topic).await?;
                writeln!(std::io::stdout(), "deleted topic {topic}")?;
                Ok(0)
            })
            .await
        }
    }
}

fn parse_sync(text: &str) -> anyhow::Result<SyncPolicy> {
    match text {
        "always" => Ok(SyncPolicy::Always),
        "never-lossy" => Ok(SyncPolicy::NeverLossy),
        other => match other
            .strip_prefix("interval-lossy:")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            Some(interval_ms) if interval_ms > 0 => Ok(SyncPolicy::IntervalLossy { interval_ms }),
            _ => Err(exit::usage(format!(
                "bad --sync {text:?}: expected always, interval-lossy:MS (MS ≥ 1) or never-lossy"
            ))),
        },
    }
}

fn limit_text(limit: Option<Limit>, unit: fn(u64) -> String) -> String {
    match limit {
        None | Some(Limit::Unlimited) => "unlimited".into(),
        Some(Limit::Max(value)) => unit(value),
    }
}

fn limit_json(limit: Option<Limit>) -> serde_json::Value {
    match limit {
        None | Some(Limit::Unlimited) => serde_json::Value::Null,
        Some(Limit::Max(value)) => json!(value),
    }
}

fn sync_text(sync: Option<SyncPolicy>) -> String {
    match sync.unwrap_or_default() {
        SyncPolicy::Always => "always".into(),
        SyncPolicy::IntervalLossy { interval_ms } => format!("interval-lossy:{interval_ms}"),
        SyncPolicy::NeverLossy => "never-lossy".into(),
    }
}

fn describe_json(d: &TopicDescription) -> serde_json::Value {
    let partitions: Vec<_> = d
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "size_bytes": p.size_bytes,
                "segment_count": p.segment_count,
                "oldest_timestamp_ms": p.oldest_timestamp_ms,
                "newest_timestamp_ms": p.newest_timestamp_ms,
            })
        })
        .collect();
    json!({
        "topic": d.topic,
        "created_ms": d.created_ms,
        "settings": {
            "retention_bytes_max": limit_json(d.settings.retention_bytes_max),
            "retention_age_max_ms": limit_json(d.settings.retention_age_max_ms),
            "segment_bytes_max": d.settings.segment_bytes_max,
            "segment_age_max_ms": limit_json(d.settings.segment_age_max_ms),
            "sync": sync_text(d.settings.sync_policy),
        },
        "partitions": partitions,
    })
}

fn print_description(out: &mut impl Write, d: &TopicDescription) -> std::io::Result<()> {
    writeln!(out, "topic:                {}", d.topic)?;
    writeln!(out, "created:              {}", format_time(d.created_ms))?;
    writeln!(out, "partitions:           {}", d.partitions.len())?;
    writeln!(
        out,
        "retention_bytes_max:  {}",
        limit_text(d.settings.retention_bytes_max, |b| format!("{b} bytes"))
    )?;
    writeln!(
        out,
        "retention_age_max:    {}",
        limit_text(d.settings.retention_age_max_ms, human_ms)
    )?;
    writeln!(
        out,
        "segment_bytes_max:    {}",
        d.settings
            .segment_bytes_max
            .map_or_else(|| "-".into(), |b| format!("{b} bytes"))
    )?;
    writeln!(
        out,
        "segment_age_max:      {}",
        limit_text(d.settings.segment_age_max_ms, human_ms)
    )?;
    writeln!(
        out,
        "sync:                 {}",
        sync_text(d.settings.sync_policy)
    )?;
    writeln!(out)?;
    let time = |t: Option<u64>| t.map_or_else(|| "-".into(), format_time);
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.start_offset.to_string(),
                p.end_offset.to_string(),
                p.size_bytes.to_string(),
                p.segment_count.to_string(),
                time(p.oldest_timestamp_ms),
                time(p.newest_timestamp_ms),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "PARTITION",
            "START",
            "END",
            "BYTES",
            "SEGMENTS",
            "OLDEST",
            "NEWEST",
        ],
        &rows,
    )
}
