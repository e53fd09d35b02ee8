//! Values of the offsets tree (pure): a block of up to [`PARTITIONS_PER_BLOCK`] partitions'
//! committed offsets with the commit sequence of the write that stored it, and its byte layout.
//!
//! One value holds the committed offsets of partitions `64·b .. 64·b + 63` of one (group,
//! topic) — block `b`, named by the key (see `keys`) — so that a batch commit of many
//! partitions writes a few values instead of one per partition: sled's log writes grow with the
//! number of keys written, not with their bytes (measured: 100 one-partition keys write about 4×
//! the bytes of one 2 KiB value, and take 2½× as long to make durable).
//!
//! Version 3 (see `docs/format.md`, "Offsets store"); all integers little-endian:
//!
//! | at | bytes | field |
//! |---|---|---|
//! | 0 | 1 | version, `3` |
//! | 1 | 4 | CRC-32 (`crc32fast`, IEEE) of the **key**, then of every other byte of the value: byte 0, then 5.. |
//! | 5 | 8 | commit sequence, `u64`: the store-wide number of the write that stored this value |
//! | 13 | 1 | entry count *k*, 1 ..= 64 |
//! | 14 | … | *k* entries, in increasing slot order |
//!
//! An entry (the same in versions 2 and 3):
//!
//! | at | bytes | field |
//! |---|---|---|
//! | 0 | 1 | slot: the partition is `64·b + slot`; below 64, greater than the previous entry's |
//! | 1 | 8 | committed offset, `u64`: the next offset the group reads |
//! | 9 | 8 | commit time, `u64` ms since the Unix epoch |
//! | 17 | 2 | metadata length *n*, `u16`, at most [`METADATA_BYTES_MAX`] |
//! | 19 | *n* | metadata, UTF-8 |
//!
//! Invariants: the version is read first (it decides the layout), then the checksum is checked
//! over the key and the whole value before any other field is trusted — so a value is valid
//! only under the key it was written for; the entries must account for exactly the bytes that
//! are left. A value that fails any check is corrupt, never guessed at. An empty block is never
//! stored (its key is removed instead), so a count of 0 is corrupt too.
//!
//! Versions 2 (`v2`, the same without the commit sequence and with a checksum of the value
//! alone) and 1 (`v1`, one partition per value) are read only to migrate an older store.

pub mod v1;
pub mod v2;

use crate::error::DecodeError;

/// The version this code writes, and the only one the offsets tree holds.
pub const VERSION: u8 = 3;

/// The longest metadata string, in bytes.
pub const METADATA_BYTES_MAX: usize = 4096;
const _: () = assert!(METADATA_BYTES_MAX <= u16::MAX as usize);

/// How many partitions one value holds.
pub const PARTITIONS_PER_BLOCK: u32 = 64;
const SLOTS: usize = PARTITIONS_PER_BLOCK as usize;

const VERSION_AT: usize = 0;
const CRC_AT: usize = VERSION_AT + 1;
const COMMIT_SEQ_AT: usize = CRC_AT + 4;
const COUNT_AT: usize = COMMIT_SEQ_AT + 8;
/// Bytes before the first entry.
pub const HEADER_BYTES: usize = COUNT_AT + 1;
const _: () = assert!(HEADER_BYTES == 14);

const SLOT_AT: usize = 0;
const OFFSET_AT: usize = SLOT_AT + 1;
const COMMIT_TIME_AT: usize = OFFSET_AT + 8;
const METADATA_LENGTH_AT: usize = COMMIT_TIME_AT + 8;
/// Bytes of an entry before its metadata: the whole entry when the metadata is empty.
pub const ENTRY_HEADER_BYTES: usize = METADATA_LENGTH_AT + 2;
const _: () = assert!(ENTRY_HEADER_BYTES == 19);

/// The most bytes a block's entries take: every slot full, every metadata string as long as
/// allowed.
const ENTRIES_BYTES_MAX: usize = SLOTS * (ENTRY_HEADER_BYTES + METADATA_BYTES_MAX);
/// The longest value.
pub const VALUE_BYTES_MAX: usize = HEADER_BYTES + ENTRIES_BYTES_MAX;

/// One committed offset, as stored for a (group, topic, partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Committed {
    /// The next offset the group reads (as in Kafka): every event before it is done.
    pub offset: u64,
    /// When it was committed, in ms since the Unix epoch, by the store's clock.
    pub commit_time_ms: u64,
    /// The caller's metadata string (at most [`METADATA_BYTES_MAX`] bytes; often empty).
    pub metadata: String,
}

/// The committed offsets of one block's partitions, by slot (`partition % 64`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// Sorted by slot, each slot at most once, every slot below 64.
    entries: Vec<(u8, Committed)>,
}

impl Block {
    /// The committed offset in `slot`, if any.
    pub fn get(&self, slot: u8) -> Option<&Committed> {
        self.position(slot).ok().map(|at| &self.entries[at].1)
    }

    /// Sets `slot`'s committed offset.
    pub fn set(&mut self, slot: u8, committed: Committed) {
        assert!(usize::from(slot) < SLOTS, "slot {slot} of a 64-slot block");
        match self.position(slot) {
            Ok(at) => self.entries[at].1 = committed,
            Err(at) => self.entries.insert(at, (slot, committed)),
        }
    }

    /// How many slots hold an offset.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no slot holds an offset.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slots that hold an offset, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &Committed)> {
        self.entries
            .iter()
            .map(|(slot, committed)| (*slot, committed))
    }

    fn position(&self, slot: u8) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&slot, |(s, _)| *s)
    }
}

/// A decoded value: the block and the commit sequence of the write that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The store-wide sequence number of the write that stored the value.
    pub commit_seq: u64,
    /// The committed offsets.
    pub block: Block,
}

/// Encodes `block` as the value of `key`, written by the write numbered `commit_seq`. The block
/// must not be empty, and every metadata string must be at most [`METADATA_BYTES_MAX`] bytes
/// (the store checks both before calling; otherwise it is a bug).
pub fn encode(key: &[u8], block: &Block, commit_seq: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_BYTES + entries_bytes(block));
    value.push(VERSION);
    value.extend_from_slice(&[0; 4]);
    value.extend_from_slice(&commit_seq.to_le_bytes());
    encode_entries(block, &mut value);
    let crc = checksum(key, &value);
    value[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(
        decode(key, &value)
            .as_ref()
            .map(|v| (v.commit_seq, &v.block)),
        Ok((commit_seq, block))
    );
    value
}

/// Decodes the value stored under `key`.
///
/// # Errors
///
/// A [`DecodeError`] saying which check failed: version, length, checksum, then the entries.
pub fn decode(key: &[u8], value: &[u8]) -> Result<Value, DecodeError> {
    check_envelope(key, value, VERSION, HEADER_BYTES, VALUE_BYTES_MAX)?;
    let commit_seq = u64::from_le_bytes(array(value, COMMIT_SEQ_AT));
    let block = decode_entries(value[COUNT_AT], &value[HEADER_BYTES..])?;
    Ok(Value { commit_seq, block })
}

/// The bytes of `block`'s entries.
fn entries_bytes(block: &Block) -> usize {
    block
        .iter()
        .map(|(_, c)| ENTRY_HEADER_BYTES + c.metadata.len())
        .sum::<usize>()
}

/// Appends the entry count and the entries (versions 2 and 3).
fn encode_entries(block: &Block, value: &mut Vec<u8>) {
    assert!(!block.is_empty(), "an empty block reached the codec");
    value.push(u8::try_from(block.len()).expect("at most 64 entries"));
    for (slot, committed) in block.iter() {
        let metadata_length = u16::try_from(committed.metadata.len())
            .ok()
            .filter(|&n| usize::from(n) <= METADATA_BYTES_MAX);
        let Some(metadata_length) = metadata_length else {
            panic!(
                "metadata of {} bytes reached the codec; the store checks the limit",
                committed.metadata.len()
            )
        };
        value.push(slot);
        value.extend_from_slice(&committed.offset.to_le_bytes());
        value.extend_from_slice(&committed.commit_time_ms.to_le_bytes());
        value.extend_from_slice(&metadata_length.to_le_bytes());
        value.extend_from_slice(committed.metadata.as_bytes());
    }
}

/// The CRC-32 of what a value's checksum covers: `covered_first` (the key in version 3,
/// nothing in earlier versions), then the value's bytes other than the CRC field itself
/// (bytes 1..5 in every version).
fn checksum(covered_first: &[u8], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(covered_first);
    hasher.update(&value[..CRC_AT]);
    hasher.update(&value[CRC_AT + 4..]);
    hasher.finalize()
}

/// The checks every value version starts with, in this order: the version byte (it decides the
/// layout), the length bounds, then the CRC over `covered_first` and the value (before any
/// other field is trusted).
fn check_envelope(
    covered_first: &[u8],
    value: &[u8],
    version: u8,
    header_bytes: usize,
    value_bytes_max: usize,
) -> Result<(), DecodeError> {
    let Some(&found) = value.first() else {
        return Err(DecodeError::Truncated {
            bytes: 0,
            minimum: header_bytes,
        });
    };
    if found != version {
        return Err(DecodeError::UnknownVersion {
            version: found,
            expected: version,
        });
    }
    if value.len() < header_bytes {
        return Err(DecodeError::Truncated {
            bytes: value.len(),
            minimum: header_bytes,
        });
    }
    if value.len() > value_bytes_max {
        return Err(DecodeError::TooLong {
            bytes: value.len(),
            maximum: value_bytes_max,
        });
    }
    let stored = u32::from_le_bytes(array(value, CRC_AT));
    let computed = checksum(covered_first, value);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(())
}

/// Decodes a block's entries (versions 2 and 3): `count` entries filling `rest` exactly.
fn decode_entries(count: u8, mut rest: &[u8]) -> Result<Block, DecodeError> {
    let count = usize::from(count);
    if count == 0 || count > SLOTS {
        return Err(DecodeError::Block {
            reason: "the entry count is not between 1 and 64",
            entry: 0,
        });
    }
    let mut entries: Vec<(u8, Committed)> = Vec::with_capacity(count);
    for entry in 0..count {
        if rest.len() < ENTRY_HEADER_BYTES {
            return Err(DecodeError::Block {
                reason: "the value ends inside an entry's header",
                entry,
            });
        }
        let slot = rest[SLOT_AT];
        if usize::from(slot) >= SLOTS {
            return Err(DecodeError::Block {
                reason: "a slot is 64 or more",
                entry,
            });
        }
        if entries
            .last()
            .is_some_and(|&(previous, _)| slot <= previous)
        {
            return Err(DecodeError::Block {
                reason: "the slots are not in increasing order",
                entry,
            });
        }
        let offset = u64::from_le_bytes(array(rest, OFFSET_AT));
        let commit_time_ms = u64::from_le_bytes(array(rest, COMMIT_TIME_AT));
        let metadata_length = usize::from(u16::from_le_bytes(array(rest, METADATA_LENGTH_AT)));
        let left = rest.len() - ENTRY_HEADER_BYTES;
        if metadata_length > METADATA_BYTES_MAX || metadata_length > left {
            return Err(DecodeError::MetadataLength {
                stored: metadata_length,
                left,
            });
        }
        let metadata = &rest[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + metadata_length];
        let metadata = std::str::from_utf8(metadata)
            .map_err(|source| DecodeError::MetadataNotUtf8 { source })?
            .to_string();
        entries.push((
            slot,
            Committed {
                offset,
                commit_time_ms,
                metadata,
            },
        ));
        rest = &rest[ENTRY_HEADER_BYTES + metadata_length..];
    }
    if !rest.is_empty() {
        return Err(DecodeError::Block {
            reason: "bytes follow the last entry",
            entry: count,
        });
    }
    Ok(Block { entries })
}

fn array<const N: usize>(value: &[u8], at: usize) -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&value[at..at + N]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Group "g1", topic "orders", block 0.
    const KEY: &[u8] = b"g1\0orders\0\0\0\0\0";
    const COMMIT_SEQ: u64 = 0x0a0b_0c0d_0e0f_1011;

    /// Computed apart from this code (Python's `zlib.crc32` over the key, byte 0, bytes 5..).
    const GOLDEN: [u8; 54] = [
        0x03, // version
        0x33, 0xea, 0x57, 0x0e, // CRC-32 of the key and the other bytes, little-endian
        0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, // commit sequence
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

    fn golden_value() -> Value {
        Value {
            commit_seq: COMMIT_SEQ,
            block: golden_block(),
        }
    }

    #[test]
    fn golden_bytes() {
        assert_eq!(encode(KEY, &golden_block(), COMMIT_SEQ), GOLDEN);
        assert_eq!(decode(KEY, &GOLDEN), Ok(golden_value()));
    }

    #[test]
    fn a_value_is_valid_only_under_its_own_key() {
        for other in [&b"g1\0orders\0\0\0\0\x01"[..], b"g2\0orders\0\0\0\0\0", b""] {
            assert!(matches!(
                decode(other, &GOLDEN),
                Err(DecodeError::Checksum { .. })
            ));
        }
    }

    #[test]
    fn slots_are_kept_in_order_and_replaced() {
        let mut block = golden_block();
        block.set(5, committed(5, 5, ""));
        block.set(1, committed(6, 6, "x"));
        let slots: Vec<u8> = block.iter().map(|(slot, _)| slot).collect();
        assert_eq!(slots, [1, 5, 9]);
        assert_eq!(block.get(1), Some(&committed(6, 6, "x")));
        assert_eq!(block.get(2), None);
        assert_eq!(block.len(), 3);
    }

    #[test]
    fn round_trips_extremes() {
        let long = "m".repeat(METADATA_BYTES_MAX);
        let mut full = Block::default();
        for slot in 0..64u8 {
            full.set(slot, committed(u64::MAX, u64::MAX, &long));
        }
        let value = encode(KEY, &full, u64::MAX);
        assert_eq!(value.len(), VALUE_BYTES_MAX);
        assert_eq!(
            decode(KEY, &value),
            Ok(Value {
                commit_seq: u64::MAX,
                block: full
            })
        );
        let mut edge = Block::default();
        edge.set(0, committed(0, 0, ""));
        edge.set(63, committed(1, 2, "é"));
        assert_eq!(
            decode(KEY, &encode(KEY, &edge, 0)),
            Ok(Value {
                commit_seq: 0,
                block: edge
            })
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        for byte in 0..GOLDEN.len() {
            for bit in 0..8 {
                let mut damaged = GOLDEN;
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode(KEY, &damaged).is_err(),
                    "flip of bit {bit} in byte {byte} decoded"
                );
            }
        }
        for byte in 0..KEY.len() {
            let mut key = KEY.to_vec();
            key[byte] ^= 0x01;
            assert!(decode(&key, &GOLDEN).is_err(), "key byte {byte} flipped");
        }
    }

    #[test]
    fn every_truncation_and_extension_is_detected() {
        for length in 0..GOLDEN.len() {
            assert!(
                decode(KEY, &GOLDEN[..length]).is_err(),
                "truncated to {length}"
            );
        }
        let mut longer = GOLDEN.to_vec();
        longer.push(b'!');
        assert!(matches!(
            decode(KEY, &longer),
            Err(DecodeError::Checksum { .. })
        ));
    }

    /// `bytes` with a correct checksum, so the checks after it are reached.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let crc = checksum(KEY, &bytes);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn each_check_has_its_own_error() {
        assert!(matches!(
            decode(KEY, &[]),
            Err(DecodeError::Truncated { bytes: 0, .. })
        ));
        assert!(matches!(
            decode(KEY, &[2; 30]),
            Err(DecodeError::UnknownVersion {
                version: 2,
                expected: 3
            })
        ));
        assert!(matches!(
            decode(KEY, &GOLDEN[..4]),
            Err(DecodeError::Truncated { bytes: 4, .. })
        ));
        assert!(matches!(
            decode(KEY, &GOLDEN[..HEADER_BYTES - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let too_long = vec![VERSION; VALUE_BYTES_MAX + 1];
        assert!(matches!(
            decode(KEY, &too_long),
            Err(DecodeError::TooLong { .. })
        ));

        let block_error = |bytes: Vec<u8>| match decode(KEY, &resealed(bytes)) {
            Err(DecodeError::Block { reason, entry }) => (reason, entry),
            other => panic!("{other:?}"),
        };
        let mut empty = GOLDEN[..HEADER_BYTES].to_vec();
        empty[COUNT_AT] = 0;
        assert_eq!(block_error(empty).1, 0);
        let mut too_many = GOLDEN.to_vec();
        too_many[COUNT_AT] = 65;
        assert_eq!(block_error(too_many).1, 0);
        let mut three = GOLDEN.to_vec();
        three[COUNT_AT] = 3;
        assert_eq!(
            block_error(three),
            ("the value ends inside an entry's header", 2)
        );
        let mut big_slot = GOLDEN.to_vec();
        big_slot[HEADER_BYTES] = 64;
        assert_eq!(block_error(big_slot), ("a slot is 64 or more", 0));
        let mut unordered = GOLDEN.to_vec();
        unordered[HEADER_BYTES + ENTRY_HEADER_BYTES + 2] = 1;
        assert_eq!(
            block_error(unordered),
            ("the slots are not in increasing order", 1)
        );
        let mut trailing = GOLDEN.to_vec();
        trailing[COUNT_AT] = 1;
        assert_eq!(block_error(trailing), ("bytes follow the last entry", 1));

        // A consistent checksum over a metadata length that overruns the value.
        let mut lying = GOLDEN.to_vec();
        lying[HEADER_BYTES + METADATA_LENGTH_AT] = 200;
        assert!(matches!(
            decode(KEY, &resealed(lying)),
            Err(DecodeError::MetadataLength { stored: 200, .. })
        ));

        // A consistent checksum over metadata that is not UTF-8.
        let mut not_utf8 = GOLDEN.to_vec();
        not_utf8[HEADER_BYTES + ENTRY_HEADER_BYTES] = 0xff;
        assert!(matches!(
            decode(KEY, &resealed(not_utf8)),
            Err(DecodeError::MetadataNotUtf8 { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "the store checks the limit")]
    fn the_codec_refuses_oversized_metadata() {
        let mut block = Block::default();
        block.set(0, committed(1, 1, &"m".repeat(METADATA_BYTES_MAX + 1)));
        let _ = encode(KEY, &block, 1);
    }

    #[test]
    #[should_panic(expected = "an empty block")]
    fn the_codec_refuses_an_empty_block() {
        let _ = encode(KEY, &Block::default(), 1);
    }
}
