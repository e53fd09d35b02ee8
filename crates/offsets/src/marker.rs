//! The store marker: how opening tells a new store from one whose sled data is gone.
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

/// sled tree holding the marker.
pub const META_TREE_NAME: &str = "weir-offsets/meta";
/// Key of the marker in [`META_TREE_NAME`].
pub const MARKER_KEY: &[u8] = b"store";
/// The marker value: names the format of the whole store (tree names, key and value layouts).
pub const MARKER_VALUE: &[u8] = b"weir-offsets format 2";
/// The marker of format 1 (one value per partition, tree `weir-offsets/v1`): such a store is
/// migrated to format 2 when it opens, and its marker rewritten in the same transaction. An
/// earlier build refuses the rewritten marker instead of reading an empty tree.
pub const MARKER_VALUE_V1: &[u8] = b"weir-offsets format 1";
/// The marker file, in the database directory.
pub const MARKER_FILE_NAME: &str = "weir-offsets.marker";

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
        (_, Some(value)) if value != MARKER_VALUE && value != MARKER_VALUE_V1 => {
            Decision::UnknownMarker
        }
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
        assert_eq!(
            decide(true, Some(b"weir-offsets format 3")),
            Decision::UnknownMarker
        );
        assert_eq!(decide(false, Some(b"")), Decision::UnknownMarker);
    }

    #[test]
    fn golden_marker() {
        assert_eq!(MARKER_VALUE, b"weir-offsets format 2");
        assert_eq!(MARKER_VALUE_V1, b"weir-offsets format 1");
        assert_eq!(META_TREE_NAME, "weir-offsets/meta");
        assert_eq!(MARKER_KEY, b"store");
        assert_eq!(MARKER_FILE_NAME, "weir-offsets.marker");
    }
}
