//! Fuzz target: arbitrary bytes into the index file decoder; whatever it accepts must re-encode
//! to the same bytes and hold ordered, in-range entries.
//!
//! The body is `weir_log::fuzzing::log_index` (its docs list the selector bits and the
//! properties); `crates/log/tests/fuzz_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_log::fuzzing::log_index(data);
});
