//! The frame: a fixed 20-byte little-endian header laid out by hand, then a body of
//! `body_len` bytes holding one message. Pure functions over byte slices; no I/O.
//!
//! `docs/protocol.md` ("Frame") is the spec; the offsets below are derived from each other the
//! way its table is, and the golden-bytes tests at the bottom pin the two together.
//!
//! Invariants kept here:
//! - a header is checked as soon as its bytes arrive — magic, version, flags, then the length —
//!   so garbage and oversized lengths are refused before the rest is awaited, and a length is
//!   checked against the limit before anything is buffered or allocated for the body;
//! - a zero length never parses;
//! - a body is decoded only after the CRC (over the header and the body) holds, so a decoded
//!   message is exactly what the peer sent.

use crate::codec::{self, BodyError};
use crate::config::FrameLimits;
use crate::error::{FrameError, Result};
use crate::message::Message;

/// The first two bytes of every frame: `WP` (`57 50`).
pub const FRAME_MAGIC: [u8; 2] = *b"WP";
/// The frame layout version written by this code.
pub const FRAME_VERSION: u8 = 1;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 2;
const FLAGS_AT: usize = VERSION_AT + 1;
const BODY_LEN_AT: usize = FLAGS_AT + 1;
const REQUEST_ID_AT: usize = BODY_LEN_AT + 4;
const CRC_AT: usize = REQUEST_ID_AT + 8;
/// Bytes in a frame header; the body starts here.
pub const FRAME_HEADER_LEN: usize = CRC_AT + 4;
const _: () = assert!(FRAME_HEADER_LEN == 20);

/// One message and the request id it travels with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<M> {
    /// Chosen by the client for a request and echoed in its response; 0 in a response means
    /// "the connection" (an error not tied to one request).
    pub request_id: u64,
    /// The message.
    pub message: M,
}

/// What a frame header says, after its magic, version, flags and length were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of body after the header (≥ 1).
    pub body_len: u32,
    /// The frame's request id (not yet covered by a checked CRC).
    pub request_id: u64,
    /// The CRC stored in the header.
    pub crc: u32,
}

impl FrameHeader {
    /// The whole frame's length, header included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len as usize
    }
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(le)
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

/// The CRC-32 of a frame: over header bytes `0..16` (everything before the CRC field), then
/// the body.
fn frame_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_AT]);
    hasher.update(body);
    hasher.finalize()
}

/// Checks the frame header at the start of `buf`, as far as it has arrived.
///
/// Returns `Ok(None)` while fewer than [`FRAME_HEADER_LEN`] bytes are there and what is there
/// is fine; the header once it is whole. Each field is checked as soon as its bytes are
/// there, so a stream that is not weir, or a length over the limit, is refused at once.
/// Use [`FrameHeader::frame_len`] to know how many bytes to wait for.
///
/// # Errors
/// [`FrameError::BadMagic`], [`FrameError::UnsupportedVersion`],
/// [`FrameError::ReservedFlags`], [`FrameError::ZeroLength`] or [`FrameError::TooLarge`].
pub fn peek_header(buf: &[u8], limits: &FrameLimits) -> Result<Option<FrameHeader>> {
    if let Some(magic) = buf.get(MAGIC_AT..VERSION_AT) {
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic {
                found: [magic[0], magic[1]],
            });
        }
    }
    if let Some(&version) = buf.get(VERSION_AT) {
        if version != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion { version });
        }
    }
    if let Some(&flags) = buf.get(FLAGS_AT) {
        if flags != 0 {
            return Err(FrameError::ReservedFlags { flags });
        }
    }
    if buf.len() >= REQUEST_ID_AT {
        let body_len = get_u32(buf, BODY_LEN_AT);
        if body_len == 0 {
            return Err(FrameError::ZeroLength);
        }
        let frame_bytes = FRAME_HEADER_LEN as u64 + u64::from(body_len);
        let frame_bytes_max = limits.effective_frame_bytes_max();
        if frame_bytes > u64::from(frame_bytes_max) {
            return Err(FrameError::TooLarge {
                frame_bytes,
                frame_bytes_max,
            });
        }
    }
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    Ok(Some(FrameHeader {
        body_len: get_u32(buf, BODY_LEN_AT),
        request_id: get_u64(buf, REQUEST_ID_AT),
        crc: get_u32(buf, CRC_AT),
    }))
}

/// Decodes the frame at the start of `buf`, the incremental way a network reader needs.
///
/// Returns `Ok(None)` if the frame is not all there yet (keep reading into the same buffer and
/// call again); otherwise the frame and the number of bytes it took, which the caller drops
/// from the front of its buffer. Nothing is allocated for a frame before its length passed
/// `limits` and its bytes have all arrived.
///
/// # Errors
/// Anything [`peek_header`] reports; then [`FrameError::BadCrc`]; then
/// [`FrameError::UnknownKind`] or [`FrameError::Malformed`] (which carry the request id, now
/// trusted). [`FrameError::closes_connection`] and [`FrameError::code`] say how to react.
pub fn decode_frame<M: Message>(
    buf: &[u8],
    limits: &FrameLimits,
) -> Result<Option<(Frame<M>, usize)>> {
    let Some(header) = peek_header(buf, limits)? else {
        return Ok(None);
    };
    let frame_len = header.frame_len();
    let Some(frame) = buf.get(..frame_len) else {
        return Ok(None);
    };
    let body = &frame[FRAME_HEADER_LEN..];
    let computed = frame_crc(frame, body);
    if computed != header.crc {
        return Err(FrameError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    let request_id = header.request_id;
    match codec::decode_body::<M>(body) {
        Ok(message) => Ok(Some((
            Frame {
                request_id,
                message,
            },
            frame_len,
        ))),
        Err(BodyError::UnknownKind(kind)) => Err(FrameError::UnknownKind { request_id, kind }),
        Err(BodyError::Malformed(reason)) => Err(FrameError::Malformed { request_id, reason }),
    }
}

/// [`decode_frame`] over a buffer that is shared (`bytes::Bytes`): byte strings the message
/// keeps as `Bytes` (event values) become slices of `buf` instead of copies, so a produce's
/// values are never copied between the socket and the log. The checks are those of
/// [`decode_frame`], in the same order.
///
/// # Errors
/// As [`decode_frame`].
pub fn decode_frame_shared<M: Message>(
    buf: &bytes::Bytes,
    limits: &FrameLimits,
) -> Result<Option<(Frame<M>, usize)>> {
    crate::adapters::with_shared_frame(buf, || decode_frame(buf, limits))
}

/// Appends one frame holding `message` to `out` and returns its length.
///
/// # Errors
/// [`FrameError::TooLarge`] if the frame would exceed `limits` (then `out` is left as it
/// was: the caller can send an error response instead); [`FrameError::Encode`] never happens
/// for this crate's messages.
pub fn encode_frame<M: Message>(
    out: &mut Vec<u8>,
    request_id: u64,
    message: &M,
    limits: &FrameLimits,
) -> Result<usize> {
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    if let Err(reason) = codec::encode_body(out, message) {
        out.truncate(start);
        return Err(FrameError::Encode { reason });
    }
    let frame_len = out.len() - start;
    let frame_bytes_max = limits.effective_frame_bytes_max();
    if frame_len > frame_bytes_max as usize {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            frame_bytes: frame_len as u64,
            frame_bytes_max,
        });
    }
    let body_len = (frame_len - FRAME_HEADER_LEN) as u32; // ≤ the limit, so it fits
    assert!(body_len > 0, "every message encodes at least its kind");
    write_header(&mut out[start..], body_len, request_id);
    Ok(frame_len)
}

/// Appends a frame around arbitrary `body` bytes — even empty or invalid ones — with a correct
/// header and CRC, and returns its length. No limit is checked. For tests and tools that need
/// to send what [`encode_frame`] would refuse to produce (an unknown kind, a malformed body).
///
/// # Panics
/// If `body` is longer than `u32::MAX` bytes.
pub fn encode_raw_frame(out: &mut Vec<u8>, request_id: u64, body: &[u8]) -> usize {
    let body_len = u32::try_from(body.len()).expect("a body longer than u32::MAX bytes");
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    out.extend_from_slice(body);
    write_header(&mut out[start..], body_len, request_id);
    out.len() - start
}

/// Fills in the header of the frame at the start of `frame`, whose body follows it.
fn write_header(frame: &mut [u8], body_len: u32, request_id: u64) {
    frame[MAGIC_AT..VERSION_AT].copy_from_slice(&FRAME_MAGIC);
    frame[VERSION_AT] = FRAME_VERSION;
    frame[FLAGS_AT] = 0;
    frame[BODY_LEN_AT..REQUEST_ID_AT].copy_from_slice(&body_len.to_le_bytes());
    frame[REQUEST_ID_AT..CRC_AT].copy_from_slice(&request_id.to_le_bytes());
    let (header, body) = frame.split_at(FRAME_HEADER_LEN);
    let crc = frame_crc(header, body);
    frame[CRC_AT..FRAME_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ErrorCode;
    use crate::request::Request;
    use crate::response::Response;

    fn limits() -> FrameLimits {
        FrameLimits::default()
    }

    /// `Request::ListTopics` (body: kind 3) with request id 0x0102030405060708.
    const GOLDEN_LIST_TOPICS: [u8; 21] = [
        0x57, 0x50, // magic "WP"
        0x01, // version 1
        0x00, // flags
        0x01, 0x00, 0x00, 0x00, // body_len 1
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // request_id
        0x45, 0x09, 0xFD, 0xE9, // crc of bytes 0..16 and the body
        0x03, // body: kind 3, ListTopics
    ];

    #[test]
    fn golden_frame_header() {
        let mut out = Vec::new();
        let len = encode_frame(
            &mut out,
            0x0102_0304_0506_0708,
            &Request::ListTopics,
            &limits(),
        )
        .unwrap();
        assert_eq!(len, 21);
        assert_eq!(out, GOLDEN_LIST_TOPICS);
        let mut crc_input = GOLDEN_LIST_TOPICS[..16].to_vec();
        crc_input.push(0x03);
        assert_eq!(
            crc32fast::hash(&crc_input).to_le_bytes(),
            GOLDEN_LIST_TOPICS[16..20]
        );

        let (frame, used) = decode_frame::<Request>(&GOLDEN_LIST_TOPICS, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(used, 21);
        assert_eq!(frame.request_id, 0x0102_0304_0506_0708);
        assert_eq!(frame.message, Request::ListTopics);
    }

    #[test]
    fn golden_error_response_frame() {
        // docs/protocol.md, "Example: a whole frame".
        let response = Response::error(ErrorCode::HandshakeRequired, "hello first");
        let mut out = Vec::new();
        encode_frame(&mut out, 9, &response, &limits()).unwrap();
        let expected: &[u8] = &[
            0x57, 0x50, 0x01, 0x00, // magic, version, flags
            0x0F, 0x00, 0x00, 0x00, // body_len 15
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // request_id 9
            0xA2, 0x5F, 0x70, 0xF0, // crc
            0x00, 0x04, // kind 0 (Error), code 4 (handshake_required)
            0x0B, b'h', b'e', b'l', b'l', b'o', b' ', b'f', b'i', b'r', b's', b't', // message
            0x00, // offsets: None
        ];
        assert_eq!(out, expected);
        let (frame, _) = decode_frame::<Response>(expected, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(frame.message, response);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for prefix in 0..GOLDEN_LIST_TOPICS.len() {
            assert_eq!(
                decode_frame::<Request>(&GOLDEN_LIST_TOPICS[..prefix], &limits()),
                Ok(None),
                "prefix {prefix}"
            );
        }
    }

    #[test]
    fn bytes_after_a_frame_are_left_alone() {
        let mut buf = GOLDEN_LIST_TOPICS.to_vec();
        buf.extend_from_slice(&GOLDEN_LIST_TOPICS[..5]);
        let (_, used) = decode_frame::<Request>(&buf, &limits()).unwrap().unwrap();
        assert_eq!(used, GOLDEN_LIST_TOPICS.len());
        assert_eq!(decode_frame::<Request>(&buf[used..], &limits()), Ok(None));
    }

    #[test]
    fn oversized_lengths_fail_on_the_first_eight_bytes() {
        let header = [0x57, 0x50, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF];
        let err = decode_frame::<Request>(&header, &limits()).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                frame_bytes: u64::from(u32::MAX) + 20,
                frame_bytes_max: 16 << 20,
            }
        );
        // Just over the limit fails, the limit itself is fine.
        let max = limits().frame_bytes_max;
        let over = (max - FRAME_HEADER_LEN as u32 + 1).to_le_bytes();
        let at = (max - FRAME_HEADER_LEN as u32).to_le_bytes();
        let mut buf = header;
        buf[4..8].copy_from_slice(&over);
        assert!(matches!(
            decode_frame::<Request>(&buf, &limits()),
            Err(FrameError::TooLarge { .. })
        ));
        buf[4..8].copy_from_slice(&at);
        assert_eq!(decode_frame::<Request>(&buf, &limits()), Ok(None));
    }

    #[test]
    fn zero_length_is_refused() {
        let mut out = Vec::new();
        encode_raw_frame(&mut out, 1, &[]);
        assert_eq!(
            decode_frame::<Request>(&out, &limits()),
            Err(FrameError::ZeroLength)
        );
        assert_eq!(
            decode_frame::<Request>(&out[..8], &limits()),
            Err(FrameError::ZeroLength)
        );
    }

    #[test]
    fn garbage_is_refused_at_once() {
        assert_eq!(
            decode_frame::<Request>(b"GE", &limits()),
            Err(FrameError::BadMagic { found: *b"GE" })
        );
        assert_eq!(
            decode_frame::<Request>(&[0x57, 0x50, 0x02], &limits()),
            Err(FrameError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            decode_frame::<Request>(&[0x57, 0x50, 0x01, 0x80], &limits()),
            Err(FrameError::ReservedFlags { flags: 0x80 })
        );
        assert_eq!(decode_frame::<Request>(b"W", &limits()), Ok(None));
    }

    #[test]
    fn every_bit_flip_is_detected() {
        for bit in 0..GOLDEN_LIST_TOPICS.len() * 8 {
            let mut frame = GOLDEN_LIST_TOPICS;
            frame[bit / 8] ^= 1 << (bit % 8);
            let result = decode_frame::<Request>(&frame, &limits());
            // A flip in the length makes the frame longer (incomplete) or refused; anywhere
            // else it is an error. It never decodes.
            let length_bit = (BODY_LEN_AT * 8..REQUEST_ID_AT * 8).contains(&bit);
            assert!(
                result.is_err() || (length_bit && result == Ok(None)),
                "bit {bit}: {result:?}"
            );
        }
    }

    #[test]
    fn bad_crc_is_refused_before_the_body_is_decoded() {
        let mut frame = GOLDEN_LIST_TOPICS;
        frame[20] = 0xFF; // an unknown kind, but the CRC no longer holds
        assert!(matches!(
            decode_frame::<Request>(&frame, &limits()),
            Err(FrameError::BadCrc { .. })
        ));
    }

    #[test]
    fn intact_frames_with_bad_bodies_keep_their_request_id() {
        let mut out = Vec::new();
        encode_raw_frame(&mut out, 42, &[200]);
        let err = decode_frame::<Request>(&out, &limits()).unwrap_err();
        assert_eq!(
            err,
            FrameError::UnknownKind {
                request_id: 42,
                kind: 200
            }
        );
        assert!(!err.closes_connection());

        out.clear();
        encode_raw_frame(&mut out, 43, &[4, 9, b'x']);
        let err = decode_frame::<Request>(&out, &limits()).unwrap_err();
        assert!(
            matches!(err, FrameError::Malformed { request_id: 43, .. }),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
        assert!(err.closes_connection());
    }

    #[test]
    fn oversized_messages_are_not_encoded() {
        let limits = FrameLimits::new(crate::config::FRAME_BYTES_MIN).unwrap();
        let mut out = vec![1, 2, 3];
        let response = Response::error(ErrorCode::Internal, "x".repeat(5000));
        let err = encode_frame(&mut out, 1, &response, &limits).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
        assert_eq!(out, [1, 2, 3]);
    }
}
