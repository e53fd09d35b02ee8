//! The offset store: committed offsets per (group, topic, partition) in one sled tree — one
//! value per block of 64 partitions (see `record`) — and the only code in weir that touches
//! sled.
//!
//! Invariants:
//! - A write returns `Ok` only after it is durable: sled `flush` (which on Linux writes with
//!   `sync_file_range`, flushing neither file metadata nor the drive's cache) followed by our
//!   own `fdatasync` of sled's log file, which does both.
//! - A commit is applied only if the commit rule (`commit::check`) allows it, with every other
//!   commit of its batch: all of them or none. A batch within one block is a compare-and-swap
//!   of that block's key against the bytes the rule was checked on; a batch over several
//!   blocks is one sled transaction (with the caller's writes, for `commit_with`). So another
//!   store on the same database (`open_in` twice) can neither slip a write in between nor have
//!   its write overwritten with the rest of a block.
//! - Writers take `writer`, so a read-then-write (a commit's check and its block's rewrite,
//!   delete a group, clamp) sees no other write land between its read and its write.
//! - After a failed write or sync the store is poisoned and refuses writes: whether the bytes
//!   reached the disk is unknown, and retrying a failed fsync is not safe.
//! - Every write that changes the offsets tree gets the next **commit sequence** number, taken
//!   under `writer` and stored with the write itself: in each value it writes (`record`), and,
//!   for a write that removes values, as the meta tree's floor (`meta`), in the same atomic
//!   step. So the highest sequence the tree and floor hold is the last write sled kept, and a
//!   write that sled lost lowers it. [`OffsetStore::commit_seq`] is the highest sequence made
//!   durable by a sync; it never goes down.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
    TransactionalTree,
};

use crate::clock::Clock;
use crate::commit::{self, Commit, Refusal};
use crate::error::{DecodeError, Error, Result};
use crate::files;
use crate::keys;
use crate::meta;
use crate::name::{validate_name, NameKind};
use crate::record::{self, Block, Committed, METADATA_BYTES_MAX};
use crate::witness::Witness;

mod open;

pub(crate) use open::{open_with, store_before_sled, Mode};
pub use open::{CorruptValue, OpenReport};

/// The sled tree that holds the offsets. The `v2` names the key layout (see `keys`); a new key
/// layout gets a new tree.
pub const TREE_NAME: &str = "weir-offsets/v2";

/// The tree of version 1 (one key per partition), migrated into [`TREE_NAME`] on open.
const TREE_NAME_V1: &str = "weir-offsets/v1";

/// Tree names starting with this are reserved for the offsets store.
pub const RESERVED_TREE_PREFIX: &str = "weir-offsets";

/// sled 0.34's log file inside its directory: the file this store `fdatasync`s.
const SLED_LOG_FILE: &str = "db";

/// The lock file, in the database directory: held while a store opened by
/// [`OffsetStore::open`] is open.
pub const LOCK_FILE_NAME: &str = "weir-offsets.lock";

/// Tells stores apart in this process, so that a [`UserTree`] is only used with the store it
/// came from.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// Committed offsets per (group, topic, partition), kept durably in sled.
///
/// Every write is durable when it returns. Reads see the latest write. The store is `Sync`:
/// share it with an `Arc`.
pub struct OffsetStore {
    /// This handle's number in the process (see [`UserTree`]); not the stored store id.
    instance: u64,
    db: sled::Db,
    tree: sled::Tree,
    /// The meta tree: the marker, the store id and the sequence floor (see `marker`, `meta`).
    meta: sled::Tree,
    directory: PathBuf,
    /// sled's log file, opened again by us so that we can `fdatasync` it after sled's flush.
    log_file: File,
    /// Our lock on the directory (see `lock_directory`); `None` for a database the caller
    /// opened, which sled's own lock protects.
    lock_file: Option<File>,
    clock: Arc<dyn Clock>,
    /// Serialises writers; see the module docs. Guards no data.
    writer: Mutex<()>,
    /// Held through each sync (sled's flush and our `fdatasync`) and the poisoning after a
    /// failed one; holds what the last successful sync covered. See [`OffsetStore::sync`].
    sync_lock: Mutex<Synced>,
    /// Tickets of writes waiting to be synced, taken once each write is applied.
    sync_tickets: AtomicU64,
    poisoned: AtomicBool,
    /// The commit sequence of the last write applied to sled. Changed only under `writer`.
    applied_seq: AtomicU64,
    /// The store's id, from the meta tree.
    store_id: u64,
    /// What opening found.
    open_report: OpenReport,
    /// The witness file this store keeps, once opening vouched for the store; `None` without
    /// a witness path (or before the open is done, so a refused open writes none).
    sealer: Option<Sealer>,
}

/// The witness file a store keeps up to date (see [`OffsetStore::seal`]).
#[derive(Debug)]
struct Sealer {
    path: PathBuf,
    /// The commit sequence the witness file holds. Held while the file is replaced.
    sealed: Mutex<u64>,
}

/// What the syncs so far made durable.
#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// Every write that took a ticket up to this one.
    ticket: u64,
    /// Every write with a commit sequence up to this one.
    commit_seq: u64,
}

impl Drop for OffsetStore {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Leave the witness as it is (behind the store, which is safe) rather than risk a
            // second panic.
            return;
        }
        if let Err(error) = self.seal() {
            tracing::warn!(%error, "could not seal the offsets witness while dropping the store");
        }
    }
}

impl fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffsetStore")
            .field("directory", &self.directory)
            .field("clock", &self.clock)
            .field("poisoned", &self.poisoned.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// One partition's committed offset, as [`OffsetStore::describe_group`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What is committed.
    pub committed: Committed,
}

/// A group's committed offsets, ordered by topic (bytewise) and partition (numerically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group.
    pub group: String,
    /// Its partitions; empty if the group has no committed offsets.
    pub partitions: Vec<PartitionOffset>,
}

/// A (group, topic, partition).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupPartition {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// A committed offset that pointed past its partition's log end and was moved back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clamped {
    /// Which group and partition.
    pub at: GroupPartition,
    /// The offset that was committed.
    pub committed: u64,
    /// The log end it now equals.
    pub log_end: u64,
}

/// What [`OffsetStore::clamp_to_log_ends`] found and corrected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClampReport {
    /// How many committed offsets were looked at.
    pub examined: usize,
    /// Those that were past their log end, and are now at it.
    pub clamped: Vec<Clamped>,
    /// Those whose log end the caller did not know (e.g. a deleted topic); left as they were.
    pub without_log_end: Vec<GroupPartition>,
    /// Stored entries that fail their checks, by readable key: left as they are (their
    /// offsets cannot be read, so they cannot point past anything; see
    /// [`OpenReport::corrupt`]).
    pub corrupt: Vec<String>,
}

/// A tree of the caller's, in the same sled database as the offsets, for
/// [`OffsetStore::commit_with`]. Derefs to [`sled::Tree`] for reads and writes outside a
/// commit.
#[derive(Debug, Clone)]
pub struct UserTree {
    store_id: u64,
    name: String,
    tree: sled::Tree,
}

impl Deref for UserTree {
    type Target = sled::Tree;

    fn deref(&self) -> &sled::Tree {
        &self.tree
    }
}

/// Why a transaction of `commit_with` was aborted: by our rule or by the caller's closure.
enum Abort<E> {
    Offsets(Error),
    User(E),
}

/// The commits of a batch that fall in one block, checked before their transaction (which may
/// run more than once).
struct Prepared<'a> {
    key: Vec<u8>,
    /// Each with its place in the caller's batch and its slot in the block.
    commits: Vec<(usize, u8, &'a Commit<'a>)>,
}

impl OffsetStore {
    /// The same store, taking commit times from `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> OffsetStore {
        self.clock = clock;
        self
    }

    /// Writes the witness file (see [`Config::witness_path`](crate::Config::witness_path))
    /// with the store's id and its durable commit sequence ([`OffsetStore::commit_seq`]), if
    /// that moved since the witness was last written; returns whether it wrote. The file is
    /// replaced atomically (a temporary file, `fdatasync`, rename, `fsync` of its directory).
    /// Does nothing for a store opened without a witness path.
    ///
    /// Call it now and then (weir-store does, every second) and at close; [`OffsetStore::close`]
    /// and dropping the store call it too. The witness only ever names commits that were
    /// durable, so a store that opens with fewer lost some: the next open refuses it
    /// ([`Error::Witness`]). The longer between seals, the more commits a loss can hide.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be written, synced or renamed; the old witness is then
    /// still in place (it names fewer commits, which is safe), and the next seal tries again.
    pub fn seal(&self) -> Result<bool> {
        let Some(sealer) = &self.sealer else {
            return Ok(false);
        };
        let mut sealed = sealer.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        let commit_seq = self.commit_seq();
        if commit_seq == *sealed {
            return Ok(false);
        }
        assert!(
            commit_seq > *sealed,
            "the durable commit sequence {commit_seq} is behind the witness {}",
            *sealed
        );
        let witness = Witness {
            store_id: self.store_id,
            commit_seq,
        };
        files::write_witness(&sealer.path, &witness)?;
        *sealed = commit_seq;
        Ok(true)
    }

    /// Closes the store: seals the witness ([`OffsetStore::seal`]), then lets sled go (it
    /// flushes when dropped). Dropping the store does the same but cannot report a failure.
    ///
    /// # Errors
    ///
    /// As [`OffsetStore::seal`].
    pub fn close(self) -> Result<()> {
        self.seal().map(|_written| ())
    }

    /// The database directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The highest commit sequence made durable: every write that changes the offsets (a
    /// commit, reset, deletion, clamp or migration) gets the next number, and this is the
    /// number of the last one synced. After [`OffsetStore::open`] it is the highest the
    /// database holds. It never goes down.
    pub fn commit_seq(&self) -> u64 {
        self.sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .commit_seq
    }

    /// The store's id: a random nonzero number drawn when the store was created (or migrated
    /// to format 3), kept in the database. A store created again in the same directory has
    /// another.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// What opening found: the store id and commit sequence, a migration, and the values that
    /// failed their checks.
    pub fn open_report(&self) -> &OpenReport {
        &self.open_report
    }

    /// A tree of the caller's in this store's database, for [`OffsetStore::commit_with`].
    ///
    /// # Errors
    ///
    /// [`Error::ForeignTree`] if `name` starts with [`RESERVED_TREE_PREFIX`];
    /// [`Error::Storage`] if sled cannot open the tree.
    pub fn user_tree(&self, name: &str) -> Result<UserTree> {
        if name.starts_with(RESERVED_TREE_PREFIX) {
            return Err(Error::ForeignTree {
                name: name.to_string(),
                reason: "is reserved for the offsets store",
            });
        }
        let tree = self
            .db
            .open_tree(name)
            .map_err(|source| self.storage("open a user tree", source))?;
        Ok(UserTree {
            store_id: self.instance,
            name: name.to_string(),
            tree,
        })
    }

    /// The committed offset of `group` on `topic`/`partition`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::Corrupt`] if the stored value does not decode;
    /// [`Error::Storage`] if sled fails.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Result<Option<Committed>> {
        check_name(NameKind::Group, group)?;
        check_name(NameKind::Topic, topic)?;
        let (block, slot) = keys::block_of(partition);
        let key = keys::encode(group, topic, block);
        match self.tree.get(&key) {
            Ok(None) => Ok(None),
            Ok(Some(value)) => Ok(self.decode_value(&key, &value)?.get(slot).cloned()),
            Err(source) => Err(self.storage("read an offset", source)),
        }
    }

    /// Commits one partition's offset, durably, if the commit rule allows it: the committed
    /// offset must be `commit.expected` (compare-and-set) and `commit.offset` must not be
    /// behind it. Returns what is now committed.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] (with the actual committed offset) or [`Error::Backwards`]: nothing
    /// was written. Usage errors for a bad name or metadata; [`Error::Corrupt`] if the stored
    /// value does not decode; [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`] if the
    /// write or sync failed.
    pub fn commit(&self, group: &str, commit: Commit<'_>) -> Result<Committed> {
        let commit_time_ms = self.commit_batch(group, std::slice::from_ref(&commit))?;
        Ok(Committed {
            offset: commit.offset,
            commit_time_ms,
            metadata: commit.metadata.to_string(),
        })
    }

    /// Commits many partitions' offsets of one group in one durable step (one compare-and-swap
    /// or one sled transaction, then one sync): all of them, or — if the rule refuses any —
    /// none. Returns the commit time they share.
    ///
    /// # Errors
    ///
    /// As [`OffsetStore::commit`], for the first partition refused; also
    /// [`Error::DuplicatePartition`] if a partition appears twice.
    pub fn commit_batch(&self, group: &str, commits: &[Commit<'_>]) -> Result<u64> {
        let (prepared, commit_time_ms) = self.prepare(group, commits)?;
        if prepared.is_empty() {
            // Nothing to write, so no commit sequence number: a number the store does not
            // hold would make its witness claim a commit the store never had.
            return Ok(commit_time_ms);
        }
        let writer = self.lock_writer();
        let commit_seq = self.next_seq(&writer);
        // The writer lock orders this store's writers; the compare-and-swap (one block) or the
        // transaction (several) also keeps out another store opened on the same database
        // (`open_in` twice), whose writes would otherwise land between the check and the
        // write and be overwritten with the rest of their block.
        let applied = if let [block] = prepared.as_slice() {
            self.swap_block(&block.key, "commit offsets", |stored| {
                self.updated(group, &prepared, &[stored], commit_time_ms, commit_seq)
                    .map(|mut values| Some(values.remove(0)))
            })
            .map(|written| assert!(written, "a commit always writes its block"))
        } else {
            let outcome = self
                .tree
                .transaction(|tree| self.apply(tree, group, &prepared, commit_time_ms, commit_seq));
            match outcome {
                Ok(()) => Ok(()),
                Err(TransactionError::Abort(error)) => Err(error),
                Err(TransactionError::Storage(source)) => {
                    Err(self.poison("commit offsets", source))
                }
            }
        };
        if applied.is_ok() {
            self.applied(commit_seq, &writer);
        }
        drop(writer);
        applied?;
        self.sync()?;
        Ok(commit_time_ms)
    }

    /// Commits offsets of one group together with the caller's own writes to `user_tree`, in
    /// one sled transaction made durable by one sync: both happen, or neither. A consumer that
    /// keeps its results in `user_tree` this way processes each event effectively once, with
    /// no outbox.
    ///
    /// `user_writes` runs inside the transaction, after the offsets are checked; sled may run
    /// it more than once (on a conflict), so it must only touch the transactional tree. It
    /// must not call back into this store. To abort, it returns
    /// `Err(ConflictableTransactionError::Abort(e))`: then nothing is written and the result
    /// is `Ok(Err(e))`.
    ///
    /// ```
    /// use weir_offsets::sled::transaction::ConflictableTransactionError;
    /// use weir_offsets::{Commit, CommitExpectation, Config, OffsetStore};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = OffsetStore::open(&Config::new(dir.path()))?;
    /// let totals = store.user_tree("totals")?;
    ///
    /// // Events 0..10 of orders/0 were summed to 55: record the sum and the next offset to
    /// // read together, so a crash can never keep one without the other.
    /// let commit = Commit::new("orders", 0, 10, CommitExpectation::Absent);
    /// let outcome = store.commit_with("billing", &[commit], &totals, |totals| {
    ///     totals.insert("orders/0", &55u64.to_le_bytes())?;
    ///     Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(())
    /// })?;
    /// assert_eq!(outcome, Ok(()));
    /// assert_eq!(store.get("billing", "orders", 0)?.map(|c| c.offset), Some(10));
    /// assert_eq!(totals.get("orders/0")?.as_deref(), Some(&55u64.to_le_bytes()[..]));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`OffsetStore::commit_batch`]; also [`Error::ForeignTree`] if `user_tree` came from
    /// another store.
    pub fn commit_with<T, E, F>(
        &self,
        group: &str,
        commits: &[Commit<'_>],
        user_tree: &UserTree,
        user_writes: F,
    ) -> Result<std::result::Result<T, E>>
    where
        F: Fn(&TransactionalTree) -> ConflictableTransactionResult<T, E>,
    {
        if user_tree.store_id != self.instance {
            return Err(Error::ForeignTree {
                name: user_tree.name.clone(),
                reason: "belongs to another offsets store (a transaction spans one database)",
            });
        }
        let (prepared, commit_time_ms) = self.prepare(group, commits)?;
        let outcome = {
            let writer = self.lock_writer();
            let commit_seq = self.next_seq(&writer);
            let outcome = (&self.tree, &user_tree.tree).transaction(|(offsets, user)| {
                self.apply(offsets, group, &prepared, commit_time_ms, commit_seq)
                    .map_err(|error| map_abort(error, Abort::Offsets))?;
                user_writes(user).map_err(|error| map_abort(error, Abort::User))
            });
            // Without offsets, the transaction stores no sequence number: it takes none.
            if outcome.is_ok() && !prepared.is_empty() {
                self.applied(commit_seq, &writer);
            }
            outcome
        };
        let value = match outcome {
            Ok(value) => value,
            Err(TransactionError::Abort(Abort::Offsets(error))) => return Err(error),
            Err(TransactionError::Abort(Abort::User(error))) => return Ok(Err(error)),
            Err(TransactionError::Storage(source)) => {
                return Err(self.poison("commit transaction with user writes", source));
            }
        };
        self.sync()?;
        Ok(Ok(value))
    }

    /// Sets `group`'s committed offset on `topic`/`partition` to `offset`, durably, whatever
    /// was committed before — backwards included, and over a corrupt value. This is the one
    /// way to move a group back; the metadata becomes empty. Returns what is now committed.
    ///
    /// A corrupt value holds the offsets of a block of 64 partitions (`64·b ..= 64·b + 63`);
    /// resetting one of them over it replaces the whole value, so the block's other
    /// partitions are left with no committed offset (they were unreadable already). A warning
    /// names them: reset them too.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`] if the
    /// write or sync failed.
    pub fn reset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Committed> {
        check_name(NameKind::Group, group)?;
        check_name(NameKind::Topic, topic)?;
        self.check_writable()?;
        let committed = Committed {
            offset,
            commit_time_ms: self.clock.now_ms(),
            metadata: String::new(),
        };
        let (block_number, slot) = keys::block_of(partition);
        let key = keys::encode(group, topic, block_number);
        {
            let writer = self.lock_writer();
            let commit_seq = self.next_seq(&writer);
            let written = self.swap_block(&key, "reset an offset", |stored| {
                let mut block = match stored.map(|v| self.decode_value(&key, v)) {
                    None => Block::default(),
                    Some(Ok(block)) => block,
                    Some(Err(error)) => {
                        tracing::warn!(
                            %error,
                            "reset over a corrupt value: the other partitions of {} now have \
                             no committed offset; reset them too",
                            keys::readable(&key)
                        );
                        Block::default()
                    }
                };
                block.set(slot, committed.clone());
                Ok(Some(record::encode(&key, &block, commit_seq)))
            })?;
            assert!(written, "a reset always writes its block");
            self.applied(commit_seq, &writer);
        }
        self.sync()?;
        Ok(committed)
    }

    /// Every group with at least one committed offset, in byte order.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a key does not decode; [`Error::Storage`] if sled fails.
    pub fn list_groups(&self) -> Result<Vec<String>> {
        let mut groups = Vec::new();
        let mut start = Vec::new();
        // One seek per group: after a group's first key, skip past all of its keys.
        while let Some(entry) = self.tree.range(start.as_slice()..).next() {
            let (key, _value) = entry.map_err(|source| self.storage("scan the groups", source))?;
            let group = self.decode_key(&key)?.group;
            groups.push(group.to_string());
            start = keys::next_group_start(group);
        }
        Ok(groups)
    }

    /// `group`'s committed offsets, with commit times and metadata.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::Corrupt`] naming the first key or value that does not
    /// decode; [`Error::Storage`] if sled fails.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        check_name(NameKind::Group, group)?;
        let mut partitions = Vec::new();
        for entry in self.tree.scan_prefix(keys::group_prefix(group)) {
            let (key, value) = entry.map_err(|source| self.storage("scan a group", source))?;
            let decoded = self.decode_key(&key)?;
            assert_eq!(
                decoded.group, group,
                "a prefix scan returned another group's key"
            );
            for (slot, committed) in self.decode_value(&key, &value)?.iter() {
                partitions.push(PartitionOffset {
                    topic: decoded.topic.to_string(),
                    partition: keys::partition_of(decoded.block, slot),
                    committed: committed.clone(),
                });
            }
        }
        Ok(GroupDescription {
            group: group.to_string(),
            partitions,
        })
    }

    /// Every group's readable committed offsets, in order, leaving out the values that fail
    /// their checks (see [`OpenReport::corrupt`]): what weir-store's recovery takes as
    /// witnesses, at open and in `weir verify` alike.
    ///
    /// # Errors
    /// [`Error::Storage`] if sled fails.
    pub fn readable_groups(&self) -> Result<Vec<GroupDescription>> {
        let mut groups: Vec<GroupDescription> = Vec::new();
        for entry in self.tree.iter() {
            let (key, value) = entry.map_err(|source| self.storage("scan the offsets", source))?;
            let (Ok(decoded), Ok(value)) = (keys::decode(&key), record::decode(&key, &value))
            else {
                continue;
            };
            if groups.last().is_none_or(|last| last.group != decoded.group) {
                groups.push(GroupDescription {
                    group: decoded.group.to_string(),
                    partitions: Vec::new(),
                });
            }
            let Some(group) = groups.last_mut() else {
                unreachable!("a group was just pushed")
            };
            for (slot, committed) in value.block.iter() {
                group.partitions.push(PartitionOffset {
                    topic: decoded.topic.to_string(),
                    partition: keys::partition_of(decoded.block, slot),
                    committed: committed.clone(),
                });
            }
        }
        Ok(groups)
    }

    /// Deletes all of `group`'s committed offsets, durably, in one atomic step — corrupt
    /// values included. Returns how many there were (0 if the group had none), counting a
    /// value that does not decode as one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`] if the
    /// write or sync failed.
    pub fn delete_group(&self, group: &str) -> Result<usize> {
        check_name(NameKind::Group, group)?;
        self.delete_where(
            || self.tree.scan_prefix(keys::group_prefix(group)),
            |_| Ok(true),
            "delete a group",
        )
    }

    /// Deletes every group's committed offsets for `topic`, durably (one batch, one sync), and
    /// returns how many partitions' offsets it removed. weir-store calls it when a topic is
    /// deleted, before the topic's files go: a topic created again under the same name starts
    /// at offset 0, and a group's old offset there would skip its first events.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::Corrupt`] naming a key that does not decode (nothing is
    /// deleted then); [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`].
    pub fn delete_topic(&self, topic: &str) -> Result<usize> {
        check_name(NameKind::Topic, topic)?;
        self.delete_where(
            || self.tree.iter(),
            |key| Ok(self.decode_key(key)?.topic == topic),
            "delete a topic's offsets",
        )
    }

    /// Removes every stored value that fails its checks (a damaged block: see
    /// [`OpenReport::corrupt`](crate::OpenReport)), durably in one step, and returns how many
    /// it removed. `weir repair` calls it: the partitions of a removed block have no committed
    /// offset any more, so their groups read them again from the log start — events are
    /// delivered again, never skipped.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`].
    pub fn remove_corrupt(&self) -> Result<usize> {
        let mut removed = 0;
        self.delete_where(
            || self.tree.iter(),
            |key| {
                let value = self
                    .tree
                    .get(key)
                    .map_err(|source| self.storage("read a value", source))?;
                let corrupt = value.is_some_and(|value| record::decode(key, &value).is_err());
                removed += usize::from(corrupt);
                Ok(corrupt)
            },
            "remove corrupt values",
        )?;
        Ok(removed)
    }

    /// Deletes the blocks `scan` yields that `chosen` picks, in one batch made durable by one
    /// sync; returns how many partitions' offsets they held (a value that does not decode counts
    /// as one).
    fn delete_where<I>(
        &self,
        scan: impl FnOnce() -> I,
        mut chosen: impl FnMut(&[u8]) -> Result<bool>,
        operation: &'static str,
    ) -> Result<usize>
    where
        I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    {
        self.check_writable()?;
        let deleted = {
            let writer = self.lock_writer();
            let mut removed = Vec::new();
            let mut deleted = 0;
            for entry in scan() {
                let (key, value) = entry.map_err(|source| self.storage("scan offsets", source))?;
                if !chosen(&key)? {
                    continue;
                }
                deleted += record::decode(&key, &value).map_or(1, |value| value.block.len());
                removed.push(key);
            }
            if !removed.is_empty() {
                // The floor keeps the store's sequence from going down with the values.
                let commit_seq = self.next_seq(&writer);
                let floor = meta::encode_number(meta::SEQ_FLOOR_KEY, commit_seq);
                let outcome = (&self.tree, &self.meta).transaction(|(tree, meta)| {
                    for key in &removed {
                        let _previous = tree.remove(key)?;
                    }
                    let _previous = meta.insert(meta::SEQ_FLOOR_KEY, &floor[..])?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                });
                match outcome {
                    Ok(()) => self.applied(commit_seq, &writer),
                    Err(TransactionError::Abort(())) => unreachable!("a deletion never aborts"),
                    Err(TransactionError::Storage(source)) => {
                        return Err(self.poison(operation, source));
                    }
                }
            }
            deleted
        };
        if deleted > 0 {
            self.sync()?;
        }
        Ok(deleted)
    }

    /// Moves every committed offset that is past its partition's log end back to the log end,
    /// durably (each block a compare-and-swap, one sync after them all; a crash in between
    /// leaves offsets that the next open's clamp moves), and reports what it found. Call it
    /// right after opening, with the durable log ends: a committed offset must never point past
    /// the durable log, or a group would skip the events written there after a crash.
    /// `log_end(topic, partition)` returns the log end, or `None` for a partition the caller
    /// does not know (left as it is, and listed in the report). A clamped offset keeps its
    /// metadata and gets the current time. An entry that fails its checks is skipped and
    /// listed (reads of it fail; a reset or a group deletion overwrites it), so that one
    /// corrupt value does not stop the store from opening.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a block changed to a corrupt value between the scan and its write;
    /// [`Error::Storage`], [`Error::Io`] or [`Error::Poisoned`] if sled, the write or the sync
    /// failed.
    pub fn clamp_to_log_ends(
        &self,
        mut log_end: impl FnMut(&str, u32) -> Option<u64>,
    ) -> Result<ClampReport> {
        self.check_writable()?;
        let commit_time_ms = self.clock.now_ms();
        let mut report = ClampReport::default();
        {
            let writer = self.lock_writer();
            // Found in one scan, then written block by block as compare-and-swaps that clamp
            // what is stored then.
            let mut to_clamp: Vec<(sled::IVec, Vec<(u8, u64)>)> = Vec::new();
            for entry in self.tree.iter() {
                let (key, value) =
                    entry.map_err(|source| self.storage("scan the offsets", source))?;
                let (Ok(decoded), Ok(block)) =
                    (self.decode_key(&key), self.decode_value(&key, &value))
                else {
                    report.corrupt.push(keys::readable(&key));
                    continue;
                };
                let mut changed = Vec::new();
                for (slot, committed) in block.iter() {
                    report.examined += 1;
                    let partition = keys::partition_of(decoded.block, slot);
                    let at = GroupPartition {
                        group: decoded.group.to_string(),
                        topic: decoded.topic.to_string(),
                        partition,
                    };
                    match log_end(decoded.topic, partition) {
                        None => report.without_log_end.push(at),
                        Some(end) if committed.offset > end => {
                            changed.push((slot, end));
                            report.clamped.push(Clamped {
                                at,
                                committed: committed.offset,
                                log_end: end,
                            });
                        }
                        Some(_) => {}
                    }
                }
                if !changed.is_empty() {
                    to_clamp.push((key, changed));
                }
            }
            for (key, changed) in &to_clamp {
                let commit_seq = self.next_seq(&writer);
                let written = self.swap_block(key, "clamp offsets", |stored| {
                    // Deleted meanwhile: nothing left to clamp.
                    let Some(bytes) = stored else {
                        return Ok(None);
                    };
                    let mut block = self.decode_value(key, bytes)?;
                    for &(slot, end) in changed {
                        if let Some(committed) = block.get(slot).filter(|c| c.offset > end) {
                            let clamped = Committed {
                                offset: end,
                                commit_time_ms,
                                metadata: committed.metadata.clone(),
                            };
                            block.set(slot, clamped);
                        }
                    }
                    Ok(Some(record::encode(key, &block, commit_seq)))
                })?;
                if written {
                    self.applied(commit_seq, &writer);
                }
            }
        }
        if !report.clamped.is_empty() {
            self.sync()?;
        }
        Ok(report)
    }

    /// Checks and encodes a batch before its transaction.
    fn prepare<'a>(
        &self,
        group: &str,
        commits: &'a [Commit<'a>],
    ) -> Result<(Vec<Prepared<'a>>, u64)> {
        check_name(NameKind::Group, group)?;
        let mut seen = HashSet::with_capacity(commits.len());
        for commit in commits {
            check_name(NameKind::Topic, commit.topic)?;
            if commit.metadata.len() > METADATA_BYTES_MAX {
                return Err(Error::MetadataTooLong {
                    topic: commit.topic.to_string(),
                    partition: commit.partition,
                    bytes: commit.metadata.len(),
                    maximum: METADATA_BYTES_MAX,
                });
            }
            if !seen.insert((commit.topic, commit.partition)) {
                return Err(Error::DuplicatePartition {
                    topic: commit.topic.to_string(),
                    partition: commit.partition,
                });
            }
        }
        self.check_writable()?;
        let commit_time_ms = self.clock.now_ms();
        let mut blocks: BTreeMap<(&str, u32), Prepared<'a>> = BTreeMap::new();
        for (place, commit) in commits.iter().enumerate() {
            let (block, slot) = keys::block_of(commit.partition);
            blocks
                .entry((commit.topic, block))
                .or_insert_with(|| Prepared {
                    key: keys::encode(group, commit.topic, block),
                    commits: Vec::new(),
                })
                .commits
                .push((place, slot, commit));
        }
        let prepared = blocks.into_values().collect();
        Ok((prepared, commit_time_ms))
    }

    /// Writes the value `update` makes of `key`'s stored value, as a compare-and-swap against
    /// the bytes it was made from, reading again and retrying if another writer got in between
    /// (`update` returning `None`: nothing to write). Returns whether it wrote. `update`'s
    /// error (a refusal, a corrupt value) is returned as it is; a failed write poisons the
    /// store.
    fn swap_block(
        &self,
        key: &[u8],
        operation: &'static str,
        update: impl Fn(Option<&[u8]>) -> Result<Option<Vec<u8>>>,
    ) -> Result<bool> {
        loop {
            let stored = self
                .tree
                .get(key)
                .map_err(|source| self.storage("read an offset", source))?;
            let Some(value) = update(stored.as_deref())? else {
                return Ok(false);
            };
            match self.tree.compare_and_swap(key, stored, Some(value)) {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(_changed)) => {}
                Err(source) => return Err(self.poison(operation, source)),
            }
        }
    }

    /// Inside a transaction: checks each commit against the stored values and writes them.
    fn apply(
        &self,
        tree: &TransactionalTree,
        group: &str,
        prepared: &[Prepared<'_>],
        commit_time_ms: u64,
        commit_seq: u64,
    ) -> ConflictableTransactionResult<(), Error> {
        let mut stored = Vec::with_capacity(prepared.len());
        for block in prepared {
            stored.push(tree.get(&block.key)?);
        }
        let stored: Vec<Option<&[u8]>> = stored.iter().map(Option::as_deref).collect();
        let values = self
            .updated(group, prepared, &stored, commit_time_ms, commit_seq)
            .map_err(ConflictableTransactionError::Abort)?;
        for (block, value) in prepared.iter().zip(values) {
            let _previous = tree.insert(block.key.as_slice(), value)?;
        }
        Ok(())
    }

    /// The values of `prepared`'s blocks with their commits applied to the `stored` values
    /// (same order), if the commit rule allows every commit. The commits are checked in the
    /// caller's order, each block decoded when its first commit is checked, so the error names
    /// the first commit refused (or whose stored value is corrupt) in that order.
    fn updated(
        &self,
        group: &str,
        prepared: &[Prepared<'_>],
        stored: &[Option<&[u8]>],
        commit_time_ms: u64,
        commit_seq: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let mut blocks: Vec<Option<Block>> = vec![None; prepared.len()];
        let mut in_order: Vec<(usize, usize, u8, &Commit<'_>)> = prepared
            .iter()
            .enumerate()
            .flat_map(|(at, block)| {
                block
                    .commits
                    .iter()
                    .map(move |&(place, slot, commit)| (place, at, slot, commit))
            })
            .collect();
        in_order.sort_unstable_by_key(|&(place, ..)| place);
        for &(_, at, slot, commit) in &in_order {
            let block = match &mut blocks[at] {
                Some(block) => block,
                empty => empty.insert(match stored[at] {
                    None => Block::default(),
                    Some(bytes) => self.decode_value(&prepared[at].key, bytes)?,
                }),
            };
            refuse(group, commit, block.get(slot).map(|c| c.offset))?;
        }
        let mut blocks: Vec<Block> = blocks
            .into_iter()
            .collect::<Option<_>>()
            .expect("every block holds a commit, so every block was decoded");
        for (_, at, slot, commit) in in_order {
            blocks[at].set(
                slot,
                Committed {
                    offset: commit.offset,
                    commit_time_ms,
                    metadata: commit.metadata.to_string(),
                },
            );
        }
        Ok(prepared
            .iter()
            .zip(&blocks)
            .map(|(prepared, block)| record::encode(&prepared.key, block, commit_seq))
            .collect())
    }

    /// Makes every write so far durable: sled's flush, then `fdatasync` of its log file.
    ///
    /// One sync at a time, and none once the store is poisoned: Linux reports a writeback
    /// error to one `fdatasync` of an open file only, so a second writer's sync running beside
    /// (or after) a failing one could return `Ok` for a value that never reached the disk.
    /// Writers share syncs (group commit): a write applied before a sync started is covered
    /// by it, so a writer whose ticket a finished sync already covers returns at once.
    fn sync(&self) -> Result<()> {
        // Taken after this caller's write was applied to sled.
        let ticket = self.sync_tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_writable()?;
        if synced.ticket >= ticket {
            return Ok(());
        }
        // Every write with a ticket up to here was applied before this flush starts, and so
        // was every write up to this sequence (a write records its sequence before it takes
        // its ticket).
        let covered = self.sync_tickets.load(Ordering::SeqCst);
        let applied_seq = self.applied_seq.load(Ordering::SeqCst);
        if let Err(source) = self.db.flush() {
            return Err(self.poison("flush", source));
        }
        if let Err(source) = self.log_file.sync_data() {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(Error::Io {
                operation: "sync (fdatasync) sled's log file",
                path: self.directory.join(SLED_LOG_FILE),
                source,
            });
        }
        synced.ticket = covered;
        synced.commit_seq = synced.commit_seq.max(applied_seq);
        Ok(())
    }

    /// The commit sequence for the next write. `_writer` shows the writer lock is held: the
    /// number stays this writer's until it calls [`OffsetStore::applied`] or gives up.
    fn next_seq(&self, _writer: &MutexGuard<'_, ()>) -> u64 {
        let next = self.applied_seq.load(Ordering::SeqCst) + 1;
        assert!(next > 0, "the commit sequence wrapped");
        next
    }

    /// Records that the write numbered `commit_seq` is applied to sled (not yet synced).
    fn applied(&self, commit_seq: u64, _writer: &MutexGuard<'_, ()>) {
        let previous = self.applied_seq.swap(commit_seq, Ordering::SeqCst);
        assert!(
            commit_seq > previous,
            "commit sequence {commit_seq} applied after {previous}"
        );
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Poisoned {
                directory: self.directory.clone(),
            });
        }
        Ok(())
    }

    /// Marks the store poisoned and returns the error that caused it.
    fn poison(&self, operation: &'static str, source: sled::Error) -> Error {
        self.poisoned.store(true, Ordering::SeqCst);
        self.storage(operation, source)
    }

    fn storage(&self, operation: &'static str, source: sled::Error) -> Error {
        Error::Storage {
            operation,
            directory: self.directory.clone(),
            source,
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, only the order of writers: a panic while it was held left
        // nothing half-done in it, so its poison flag means nothing.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decode_key<'k>(&self, key: &'k [u8]) -> Result<keys::Key<'k>> {
        keys::decode(key).map_err(|source| self.corrupt(key, source))
    }

    fn decode_value(&self, key: &[u8], value: &[u8]) -> Result<Block> {
        record::decode(key, value)
            .map(|value| value.block)
            .map_err(|source| self.corrupt(key, source))
    }

    fn corrupt(&self, key: &[u8], source: DecodeError) -> Error {
        Error::Corrupt {
            directory: self.directory.clone(),
            key: keys::readable(key),
            source,
        }
    }
}

/// The commit rule for `commit` over the stored offset `current`, as this crate's error.
fn refuse(group: &str, commit: &Commit<'_>, current: Option<u64>) -> Result<()> {
    match commit::check(current, commit.expected, commit.offset) {
        Ok(()) => Ok(()),
        Err(Refusal::Conflict { actual }) => Err(Error::Conflict {
            group: group.to_string(),
            topic: commit.topic.to_string(),
            partition: commit.partition,
            expected: commit.expected,
            actual,
        }),
        Err(Refusal::Backwards { current }) => Err(Error::Backwards {
            group: group.to_string(),
            topic: commit.topic.to_string(),
            partition: commit.partition,
            current,
            requested: commit.offset,
        }),
    }
}

fn check_name(kind: NameKind, name: &str) -> Result<()> {
    validate_name(name).map_err(|source| Error::InvalidName { kind, source })
}

/// Maps the abort value of a transaction error, keeping the conflict and storage cases.
fn map_abort<E, F>(
    error: ConflictableTransactionError<E>,
    f: impl FnOnce(E) -> F,
) -> ConflictableTransactionError<F> {
    match error {
        ConflictableTransactionError::Abort(abort) => ConflictableTransactionError::Abort(f(abort)),
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
        ConflictableTransactionError::Storage(source) => {
            ConflictableTransactionError::Storage(source)
        }
    }
}

// Shared between threads behind an `Arc`.
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<OffsetStore>();
};
