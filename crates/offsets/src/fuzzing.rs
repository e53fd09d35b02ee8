//! Body of the fuzz target of weir-offsets, shared by the cargo-fuzz package
//! `crates/offsets/fuzz` (the long run) and the stable smoke test
//! `crates/offsets/tests/fuzz_smoke.rs` (CI), so that both check the same properties. Not part
//! of the API: hidden from the docs, no stability promise.
//!
//! The decoders fuzzed are those of the bytes sled hands back: the block of committed offsets
//! (`record::decode`, as the value of [`FUZZ_KEY`]), the version 2 and version 1 values read
//! when migrating (`record::v2::decode`, `record::v1::decode`) and the key (`keys::decode`).
//! Whatever they accept must re-encode to exactly the bytes it came from (one encoding per
//! value), and nothing may panic.

use crate::{keys, record};

/// Selector bit: write the CRC the value's bytes need, so the checks after it are reached
/// (for a version 3 value, the CRC under [`FUZZ_KEY`]).
pub const FIX_CRC: u8 = 0x01;
/// The key the bytes are decoded as a version 3 value of: group "g1", topic "orders", block 0.
pub const FUZZ_KEY: &[u8] = b"g1\0orders\0\0\0\0\0";
/// Selector bit: make a version 1 value's metadata length field match the bytes left.
pub const FIX_LENGTH: u8 = 0x02;

/// What the decoders made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The bytes decoded as a block (version 3 value) of [`FUZZ_KEY`].
    pub value_accepted: bool,
    /// The bytes decoded as a version 2 value.
    pub v2_value_accepted: bool,
    /// The bytes decoded as a version 1 value.
    pub v1_value_accepted: bool,
    /// The bytes (without the selector) decoded as a key.
    pub key_accepted: bool,
}

/// One fuzz input: a selector byte, then the bytes. Panics if a decoder panics or accepts
/// bytes it would not write.
pub fn offsets_value(data: &[u8]) -> Verdict {
    let Some((&selector, rest)) = data.split_first() else {
        return Verdict {
            value_accepted: false,
            v2_value_accepted: false,
            v1_value_accepted: false,
            key_accepted: false,
        };
    };
    let mut value = rest.to_vec();
    if selector & FIX_LENGTH != 0 && value.len() >= record::v1::HEADER_BYTES {
        let header = record::v1::HEADER_BYTES;
        let metadata_len = u16::try_from(value.len() - header).unwrap_or(u16::MAX);
        value[header - 2..header].copy_from_slice(&metadata_len.to_le_bytes());
    }
    if selector & FIX_CRC != 0 && value.len() >= 5 {
        // Every version keeps its CRC in bytes 1..5, over every other byte; version 3 over
        // the key first.
        let mut hasher = crc32fast::Hasher::new();
        if value[0] == record::VERSION {
            hasher.update(FUZZ_KEY);
        }
        hasher.update(&value[..1]);
        hasher.update(&value[5..]);
        let crc = hasher.finalize();
        value[1..5].copy_from_slice(&crc.to_le_bytes());
    }
    let value_accepted = match record::decode(FUZZ_KEY, &value) {
        Ok(decoded) => {
            check_block(&decoded.block);
            assert!(
                record::encode(FUZZ_KEY, &decoded.block, decoded.commit_seq) == value,
                "an accepted block does not re-encode"
            );
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };
    let v2_value_accepted = match record::v2::decode(&value) {
        Ok(block) => {
            check_block(&block);
            assert!(
                record::v2::encode(&block) == value,
                "an accepted version 2 block does not re-encode"
            );
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };
    let v1_value_accepted = match record::v1::decode(&value) {
        Ok(committed) => {
            assert!(committed.metadata.len() <= record::METADATA_BYTES_MAX);
            let again = record::v1::encode(
                committed.offset,
                committed.commit_time_ms,
                &committed.metadata,
            );
            assert!(
                again == value,
                "an accepted version 1 value does not re-encode"
            );
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };

    let key_accepted = match keys::decode(rest) {
        Ok(key) => {
            let again = keys::encode(key.group, key.topic, key.block);
            assert!(again == rest, "an accepted key does not re-encode");
            assert_eq!(keys::readable(rest), key.to_string());
            true
        }
        Err(error) => {
            let _ = (error.to_string(), keys::readable(rest));
            false
        }
    };
    Verdict {
        value_accepted,
        v2_value_accepted,
        v1_value_accepted,
        key_accepted,
    }
}

fn check_block(block: &record::Block) {
    assert!(!block.is_empty() && block.len() <= 64);
    for (slot, committed) in block.iter() {
        assert!(slot < 64 && committed.metadata.len() <= record::METADATA_BYTES_MAX);
    }
}
