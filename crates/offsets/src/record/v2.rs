//! Version 2 of the offsets tree's values (pure): a block of 64 partitions, as version 3 but
//! without the commit sequence, and with a checksum of the value alone (not of its key). No
//! longer written: read only to migrate a store written by an earlier build (see
//! `docs/format.md`, "Offsets store", version history). All integers little-endian:
//!
//! | at | bytes | field |
//! |---|---|---|
//! | 0 | 1 | version, `2` |
//! | 1 | 4 | CRC-32 (`crc32fast`, IEEE) of every other byte of the value: byte 0, then 5.. |
//! | 5 | 1 | entry count *k*, 1 ..= 64 |
//! | 6 | … | *k* entries, laid out as in version 3 |
//!
//! Invariants: as version 3's — version, length, checksum, then the entries, which must account
//! for exactly the bytes that are left.

use super::{
    check_envelope, checksum, decode_entries, encode_entries, entries_bytes, Block,
    ENTRIES_BYTES_MAX,
};
use crate::error::DecodeError;

/// The version of this layout.
pub const VERSION: u8 = 2;

const VERSION_AT: usize = 0;
const CRC_AT: usize = VERSION_AT + 1;
const COUNT_AT: usize = CRC_AT + 4;
/// Bytes before the first entry.
pub const HEADER_BYTES: usize = COUNT_AT + 1;
const _: () = assert!(HEADER_BYTES == 6);
/// The longest value.
pub const VALUE_BYTES_MAX: usize = HEADER_BYTES + ENTRIES_BYTES_MAX;

/// Encodes a block as version 2 wrote it (for tests and the fuzz target's re-encoding check).
/// The block must not be empty, and its metadata within the limit.
pub fn encode(block: &Block) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_BYTES + entries_bytes(block));
    value.push(VERSION);
    value.extend_from_slice(&[0; 4]);
    encode_entries(block, &mut value);
    let crc = checksum(&[], &value);
    value[CRC_AT..COUNT_AT].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(decode(&value).as_ref(), Ok(block));
    value
}

/// Decodes a version 2 value.
///
/// # Errors
///
/// A [`DecodeError`] saying which check failed: version, length, checksum, then the entries.
pub fn decode(value: &[u8]) -> Result<Block, DecodeError> {
    check_envelope(&[], value, VERSION, HEADER_BYTES, VALUE_BYTES_MAX)?;
    decode_entries(value[COUNT_AT], &value[HEADER_BYTES..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Committed;

    fn committed(offset: u64, commit_time_ms: u64, metadata: &str) -> Committed {
        Committed {
            offset,
            commit_time_ms,
            metadata: metadata.to_string(),
        }
    }

    fn golden_block() -> Block {
        let mut block = Block::default();
        block.set(9, committed(42, 7, ""));
        block.set(1, committed(0x0102_0304_0506_0708, 1_764_064_800_000, "hi"));
        block
    }

    const GOLDEN: [u8; 46] = [
        0x02, // version
        0xc3, 0x61, 0xba, 0x2c, // CRC-32 of the other bytes, little-endian
        0x02, // two entries
        0x01, // slot 1
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // offset
        0x00, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, // commit time, ms
        0x02, 0x00, // metadata length
        b'h', b'i', // metadata
        0x09, // slot 9
        0x2a, 0, 0, 0, 0, 0, 0, 0, // offset 42
        0x07, 0, 0, 0, 0, 0, 0, 0, // time 7 ms
        0x00, 0x00, // no metadata
    ];

    #[test]
    fn golden_bytes() {
        assert_eq!(encode(&golden_block()), GOLDEN);
        assert_eq!(decode(&GOLDEN), Ok(golden_block()));
    }

    #[test]
    fn every_single_bit_flip_truncation_and_extension_is_detected() {
        for byte in 0..GOLDEN.len() {
            for bit in 0..8 {
                let mut damaged = GOLDEN;
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode(&damaged).is_err(),
                    "flip of bit {bit} in byte {byte} decoded"
                );
            }
        }
        for length in 0..GOLDEN.len() {
            assert!(decode(&GOLDEN[..length]).is_err(), "truncated to {length}");
        }
        let mut longer = GOLDEN.to_vec();
        longer.push(b'!');
        assert!(matches!(decode(&longer), Err(DecodeError::Checksum { .. })));
    }

    #[test]
    fn a_version_3_value_is_not_read_as_version_2() {
        let value = crate::record::encode(b"k", &golden_block(), 1);
        assert!(matches!(
            decode(&value),
            Err(DecodeError::UnknownVersion {
                version: 3,
                expected: 2
            })
        ));
    }
}
