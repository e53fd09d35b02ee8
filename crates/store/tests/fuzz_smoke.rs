//! The CI smoke run of weir-store's fuzz target: `weir_store::journal_format::fuzz_journal`
//! (the function the cargo-fuzz package `crates/store/fuzz` runs) on journal files from a
//! fixed-seed generator — valid files mutated by bit flips, overwritten bytes, truncations,
//! insertions, deletions and interesting 32-bit fields, with random selector bytes. A failure
//! prints the seed, the input's number and its bytes.
//!
//! `WEIR_FUZZ_SMOKE_SEED` and `WEIR_FUZZ_SMOKE_INPUTS` change the seed and the volume; the long
//! run is described in `docs/testing.md`, "Fuzzing".

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use weir_log::format::{encode_frame, AppendEvent};
use weir_log::sim::SplitMix64;
use weir_store::journal_format::{encode_header, fuzz_journal, BlockBuilder};

/// The generator's seed, unless `WEIR_FUZZ_SMOKE_SEED` says otherwise.
const SEED: u64 = 0x5EED_10A1;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A valid journal file of `blocks` blocks of 1..4 entries.
fn journal(rng: &mut SplitMix64, blocks: usize) -> Vec<u8> {
    let mut bytes = encode_header(7).to_vec();
    let mut offset = 0u64;
    for _ in 0..blocks {
        let mut block = BlockBuilder::new();
        for _ in 0..1 + rng.below(4) {
            let value = vec![rng.next() as u8; rng.below(40) as usize];
            let mut frame = Vec::new();
            encode_frame(&mut frame, offset, &[AppendEvent::value(&value)], &[offset]);
            offset += 1;
            block.push(rng.below(3), rng.below(2) as u32, &frame);
        }
        let position = bytes.len() as u64;
        bytes.extend_from_slice(block.finish(7, position));
    }
    bytes
}

fn mutate(rng: &mut SplitMix64, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len().max(1) as u64) as usize;
        match rng.below(6) {
            0 => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = rng.next() as u8;
                }
            }
            2 => bytes.truncate(at),
            3 => bytes.insert(at.min(bytes.len()), rng.next() as u8),
            4 => {
                if at < bytes.len() {
                    bytes.remove(at);
                }
            }
            _ => {
                let field = [0u32, 1, 4, 11, 12, 0xFFFF, u32::MAX, 1 << 30][rng.below(8) as usize];
                if at + 4 <= bytes.len() {
                    bytes[at..at + 4].copy_from_slice(&field.to_le_bytes());
                }
            }
        }
    }
    bytes
}

#[test]
fn the_journal_decoder_survives_mutated_files() {
    let seed = env_u64("WEIR_FUZZ_SMOKE_SEED", SEED);
    let inputs = env_u64("WEIR_FUZZ_SMOKE_INPUTS", 30_000);
    let mut rng = SplitMix64::new(seed);
    for number in 0..inputs {
        let blocks = rng.below(5) as usize;
        let file = journal(&mut rng, blocks);
        let mut input = vec![rng.next() as u8];
        input.extend(mutate(&mut rng, file));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| fuzz_journal(&input))) {
            eprintln!(
                "journal fuzz smoke: seed {seed:#x}, input {number} broke a property: {input:?}"
            );
            resume_unwind(panic);
        }
    }
}
