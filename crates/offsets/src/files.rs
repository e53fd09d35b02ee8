//! The file-system calls of this crate outside sled: the directory lock, opening sled (waiting
//! out this process's previous store), removing interrupted snapshots, syncing a directory,
//! reading and atomically replacing the witness file, and copying a directory.
//!
//! Invariant: a witness file is only ever replaced whole (a temporary file, synced, renamed
//! over it, the directory synced), so a crash leaves the old witness or the new one.

use std::ffi::OsString;
use std::fs::{File, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::LOCK_FILE_NAME;
use crate::witness::{self, Witness, WitnessFound, WITNESS_BYTES};

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

/// Reads the witness file at `path`: absent, intact, or failing its checks. At most one byte
/// more than a witness is read, whatever the file's length.
///
/// # Errors
///
/// [`Error::Io`] if the file exists but cannot be read.
pub(crate) fn read_witness(path: &Path) -> Result<WitnessFound> {
    let io = |source| Error::Io {
        operation: "read the witness file",
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(WitnessFound::Absent),
        Err(error) => return Err(io(error)),
    };
    let mut bytes = Vec::with_capacity(WITNESS_BYTES + 1);
    file.take(WITNESS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(match witness::decode(&bytes) {
        Ok(witness) => WitnessFound::Valid(witness),
        Err(problem) => WitnessFound::Invalid(problem),
    })
}

/// Replaces the witness file at `path` with `witness`, atomically and durably: written to
/// `<path>.tmp`, `fdatasync`ed, renamed over `path`, and the directory `fsync`ed.
///
/// # Errors
///
/// [`Error::Io`] naming the step that failed.
pub(crate) fn write_witness(path: &Path, witness: &Witness) -> Result<()> {
    let mut temporary = OsString::from(path.as_os_str());
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let io = |operation, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    let mut file = File::create(&temporary).map_err(io("create the witness file", &temporary))?;
    file.write_all(&witness::encode(witness))
        .and_then(|()| file.sync_data())
        .map_err(io("write the witness file", &temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io("rename the witness file over", path))?;
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_directory(parent)
}

/// Copies the regular files of `from`, recursively, into a new directory `to` (for inspecting
/// a copy of a store). Other kinds of entry are skipped.
///
/// # Errors
///
/// [`Error::Io`] naming the file that could not be listed, read or written.
pub(crate) fn copy_directory(from: &Path, to: &Path) -> Result<()> {
    let io = |operation, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            operation,
            path,
            source,
        }
    };
    std::fs::create_dir(to).map_err(io("create the copy's directory", to))?;
    for entry in std::fs::read_dir(from).map_err(io("list the directory", from))? {
        let entry = entry.map_err(io("list the directory", from))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("inspect", &path))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_directory(&path, &target)?;
        } else if kind.is_file() {
            let _bytes = std::fs::copy(&path, &target).map_err(io("copy", &path))?;
        }
    }
    Ok(())
}
