//! One segment file and its sparse index: naming, creation, the lazily loaded summary of a
//! sealed segment, and index lookups.
//!
//! Invariants:
//! - a segment file is named by its 20-digit zero-padded base offset (`00000000000000000042.log`)
//!   and its header repeats that base offset;
//! - a sealed segment was fully fsynced before the next segment was created, so every byte of
//!   it is a valid frame: an invalid frame there is corruption;
//! - an index file is derived data: it is trusted only if its CRC holds and it agrees with the
//!   segment (base offset, end offset, length); otherwise it is rebuilt from the segment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::{IndexEntry, IndexFile, SegmentHeader, INDEX_FILE_LEN_MAX, SEGMENT_HEADER_LEN};
use crate::scan;
use crate::storage::{self, OpenMode, Storage, StorageFile};

/// File name suffix of segments.
pub(crate) const SEGMENT_SUFFIX: &str = ".log";
/// File name suffix of index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// File name suffix of files being written before an atomic rename.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The file name of the segment with `base_offset`.
pub(crate) fn segment_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{SEGMENT_SUFFIX}")
}

/// The file name of the index of the segment with `base_offset`.
pub(crate) fn index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}{INDEX_SUFFIX}")
}

/// Parses `NNNNNNNNNNNNNNNNNNNN<suffix>` into its base offset.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What is known of a segment's contents: its extent, timestamps and sparse index.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Offset after the segment's last event.
    pub end_offset: u64,
    /// Bytes of valid data in the file.
    pub end_position: u64,
    /// Largest timestamp in the segment (0 when empty).
    pub timestamp_max_ms: u64,
    /// Sparse index entries.
    pub entries: Vec<IndexEntry>,
}

/// The extent and timestamps of a segment, without its index entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SummaryInfo {
    pub end_offset: u64,
    pub end_position: u64,
    pub timestamp_max_ms: u64,
}

impl Summary {
    /// An empty segment's summary.
    pub(crate) fn empty(base_offset: u64) -> Self {
        Summary {
            end_offset: base_offset,
            end_position: SEGMENT_HEADER_LEN as u64,
            timestamp_max_ms: 0,
            entries: Vec::new(),
        }
    }

    pub(crate) fn info(&self) -> SummaryInfo {
        SummaryInfo {
            end_offset: self.end_offset,
            end_position: self.end_position,
            timestamp_max_ms: self.timestamp_max_ms,
        }
    }

    /// Where to start reading for `offset`: the position and first offset of the last indexed
    /// frame at or before it (or the segment's first frame).
    pub(crate) fn seek(&self, base_offset: u64, offset: u64) -> (u64, u64) {
        let relative = offset.saturating_sub(base_offset);
        let at = self
            .entries
            .partition_point(|entry| u64::from(entry.relative_offset) <= relative);
        match at.checked_sub(1).map(|i| self.entries[i]) {
            Some(entry) => (
                u64::from(entry.position),
                base_offset + u64::from(entry.relative_offset),
            ),
            None => (SEGMENT_HEADER_LEN as u64, base_offset),
        }
    }

    /// Where to start scanning for the first event with timestamp ≥ `timestamp_ms`.
    pub(crate) fn seek_time(&self, base_offset: u64, timestamp_ms: u64) -> (u64, u64) {
        let at = self
            .entries
            .partition_point(|entry| entry.timestamp_max_before_ms < timestamp_ms);
        match at.checked_sub(1).map(|i| self.entries[i]) {
            Some(entry) => (
                u64::from(entry.position),
                base_offset + u64::from(entry.relative_offset),
            ),
            None => (SEGMENT_HEADER_LEN as u64, base_offset),
        }
    }

    pub(crate) fn to_index_file(&self, base_offset: u64) -> IndexFile {
        IndexFile {
            base_offset,
            end_offset: self.end_offset,
            end_position: self.end_position,
            timestamp_max_ms: self.timestamp_max_ms,
            entries: self.entries.clone(),
        }
    }
}

/// One segment of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub index_path: PathBuf,
    file: Mutex<Option<Arc<dyn StorageFile>>>,
    /// What the header check found when the file was first opened for reading (a sealed
    /// segment's header is checked then, not at open, which reads no sealed segment).
    header_damage: Mutex<Option<Error>>,
    /// The summary: always present for the active segment (kept current by the writer, and
    /// ahead of what readers may see); loaded on first use for a sealed one.
    summary: RwLock<Option<Summary>>,
}

impl Segment {
    pub(crate) fn new(dir: &Path, base_offset: u64) -> Self {
        Segment {
            base_offset,
            path: dir.join(segment_file_name(base_offset)),
            index_path: dir.join(index_file_name(base_offset)),
            file: Mutex::new(None),
            header_damage: Mutex::new(None),
            summary: RwLock::new(None),
        }
    }

    pub(crate) fn with_file(self, file: Arc<dyn StorageFile>) -> Self {
        *lock(&self.file) = Some(file);
        self
    }

    /// Sets the open file (the active segment's read-write handle).
    pub(crate) fn set_file(&self, file: Arc<dyn StorageFile>) {
        *lock(&self.file) = Some(file);
    }

    /// The open file, opening it read-only on first use (and checking its header then: see
    /// [`Segment::take_header_damage`]).
    pub(crate) fn file(&self, storage: &dyn Storage) -> Result<Arc<dyn StorageFile>> {
        let mut slot = lock(&self.file);
        if let Some(file) = slot.as_ref() {
            return Ok(file.clone());
        }
        let file = storage
            .open(&self.path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", &self.path, e))?;
        let len = file
            .len()
            .map_err(|e| Error::io("read length of segment", &self.path, e))?;
        match check_header(&*file, &self.path, self.base_offset, len) {
            Ok(_) => {}
            Err(error) if error.is_corruption() => *lock(&self.header_damage) = Some(error),
            Err(error) => return Err(error),
        }
        *slot = Some(file.clone());
        Ok(file)
    }

    /// Damage the header check found when the file was first opened, once: the frames may be
    /// intact (reads go on), but the log must stop taking writes.
    pub(crate) fn take_header_damage(&self) -> Option<Error> {
        lock(&self.header_damage).take()
    }

    /// The summary's extent and timestamps, if set or loaded.
    pub(crate) fn info(&self) -> Option<SummaryInfo> {
        read(&self.summary).as_ref().map(Summary::info)
    }

    /// Replaces the summary (the writer does this for the active segment).
    pub(crate) fn set_summary(&self, summary: Summary) {
        *write(&self.summary) = Some(summary);
    }

    /// Changes the summary in place (the writer does this after each append).
    pub(crate) fn update_summary(&self, f: impl FnOnce(&mut Summary)) {
        if let Some(summary) = write(&self.summary).as_mut() {
            f(summary);
        }
    }

    /// Where to start reading for `offset` (see [`Summary::seek`]); the first frame if the
    /// summary is not loaded.
    pub(crate) fn seek(&self, offset: u64) -> (u64, u64) {
        match read(&self.summary).as_ref() {
            Some(summary) => summary.seek(self.base_offset, offset),
            None => (SEGMENT_HEADER_LEN as u64, self.base_offset),
        }
    }

    /// Where to start scanning for a timestamp (see [`Summary::seek_time`]).
    pub(crate) fn seek_time(&self, timestamp_ms: u64) -> (u64, u64) {
        match read(&self.summary).as_ref() {
            Some(summary) => summary.seek_time(self.base_offset, timestamp_ms),
            None => (SEGMENT_HEADER_LEN as u64, self.base_offset),
        }
    }

    /// The index file for the current summary, if there is one.
    pub(crate) fn index_file(&self) -> Option<IndexFile> {
        read(&self.summary)
            .as_ref()
            .map(|summary| summary.to_index_file(self.base_offset))
    }

    /// The summary of a sealed segment whose successor starts at `end_offset`: from its index
    /// file if that is intact and agrees, otherwise rebuilt by scanning (and the index
    /// rewritten, best effort).
    ///
    /// # Errors
    /// I/O errors, and [`Error::Corrupt`] if the segment holds an invalid frame.
    pub(crate) fn sealed_info(
        &self,
        storage: &dyn Storage,
        end_offset: u64,
        index_interval_bytes: u32,
    ) -> Result<SummaryInfo> {
        if let Some(info) = self.info() {
            return Ok(info);
        }
        let file = self.file(storage)?;
        let file_len = file
            .len()
            .map_err(|e| Error::io("read length of segment", &self.path, e))?;
        let summary = match self.read_index(storage, end_offset, file_len) {
            Some(summary) => summary,
            None => {
                let summary = self.rebuild(&*file, file_len, end_offset, index_interval_bytes)?;
                // The index is derived data: a failed write only costs a rebuild next time.
                if let Err(error) = write_index_file(
                    storage,
                    &self.index_path,
                    &summary.to_index_file(self.base_offset),
                    false,
                ) {
                    tracing::warn!(path = %self.index_path.display(), %error, "could not rewrite an index file");
                }
                summary
            }
        };
        let info = summary.info();
        let mut slot = write(&self.summary);
        if slot.is_none() {
            *slot = Some(summary);
        }
        Ok(info)
    }

    /// Scans the whole sealed segment; any invalid frame, or an end that is not `end_offset`,
    /// is corruption.
    pub(crate) fn rebuild(
        &self,
        file: &dyn StorageFile,
        file_len: u64,
        end_offset: u64,
        index_interval_bytes: u32,
    ) -> Result<Summary> {
        check_header(file, &self.path, self.base_offset, file_len)?;
        let outcome = scan::scan_segment(
            file,
            &self.path,
            scan::ScanStart::first_frame(self.base_offset, index_interval_bytes),
            file_len,
            false,
        )?;
        if let Some(invalid) = outcome.first_invalid() {
            return Err(Error::corrupt(
                &self.path,
                invalid.position,
                format!("invalid frame in a sealed segment: {}", invalid.reason),
            ));
        }
        if outcome.next_offset != end_offset {
            return Err(Error::corrupt(
                &self.path,
                outcome.valid_end,
                format!(
                    "sealed segment ends at offset {} but the next segment starts at {end_offset}",
                    outcome.next_offset
                ),
            ));
        }
        Ok(Summary {
            end_offset: outcome.next_offset,
            end_position: outcome.valid_end,
            timestamp_max_ms: outcome.index.timestamp_max_ms,
            entries: outcome.index.entries,
        })
    }

    /// Reads the index file, returning `None` if it is missing, damaged or disagrees.
    fn read_index(&self, storage: &dyn Storage, end_offset: u64, file_len: u64) -> Option<Summary> {
        let index = read_index_file(storage, &self.index_path)?;
        let agrees = index.base_offset == self.base_offset
            && index.end_offset == end_offset
            && index.end_position == file_len;
        if !agrees {
            tracing::info!(path = %self.index_path.display(), "index file disagrees with its segment; rebuilding");
            return None;
        }
        Some(Summary {
            end_offset: index.end_offset,
            end_position: index.end_position,
            timestamp_max_ms: index.timestamp_max_ms,
            entries: index.entries,
        })
    }
}

/// Reads and decodes an index file; `None` if it is missing, too large or damaged.
pub(crate) fn read_index_file(storage: &dyn Storage, path: &Path) -> Option<IndexFile> {
    let file = storage.open(path, OpenMode::Read).ok()?;
    let len = file.len().ok()?;
    if len > INDEX_FILE_LEN_MAX {
        return None;
    }
    let mut bytes = vec![0u8; len as usize];
    storage::read_exact_at(&*file, &mut bytes, 0).ok()?;
    match IndexFile::decode(&bytes) {
        Ok(index) => Some(index),
        Err(error) => {
            tracing::info!(path = %path.display(), %error, "ignoring a damaged index file");
            None
        }
    }
}

/// Writes an index file through a temporary file and a rename; with `durable`, fsyncs the file
/// before the rename (the caller syncs the directory).
pub(crate) fn write_index_file(
    storage: &dyn Storage,
    path: &Path,
    index: &IndexFile,
    durable: bool,
) -> Result<()> {
    crate::atomic::write_file(storage, path, &index.encode(), durable)
}

/// Checks a segment's header against its file name.
///
/// # Errors
/// [`Error::Corrupt`] naming position 0 if the header is damaged or names another offset.
pub(crate) fn check_header(
    file: &dyn StorageFile,
    path: &Path,
    base_offset: u64,
    file_len: u64,
) -> Result<SegmentHeader> {
    let mut bytes = [0u8; SEGMENT_HEADER_LEN];
    let available = (file_len as usize).min(SEGMENT_HEADER_LEN);
    let read = file
        .read_at(&mut bytes[..available], 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let header = SegmentHeader::decode(&bytes[..read]).map_err(|e| Error::decode(path, 0, e))?;
    if header.base_offset != base_offset {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "header names base offset {} but the file name says {base_offset}",
                header.base_offset
            ),
        ));
    }
    Ok(header)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Locks guard plain data that every critical section leaves consistent, so a panic in
    // another thread (a failed assertion) does not make the data unusable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(index_file_name(u64::MAX), "18446744073709551615.index");
        assert_eq!(
            parse_file_name("00000000000000000042.log", SEGMENT_SUFFIX),
            Some(42)
        );
        assert_eq!(parse_file_name("42.log", SEGMENT_SUFFIX), None);
        assert_eq!(
            parse_file_name("0000000000000000004x.log", SEGMENT_SUFFIX),
            None
        );
    }

    #[test]
    fn seek_finds_the_floor_entry() {
        let summary = Summary {
            end_offset: 200,
            end_position: 10_000,
            timestamp_max_ms: 50,
            entries: vec![
                IndexEntry {
                    relative_offset: 10,
                    position: 4100,
                    timestamp_max_before_ms: 10,
                },
                IndexEntry {
                    relative_offset: 20,
                    position: 8200,
                    timestamp_max_before_ms: 20,
                },
            ],
        };
        assert_eq!(summary.seek(100, 100), (SEGMENT_HEADER_LEN as u64, 100));
        assert_eq!(summary.seek(100, 109), (SEGMENT_HEADER_LEN as u64, 100));
        assert_eq!(summary.seek(100, 110), (4100, 110));
        assert_eq!(summary.seek(100, 150), (8200, 120));
        assert_eq!(summary.seek_time(100, 5), (SEGMENT_HEADER_LEN as u64, 100));
        assert_eq!(summary.seek_time(100, 15), (4100, 110));
        assert_eq!(summary.seek_time(100, 21), (8200, 120));
    }
}
