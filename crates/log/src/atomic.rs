//! Crash-safe replacement of small files (checkpoints, index files): write a temporary file,
//! fsync it, rename it over the target. The caller fsyncs the directory to make the rename
//! durable. A crash leaves either the old file or the new one, never a mix; leftover `.tmp`
//! files are removed when the log opens.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::segment::TMP_SUFFIX;
use crate::storage::{OpenMode, Storage};

/// The temporary path used while replacing `path`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`. With `durable`, the new bytes are fsynced before the rename;
/// without, a crash may leave a damaged file behind, so only use that for files whose content
/// is checked when read (index files carry a CRC).
///
/// # Errors
/// [`Error::Io`] naming the step that failed; [`Error::StorageFull`] if the device is full
/// (the target is then unchanged).
pub(crate) fn write_file(
    storage: &dyn Storage,
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<()> {
    let tmp = tmp_path(path);
    let file = storage
        .open(&tmp, OpenMode::CreateTruncate)
        .map_err(|e| Error::write("create", &tmp, e))?;
    if let Err(source) = file.write_all_at(bytes, 0) {
        // Give back what the partial temporary file holds (it matters on a full disk); the
        // target is untouched, and a leftover `.tmp` is removed at the next open anyway.
        drop(file);
        let _ = storage.remove_file(&tmp);
        return Err(Error::write("write", &tmp, source));
    }
    if durable {
        file.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    }
    drop(file);
    storage
        .rename(&tmp, path)
        .map_err(|e| Error::io("rename into place", path, e))?;
    Ok(())
}
