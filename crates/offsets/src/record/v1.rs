//! Version 1 of the offsets tree's values (pure): one value per (group, topic, partition),
//! in the tree `weir-offsets/v1`. No longer written: read only to migrate a store written by an
//! earlier build (see `docs/format.md`, "Offsets store", version history). All integers
//! little-endian:
//!
//! | at | bytes | field |
//! |---|---|---|
//! | 0 | 1 | version, `1` |
//! | 1 | 4 | CRC-32 (`crc32fast`, IEEE) of every other byte of the value: byte 0, then 5.. |
//! | 5 | 8 | committed offset, `u64`: the next offset the group reads |
//! | 13 | 8 | commit time, `u64` ms since the Unix epoch |
//! | 21 | 2 | metadata length *n*, `u16`, at most [`METADATA_BYTES_MAX`] |
//! | 23 | *n* | metadata, UTF-8 |
//!
//! Invariants: the version is read first (it decides the layout), then the checksum is checked
//! over the whole value before any other field is trusted; the metadata length must account for
//! exactly the bytes that are left. A value that fails any check is corrupt, never guessed at.

use super::{array, check_envelope, checksum, Committed, METADATA_BYTES_MAX};
use crate::error::DecodeError;

/// The version of this layout.
pub const VERSION: u8 = 1;

const VERSION_AT: usize = 0;
const CRC_AT: usize = VERSION_AT + 1;
const OFFSET_AT: usize = CRC_AT + 4;
const COMMIT_TIME_AT: usize = OFFSET_AT + 8;
const METADATA_LENGTH_AT: usize = COMMIT_TIME_AT + 8;
/// Bytes before the metadata: the whole value when the metadata is empty.
pub const HEADER_BYTES: usize = METADATA_LENGTH_AT + 2;
/// The longest value.
pub const VALUE_BYTES_MAX: usize = HEADER_BYTES + METADATA_BYTES_MAX;
const _: () = assert!(HEADER_BYTES == 23);

/// Encodes a value. `metadata` must be at most [`METADATA_BYTES_MAX`] bytes (the store checks
/// it before calling; a longer one here is a bug).
pub fn encode(offset: u64, commit_time_ms: u64, metadata: &str) -> Vec<u8> {
    let metadata_length = u16::try_from(metadata.len())
        .ok()
        .filter(|&n| usize::from(n) <= METADATA_BYTES_MAX);
    let Some(metadata_length) = metadata_length else {
        panic!(
            "metadata of {} bytes reached the codec; the store checks the limit",
            metadata.len()
        )
    };
    let mut value = Vec::with_capacity(HEADER_BYTES + metadata.len());
    value.push(VERSION);
    value.extend_from_slice(&[0; 4]);
    value.extend_from_slice(&offset.to_le_bytes());
    value.extend_from_slice(&commit_time_ms.to_le_bytes());
    value.extend_from_slice(&metadata_length.to_le_bytes());
    value.extend_from_slice(metadata.as_bytes());
    let crc = checksum(&[], &value);
    value[CRC_AT..OFFSET_AT].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(decode(&value).map(|c| c.offset), Ok(offset));
    value
}

/// Decodes a value read from the tree.
///
/// # Errors
///
/// A [`DecodeError`] saying which check the bytes failed.
pub fn decode(value: &[u8]) -> Result<Committed, DecodeError> {
    check_envelope(&[], value, VERSION, HEADER_BYTES, VALUE_BYTES_MAX)?;
    let offset = u64::from_le_bytes(array(value, OFFSET_AT));
    let commit_time_ms = u64::from_le_bytes(array(value, COMMIT_TIME_AT));
    let metadata_length = usize::from(u16::from_le_bytes(array(value, METADATA_LENGTH_AT)));
    let metadata = &value[HEADER_BYTES..];
    if metadata_length != metadata.len() {
        return Err(DecodeError::MetadataLength {
            stored: metadata_length,
            left: metadata.len(),
        });
    }
    let metadata = std::str::from_utf8(metadata)
        .map_err(|source| DecodeError::MetadataNotUtf8 { source })?
        .to_string();
    Ok(Committed {
        offset,
        commit_time_ms,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// offset 0x0102030405060708, time 1_764_064_800_000 ms (2025-11-25T10:00:00Z), metadata "hi".
    const GOLDEN: [u8; 25] = [
        0x01, // version
        0xc8, 0xbb, 0x28, 0x39, // CRC-32 of the other bytes, little-endian
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // offset
        0x00, 0xad, 0x74, 0xba, 0x9a, 0x01, 0x00, 0x00, // commit time, ms
        0x02, 0x00, // metadata length
        b'h', b'i', // metadata
    ];

    #[test]
    fn golden_bytes() {
        assert_eq!(
            encode(0x0102_0304_0506_0708, 1_764_064_800_000, "hi"),
            GOLDEN
        );
        assert_eq!(
            decode(&GOLDEN),
            Ok(Committed {
                offset: 0x0102_0304_0506_0708,
                commit_time_ms: 1_764_064_800_000,
                metadata: "hi".to_string(),
            })
        );
    }

    #[test]
    fn golden_bytes_empty_metadata() {
        let expected: [u8; HEADER_BYTES] = [
            0x01, // version
            0xf1, 0x2f, 0xf5, 0xa0, // CRC-32
            0x2a, 0, 0, 0, 0, 0, 0, 0, // offset 42
            0x07, 0, 0, 0, 0, 0, 0, 0, // time 7 ms
            0x00, 0x00, // no metadata
        ];
        assert_eq!(encode(42, 7, ""), expected);
        assert_eq!(
            decode(&expected).map(|c| (c.offset, c.commit_time_ms)),
            Ok((42, 7))
        );
    }

    #[test]
    fn round_trips_extremes() {
        let long = "m".repeat(METADATA_BYTES_MAX);
        for (offset, time, metadata) in
            [(0, 0, ""), (u64::MAX, u64::MAX, long.as_str()), (1, 2, "é")]
        {
            let committed = Committed {
                offset,
                commit_time_ms: time,
                metadata: metadata.to_string(),
            };
            assert_eq!(decode(&encode(offset, time, metadata)), Ok(committed));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
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
    }

    #[test]
    fn every_truncation_and_extension_is_detected() {
        for length in 0..GOLDEN.len() {
            assert!(decode(&GOLDEN[..length]).is_err(), "truncated to {length}");
        }
        let mut longer = GOLDEN.to_vec();
        longer.push(b'!');
        assert!(matches!(decode(&longer), Err(DecodeError::Checksum { .. })));
    }

    #[test]
    fn each_check_has_its_own_error() {
        assert!(matches!(
            decode(&[]),
            Err(DecodeError::Truncated { bytes: 0, .. })
        ));
        assert!(matches!(
            decode(&[2; 30]),
            Err(DecodeError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            decode(&GOLDEN[..10]),
            Err(DecodeError::Truncated { bytes: 10, .. })
        ));
        let mut too_long = vec![VERSION; VALUE_BYTES_MAX + 1];
        too_long[0] = VERSION;
        assert!(matches!(
            decode(&too_long),
            Err(DecodeError::TooLong { .. })
        ));

        // A consistent checksum over an inconsistent length field.
        let mut lying = encode(1, 1, "abc");
        lying[METADATA_LENGTH_AT] = 2;
        let crc = checksum(&[], &lying);
        lying[CRC_AT..OFFSET_AT].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&lying),
            Err(DecodeError::MetadataLength { stored: 2, left: 3 })
        ));

        // A consistent checksum over metadata that is not UTF-8.
        let mut not_utf8 = encode(1, 1, "ab");
        not_utf8[HEADER_BYTES] = 0xff;
        let crc = checksum(&[], &not_utf8);
        not_utf8[CRC_AT..OFFSET_AT].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&not_utf8),
            Err(DecodeError::MetadataNotUtf8 { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "the store checks the limit")]
    fn the_codec_refuses_oversized_metadata() {
        let _ = encode(1, 1, &"m".repeat(METADATA_BYTES_MAX + 1));
    }
}
