//! The offsets witness (pure): a small file kept *outside* sled's directory that records which
//! store was there and how far it had committed, its byte layout, and the decision opening
//! makes from it and from what the directory holds.
//!
//! Why: sled 0.34 checks its own log's checksums and, at the first bad one, treats the rest of
//! its log as a torn tail and drops it without an error, so a damaged store opens with *older*
//! offsets — a group would re-read what it acknowledged, silently. And a deleted offsets
//! directory would open as a new, empty store. The store cannot see either from the inside;
//! the witness can: it names the store's id and the commit sequence (see `store`) that was
//! durable when it was written, and a store that holds less, or another id, or nothing, is
//! refused.
//!
//! Layout (integers little-endian; see `docs/format.md`, "Offsets store"):
//!
//! | at | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic, ASCII `weirOWIT` |
//! | 8 | 4 | format version, `u32`, `1` |
//! | 12 | 8 | store id, `u64`, nonzero |
//! | 20 | 8 | commit sequence, `u64`: durable in the store when the witness was written |
//! | 28 | 4 | CRC-32 (`crc32fast`) of bytes 0..28 |
//!
//! Invariants: a witness is written only with a commit sequence the store had already made
//! durable, so an intact store always holds at least what its witness says; [`decide`] is the
//! one place that compares them, for opening and for inspection alike.

use std::fmt;

/// The first 8 bytes of a witness file.
pub const MAGIC: [u8; 8] = *b"weirOWIT";
/// The witness format this build writes and reads.
pub const VERSION: u32 = 1;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + MAGIC.len();
const STORE_ID_AT: usize = VERSION_AT + 4;
const COMMIT_SEQ_AT: usize = STORE_ID_AT + 8;
const CRC_AT: usize = COMMIT_SEQ_AT + 8;
/// The length of a witness file.
pub const WITNESS_BYTES: usize = CRC_AT + 4;
const _: () = assert!(WITNESS_BYTES == 32);

/// What a witness says: which store, and how far it had committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Witness {
    /// The store's id (see [`crate::OffsetStore::store_id`]).
    pub store_id: u64,
    /// A commit sequence the store had made durable (see [`crate::OffsetStore::commit_seq`]).
    pub commit_seq: u64,
}

/// Why a witness file's bytes are not a witness.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessProblem {
    /// The file is not 32 bytes long.
    #[error("it is {bytes} bytes long, not {WITNESS_BYTES}")]
    Length {
        /// The file's length (at most 33 are read).
        bytes: usize,
    },
    /// The first 8 bytes are not the magic.
    #[error("it does not start with the witness magic \"weirOWIT\"")]
    Magic,
    /// The format version is not one this build reads.
    #[error(
        "its format version is {version}, this build reads {VERSION} (written by a newer build?)"
    )]
    Version {
        /// The version found.
        version: u32,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC stored in the file.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The store id is 0, which no store has.
    #[error("it names store id 0")]
    ZeroStoreId,
}

/// Encodes a witness.
pub fn encode(witness: &Witness) -> [u8; WITNESS_BYTES] {
    assert!(witness.store_id != 0, "a store id is never 0");
    let mut bytes = [0; WITNESS_BYTES];
    bytes[MAGIC_AT..VERSION_AT].copy_from_slice(&MAGIC);
    bytes[VERSION_AT..STORE_ID_AT].copy_from_slice(&VERSION.to_le_bytes());
    bytes[STORE_ID_AT..COMMIT_SEQ_AT].copy_from_slice(&witness.store_id.to_le_bytes());
    bytes[COMMIT_SEQ_AT..CRC_AT].copy_from_slice(&witness.commit_seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..CRC_AT]);
    bytes[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(decode(&bytes), Ok(*witness));
    bytes
}

/// Decodes a witness file's bytes. Checks, in order: the length, the magic, the version (it
/// decides the layout), the CRC (before any field is trusted), the store id.
///
/// # Errors
///
/// A [`WitnessProblem`] saying which check failed.
pub fn decode(bytes: &[u8]) -> Result<Witness, WitnessProblem> {
    let Ok(bytes) = <&[u8; WITNESS_BYTES]>::try_from(bytes) else {
        return Err(WitnessProblem::Length { bytes: bytes.len() });
    };
    if bytes[MAGIC_AT..VERSION_AT] != MAGIC {
        return Err(WitnessProblem::Magic);
    }
    let version = u32::from_le_bytes(array(bytes, VERSION_AT));
    if version != VERSION {
        return Err(WitnessProblem::Version { version });
    }
    let stored = u32::from_le_bytes(array(bytes, CRC_AT));
    let computed = crc32fast::hash(&bytes[..CRC_AT]);
    if stored != computed {
        return Err(WitnessProblem::Checksum { stored, computed });
    }
    let store_id = u64::from_le_bytes(array(bytes, STORE_ID_AT));
    if store_id == 0 {
        return Err(WitnessProblem::ZeroStoreId);
    }
    Ok(Witness {
        store_id,
        commit_seq: u64::from_le_bytes(array(bytes, COMMIT_SEQ_AT)),
    })
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// What the witness file held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessFound {
    /// There is no witness file.
    Absent,
    /// An intact witness.
    Valid(Witness),
    /// A file that fails the witness checks.
    Invalid(WitnessProblem),
}

/// What the offsets directory held, as far as the witness is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFound {
    /// No store: the directory is missing, or holds no store marker file.
    Missing,
    /// A store.
    Present {
        /// Its id; `None` for a store of an older format (written by an older build).
        store_id: Option<u64>,
        /// The highest commit sequence it holds.
        commit_seq: u64,
        /// How many of its values fail their checks (their sequence numbers are unknown).
        corrupt_values: usize,
    },
}

/// What opening does, given the witness and the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// There is no witness: open, and write one (a first open, or a store from before
    /// witnesses).
    CreateWitness,
    /// The witness names this store and at most the commit sequence it holds: open.
    Agree,
    /// Refuse to open, and change nothing.
    Refuse(Refusal),
}

/// Why opening refuses a store its witness does not vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The witness names a store, but the directory holds none (deleted, or emptied).
    StoreMissing {
        /// What the witness says.
        witnessed: Witness,
    },
    /// The directory holds another store than the witness names.
    Recreated {
        /// What the witness says.
        witnessed: Witness,
        /// The id of the store found (`None`: an older build's store, which has none).
        store_id: Option<u64>,
    },
    /// The store holds fewer commits than were durable: sled lost a tail of its log.
    RolledBack {
        /// What the witness says.
        witnessed: Witness,
        /// The highest commit sequence the store holds.
        commit_seq: u64,
        /// Values that fail their checks, whose sequence numbers are unknown.
        corrupt_values: usize,
    },
    /// The witness file fails its own checks.
    WitnessInvalid {
        /// What is wrong with it.
        problem: WitnessProblem,
    },
}

impl Refusal {
    /// What an operator does about it.
    pub fn recovery(&self) -> &'static str {
        match self {
            Refusal::StoreMissing { .. } => {
                "if the offsets directory was moved, put it back; to accept the loss, run `weir \
                 repair` (it rewrites the witness): the offsets store starts empty and every group \
                 restarts from the log start, so events are delivered again, never skipped"
            }
            Refusal::Recreated { .. } => {
                "put back the offsets directory the witness belongs to, or accept the loss with \
                 `weir repair` (it rewrites the witness): groups restart from the offsets this \
                 store holds, or from the log start, so events are delivered again, never skipped"
            }
            Refusal::RolledBack { .. } => {
                "restore the offsets directory from a backup, or accept the loss with `weir \
                 repair` (it rewrites the witness): groups whose commits were lost re-read from \
                 their older offsets, so events are delivered again, never skipped"
            }
            Refusal::WitnessInvalid { .. } => {
                "run `weir repair` to write the witness again from the store as it is (what the \
                 old witness said is then not checked)"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::StoreMissing { witnessed } => write!(
                f,
                "the offsets store is missing: the witness says store {:#018x} had made commit {} \
                 durable, but the directory holds no store",
                witnessed.store_id, witnessed.commit_seq
            ),
            Refusal::Recreated {
                witnessed,
                store_id: Some(store_id),
            } => write!(
                f,
                "the offsets store was re-created: the directory holds store {store_id:#018x}, \
                 but the witness names store {:#018x}, which had made commit {} durable",
                witnessed.store_id, witnessed.commit_seq
            ),
            Refusal::Recreated {
                witnessed,
                store_id: None,
            } => write!(
                f,
                "the offsets store was re-created (by an older build: it has no store id), but \
                 the witness names store {:#018x}, which had made commit {} durable",
                witnessed.store_id, witnessed.commit_seq
            ),
            Refusal::RolledBack {
                witnessed,
                commit_seq,
                corrupt_values,
            } => {
                write!(
                    f,
                    "sled lost committed offsets: it holds commits up to {commit_seq} but commit \
                     {} was durable",
                    witnessed.commit_seq
                )?;
                if *corrupt_values > 0 {
                    write!(
                        f,
                        " ({corrupt_values} stored value(s) are corrupt and may have held the \
                         later commits)"
                    )?;
                }
                Ok(())
            }
            Refusal::WitnessInvalid { problem } => {
                write!(f, "the witness file is damaged: {problem}")
            }
        }
    }
}

/// Decides whether a store may open, given its witness (pure). A witness that fails its checks
/// refuses whatever the store; no witness lets any store open (and have one written); an
/// intact witness requires a store with its id holding at least its commit sequence.
pub fn decide(witness: &WitnessFound, store: &StoreFound) -> Verdict {
    let witnessed = match witness {
        WitnessFound::Invalid(problem) => {
            return Verdict::Refuse(Refusal::WitnessInvalid {
                problem: problem.clone(),
            })
        }
        WitnessFound::Absent => return Verdict::CreateWitness,
        WitnessFound::Valid(witnessed) => *witnessed,
    };
    match *store {
        StoreFound::Missing => Verdict::Refuse(Refusal::StoreMissing { witnessed }),
        StoreFound::Present { store_id, .. } if store_id != Some(witnessed.store_id) => {
            Verdict::Refuse(Refusal::Recreated {
                witnessed,
                store_id,
            })
        }
        StoreFound::Present {
            commit_seq,
            corrupt_values,
            ..
        } if commit_seq < witnessed.commit_seq => Verdict::Refuse(Refusal::RolledBack {
            witnessed,
            commit_seq,
            corrupt_values,
        }),
        StoreFound::Present { .. } => Verdict::Agree,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const WITNESSED: Witness = Witness {
        store_id: 0x0123_4567_89ab_cdef,
        commit_seq: 10,
    };

    /// Computed apart from this code (Python's `zlib.crc32` of bytes 0..28).
    const GOLDEN: [u8; WITNESS_BYTES] = [
        b'w', b'e', b'i', b'r', b'O', b'W', b'I', b'T', // magic
        0x01, 0x00, 0x00, 0x00, // version 1
        0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, // store id
        0x0a, 0, 0, 0, 0, 0, 0, 0, // commit sequence 10
        0x0e, 0xbe, 0xae, 0x98, // CRC-32 of bytes 0..28
    ];

    #[test]
    fn golden_bytes() {
        assert_eq!(encode(&WITNESSED), GOLDEN);
        assert_eq!(decode(&GOLDEN), Ok(WITNESSED));
    }

    /// The bytes of the example after `anchor` in `docs/format.md`'s offsets section.
    pub(crate) fn spec_example(anchor: &str) -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/format.md");
        let spec = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let section = spec
            .split("## Offsets store (weir-offsets)")
            .nth(1)
            .unwrap_or_else(|| panic!("no offsets section"));
        let start = section
            .find(anchor)
            .unwrap_or_else(|| panic!("no example after {anchor:?}"))
            + anchor.len();
        section[start..]
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("no bytes after {anchor:?}"))
            .split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).unwrap_or_else(|e| panic!("{byte}: {e}")))
            .collect()
    }

    #[test]
    fn the_example_in_docs_format_md_is_these_bytes() {
        assert_eq!(spec_example("commit sequence 10 →"), GOLDEN);
    }

    #[test]
    fn each_check_has_its_own_problem() {
        assert_eq!(decode(&[]), Err(WitnessProblem::Length { bytes: 0 }));
        assert_eq!(
            decode(&GOLDEN[..31]),
            Err(WitnessProblem::Length { bytes: 31 })
        );
        let mut longer = GOLDEN.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), Err(WitnessProblem::Length { bytes: 33 }));
        let mut magic = GOLDEN;
        magic[0] = b'W';
        assert_eq!(decode(&magic), Err(WitnessProblem::Magic));
        let mut version = GOLDEN;
        version[VERSION_AT] = 2;
        assert_eq!(
            decode(&version),
            Err(WitnessProblem::Version { version: 2 })
        );
        let mut flipped = GOLDEN;
        flipped[COMMIT_SEQ_AT] ^= 0x01;
        assert!(matches!(
            decode(&flipped),
            Err(WitnessProblem::Checksum { .. })
        ));
        let mut zero = GOLDEN;
        zero[STORE_ID_AT..COMMIT_SEQ_AT].fill(0);
        let crc = crc32fast::hash(&zero[..CRC_AT]);
        zero[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&zero), Err(WitnessProblem::ZeroStoreId));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        for byte in 0..WITNESS_BYTES {
            for bit in 0..8 {
                let mut damaged = GOLDEN;
                damaged[byte] ^= 1 << bit;
                assert!(decode(&damaged).is_err(), "bit {bit} of byte {byte}");
            }
        }
    }

    fn present(store_id: Option<u64>, commit_seq: u64, corrupt_values: usize) -> StoreFound {
        StoreFound::Present {
            store_id,
            commit_seq,
            corrupt_values,
        }
    }

    #[test]
    fn the_decision_table() {
        let valid = WitnessFound::Valid(WITNESSED);
        let id = Some(WITNESSED.store_id);
        let invalid = WitnessFound::Invalid(WitnessProblem::Magic);
        let rows: [(&WitnessFound, StoreFound, Verdict); 12] = [
            // No witness: a first open, or a store from before witnesses.
            (
                &WitnessFound::Absent,
                StoreFound::Missing,
                Verdict::CreateWitness,
            ),
            (
                &WitnessFound::Absent,
                present(None, 0, 0),
                Verdict::CreateWitness,
            ),
            (
                &WitnessFound::Absent,
                present(Some(7), 3, 1),
                Verdict::CreateWitness,
            ),
            // The witness's store, holding at least what it says.
            (&valid, present(id, 10, 0), Verdict::Agree),
            (&valid, present(id, 11, 0), Verdict::Agree),
            (&valid, present(id, 10, 2), Verdict::Agree),
            // Refusals.
            (
                &valid,
                StoreFound::Missing,
                Verdict::Refuse(Refusal::StoreMissing {
                    witnessed: WITNESSED,
                }),
            ),
            (
                &valid,
                present(Some(7), 10, 0),
                Verdict::Refuse(Refusal::Recreated {
                    witnessed: WITNESSED,
                    store_id: Some(7),
                }),
            ),
            (
                &valid,
                present(None, 10, 0),
                Verdict::Refuse(Refusal::Recreated {
                    witnessed: WITNESSED,
                    store_id: None,
                }),
            ),
            (
                &valid,
                present(id, 9, 0),
                Verdict::Refuse(Refusal::RolledBack {
                    witnessed: WITNESSED,
                    commit_seq: 9,
                    corrupt_values: 0,
                }),
            ),
            (
                &valid,
                present(id, 0, 3),
                Verdict::Refuse(Refusal::RolledBack {
                    witnessed: WITNESSED,
                    commit_seq: 0,
                    corrupt_values: 3,
                }),
            ),
            (
                &invalid,
                present(id, 10, 0),
                Verdict::Refuse(Refusal::WitnessInvalid {
                    problem: WitnessProblem::Magic,
                }),
            ),
        ];
        for (witness, store, verdict) in rows {
            assert_eq!(decide(witness, &store), verdict, "{witness:?} {store:?}");
        }
        // A damaged witness refuses even where the store is missing.
        assert!(matches!(
            decide(&invalid, &StoreFound::Missing),
            Verdict::Refuse(Refusal::WitnessInvalid { .. })
        ));
    }

    #[test]
    fn refusals_say_what_was_lost() {
        let rolled_back = Refusal::RolledBack {
            witnessed: WITNESSED,
            commit_seq: 7,
            corrupt_values: 0,
        };
        assert_eq!(
            rolled_back.to_string(),
            "sled lost committed offsets: it holds commits up to 7 but commit 10 was durable"
        );
        let missing = Refusal::StoreMissing {
            witnessed: WITNESSED,
        }
        .to_string();
        assert!(
            missing.contains("missing") && missing.contains("0x0123456789abcdef"),
            "{missing}"
        );
        assert!(missing.contains("commit 10"), "{missing}");
        let recreated = Refusal::Recreated {
            witnessed: WITNESSED,
            store_id: Some(7),
        }
        .to_string();
        assert!(recreated.contains("re-created"), "{recreated}");
        for refusal in [
            rolled_back,
            Refusal::WitnessInvalid {
                problem: WitnessProblem::Magic,
            },
        ] {
            assert!(refusal.recovery().contains("weir repair"));
        }
    }
}
