//! `weir produce TOPIC`: events from stdin, one per line or length-delimited (`--binary`),
//! with an optional key separator, headers and explicit partition.
//!
//! A reader thread parses stdin and hands events over a bounded channel; the appender takes
//! whatever is ready (up to `--batch-size` events) and appends it in one request, so a pipe is
//! appended in large batches while a person typing sees each line appended at once.

use std::io::{BufRead, Read, Write};

use anyhow::Context;
use tokio::sync::mpsc;
use weir_client::{Partitioning, Record};

use crate::cli::exit;
use crate::cli::target::{with_target, TargetArgs};

/// The largest `--binary` record read (checked before allocating).
const BINARY_RECORD_BYTES_MAX: u32 = 16 << 20;
/// Bytes of events sent in one append at most (well inside the node's frame limit).
const APPEND_BYTES_MAX: usize = 4 << 20;

#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Read length-delimited records instead of lines: a 4-byte little-endian length, then
    /// that many bytes, repeated.
    #[arg(long)]
    binary: bool,
    /// Split each line at the first SEP into key and value (a line without SEP is an error).
    #[arg(long, value_name = "SEP", conflicts_with = "binary")]
    key_separator: Option<String>,
    /// A header for every event, NAME=VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Append to this partition [default: by key; keyless events round-robin].
    #[arg(long)]
    partition: Option<u32>,
    /// Print "PARTITION OFFSET" for every event appended, in input order.
    #[arg(long)]
    print_offsets: bool,
    /// At most this many events per append.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    #[command(flatten)]
    target: TargetArgs,
}

/// One parsed input event with its size in bytes, or the input's error.
type Item = anyhow::Result<(Record, usize)>;

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<i32> {
    let mut headers = Vec::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once('=') else {
            return Err(exit::usage(format!(
                "bad --header {header:?}: expected NAME=VALUE"
            )));
        };
        if name.is_empty() {
            return Err(exit::usage(format!(
                "bad --header {header:?}: the name is empty"
            )));
        }
        headers.push((name.to_string(), value.as_bytes().to_vec()));
    }
    if args.key_separator.as_deref() == Some("") {
        return Err(exit::usage("--key-separator must not be empty"));
    }
    let partitioning = args
        .partition
        .map_or(Partitioning::Key, Partitioning::Partition);
    let target = args.target.clone();
    with_target(&target, |client| async move {
        let (sender, mut receiver) = mpsc::channel::<Item>(4 * args.batch_size as usize);
        let binary = args.binary;
        let separator = args.key_separator.clone().map(String::into_bytes);
        std::thread::spawn(move || {
            let stdin = std::io::stdin().lock();
            let sent = if binary {
                read_binary(stdin, &headers, &sender)
            } else {
                read_lines(stdin, separator.as_deref(), &headers, &sender)
            };
            if let Err(error) = sent {
                let _ = sender.blocking_send(Err(error));
            }
        });
        let mut stdout = std::io::stdout().lock();
        let mut produced = 0u64;
        while let Some(first) = receiver.recv().await {
            let (record, mut bytes) = first?;
            let mut records = vec![record];
            let mut failed = None;
            while records.len() < args.batch_size as usize && bytes < APPEND_BYTES_MAX {
                match receiver.try_recv() {
                    Ok(Ok((record, size))) => {
                        bytes += size;
                        records.push(record);
                    }
                    Ok(Err(error)) => {
                        failed = Some(error);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let count = records.len() as u64;
            let positions = client
                .append(&args.topic, records, partitioning)
                .await
                .with_context(|| {
                    format!(
                        "appending events {}..{} of the input",
                        produced + 1,
                        produced + count
                    )
                })?;
            produced += count;
            if args.print_offsets {
                for (partition, offset) in positions {
                    writeln!(stdout, "{partition} {offset}")?;
                }
                stdout.flush()?;
            }
            if let Some(error) = failed {
                return Err(error.context(format!("after {produced} events were appended")));
            }
        }
        Ok(0)
    })
    .await
}

/// A record and its size (an estimate is enough to keep an append well inside a frame).
fn record(key: Option<&[u8]>, value: &[u8], headers: &[(String, Vec<u8>)]) -> (Record, usize) {
    let size = 64
        + key.map_or(0, <[u8]>::len)
        + value.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 8)
            .sum::<usize>();
    let mut record = Record::new(value.to_vec());
    if let Some(key) = key {
        record = record.key(key.to_vec());
    }
    for (name, value) in headers {
        record = record.header(name.clone(), value.clone());
    }
    (record, size)
}

/// Lines: one event each; the newline is not part of the value.
fn read_lines(
    mut input: impl BufRead,
    separator: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    sender: &mpsc::Sender<Item>,
) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            return Ok(());
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let event = match separator {
            None => record(None, &line, headers),
            Some(separator) => {
                let Some(at) = line
                    .windows(separator.len())
                    .position(|window| window == separator)
                else {
                    anyhow::bail!(
                        "line {number} has no key separator {:?}",
                        String::from_utf8_lossy(separator)
                    );
                };
                record(Some(&line[..at]), &line[at + separator.len()..], headers)
            }
        };
        if sender.blocking_send(Ok(event)).is_err() {
            return Ok(());
        }
    }
}

/// Length-delimited records: a u32 little-endian length, then the value's bytes.
fn read_binary(
    mut input: impl Read,
    headers: &[(String, Vec<u8>)],
    sender: &mpsc::Sender<Item>,
) -> anyhow::Result<()> {
    let mut position = 0u64;
    loop {
        let mut length = [0u8; 4];
        let read = read_full(&mut input, &mut length).context("reading stdin")?;
        if read == 0 {
            return Ok(());
        }
        if read < 4 {
            anyhow::bail!("the input ends inside the length of the record at byte {position}");
        }
        let len = u32::from_le_bytes(length);
        if len > BINARY_RECORD_BYTES_MAX {
            anyhow::bail!(
                "the record at byte {position} claims {len} bytes, over the limit of {BINARY_RECORD_BYTES_MAX}"
            );
        }
        let mut value = vec![0u8; len as usize];
        if read_full(&mut input, &mut value).context("reading stdin")? < value.len() {
            anyhow::bail!("the input ends inside the record at byte {position} ({len} bytes)");
        }
        position += 4 + u64::from(len);
        if sender
            .blocking_send(Ok(record(None, &value, headers)))
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}
