//! The CI smoke run of weir-offsets' fuzz target: `weir_offsets::fuzzing::offsets_value` (the
//! function the cargo-fuzz package `crates/offsets/fuzz` runs) on inputs from a fixed-seed
//! generator — stored values and keys mutated by bit flips, overwritten bytes, truncations,
//! insertions, deletions and splices, with random selector bytes. A failure prints the seed,
//! the input's number and its bytes.
//!
//! `WEIR_FUZZ_SMOKE_SEED` and `WEIR_FUZZ_SMOKE_INPUTS` change the seed and the volume; the long
//! run is described in `docs/testing.md`, "Fuzzing".

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use weir_offsets::fuzzing::{offsets_value, FIX_CRC, FIX_LENGTH};

/// The generator's seed, unless `WEIR_FUZZ_SMOKE_SEED` says otherwise.
const SEED: u64 = 0x5EED_0FF5;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Valid stored values (the golden bytes of `docs/format.md`) and keys.
fn seeds() -> Vec<Vec<u8>> {
    // Version 3, the value of `FUZZ_KEY`.
    let block_v3: &[u8] = &[
        0x03, 0x33, 0xea, 0x57, 0x0e, 0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x02, 0x01,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00,
        0x00, 0x02, 0x00, b'h', b'i', 0x09, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x00,
    ];
    let block: &[u8] = &[
        0x02, 0xc3, 0x61, 0xba, 0x2c, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x00, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x02, 0x00, b'h', b'i', 0x09, 0x2a, 0, 0,
        0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00,
    ];
    let value_hi: &[u8] = &[
        0x01, 0xc8, 0xbb, 0x28, 0x39, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0xad,
        0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, 0x02, 0x00, b'h', b'i',
    ];
    let value_empty: &[u8] = &[
        0x01, 0xf1, 0x2f, 0xf5, 0xa0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x00,
        0x00,
    ];
    let key = |group: &str, topic: &str, partition: u32| {
        let mut key = Vec::new();
        key.extend_from_slice(group.as_bytes());
        key.push(0);
        key.extend_from_slice(topic.as_bytes());
        key.push(0);
        // Big-endian (keys sort bytewise), spelled out: the workspace denies `to_be_bytes`.
        key.extend((0..4).rev().map(|byte| (partition >> (8 * byte)) as u8));
        key
    };
    vec![
        block_v3.to_vec(),
        block.to_vec(),
        value_hi.to_vec(),
        value_empty.to_vec(),
        key("billing", "orders", 3),
        key("g", "t.v-2_x", u32::MAX / 64),
    ]
}

fn mutate(rng: &mut fastrand::Rng, original: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = original.to_vec();
    for _ in 0..rng.usize(1..=4) {
        match rng.u8(0..7) {
            0 if !out.is_empty() => {
                let at = rng.usize(..out.len());
                out[at] ^= 1 << rng.u8(0..8);
            }
            1 if !out.is_empty() => {
                let at = rng.usize(..out.len());
                out[at] = rng.u8(..);
            }
            2 => out.truncate(rng.usize(..=out.len())),
            3 => {
                // Insert bytes: random, or text (metadata and names).
                let at = rng.usize(..=out.len());
                let extra: Vec<u8> = (0..rng.usize(1..40))
                    .map(|_| {
                        if rng.bool() {
                            rng.u8(..)
                        } else {
                            rng.alphanumeric() as u8
                        }
                    })
                    .collect();
                out.splice(at..at, extra);
            }
            4 if !out.is_empty() => {
                let at = rng.usize(..out.len());
                let end = rng.usize(at..=out.len());
                out.drain(at..end);
            }
            5 => {
                let cut = rng.usize(..=out.len());
                out.truncate(cut);
                out.extend_from_slice(&other[rng.usize(..=other.len())..]);
            }
            _ => {
                // A long metadata string: near and past the 4096-byte limit.
                let len = rng.usize(4_000..4_200);
                out.extend((0..len).map(|_| rng.alphanumeric() as u8));
            }
        }
    }
    out
}

#[test]
fn offsets_value_smoke() {
    let seed = env_u64("WEIR_FUZZ_SMOKE_SEED", SEED);
    let inputs = env_u64("WEIR_FUZZ_SMOKE_INPUTS", 20_000);
    let mut rng = fastrand::Rng::with_seed(seed);
    let seeds = seeds();
    let (mut values, mut v2_values, mut v1_values, mut keys) = (0u64, 0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for number in 0..inputs {
        let original = &seeds[rng.usize(..seeds.len())];
        let other = &seeds[rng.usize(..seeds.len())];
        let mut selector = rng.u8(..);
        if rng.u8(0..4) != 0 {
            selector |= FIX_CRC;
        }
        if rng.bool() {
            selector |= FIX_LENGTH;
        }
        let mut input = vec![selector];
        if rng.u8(0..8) == 0 {
            input.extend_from_slice(original);
        } else {
            input.extend(mutate(&mut rng, original, other));
        }
        let verdict = match catch_unwind(AssertUnwindSafe(|| offsets_value(&input))) {
            Ok(verdict) => verdict,
            Err(panic) => {
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                eprintln!("offsets_value: input {number} of seed {seed:#x} failed; bytes: {hex}");
                resume_unwind(panic)
            }
        };
        values += u64::from(verdict.value_accepted);
        v2_values += u64::from(verdict.v2_value_accepted);
        v1_values += u64::from(verdict.v1_value_accepted);
        keys += u64::from(verdict.key_accepted);
    }
    println!(
        "offsets_value: seed {seed:#x}, {inputs} inputs, {values} blocks, {v2_values} version 2 \
         blocks, {v1_values} version 1 values and {keys} keys accepted in {:?}",
        started.elapsed()
    );
    assert!(values > 0 && values < inputs, "{values} blocks accepted");
    assert!(
        v2_values > 0 && v2_values < inputs,
        "{v2_values} version 2 blocks accepted"
    );
    assert!(
        v1_values > 0 && v1_values < inputs,
        "{v1_values} version 1 values accepted"
    );
    assert!(keys > 0 && keys < inputs, "{keys} keys accepted");
}
