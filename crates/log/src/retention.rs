//! Retention of a [`Log`]: moving the start offset (by size, age, or `truncate_before`) and
//! removing whole sealed segments below it. The new start is recorded durably in the
//! checkpoint before any segment is removed, and never passes the fsynced end.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::Log;
use crate::segment::{lock, write, Segment};

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Segment files removed.
    pub segments_removed: Vec<PathBuf>,
    /// Bytes freed.
    pub bytes_removed: u64,
    /// The log's start offset afterwards.
    pub start_offset: u64,
}

impl Log {
    /// Moves the start offset to `offset` and removes the sealed segments wholly below it.
    /// Reading below the new start is an error; the bytes of a segment that straddles it
    /// stay on disk until the whole segment is below the start.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] past the end; [`Error::Io`].
    pub fn truncate_before(&self, offset: u64) -> Result<RetentionReport> {
        let inner = &self.inner;
        let _maintenance = lock(&inner.maintenance);
        let (start, end) = self.visible_range()?;
        if offset > end.next_offset {
            return Err(Error::OffsetOutOfRange {
                offset,
                start,
                end: end.next_offset,
            });
        }
        if offset <= start {
            return Ok(RetentionReport {
                start_offset: start,
                ..RetentionReport::default()
            });
        }
        // The new start must never pass the fsynced end (under a lossy policy the events below
        // `offset` may not be synced yet, and a journal's may be in the journal only), or a
        // power cut could leave a start past the end.
        if offset > lock(&inner.sync).fsynced.next_offset {
            self.lead_sync(true)?;
        }
        let victims: Vec<(Arc<Segment>, u64)> = self
            .sealed_segments()
            .into_iter()
            .filter(|(_, next_base)| *next_base <= offset)
            .collect();
        self.remove_segments(offset, victims)
    }

    /// Applies the retention limits (`retention_bytes_max`, `retention_age_max_ms`), removing
    /// whole sealed segments from the oldest. Runs by itself after every roll; call it from a
    /// timer for age-based retention of an idle log.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Corrupt`] if a segment's size or age cannot be read.
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        let inner = &self.inner;
        let config = &inner.config;
        if config.retention_bytes_max.is_none() && config.retention_age_max_ms.is_none() {
            return Ok(RetentionReport {
                start_offset: self.start_offset(),
                ..RetentionReport::default()
            });
        }
        let _maintenance = lock(&inner.maintenance);
        let now = inner.clock.now_ms();
        let sealed = self.sealed_segments();
        let mut total = lock(&inner.writer).end.position;
        let mut infos = Vec::with_capacity(sealed.len());
        for (segment, next_base) in &sealed {
            let info = self.sealed_info(segment, *next_base)?;
            total += info.end_position;
            infos.push(info);
        }
        let mut victims = Vec::new();
        for ((segment, next_base), info) in sealed.into_iter().zip(infos) {
            let too_old = config
                .retention_age_max_ms
                .is_some_and(|age| now.saturating_sub(age) > info.timestamp_max_ms);
            let too_big = config.retention_bytes_max.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            total -= info.end_position;
            victims.push((segment, next_base));
        }
        let start = self.start_offset();
        let new_start = victims
            .last()
            .map_or(start, |(_, next_base)| (*next_base).max(start));
        self.remove_segments(new_start, victims)
    }

    /// Persists `new_start` in the checkpoint, then removes `victims` (sealed segments below it).
    fn remove_segments(
        &self,
        new_start: u64,
        victims: Vec<(Arc<Segment>, u64)>,
    ) -> Result<RetentionReport> {
        let inner = &self.inner;
        // The checkpoint may lag in a segment this removes (a refresh that met a full device
        // after a roll), whether or not `new_start` is in the active segment (`truncate_before`
        // may cut into it): move it to the fsynced end, so that it never names a segment that
        // is gone. The fsynced end is in the active segment (a roll fsyncs and marks the new
        // segment's start fsynced), which is never a victim.
        let durable = lock(&inner.sync).fsynced;
        debug_assert!(victims
            .iter()
            .all(|(segment, _)| segment.base_offset != durable.segment_base));
        self.update_checkpoint(|checkpoint| {
            checkpoint.start_offset = checkpoint.start_offset.max(new_start);
            let names_a_victim = victims
                .iter()
                .any(|(segment, _)| segment.base_offset == checkpoint.segment_base_offset);
            if names_a_victim {
                checkpoint.segment_base_offset = durable.segment_base;
                checkpoint.position = durable.position;
                checkpoint.next_offset = durable.next_offset;
            }
        })?;
        {
            let mut visible = lock(&inner.visible);
            visible.start_offset = visible.start_offset.max(new_start);
        }
        let mut report = RetentionReport {
            start_offset: self.start_offset(),
            ..RetentionReport::default()
        };
        if victims.is_empty() {
            return Ok(report);
        }
        {
            let mut map = write(&inner.segments);
            for (segment, _) in &victims {
                map.remove(&segment.base_offset);
            }
        }
        for (segment, _) in victims {
            report.bytes_removed += segment.info().map_or(0, |info| info.end_position);
            inner
                .storage
                .remove_file(&segment.path)
                .map_err(|e| Error::io("remove segment", &segment.path, e))?;
            if let Err(error) = inner.storage.remove_file(&segment.index_path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io("remove index", &segment.index_path, error));
                }
            }
            report.segments_removed.push(segment.path.clone());
        }
        inner
            .storage
            .sync_dir(&inner.dir)
            .map_err(|e| Error::io("fsync directory", &inner.dir, e))?;
        tracing::info!(dir = %inner.dir.display(), removed = report.segments_removed.len(), start_offset = report.start_offset, "retention removed segments");
        Ok(report)
    }
}
