//! `weir group list|describe|reset|delete`.

use std::io::Write;

use serde_json::json;
use weir_client::{GroupDescription, ResetTo};

use crate::cli::exit;
use crate::cli::output::print_table;
use crate::cli::target::{with_target, TargetArgs};
use crate::cli::time::{human_ms, parse_time, TIME_FORMS};
use crate::cli::topic::TableFormat;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// List the consumer groups, one name per line.
    List {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show a group's progress per partition: committed and end offsets, lag in events and
    /// time, batches in flight, oldest unacknowledged age, redeliveries, dead letters.
    Describe {
        /// The group.
        group: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: TableFormat,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Move a group's committed offsets on a topic (the group's consumers on the node are let
    /// go first).
    Reset {
        /// The group.
        group: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Where to: earliest, latest, offset:N or time:TIME (TIME as for replay --from-time).
        #[arg(long, value_name = "WHERE")]
        to: String,
        /// Only this partition [default: every partition of the topic].
        #[arg(long)]
        partition: Option<u32>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Delete a group's committed offsets (all topics).
    Delete {
        /// The group.
        group: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub(crate) async fn run(command: GroupCommand) -> anyhow::Result<i32> {
    match command {
        GroupCommand::List { target } => {
            with_target(&target, |client| async move {
                let mut out = std::io::stdout().lock();
                for group in client.list_groups().await? {
                    writeln!(out, "{group}")?;
                }
                Ok(0)
            })
            .await
        }
        GroupCommand::Describe {
            group,
            format,
            target,
        } => {
            with_target(&target, |client| async move {
                let description = client.describe_group(&group).await?;
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
        GroupCommand::Reset {
            group,
            topic,
            to,
            partition,
            target,
        } => {
            let to = parse_reset(&to)?;
            with_target(&target, |client| async move {
                let moved = client.reset_group(&group, &topic, to, partition).await?;
                let mut out = std::io::stdout().lock();
                let rows: Vec<Vec<String>> = moved
                    .iter()
                    .map(|(p, offset)| vec![topic.clone(), p.to_string(), offset.to_string()])
                    .collect();
                print_table(&mut out, &["TOPIC", "PARTITION", "COMMITTED"], &rows)?;
                Ok(0)
            })
            .await
        }
        GroupCommand::Delete { group, target } => {
            with_target(&target, |client| async move {
                client.delete_group(&group).await?;
                writeln!(std::io::stdout(), "deleted group {group}")?;
                Ok(0)
            })
            .await
        }
    }
}

fn parse_reset(text: &str) -> anyhow::Result<ResetTo> {
    match text {
        "earliest" => return Ok(ResetTo::Earliest),
        "latest" => return Ok(ResetTo::Latest),
        _ => {}
    }
    if let Some(offset) = text.strip_prefix("offset:") {
        return offset
            .parse()
            .map(ResetTo::Offset)
            .map_err(|_| exit::usage(format!("bad --to {text:?}: {offset:?} is not an offset")));
    }
    if let Some(time) = text.strip_prefix("time:") {
        return parse_time(time).map(ResetTo::TimeMs);
    }
    Err(exit::usage(format!(
        "bad --to {text:?}: expected earliest, latest, offset:N or time:TIME ({TIME_FORMS})"
    )))
}

fn describe_json(d: &GroupDescription) -> serde_json::Value {
    let partitions: Vec<_> = d
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed_offset": p.committed_offset,
                "end_offset": p.end_offset,
                "lag_events": p.lag_events,
                "lag_ms": p.lag_ms,
                "active": p.active,
                "in_flight": p.in_flight,
                "oldest_unacked_age_ms": p.oldest_unacked_age_ms,
                "redeliveries": p.redeliveries,
                "dead_letters": p.dead_letters,
            })
        })
        .collect();
    json!({"group": d.group, "partitions": partitions})
}

fn print_description(out: &mut impl Write, d: &GroupDescription) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.committed_offset.to_string(),
                p.end_offset.to_string(),
                p.lag_events.to_string(),
                human_ms(p.lag_ms),
                p.in_flight.to_string(),
                p.oldest_unacked_age_ms.map_or_else(|| "-".into(), human_ms),
                p.redeliveries.to_string(),
                p.dead_letters.to_string(),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "END",
            "LAG",
            "LAG-TIME",
            "IN-FLIGHT",
            "OLDEST-UNACKED",
            "REDELIVERIES",
            "DEAD-LETTERS",
        ],
        &rows,
    )
}
