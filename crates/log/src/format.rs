//! The on-disk byte layouts of weir-log, as pure functions over byte slices: the segment header,
//! the frame of one append, the index file and the recovery checkpoint. No I/O happens here.
//!
//! `docs/format.md` is the authoritative spec; the constants below are derived from each other
//! the way the spec's tables are, and the golden-bytes tests at the bottom of this file pin the
//! two together. Everything is little-endian. Every structure carries a CRC-32 (IEEE, via
//! `crc32fast`) over all of its other bytes.
//!
//! Invariants kept here:
//! - a length read from bytes is checked against [`FRAME_LEN_MAX`] and against the bytes that
//!   are actually there before anything is sliced or allocated;
//! - a zero length never parses as a frame, so zero-filled space is always "not a frame";
//! - a decoded frame has been CRC-checked, and its events are consistent with its header.

use std::fmt;

/// Segment file magic: the first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"WEIRSEG\0";
/// Index file magic.
pub const INDEX_MAGIC: [u8; 8] = *b"WEIRIDX\0";
/// Recovery checkpoint file magic.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"WEIRCKP\0";
/// The format version of index and checkpoint files written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// The segment format version written by this code. Version 2 gave frames their attributes
/// (kind and durable lag, see [`FrameHeader`]) and lost-events markers; version 1 segments are
/// still read (their frames' attributes are all zero: events, durable end not recorded).
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// The segment format versions this code reads.
pub const SEGMENT_FORMAT_VERSIONS: std::ops::RangeInclusive<u32> = 1..=2;

// ---- Segment header -------------------------------------------------------------------------

const SEG_MAGIC_AT: usize = 0;
const SEG_VERSION_AT: usize = SEG_MAGIC_AT + 8;
const SEG_FLAGS_AT: usize = SEG_VERSION_AT + 4;
const SEG_BASE_OFFSET_AT: usize = SEG_FLAGS_AT + 4;
const SEG_CREATED_AT: usize = SEG_BASE_OFFSET_AT + 8;
const SEG_RESERVED_AT: usize = SEG_CREATED_AT + 8;
const SEG_CRC_AT: usize = SEG_RESERVED_AT + 4;
/// Bytes in a segment header; the first frame starts here.
pub const SEGMENT_HEADER_LEN: usize = SEG_CRC_AT + 4;
const _: () = assert!(SEGMENT_HEADER_LEN == 40);

/// The fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment format version ([`SEGMENT_FORMAT_VERSION`] for a new segment).
    pub version: u32,
    /// Offset of the first event this segment holds (also its file name).
    pub base_offset: u64,
    /// When the segment was created, ms since the Unix epoch (used for rolling by age).
    pub created_ms: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[SEG_MAGIC_AT..SEG_VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        put_u32(&mut out, SEG_VERSION_AT, self.version);
        put_u32(&mut out, SEG_FLAGS_AT, 0);
        put_u64(&mut out, SEG_BASE_OFFSET_AT, self.base_offset);
        put_u64(&mut out, SEG_CREATED_AT, self.created_ms);
        put_u32(&mut out, SEG_RESERVED_AT, 0);
        let crc = crc32fast::hash(&out[..SEG_CRC_AT]);
        put_u32(&mut out, SEG_CRC_AT, crc);
        out
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong: too short, bad magic, bad CRC, unknown version.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
        let bytes = bytes
            .get(..SEGMENT_HEADER_LEN)
            .ok_or(DecodeError::Truncated {
                needed: SEGMENT_HEADER_LEN as u64,
                available: bytes.len() as u64,
            })?;
        if bytes[SEG_MAGIC_AT..SEG_VERSION_AT] != SEGMENT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        check_crc(bytes, SEG_CRC_AT)?;
        let version = get_u32(bytes, SEG_VERSION_AT);
        if !SEGMENT_FORMAT_VERSIONS.contains(&version) {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if get_u32(bytes, SEG_FLAGS_AT) != 0 || get_u32(bytes, SEG_RESERVED_AT) != 0 {
            return Err(DecodeError::Invalid("reserved header bits are set"));
        }
        Ok(SegmentHeader {
            version,
            base_offset: get_u64(bytes, SEG_BASE_OFFSET_AT),
            created_ms: get_u64(bytes, SEG_CREATED_AT),
        })
    }
}

// ---- Frame ----------------------------------------------------------------------------------

const FRAME_CRC_AT: usize = 0;
const FRAME_LEN_AT: usize = FRAME_CRC_AT + 4;
const FRAME_BASE_OFFSET_AT: usize = FRAME_LEN_AT + 4;
const FRAME_TIMESTAMP_MAX_AT: usize = FRAME_BASE_OFFSET_AT + 8;
const FRAME_EVENT_COUNT_AT: usize = FRAME_TIMESTAMP_MAX_AT + 8;
const FRAME_ATTRIBUTES_AT: usize = FRAME_EVENT_COUNT_AT + 4;
/// Bytes in a frame header; the first event starts here.
pub const FRAME_HEADER_LEN: usize = FRAME_ATTRIBUTES_AT + 4;
const _: () = assert!(FRAME_HEADER_LEN == 32);

const EVENT_TIMESTAMP_AT: usize = 0;
const EVENT_KEY_LEN_AT: usize = EVENT_TIMESTAMP_AT + 8;
const EVENT_VALUE_LEN_AT: usize = EVENT_KEY_LEN_AT + 4;
const EVENT_HEADER_COUNT_AT: usize = EVENT_VALUE_LEN_AT + 4;
/// Fixed bytes at the start of every event inside a frame.
pub const EVENT_FIXED_LEN: usize = EVENT_HEADER_COUNT_AT + 2;
const _: () = assert!(EVENT_FIXED_LEN == 18);
/// Fixed bytes of one header (name length, value length) inside an event.
pub const HEADER_FIXED_LEN: usize = 2 + 4;
/// `key_len` value meaning "this event has no key".
pub const NO_KEY: u32 = u32::MAX;

/// The largest frame this format allows, whatever the configuration. Recovery checks lengths
/// against this constant (not the configured limit) so that lowering a limit never turns old,
/// valid frames into "corruption".
pub const FRAME_LEN_MAX: u32 = 64 * 1024 * 1024;
/// The largest number of events one frame may hold.
pub const FRAME_EVENTS_MAX: u32 = 1 << 20;
/// The largest number of headers on one event.
pub const EVENT_HEADERS_MAX: usize = u16::MAX as usize;
/// The longest header name in bytes.
pub const HEADER_NAME_LEN_MAX: usize = u16::MAX as usize;

/// One header of an event: a UTF-8 name and a byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's name.
    pub name: &'a str,
    /// The header's value.
    pub value: &'a [u8],
}

/// An event to append, borrowing its bytes from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendEvent<'a> {
    /// Milliseconds since the Unix epoch; `None` means "now", stamped by the log at append.
    pub timestamp_ms: Option<u64>,
    /// Optional key.
    pub key: Option<&'a [u8]>,
    /// Headers, name → bytes, in the caller's order.
    pub headers: &'a [Header<'a>],
    /// The event's value.
    pub value: &'a [u8],
}

impl<'a> AppendEvent<'a> {
    /// An event with only a value (no key, no headers, stamped at append).
    pub fn value(value: &'a [u8]) -> Self {
        AppendEvent {
            timestamp_ms: None,
            key: None,
            headers: &[],
            value,
        }
    }

    /// The bytes this event takes inside a frame; `None` if a field is too large for the format.
    pub fn encoded_len(&self) -> Option<usize> {
        if self.headers.len() > EVENT_HEADERS_MAX {
            return None;
        }
        let mut len = EVENT_FIXED_LEN.checked_add(self.key.map_or(0, <[u8]>::len))?;
        if self
            .key
            .is_some_and(|key| u32::try_from(key.len()).map_or(true, |n| n == NO_KEY))
        {
            return None;
        }
        u32::try_from(self.value.len()).ok()?;
        len = len.checked_add(self.value.len())?;
        for header in self.headers {
            if header.name.len() > HEADER_NAME_LEN_MAX {
                return None;
            }
            u32::try_from(header.value.len()).ok()?;
            len = len.checked_add(HEADER_FIXED_LEN + header.name.len() + header.value.len())?;
        }
        Some(len)
    }
}

/// The kind bits (0..4) of a frame's attributes.
const ATTRIBUTES_KIND_MASK: u32 = 0xF;
/// Kind 0: the frame holds events.
const KIND_EVENTS: u32 = 0;
/// Kind 1: a lost-events marker.
const KIND_LOST: u32 = 1;
/// The durable-lag bits (4..32) of a frame's attributes hold `lag + 1` (0: not recorded).
const ATTRIBUTES_LAG_SHIFT: u32 = 4;
/// The largest durable lag a frame can record; a larger one is recorded as "not recorded".
pub const DURABLE_LAG_MAX: u64 = (1 << (32 - ATTRIBUTES_LAG_SHIFT)) - 2;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `event_count` events, back to back after the header.
    Events,
    /// A lost-events marker: the events `base_offset..base_offset + event_count` were lost
    /// (damaged, and replaced by `weir repair`); the frame holds no event bytes, only zeros
    /// after its header (its length is that of the damaged bytes it replaced, at least 32). A
    /// marker of no events fills damaged bytes that held none.
    Lost,
}

/// The attributes field of a frame: its kind, and the durable lag (`base_offset` minus the
/// offset up to which the segment files were fsynced when the frame was written, if known).
fn encode_attributes(kind: u32, base_offset: u64, durable_offset: Option<u64>) -> u32 {
    let lag = durable_offset
        .and_then(|durable| base_offset.checked_sub(durable))
        .filter(|&lag| lag <= DURABLE_LAG_MAX)
        .map_or(0, |lag| (lag + 1) as u32);
    kind | (lag << ATTRIBUTES_LAG_SHIFT)
}

/// Encodes one frame holding `events` with offsets from `base_offset`, appending it to `out`.
/// `timestamps_ms[i]` is the timestamp stamped on `events[i]`. Returns the frame's length.
/// The frame records no durable end (see [`encode_frame_noting_durable`]).
///
/// # Panics
/// If the caller broke the contract checked by `Log::append` before encoding: no events, more
/// than [`FRAME_EVENTS_MAX`], a field too large for the format, or a frame over
/// [`FRAME_LEN_MAX`]. These are programmer errors, not input errors.
pub fn encode_frame(
    out: &mut Vec<u8>,
    base_offset: u64,
    events: &[AppendEvent<'_>],
    timestamps_ms: &[u64],
) -> usize {
    encode_frame_noting_durable(out, base_offset, None, events, timestamps_ms)
}

/// [`encode_frame`], recording in the frame that the segment files were fsynced up to
/// `durable_offset` (at most `base_offset`) when it was written: evidence, for recovery, that
/// a damaged frame before it had been made durable (`docs/durability.md`, "Recovery").
///
/// # Panics
/// As [`encode_frame`].
pub fn encode_frame_noting_durable(
    out: &mut Vec<u8>,
    base_offset: u64,
    durable_offset: Option<u64>,
    events: &[AppendEvent<'_>],
    timestamps_ms: &[u64],
) -> usize {
    assert!(!events.is_empty() && events.len() <= FRAME_EVENTS_MAX as usize);
    assert_eq!(events.len(), timestamps_ms.len());
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    let mut timestamp_max_ms = 0u64;
    for (event, &timestamp_ms) in events.iter().zip(timestamps_ms) {
        timestamp_max_ms = timestamp_max_ms.max(timestamp_ms);
        out.extend_from_slice(&timestamp_ms.to_le_bytes());
        let key_len = match event.key {
            Some(key) => u32::try_from(key.len()).expect("checked by encoded_len"),
            None => NO_KEY,
        };
        out.extend_from_slice(&key_len.to_le_bytes());
        let value_len = u32::try_from(event.value.len()).expect("checked by encoded_len");
        out.extend_from_slice(&value_len.to_le_bytes());
        let header_count = u16::try_from(event.headers.len()).expect("checked by encoded_len");
        out.extend_from_slice(&header_count.to_le_bytes());
        if let Some(key) = event.key {
            out.extend_from_slice(key);
        }
        for header in event.headers {
            let name_len = u16::try_from(header.name.len()).expect("checked by encoded_len");
            out.extend_from_slice(&name_len.to_le_bytes());
            let header_value_len =
                u32::try_from(header.value.len()).expect("checked by encoded_len");
            out.extend_from_slice(&header_value_len.to_le_bytes());
            out.extend_from_slice(header.name.as_bytes());
            out.extend_from_slice(header.value);
        }
        out.extend_from_slice(event.value);
    }
    let len = out.len() - start;
    let frame_len = u32::try_from(len).ok().filter(|&n| n <= FRAME_LEN_MAX);
    let frame_len = frame_len.expect("frame over FRAME_LEN_MAX: Log::append checks this first");
    let frame = &mut out[start..];
    put_u32(frame, FRAME_LEN_AT, frame_len);
    put_u64(frame, FRAME_BASE_OFFSET_AT, base_offset);
    put_u64(frame, FRAME_TIMESTAMP_MAX_AT, timestamp_max_ms);
    put_u32(frame, FRAME_EVENT_COUNT_AT, events.len() as u32);
    put_u32(
        frame,
        FRAME_ATTRIBUTES_AT,
        encode_attributes(KIND_EVENTS, base_offset, durable_offset),
    );
    let crc = crc32fast::hash(&frame[FRAME_LEN_AT..]);
    put_u32(frame, FRAME_CRC_AT, crc);
    len
}

/// Encodes a lost-events marker for the events `first_offset..first_offset + count`, `len`
/// bytes long (the header, then zeros: a marker written in place of damaged bytes fills them
/// exactly), appending it to `out`. `timestamp_ms` is when the events were declared lost.
///
/// # Panics
/// If `len` is under [`FRAME_HEADER_LEN`] or over [`FRAME_LEN_MAX`], or the offsets overflow:
/// the caller (repair) sizes markers first.
pub fn encode_lost_marker(
    out: &mut Vec<u8>,
    first_offset: u64,
    count: u32,
    timestamp_ms: u64,
    len: u32,
) {
    assert!((FRAME_HEADER_LEN as u32..=FRAME_LEN_MAX).contains(&len));
    assert!(first_offset.checked_add(u64::from(count)).is_some());
    let start = out.len();
    out.resize(start + len as usize, 0);
    let frame = &mut out[start..];
    put_u32(frame, FRAME_LEN_AT, len);
    put_u64(frame, FRAME_BASE_OFFSET_AT, first_offset);
    put_u64(frame, FRAME_TIMESTAMP_MAX_AT, timestamp_ms);
    put_u32(frame, FRAME_EVENT_COUNT_AT, count);
    put_u32(frame, FRAME_ATTRIBUTES_AT, KIND_LOST);
    let crc = crc32fast::hash(&frame[FRAME_LEN_AT..]);
    put_u32(frame, FRAME_CRC_AT, crc);
}

/// What a frame header says, before its body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Total bytes of the frame, header included.
    pub frame_len: u32,
    /// Offset of the frame's first event.
    pub base_offset: u64,
    /// Largest timestamp among the frame's events (for a marker: when the events were
    /// declared lost).
    pub timestamp_max_ms: u64,
    /// Number of events in the frame (≥ 1), or of lost events for a marker.
    pub event_count: u32,
    /// What the frame holds.
    pub kind: FrameKind,
    /// When the frame was written, the segment files were fsynced up to this offset (`None`:
    /// not recorded: version 1 segments, markers, or a lag over [`DURABLE_LAG_MAX`]).
    pub durable_offset: Option<u64>,
}

impl FrameHeader {
    /// The offset after the frame's last event.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.event_count)
    }

    /// True for a lost-events marker.
    pub fn is_lost(&self) -> bool {
        self.kind == FrameKind::Lost
    }
}

/// Reads the length field of a frame at the start of `bytes` and checks it against the
/// format's bounds, without looking at anything else. `None` if fewer than 8 bytes are there.
///
/// # Errors
/// [`DecodeError`] if the length is zero, shorter than a header or over [`FRAME_LEN_MAX`].
pub fn peek_frame_len(bytes: &[u8]) -> Result<Option<u32>, DecodeError> {
    if bytes.len() < FRAME_LEN_AT + 4 {
        return Ok(None);
    }
    let frame_len = get_u32(bytes, FRAME_LEN_AT);
    if frame_len == 0 {
        return Err(DecodeError::Invalid("zero frame length"));
    }
    if (frame_len as usize) < FRAME_HEADER_LEN || frame_len > FRAME_LEN_MAX {
        return Err(DecodeError::Invalid("frame length out of bounds"));
    }
    Ok(Some(frame_len))
}

/// Checks the frame at the start of `bytes`: its length is in bounds and all there, its CRC
/// matches, and its events parse and agree with the header. Returns the header; the frame is
/// `bytes[..header.frame_len]`.
///
/// # Errors
/// [`DecodeError::Truncated`] if the frame's length runs past `bytes`; otherwise the first
/// problem found.
pub fn check_frame(bytes: &[u8]) -> Result<FrameHeader, DecodeError> {
    let frame_len = match peek_frame_len(bytes)? {
        Some(len) => len,
        None => {
            return Err(DecodeError::Truncated {
                needed: FRAME_HEADER_LEN as u64,
                available: bytes.len() as u64,
            })
        }
    };
    let frame = bytes
        .get(..frame_len as usize)
        .ok_or(DecodeError::Truncated {
            needed: u64::from(frame_len),
            available: bytes.len() as u64,
        })?;
    check_crc_at_start(frame)?;
    let attributes = get_u32(frame, FRAME_ATTRIBUTES_AT);
    let base_offset = get_u64(frame, FRAME_BASE_OFFSET_AT);
    let kind = match attributes & ATTRIBUTES_KIND_MASK {
        KIND_EVENTS => FrameKind::Events,
        KIND_LOST => FrameKind::Lost,
        _ => return Err(DecodeError::Invalid("unknown frame kind")),
    };
    let lag = attributes >> ATTRIBUTES_LAG_SHIFT;
    let header = FrameHeader {
        frame_len,
        base_offset,
        timestamp_max_ms: get_u64(frame, FRAME_TIMESTAMP_MAX_AT),
        event_count: get_u32(frame, FRAME_EVENT_COUNT_AT),
        kind,
        durable_offset: match lag {
            0 => None,
            lag => Some(
                base_offset
                    .checked_sub(u64::from(lag) - 1)
                    .ok_or(DecodeError::Invalid("durable lag before offset 0"))?,
            ),
        },
    };
    if header
        .base_offset
        .checked_add(u64::from(header.event_count))
        .is_none()
    {
        return Err(DecodeError::Invalid("offsets overflow"));
    }
    if kind == FrameKind::Lost {
        if lag != 0 {
            return Err(DecodeError::Invalid(
                "a lost-events marker records a durable lag",
            ));
        }
        if frame[FRAME_HEADER_LEN..].iter().any(|&byte| byte != 0) {
            return Err(DecodeError::Invalid(
                "a lost-events marker holds bytes other than zeros",
            ));
        }
        return Ok(header);
    }
    if header.event_count == 0 || header.event_count > FRAME_EVENTS_MAX {
        return Err(DecodeError::Invalid("event count out of bounds"));
    }
    // Walk the events: every length must fit, and together they must fill the frame exactly.
    let mut at = FRAME_HEADER_LEN;
    let mut timestamp_max_ms = 0u64;
    for _ in 0..header.event_count {
        let (event, next) = decode_event_at(frame, at)?;
        timestamp_max_ms = timestamp_max_ms.max(event.timestamp_ms);
        at = next;
    }
    if at != frame.len() {
        return Err(DecodeError::Invalid("events do not fill the frame"));
    }
    if timestamp_max_ms != header.timestamp_max_ms {
        return Err(DecodeError::Invalid(
            "frame timestamp does not match its events",
        ));
    }
    Ok(header)
}

/// One event decoded from a checked frame, borrowing the frame's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// The event's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key, if the event has one.
    pub key: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u16,
    /// The event's value.
    pub value: &'a [u8],
}

impl fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventView")
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("key", &self.key)
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("value_len", &self.value.len())
            .finish()
    }
}

impl<'a> EventView<'a> {
    /// The event's headers in their original order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            bytes: self.headers,
            remaining: self.header_count,
        }
    }

    /// The bytes this event takes inside its frame.
    pub fn encoded_len(&self) -> usize {
        EVENT_FIXED_LEN + self.key.map_or(0, <[u8]>::len) + self.headers.len() + self.value.len()
    }
}

/// Iterator over an event's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    bytes: &'a [u8],
    remaining: u16,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The frame was checked by `check_frame`, so these bounds hold; `get` keeps a damaged
        // buffer from panicking all the same.
        let name_len = usize::from(u16::from_le_bytes(self.bytes.get(0..2)?.try_into().ok()?));
        let value_len = u32::from_le_bytes(self.bytes.get(2..6)?.try_into().ok()?) as usize;
        let name = self.bytes.get(6..6 + name_len)?;
        let value = self.bytes.get(6 + name_len..6 + name_len + value_len)?;
        self.bytes = &self.bytes[6 + name_len + value_len..];
        self.remaining -= 1;
        Some(Header {
            name: std::str::from_utf8(name).ok()?,
            value,
        })
    }
}

/// Iterates the events of a frame that [`check_frame`] accepted.
#[derive(Debug, Clone)]
pub struct FrameEvents<'a> {
    frame: &'a [u8],
    at: usize,
    next_offset: u64,
    remaining: u32,
}

impl<'a> FrameEvents<'a> {
    /// Events of `frame`, which must be exactly one frame that [`check_frame`] accepted (a
    /// lost-events marker has none).
    pub fn new(frame: &'a [u8], header: &FrameHeader) -> Self {
        debug_assert_eq!(frame.len(), header.frame_len as usize);
        FrameEvents {
            frame,
            at: FRAME_HEADER_LEN,
            next_offset: header.base_offset,
            remaining: if header.is_lost() {
                0
            } else {
                header.event_count
            },
        }
    }
}

impl<'a> FrameEvents<'a> {
    /// Events of a checked `frame` from the event with `offset`, which starts at byte `at`
    /// (a position an earlier iteration reported with [`FrameEvents::position`]).
    pub fn resume(frame: &'a [u8], header: &FrameHeader, offset: u64, at: usize) -> Self {
        debug_assert!(offset >= header.base_offset && offset <= header.end_offset());
        FrameEvents {
            frame,
            at,
            next_offset: offset,
            remaining: if header.is_lost() {
                0
            } else {
                (header.end_offset() - offset) as u32
            },
        }
    }

    /// The byte position in the frame of the next event.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Skips the events before `offset` (all of them if the frame ends before it).
    pub fn skip_to(&mut self, offset: u64) {
        while self.remaining > 0 && self.next_offset < offset {
            let Some((_, next)) = decode_checked_event_at(self.frame, self.at) else {
                self.remaining = 0;
                return;
            };
            self.at = next;
            self.next_offset += 1;
            self.remaining -= 1;
        }
    }
}

impl<'a> Iterator for FrameEvents<'a> {
    type Item = EventView<'a>;

    fn next(&mut self) -> Option<EventView<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let (mut event, next) = decode_checked_event_at(self.frame, self.at)?;
        event.offset = self.next_offset;
        self.at = next;
        self.next_offset += 1;
        self.remaining -= 1;
        Some(event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

/// Decodes an event of a frame that [`check_frame`] accepted: the lengths were all checked
/// then, so this only slices (with `get`, so a misuse returns `None` rather than panicking)
/// and skips the UTF-8 check of header names (done by [`HeaderIter`] when they are read).
/// This is the read path's hot loop.
fn decode_checked_event_at(frame: &[u8], at: usize) -> Option<(EventView<'_>, usize)> {
    let fixed = frame.get(at..at + EVENT_FIXED_LEN)?;
    let timestamp_ms = get_u64(fixed, EVENT_TIMESTAMP_AT);
    let key_len = get_u32(fixed, EVENT_KEY_LEN_AT);
    let value_len = get_u32(fixed, EVENT_VALUE_LEN_AT) as usize;
    let header_count = u16::from_le_bytes([
        fixed[EVENT_HEADER_COUNT_AT],
        fixed[EVENT_HEADER_COUNT_AT + 1],
    ]);
    let mut next = at + EVENT_FIXED_LEN;
    let key = if key_len == NO_KEY {
        None
    } else {
        let key = frame.get(next..next + key_len as usize)?;
        next += key.len();
        Some(key)
    };
    let headers_start = next;
    for _ in 0..header_count {
        let fixed = frame.get(next..next + HEADER_FIXED_LEN)?;
        let name_len = usize::from(u16::from_le_bytes([fixed[0], fixed[1]]));
        next += HEADER_FIXED_LEN + name_len + get_u32(fixed, 2) as usize;
    }
    let headers = frame.get(headers_start..next)?;
    let value = frame.get(next..next + value_len)?;
    Some((
        EventView {
            offset: 0,
            timestamp_ms,
            key,
            headers,
            header_count,
            value,
        },
        next + value_len,
    ))
}

/// Decodes the event starting at `at` in `frame` (offset left 0 for the caller to fill in) and
/// returns it with the position after it. Every length is checked against the frame's end.
fn decode_event_at(frame: &[u8], at: usize) -> Result<(EventView<'_>, usize), DecodeError> {
    const TOO_LONG: DecodeError = DecodeError::Invalid("event runs past the end of its frame");
    let fixed = frame.get(at..at + EVENT_FIXED_LEN).ok_or(TOO_LONG)?;
    let timestamp_ms = get_u64(fixed, EVENT_TIMESTAMP_AT);
    let key_len = get_u32(fixed, EVENT_KEY_LEN_AT);
    let value_len = get_u32(fixed, EVENT_VALUE_LEN_AT) as usize;
    let header_count = u16::from_le_bytes([
        fixed[EVENT_HEADER_COUNT_AT],
        fixed[EVENT_HEADER_COUNT_AT + 1],
    ]);
    let mut next = at + EVENT_FIXED_LEN;
    let key = if key_len == NO_KEY {
        None
    } else {
        let key = frame
            .get(next..next.checked_add(key_len as usize).ok_or(TOO_LONG)?)
            .ok_or(TOO_LONG)?;
        next += key.len();
        Some(key)
    };
    let headers_start = next;
    for _ in 0..header_count {
        let fixed = frame.get(next..next + HEADER_FIXED_LEN).ok_or(TOO_LONG)?;
        let name_len = usize::from(u16::from_le_bytes([fixed[0], fixed[1]]));
        let header_value_len = get_u32(fixed, 2) as usize;
        let name_start = next + HEADER_FIXED_LEN;
        let name = frame
            .get(name_start..name_start + name_len)
            .ok_or(TOO_LONG)?;
        if std::str::from_utf8(name).is_err() {
            return Err(DecodeError::Invalid("header name is not UTF-8"));
        }
        next = (name_start + name_len)
            .checked_add(header_value_len)
            .ok_or(TOO_LONG)?;
        if next > frame.len() {
            return Err(TOO_LONG);
        }
    }
    let headers = &frame[headers_start..next];
    let value = frame
        .get(next..next.checked_add(value_len).ok_or(TOO_LONG)?)
        .ok_or(TOO_LONG)?;
    next += value_len;
    Ok((
        EventView {
            offset: 0,
            timestamp_ms,
            key,
            headers,
            header_count,
            value,
        },
        next,
    ))
}

// ---- Index file -----------------------------------------------------------------------------

const INDEX_MAGIC_AT: usize = 0;
const INDEX_VERSION_AT: usize = INDEX_MAGIC_AT + 8;
const INDEX_ENTRY_COUNT_AT: usize = INDEX_VERSION_AT + 4;
const INDEX_BASE_OFFSET_AT: usize = INDEX_ENTRY_COUNT_AT + 4;
const INDEX_END_OFFSET_AT: usize = INDEX_BASE_OFFSET_AT + 8;
const INDEX_END_POSITION_AT: usize = INDEX_END_OFFSET_AT + 8;
const INDEX_TIMESTAMP_MAX_AT: usize = INDEX_END_POSITION_AT + 8;
/// Bytes in an index file header; entries follow.
pub const INDEX_HEADER_LEN: usize = INDEX_TIMESTAMP_MAX_AT + 8;
const _: () = assert!(INDEX_HEADER_LEN == 48);
/// Bytes in one index entry.
pub const INDEX_ENTRY_LEN: usize = 4 + 4 + 8;
/// Bytes of the CRC that ends an index file.
pub const INDEX_TRAILER_LEN: usize = 4;
/// The largest index file accepted (checked before reading it into memory).
pub const INDEX_FILE_LEN_MAX: u64 = 256 * 1024 * 1024;

/// One sparse index entry: the frame starting at `position` begins with `base_offset +
/// relative_offset`, and every event before it has a timestamp ≤ `timestamp_max_before_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the frame's first event, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the frame in the segment file.
    pub position: u32,
    /// Largest timestamp of all events of the segment before this frame.
    pub timestamp_max_before_ms: u64,
}

/// A whole index file: the summary of one segment plus its sparse entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The segment's base offset.
    pub base_offset: u64,
    /// The offset after the segment's last event.
    pub end_offset: u64,
    /// Bytes of valid data in the segment file (header included).
    pub end_position: u64,
    /// Largest timestamp in the segment (0 if it holds no event).
    pub timestamp_max_ms: u64,
    /// Entries in increasing offset and position order.
    pub entries: Vec<IndexEntry>,
}

impl IndexFile {
    /// Encodes the whole file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(INDEX_HEADER_LEN + self.entries.len() * INDEX_ENTRY_LEN + 4);
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let count =
            u32::try_from(self.entries.len()).expect("index entries are bounded by segment size");
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.base_offset.to_le_bytes());
        out.extend_from_slice(&self.end_offset.to_le_bytes());
        out.extend_from_slice(&self.end_position.to_le_bytes());
        out.extend_from_slice(&self.timestamp_max_ms.to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_le_bytes());
            out.extend_from_slice(&entry.position.to_le_bytes());
            out.extend_from_slice(&entry.timestamp_max_before_ms.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a whole index file.
    ///
    /// # Errors
    /// The first problem found; an index that fails is rebuilt from its segment by the caller.
    pub fn decode(bytes: &[u8]) -> Result<IndexFile, DecodeError> {
        if bytes.len() < INDEX_HEADER_LEN + INDEX_TRAILER_LEN {
            return Err(DecodeError::Truncated {
                needed: (INDEX_HEADER_LEN + INDEX_TRAILER_LEN) as u64,
                available: bytes.len() as u64,
            });
        }
        if bytes[..8] != INDEX_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let count = get_u32(bytes, INDEX_ENTRY_COUNT_AT) as usize;
        let expected_len = count
            .checked_mul(INDEX_ENTRY_LEN)
            .and_then(|n| n.checked_add(INDEX_HEADER_LEN + INDEX_TRAILER_LEN))
            .ok_or(DecodeError::Invalid("index entry count overflows"))?;
        if expected_len != bytes.len() {
            return Err(DecodeError::Invalid(
                "index length does not match its entry count",
            ));
        }
        check_crc_at_end(bytes)?;
        let version = get_u32(bytes, INDEX_VERSION_AT);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let mut entries = Vec::with_capacity(count);
        for chunk in
            bytes[INDEX_HEADER_LEN..bytes.len() - INDEX_TRAILER_LEN].chunks_exact(INDEX_ENTRY_LEN)
        {
            entries.push(IndexEntry {
                relative_offset: get_u32(chunk, 0),
                position: get_u32(chunk, 4),
                timestamp_max_before_ms: get_u64(chunk, 8),
            });
        }
        let file = IndexFile {
            base_offset: get_u64(bytes, INDEX_BASE_OFFSET_AT),
            end_offset: get_u64(bytes, INDEX_END_OFFSET_AT),
            end_position: get_u64(bytes, INDEX_END_POSITION_AT),
            timestamp_max_ms: get_u64(bytes, INDEX_TIMESTAMP_MAX_AT),
            entries,
        };
        if file.end_offset < file.base_offset || file.end_position < SEGMENT_HEADER_LEN as u64 {
            return Err(DecodeError::Invalid("index end before its start"));
        }
        let ordered = file.entries.windows(2).all(|pair| {
            pair[0].relative_offset < pair[1].relative_offset && pair[0].position < pair[1].position
        });
        let in_range = file.entries.iter().all(|entry| {
            u64::from(entry.position) < file.end_position
                && u64::from(entry.position) >= SEGMENT_HEADER_LEN as u64
                && file
                    .base_offset
                    .checked_add(u64::from(entry.relative_offset))
                    .is_some_and(|offset| offset < file.end_offset)
        });
        if !ordered || !in_range {
            return Err(DecodeError::Invalid(
                "index entries out of order or out of range",
            ));
        }
        Ok(file)
    }
}

// ---- Recovery checkpoint ----------------------------------------------------------------------

const CKP_MAGIC_AT: usize = 0;
const CKP_VERSION_AT: usize = CKP_MAGIC_AT + 8;
const CKP_RESERVED_AT: usize = CKP_VERSION_AT + 4;
const CKP_START_OFFSET_AT: usize = CKP_RESERVED_AT + 4;
const CKP_SEGMENT_AT: usize = CKP_START_OFFSET_AT + 8;
const CKP_POSITION_AT: usize = CKP_SEGMENT_AT + 8;
const CKP_NEXT_OFFSET_AT: usize = CKP_POSITION_AT + 8;
const CKP_CRC_AT: usize = CKP_NEXT_OFFSET_AT + 8;
/// Bytes in a checkpoint file.
pub const CHECKPOINT_LEN: usize = CKP_CRC_AT + 4;
const _: () = assert!(CHECKPOINT_LEN == 52);

/// The recovery checkpoint: the log is known to be durable up to `position` of segment
/// `segment_base_offset` (where the next event is `next_offset`), and starts at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's first readable offset (moved by retention and `truncate_before`).
    pub start_offset: u64,
    /// Base offset of the segment holding the checkpoint position.
    pub segment_base_offset: u64,
    /// Byte position in that segment up to which every frame was fsynced.
    pub position: u64,
    /// The offset of the first event at or after `position`.
    pub next_offset: u64,
}

impl Checkpoint {
    /// Encodes the checkpoint.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut out = [0u8; CHECKPOINT_LEN];
        out[..8].copy_from_slice(&CHECKPOINT_MAGIC);
        put_u32(&mut out, CKP_VERSION_AT, FORMAT_VERSION);
        put_u32(&mut out, CKP_RESERVED_AT, 0);
        put_u64(&mut out, CKP_START_OFFSET_AT, self.start_offset);
        put_u64(&mut out, CKP_SEGMENT_AT, self.segment_base_offset);
        put_u64(&mut out, CKP_POSITION_AT, self.position);
        put_u64(&mut out, CKP_NEXT_OFFSET_AT, self.next_offset);
        let crc = crc32fast::hash(&out[..CKP_CRC_AT]);
        put_u32(&mut out, CKP_CRC_AT, crc);
        out
    }

    /// Decodes and checks a checkpoint.
    ///
    /// # Errors
    /// The first problem found.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
        if bytes.len() != CHECKPOINT_LEN {
            return Err(DecodeError::Truncated {
                needed: CHECKPOINT_LEN as u64,
                available: bytes.len() as u64,
            });
        }
        if bytes[..8] != CHECKPOINT_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        check_crc(bytes, CKP_CRC_AT)?;
        let version = get_u32(bytes, CKP_VERSION_AT);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if get_u32(bytes, CKP_RESERVED_AT) != 0 {
            return Err(DecodeError::Invalid("reserved checkpoint bits are set"));
        }
        let checkpoint = Checkpoint {
            start_offset: get_u64(bytes, CKP_START_OFFSET_AT),
            segment_base_offset: get_u64(bytes, CKP_SEGMENT_AT),
            position: get_u64(bytes, CKP_POSITION_AT),
            next_offset: get_u64(bytes, CKP_NEXT_OFFSET_AT),
        };
        if checkpoint.position < SEGMENT_HEADER_LEN as u64
            || checkpoint.next_offset < checkpoint.segment_base_offset
        {
            return Err(DecodeError::Invalid(
                "checkpoint position before its segment's start",
            ));
        }
        Ok(checkpoint)
    }
}

// ---- Errors and helpers -----------------------------------------------------------------------

/// Why bytes did not decode. The caller adds the file and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The structure runs past the bytes that are there.
    Truncated {
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes that were there.
        available: u64,
    },
    /// The magic bytes are wrong.
    BadMagic,
    /// The stored CRC does not match the bytes.
    BadChecksum {
        /// The CRC stored in the structure.
        stored: u32,
        /// The CRC computed over the bytes.
        computed: u32,
    },
    /// A format version this code does not read.
    UnsupportedVersion(u32),
    /// A field is out of bounds or inconsistent.
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} there")
            }
            DecodeError::BadMagic => write!(f, "bad magic bytes"),
            DecodeError::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            DecodeError::UnsupportedVersion(version) => {
                write!(f, "unsupported format version {version}")
            }
            DecodeError::Invalid(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn check_crc(bytes: &[u8], crc_at: usize) -> Result<(), DecodeError> {
    let stored = get_u32(bytes, crc_at);
    let computed = crc32fast::hash(&bytes[..crc_at]);
    if stored == computed {
        Ok(())
    } else {
        Err(DecodeError::BadChecksum { stored, computed })
    }
}

fn check_crc_at_start(frame: &[u8]) -> Result<(), DecodeError> {
    let stored = get_u32(frame, FRAME_CRC_AT);
    let computed = crc32fast::hash(&frame[FRAME_LEN_AT..]);
    if stored == computed {
        Ok(())
    } else {
        Err(DecodeError::BadChecksum { stored, computed })
    }
}

fn check_crc_at_end(bytes: &[u8]) -> Result<(), DecodeError> {
    let crc_at = bytes.len() - INDEX_TRAILER_LEN;
    check_crc(bytes, crc_at)
}

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian u32; the caller has checked that `at + 4 <= bytes.len()`.
fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// Reads a little-endian u64; the caller has checked that `at + 8 <= bytes.len()`.
fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Golden bytes for the segment header of docs/format.md.
    #[test]
    fn segment_header_golden_bytes() {
        let header = SegmentHeader {
            version: SEGMENT_FORMAT_VERSION,
            base_offset: 0x0102,
            created_ms: 1_764_000_000_000,
        };
        let bytes = header.encode();
        assert_eq!(
            hex(&bytes[..36]),
            concat!(
                "5745495253454700", // magic "WEIRSEG\0"
                "02000000",         // format version 2
                "00000000",         // flags
                "0201000000000000", // base offset 0x102
                "00e897b69a010000", // created_ms 1764000000000
                "00000000",         // reserved
            )
        );
        assert_eq!(&bytes[36..], &crc32fast::hash(&bytes[..36]).to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    }

    /// Golden bytes for a frame of two events, one with a key and a header.
    #[test]
    fn frame_golden_bytes() {
        let headers = [Header {
            name: "h",
            value: b"v",
        }];
        let events = [
            AppendEvent {
                timestamp_ms: Some(5),
                key: Some(b"k"),
                headers: &headers,
                value: b"ab",
            },
            AppendEvent {
                timestamp_ms: Some(7),
                key: None,
                headers: &[],
                value: b"",
            },
        ];
        let mut out = Vec::new();
        // Written when the segment was fsynced up to offset 6: a durable lag of 3.
        let len = encode_frame_noting_durable(&mut out, 9, Some(6), &events, &[5, 7]);
        assert_eq!(len, out.len());
        let expected_body = concat!(
            "4f000000",         // frame length 79
            "0900000000000000", // base offset 9
            "0700000000000000", // timestamp max 7
            "02000000",         // event count 2
            "40000000",         // attributes: kind 0 (events), lag 3 stored as 4 << 4
            // event 0
            "0500000000000000", // timestamp 5
            "01000000",         // key length 1
            "02000000",         // value length 2
            "0100",             // header count 1
            "6b",               // key "k"
            "0100",             // header name length 1
            "01000000",         // header value length 1
            "68",               // name "h"
            "76",               // value "v"
            "6162",             // value "ab"
            // event 1
            "0700000000000000", // timestamp 7
            "ffffffff",         // no key
            "00000000",         // value length 0
            "0000",             // header count 0
        );
        assert_eq!(hex(&out[4..]), expected_body);
        assert_eq!(&out[..4], &crc32fast::hash(&out[4..]).to_le_bytes());
        let header = check_frame(&out).expect("valid frame");
        assert_eq!(
            header,
            FrameHeader {
                frame_len: 79,
                base_offset: 9,
                timestamp_max_ms: 7,
                event_count: 2,
                kind: FrameKind::Events,
                durable_offset: Some(6),
            }
        );
        let decoded: Vec<_> = FrameEvents::new(&out, &header).collect();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].offset, 9);
        assert_eq!(decoded[0].key, Some(&b"k"[..]));
        assert_eq!(decoded[0].headers().collect::<Vec<_>>(), headers.to_vec());
        assert_eq!(decoded[0].value, b"ab");
        assert_eq!(
            decoded[0].encoded_len(),
            events[0].encoded_len().unwrap_or(0)
        );
        assert_eq!(decoded[1].offset, 10);
        assert_eq!(decoded[1].key, None);
        assert_eq!(decoded[1].value, b"");
    }

    /// Golden bytes for a lost-events marker: offsets 64..71 lost, written over 48 bytes.
    #[test]
    fn lost_marker_golden_bytes() {
        let mut out = Vec::new();
        encode_lost_marker(&mut out, 64, 7, 1_764_000_000_000, 48);
        assert_eq!(
            hex(&out[4..]),
            concat!(
                "30000000",                         // frame length 48
                "4000000000000000",                 // base offset 64
                "00e897b69a010000",                 // when declared lost: 1764000000000
                "07000000",                         // 7 lost events
                "01000000",                         // attributes: kind 1 (lost), no lag
                "00000000000000000000000000000000", // zeros to the frame's length
            )
        );
        assert_eq!(&out[..4], &crc32fast::hash(&out[4..]).to_le_bytes());
        let header = check_frame(&out).expect("a valid marker");
        assert!(header.is_lost());
        assert_eq!((header.base_offset, header.end_offset()), (64, 71));
        assert_eq!(FrameEvents::new(&out, &header).count(), 0);
        // A marker of exactly a header is valid; one with a byte other than zero is not.
        let mut short = Vec::new();
        encode_lost_marker(&mut short, 0, 1, 0, FRAME_HEADER_LEN as u32);
        assert!(check_frame(&short).is_ok());
        let mut dirty = out.clone();
        dirty[40] = 1;
        let crc = crc32fast::hash(&dirty[4..]);
        put_u32(&mut dirty, FRAME_CRC_AT, crc);
        assert!(check_frame(&dirty).is_err());
    }

    #[test]
    fn durable_lag_round_trips_and_saturates_to_not_recorded() {
        let events = [AppendEvent::value(b"v")];
        for (base, durable, expected) in [
            (100, Some(100), Some(100)),
            (100, Some(0), Some(0)),
            (100, None, None),
            (DURABLE_LAG_MAX + 5, Some(5), Some(5)),
            (DURABLE_LAG_MAX + 5, Some(4), None),
            (100, Some(101), None),
        ] {
            let mut frame = Vec::new();
            encode_frame_noting_durable(&mut frame, base, durable, &events, &[1]);
            let header = check_frame(&frame).expect("valid");
            assert_eq!(
                header.durable_offset, expected,
                "base {base} durable {durable:?}"
            );
        }
    }

    #[test]
    fn unknown_frame_kinds_are_refused() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, 0, &[AppendEvent::value(b"v")], &[1]);
        put_u32(&mut frame, FRAME_ATTRIBUTES_AT, 2);
        let crc = crc32fast::hash(&frame[4..]);
        put_u32(&mut frame, FRAME_CRC_AT, crc);
        assert!(matches!(
            check_frame(&frame),
            Err(DecodeError::Invalid("unknown frame kind"))
        ));
    }

    #[test]
    fn index_golden_bytes() {
        let file = IndexFile {
            base_offset: 100,
            end_offset: 150,
            end_position: 9000,
            timestamp_max_ms: 77,
            entries: vec![IndexEntry {
                relative_offset: 20,
                position: 4100,
                timestamp_max_before_ms: 60,
            }],
        };
        let bytes = file.encode();
        assert_eq!(
            hex(&bytes[..bytes.len() - 4]),
            concat!(
                "5745495249445800", // magic "WEIRIDX\0"
                "01000000",         // version
                "01000000",         // entry count
                "6400000000000000", // base offset 100
                "9600000000000000", // end offset 150
                "2823000000000000", // end position 9000
                "4d00000000000000", // timestamp max 77
                "14000000",         // entry: relative offset 20
                "04100000",         // entry: position 4100
                "3c00000000000000", // entry: timestamp max before 60
            )
        );
        assert_eq!(IndexFile::decode(&bytes), Ok(file));
    }

    #[test]
    fn checkpoint_golden_bytes() {
        let checkpoint = Checkpoint {
            start_offset: 3,
            segment_base_offset: 10,
            position: 40,
            next_offset: 10,
        };
        let bytes = checkpoint.encode();
        assert_eq!(
            hex(&bytes[..48]),
            concat!(
                "57454952434b5000", // magic "WEIRCKP\0"
                "01000000",         // version
                "00000000",         // reserved
                "0300000000000000", // start offset 3
                "0a00000000000000", // segment base offset 10
                "2800000000000000", // position 40
                "0a00000000000000", // next offset 10
            )
        );
        assert_eq!(Checkpoint::decode(&bytes), Ok(checkpoint));
    }

    #[test]
    fn zero_bytes_never_parse_as_a_frame() {
        let zeros = vec![0u8; 4096];
        assert!(matches!(
            check_frame(&zeros),
            Err(DecodeError::Invalid("zero frame length"))
        ));
    }

    #[test]
    fn every_bit_flip_of_a_frame_is_detected() {
        let events = [AppendEvent {
            timestamp_ms: Some(1),
            key: Some(b"key"),
            headers: &[],
            value: b"value",
        }];
        let mut frame = Vec::new();
        encode_frame(&mut frame, 0, &events, &[1]);
        for bit in 0..frame.len() * 8 {
            let mut damaged = frame.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_frame(&damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn a_huge_length_is_rejected_before_reading() {
        let mut bytes = vec![0u8; 64];
        put_u32(&mut bytes, FRAME_LEN_AT, u32::MAX);
        assert!(matches!(check_frame(&bytes), Err(DecodeError::Invalid(_))));
        put_u32(&mut bytes, FRAME_LEN_AT, 1000);
        assert!(matches!(
            check_frame(&bytes),
            Err(DecodeError::Truncated {
                needed: 1000,
                available: 64
            })
        ));
    }
}
