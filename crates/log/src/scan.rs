//! Scanning a segment's frames: the survey's reader (`survey.rs`) and the index the writer
//! builds as it appends. A scan checks every frame's CRC and that offsets follow on densely;
//! at an invalid frame it looks ahead, within a bounded window, for where valid frames resume
//! and for the durable ends the frames after it record — the facts the recovery decision
//! (`recovery.rs`) judges. It reads only: nothing here writes.
//!
//! Invariants: lengths read from a file are checked against the format's bounds and the file's
//! length before any buffer is sized from them; the window searched after an invalid frame is
//! bounded (64 MiB), and a candidate frame's CRC is computed only when its offsets can follow.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, IndexEntry, IndexFile, FRAME_LEN_MAX, SEGMENT_HEADER_LEN};
use crate::storage::StorageFile;
use crate::survey::{InvalidFrame, Resumed, SegmentScan};

/// Bytes read per call while scanning.
const SCAN_CHUNK_BYTES: usize = 4 << 20;
/// How far past an invalid frame recovery looks for valid frames.
const AFTER_INVALID_SEARCH_BYTES_MAX: u64 = 64 << 20;
/// A frame found while searching after an invalid one must start with an offset at most this
/// far past the expected one (random bytes almost never do), which keeps the search from
/// checking the CRC of every plausible-looking length.
const RESUME_OFFSET_WINDOW: u64 = 1 << 40;

/// Builds a segment's sparse index as frames are appended or scanned; the writer and the
/// scanner share it so that a rebuilt index equals the one written at append time.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    base_offset: u64,
    interval_bytes: u64,
    bytes_since_entry: u64,
    /// Largest timestamp of the frames seen so far.
    pub timestamp_max_ms: u64,
    /// The entries built so far.
    pub entries: Vec<IndexEntry>,
}

impl IndexBuilder {
    pub(crate) fn new(base_offset: u64, interval_bytes: u32) -> Self {
        IndexBuilder {
            base_offset,
            interval_bytes: u64::from(interval_bytes),
            bytes_since_entry: 0,
            timestamp_max_ms: 0,
            entries: Vec::new(),
        }
    }

    /// Records the frame at `position` holding offsets from `first_offset`.
    pub(crate) fn on_frame(
        &mut self,
        position: u64,
        first_offset: u64,
        frame_len: u32,
        timestamp_max_ms: u64,
    ) {
        if self.bytes_since_entry >= self.interval_bytes {
            let relative_offset = u32::try_from(first_offset - self.base_offset);
            let position32 = u32::try_from(position);
            if let (Ok(relative_offset), Ok(position)) = (relative_offset, position32) {
                self.entries.push(IndexEntry {
                    relative_offset,
                    position,
                    timestamp_max_before_ms: self.timestamp_max_ms,
                });
                self.bytes_since_entry = 0;
            }
        }
        self.bytes_since_entry += u64::from(frame_len);
        self.timestamp_max_ms = self.timestamp_max_ms.max(timestamp_max_ms);
    }
}

/// Where a scan of a segment begins.
#[derive(Debug, Clone)]
pub(crate) struct ScanStart {
    position: u64,
    offset: u64,
    index: IndexBuilder,
}

impl ScanStart {
    /// At the segment's first frame.
    pub(crate) fn first_frame(base_offset: u64, index_interval_bytes: u32) -> Self {
        ScanStart {
            position: SEGMENT_HEADER_LEN as u64,
            offset: base_offset,
            index: IndexBuilder::new(base_offset, index_interval_bytes),
        }
    }

    /// At the last entry of a trusted index (a clean shutdown), continuing its index.
    pub(crate) fn after_index(index: &IndexFile, index_interval_bytes: u32) -> Self {
        let mut builder = IndexBuilder::new(index.base_offset, index_interval_bytes);
        match index.entries.last() {
            Some(last) => {
                builder.entries = index.entries[..index.entries.len() - 1].to_vec();
                builder.timestamp_max_ms = last.timestamp_max_before_ms;
                // The builder adds the last entry again when it meets its frame.
                builder.bytes_since_entry = u64::from(index_interval_bytes);
                ScanStart {
                    position: u64::from(last.position),
                    offset: index.base_offset + u64::from(last.relative_offset),
                    index: builder,
                }
            }
            None => ScanStart::first_frame(index.base_offset, index_interval_bytes),
        }
    }
}

/// The end of a run of valid frames: where it stopped, and why if not at the file's end.
struct Run {
    end: u64,
    next_offset: u64,
    frames: u64,
    invalid: Option<String>,
}

/// Scans a segment's frames from `start` to `file_len`, checking every CRC and that offsets
/// follow on densely. At the first invalid frame it records what follows (see
/// [`InvalidFrame`]); with `resume`, it goes on from where valid frames resume, and records
/// every invalid run to the end of the file.
///
/// # Errors
/// Only I/O errors; invalid bytes are reported in the [`SegmentScan`].
pub(crate) fn scan_segment(
    file: &dyn StorageFile,
    path: &Path,
    start: ScanStart,
    file_len: u64,
    resume: bool,
) -> Result<SegmentScan> {
    let ScanStart {
        position,
        offset,
        mut index,
    } = start;
    let first = scan_run(file, path, position, offset, file_len, Some(&mut index))?;
    let mut scan = SegmentScan {
        from_position: position,
        frames: first.frames,
        valid_end: first.end,
        next_offset: first.next_offset,
        invalid: Vec::new(),
        end_after_resume: None,
        index,
    };
    let mut run = first;
    while let Some(reason) = run.invalid.take() {
        let after = after_invalid(file, path, run.end, file_len, run.next_offset)?;
        let resumed = after.resumed;
        scan.invalid.push(InvalidFrame {
            position: run.end,
            offset: run.next_offset,
            reason,
            resumed,
            frames_after: after.frames,
            durable_offset_after: after.durable_offset_max,
            zeros_only: after.zeros_only,
        });
        let Some(resumed) = resumed.filter(|_| resume) else {
            break;
        };
        run = scan_run(file, path, resumed.position, resumed.offset, file_len, None)?;
        scan.end_after_resume = Some((run.end, run.next_offset));
    }
    Ok(scan)
}

/// Scans one run of valid frames from `position` (expected to start with `next_offset`).
fn scan_run(
    file: &dyn StorageFile,
    path: &Path,
    mut position: u64,
    mut next_offset: u64,
    file_len: u64,
    mut index: Option<&mut IndexBuilder>,
) -> Result<Run> {
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_start = position;
    let mut frames = 0;
    let invalid = loop {
        if position >= file_len {
            break None;
        }
        // Make sure the buffer holds at least the frame's length field.
        let needed = (position + 8).min(file_len);
        if buffer_start + (buffer.len() as u64) < needed || position < buffer_start {
            fill(
                file,
                path,
                &mut buffer,
                &mut buffer_start,
                position,
                file_len,
                SCAN_CHUNK_BYTES,
            )?;
        }
        let at = (position - buffer_start) as usize;
        let frame_len = match format::peek_frame_len(&buffer[at..]) {
            Ok(Some(len)) => u64::from(len),
            Ok(None) => {
                break Some(format!(
                    "{} bytes at the end of the file are too few for a frame",
                    file_len - position
                ))
            }
            Err(error) => break Some(error.to_string()),
        };
        if position + frame_len > file_len {
            break Some(format!(
                "frame of {frame_len} bytes runs past the end of the file ({file_len} bytes)"
            ));
        }
        if buffer_start + (buffer.len() as u64) < position + frame_len {
            let want = SCAN_CHUNK_BYTES.max(frame_len as usize);
            fill(
                file,
                path,
                &mut buffer,
                &mut buffer_start,
                position,
                file_len,
                want,
            )?;
        }
        let at = (position - buffer_start) as usize;
        let header = match format::check_frame(&buffer[at..at + frame_len as usize]) {
            Ok(header) => header,
            Err(error) => break Some(error.to_string()),
        };
        if header.base_offset != next_offset {
            break Some(format!(
                "frame starts at offset {}, expected {next_offset}",
                header.base_offset
            ));
        }
        if let Some(index) = index.as_deref_mut() {
            index.on_frame(
                position,
                header.base_offset,
                header.frame_len,
                header.timestamp_max_ms,
            );
        }
        frames += 1;
        next_offset = header.end_offset();
        position += frame_len;
    };
    Ok(Run {
        end: position,
        next_offset,
        frames,
        invalid,
    })
}

/// Refills `buffer` with up to `want` bytes from `position` (bounded by `file_len`).
fn fill(
    file: &dyn StorageFile,
    path: &Path,
    buffer: &mut Vec<u8>,
    buffer_start: &mut u64,
    position: u64,
    file_len: u64,
    want: usize,
) -> Result<()> {
    debug_assert!(want <= (FRAME_LEN_MAX as usize).max(SCAN_CHUNK_BYTES));
    let len = (want as u64).min(file_len - position) as usize;
    // Grow (zero-filling) only when needed: zeroing 4 MiB per chunk was a tenth of a scan.
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    buffer.truncate(len);
    let read = file
        .read_at(buffer, position)
        .map_err(|source| Error::io("read segment", path, source))?;
    buffer.truncate(read);
    *buffer_start = position;
    Ok(())
}

/// What follows an invalid frame.
struct AfterInvalid {
    resumed: Option<Resumed>,
    frames: u64,
    durable_offset_max: Option<u64>,
    zeros_only: bool,
}

/// Looks at the bytes after an invalid frame at `from` (within a bounded window): the first
/// valid frame whose offsets can follow `offset_min` (where valid frames resume), how many
/// valid frames there are, the largest durable offset they record, and whether everything
/// after `from` is zero.
fn after_invalid(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    file_len: u64,
    offset_min: u64,
) -> Result<AfterInvalid> {
    let end = file_len.min(from.saturating_add(AFTER_INVALID_SEARCH_BYTES_MAX));
    let mut found = AfterInvalid {
        resumed: None,
        frames: 0,
        durable_offset_max: None,
        zeros_only: true,
    };
    if end <= from {
        return Ok(found);
    }
    let mut bytes = vec![0u8; (end - from) as usize];
    let read = file
        .read_at(&mut bytes, from)
        .map_err(|source| Error::io("read segment", path, source))?;
    bytes.truncate(read);
    found.zeros_only = bytes.iter().all(|&byte| byte == 0);
    if found.zeros_only {
        // A zero length is never a frame: nothing can follow. (Beyond the window, the file
        // is not read: a torn tail is that long only in theory.)
        found.zeros_only = end == file_len;
        return Ok(found);
    }
    let mut at = 1usize;
    while at + 8 <= bytes.len() {
        let candidate = &bytes[at..];
        let plausible = format::peek_frame_len(candidate)
            .ok()
            .flatten()
            .is_some_and(|len| len as usize <= candidate.len())
            && candidate.len() >= format::FRAME_HEADER_LEN
            && {
                let base = u64::from_le_bytes(candidate[8..16].try_into().unwrap_or_default());
                // Where valid frames first resume, the damaged bytes before it held at most
                // one event per 18 bytes (an event's fixed part): a frame inside an event's
                // value that names offsets further on is not taken for it.
                let window = if found.resumed.is_none() {
                    at as u64 / format::EVENT_FIXED_LEN as u64 + 1
                } else {
                    RESUME_OFFSET_WINDOW
                };
                base >= offset_min && base - offset_min <= window
            };
        if plausible {
            if let Ok(header) = format::check_frame(candidate) {
                if found.resumed.is_none() {
                    found.resumed = Some(Resumed {
                        position: from + at as u64,
                        offset: header.base_offset,
                    });
                }
                found.frames += 1;
                if let Some(durable) = header.durable_offset {
                    found.durable_offset_max =
                        Some(found.durable_offset_max.map_or(durable, |d| d.max(durable)));
                }
                at += header.frame_len as usize;
                continue;
            }
        }
        at += 1;
    }
    Ok(found)
}
