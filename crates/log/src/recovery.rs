//! Recovery: scanning a segment's frames, and the decision of what an invalid frame means.
//!
//! The decision is a pure function ([`decide`]) so that its table is tested on its own:
//!
//! | where the first invalid frame is                      | verdict                      |
//! |-------------------------------------------------------|------------------------------|
//! | nowhere                                               | clean                        |
//! | in a sealed segment                                   | corruption (error)           |
//! | in the active segment, below the recovery checkpoint  | corruption (error)           |
//! | in the active segment, at or above the checkpoint     | torn tail: truncate and sync |
//!
//! A torn tail is normal after a crash: unsynced writes may be missing, zeroed, garbage or out
//! of order, and none of them was acknowledged because an acknowledgement follows an fsync of
//! everything before it. When valid-looking frames follow the torn one, recovery still cuts
//! them (they were never acknowledged: something before them was not durable) and says so.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{self, IndexEntry, FRAME_LEN_MAX, SEGMENT_HEADER_LEN};
use crate::storage::StorageFile;

/// Bytes read per call while scanning.
const SCAN_CHUNK_BYTES: usize = 4 << 20;
/// How far past a torn frame recovery looks for valid-looking frames to report.
const DISCARD_SEARCH_BYTES_MAX: u64 = 64 << 20;

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

    /// Sets the bytes of frames since the last entry (when resuming from an index file).
    pub(crate) fn set_bytes_since_entry(&mut self, bytes: u64) {
        self.bytes_since_entry = bytes;
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

/// The first invalid frame a scan met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub position: u64,
    pub reason: String,
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Position after the last valid frame.
    pub valid_end: u64,
    /// Offset after the last valid frame's events.
    pub next_offset: u64,
    /// The index of the valid frames.
    pub index: IndexBuilder,
    /// The first invalid frame, if the scan stopped before the end of the file.
    pub invalid: Option<Invalid>,
}

/// Scans the frames of a segment from its first frame to `file_len`, checking every CRC and
/// that offsets follow on densely from `base_offset`.
///
/// # Errors
/// Only I/O errors; invalid bytes are reported in [`ScanOutcome::invalid`].
pub(crate) fn scan(
    file: &dyn StorageFile,
    path: &Path,
    base_offset: u64,
    file_len: u64,
    index_interval_bytes: u32,
) -> Result<ScanOutcome> {
    let mut index = IndexBuilder::new(base_offset, index_interval_bytes);
    let mut position = SEGMENT_HEADER_LEN as u64;
    let mut next_offset = base_offset;
    let mut buffer: Vec<u8> = Vec::new();
    let mut buffer_start = position;
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
                break Some(Invalid {
                    position,
                    reason: format!(
                        "{} bytes at the end of the file are too few for a frame",
                        file_len - position
                    ),
                })
            }
            Err(error) => {
                break Some(Invalid {
                    position,
                    reason: error.to_string(),
                })
            }
        };
        if position + frame_len > file_len {
            break Some(Invalid {
                position,
                reason: format!(
                    "frame of {frame_len} bytes runs past the end of the file ({file_len} bytes)"
                ),
            });
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
            Err(error) => {
                break Some(Invalid {
                    position,
                    reason: error.to_string(),
                })
            }
        };
        if header.base_offset != next_offset {
            break Some(Invalid {
                position,
                reason: format!(
                    "frame starts at offset {}, expected {next_offset}",
                    header.base_offset
                ),
            });
        }
        index.on_frame(
            position,
            header.base_offset,
            header.frame_len,
            header.timestamp_max_ms,
        );
        next_offset = header.end_offset();
        position += frame_len;
    };
    Ok(ScanOutcome {
        valid_end: position,
        next_offset,
        index,
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

/// Counts valid-looking frames with offsets ≥ `offset_min` in the bytes after a torn frame
/// at `from`: evidence that writes persisted out of order, reported when recovery cuts them.
///
/// # Errors
/// Only I/O errors.
pub(crate) fn count_frames_after(
    file: &dyn StorageFile,
    path: &Path,
    from: u64,
    file_len: u64,
    offset_min: u64,
) -> Result<u64> {
    let end = file_len.min(from.saturating_add(DISCARD_SEARCH_BYTES_MAX));
    if end <= from + 1 {
        return Ok(0);
    }
    let mut bytes = vec![0u8; (end - from) as usize];
    let read = file
        .read_at(&mut bytes, from)
        .map_err(|source| Error::io("read segment", path, source))?;
    bytes.truncate(read);
    let mut count = 0;
    let mut at = 1usize;
    while at + 8 <= bytes.len() {
        match format::check_frame(&bytes[at..]) {
            Ok(header) if header.base_offset >= offset_min => {
                count += 1;
                at += header.frame_len as usize;
            }
            _ => at += 1,
        }
    }
    Ok(count)
}

/// What recovery does about a segment's first invalid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No invalid frame.
    Clean,
    /// Cut the file at `position` (a torn tail).
    Truncate { position: u64 },
    /// Refuse to open: acknowledged data is damaged.
    Corrupt { position: u64 },
}

/// The recovery decision table (see the module docs).
///
/// `checkpoint_position` is the recovery checkpoint's position if it lies in this segment, or
/// `None` if the checkpoint is in an earlier segment (or missing).
pub(crate) fn decide(
    sealed: bool,
    invalid_at: Option<u64>,
    checkpoint_position: Option<u64>,
) -> Verdict {
    match invalid_at {
        None => Verdict::Clean,
        Some(position) if sealed => Verdict::Corrupt { position },
        Some(position) if checkpoint_position.is_some_and(|checkpoint| position < checkpoint) => {
            Verdict::Corrupt { position }
        }
        Some(position) => Verdict::Truncate { position },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        assert_eq!(decide(false, None, None), Verdict::Clean);
        assert_eq!(decide(true, None, Some(100)), Verdict::Clean);
        assert_eq!(
            decide(true, Some(50), None),
            Verdict::Corrupt { position: 50 }
        );
        assert_eq!(
            decide(false, Some(50), Some(100)),
            Verdict::Corrupt { position: 50 }
        );
        assert_eq!(
            decide(false, Some(100), Some(100)),
            Verdict::Truncate { position: 100 }
        );
        assert_eq!(
            decide(false, Some(150), Some(100)),
            Verdict::Truncate { position: 150 }
        );
        assert_eq!(
            decide(false, Some(40), None),
            Verdict::Truncate { position: 40 }
        );
    }

    #[test]
    fn index_builder_adds_entries_every_interval() {
        let mut builder = IndexBuilder::new(100, 1000);
        builder.on_frame(40, 100, 600, 5);
        builder.on_frame(640, 101, 600, 9);
        builder.on_frame(1240, 102, 600, 7);
        builder.on_frame(1840, 103, 600, 11);
        assert_eq!(
            builder.entries,
            vec![IndexEntry {
                relative_offset: 2,
                position: 1240,
                timestamp_max_before_ms: 9
            },]
        );
        assert_eq!(builder.timestamp_max_ms, 11);
    }
}
