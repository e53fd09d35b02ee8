//! The storage seam: every file-system call weir-log makes goes through [`Storage`] and
//! [`StorageFile`]. [`StdStorage`] is the real file system; [`crate::sim::SimStorage`] is the
//! test implementation that fails chosen calls and simulates power cuts.
//!
//! The traits are deliberately small (positional reads and writes, length changes, `sync_data`,
//! directory listing, rename, remove, directory sync and an exclusive lock) so that a test
//! implementation can model exactly which bytes and directory entries are durable.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write a new, empty file; fails if the file exists.
    CreateNew,
    /// Read and write, creating the file or truncating it to zero bytes.
    CreateTruncate,
}

/// A file opened through a [`Storage`].
#[expect(
    clippy::len_without_is_empty,
    reason = "a file's length is a size, not a collection's"
)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Reads into `buf` from `position`; returns the bytes read, short only at the end of the file.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `position`, extending the file if needed. Not durable until
    /// [`StorageFile::sync_data`] returns.
    ///
    /// # Errors
    /// The underlying I/O error; some of the bytes may have been written.
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;

    /// The file's current length in bytes.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends the file. Not durable until [`StorageFile::sync_data`] returns.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's data and length durable (`fdatasync`).
    ///
    /// # Errors
    /// The underlying I/O error. After an error the file's durable state is unknown: callers
    /// must stop writing (fail-stop) rather than retry.
    fn sync_data(&self) -> io::Result<()>;
}

/// An exclusive lock on a path, released when dropped.
pub trait StorageLock: Send + Sync + fmt::Debug {}

/// The file-system operations weir-log uses.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Names of the entries of a directory, in no particular order.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Opens a file.
    ///
    /// # Errors
    /// The underlying I/O error (`NotFound`, `AlreadyExists`, ...).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;

    /// Removes a file. Not durable until the directory is synced.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames a file, replacing `to` if it exists. Not durable until the directory is synced.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creations, renames, removals) durable.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Takes an exclusive lock on `path` (creating the file), failing at once if another
    /// process (or another handle in this one) holds it.
    ///
    /// # Errors
    /// `WouldBlock` if the lock is held; otherwise the underlying I/O error.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn StorageLock>>;

    /// Removes the directory at `path` and everything in it. The caller fsyncs the parent to
    /// make the removal durable.
    ///
    /// # Errors
    /// The underlying I/O error (`NotFound` if there is no such directory).
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
}

/// The real file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

#[derive(Debug)]
struct StdFile(File);

impl StorageFile for StdFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], position + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.0.write_all_at(buf, position)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        if broken::skips(broken::Broken::Sync) {
            return Ok(());
        }
        self.0.sync_data()
    }
}

/// The `broken-storage` feature: fsyncs that do nothing, on request, to show which suites catch
/// a missing fsync (see `docs/testing.md`). Without the feature, nothing is ever skipped.
mod broken {
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Broken {
        Sync,
        DirSync,
    }

    #[cfg(feature = "broken-storage")]
    pub(super) fn skips(what: Broken) -> bool {
        static MODE: std::sync::OnceLock<Option<Broken>> = std::sync::OnceLock::new();
        let mode = *MODE.get_or_init(|| match std::env::var("WEIR_BROKEN_STORAGE").as_deref() {
            Ok("sync") => Some(Broken::Sync),
            Ok("dir-sync") => Some(Broken::DirSync),
            _ => None,
        });
        mode == Some(what)
    }

    #[cfg(not(feature = "broken-storage"))]
    pub(super) fn skips(_what: Broken) -> bool {
        false
    }
}

#[derive(Debug)]
struct StdLock {
    // Holding the open file holds the lock; dropping it releases it.
    _file: File,
}

impl StorageLock for StdLock {}

impl Storage for StdStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::CreateTruncate => options.read(true).write(true).create(true).truncate(true),
        };
        Ok(Arc::new(StdFile(options.open(path)?)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if broken::skips(broken::Broken::DirSync) {
            return Ok(());
        }
        File::open(path)?.sync_all()
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn StorageLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the lock is held by another process or handle",
            )),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }
}

/// Reads exactly `buf.len()` bytes at `position`, failing with `UnexpectedEof` if the file is
/// shorter.
///
/// # Errors
/// The underlying I/O error, or `UnexpectedEof`.
pub fn read_exact_at(file: &dyn StorageFile, buf: &mut [u8], position: u64) -> io::Result<()> {
    let read = file.read_at(buf, position)?;
    if read == buf.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("short read: {read} of {} bytes", buf.len()),
        ))
    }
}
