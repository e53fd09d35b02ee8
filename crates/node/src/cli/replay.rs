//! `weir replay TOPIC`: one partition's events from an offset or a time, up to an end offset
//! or following new ones, as raw values, JSON lines or a template. Replay never moves a group.
//! A progress bar (events/s, ETA to the end offset) goes to stderr when it is a terminal.

use std::io::{ErrorKind, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use weir_client::ReadFrom;

use crate::cli::exit;
use crate::cli::output::{EventFormat, EventWriter};
use crate::cli::target::{with_target, TargetArgs};
use crate::cli::time::parse_time;

/// Events asked for per read.
const READ_EVENTS: u32 = 1000;
/// Bytes asked for per read.
const READ_BYTES: u32 = 4 << 20;
/// Longest long poll when following.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The topic.
    topic: String,
    /// The partition.
    #[arg(long, default_value_t = 0)]
    partition: u32,
    /// Start at this offset [default: the partition's first event].
    #[arg(long, value_name = "N", conflicts_with = "from_time")]
    from_offset: Option<u64>,
    /// Start at the first event at or after this time: RFC 3339 (2026-11-25T10:00:00Z), a
    /// duration ago ("15m ago", "2h ago") or "now".
    #[arg(long, value_name = "TIME")]
    from_time: Option<String>,
    /// Stop before this offset (exclusive) [default: at the end, or never with --follow].
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
    /// Keep waiting for new events at the end (until Ctrl-C or --to-offset).
    #[arg(long)]
    follow: bool,
    /// Output: raw values or JSON lines.
    #[arg(long, value_enum, default_value_t)]
    format: EventFormat,
    /// Print each event with a template instead, e.g. '{offset} {value}'.
    #[arg(long, conflicts_with = "format")]
    template: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
}

pub(crate) async fn run(args: ReplayArgs) -> anyhow::Result<i32> {
    let mut writer = EventWriter::stdout(args.format, args.template.as_deref())?;
    let from = match (&args.from_time, args.from_offset) {
        (Some(time), _) => ReadFrom::TimeMs(parse_time(time)?),
        (None, Some(offset)) => ReadFrom::Offset(offset),
        (None, None) => ReadFrom::Earliest,
    };
    if let (Some(from), Some(to)) = (args.from_offset, args.to_offset) {
        if to < from {
            return Err(exit::usage(format!(
                "--to-offset {to} is before --from-offset {from}"
            )));
        }
    }
    let target = args.target.clone();
    with_target(&target, |client| async move {
        let mut from = from;
        let mut progress: Option<ProgressBar> = None;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let want = match (from, args.to_offset) {
                (ReadFrom::Offset(next), Some(to)) => {
                    if next >= to {
                        break;
                    }
                    u32::try_from(to - next).unwrap_or(u32::MAX).min(READ_EVENTS)
                }
                _ => READ_EVENTS,
            };
            let wait = if args.follow { FOLLOW_POLL } else { Duration::ZERO };
            let read = tokio::select! {
                _ = &mut interrupted => break,
                read = client.read(&args.topic, args.partition, from, want, READ_BYTES, wait) => read,
            };
            let read = match read {
                Ok(read) => read,
                Err(weir_client::Error::Server {
                    code: weir_client::ErrorCode::EventsLost,
                    message,
                    offsets: Some(lost),
                }) => {
                    // Lost to damage and marked by `weir repair`: say so, and go on after them.
                    eprintln!("weir: {message}; the replay goes on after them");
                    from = ReadFrom::Offset(lost.end_offset);
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let first = read.events.first().map_or(read.next_offset, |e| e.offset);
            let bar = progress.get_or_insert_with(|| {
                progress_bar(first, args.to_offset, read.end_offset, args.follow)
            });
            let mut done = false;
            for event in &read.events {
                if args.to_offset.is_some_and(|to| event.offset >= to) {
                    done = true;
                    break;
                }
                if let Err(error) = writer.write_event(args.partition, event) {
                    return broken(error);
                }
                bar.inc(1);
            }
            if let Err(error) = writer.flush() {
                return broken(error);
            }
            let empty = read.events.is_empty();
            from = ReadFrom::Offset(read.next_offset);
            if done || (empty && !args.follow) {
                break;
            }
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        Ok(0)
    })
    .await
}

/// A closed stdout ends a replay quietly (as `replay | head` expects); other write errors are
/// errors.
fn broken(error: std::io::Error) -> anyhow::Result<i32> {
    if error.kind() == ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(anyhow::anyhow!("cannot write to stdout: {error}"))
    }
}

/// A bar on stderr when stderr is a terminal; a hidden one otherwise.
fn progress_bar(first: u64, to: Option<u64>, end: u64, follow: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let target_end = match (to, follow) {
        (Some(to), _) => Some(to),
        (None, false) => Some(end),
        (None, true) => None,
    };
    let bar = match target_end {
        Some(end) => {
            let bar = ProgressBar::with_draw_target(
                Some(end.saturating_sub(first)),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} events  {per_sec}  ETA {eta}")
            {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} events  {per_sec}") {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
