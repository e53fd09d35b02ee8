//! The file-system calls of this crate outside sled: the directory lock, opening sled (waiting
//! out this process's previous store), removing interrupted snapshots, and syncing a
//! directory.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::LOCK_FILE_NAME;

/// Opens sled in `directory`. This store's own lock file is already held, so a sled lock
/// conflict can only be this process's previous store on the directory whose background
/// threads have not yet let go of sled's file lock (they do so shortly after the drop): wait
/// for that, up to a few seconds, instead of failing a reopen.
pub(crate) fn open_sled(directory: &Path, cache_capacity_bytes: u64) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(directory)
            .cache_capacity(cache_capacity_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            // sled reports its lock conflict as an `Other` I/O error with this message.
            Err(sled::Error::Io(error))
                if error.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(Error::Open {
                    directory: directory.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes `snap.*.generating` files: snapshots whose writing a crash interrupted.
///
/// sled 0.34 writes a snapshot at open (whenever its log advanced since the last one) to
/// `snap.<lsn>.generating`, fsyncs it and renames it to `snap.<lsn>`. Its reader lists every
/// `snap.*` file and reads the one that sorts last, which is such a leftover when a kill
/// landed before the rename; an empty or partial one fails the open with `Corruption`
/// (sled issues #1527, #1533). A leftover is never the only copy of anything: the previous
/// complete snapshot is removed only after the rename, and the log holds everything the
/// snapshot summarises. Called with this store's lock held, so no sled of ours is writing it.
pub(crate) fn remove_interrupted_snapshots(directory: &Path) -> Result<()> {
    let entries = std::fs::read_dir(directory).map_err(|source| Error::Io {
        operation: "list the directory",
        path: directory.to_path_buf(),
        source,
    })?;
    let mut removed = false;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            operation: "list the directory",
            path: directory.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| Error::Io {
                operation: "remove an interrupted sled snapshot",
                path: path.clone(),
                source,
            })?;
            removed = true;
        }
    }
    if removed {
        sync_directory(directory)?;
    }
    Ok(())
}

/// Locks the directory for this process, through [`LOCK_FILE_NAME`]. sled locks its own files
/// too, but its error does not say "locked" in a way a program can tell apart from damage —
/// and damage calls for moving the directory aside, which must never be done to a directory
/// another process is using.
pub(crate) fn lock_directory(directory: &Path) -> Result<File> {
    let path = directory.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| Error::Io {
            operation: "open the lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            directory: directory.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(Error::Io {
            operation: "lock the lock file",
            path,
            source,
        }),
    }
}

/// `fsync`s a directory, so that the names in it are durable.
pub(crate) fn sync_directory(directory: &Path) -> Result<()> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| Error::Io {
            operation: "sync the directory",
            path: directory.to_path_buf(),
            source,
        })
}
