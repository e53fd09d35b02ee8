//! Keys of the offsets tree (pure): one key per (group, topic, block of 64 partitions).
//!
//! Partition `p` lives in block `p / 64`, in slot `p % 64` of that block's value (see
//! `record`).
//!
//! Layout (see `docs/format.md`, "Offsets store"):
//!
//! | bytes | field |
//! |---|---|
//! | 1..=249 | group name (ASCII, `[A-Za-z0-9._-]`) |
//! | 1 | `0x00` terminator |
//! | 1..=249 | topic name |
//! | 1 | `0x00` terminator |
//! | 4 | block, `u32` big-endian: the block of partitions `64·block ..= 64·block + 63` |
//!
//! Invariants: a valid name never holds `0x00`, and `0x00` sorts before every byte a name may
//! hold, so byte order of keys is (group, topic, block) order with names compared bytewise
//! and blocks (hence partitions) compared numerically. One group's keys are exactly those starting with
//! [`group_prefix`], hence contiguous (a range scan), and the next group starts at or after
//! [`next_group_start`].

use std::fmt;

use crate::error::DecodeError;
use crate::name::{validate_name, NameKind, NAME_BYTES_MAX};
use crate::record::PARTITIONS_PER_BLOCK;

/// The byte after each name.
pub const TERMINATOR: u8 = 0x00;
/// Width of the block field.
pub const BLOCK_BYTES: usize = 4;
/// The longest key: two longest names, two terminators and the block.
pub const KEY_BYTES_MAX: usize = 2 * (NAME_BYTES_MAX + 1) + BLOCK_BYTES;
const _: () = assert!(KEY_BYTES_MAX == 504);

/// The block holding `partition`, and its slot in the block.
pub fn block_of(partition: u32) -> (u32, u8) {
    let slot = u8::try_from(partition % PARTITIONS_PER_BLOCK).expect("a slot is below 64");
    (partition / PARTITIONS_PER_BLOCK, slot)
}

/// The partition in `slot` of `block`.
pub fn partition_of(block: u32, slot: u8) -> u32 {
    debug_assert!(u32::from(slot) < PARTITIONS_PER_BLOCK);
    block * PARTITIONS_PER_BLOCK + u32::from(slot)
}

/// The key of `(group, topic, block)`. Both names must be valid (checked by the caller).
pub fn encode(group: &str, topic: &str, block: u32) -> Vec<u8> {
    debug_assert!(validate_name(group).is_ok() && validate_name(topic).is_ok());
    assert!(!group.as_bytes().contains(&TERMINATOR) && !topic.as_bytes().contains(&TERMINATOR));
    let mut key = Vec::with_capacity(group.len() + topic.len() + 2 + BLOCK_BYTES);
    key.extend_from_slice(group.as_bytes());
    key.push(TERMINATOR);
    key.extend_from_slice(topic.as_bytes());
    key.push(TERMINATOR);
    key.extend_from_slice(&block_bytes(block));
    key
}

#[expect(
    clippy::big_endian_bytes,
    reason = "keys sort bytewise, so the block is big-endian to sort numerically"
)]
fn block_bytes(block: u32) -> [u8; BLOCK_BYTES] {
    block.to_be_bytes()
}

#[expect(
    clippy::big_endian_bytes,
    reason = "the block is stored big-endian, see encode"
)]
fn block_from(bytes: [u8; BLOCK_BYTES]) -> u32 {
    u32::from_be_bytes(bytes)
}

/// The prefix shared by exactly the keys of `group`.
pub fn group_prefix(group: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(group.len() + 1);
    prefix.extend_from_slice(group.as_bytes());
    prefix.push(TERMINATOR);
    prefix
}

/// A key at or below the first key of any group that sorts after `group`: `group` followed by
/// `0x01`, which is above every key of `group` (they continue with `0x00`) and below every
/// longer name that starts with `group` (its next byte is a name character, `0x2d` or more).
pub fn next_group_start(group: &str) -> Vec<u8> {
    let mut start = Vec::with_capacity(group.len() + 1);
    start.extend_from_slice(group.as_bytes());
    start.push(TERMINATOR + 1);
    start
}

/// A decoded key, borrowing the names from the key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// The group name.
    pub group: &'a str,
    /// The topic name.
    pub topic: &'a str,
    /// The block number: partitions `64·block ..= 64·block + 63`. (In a version 1 key, read
    /// only to migrate, the same field is the partition.)
    pub block: u32,
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {:?} topic {:?} partitions {}..={}",
            self.group,
            self.topic,
            partition_of(self.block, 0),
            partition_of(self.block, 0).saturating_add(PARTITIONS_PER_BLOCK - 1)
        )
    }
}

/// Decodes a key read from the tree, checking both names against the name rule.
///
/// # Errors
///
/// A [`DecodeError`] about the key if the bytes are not a key this version writes.
pub fn decode(bytes: &[u8]) -> Result<Key<'_>, DecodeError> {
    let key = decode_layout(bytes)?;
    if key.block > u32::MAX / PARTITIONS_PER_BLOCK {
        return Err(DecodeError::Key {
            reason: "the block number is past the last partition's block",
        });
    }
    Ok(key)
}

/// Decodes the layout shared by version 1 keys (whose last field is the partition) and
/// version 2 keys, without the version 2 check of the block number.
///
/// # Errors
///
/// A [`DecodeError`] about the key if the bytes are not laid out as a key.
pub fn decode_layout(bytes: &[u8]) -> Result<Key<'_>, DecodeError> {
    if bytes.len() > KEY_BYTES_MAX {
        return Err(DecodeError::Key {
            reason: "longer than the longest key",
        });
    }
    let (group, rest) = split_name(bytes, NameKind::Group)?;
    let (topic, rest) = split_name(rest, NameKind::Topic)?;
    let &[b0, b1, b2, b3] = rest else {
        return Err(DecodeError::Key {
            reason: "the block field is not 4 bytes",
        });
    };
    Ok(Key {
        group,
        topic,
        block: block_from([b0, b1, b2, b3]),
    })
}

/// Splits a valid name and its terminator off the front of `bytes`.
fn split_name(bytes: &[u8], kind: NameKind) -> Result<(&str, &[u8]), DecodeError> {
    let end = bytes
        .iter()
        .position(|&b| b == TERMINATOR)
        .ok_or(DecodeError::Key {
            reason: "a name has no terminator",
        })?;
    let name = std::str::from_utf8(&bytes[..end])
        .map_err(|source| DecodeError::KeyNotUtf8 { kind, source })?;
    // The full rule, not just the characters: a key holding "." or a 250-byte name was not
    // written by this code.
    validate_name(name).map_err(|source| DecodeError::KeyName { kind, source })?;
    Ok((name, &bytes[end + 1..]))
}

/// A key in readable form for error messages: decoded if it decodes, escaped bytes if not.
pub fn readable(bytes: &[u8]) -> String {
    match decode(bytes) {
        Ok(key) => key.to_string(),
        Err(_) => format!("undecodable key b\"{}\"", bytes.escape_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        // group "g1", topic "orders", block 258: names, 0x00 after each, then 258 as u32 BE.
        let expected: &[u8] = &[
            b'g', b'1', 0x00, //
            b'o', b'r', b'd', b'e', b'r', b's', 0x00, //
            0x00, 0x00, 0x01, 0x02,
        ];
        assert_eq!(encode("g1", "orders", 258), expected);
        assert_eq!(
            decode(expected),
            Ok(Key {
                group: "g1",
                topic: "orders",
                block: 258
            })
        );
        assert_eq!(group_prefix("g1"), [b'g', b'1', 0x00]);
        assert_eq!(next_group_start("g1"), [b'g', b'1', 0x01]);
    }

    #[test]
    fn keys_sort_by_group_then_topic_then_block_numerically() {
        let tuples = [
            ("a", "t", 0),
            ("a", "t", 1),
            ("a", "t", 255),
            ("a", "t", 256),
            ("a", "t", u32::MAX),
            ("a", "t-", 0),
            ("a", "tt", 0),
            ("a-", "a", 0),
            ("a.b", "a", 0),
            ("aa", "a", 0),
            ("b", "a", 0),
        ];
        let keys: Vec<Vec<u8>> = tuples.iter().map(|&(g, t, p)| encode(g, t, p)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let mut expected = tuples.to_vec();
        expected.sort();
        assert_eq!(tuples.to_vec(), expected, "byte order is tuple order");
    }

    #[test]
    fn a_group_prefix_holds_exactly_that_groups_keys() {
        let prefix = group_prefix("a");
        let next = next_group_start("a");
        for (group, inside) in [
            ("a", true),
            ("aa", false),
            ("a-", false),
            ("a.", false),
            ("b", false),
        ] {
            let key = encode(group, "topic", 7);
            assert_eq!(key.starts_with(&prefix), inside, "{group}");
            // Every key of a later group sorts at or after next_group_start("a").
            assert_eq!(key >= next, !inside, "{group}");
        }
    }

    #[test]
    fn bad_keys_do_not_decode() {
        let bad: [&[u8]; 8] = [
            b"",
            b"g",
            b"g\0t",
            b"g\0t\0\0\0\0",
            b"g\0t\0\0\0\0\0\0",
            b"\0t\0\0\0\0\0",
            b"g/\0t\0\0\0\0\0",
            b".\0t\0\0\0\0\0",
        ];
        for bytes in bad {
            assert!(
                matches!(
                    decode(bytes),
                    Err(DecodeError::Key { .. } | DecodeError::KeyName { .. })
                ),
                "{bytes:?}"
            );
        }
        assert!(matches!(
            decode(&[b'a'; KEY_BYTES_MAX + 1]),
            Err(DecodeError::Key { .. })
        ));
        let past_the_last_block = b"g\0t\0\x04\0\0\0";
        assert!(matches!(
            decode(past_the_last_block),
            Err(DecodeError::Key { .. })
        ));
        assert_eq!(
            decode_layout(past_the_last_block).map(|k| k.block),
            Ok(1 << 26)
        );
    }

    #[test]
    fn readable_form() {
        assert_eq!(
            readable(&encode("g", "t", 3)),
            "group \"g\" topic \"t\" partitions 192..=255"
        );
        assert_eq!(readable(b"g\0\xff"), "undecodable key b\"g\\x00\\xff\"");
        assert!(matches!(
            decode(b"g\0\xff\0\0\0\0\0"),
            Err(DecodeError::KeyNotUtf8 {
                kind: NameKind::Topic,
                ..
            })
        ));
    }

    #[test]
    fn partitions_map_to_blocks_and_slots() {
        assert_eq!(block_of(0), (0, 0));
        assert_eq!(block_of(63), (0, 63));
        assert_eq!(block_of(64), (1, 0));
        assert_eq!(block_of(u32::MAX), (u32::MAX / 64, 63));
        for partition in [0, 1, 63, 64, 65, 4095, u32::MAX] {
            let (block, slot) = block_of(partition);
            assert_eq!(partition_of(block, slot), partition);
        }
        // Partition order is (block, slot) order.
        assert!(block_of(63) < block_of(64));
    }

    #[test]
    fn the_longest_key_round_trips() {
        let name = "n".repeat(NAME_BYTES_MAX);
        let last_block = u32::MAX / PARTITIONS_PER_BLOCK;
        let key = encode(&name, &name, last_block);
        assert_eq!(key.len(), KEY_BYTES_MAX);
        assert_eq!(
            decode(&key),
            Ok(Key {
                group: &name,
                topic: &name,
                block: last_block
            })
        );
    }
}
