//! Body of the fuzz target of weir-proto, shared by the cargo-fuzz package `crates/proto/fuzz`
//! (the long run) and the stable smoke test `crates/proto/tests/decoder_smoke.rs` (CI), so that
//! both check the same properties. Not part of the API: hidden from the docs, no stability
//! promise.
//!
//! The first byte picks the limit (bit 0: the smallest allowed, or the default) and the mode
//! (bit 1: the rest is a raw byte stream, decoded frame after frame the way the node and the
//! client drive `decode_frame`; or the rest is the *body* of one intact frame, so that the body
//! decoder is reached without the fuzzer having to solve the CRC first). Every input is decoded
//! as both requests and responses. Properties checked besides "no panic, no huge allocation":
//! a decoded frame re-encodes and decodes to the same frame, the shared decoder
//! (`decode_frame_shared`, the node's) decodes it to the same frame, and an "incomplete" answer is
//! never given for a header that is already whole and invalid.

use crate::{
    decode_frame, decode_frame_shared, encode_frame, encode_raw_frame, peek_header, FrameLimits,
    Message, Request, Response, FRAME_BYTES_MIN, FRAME_HEADER_LEN,
};

/// Selector bit: decode with the smallest frame limit instead of the default one.
pub const SMALL_LIMIT: u8 = 0x01;
/// Selector bit: the rest of the input is the body of one intact frame.
pub const BODY_ONLY: u8 = 0x02;

/// What the decoder made of a stream, summed over both message types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Frames decoded into a message.
    pub decoded: u64,
    /// Frames refused with an error.
    pub errors: u64,
}

/// Decodes a stream of frames as `M`, checking every answer.
fn drive<M: Message + PartialEq + std::fmt::Debug>(
    mut stream: &[u8],
    limits: &FrameLimits,
    verdict: &mut Verdict,
) {
    loop {
        match decode_frame::<M>(stream, limits) {
            Ok(Some((frame, used))) => {
                verdict.decoded += 1;
                assert!(used > FRAME_HEADER_LEN && used <= stream.len());
                let mut again = Vec::new();
                encode_frame(
                    &mut again,
                    frame.request_id,
                    &frame.message,
                    &FrameLimits::default(),
                )
                .expect("a decoded message re-encodes");
                let (twice, _) = decode_frame::<M>(&again, &FrameLimits::default())
                    .expect("a re-encoded frame decodes")
                    .expect("a re-encoded frame is whole");
                assert_eq!(twice, frame);
                // The shared decoder (the node's) reads the same frame from the same bytes.
                let shared = bytes::Bytes::copy_from_slice(&stream[..used]);
                let (same, _) = decode_frame_shared::<M>(&shared, limits)
                    .expect("the shared decoder accepts what the plain one did")
                    .expect("a whole frame");
                assert_eq!(same, frame);
                stream = &stream[used..];
            }
            Ok(None) => {
                if stream.len() >= FRAME_HEADER_LEN {
                    let header = peek_header(stream, limits)
                        .expect("incomplete, so the header is valid")
                        .expect("incomplete, so the header is whole");
                    assert!(header.frame_len() > stream.len());
                }
                return;
            }
            Err(err) => {
                verdict.errors += 1;
                let _ = (
                    err.code(),
                    err.closes_connection(),
                    err.request_id(),
                    err.to_string(),
                );
                if err.closes_connection() {
                    return;
                }
                // An unknown kind: the frame was whole, so the stream goes on after it.
                let header = peek_header(stream, limits)
                    .expect("an unknown kind has a valid header")
                    .expect("an unknown kind has a whole header");
                stream = &stream[header.frame_len()..];
            }
        }
    }
}

/// The fuzz target: see the module docs for the selector byte and the properties.
pub fn frame_decoder(data: &[u8]) -> Verdict {
    let mut verdict = Verdict::default();
    let Some((&selector, stream)) = data.split_first() else {
        return verdict;
    };
    let limits = if selector & SMALL_LIMIT == 0 {
        FrameLimits::default()
    } else {
        FrameLimits::new(FRAME_BYTES_MIN).expect("the minimum is valid")
    };
    if selector & BODY_ONLY == 0 {
        drive::<Request>(stream, &limits, &mut verdict);
        drive::<Response>(stream, &limits, &mut verdict);
    } else {
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + stream.len());
        encode_raw_frame(&mut frame, 1, stream);
        drive::<Request>(&frame, &limits, &mut verdict);
        drive::<Response>(&frame, &limits, &mut verdict);
    }
    verdict
}
