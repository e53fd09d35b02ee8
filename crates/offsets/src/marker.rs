//! The store marker: how opening tells a new store from one whose sled data is gone, and which
//! format a store is in.
//!
//! sled 0.34 opens some damaged directories without an error — a log file overwritten with
//! garbage or truncated opens as an empty database — which would silently lose every committed
//! offset. So a store records that it exists twice: a marker value inside sled (tree
//! [`META_TREE_NAME`], key [`MARKER_KEY`], value [`MARKER_VALUE`]) and, once that is durable,
//! an empty marker file [`MARKER_FILE_NAME`] beside sled's files. On open, a marker file
//! without the sled marker means the sled data was lost: opening fails.
//!
//! The order of creation (sled marker, sync, file, sync directory) makes a crash during the
//! first open harmless: a sled marker without the file is a store whose creation was cut short,
//! and the file is created again.
//!
//! The marker names the format of the whole store: a store of an earlier format
//! ([`MARKER_VALUE_V1`], [`MARKER_VALUE_V2`]) is migrated when it opens and its marker
//! rewritten in the same transaction, so that an earlier build refuses the store instead of
//! misreading it.

/// sled tree holding the marker (and the numbers of `meta`).
pub const META_TREE_NAME: &str = "weir-offsets/meta";
/// Key of the marker in [`META_TREE_NAME`].
pub const MARKER_KEY: &[u8] = b"store";
/// The marker value of the format this build writes: names the format of the whole store (tree
/// names, key and value layouts, the meta tree's keys).
pub const MARKER_VALUE: &[u8] = b"weir-offsets format 3";
/// The marker of format 2 (values of version 2: no commit sequence, no store id).
pub const MARKER_VALUE_V2: &[u8] = b"weir-offsets format 2";
/// The marker of format 1 (one value per partition, tree `weir-offsets/v1`).
pub const MARKER_VALUE_V1: &[u8] = b"weir-offsets format 1";
/// The marker file, in the database directory.
pub const MARKER_FILE_NAME: &str = "weir-offsets.marker";

/// A store format this build reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// One value per partition in `weir-offsets/v1`; migrated on open.
    V1,
    /// Blocks of version 2 in `weir-offsets/v2`; migrated on open.
    V2,
    /// Blocks of version 3, a store id and a commit sequence floor: what this build writes.
    V3,
}

impl Format {
    /// The format a marker value names, if this build reads it.
    pub fn of(marker: &[u8]) -> Option<Format> {
        match marker {
            MARKER_VALUE => Some(Format::V3),
            MARKER_VALUE_V2 => Some(Format::V2),
            MARKER_VALUE_V1 => Some(Format::V1),
            _ => None,
        }
    }

    /// The format's number, as the marker spells it.
    pub fn number(self) -> u8 {
        match self {
            Format::V1 => 1,
            Format::V2 => 2,
            Format::V3 => 3,
        }
    }
}

/// What opening does, given whether the marker file exists and what the sled marker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A known store: open it.
    Open,
    /// A new store, or one whose creation was cut short: write what is missing.
    Create {
        /// Whether the sled marker must be written (it is absent).
        write_sled_marker: bool,
    },
    /// The marker file exists but the sled marker does not: sled's data is gone.
    DataLost,
    /// The sled marker holds something else: damaged, or a format this build does not read.
    UnknownMarker,
}

/// Decides how to open (pure).
pub fn decide(file_exists: bool, sled_marker: Option<&[u8]>) -> Decision {
    match (file_exists, sled_marker) {
        (_, Some(value)) if Format::of(value).is_none() => Decision::UnknownMarker,
        (true, Some(_)) => Decision::Open,
        (true, None) => Decision::DataLost,
        (false, Some(_)) => Decision::Create {
            write_sled_marker: false,
        },
        (false, None) => Decision::Create {
            write_sled_marker: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(
            decide(false, None),
            Decision::Create {
                write_sled_marker: true
            }
        );
        assert_eq!(
            decide(false, Some(MARKER_VALUE)),
            Decision::Create {
                write_sled_marker: false
            }
        );
        assert_eq!(decide(true, Some(MARKER_VALUE)), Decision::Open);
        assert_eq!(decide(true, None), Decision::DataLost);
        assert_eq!(decide(true, Some(MARKER_VALUE_V1)), Decision::Open);
        assert_eq!(decide(true, Some(MARKER_VALUE_V2)), Decision::Open);
        assert_eq!(
            decide(false, Some(MARKER_VALUE_V2)),
            Decision::Create {
                write_sled_marker: false
            }
        );
        assert_eq!(
            decide(true, Some(b"weir-offsets format 4")),
            Decision::UnknownMarker
        );
        assert_eq!(decide(false, Some(b"")), Decision::UnknownMarker);
    }

    #[test]
    fn formats() {
        assert_eq!(Format::of(MARKER_VALUE), Some(Format::V3));
        assert_eq!(Format::of(MARKER_VALUE_V2), Some(Format::V2));
        assert_eq!(Format::of(MARKER_VALUE_V1), Some(Format::V1));
        assert_eq!(Format::of(b"weir-offsets format 3 "), None);
        assert_eq!(
            [Format::V1, Format::V2, Format::V3].map(Format::number),
            [1, 2, 3]
        );
    }

    #[test]
    fn golden_marker() {
        assert_eq!(MARKER_VALUE, b"weir-offsets format 3");
        assert_eq!(MARKER_VALUE_V2, b"weir-offsets format 2");
        assert_eq!(MARKER_VALUE_V1, b"weir-offsets format 1");
        assert_eq!(META_TREE_NAME, "weir-offsets/meta");
        assert_eq!(MARKER_KEY, b"store");
        assert_eq!(MARKER_FILE_NAME, "weir-offsets.marker");
    }
}
