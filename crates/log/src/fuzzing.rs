//! Bodies of the fuzz targets of weir-log, shared by the cargo-fuzz package `crates/log/fuzz`
//! (the long run) and the stable smoke test `crates/log/tests/fuzz_smoke.rs` (CI), so that both
//! check the same properties. Not part of the API: hidden from the docs, no stability promise.
//!
//! Each function takes arbitrary bytes and must not panic on any of them; it panics (through
//! `assert!`) only when a decoder breaks one of its properties. The first input byte is a
//! *selector*: its bits ask for fix-ups (a recomputed CRC, a length that matches the input) so
//! that the fuzzer reaches the checks behind the checksum without having to solve CRC-32.
//!
//! Properties, beyond "no panic, no huge allocation":
//! - whatever a decoder accepts re-encodes to exactly the bytes it came from (the formats have
//!   one encoding per value, so anything else means a field was ignored or misread);
//! - an accepted frame's events agree with its header, and partial iteration agrees with full;
//! - recovery either refuses to open or opens a log that reads back densely, whose every frame
//!   passes `check_frame`, that keeps the valid frames before any damage, that verifies, that
//!   takes a new append, and that reopens to the same state.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::{
    check_frame, encode_frame, peek_frame_len, AppendEvent, Checkpoint, FrameEvents, Header,
    IndexFile, SegmentHeader, CHECKPOINT_LEN, EVENT_FIXED_LEN, FRAME_HEADER_LEN, INDEX_ENTRY_LEN,
    INDEX_HEADER_LEN, INDEX_TRAILER_LEN, SEGMENT_HEADER_LEN,
};
use crate::read::CheckedFrame;
use crate::sim::SimStorage;
use crate::storage::{OpenMode, Storage};
use crate::{Log, LogConfig, ManualClock, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE};

/// Selector bit: recompute the structure's CRC over the (fixed-up) bytes.
pub const FIX_CRC: u8 = 0x01;
/// Selector bit: make the structure's length field (or its size) agree with the input.
pub const FIX_LENGTH: u8 = 0x02;

/// Selector bits of [`segment_recovery`]: a valid segment header before the fuzz bytes.
pub const RECOVERY_HEADER: u8 = 0x01;
/// [`segment_recovery`]: two valid frames (three events) between the header and the fuzz bytes.
pub const RECOVERY_FRAMES: u8 = 0x02;
/// [`segment_recovery`]: a recovery checkpoint naming the end of the valid prefix.
pub const RECOVERY_CHECKPOINT: u8 = 0x04;
/// [`segment_recovery`]: the fuzz bytes are the active segment's *index* file, next to a
/// clean-shutdown marker (the open that trusts the index instead of scanning).
pub const RECOVERY_TRUSTED_INDEX: u8 = 0x08;
/// [`segment_recovery`]: the segment is sealed; an empty active segment follows it, at the
/// base offset `3 + (selector >> 5)`.
pub const RECOVERY_SEALED: u8 = 0x10;

/// What a decoder made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes decoded, and every property of the decoded value held.
    Accepted,
    /// The decoder returned an error.
    Rejected,
}

/// What [`segment_recovery`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryVerdict {
    /// `Log::open` returned an error.
    Refused,
    /// The log opened and every check passed.
    Opened {
        /// Events readable after recovery.
        events: u64,
        /// Whether recovery cut a torn tail.
        torn_tail: bool,
    },
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// The log frame decoder: `check_frame`, `FrameEvents`, `CheckedFrame`. Selector bits:
/// [`FIX_LENGTH`] writes the input's length into the frame's length field, [`FIX_CRC`]
/// recomputes the frame's CRC.
pub fn log_frame(data: &[u8]) -> Verdict {
    let Some((&selector, rest)) = data.split_first() else {
        return Verdict::Rejected;
    };
    let mut bytes = rest.to_vec();
    if selector & FIX_LENGTH != 0 && bytes.len() >= 8 {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        put_u32(&mut bytes, 4, len);
    }
    if selector & FIX_CRC != 0 && bytes.len() >= 8 {
        let claimed = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let end = claimed.clamp(8, bytes.len());
        let crc = crc32fast::hash(&bytes[4..end]);
        put_u32(&mut bytes, 0, crc);
    }
    check_log_frame(&bytes)
}

/// The checks of [`log_frame`] on bytes that are already fixed up.
pub fn check_log_frame(bytes: &[u8]) -> Verdict {
    let header = match check_frame(bytes) {
        Ok(header) => header,
        Err(error) => {
            let _ = error.to_string();
            let checked = CheckedFrame::new(Bytes::copy_from_slice(bytes));
            assert!(
                checked.is_err(),
                "CheckedFrame accepted what check_frame refused"
            );
            return Verdict::Rejected;
        }
    };
    let len = header.frame_len as usize;
    assert_eq!(peek_frame_len(bytes), Ok(Some(header.frame_len)));
    let frame = &bytes[..len];
    if header.is_lost() {
        // A lost-events marker: no events, and one encoding.
        assert!(len >= FRAME_HEADER_LEN && len <= bytes.len());
        assert_eq!(FrameEvents::new(frame, &header).count(), 0);
        let mut again = Vec::with_capacity(len);
        crate::format::encode_lost_marker(
            &mut again,
            header.base_offset,
            header.event_count,
            header.timestamp_max_ms,
            header.frame_len,
        );
        assert!(
            again == frame,
            "an accepted marker does not re-encode to its bytes"
        );
        return Verdict::Accepted;
    }
    assert!(len >= FRAME_HEADER_LEN + EVENT_FIXED_LEN && len <= bytes.len());
    assert!(
        check_frame(&frame[..len - 1]).is_err(),
        "a cut frame passed"
    );

    let events: Vec<_> = FrameEvents::new(frame, &header).collect();
    assert_eq!(events.len(), header.event_count as usize);
    let mut encoded_len = FRAME_HEADER_LEN;
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.offset, header.base_offset + i as u64);
        encoded_len += event.encoded_len();
    }
    assert_eq!(encoded_len, len, "events do not account for the frame");
    let timestamp_max_ms = events.iter().map(|e| e.timestamp_ms).max();
    assert_eq!(timestamp_max_ms, Some(header.timestamp_max_ms));

    // One encoding per frame: re-encoding the decoded events gives the same bytes. This also
    // catches a header iterator that stops early (a header dropped) or a field misread.
    let headers: Vec<Vec<Header<'_>>> = events.iter().map(|e| e.headers().collect()).collect();
    let appends: Vec<AppendEvent<'_>> = events
        .iter()
        .zip(&headers)
        .map(|(event, headers)| AppendEvent {
            timestamp_ms: Some(event.timestamp_ms),
            key: event.key,
            headers,
            value: event.value,
        })
        .collect();
    let timestamps: Vec<u64> = events.iter().map(|e| e.timestamp_ms).collect();
    let mut again = Vec::with_capacity(len);
    crate::format::encode_frame_noting_durable(
        &mut again,
        header.base_offset,
        header.durable_offset,
        &appends,
        &timestamps,
    );
    assert!(
        again == frame,
        "an accepted frame does not re-encode to its bytes"
    );

    // Skipping to the middle and resuming there agree with the full iteration.
    let middle = events.len() / 2;
    let mut skipped = FrameEvents::new(frame, &header);
    skipped.skip_to(header.base_offset + middle as u64);
    let at = skipped.position();
    assert_eq!(skipped.next(), Some(events[middle]));
    let resumed: Vec<_> =
        FrameEvents::resume(frame, &header, header.base_offset + middle as u64, at).collect();
    assert_eq!(resumed, events[middle..]);

    let checked = CheckedFrame::new(Bytes::copy_from_slice(frame)).expect("a checked frame");
    assert_eq!(checked.header, header);
    if bytes.len() > len {
        assert!(CheckedFrame::new(Bytes::copy_from_slice(bytes)).is_err());
    }
    Verdict::Accepted
}

/// The index file decoder. Selector bits: [`FIX_LENGTH`] cuts the input to a whole number of
/// entries and writes that count, [`FIX_CRC`] recomputes the trailing CRC.
pub fn log_index(data: &[u8]) -> Verdict {
    let Some((&selector, rest)) = data.split_first() else {
        return Verdict::Rejected;
    };
    let mut bytes = rest.to_vec();
    let fixed_len = INDEX_HEADER_LEN + INDEX_TRAILER_LEN;
    if selector & FIX_LENGTH != 0 && bytes.len() >= fixed_len {
        let count = (bytes.len() - fixed_len) / INDEX_ENTRY_LEN;
        bytes.truncate(fixed_len + count * INDEX_ENTRY_LEN);
        put_u32(&mut bytes, 12, u32::try_from(count).unwrap_or(u32::MAX));
    }
    if selector & FIX_CRC != 0 && bytes.len() >= INDEX_TRAILER_LEN {
        let crc_at = bytes.len() - INDEX_TRAILER_LEN;
        let crc = crc32fast::hash(&bytes[..crc_at]);
        put_u32(&mut bytes, crc_at, crc);
    }
    match IndexFile::decode(&bytes) {
        Ok(file) => {
            assert!(
                file.encode() == bytes,
                "an accepted index does not re-encode"
            );
            assert!(file.base_offset <= file.end_offset);
            assert!(file.end_position >= SEGMENT_HEADER_LEN as u64);
            for pair in file.entries.windows(2) {
                assert!(pair[0].relative_offset < pair[1].relative_offset);
                assert!(pair[0].position < pair[1].position);
            }
            for entry in &file.entries {
                let offset = file
                    .base_offset
                    .checked_add(u64::from(entry.relative_offset));
                assert!(offset.is_some_and(|offset| offset < file.end_offset));
                let position = u64::from(entry.position);
                assert!(position >= SEGMENT_HEADER_LEN as u64 && position < file.end_position);
            }
            Verdict::Accepted
        }
        Err(error) => {
            let _ = error.to_string();
            Verdict::Rejected
        }
    }
}

/// The two fixed-size structures: the recovery checkpoint and the segment header, each decoded
/// from the input. Selector bits: [`FIX_LENGTH`] pads or cuts the input to the structure's
/// size, [`FIX_CRC`] recomputes its CRC. Returns the checkpoint's verdict.
pub fn log_checkpoint(data: &[u8]) -> Verdict {
    let Some((&selector, rest)) = data.split_first() else {
        return Verdict::Rejected;
    };
    let fix = |size: usize| {
        let mut bytes = rest.to_vec();
        if selector & FIX_LENGTH != 0 {
            bytes.resize(size, 0);
        }
        if selector & FIX_CRC != 0 && bytes.len() >= size {
            let crc = crc32fast::hash(&bytes[..size - 4]);
            put_u32(&mut bytes, size - 4, crc);
        }
        bytes
    };

    let bytes = fix(SEGMENT_HEADER_LEN);
    if let Ok(header) = SegmentHeader::decode(&bytes) {
        assert!(header.encode()[..] == bytes[..SEGMENT_HEADER_LEN]);
    }

    let bytes = fix(CHECKPOINT_LEN);
    match Checkpoint::decode(&bytes) {
        Ok(checkpoint) => {
            assert!(
                checkpoint.encode()[..] == bytes[..],
                "checkpoint re-encodes"
            );
            assert!(checkpoint.position >= SEGMENT_HEADER_LEN as u64);
            assert!(checkpoint.next_offset >= checkpoint.segment_base_offset);
            Verdict::Accepted
        }
        Err(error) => {
            let _ = error.to_string();
            Verdict::Rejected
        }
    }
}

const RECOVERY_DIR: &str = "/fuzz/p0";

fn segment_path(base_offset: u64) -> std::path::PathBuf {
    Path::new(RECOVERY_DIR).join(format!("{base_offset:020}.log"))
}

fn put_file(storage: &SimStorage, path: &Path, bytes: &[u8]) {
    let file = storage
        .open(path, OpenMode::CreateNew)
        .expect("SimStorage fails only when told to");
    file.write_all_at(bytes, 0).expect("in-memory write");
    file.sync_data().expect("in-memory sync");
}

/// The values of the three events in the valid prefix of [`segment_recovery`].
const PREFIX_VALUES: [&[u8]; 3] = [b"first", b"", b"third value"];

/// The valid bytes [`segment_recovery`] puts before the fuzz bytes for `selector`, and the
/// number of events they hold (for building seed inputs).
pub fn recovery_prefix(selector: u8) -> (Vec<u8>, u64) {
    let mut segment = Vec::new();
    if selector & RECOVERY_HEADER == 0 {
        return (segment, 0);
    }
    let header = SegmentHeader {
        version: crate::format::SEGMENT_FORMAT_VERSION,
        base_offset: 0,
        created_ms: 1_000,
    };
    segment.extend_from_slice(&header.encode());
    if selector & RECOVERY_FRAMES == 0 {
        return (segment, 0);
    }
    let headers = [Header {
        name: "trace",
        value: b"abc",
    }];
    let first = [
        AppendEvent {
            timestamp_ms: Some(1_000),
            key: Some(b"key"),
            headers: &headers,
            value: PREFIX_VALUES[0],
        },
        AppendEvent::value(PREFIX_VALUES[1]),
    ];
    encode_frame(&mut segment, 0, &first, &[1_000, 1_001]);
    let second = [AppendEvent::value(PREFIX_VALUES[2])];
    encode_frame(&mut segment, 2, &second, &[999]);
    (segment, PREFIX_VALUES.len() as u64)
}

/// Segment recovery from arbitrary bytes: a `Log` is opened over a [`SimStorage`] whose segment
/// file holds the input (after a valid header and frames, if the selector asks; see the
/// `RECOVERY_*` bits). It must refuse cleanly, or open a log that is consistent: see the
/// module docs.
pub fn segment_recovery(data: &[u8]) -> RecoveryVerdict {
    let Some((&selector, tail)) = data.split_first() else {
        return RecoveryVerdict::Refused;
    };
    let dir = Path::new(RECOVERY_DIR);
    let storage = SimStorage::new();
    storage.create_dir_all(dir).expect("in-memory directory");

    let with_header = selector & RECOVERY_HEADER != 0;
    let trusted_index = with_header && selector & RECOVERY_TRUSTED_INDEX != 0;
    let (mut segment, prefix_events) = recovery_prefix(selector);
    let prefix_end = segment.len() as u64;
    if trusted_index {
        put_file(&storage, &dir.join("00000000000000000000.index"), tail);
        put_file(&storage, &dir.join(CLEAN_SHUTDOWN_FILE), &[]);
    } else {
        segment.extend_from_slice(tail);
    }
    put_file(&storage, &segment_path(0), &segment);
    let sealed = selector & RECOVERY_SEALED != 0;
    if sealed {
        let base_offset = 3 + u64::from(selector >> 5);
        let header = SegmentHeader {
            version: crate::format::SEGMENT_FORMAT_VERSION,
            base_offset,
            created_ms: 2_000,
        };
        put_file(&storage, &segment_path(base_offset), &header.encode());
    }
    if with_header && selector & RECOVERY_CHECKPOINT != 0 {
        let checkpoint = Checkpoint {
            start_offset: 0,
            segment_base_offset: 0,
            position: prefix_end,
            next_offset: prefix_events,
        };
        put_file(&storage, &dir.join(CHECKPOINT_FILE), &checkpoint.encode());
    }
    storage.sync_dir(dir).expect("in-memory directory sync");

    let config = LogConfig {
        segment_bytes_max: crate::SEGMENT_BYTES_MIN * 4,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let open = || {
        Log::open_with(
            dir,
            config.clone(),
            Arc::new(storage.clone()),
            Arc::new(ManualClock::new(5_000)),
        )
    };
    let log = match open() {
        Ok(log) => log,
        Err(error) => {
            let _ = error.to_string();
            return RecoveryVerdict::Refused;
        }
    };
    // Two setups make the open trust bytes it does not check: an index next to a clean-shutdown
    // marker, and a sealed segment at or below the checkpoint's segment (checked when read, not
    // at open). There the log must still never return an event that fails its checks, but
    // reads of what it trusted may fail.
    let trusts_sealed = sealed && with_header && selector & RECOVERY_CHECKPOINT != 0;
    let strict = !trusted_index && !trusts_sealed;
    let torn_tail = log.recovery_report().torn_tail.is_some();
    let start = log.start_offset();
    let end = log.end_offset();
    assert!(start <= end, "start {start} after end {end}");
    assert_eq!(log.next_offset(), end);
    let Some(values) = read_checked(&log, start, end, strict) else {
        return RecoveryVerdict::Opened {
            events: end - start,
            torn_tail,
        };
    };
    if strict {
        // Recovery never cuts valid frames that come before the damage.
        assert!(end >= prefix_events, "recovery lost valid frames");
        for (value, expected) in values
            .iter()
            .zip(PREFIX_VALUES.iter().take(prefix_events as usize))
        {
            assert_eq!(value, expected);
        }
        log.verify().expect("a recovered log verifies");
    }
    let appended = log.append(&[AppendEvent::value(b"after recovery")]);
    let closed = log.close();
    if strict {
        assert_eq!(appended.expect("a recovered log takes appends"), end);
        closed.expect("a recovered log closes");
        // Recovery is done: a second open finds a clean log holding the same events.
        let again = open().expect("a recovered log reopens");
        assert!(again.recovery_report().torn_tail.is_none());
        assert_eq!((again.start_offset(), again.end_offset()), (start, end + 1));
        let reread = read_checked(&again, start, end + 1, true).expect("strict reads");
        assert_eq!(reread[..values.len()], values[..]);
        assert_eq!(
            reread.last().map(Vec::as_slice),
            Some(&b"after recovery"[..])
        );
        again.close().expect("close");
    }
    RecoveryVerdict::Opened {
        events: end - start,
        torn_tail,
    }
}

/// Reads `start..end`, checking every frame and the density of offsets. With `strict`, every
/// read must succeed and reach `end`; without, the first failure ends the reading (`None`).
fn read_checked(log: &Log, start: u64, end: u64, strict: bool) -> Option<Vec<Vec<u8>>> {
    let mut values = Vec::new();
    let mut from = start;
    while from < end {
        let batch = match log.read(from, 1_000, usize::MAX) {
            Ok(batch) => batch,
            Err(error) => {
                assert!(!strict, "read at {from} of {start}..{end} failed: {error}");
                return None;
            }
        };
        assert_eq!(batch.first_offset(), from);
        for frame in batch.frames() {
            let header = check_frame(&frame.bytes).expect("a frame the log returned is valid");
            assert_eq!(header, frame.header);
            assert_eq!(header.frame_len as usize, frame.bytes.len());
        }
        for (i, event) in batch.iter().enumerate() {
            assert_eq!(event.offset, from + i as u64, "offsets are dense");
            values.push(event.value.to_vec());
        }
        if batch.is_empty() {
            assert!(!strict, "an empty read at {from} before the end {end}");
            return None;
        }
        from = batch.next_offset();
        assert!(from <= end, "a read went past the end");
    }
    Some(values)
}
