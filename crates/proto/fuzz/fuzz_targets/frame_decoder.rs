//! Fuzz target: arbitrary bytes into the frame decoder, as a stream of frames or as the body of
//! one intact frame, decoded as both requests and responses; decoded frames must re-encode to
//! the same frame, and "incomplete" is never said of a whole, invalid header.
//!
//! The body is `weir_proto::fuzzing::frame_decoder` (its docs describe the selector byte);
//! `crates/proto/tests/decoder_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_proto::fuzzing::frame_decoder(data);
});
