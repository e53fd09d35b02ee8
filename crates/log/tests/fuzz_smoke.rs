//! The CI smoke run of weir-log's fuzz targets: each target body of `weir_log::fuzzing` (the
//! same functions the cargo-fuzz package `crates/log/fuzz` runs) is fed tens of thousands of
//! inputs from a fixed-seed generator — valid encodings mutated by bit flips, overwritten
//! bytes, truncations, insertions, deletions, splices of two inputs and interesting 32- and
//! 64-bit fields — with random selector bytes. A failure prints the seed, the input's number
//! and its bytes.
//!
//! `WEIR_FUZZ_SMOKE_SEED` and `WEIR_FUZZ_SMOKE_INPUTS` change the seed and the volume; the long
//! run is described in `docs/testing.md`, "Fuzzing".

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use weir_log::format::{
    encode_frame, AppendEvent, Checkpoint, Header, IndexEntry, IndexFile, SegmentHeader,
};
use weir_log::fuzzing::{self, RecoveryVerdict, Verdict, FIX_CRC, FIX_LENGTH};
use weir_log::sim::SplitMix64;

/// The generator's seed, unless `WEIR_FUZZ_SMOKE_SEED` says otherwise.
const SEED: u64 = 0x5EED_10C5;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_u64("WEIR_FUZZ_SMOKE_SEED", SEED)
}

fn inputs(default: u64) -> u64 {
    env_u64("WEIR_FUZZ_SMOKE_INPUTS", default)
}

/// Runs `body` on `input`; on a panic, says how to replay it before passing the panic on.
fn run<T>(target: &str, seed: u64, number: u64, input: &[u8], body: impl FnOnce(&[u8]) -> T) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(input))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("{target}: input {number} of seed {seed:#x} failed; its bytes: {hex}");
            resume_unwind(panic)
        }
    }
}

/// Mutates `original` (splicing in `other` sometimes) the way a fuzzer would.
fn mutate(rng: &mut SplitMix64, original: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = original.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len() as u64;
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len) as usize;
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len) as usize;
                out[at] = rng.next() as u8;
            }
            2 => out.truncate(rng.below(len + 1) as usize),
            3 => {
                let at = rng.below(len + 1) as usize;
                let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, extra);
            }
            4 if len > 0 => {
                let at = rng.below(len) as usize;
                let end = at + rng.below(len - at as u64 + 1) as usize;
                out.drain(at..end);
            }
            5 => {
                // A prefix of this input followed by a suffix of the other one.
                let cut = rng.below(len + 1) as usize;
                let from = rng.below(other.len() as u64 + 1) as usize;
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            6 if len >= 8 && rng.below(2) == 0 => {
                // An interesting 64-bit offset or position at an 8-aligned position.
                let at = 8 * rng.below(len / 8) as usize;
                let value = match rng.below(3) {
                    0 => u64::MAX - rng.below(4),
                    1 => rng.below(64),
                    _ => 1 << (32 + rng.below(31)),
                };
                out[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            6 if len >= 4 => {
                // An interesting 32-bit length at a 4-aligned position.
                let at = 4 * rng.below(len / 4) as usize;
                let value = match rng.below(5) {
                    0 => 0u32,
                    1 => rng.below(64) as u32,
                    2 => u32::MAX - rng.below(4) as u32,
                    3 => 64 << 20,
                    _ => (len as u32)
                        .wrapping_add(rng.below(3) as u32)
                        .wrapping_sub(1),
                };
                out[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => {
                for byte in out.iter_mut() {
                    if rng.below(16) == 0 {
                        *byte = rng.next() as u8;
                    }
                }
            }
        }
    }
    out
}

/// Selector byte: mostly with the fix-ups on, so the checks behind the CRC are reached.
fn selector(rng: &mut SplitMix64) -> u8 {
    let mut selector = rng.next() as u8;
    if rng.below(4) != 0 {
        selector |= FIX_CRC;
    }
    if rng.below(4) == 0 {
        selector |= FIX_LENGTH;
    }
    selector
}

/// Valid frames of varied shapes.
fn frames() -> Vec<Vec<u8>> {
    let headers = [
        Header {
            name: "trace",
            value: b"0123",
        },
        Header {
            name: "",
            value: b"",
        },
        Header {
            name: "é",
            value: &[0xFF; 9],
        },
    ];
    let value = [7u8; 300];
    let shapes: [&[AppendEvent<'_>]; 4] = [
        &[AppendEvent::value(b"v")],
        &[
            AppendEvent {
                timestamp_ms: Some(1),
                key: Some(b"key"),
                headers: &headers,
                value: b"value",
            },
            AppendEvent {
                timestamp_ms: Some(9),
                key: Some(b""),
                headers: &headers[..1],
                value: b"",
            },
        ],
        &[AppendEvent::value(&value); 5],
        &[AppendEvent {
            timestamp_ms: None,
            key: None,
            headers: &headers[2..],
            value: &value[..17],
        }],
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, events)| {
            let mut frame = Vec::new();
            let timestamps: Vec<u64> = (0..events.len() as u64).map(|t| 1_000 + t * 7).collect();
            encode_frame(&mut frame, i as u64 * 1_000, events, &timestamps);
            frame
        })
        .collect()
}

#[test]
fn log_frame_smoke() {
    let seed = seed();
    let mut rng = SplitMix64::new(seed);
    let seeds = frames();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let started = std::time::Instant::now();
    for number in 0..inputs(50_000) {
        let original = &seeds[rng.below(seeds.len() as u64) as usize];
        let other = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut input = vec![selector(&mut rng)];
        if rng.below(8) == 0 {
            input.extend_from_slice(original);
        } else {
            input.extend(mutate(&mut rng, original, other));
        }
        match run("log_frame", seed, number, &input, fuzzing::log_frame) {
            Verdict::Accepted => accepted += 1,
            Verdict::Rejected => rejected += 1,
        }
    }
    println!(
        "log_frame: seed {seed:#x}, {accepted} accepted, {rejected} rejected in {:?}",
        started.elapsed()
    );
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

fn index_files() -> Vec<Vec<u8>> {
    (0..4u32)
        .map(|entries| {
            IndexFile {
                base_offset: 100,
                end_offset: 100 + 10 * u64::from(entries) + 1,
                end_position: 40 + 1_000 * u64::from(entries) + 1,
                timestamp_max_ms: 77,
                entries: (0..entries)
                    .map(|i| IndexEntry {
                        relative_offset: 10 * i,
                        position: 40 + 1_000 * i,
                        timestamp_max_before_ms: u64::from(i),
                    })
                    .collect(),
            }
            .encode()
        })
        .collect()
}

#[test]
fn log_index_smoke() {
    let seed = seed();
    let mut rng = SplitMix64::new(seed ^ 1);
    let seeds = index_files();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for number in 0..inputs(50_000) {
        let original = &seeds[rng.below(seeds.len() as u64) as usize];
        let other = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut input = vec![selector(&mut rng)];
        input.extend(mutate(&mut rng, original, other));
        match run("log_index", seed, number, &input, fuzzing::log_index) {
            Verdict::Accepted => accepted += 1,
            Verdict::Rejected => rejected += 1,
        }
    }
    println!("log_index: seed {seed:#x}, {accepted} accepted, {rejected} rejected");
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn log_checkpoint_smoke() {
    let seed = seed();
    let mut rng = SplitMix64::new(seed ^ 2);
    let checkpoint = Checkpoint {
        start_offset: 3,
        segment_base_offset: 10,
        position: 4_000,
        next_offset: 12,
    };
    let header = SegmentHeader {
        version: weir_log::format::SEGMENT_FORMAT_VERSION,
        base_offset: 10,
        created_ms: 1_764_000_000_000,
    };
    let seeds = [checkpoint.encode().to_vec(), header.encode().to_vec()];
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for number in 0..inputs(50_000) {
        let original = &seeds[rng.below(2) as usize];
        let other = &seeds[rng.below(2) as usize];
        let mut input = vec![selector(&mut rng)];
        input.extend(mutate(&mut rng, original, other));
        match run(
            "log_checkpoint",
            seed,
            number,
            &input,
            fuzzing::log_checkpoint,
        ) {
            Verdict::Accepted => accepted += 1,
            Verdict::Rejected => rejected += 1,
        }
    }
    println!("log_checkpoint: seed {seed:#x}, {accepted} accepted, {rejected} rejected");
    assert!(
        accepted > 0 && rejected > 0,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// A tail for [`fuzzing::segment_recovery`] with `selector`: valid frames that continue the
/// prefix, or (for a trusted index) the honest index of the prefix.
fn recovery_tail(rng: &mut SplitMix64, selector: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let (prefix, events) = fuzzing::recovery_prefix(selector);
    if selector & fuzzing::RECOVERY_TRUSTED_INDEX != 0 {
        return IndexFile {
            base_offset: 0,
            end_offset: events,
            end_position: prefix.len().max(40) as u64,
            timestamp_max_ms: if events > 0 { 1_001 } else { 0 },
            entries: Vec::new(),
        }
        .encode();
    }
    let mut tail = Vec::new();
    let mut next_offset = events;
    for _ in 0..rng.below(4) {
        let value: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let count = 1 + rng.below(3) as usize;
        let events = vec![AppendEvent::value(&value); count];
        let timestamps = vec![2_000; count];
        encode_frame(&mut tail, next_offset, &events, &timestamps);
        next_offset += count as u64;
    }
    if rng.below(4) == 0 {
        // Bytes from another valid frame: "valid-looking frames after the damage".
        tail.extend_from_slice(&frames[rng.below(frames.len() as u64) as usize]);
    }
    tail
}

#[test]
fn segment_recovery_smoke() {
    let seed = seed();
    let mut rng = SplitMix64::new(seed ^ 3);
    let frames = frames();
    let (mut refused, mut clean, mut torn, mut events) = (0u64, 0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for number in 0..inputs(20_000) {
        // Mostly a header before the fuzz bytes, so that recovery gets past the header check.
        let mut selector = rng.next() as u8;
        if rng.below(4) != 0 {
            selector |= fuzzing::RECOVERY_HEADER;
        }
        let tail = recovery_tail(&mut rng, selector, &frames);
        let other = recovery_tail(&mut rng, selector, &frames);
        let mut input = vec![selector];
        if rng.below(4) == 0 {
            input.extend_from_slice(&tail);
        } else {
            input.extend(mutate(&mut rng, &tail, &other));
        }
        match run(
            "segment_recovery",
            seed,
            number,
            &input,
            fuzzing::segment_recovery,
        ) {
            RecoveryVerdict::Refused => refused += 1,
            RecoveryVerdict::Opened {
                events: count,
                torn_tail,
            } => {
                events += count;
                if torn_tail {
                    torn += 1;
                } else {
                    clean += 1;
                }
            }
        }
    }
    println!(
        "segment_recovery: seed {seed:#x}, {refused} refused, {clean} clean, {torn} torn tails, \
         {events} events read in {:?}",
        started.elapsed()
    );
    assert!(refused > 0 && clean > 0 && torn > 0 && events > 0);
}

/// Not a test: writes the valid inputs the smoke run mutates into
/// `$WEIR_FUZZ_CORPUS_DIR/<target>/`, as a seed corpus for a long cargo-fuzz run (see
/// `docs/testing.md`, "Fuzzing"). Does nothing without the variable.
#[test]
#[ignore = "writes a seed corpus; run by hand before a long fuzz run"]
fn write_seed_corpus() {
    let Some(root) = std::env::var_os("WEIR_FUZZ_CORPUS_DIR") else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let write = |target: &str, inputs: Vec<Vec<u8>>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), input).expect("write a seed");
        }
    };
    let with_selector = |selector: u8, bytes: &[u8]| [&[selector][..], bytes].concat();
    let frames = frames();
    write(
        "log_frame",
        frames.iter().map(|f| with_selector(0, f)).collect(),
    );
    write(
        "log_index",
        index_files().iter().map(|f| with_selector(0, f)).collect(),
    );
    let checkpoint = Checkpoint {
        start_offset: 3,
        segment_base_offset: 10,
        position: 4_000,
        next_offset: 12,
    };
    let header = SegmentHeader {
        version: weir_log::format::SEGMENT_FORMAT_VERSION,
        base_offset: 10,
        created_ms: 1_764_000_000_000,
    };
    write(
        "log_checkpoint",
        vec![
            with_selector(0, &checkpoint.encode()),
            with_selector(0, &header.encode()),
        ],
    );
    let mut rng = SplitMix64::new(SEED);
    let selectors = [0x00, 0x01, 0x03, 0x07, 0x09, 0x0b, 0x13, 0x17, 0x33];
    write(
        "segment_recovery",
        selectors
            .iter()
            .map(|&s| with_selector(s, &recovery_tail(&mut rng, s, &frames)))
            .collect(),
    );
}
