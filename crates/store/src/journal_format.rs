//! The bytes of the store's journal files (`journal/<sequence>.wjl`), specified in
//! `docs/format.md`, "Journal": a file header, then blocks, one per group commit, each holding
//! the frames of the appends it made durable. Encoding and a decoder that never panics on any
//! bytes (it reads files a crash may have torn); the journal's I/O lives in `journal.rs`.

/// Magic at the start of a journal file.
pub const JOURNAL_MAGIC: [u8; 8] = *b"WEIRJNL\0";
/// The journal format version written by this code.
pub const JOURNAL_FORMAT_VERSION: u32 = 1;
/// Bytes of the file header: magic, version, sequence, reserved, CRC.
pub const JOURNAL_HEADER_LEN: usize = 32;
/// Bytes before a block's body: body length and body CRC.
pub const BLOCK_HEADER_LEN: usize = 8;
/// Bytes of an entry before its frame: topic id, partition, frame length.
pub const ENTRY_HEADER_LEN: usize = 16;
/// Bytes of a block body before its entries: the file's sequence, the block's own position
/// in the file, and the entry count.
pub const BODY_HEADER_LEN: usize = 20;
/// The largest block body a decoder accepts (a group commit never writes more than a few
/// appends' worth; the bound keeps a damaged length from asking for a huge buffer).
pub const BLOCK_BODY_MAX: u32 = 1 << 30;

const VERSION_AT: usize = 8;
const SEQUENCE_AT: usize = 12;
const RESERVED_AT: usize = 20;
const HEADER_CRC_AT: usize = 28;

/// The journal file header.
pub fn encode_header(sequence: u64) -> [u8; JOURNAL_HEADER_LEN] {
    let mut header = [0u8; JOURNAL_HEADER_LEN];
    header[..8].copy_from_slice(&JOURNAL_MAGIC);
    header[VERSION_AT..VERSION_AT + 4].copy_from_slice(&JOURNAL_FORMAT_VERSION.to_le_bytes());
    header[SEQUENCE_AT..SEQUENCE_AT + 8].copy_from_slice(&sequence.to_le_bytes());
    let crc = crc32fast::hash(&header[..HEADER_CRC_AT]);
    header[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A block being filled: call [`BlockBuilder::push`] for each entry, then
/// [`BlockBuilder::finish`] for the bytes to write.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    bytes: Vec<u8>,
    entries: u32,
}

impl BlockBuilder {
    /// An empty block.
    pub fn new() -> Self {
        let mut block = BlockBuilder::default();
        block.clear();
        block
    }

    /// Empties the block, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.resize(BLOCK_HEADER_LEN + BODY_HEADER_LEN, 0);
        self.entries = 0;
    }

    /// Adds the frame of one append to `partition` of the topic `topic_id`.
    ///
    /// # Panics
    /// If the frame is longer than `u32::MAX` bytes (weir-log frames are at most 64 MiB).
    pub fn push(&mut self, topic_id: u64, partition: u32, frame: &[u8]) {
        let frame_len = u32::try_from(frame.len()).expect("a weir-log frame fits in u32");
        self.bytes.extend_from_slice(&topic_id.to_le_bytes());
        self.bytes.extend_from_slice(&partition.to_le_bytes());
        self.bytes.extend_from_slice(&frame_len.to_le_bytes());
        self.bytes.extend_from_slice(frame);
        self.entries += 1;
    }

    /// Bytes the block takes once finished.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Fills in the block's length, the sequence of the file it goes to and its position in
    /// it, its entry count and CRC; returns the bytes to write.
    pub fn finish(&mut self, sequence: u64, position: u64) -> &[u8] {
        let body_len = (self.bytes.len() - BLOCK_HEADER_LEN) as u32;
        let at = BLOCK_HEADER_LEN;
        self.bytes[at..at + 8].copy_from_slice(&sequence.to_le_bytes());
        self.bytes[at + 8..at + 16].copy_from_slice(&position.to_le_bytes());
        self.bytes[at + 16..at + BODY_HEADER_LEN].copy_from_slice(&self.entries.to_le_bytes());
        let crc = crc32fast::hash(&self.bytes[BLOCK_HEADER_LEN..]);
        self.bytes[..4].copy_from_slice(&body_len.to_le_bytes());
        self.bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.bytes
    }
}

/// One journaled append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalEntry<'a> {
    /// The topic's id (from its `topic.json`).
    pub topic_id: u64,
    /// The partition.
    pub partition: u32,
    /// The weir-log frame, exactly as written to the partition's segment.
    pub frame: &'a [u8],
}

/// One block: the entries of one group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalBlock<'a> {
    /// Byte position of the block in the file.
    pub position: u64,
    /// Its entries, in the order they were journaled.
    pub entries: Vec<JournalEntry<'a>>,
}

/// What a journal file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedJournal<'a> {
    /// The file's sequence number (also its name).
    pub sequence: u64,
    /// The valid blocks, in order.
    pub blocks: Vec<JournalBlock<'a>>,
    /// Bytes of the file that hold the header and the valid blocks.
    pub valid_len: u64,
    /// Bytes after them: a torn tail, the block a crash interrupted (never acknowledged),
    /// or zeros written ahead of the end.
    pub torn_bytes: u64,
    /// The bytes after the valid blocks are all zeros (written ahead of the end, never a
    /// block): nothing was torn.
    pub tail_is_zeros: bool,
}

/// Why a journal file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalCorrupt {
    /// Byte position of the damage.
    pub position: u64,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for JournalCorrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.position, self.reason)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn corrupt(position: usize, reason: impl Into<String>) -> JournalCorrupt {
    JournalCorrupt {
        position: position as u64,
        reason: reason.into(),
    }
}

/// Decodes a journal file.
///
/// A file is created whole (header written and fsynced under a temporary name, then renamed),
/// so a missing or damaged header is corruption. Blocks are written one after another, each
/// only after the one before was fsynced, so only the last block can be torn: the first block
/// that is cut short, has a zero or out-of-bounds length or fails its CRC ends the valid part,
/// and the rest is a torn tail — unless a valid block of this file (it names the file's
/// sequence and its own position, and its CRC matches) starts anywhere after it, which means
/// an acknowledged block was damaged: corruption. (Naming its position, a block copied into
/// an event's value elsewhere in the file is not taken for one.)
///
/// # Errors
/// [`JournalCorrupt`] with the byte position: a bad header, a damaged block followed by a
/// valid one, a block whose CRC matches but whose entries do not fill it exactly.
pub fn decode_journal(bytes: &[u8]) -> Result<DecodedJournal<'_>, JournalCorrupt> {
    let salvaged = salvage_journal(bytes)?;
    match salvaged.damage.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(salvaged.journal),
    }
}

/// What [`salvage_journal`] could read of a damaged journal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvagedJournal<'a> {
    /// The valid blocks, in order, damaged ones skipped.
    pub journal: DecodedJournal<'a>,
    /// The damaged blocks skipped (empty: the file is as [`decode_journal`] reads it).
    pub damage: Vec<JournalCorrupt>,
}

/// Reads every valid block of a journal file, skipping damaged ones (each followed by a valid
/// block: see [`decode_journal`]) and reporting them: what `weir repair` writes back. The one
/// decoder: [`decode_journal`] is this, failing at the first damage.
///
/// # Errors
/// [`JournalCorrupt`] if the header is damaged (nothing in the file can be trusted).
pub fn salvage_journal(bytes: &[u8]) -> Result<SalvagedJournal<'_>, JournalCorrupt> {
    if bytes.len() < JOURNAL_HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "the file has {} bytes, fewer than a journal header ({JOURNAL_HEADER_LEN})",
                bytes.len()
            ),
        ));
    }
    if bytes[..8] != JOURNAL_MAGIC {
        return Err(corrupt(0, "not a weir journal file (bad magic)"));
    }
    let crc = u32_at(bytes, HEADER_CRC_AT).unwrap_or_default();
    if crc != crc32fast::hash(&bytes[..HEADER_CRC_AT]) {
        return Err(corrupt(0, "the journal header fails its CRC"));
    }
    let version = u32_at(bytes, VERSION_AT).unwrap_or_default();
    if version != JOURNAL_FORMAT_VERSION {
        return Err(corrupt(
            VERSION_AT,
            format!("journal format version {version} is not supported (this build reads {JOURNAL_FORMAT_VERSION})"),
        ));
    }
    if u64_at(bytes, RESERVED_AT) != Some(0) {
        return Err(corrupt(RESERVED_AT, "reserved header bytes are not zero"));
    }
    let sequence = u64_at(bytes, SEQUENCE_AT).unwrap_or_default();
    let mut blocks = Vec::new();
    let mut damage = Vec::new();
    let mut at = JOURNAL_HEADER_LEN;
    loop {
        match block_at(bytes, at, sequence) {
            Ok(Some((block, next))) => {
                blocks.push(block);
                at = next;
            }
            Ok(None) => break,
            Err((corrupt, next)) => {
                damage.push(corrupt);
                at = next;
            }
        }
    }
    Ok(SalvagedJournal {
        journal: DecodedJournal {
            sequence,
            blocks,
            valid_len: at as u64,
            torn_bytes: (bytes.len() - at) as u64,
            tail_is_zeros: bytes[at..].iter().all(|&b| b == 0),
        },
        damage,
    })
}

/// The block at `at` and the position after it; `None` at the end or at a torn tail. A damaged
/// block is an error with where the next valid block starts (or the end of the bad block).
fn block_at(
    bytes: &[u8],
    at: usize,
    sequence: u64,
) -> Result<Option<(JournalBlock<'_>, usize)>, (JournalCorrupt, usize)> {
    let Some(body) = checked_body(bytes, at) else {
        // Damaged or cut short. If a valid block of this file starts anywhere after it (its
        // own length field may be what is damaged), this one was written, fsynced and
        // acknowledged before that one. The sequence and position are checked before the CRC,
        // so the scan costs a CRC only where a block could really start.
        let later = (at + 1..bytes.len()).find(|&next| {
            u64_at(bytes, next + BLOCK_HEADER_LEN) == Some(sequence)
                && u64_at(bytes, next + BLOCK_HEADER_LEN + 8) == Some(next as u64)
                && checked_body(bytes, next).is_some()
        });
        if let Some(next) = later {
            return Err((
                corrupt(
                    at,
                    format!(
                        "a journal block fails its checks but a valid block follows it at byte \
                         {next}"
                    ),
                ),
                next,
            ));
        }
        return Ok(None);
    };
    let body_at = at + BLOCK_HEADER_LEN;
    let after = body_at + body.len();
    if u64_at(body, 0) != Some(sequence) || u64_at(body, 8) != Some(at as u64) {
        return Err((
            corrupt(
                at,
                "a journal block names another file or position (a block where it does not \
                 belong)",
            ),
            after,
        ));
    }
    let count = u32_at(body, 16).unwrap_or_default();
    if count == 0 {
        return Err((corrupt(at, "a journal block holds no entries"), after));
    }
    let mut entries = Vec::new();
    let mut in_body = BODY_HEADER_LEN;
    for _ in 0..count {
        let entry_at = body_at + in_body;
        let (Some(topic_id), Some(partition), Some(frame_len)) = (
            u64_at(body, in_body),
            u32_at(body, in_body + 8),
            u32_at(body, in_body + 12),
        ) else {
            return Err((
                corrupt(entry_at, "a journal entry runs past its block"),
                after,
            ));
        };
        let frame_at = in_body + ENTRY_HEADER_LEN;
        let Some(frame) = frame_at
            .checked_add(frame_len as usize)
            .and_then(|frame_end| body.get(frame_at..frame_end))
        else {
            return Err((
                corrupt(entry_at, "a journal entry's frame runs past its block"),
                after,
            ));
        };
        if !matches!(weir_log::format::peek_frame_len(frame), Ok(Some(len)) if len == frame_len) {
            return Err((
                corrupt(
                    entry_at,
                    "a journal entry's frame length disagrees with the frame it holds",
                ),
                after,
            ));
        }
        entries.push(JournalEntry {
            topic_id,
            partition,
            frame,
        });
        in_body = frame_at + frame_len as usize;
    }
    if in_body != body.len() {
        return Err((
            corrupt(
                body_at + in_body,
                "a journal block has bytes after its last entry",
            ),
            after,
        ));
    }
    Ok(Some((
        JournalBlock {
            position: at as u64,
            entries,
        },
        body_at + body.len(),
    )))
}

/// The body of the block at `at` if it is all there and passes its CRC.
fn checked_body(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = u32_at(bytes, at)?;
    if len < BODY_HEADER_LEN as u32 || len > BLOCK_BODY_MAX {
        return None;
    }
    let crc = u32_at(bytes, at.checked_add(4)?)?;
    let body_at = at.checked_add(BLOCK_HEADER_LEN)?;
    let body = bytes.get(body_at..body_at.checked_add(len as usize)?)?;
    (crc32fast::hash(body) == crc).then_some(body)
}

/// Selector bit of [`fuzz_journal`]: recompute the header's CRC.
pub const FIX_HEADER_CRC: u8 = 1;
/// Selector bit of [`fuzz_journal`]: name the file's sequence and the block's position in each
/// block along the chain (whose length field fits the input) and recompute its CRC, so that
/// the checks behind them are reached.
pub const FIX_BLOCK_CRCS: u8 = 2;

/// The body of the journal decoder's fuzz target (`crates/store/fuzz`, and the CI smoke run
/// `crates/store/tests/fuzz_smoke.rs`). The first byte is a selector of fix-ups; the rest is a
/// journal file. Panics only if the decoder breaks a property: whatever it accepts re-encodes
/// to exactly the bytes of its valid part, and the valid part and the torn tail make up the
/// file.
#[doc(hidden)]
pub fn fuzz_journal(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if selector & FIX_HEADER_CRC != 0 && bytes.len() >= JOURNAL_HEADER_LEN {
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..JOURNAL_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    if selector & FIX_BLOCK_CRCS != 0 {
        let mut at = JOURNAL_HEADER_LEN;
        while let Some(len) = u32_at(&bytes, at) {
            let end = at + BLOCK_HEADER_LEN + len as usize;
            if len as usize > bytes.len() || end > bytes.len() {
                break;
            }
            // Name this file and this position too, or the decoder stops at that check.
            if len as usize >= BODY_HEADER_LEN {
                let (sequence, position) =
                    (bytes[SEQUENCE_AT..SEQUENCE_AT + 8].to_vec(), at as u64);
                let body = at + BLOCK_HEADER_LEN;
                bytes[body..body + 8].copy_from_slice(&sequence);
                bytes[body + 8..body + 16].copy_from_slice(&position.to_le_bytes());
            }
            let crc = crc32fast::hash(&bytes[at + BLOCK_HEADER_LEN..end]);
            bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            at = end;
        }
    }
    let Ok(decoded) = decode_journal(&bytes) else {
        return;
    };
    assert_eq!(
        decoded.valid_len + decoded.torn_bytes,
        bytes.len() as u64,
        "the valid part and the torn tail make up the file"
    );
    let mut encoded = encode_header(decoded.sequence).to_vec();
    let reserved = &bytes[RESERVED_AT..HEADER_CRC_AT];
    assert_eq!(
        reserved, [0; 8],
        "accepted a header with reserved bytes set"
    );
    for block in &decoded.blocks {
        assert_eq!(
            block.position,
            encoded.len() as u64,
            "blocks are back to back"
        );
        let mut builder = BlockBuilder::new();
        for entry in &block.entries {
            builder.push(entry.topic_id, entry.partition, entry.frame);
        }
        encoded.extend_from_slice(builder.finish(decoded.sequence, block.position));
    }
    assert_eq!(
        encoded[..],
        bytes[..decoded.valid_len as usize],
        "what the decoder accepted re-encodes to the same bytes"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_log::format::{encode_frame, AppendEvent};

    fn frame(base_offset: u64, value: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, base_offset, &[AppendEvent::value(value)], &[7]);
        bytes
    }

    fn file(blocks: &[&[(u64, u32, Vec<u8>)]]) -> Vec<u8> {
        let mut bytes = encode_header(3).to_vec();
        for entries in blocks {
            let mut block = BlockBuilder::new();
            for (topic_id, partition, frame) in *entries {
                block.push(*topic_id, *partition, frame);
            }
            let position = bytes.len() as u64;
            bytes.extend_from_slice(block.finish(3, position));
        }
        bytes
    }

    #[test]
    fn header_and_block_golden_bytes() {
        let header = encode_header(0x0102_0304_0506_0708);
        assert_eq!(&header[..8], b"WEIRJNL\0");
        assert_eq!(&header[8..12], &[1, 0, 0, 0], "version 1");
        assert_eq!(
            &header[12..20],
            &[8, 7, 6, 5, 4, 3, 2, 1],
            "sequence, little-endian"
        );
        assert_eq!(&header[20..28], &[0; 8], "reserved");
        assert_eq!(
            u32::from_le_bytes(header[28..32].try_into().unwrap()),
            crc32fast::hash(&header[..28])
        );
        let frame = frame(5, b"v");
        let mut block = BlockBuilder::new();
        block.push(0xAABB, 2, &frame);
        let bytes = block.finish(0x11, 0x2233).to_vec();
        let body_len = 20 + 16 + frame.len();
        assert_eq!(&bytes[..4], &(body_len as u32).to_le_bytes(), "body length");
        assert_eq!(&bytes[4..8], &crc32fast::hash(&bytes[8..]).to_le_bytes());
        assert_eq!(&bytes[8..16], &0x11u64.to_le_bytes(), "the file's sequence");
        assert_eq!(
            &bytes[16..24],
            &0x2233u64.to_le_bytes(),
            "the block's position"
        );
        assert_eq!(&bytes[24..28], &[1, 0, 0, 0], "one entry");
        assert_eq!(&bytes[28..36], &0xAABBu64.to_le_bytes(), "topic id");
        assert_eq!(&bytes[36..40], &[2, 0, 0, 0], "partition");
        assert_eq!(&bytes[40..44], &(frame.len() as u32).to_le_bytes());
        assert_eq!(&bytes[44..], &frame[..], "the frame, as in the segment");
        assert_eq!(bytes.len(), BLOCK_HEADER_LEN + body_len);
    }

    #[test]
    fn blocks_decode_in_order() {
        let (a, b, c) = (frame(0, b"a"), frame(1, b"bb"), frame(0, b"c"));
        let bytes = file(&[
            &[(1, 0, a.clone()), (2, 3, c.clone())],
            &[(1, 0, b.clone())],
        ]);
        let decoded = decode_journal(&bytes).unwrap();
        assert_eq!(decoded.sequence, 3);
        assert_eq!(decoded.torn_bytes, 0);
        assert_eq!(decoded.valid_len, bytes.len() as u64);
        let entries: Vec<(u64, u32, &[u8])> = decoded
            .blocks
            .iter()
            .flat_map(|block| block.entries.iter())
            .map(|e| (e.topic_id, e.partition, e.frame))
            .collect();
        assert_eq!(entries, [(1, 0, &a[..]), (2, 3, &c[..]), (1, 0, &b[..])]);
        assert_eq!(decoded.blocks[0].position, JOURNAL_HEADER_LEN as u64);
    }

    #[test]
    fn a_torn_last_block_is_cut_and_reported() {
        let bytes = file(&[&[(1, 0, frame(0, b"a"))], &[(1, 0, frame(1, b"b"))]]);
        let first_end = decode_journal(&bytes).unwrap().blocks[1].position as usize;
        for cut in first_end + 1..bytes.len() {
            let decoded = decode_journal(&bytes[..cut]).unwrap();
            assert_eq!(decoded.blocks.len(), 1, "cut at {cut}");
            assert_eq!(decoded.valid_len, first_end as u64);
            assert_eq!(decoded.torn_bytes, (cut - first_end) as u64);
        }
        // The last block's bytes damaged in place (a torn write): cut as well.
        let mut damaged = bytes.clone();
        *damaged.last_mut().unwrap() ^= 0xFF;
        assert_eq!(decode_journal(&damaged).unwrap().blocks.len(), 1);
        // Zeros after the last block (sectors never written): a tail, not damage.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 600]);
        let decoded = decode_journal(&zeros).unwrap();
        assert_eq!((decoded.blocks.len(), decoded.torn_bytes), (2, 600));
    }

    #[test]
    fn a_damaged_block_followed_by_a_valid_one_is_corruption() {
        let bytes = file(&[&[(1, 0, frame(0, b"a"))], &[(1, 0, frame(1, b"b"))]]);
        let mut damaged = bytes.clone();
        damaged[JOURNAL_HEADER_LEN + BLOCK_HEADER_LEN + 6] ^= 0x01;
        let error = decode_journal(&damaged).unwrap_err();
        assert_eq!(error.position, JOURNAL_HEADER_LEN as u64);
        assert!(error.reason.contains("a valid block follows"), "{error}");
    }

    #[test]
    fn a_damaged_length_of_an_acknowledged_block_is_corruption_not_a_tail() {
        let bytes = file(&[
            &[(1, 0, frame(0, b"a"))],
            &[(1, 0, frame(1, b"b"))],
            &[(1, 0, frame(2, b"c"))],
        ]);
        for (value, what) in [
            (0u32, "zero"),
            (3, "too short"),
            (u32::MAX, "huge"),
            (70, "off by some"),
        ] {
            let mut damaged = bytes.clone();
            damaged[JOURNAL_HEADER_LEN..JOURNAL_HEADER_LEN + 4]
                .copy_from_slice(&value.to_le_bytes());
            let error = decode_journal(&damaged).unwrap_err();
            assert_eq!(error.position, JOURNAL_HEADER_LEN as u64, "{what}");
        }
    }

    #[test]
    fn a_bad_header_is_corruption() {
        let bytes = file(&[&[(1, 0, frame(0, b"a"))]]);
        for at in [0, 9, 13, 21, 29] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(decode_journal(&damaged).is_err(), "byte {at} of the header");
        }
        assert!(decode_journal(&bytes[..JOURNAL_HEADER_LEN - 1]).is_err());
        assert_eq!(
            decode_journal(&bytes[..JOURNAL_HEADER_LEN])
                .unwrap()
                .blocks
                .len(),
            0
        );
    }

    #[test]
    fn a_block_whose_crc_matches_but_whose_entries_do_not_fit_is_corruption() {
        let mut block = BlockBuilder::new();
        block.push(1, 0, &frame(0, b"a"));
        let mut bytes = block.finish(0, JOURNAL_HEADER_LEN as u64).to_vec();
        // Claim two entries and fix the CRC: the second runs past the block.
        bytes[24..28].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut file = encode_header(0).to_vec();
        file.extend_from_slice(&bytes);
        let error = decode_journal(&file).unwrap_err();
        assert!(error.reason.contains("runs past its block"), "{error}");
    }
}
