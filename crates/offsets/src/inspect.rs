//! Looking at an offsets store without changing it ([`inspect`], for `weir verify`), and
//! accepting what is there ([`repair_witness`], for `weir repair`).
//!
//! Invariants: [`inspect`] writes nothing in the store's directory or the witness: it opens a
//! *copy* of the directory (sled writes even when it only opens), and decides with the same
//! function and the same inputs as [`OffsetStore::open`] — what the directory held before any
//! change (`OpenReport::found`) and what the witness file holds — so that verify and open
//! cannot disagree.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{copy_directory, read_witness};
use crate::store::{open_with, store_before_sled, CorruptValue, GroupDescription, Mode};
use crate::witness::{self, StoreFound, Verdict, Witness, WitnessFound};
use crate::OffsetStore;

/// What [`inspect`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// The store's directory.
    pub directory: PathBuf,
    /// What the directory held, before any change an open would make: no store, or a store
    /// with its id, commit sequence and number of corrupt values. `None` if sled or the store
    /// marker failed before that could be seen (see `open_error`).
    pub found: Option<StoreFound>,
    /// What the witness file holds; `None` without [`Config::witness_path`].
    pub witness: Option<WitnessFound>,
    /// What the witness decision says about `found` — the decision [`OffsetStore::open`]
    /// makes; `None` without a witness path, or when `found` is `None`.
    pub verdict: Option<Verdict>,
    /// Why [`OffsetStore::open`] would fail, if it would.
    pub open_error: Option<Error>,
    /// The store id, if the store opened (a store missing from the directory opens as a new
    /// one when there is no witness; its id is then not the one an open would draw).
    pub store_id: Option<u64>,
    /// The highest commit sequence the store holds, if it opened.
    pub commit_seq: Option<u64>,
    /// The format an open would migrate from (1 or 2), if any.
    pub migrates_from: Option<u8>,
    /// Every group with a readable committed offset, with those offsets, in order (values
    /// that fail their checks are left out of them, and listed in `corrupt`).
    pub groups: Vec<GroupDescription>,
    /// The stored values that fail their checks, by key.
    pub corrupt: Vec<CorruptValue>,
}

impl Inspection {
    /// Whether [`OffsetStore::open`] would open the store (a missing store with no witness
    /// opens: empty).
    pub fn opens(&self) -> bool {
        self.open_error.is_none()
    }
}

/// Inspects the store `config` names without writing to its directory or its witness: what
/// the directory holds, whether it would open and why not, the groups and their offsets, the
/// corrupt values, and the store's commit sequence against the witness with the verdict of
/// the decision [`OffsetStore::open`] makes ([`crate::witness_decision`]). It copies the
/// directory to a temporary directory (removed afterwards) and opens the copy.
///
/// Inspect a store no process has open: a copy taken while a process writes may catch sled's
/// log half-written, and look damaged or behind its witness.
///
/// # Errors
///
/// [`Error::InvalidConfig`] for a bad field; [`Error::Io`] if the witness cannot be read, or
/// the copy made. Everything about the store itself is reported in the [`Inspection`].
pub fn inspect(config: &Config) -> Result<Inspection> {
    config.validate()?;
    let witness = match &config.witness_path {
        Some(path) => Some(read_witness(path)?),
        None => None,
    };
    let mut inspection = Inspection {
        directory: config.directory.clone(),
        found: None,
        witness,
        verdict: None,
        open_error: None,
        store_id: None,
        commit_seq: None,
        migrates_from: None,
        groups: Vec::new(),
        corrupt: Vec::new(),
    };
    if let Some(missing) = store_before_sled(&config.directory)? {
        inspection.decide(config, missing);
        if !inspection.opens() || !config.directory.exists() {
            return Ok(inspection);
        }
    }
    let scratch = Scratch::new()?;
    let copy = scratch.path.join("offsets");
    copy_directory(&config.directory, &copy)?;
    let copy_config = Config {
        directory: copy,
        cache_capacity_bytes: config.cache_capacity_bytes,
        witness_path: None,
    };
    let store = match open_with(&copy_config, Mode::Open) {
        Ok(store) => store,
        Err(error) => {
            inspection.open_error = Some(renamed(error, &copy_config.directory, config));
            return Ok(inspection);
        }
    };
    let report = store.open_report().clone();
    if inspection.found.is_none() {
        inspection.decide(config, report.found);
    }
    inspection.store_id = Some(report.store_id);
    inspection.commit_seq = Some(report.commit_seq);
    inspection.migrates_from = report.migrated_from;
    inspection.corrupt = report.corrupt;
    match store.readable_groups() {
        Ok(groups) => inspection.groups = groups,
        Err(error) => {
            let error = renamed(error, &copy_config.directory, config);
            inspection.open_error.get_or_insert(error);
        }
    }
    drop(store);
    drop(scratch);
    Ok(inspection)
}

impl Inspection {
    /// Records what the directory held and the witness decision about it.
    fn decide(&mut self, config: &Config, found: StoreFound) {
        self.found = Some(found);
        let (Some(witness), Some(witness_path)) = (&self.witness, &config.witness_path) else {
            return;
        };
        let verdict = witness::decide(witness, &found);
        if let Verdict::Refuse(refusal) = &verdict {
            self.open_error = Some(Error::Witness {
                directory: config.directory.clone(),
                witness_path: witness_path.clone(),
                refusal: refusal.clone(),
            });
        }
        self.verdict = Some(verdict);
    }
}

/// An error from opening the copy, naming the original directory instead of the copy.
fn renamed(error: Error, copy: &Path, config: &Config) -> Error {
    let original = |path: PathBuf| match path.strip_prefix(copy) {
        Ok(rest) => config.directory.join(rest),
        Err(_) => path,
    };
    match error {
        Error::Open { directory, source } => Error::Open {
            directory: original(directory),
            source,
        },
        Error::Damaged { directory, problem } => Error::Damaged {
            directory: original(directory),
            problem,
        },
        Error::Storage {
            operation,
            directory,
            source,
        } => Error::Storage {
            operation,
            directory: original(directory),
            source,
        },
        Error::Io {
            operation,
            path,
            source,
        } => Error::Io {
            operation,
            path: original(path),
            source,
        },
        Error::Corrupt {
            directory,
            key,
            source,
        } => Error::Corrupt {
            directory: original(directory),
            key,
            source,
        },
        other => other,
    }
}

/// A temporary directory of this process, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "weir-offsets-inspect-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if path.exists() {
            // Left by a process of the same id that died while inspecting.
            std::fs::remove_dir_all(&path).map_err(|source| Error::Io {
                operation: "remove a stale inspection directory",
                path: path.clone(),
                source,
            })?;
        }
        std::fs::create_dir(&path).map_err(|source| Error::Io {
            operation: "create a temporary directory",
            path: path.clone(),
            source,
        })?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "could not remove the offsets inspection's temporary copy"
            );
        }
    }
}

/// What [`repair_witness`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WitnessRepair {
    /// What the witness file held before.
    pub before: WitnessFound,
    /// What it holds now: the store as it is.
    pub after: Witness,
    /// Whether the directory held no store, so an empty one was created (every group restarts
    /// from the log start).
    pub store_created: bool,
    /// The store's values that fail their checks (left as they are).
    pub corrupt: Vec<CorruptValue>,
}

/// Accepts the offsets store as it is and writes its witness again: the operator's answer to
/// [`Error::Witness`] once nothing better (putting the right directory back, a backup) is at
/// hand. A missing store is created empty; a store whose id or sequence floor is damaged gets
/// them written again; whatever commits were lost stay lost — the groups concerned re-read
/// from older offsets, or from the log start, so events are delivered again, never skipped.
///
/// It opens the store (so nothing else may have it open) and closes it again.
///
/// # Errors
///
/// [`Error::InvalidConfig`] if [`Config::witness_path`] is not set, or another field is bad;
/// the errors of [`OffsetStore::open`] other than [`Error::Witness`] (a store sled cannot open,
/// or whose marker shows its data is gone, must be moved aside first).
pub fn repair_witness(config: &Config) -> Result<WitnessRepair> {
    config.validate()?;
    let Some(witness_path) = &config.witness_path else {
        return Err(Error::InvalidConfig {
            field: "witness_path",
            reason: "is not set: there is no witness to repair".to_string(),
        });
    };
    let before = read_witness(witness_path)?;
    let store_created = store_before_sled(&config.directory)?.is_some();
    let store: OffsetStore = open_with(config, Mode::Repair)?;
    let after = Witness {
        store_id: store.store_id(),
        commit_seq: store.commit_seq(),
    };
    let corrupt = store.open_report().corrupt.clone();
    store.close()?;
    tracing::warn!(
        directory = %config.directory.display(),
        witness = %witness_path.display(),
        ?before,
        ?after,
        store_created,
        "accepted the offsets store as it is and rewrote its witness"
    );
    Ok(WitnessRepair {
        before,
        after,
        store_created,
        corrupt,
    })
}
