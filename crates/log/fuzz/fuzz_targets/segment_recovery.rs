//! Fuzz target: a `Log` opened over a `SimStorage` whose segment file holds the input
//! (after a valid header and frames, if the selector byte asks). The open refuses cleanly or
//! gives a log that reads back densely, never returns a frame that fails its checks, keeps the
//! valid frames before the damage, takes an append and reopens to the same state.
//!
//! The body is `weir_log::fuzzing::segment_recovery` (its docs list the selector bits and the
//! properties); `crates/log/tests/fuzz_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_log::fuzzing::segment_recovery(data);
});
