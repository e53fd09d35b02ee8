//! How an offsets store is opened: the directory, sled's cache and the witness file. Checked
//! at open, where a bad field is an [`Error::InvalidConfig`] naming it.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Default for [`Config::cache_capacity_bytes`]: 16 MiB, plenty for offsets (a few hundred
/// bytes per partition) and much less than sled's own default of 1 GiB.
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// Smallest accepted [`Config::cache_capacity_bytes`].
pub const CACHE_CAPACITY_BYTES_MIN: u64 = 1024 * 1024;

/// Settings for [`crate::OffsetStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory that holds the sled database; created if missing. It holds nothing else
    /// and belongs to one process at a time (sled locks it).
    pub directory: PathBuf,
    /// sled's page-cache capacity, in bytes. Default [`CACHE_CAPACITY_BYTES_DEFAULT`]; at least
    /// [`CACHE_CAPACITY_BYTES_MIN`].
    pub cache_capacity_bytes: u64,
    /// The witness file: a record, kept outside `directory`, of which store was there and how
    /// far it had committed (see [`crate::OffsetStore::seal`]). With it, opening refuses a
    /// store that lost commits, was re-created or is missing, instead of opening older or
    /// empty offsets silently. Default `None` (no witness). It must not be inside `directory`
    /// (it has to survive that directory's loss); weir-store keeps it beside it.
    pub witness_path: Option<PathBuf>,
}

impl Config {
    /// The defaults, with the database in `directory`.
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        Config {
            directory: directory.into(),
            cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
            witness_path: None,
        }
    }

    /// The same config, with the witness file at `witness_path`.
    #[must_use]
    pub fn with_witness_path(self, witness_path: impl Into<PathBuf>) -> Self {
        Config {
            witness_path: Some(witness_path.into()),
            ..self
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first bad field and why.
    pub fn validate(&self) -> Result<()> {
        if self.directory.as_os_str().is_empty() {
            return Err(Error::InvalidConfig {
                field: "directory",
                reason: "is empty; name the directory for the offsets database".to_string(),
            });
        }
        if self.cache_capacity_bytes < CACHE_CAPACITY_BYTES_MIN {
            return Err(Error::InvalidConfig {
                field: "cache_capacity_bytes",
                reason: format!(
                    "is {}, the minimum is {CACHE_CAPACITY_BYTES_MIN}",
                    self.cache_capacity_bytes
                ),
            });
        }
        if let Some(witness) = &self.witness_path {
            if witness.file_name().is_none() {
                return Err(Error::InvalidConfig {
                    field: "witness_path",
                    reason: format!("is {}, which names no file", witness.display()),
                });
            }
            if witness.starts_with(&self.directory) {
                return Err(Error::InvalidConfig {
                    field: "witness_path",
                    reason: format!(
                        "is {}, inside the offsets directory {}; the witness must survive that \
                         directory's loss, so keep it outside (e.g. beside it)",
                        witness.display(),
                        self.directory.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert!(Config::new("offsets").validate().is_ok());
        let empty = Config::new("").validate();
        assert!(matches!(
            empty,
            Err(Error::InvalidConfig {
                field: "directory",
                ..
            })
        ));
        let small = Config {
            cache_capacity_bytes: 10,
            ..Config::new("d")
        }
        .validate();
        assert!(matches!(
            small,
            Err(Error::InvalidConfig {
                field: "cache_capacity_bytes",
                ..
            })
        ));
        let message = small.map_err(|e| e.to_string()).unwrap_err();
        assert!(
            message.contains("cache_capacity_bytes") && message.contains("is 10"),
            "{message}"
        );
        assert!(Config::new("data/offsets")
            .with_witness_path("data/offsets.witness")
            .validate()
            .is_ok());
        for witness in ["data/offsets/witness", "data/offsets", "/"] {
            let inside = Config::new("data/offsets")
                .with_witness_path(witness)
                .validate();
            assert!(
                matches!(
                    inside,
                    Err(Error::InvalidConfig {
                        field: "witness_path",
                        ..
                    })
                ),
                "{witness}: {inside:?}"
            );
        }
    }
}
