//! The numbers kept in the meta tree ([`crate::marker::META_TREE_NAME`]) beside the store
//! marker, and their byte layout (pure):
//!
//! - [`STORE_ID_KEY`]: the store's id, a random nonzero `u64` drawn when the store is created
//!   (or migrated to format 3). The witness file names it, so a store created again in the
//!   same place is told apart from the one the witness saw.
//! - [`SEQ_FLOOR_KEY`]: the commit sequence of the last write that removed values (a group or
//!   topic deleted) or migrated the store. The store's commit sequence is the highest of this
//!   floor and of every value's commit sequence, so it never goes down when the value holding
//!   the highest one is deleted.
//!
//! A number is 12 bytes: the `u64` little-endian, then the CRC-32 (`crc32fast`) of the key and
//! those 8 bytes. A number that fails its checks is corrupt, never guessed at.

use crate::error::DecodeError;

/// Key of the store id.
pub const STORE_ID_KEY: &[u8] = b"store_id";
/// Key of the commit sequence floor.
pub const SEQ_FLOOR_KEY: &[u8] = b"seq_floor";

const NUMBER_AT: usize = 0;
const CRC_AT: usize = NUMBER_AT + 8;
/// Bytes of a stored number.
pub const NUMBER_BYTES: usize = CRC_AT + 4;
const _: () = assert!(NUMBER_BYTES == 12);

/// Encodes `number` as the value of `key`.
pub fn encode_number(key: &[u8], number: u64) -> [u8; NUMBER_BYTES] {
    let mut bytes = [0; NUMBER_BYTES];
    bytes[NUMBER_AT..CRC_AT].copy_from_slice(&number.to_le_bytes());
    let crc = checksum(key, &bytes[NUMBER_AT..CRC_AT]);
    bytes[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes the value of `key`.
///
/// # Errors
///
/// [`DecodeError::Truncated`] or [`DecodeError::TooLong`] if it is not 12 bytes,
/// [`DecodeError::Checksum`] if the CRC does not match.
pub fn decode_number(key: &[u8], bytes: &[u8]) -> Result<u64, DecodeError> {
    let Ok(bytes) = <[u8; NUMBER_BYTES]>::try_from(bytes) else {
        return Err(if bytes.len() < NUMBER_BYTES {
            DecodeError::Truncated {
                bytes: bytes.len(),
                minimum: NUMBER_BYTES,
            }
        } else {
            DecodeError::TooLong {
                bytes: bytes.len(),
                maximum: NUMBER_BYTES,
            }
        });
    };
    let mut number = [0; 8];
    number.copy_from_slice(&bytes[NUMBER_AT..CRC_AT]);
    let mut crc = [0; 4];
    crc.copy_from_slice(&bytes[CRC_AT..]);
    let stored = u32::from_le_bytes(crc);
    let computed = checksum(key, &number);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(u64::from_le_bytes(number))
}

fn checksum(key: &[u8], number: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(key);
    hasher.update(number);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        // Computed apart from this code: Python's zlib.crc32(b"seq_floor" + bytes).
        let floor: [u8; 12] = [
            0x2a, 0, 0, 0, 0, 0, 0, 0, // 42
            0x30, 0xc6, 0x8c, 0xa5, // CRC-32 of "seq_floor" and the 8 bytes
        ];
        assert_eq!(encode_number(SEQ_FLOOR_KEY, 42), floor);
        assert_eq!(decode_number(SEQ_FLOOR_KEY, &floor), Ok(42));
        assert_eq!(SEQ_FLOOR_KEY, b"seq_floor");
        assert_eq!(STORE_ID_KEY, b"store_id");
    }

    #[test]
    fn the_example_in_docs_format_md_is_these_bytes() {
        let example = crate::witness::tests::spec_example("`seq_floor` 42 →");
        assert_eq!(example, encode_number(SEQ_FLOOR_KEY, 42));
    }

    #[test]
    fn damage_is_detected() {
        let id = encode_number(STORE_ID_KEY, 0x0123_4567_89ab_cdef);
        for byte in 0..NUMBER_BYTES {
            for bit in 0..8 {
                let mut damaged = id;
                damaged[byte] ^= 1 << bit;
                assert!(matches!(
                    decode_number(STORE_ID_KEY, &damaged),
                    Err(DecodeError::Checksum { .. })
                ));
            }
        }
        assert!(matches!(
            decode_number(SEQ_FLOOR_KEY, &id),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(matches!(
            decode_number(STORE_ID_KEY, &id[..11]),
            Err(DecodeError::Truncated { bytes: 11, .. })
        ));
        assert!(matches!(
            decode_number(STORE_ID_KEY, &[0; 13]),
            Err(DecodeError::TooLong { bytes: 13, .. })
        ));
    }
}
