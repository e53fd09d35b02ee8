//! Opening a store: the directory, the lock, sled, the store marker (see `marker`), the
//! migration of older formats, and the scan that finds the store's commit sequence and checks
//! every stored value.
//!
//! Opening first *examines* (reads only): the marker decision, the format, the store id and
//! sequence floor, and every value of the offsets tree; with a witness file (see `witness`)
//! it decides whether the witness vouches for the store — before creating anything when the
//! directory holds no store, and before any write otherwise. Only once nothing calls for a
//! refusal does it *settle* the store (writes: creating the marker, migrating an older
//! format), sync, so that the commit sequence it starts from is durable, and write the witness
//! if there was none (or the store holds more than it says). A refused open writes nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{OffsetStore, Sealer, Synced, NEXT_INSTANCE, SLED_LOG_FILE, TREE_NAME, TREE_NAME_V1};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::error::{DecodeError, Error, Result};
use crate::files::{
    lock_directory, open_sled, read_witness, remove_interrupted_snapshots, sync_directory,
    write_witness,
};
use crate::keys;
use crate::marker::{self, Decision, Format};
use crate::meta;
use crate::record::{self, Block};
use crate::witness::{self, StoreFound, Verdict, Witness, WitnessFound};

/// How [`open_with`] treats the witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse a store the witness does not vouch for; write a witness if there is none.
    Open,
    /// Accept the store as it is — an empty one if it is missing, with its store id and
    /// sequence floor written again if they are damaged — and write the witness for it.
    Repair,
}

/// What [`OffsetStore::open`] found, from [`OffsetStore::open_report`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// What the directory held before this open changed anything — what the witness was
    /// compared with.
    pub found: StoreFound,
    /// What the witness file held; `None` without a witness path.
    pub witness: Option<WitnessFound>,
    /// What the witness decision said (an open that was not refused: [`Verdict::Agree`], or
    /// [`Verdict::CreateWitness`] when there was none); `None` without a witness path, or
    /// when repairing.
    pub verdict: Option<Verdict>,
    /// The store's id (see [`OffsetStore::store_id`]).
    pub store_id: u64,
    /// The highest commit sequence the store held when it opened (after a migration: the
    /// migration's).
    pub commit_seq: u64,
    /// The format the store was migrated from at this open (1 or 2), if it was.
    pub migrated_from: Option<u8>,
    /// Stored entries that fail their checks, in key order. Reading one of their partitions
    /// fails with [`Error::Corrupt`] naming the key; [`OffsetStore::reset`] or
    /// [`OffsetStore::delete_group`] overwrites it. They do not stop the open.
    pub corrupt: Vec<CorruptValue>,
}

/// A stored entry of the offsets tree that fails its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptValue {
    /// The key, readable: `group "g" topic "t" partitions 0..=63`, or escaped bytes if the
    /// key itself does not decode.
    pub key: String,
    /// What is wrong.
    pub problem: DecodeError,
}

/// What examining the database found (reads only).
#[derive(Debug)]
struct Found {
    decision: Decision,
    /// The format the sled marker names; `None` if there is no marker yet.
    format: Option<Format>,
    /// The store id (format 3 only).
    store_id: Option<u64>,
    /// The highest commit sequence held: the floor's or a value's (format 3 only; else 0).
    commit_seq: u64,
    /// The entries that fail their checks (format 3 only).
    corrupt: Vec<CorruptValue>,
    /// A damaged store id or floor, when repairing (otherwise it fails the examination).
    meta_damage: Option<&'static str>,
}

impl Found {
    fn store_found(&self) -> StoreFound {
        StoreFound::Present {
            store_id: self.store_id,
            commit_seq: self.commit_seq,
            corrupt_values: self.corrupt.len(),
        }
    }
}

/// What the witness can be compared with before sled is opened: [`StoreFound::Missing`] if
/// `directory` holds no store (no marker file: missing, emptied or never created), `None` if
/// it does (then sled must be opened to see which).
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be looked into.
pub(crate) fn store_before_sled(directory: &Path) -> Result<Option<StoreFound>> {
    let file = directory.join(marker::MARKER_FILE_NAME);
    let exists = file.try_exists().map_err(|source| Error::Io {
        operation: "look for the marker file",
        path: file,
        source,
    })?;
    Ok((!exists).then_some(StoreFound::Missing))
}

/// Opens the store `config` names; see [`OffsetStore::open`] and [`Mode`].
pub(crate) fn open_with(config: &Config, mode: Mode) -> Result<OffsetStore> {
    config.validate()?;
    let directory = config.directory.clone();
    let witness = match &config.witness_path {
        Some(path) => Some((path.clone(), read_witness(path)?)),
        None => None,
    };
    if let (Some((witness_path, witness)), Mode::Open) = (&witness, mode) {
        // Decided before anything is created: a missing store must stay missing.
        if let Some(store) = store_before_sled(&directory)? {
            if let Verdict::Refuse(refusal) = witness::decide(witness, &store) {
                return Err(Error::Witness {
                    directory,
                    witness_path: witness_path.clone(),
                    refusal,
                });
            }
        }
    }
    let created = !directory.exists();
    std::fs::create_dir_all(&directory).map_err(|source| Error::Io {
        operation: "create the directory",
        path: directory.clone(),
        source,
    })?;
    if created {
        if let Some(parent) = directory.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_directory(parent)?;
        }
    }
    let lock_file = lock_directory(&directory)?;
    remove_interrupted_snapshots(&directory)?;
    let db = open_sled(&directory, config.cache_capacity_bytes)?;
    let mut store = OffsetStore::start(db, directory, witness, mode)?;
    store.lock_file = Some(lock_file);
    Ok(store)
}

impl OffsetStore {
    /// Opens (creating if needed) the offsets database in `config.directory`, checks every
    /// stored value (see [`OffsetStore::open_report`]) and migrates an older format.
    ///
    /// With [`Config::witness_path`], the witness file decides first (see
    /// [`crate::witness_decision`]): a store with fewer commits than the witness says were
    /// durable, another store id, or no store at all is refused, and nothing is created or
    /// written; with no witness file, one is written once the store is open.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad field; [`Error::Io`] if the directory cannot be
    /// created or synced, or the witness read or written; [`Error::Locked`] if another store
    /// has it open; [`Error::Open`] if sled cannot open the database, [`Error::Damaged`] if
    /// sled opens it but the offsets are gone, [`Error::Witness`] if the witness does not vouch
    /// for the store — their messages say how an operator recovers.
    pub fn open(config: &Config) -> Result<OffsetStore> {
        open_with(config, Mode::Open)
    }

    /// Opens the offsets in a sled database the caller already has, so that the caller's own
    /// trees and the offsets can be written in one transaction (see
    /// [`OffsetStore::commit_with`]). The offsets live in the tree [`TREE_NAME`]; names
    /// starting with [`crate::RESERVED_TREE_PREFIX`] are reserved.
    ///
    /// `directory` must be the directory `db` was opened on (not a `temporary` database): the
    /// store syncs sled's log file in it after every flush, and names it in errors.
    ///
    /// Two stores opened on one database this way hand out commit sequence numbers each on
    /// its own, so they may number two writes alike; the witness (which needs
    /// [`OffsetStore::open`]) is not used.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the tree cannot be opened; [`Error::Io`] if sled's log file is not
    /// in `directory` or cannot be synced; [`Error::Damaged`] and [`Error::Corrupt`] as for
    /// [`OffsetStore::open`].
    pub fn open_in(db: sled::Db, directory: impl Into<PathBuf>) -> Result<OffsetStore> {
        OffsetStore::start(db, directory.into(), None, Mode::Open)
    }

    /// Opens the trees, examines the database, checks it against the witness, settles it
    /// (creation, migration), syncs, and writes the witness if it is new or behind.
    fn start(
        db: sled::Db,
        directory: PathBuf,
        witness: Option<(PathBuf, WitnessFound)>,
        mode: Mode,
    ) -> Result<OffsetStore> {
        let open_tree = |name: &str, operation: &'static str| {
            db.open_tree(name).map_err(|source| Error::Storage {
                operation,
                directory: directory.clone(),
                source,
            })
        };
        let tree = open_tree(TREE_NAME, "open the offsets tree")?;
        let meta = open_tree(marker::META_TREE_NAME, "open the meta tree")?;
        let log_path = directory.join(SLED_LOG_FILE);
        let log_file = File::open(&log_path).map_err(|source| Error::Io {
            operation: "open sled's log file (to sync it)",
            path: log_path,
            source,
        })?;
        let mut store = OffsetStore {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            db,
            tree,
            meta,
            directory,
            log_file,
            lock_file: None,
            clock: Arc::new(SystemClock),
            writer: Mutex::new(()),
            sync_lock: Mutex::new(Synced::default()),
            sync_tickets: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            applied_seq: AtomicU64::new(0),
            store_id: 0,
            open_report: OpenReport {
                found: StoreFound::Missing,
                witness: None,
                verdict: None,
                store_id: 0,
                commit_seq: 0,
                migrated_from: None,
                corrupt: Vec::new(),
            },
            sealer: None,
        };
        let found = store.examine(mode)?;
        let store_found = found.store_found();
        let verdict = match &witness {
            Some((witness_path, witness)) if mode == Mode::Open => {
                match witness::decide(witness, &store_found) {
                    Verdict::Refuse(refusal) => {
                        return Err(Error::Witness {
                            directory: store.directory.clone(),
                            witness_path: witness_path.clone(),
                            refusal,
                        })
                    }
                    verdict => Some(verdict),
                }
            }
            _ => None,
        };
        let migrated_from = store.settle(&found)?;
        let found =
            if migrated_from.is_some() || found.format.is_none() || found.meta_damage.is_some() {
                store.examine(Mode::Open)?
            } else {
                found
            };
        let Some(store_id) = found.store_id else {
            // A settled store is in format 3, which has an id; only another store writing the
            // same database at once (`open_in` twice) could make this happen.
            return Err(Error::Damaged {
                directory: store.directory.clone(),
                problem: "the store id is missing from the meta tree after opening",
            });
        };
        store.store_id = store_id;
        store.applied_seq.store(found.commit_seq, Ordering::SeqCst);
        // What the store holds may not be on disk yet (the process that wrote it may have died
        // before its sync); from here on, the commit sequence it reports is.
        store.sync()?;
        for corrupt in &found.corrupt {
            tracing::warn!(
                directory = %store.directory.display(),
                key = %corrupt.key,
                problem = %corrupt.problem,
                "a stored offset is corrupt: reading it fails until it is reset or its group \
                 deleted"
            );
        }
        let durable = store.commit_seq();
        if let Some((path, witnessed)) = &witness {
            let sealed = match (&verdict, witnessed) {
                (Some(Verdict::Agree), WitnessFound::Valid(witnessed)) => witnessed.commit_seq,
                _ => {
                    // No witness yet, or a repair: this store, as it is now, is the one.
                    let witness = Witness {
                        store_id,
                        commit_seq: durable,
                    };
                    write_witness(path, &witness)?;
                    tracing::info!(
                        directory = %store.directory.display(),
                        witness = %path.display(),
                        store_id,
                        commit_seq = durable,
                        "wrote the offsets witness"
                    );
                    durable
                }
            };
            store.sealer = Some(Sealer {
                path: path.clone(),
                sealed: Mutex::new(sealed),
            });
            // The store may hold more than the witness says (commits after the last seal).
            let _written = store.seal()?;
        }
        store.open_report = OpenReport {
            found: store_found,
            witness: witness.map(|(_path, witness)| witness),
            verdict,
            store_id,
            commit_seq: found.commit_seq,
            migrated_from: migrated_from.map(Format::number),
            corrupt: found.corrupt,
        };
        Ok(store)
    }

    /// Reads what opening decides on: the marker (see `marker`), and for a format 3 store its
    /// id, floor and every value. Writes nothing.
    fn examine(&self, mode: Mode) -> Result<Found> {
        let sled_marker = self
            .meta
            .get(marker::MARKER_KEY)
            .map_err(|source| self.storage("read the store marker", source))?;
        let file = self.directory.join(marker::MARKER_FILE_NAME);
        let file_exists = file.try_exists().map_err(|source| Error::Io {
            operation: "look for the marker file",
            path: file,
            source,
        })?;
        let decision = marker::decide(file_exists, sled_marker.as_deref());
        match decision {
            Decision::DataLost => {
                return Err(Error::Damaged {
                    directory: self.directory.clone(),
                    problem: "the marker file says a store was created here, but sled opened \
                              without its data (sled opens some damaged files as empty)",
                })
            }
            Decision::UnknownMarker => {
                return Err(Error::Damaged {
                    directory: self.directory.clone(),
                    problem: "the store marker is not \"weir-offsets format 3\", 2 or 1 \
                              (damaged, or written by a newer build)",
                })
            }
            Decision::Open | Decision::Create { .. } => {}
        }
        let format = sled_marker.as_deref().and_then(Format::of);
        let mut found = Found {
            decision,
            format,
            store_id: None,
            commit_seq: 0,
            corrupt: Vec::new(),
            meta_damage: None,
        };
        if format == Some(Format::V3) {
            let store_id = self.meta_number(meta::STORE_ID_KEY)?;
            let floor = self.meta_number(meta::SEQ_FLOOR_KEY)?;
            let store_id = store_id.and_then(|id| {
                if id == 0 {
                    Err("the store id in the meta tree is 0")
                } else {
                    Ok(id)
                }
            });
            match (store_id, floor) {
                (Ok(store_id), Ok(floor)) => {
                    found.store_id = Some(store_id);
                    found.commit_seq = floor;
                }
                (Err(problem), _) | (_, Err(problem)) if mode == Mode::Open => {
                    return Err(Error::Damaged {
                        directory: self.directory.clone(),
                        problem,
                    });
                }
                (store_id, floor) => {
                    found.store_id = store_id.ok();
                    found.commit_seq = floor.unwrap_or(0);
                    found.meta_damage = store_id.err().or(floor.err());
                }
            }
            for entry in self.tree.iter() {
                let (key, value) =
                    entry.map_err(|source| self.storage("scan the offsets", source))?;
                let checked = keys::decode(&key).and_then(|_| record::decode(&key, &value));
                match checked {
                    Ok(value) => found.commit_seq = found.commit_seq.max(value.commit_seq),
                    Err(problem) => found.corrupt.push(CorruptValue {
                        key: keys::readable(&key),
                        problem,
                    }),
                }
            }
        }
        Ok(found)
    }

    /// A number of the meta tree (see `meta`), or what is wrong with it (missing or corrupt).
    fn meta_number(&self, key: &'static [u8]) -> Result<std::result::Result<u64, &'static str>> {
        let stored = self
            .meta
            .get(key)
            .map_err(|source| self.storage("read the meta tree", source))?;
        let id = key == meta::STORE_ID_KEY;
        Ok(
            match stored
                .as_deref()
                .map(|bytes| meta::decode_number(key, bytes))
            {
                Some(Ok(number)) => Ok(number),
                None if id => Err("the store id is missing from the meta tree"),
                None => Err("the commit sequence floor is missing from the meta tree"),
                Some(Err(_)) if id => Err("the store id in the meta tree is corrupt"),
                Some(Err(_)) => Err("the commit sequence floor in the meta tree is corrupt"),
            },
        )
    }

    /// Writes what the examination calls for: a new store's marker, id and floor, or the
    /// migration of an older format; then, for a store whose creation is not complete, the
    /// marker file. Returns the format migrated from, if any.
    fn settle(&self, found: &Found) -> Result<Option<Format>> {
        if let Some(problem) = found.meta_damage {
            // Only a repair gets here: it accepts the store as it is. A new id (the old one is
            // unknown) and the floor at the highest sequence the values hold.
            let store_id = found.store_id.unwrap_or_else(new_store_id);
            let mut batch = sled::Batch::default();
            batch.insert(
                meta::STORE_ID_KEY,
                &meta::encode_number(meta::STORE_ID_KEY, store_id)[..],
            );
            batch.insert(
                meta::SEQ_FLOOR_KEY,
                &meta::encode_number(meta::SEQ_FLOOR_KEY, found.commit_seq)[..],
            );
            self.meta
                .apply_batch(batch)
                .map_err(|source| self.poison("repair the meta tree", source))?;
            tracing::warn!(
                directory = %self.directory.display(),
                problem,
                store_id,
                floor = found.commit_seq,
                "repaired the offsets store's meta tree"
            );
        }
        let migrated_from = match found.format {
            Some(Format::V3) => None,
            Some(old) => {
                self.migrate(old)?;
                Some(old)
            }
            None => {
                let mut batch = sled::Batch::default();
                batch.insert(marker::MARKER_KEY, marker::MARKER_VALUE);
                batch.insert(
                    meta::STORE_ID_KEY,
                    &meta::encode_number(meta::STORE_ID_KEY, new_store_id())[..],
                );
                batch.insert(
                    meta::SEQ_FLOOR_KEY,
                    &meta::encode_number(meta::SEQ_FLOOR_KEY, 0)[..],
                );
                self.meta
                    .apply_batch(batch)
                    .map_err(|source| self.poison("write the store marker", source))?;
                None
            }
        };
        if let Decision::Create { .. } = found.decision {
            // The sled marker is durable before the file claims it exists.
            self.sync()?;
            let file = self.directory.join(marker::MARKER_FILE_NAME);
            File::create(&file)
                .and_then(|created| created.sync_all())
                .map_err(|source| Error::Io {
                    operation: "create",
                    path: file,
                    source,
                })?;
            // sled does not sync its directory: this makes its file names durable too.
            sync_directory(&self.directory)?;
        }
        Ok(migrated_from)
    }

    /// Migrates a store of format 1 (one value per partition, in [`TREE_NAME_V1`]) or 2
    /// (version 2 blocks in [`TREE_NAME`]) to format 3: every value is rewritten as a version
    /// 3 block carrying the migration's commit sequence (1), the format 1 tree is emptied, and
    /// the meta tree gets a store id, the floor (1) and the format 3 marker — in one sled
    /// transaction, made durable before the store is used. A crash before it leaves the old
    /// format as it was; a crash after it leaves format 3.
    ///
    /// A corrupt format 1 value fails the migration (nothing changes); a corrupt format 2
    /// value is left as it is, and reported as corrupt by the examination that follows.
    fn migrate(&self, from: Format) -> Result<()> {
        let old = self
            .db
            .open_tree(TREE_NAME_V1)
            .map_err(|source| self.storage("open the format 1 offsets tree", source))?;
        let mut old_keys = Vec::new();
        let mut blocks: BTreeMap<Vec<u8>, Block> = BTreeMap::new();
        let mut corrupt = 0_usize;
        if from == Format::V1 {
            for entry in old.iter() {
                let (key, value) = entry.map_err(|source| self.storage("read format 1", source))?;
                // A format 1 key has the partition where later keys have the block.
                let decoded =
                    keys::decode_layout(&key).map_err(|source| self.corrupt(&key, source))?;
                let partition = decoded.block;
                let committed = record::v1::decode(&value).map_err(|source| Error::Corrupt {
                    directory: self.directory.clone(),
                    key: format!(
                        "group {:?} topic {:?} partition {partition} (format 1, being migrated)",
                        decoded.group, decoded.topic
                    ),
                    source,
                })?;
                let (block, slot) = keys::block_of(partition);
                blocks
                    .entry(keys::encode(decoded.group, decoded.topic, block))
                    .or_default()
                    .set(slot, committed);
                old_keys.push(key);
            }
        } else {
            for entry in self.tree.iter() {
                let (key, value) = entry.map_err(|source| self.storage("read format 2", source))?;
                match keys::decode(&key).and_then(|_| record::v2::decode(&value)) {
                    Ok(block) => {
                        let _none = blocks.insert(key.to_vec(), block);
                    }
                    Err(problem) => {
                        corrupt += 1;
                        tracing::warn!(
                            directory = %self.directory.display(),
                            key = %keys::readable(&key),
                            %problem,
                            "a corrupt format 2 value is left as it is by the migration"
                        );
                    }
                }
            }
        }
        let commit_seq = 1;
        let values: Vec<(Vec<u8>, Vec<u8>)> = blocks
            .into_iter()
            .map(|(key, block)| {
                let value = record::encode(&key, &block, commit_seq);
                (key, value)
            })
            .collect();
        let store_id = meta::encode_number(meta::STORE_ID_KEY, new_store_id());
        let floor = meta::encode_number(meta::SEQ_FLOOR_KEY, commit_seq);
        let from_marker = match from {
            Format::V1 => marker::MARKER_VALUE_V1,
            Format::V2 => marker::MARKER_VALUE_V2,
            Format::V3 => unreachable!("format 3 is not migrated"),
        };
        let migrated = (&old, &self.tree, &self.meta).transaction(|(old, new, meta)| {
            // Another store on the same database (`open_in` twice) may have migrated since the
            // old values were read above, and committed newer offsets since: its marker says
            // so, and the stale snapshot must not be written over them.
            if meta.get(marker::MARKER_KEY)?.as_deref() != Some(from_marker) {
                return Ok(false);
            }
            for (key, value) in &values {
                let _previous = new.insert(key.as_slice(), value.as_slice())?;
            }
            for key in &old_keys {
                let _previous = old.remove(key)?;
            }
            let _previous = meta.insert(meta::STORE_ID_KEY, &store_id[..])?;
            let _previous = meta.insert(meta::SEQ_FLOOR_KEY, &floor[..])?;
            let _previous = meta.insert(marker::MARKER_KEY, marker::MARKER_VALUE)?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        match migrated {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(TransactionError::Abort(())) => unreachable!("the migration never aborts"),
            Err(TransactionError::Storage(source)) => {
                return Err(self.poison("migrate the offsets store", source));
            }
        }
        self.sync()?;
        tracing::info!(
            directory = %self.directory.display(),
            from = from.number(),
            partitions_format_1 = old_keys.len(),
            blocks = values.len(),
            corrupt_left = corrupt,
            "migrated the offsets store to format 3"
        );
        Ok(())
    }
}

/// A random nonzero store id. The standard library's `RandomState` is keyed from the operating
/// system's random source; the time and process id are mixed in as well.
fn new_store_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(since_epoch);
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}
