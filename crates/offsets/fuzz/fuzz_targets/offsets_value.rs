//! Fuzz target: arbitrary bytes into the decoders of what sled hands back to weir-offsets — the
//! block of committed offsets, the format 1 value (read when migrating) and the key. Whatever
//! they accept must re-encode to the same bytes.
//!
//! The body is `weir_offsets::fuzzing::offsets_value` (its docs list the selector bits);
//! `crates/offsets/tests/fuzz_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_offsets::fuzzing::offsets_value(data);
});
