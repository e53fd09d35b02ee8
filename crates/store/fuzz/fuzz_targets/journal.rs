//! Fuzz target: arbitrary bytes into the decoder of the store's journal files, which a crash
//! may have torn anywhere. Whatever it accepts must re-encode to the same bytes.
//!
//! The body is `weir_store::journal_format::fuzz_journal` (its docs list the selector bits);
//! `crates/store/tests/fuzz_smoke.rs` runs the same function in CI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_store::journal_format::fuzz_journal(data);
});
