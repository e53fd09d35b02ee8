//! [`UserTree`]: a tree of the embedder's own in the store's offsets database, written in the
//! same durable step as a consumer's acknowledgement ([`crate::Consumer::ack_with`]), so that a
//! batch's effect and the group's progress past it are kept together or not at all: each
//! batch is applied exactly once, across any crash.
//!
//! A `UserTree` holds a name, not the database: closing the store closes the database even
//! while one is alive (every call then fails with [`Error::Closed`]).

use crate::error::{Error, Result};
use crate::store::Store;

/// What [`crate::Consumer::ack_with`]'s writes get: sled's transactional view of the tree
/// (`insert`, `remove`, `get`; `?` on their errors inside the closure).
pub use weir_offsets::sled::transaction::TransactionalTree as UserWrites;
/// The result type of [`crate::Consumer::ack_with`]'s writes: `Ok`, or
/// `Err(ConflictableTransactionError::Abort(your_error))` to give up (nothing is written and
/// the batch stays leased).
pub use weir_offsets::sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult,
};

/// A tree of the embedder's own in the store's offsets database (see the module docs).
#[derive(Debug, Clone)]
pub struct UserTree {
    store: Store,
    name: String,
}

impl UserTree {
    pub(crate) fn new(store: Store, name: String) -> Self {
        UserTree { store, name }
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tree in the open offsets store.
    pub(crate) fn handle(&self) -> Result<weir_offsets::UserTree> {
        Ok(self.store.inner.offsets()?.user_tree(&self.name)?)
    }

    /// The value under `key`, if any.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Offsets`] if the database fails.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let tree = self.handle()?;
        let value = tree.get(key).map_err(|e| self.storage_error(e))?;
        Ok(value.map(|value| value.to_vec()))
    }

    /// Every key and value whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// As [`UserTree::get`].
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tree = self.handle()?;
        tree.scan_prefix(prefix)
            .map(|entry| {
                entry
                    .map(|(key, value)| (key.to_vec(), value.to_vec()))
                    .map_err(|e| self.storage_error(e))
            })
            .collect()
    }
}

impl UserTree {
    fn storage_error(&self, source: weir_offsets::sled::Error) -> Error {
        Error::Offsets(Box::new(weir_offsets::Error::Storage {
            operation: "read a user tree",
            directory: self.store.inner.root.join("offsets"),
            source,
        }))
    }
}
