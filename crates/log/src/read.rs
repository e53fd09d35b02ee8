//! Reading: the [`ReadBatch`] a read returns, the owned [`Event`], and the loop that reads a
//! segment's frames from disk, checks every CRC and hands whole frames to a visitor.
//!
//! A read batch keeps the log's own checked frames as shared bytes ([`bytes::Bytes`]) and
//! decodes events from them on demand, so reading copies each byte once (from the page cache)
//! and never re-encodes. Frames can be passed on as they are (the node ships them to clients,
//! which check the same CRC).

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::{self, EventView, FrameEvents, FrameHeader, FRAME_HEADER_LEN};
use crate::storage::StorageFile;

/// The smallest first read of a read call.
const READ_CHUNK_BYTES_MIN: usize = 4 << 10;
/// The largest first read of a read call; later reads double up to [`READ_CHUNK_BYTES_MAX`].
const READ_CHUNK_BYTES_FIRST_MAX: usize = 128 << 10;
/// The largest single read.
const READ_CHUNK_BYTES_MAX: usize = 8 << 20;

/// One event, owning (shared) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's offset in its partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// Headers in their original order.
    pub headers: Vec<(String, Bytes)>,
    /// The value.
    pub value: Bytes,
}

/// A checked frame: exactly one frame's bytes, whose CRC and structure have been verified.
#[derive(Debug, Clone)]
pub struct CheckedFrame {
    /// The frame's bytes, exactly as stored in the segment (see `docs/format.md`).
    pub bytes: Bytes,
    /// The frame's header.
    pub header: FrameHeader,
}

impl CheckedFrame {
    /// Checks `bytes` as exactly one frame.
    ///
    /// # Errors
    /// The first problem found ([`format::DecodeError`]).
    pub fn new(bytes: Bytes) -> std::result::Result<CheckedFrame, format::DecodeError> {
        let header = format::check_frame(&bytes)?;
        if header.frame_len as usize != bytes.len() {
            return Err(format::DecodeError::Invalid("bytes after the frame"));
        }
        Ok(CheckedFrame { bytes, header })
    }

    /// The frame's events.
    pub fn events(&self) -> FrameEvents<'_> {
        FrameEvents::new(&self.bytes, &self.header)
    }
}

/// Why a read stopped where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// It holds `max_events` events.
    Full,
    /// The next event would have gone over `max_bytes`.
    ByteLimit,
    /// It reached the end of what readers may see.
    EndOfLog,
    /// It reached events that were lost: damaged, and replaced by `weir repair` with a marker
    /// that stands for the offsets from [`ReadBatch::next_offset`] to `end_offset`. Read on
    /// from `end_offset`. (An empty batch with this end says the read started at lost events.)
    Lost {
        /// The offset after the lost events.
        end_offset: u64,
    },
    /// It reached damaged bytes: the events before them are here, and a read from
    /// [`ReadBatch::next_offset`] fails with the damage.
    Damaged,
}

/// Events read from one partition: consecutive offsets from [`ReadBatch::first_offset`].
#[derive(Debug, Clone)]
pub struct ReadBatch {
    frames: Vec<CheckedFrame>,
    first_offset: u64,
    len: usize,
    event_bytes: usize,
    end: ReadEnd,
    /// Byte position in the first frame where the event `first_offset` starts, when known
    /// (after [`ReadBatch::split_front`]); otherwise found by walking the frame.
    first_at: Option<usize>,
}

impl ReadBatch {
    /// The number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the read found no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The offset of the first event (the offset asked for).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the last event: where the next read should start.
    pub fn next_offset(&self) -> u64 {
        self.first_offset + self.len as u64
    }

    /// Encoded bytes of the events (as counted against `max_bytes`).
    pub fn event_bytes(&self) -> usize {
        self.event_bytes
    }

    /// Why the read stopped.
    pub fn end(&self) -> ReadEnd {
        self.end
    }

    /// The lost events the read stopped at, if it did (see [`ReadEnd::Lost`]): offsets from
    /// [`ReadBatch::next_offset`] to the end of the range.
    pub fn lost(&self) -> Option<std::ops::Range<u64>> {
        match self.end {
            ReadEnd::Lost { end_offset } => Some(self.next_offset()..end_offset),
            _ => None,
        }
    }

    /// The checked frames the events come from. The first and last frame may hold events
    /// outside `first_offset..next_offset`; skip those.
    pub fn frames(&self) -> &[CheckedFrame] {
        &self.frames
    }

    /// The events, borrowing the batch's bytes.
    pub fn iter(&self) -> impl Iterator<Item = EventView<'_>> + '_ {
        (0..self.frames.len())
            .flat_map(move |i| self.frame_events(i))
            .take(self.len)
    }

    /// Takes the first `count` events off the front of this batch and returns them as a batch
    /// of their own, sharing the frames (no copy); this batch then starts after them. It
    /// remembers where its next event starts, so taking small batches one after another costs
    /// only the events taken.
    pub fn split_front(&mut self, count: usize) -> ReadBatch {
        let count = count.min(self.len);
        let mut taken = 0usize;
        let mut bytes = 0usize;
        let mut last_frame = 0usize;
        let mut rest: Option<(usize, usize)> = None;
        'frames: for i in 0..self.frames.len() {
            let mut events = self.frame_events(i);
            loop {
                if taken == count {
                    rest = Some((i, events.position()));
                    break 'frames;
                }
                match events.next() {
                    Some(event) => {
                        bytes += event.encoded_len();
                        taken += 1;
                        last_frame = i;
                    }
                    None => break,
                }
            }
        }
        let front = ReadBatch {
            frames: self.frames[..(last_frame + 1).min(self.frames.len())].to_vec(),
            first_offset: self.first_offset,
            len: taken,
            event_bytes: bytes,
            end: ReadEnd::Full,
            first_at: self.first_at,
        };
        // What remains starts at the next event: in the frame where taking stopped, or at the
        // start of the following one.
        let (rest_frame, rest_at) = match rest {
            Some((i, at)) if at < self.frames[i].bytes.len() => (i, Some(at)),
            Some((i, _)) => (i + 1, None),
            None => (self.frames.len(), None),
        };
        self.frames.drain(..rest_frame.min(self.frames.len()));
        self.first_at = rest_at;
        self.first_offset += taken as u64;
        self.len -= taken;
        self.event_bytes = self.event_bytes.saturating_sub(bytes);
        front
    }

    /// The events of frame `i`, starting at this batch's first event for the first frame.
    fn frame_events(&self, i: usize) -> FrameEvents<'_> {
        let frame = &self.frames[i];
        if i > 0 {
            return frame.events();
        }
        match self.first_at {
            Some(at) => FrameEvents::resume(&frame.bytes, &frame.header, self.first_offset, at),
            None => {
                let mut events = frame.events();
                events.skip_to(self.first_offset);
                events
            }
        }
    }

    /// The events as owned values sharing the batch's bytes (no copy of keys and values).
    pub fn events(&self) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.len);
        for (i, frame) in self.frames.iter().enumerate() {
            for event in self.frame_events(i) {
                if out.len() == self.len {
                    return out;
                }
                out.push(Event {
                    offset: event.offset,
                    timestamp_ms: event.timestamp_ms,
                    key: event.key.map(|key| frame.bytes.slice_ref(key)),
                    headers: event
                        .headers()
                        .map(|header| {
                            (header.name.to_string(), frame.bytes.slice_ref(header.value))
                        })
                        .collect(),
                    value: frame.bytes.slice_ref(event.value),
                });
            }
        }
        out
    }
}

/// Gathers frames for a read until `max_events` events or `max_bytes` bytes.
#[derive(Debug)]
pub(crate) struct Collector {
    from: u64,
    events_max: usize,
    bytes_max: usize,
    frames: Vec<CheckedFrame>,
    len: usize,
    event_bytes: usize,
    end: ReadEnd,
}

impl Collector {
    pub(crate) fn new(from: u64, events_max: usize, bytes_max: usize) -> Self {
        Collector {
            from,
            events_max,
            bytes_max,
            frames: Vec::new(),
            len: 0,
            event_bytes: 0,
            end: if events_max == 0 {
                ReadEnd::Full
            } else {
                ReadEnd::EndOfLog
            },
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.end != ReadEnd::EndOfLog
    }

    /// The next offset the read wants.
    pub(crate) fn next_offset(&self) -> u64 {
        self.from + self.len as u64
    }

    /// Takes what the read wants of one checked frame.
    pub(crate) fn offer(&mut self, frame: CheckedFrame) {
        let wanted = self.next_offset();
        if self.is_done() || frame.header.end_offset() <= wanted {
            return;
        }
        if frame.header.is_lost() {
            // Lost events end the read: the caller learns their range and reads on after it.
            self.end = ReadEnd::Lost {
                end_offset: frame.header.end_offset(),
            };
            return;
        }
        let count = frame.header.event_count as usize;
        let body_bytes = frame.header.frame_len as usize - FRAME_HEADER_LEN;
        let mut taken = 0usize;
        if frame.header.base_offset == wanted
            && self.len + count <= self.events_max
            && (self.event_bytes + body_bytes <= self.bytes_max || self.len == 0 && count == 1)
        {
            // Fast path: the whole frame fits.
            taken = count;
            self.len += count;
            self.event_bytes += body_bytes;
        } else {
            for event in frame.events().skip_while(|event| event.offset < wanted) {
                let size = event.encoded_len();
                if self.len > 0 && self.event_bytes + size > self.bytes_max {
                    self.end = ReadEnd::ByteLimit;
                    break;
                }
                taken += 1;
                self.len += 1;
                self.event_bytes += size;
                if self.len == self.events_max {
                    break;
                }
            }
        }
        if self.len == self.events_max {
            self.end = ReadEnd::Full;
        } else if self.event_bytes >= self.bytes_max {
            self.end = ReadEnd::ByteLimit;
        }
        if taken > 0 {
            self.frames.push(frame);
        }
    }

    /// Ends the read before damage a read met after some events.
    pub(crate) fn stop_at_damage(&mut self) {
        self.end = ReadEnd::Damaged;
    }

    /// Events collected so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The most events the read takes.
    pub(crate) fn events_max(&self) -> usize {
        self.events_max
    }

    /// About the most bytes the read takes.
    pub(crate) fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    pub(crate) fn finish(self) -> ReadBatch {
        ReadBatch {
            frames: self.frames,
            first_offset: self.from,
            len: self.len,
            event_bytes: self.event_bytes,
            end: self.end,
            first_at: None,
        }
    }
}

/// Reads the frames of a segment from `position` (where the frame starting at `first_offset`
/// begins) up to `limit`, checking each, and hands them to `visit` until it returns false.
/// Returns the position after the last frame visited.
///
/// # Errors
/// I/O errors, and [`Error::Corrupt`] for any frame that fails its checks: everything below
/// `limit` was acknowledged, so damage there is never a torn tail.
pub(crate) fn read_frames(
    file: &dyn StorageFile,
    path: &Path,
    mut position: u64,
    first_offset: u64,
    limit: u64,
    bytes_hint: usize,
    mut visit: impl FnMut(CheckedFrame) -> bool,
) -> Result<u64> {
    // Start with about what the caller expects to need, so that reading one small event does
    // not read 128 KiB; grow geometrically when more is needed.
    let mut chunk = bytes_hint.clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES_FIRST_MAX);
    let mut expected_offset = first_offset;
    while position < limit {
        let len = (chunk as u64).min(limit - position) as usize;
        let mut buffer = vec![0u8; len];
        let read = file
            .read_at(&mut buffer, position)
            .map_err(|e| Error::io("read segment", path, e))?;
        if read < len {
            return Err(Error::corrupt(
                path,
                position + read as u64,
                "the segment ends before its acknowledged end",
            ));
        }
        let bytes = Bytes::from(buffer);
        let mut at = 0usize;
        let mut stop = false;
        while at < len {
            let frame_len = match format::peek_frame_len(&bytes[at..]) {
                Ok(Some(frame_len)) => frame_len as usize,
                Ok(None) if at > 0 => break,
                Ok(None) => {
                    return Err(Error::corrupt(
                        path,
                        position,
                        "a partial frame header before the acknowledged end",
                    ))
                }
                Err(error) => return Err(Error::decode(path, position + at as u64, error)),
            };
            if at + frame_len > len {
                if at == 0 {
                    if position + frame_len as u64 > limit {
                        return Err(Error::corrupt(
                            path,
                            position,
                            "a frame runs past the acknowledged end",
                        ));
                    }
                    chunk = chunk.max(frame_len);
                }
                break;
            }
            let frame = CheckedFrame::new(bytes.slice(at..at + frame_len))
                .map_err(|error| Error::decode(path, position + at as u64, error))?;
            if frame.header.base_offset != expected_offset {
                return Err(Error::corrupt(
                    path,
                    position + at as u64,
                    format!(
                        "frame starts at offset {}, expected {expected_offset}",
                        frame.header.base_offset
                    ),
                ));
            }
            expected_offset = frame.header.end_offset();
            at += frame_len;
            if !visit(frame) {
                stop = true;
                break;
            }
        }
        position += at as u64;
        if stop {
            break;
        }
        chunk = (chunk * 2).min(READ_CHUNK_BYTES_MAX).max(chunk);
    }
    Ok(position)
}
