//! Fuzz target: arbitrary bytes into the log frame decoder (`check_frame`, event iteration,
//! `CheckedFrame`); whatever it accepts must re-encode to the same bytes.
//!
//! The body is `weir_log::fuzzing::log_frame` (its docs list the selector bits and the
//! properties); `crates/log/tests/fuzz_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_log::fuzzing::log_frame(data);
});
