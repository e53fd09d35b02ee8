//! Fuzz target: arbitrary bytes into the frame decoder, as a stream.
//!
//! The first byte picks the limit (bit 0: the smallest allowed, or the default) and the mode
//! (bit 1: the rest is a raw byte stream, decoded frame after frame the way the node and the
//! client drive `decode_frame`; or the rest is the *body* of one intact frame, so that the body
//! decoder is reached without the fuzzer having to solve the CRC first). Every input is decoded
//! as both requests and responses. Properties checked besides "no panic, no huge allocation":
//! a decoded frame re-encodes and decodes to the same frame, and an "incomplete" answer is
//! never given for a header that is already whole and invalid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_proto::{
    decode_frame, encode_frame, encode_raw_frame, peek_header, FrameLimits, Message, Request,
    Response, FRAME_BYTES_MIN, FRAME_HEADER_LEN,
};

fn drive<M: Message + PartialEq + std::fmt::Debug>(mut stream: &[u8], limits: &FrameLimits) {
    loop {
        match decode_frame::<M>(stream, limits) {
            Ok(Some((frame, used))) => {
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
                let _ = (err.code(), err.closes_connection(), err.request_id());
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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let limits = if selector & 1 == 0 {
        FrameLimits::default()
    } else {
        FrameLimits::new(FRAME_BYTES_MIN).expect("the minimum is valid")
    };
    if selector & 2 == 0 {
        drive::<Request>(stream, &limits);
        drive::<Response>(stream, &limits);
    } else {
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + stream.len());
        encode_raw_frame(&mut frame, 1, stream);
        drive::<Request>(&frame, &limits);
        drive::<Response>(&frame, &limits);
    }
});
