//! Printing events: raw values, JSON lines, or a template, to a buffered stdout whose write
//! errors (a closed pipe above all) reach the caller, so that nothing is acknowledged that was
//! not written out.

use std::io::{self, Write};

use base64::Engine as _;
use weir_client::Event;

use crate::cli::exit;
use crate::cli::time::format_time;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum EventFormat {
    /// The value's bytes as they are, then a newline.
    #[default]
    Raw,
    /// One JSON object per line: partition, offset, timestamp, timestamp_ms, key, headers,
    /// value. Bytes that are not UTF-8 are given base64-encoded under `key_base64` /
    /// `value_base64` instead.
    Json,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Offset,
    Partition,
    Timestamp,
    TimestampMs,
    Key,
    Value,
    Header(String),
}

/// The fields a template may name.
pub(crate) const TEMPLATE_FIELDS: &str =
    "{offset} {partition} {timestamp} {timestamp_ms} {key} {value} {header.NAME}";

/// A printer of events.
#[derive(Debug)]
pub(crate) struct EventWriter<W: Write> {
    out: W,
    format: EventFormat,
    template: Option<Vec<Piece>>,
}

impl EventWriter<io::BufWriter<io::Stdout>> {
    /// Prints to stdout in `format`, or with `template` if one is given.
    ///
    /// # Errors
    /// A usage error for a bad template.
    pub(crate) fn stdout(format: EventFormat, template: Option<&str>) -> anyhow::Result<Self> {
        EventWriter::new(io::BufWriter::new(io::stdout()), format, template)
    }
}

impl<W: Write> EventWriter<W> {
    /// Prints to `out`.
    ///
    /// # Errors
    /// A usage error for a bad template.
    pub(crate) fn new(out: W, format: EventFormat, template: Option<&str>) -> anyhow::Result<Self> {
        let template = template.map(parse_template).transpose()?;
        Ok(EventWriter {
            out,
            format,
            template,
        })
    }

    /// Writes one event (buffered).
    ///
    /// # Errors
    /// The write failed (e.g. a closed pipe).
    pub(crate) fn write_event(&mut self, partition: u32, event: &Event) -> io::Result<()> {
        if let Some(template) = &self.template {
            let mut line = Vec::new();
            for piece in template {
                match piece {
                    Piece::Text(text) => line.extend_from_slice(text.as_bytes()),
                    Piece::Offset => line.extend_from_slice(event.offset.to_string().as_bytes()),
                    Piece::Partition => line.extend_from_slice(partition.to_string().as_bytes()),
                    Piece::Timestamp => {
                        line.extend_from_slice(format_time(event.timestamp_ms).as_bytes())
                    }
                    Piece::TimestampMs => {
                        line.extend_from_slice(event.timestamp_ms.to_string().as_bytes())
                    }
                    Piece::Key => line.extend_from_slice(event.key.as_deref().unwrap_or_default()),
                    Piece::Value => line.extend_from_slice(&event.value),
                    Piece::Header(name) => {
                        if let Some((_, value)) = event.headers.iter().find(|(n, _)| n == name) {
                            line.extend_from_slice(value);
                        }
                    }
                }
            }
            line.push(b'\n');
            return self.out.write_all(&line);
        }
        match self.format {
            EventFormat::Raw => {
                self.out.write_all(&event.value)?;
                self.out.write_all(b"\n")
            }
            EventFormat::Json => {
                let value = event_json(partition, event);
                serde_json::to_writer(&mut self.out, &value).map_err(io::Error::from)?;
                self.out.write_all(b"\n")
            }
        }
    }

    /// Flushes what was written.
    ///
    /// # Errors
    /// The write failed (e.g. a closed pipe).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One event as a JSON line. Bytes that are UTF-8 are given as text under `key`/`value`;
/// others base64-encoded under `key_base64`/`value_base64` (the text field is then absent).
#[derive(Debug, serde::Serialize)]
pub(crate) struct EventJson<'a> {
    partition: u32,
    offset: u64,
    timestamp: String,
    timestamp_ms: u64,
    /// `null` when the event has no key; absent when the key is given as `key_base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    headers: Vec<HeaderJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// One header of an [`EventJson`].
#[derive(Debug, serde::Serialize)]
pub(crate) struct HeaderJson<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

/// Text if UTF-8, else base64.
fn text_or_base64(bytes: &[u8]) -> (Option<&str>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// The JSON line of one event.
pub(crate) fn event_json(partition: u32, event: &Event) -> EventJson<'_> {
    let (key, key_base64) = match &event.key {
        None => (Some(None), None),
        Some(key) => match text_or_base64(key) {
            (Some(text), _) => (Some(Some(text)), None),
            (None, encoded) => (None, encoded),
        },
    };
    let (value, value_base64) = text_or_base64(&event.value);
    EventJson {
        partition,
        offset: event.offset,
        timestamp: format_time(event.timestamp_ms),
        timestamp_ms: event.timestamp_ms,
        key,
        key_base64,
        headers: event
            .headers
            .iter()
            .map(|(name, value)| {
                let (value, value_base64) = text_or_base64(value);
                HeaderJson {
                    name,
                    value,
                    value_base64,
                }
            })
            .collect(),
        value,
        value_base64,
    }
}

/// Parses `{field}` placeholders; `{{` and `}}` are literal braces, `\n` and `\t` escapes.
fn parse_template(template: &str) -> anyhow::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '\\' if chars.peek() == Some(&'n') => {
                chars.next();
                text.push('\n');
            }
            '\\' if chars.peek() == Some(&'t') => {
                chars.next();
                text.push('\t');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let piece = match name.as_str() {
                    "offset" => Piece::Offset,
                    "partition" => Piece::Partition,
                    "timestamp" => Piece::Timestamp,
                    "timestamp_ms" => Piece::TimestampMs,
                    "key" => Piece::Key,
                    "value" => Piece::Value,
                    other => match other.strip_prefix("header.") {
                        Some(header) if !header.is_empty() => Piece::Header(header.to_string()),
                        _ => {
                            return Err(exit::usage(format!(
                                "bad template {template:?}: unknown field {{{name}}}; the fields are {TEMPLATE_FIELDS}"
                            )))
                        }
                    },
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Prints rows as a table whose columns are aligned (numbers to the right).
pub(crate) fn print_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|row| {
                    row[i] == "-" || row[i].chars().next().is_some_and(|c| c.is_ascii_digit())
                })
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if numeric[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < cells.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        line
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            offset: 7,
            timestamp_ms: 1000,
            key: Some(b"k".to_vec()),
            headers: vec![("trace".into(), vec![0xff, 0x00])],
            value: b"hello".to_vec(),
        }
    }

    #[test]
    fn templates_name_fields() {
        let mut out = Vec::new();
        let mut writer = EventWriter::new(
            &mut out,
            EventFormat::Raw,
            Some("{offset}\\t{key}={value} {{x}}"),
        )
        .unwrap();
        writer.write_event(2, &event()).unwrap();
        drop(writer);
        assert_eq!(out, b"7\tk=hello {x}\n");
        let error = parse_template("{nope}").unwrap_err();
        assert!(
            error.to_string().contains("unknown field {nope}"),
            "{error}"
        );
    }

    #[test]
    fn json_uses_base64_for_bytes_that_are_not_utf8() {
        let value = serde_json::to_value(event_json(2, &event())).unwrap();
        assert_eq!(value["value"], "hello");
        assert_eq!(value["key"], "k");
        assert_eq!(value["headers"][0]["value_base64"], "/wA=");
        assert_eq!(value["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(value["partition"], 2);
        let line = serde_json::to_string(&event_json(2, &event())).unwrap();
        assert!(
            line.starts_with(r#"{"partition":2,"offset":7,"timestamp":"#),
            "{line}"
        );
        let keyless = Event {
            key: None,
            ..event()
        };
        let line = serde_json::to_string(&event_json(2, &keyless)).unwrap();
        assert!(line.contains(r#""key":null"#), "{line}");
    }
}
