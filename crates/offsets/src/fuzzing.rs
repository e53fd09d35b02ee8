//! Body of the fuzz target of weir-offsets, shared by the cargo-fuzz package
//! `crates/offsets/fuzz` (the long run) and the stable smoke test
//! `crates/offsets/tests/fuzz_smoke.rs` (CI), so that both check the same properties. Not part
//! of the API: hidden from the docs, no stability promise.
//!
//! The decoders fuzzed are those of the bytes sled hands back: the committed-offset value
//! (`record::decode`) and the key (`keys::decode`). Whatever they accept must re-encode to
//! exactly the bytes it came from (one encoding per value), and nothing may panic.

use crate::{keys, record};

/// Selector bit: recompute the value's CRC, so that the checks behind it are reached.
pub const FIX_CRC: u8 = 0x01;
/// Selector bit: write the metadata length that the input's size implies.
pub const FIX_LENGTH: u8 = 0x02;

/// What the decoders made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The input (after the selector and its fix-ups) decoded as a committed-offset value.
    pub value_accepted: bool,
    /// The input (without the selector) decoded as a key.
    pub key_accepted: bool,
}

/// The first byte is a selector ([`FIX_CRC`], [`FIX_LENGTH`]); the rest is decoded as a
/// stored value after the fix-ups the selector asks for, and as a key as it is.
pub fn offsets_value(data: &[u8]) -> Verdict {
    let Some((&selector, rest)) = data.split_first() else {
        return Verdict {
            value_accepted: false,
            key_accepted: false,
        };
    };
    let mut value = rest.to_vec();
    if selector & FIX_LENGTH != 0 && value.len() >= record::HEADER_BYTES {
        let metadata_len = u16::try_from(value.len() - record::HEADER_BYTES).unwrap_or(u16::MAX);
        value[record::HEADER_BYTES - 2..record::HEADER_BYTES]
            .copy_from_slice(&metadata_len.to_le_bytes());
    }
    if selector & FIX_CRC != 0 && value.len() >= 5 {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&value[..1]);
        hasher.update(&value[5..]);
        let crc = hasher.finalize();
        value[1..5].copy_from_slice(&crc.to_le_bytes());
    }
    let value_accepted = match record::decode(&value) {
        Ok(committed) => {
            assert!(committed.metadata.len() <= record::METADATA_BYTES_MAX);
            let again = record::encode(
                committed.offset,
                committed.commit_time_ms,
                &committed.metadata,
            );
            assert!(again == value, "an accepted value does not re-encode");
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    };

    let key_accepted = match keys::decode(rest) {
        Ok(key) => {
            let again = keys::encode(key.group, key.topic, key.partition);
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
        key_accepted,
    }
}
