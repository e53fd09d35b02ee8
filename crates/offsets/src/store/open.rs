//! Opening a store: the directory, the lock, sled, the store marker (see `marker`) and the
//! migration of older formats. Nothing is written before the checks that may refuse the open
//! have passed.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{OffsetStore, NEXT_STORE_ID, SLED_LOG_FILE, TREE_NAME, TREE_NAME_V1};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::files::{lock_directory, open_sled, remove_interrupted_snapshots, sync_directory};
use crate::keys;
use crate::marker::{self, Decision};
use crate::record::{self, Block};

impl OffsetStore {
    /// Opens (creating if needed) the offsets database in `config.directory`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad field; [`Error::Io`] if the directory cannot be
    /// created or synced; [`Error::Locked`] if another store has it open; [`Error::Open`] if
    /// sled cannot open the database, [`Error::Damaged`] if sled opens it but the offsets are
    /// gone — their messages say how an operator recovers.
    pub fn open(config: &Config) -> Result<OffsetStore> {
        config.validate()?;
        let directory = config.directory.clone();
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
        let mut store = OffsetStore::open_in(db, directory)?;
        store.lock_file = Some(lock_file);
        Ok(store)
    }

    /// Opens the offsets in a sled database the caller already has, so that the caller's own
    /// trees and the offsets can be written in one transaction (see
    /// [`OffsetStore::commit_with`]). The offsets live in the tree [`TREE_NAME`]; names
    /// starting with [`RESERVED_TREE_PREFIX`] are reserved.
    ///
    /// `directory` must be the directory `db` was opened on (not a `temporary` database): the
    /// store syncs sled's log file in it after every flush, and names it in errors.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the tree cannot be opened; [`Error::Io`] if sled's log file is not
    /// in `directory` or cannot be synced.
    pub fn open_in(db: sled::Db, directory: impl Into<PathBuf>) -> Result<OffsetStore> {
        let directory = directory.into();
        let tree = db.open_tree(TREE_NAME).map_err(|source| Error::Storage {
            operation: "open the offsets tree",
            directory: directory.clone(),
            source,
        })?;
        let log_path = directory.join(SLED_LOG_FILE);
        let log_file = File::open(&log_path).map_err(|source| Error::Io {
            operation: "open sled's log file (to sync it)",
            path: log_path,
            source,
        })?;
        let store = OffsetStore {
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            db,
            tree,
            directory,
            log_file,
            lock_file: None,
            clock: Arc::new(SystemClock),
            writer: Mutex::new(()),
            sync_lock: Mutex::new(0),
            sync_tickets: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
        };
        store.check_marker()?;
        Ok(store)
    }

    /// Checks (or, for a new store, writes) the store marker; see `marker`.
    fn check_marker(&self) -> Result<()> {
        let meta = self
            .db
            .open_tree(marker::META_TREE_NAME)
            .map_err(|source| self.storage("open the meta tree", source))?;
        let sled_marker = meta
            .get(marker::MARKER_KEY)
            .map_err(|source| self.storage("read the store marker", source))?;
        let file = self.directory.join(marker::MARKER_FILE_NAME);
        let file_exists = file.try_exists().map_err(|source| Error::Io {
            operation: "look for the marker file",
            path: file.clone(),
            source,
        })?;
        let format_1 = sled_marker.as_deref() == Some(marker::MARKER_VALUE_V1);
        match marker::decide(file_exists, sled_marker.as_deref()) {
            Decision::Open if format_1 => self.migrate_format_1(&meta),
            Decision::Open => Ok(()),
            Decision::DataLost => Err(Error::Damaged {
                directory: self.directory.clone(),
                problem: "the marker file says a store was created here, but sled opened \
                          without its data (sled opens some damaged files as empty)",
            }),
            Decision::UnknownMarker => Err(Error::Damaged {
                directory: self.directory.clone(),
                problem: "the store marker is neither \"weir-offsets format 2\" nor \
                          \"weir-offsets format 1\" (damaged, or written by a newer build)",
            }),
            Decision::Create { write_sled_marker } => {
                if format_1 {
                    // An earlier build's creation, cut short: migrate what there is.
                    self.migrate_format_1(&meta)?;
                } else if write_sled_marker {
                    meta.insert(marker::MARKER_KEY, marker::MARKER_VALUE)
                        .map_err(|source| self.poison("write the store marker", source))?;
                }
                // The sled marker is durable before the file claims it exists.
                self.sync()?;
                File::create(&file)
                    .and_then(|created| created.sync_all())
                    .map_err(|source| Error::Io {
                        operation: "create",
                        path: file,
                        source,
                    })?;
                // sled does not sync its directory: this makes its file names durable too.
                sync_directory(&self.directory)
            }
        }
    }

    /// Moves a format 1 store's offsets (one value per partition, in [`TREE_NAME_V1`]) into
    /// blocks in [`TREE_NAME`], empties the old tree and rewrites the marker — in one sled
    /// transaction, made durable before the store is used. A crash before it leaves format 1
    /// as it was; a crash after it leaves format 2.
    fn migrate_format_1(&self, meta: &sled::Tree) -> Result<()> {
        let old = self
            .db
            .open_tree(TREE_NAME_V1)
            .map_err(|source| self.storage("open the format 1 offsets tree", source))?;
        let mut old_keys = Vec::new();
        let mut blocks: BTreeMap<Vec<u8>, Block> = BTreeMap::new();
        for entry in old.iter() {
            let (key, value) = entry.map_err(|source| self.storage("read format 1", source))?;
            // A format 1 key has the partition where a format 2 key has the block.
            let decoded = keys::decode_layout(&key).map_err(|source| self.corrupt(&key, source))?;
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
        let values: Vec<(Vec<u8>, Vec<u8>)> = blocks
            .into_iter()
            .map(|(key, block)| (key, record::encode(&block)))
            .collect();
        let migrated = (&old, &self.tree, meta).transaction(|(old, new, meta)| {
            // Another store on the same database (`open_in` twice) may have migrated since the
            // format 1 tree was read above, and committed newer offsets in format 2 since: its
            // marker says so, and the stale snapshot must not be written over them.
            if meta.get(marker::MARKER_KEY)?.as_deref() == Some(marker::MARKER_VALUE) {
                return Ok(false);
            }
            for (key, value) in &values {
                let _previous = new.insert(key.as_slice(), value.as_slice())?;
            }
            for key in &old_keys {
                let _previous = old.remove(key)?;
            }
            let _previous = meta.insert(marker::MARKER_KEY, marker::MARKER_VALUE)?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        match migrated {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(TransactionError::Abort(())) => unreachable!("the migration never aborts"),
            Err(TransactionError::Storage(source)) => {
                return Err(self.poison("migrate format 1 offsets", source));
            }
        }
        self.sync()?;
        tracing::info!(
            directory = %self.directory.display(),
            partitions = old_keys.len(),
            blocks = values.len(),
            "migrated the offsets store from format 1 to format 2"
        );
        Ok(())
    }
}
