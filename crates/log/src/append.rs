//! The writer side of [`Log`]: checking an append against the limits, assigning its offsets,
//! framing and writing it, rolling to a new segment, writing zeros ahead of the end, and the
//! hand-off to an outside journal ([`Log::append_start_with`]). Offsets are assigned under the
//! writer lock, once and densely; a frame is checked before it is written.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::SyncPolicy;
use crate::error::{Error, Result};
use crate::format::{self, AppendEvent, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::log::{EndPoint, Log, Writer};
use crate::scan::IndexBuilder;
use crate::segment::{self, lock, write, Segment, Summary};
use crate::storage::{OpenMode, Storage, StorageFile};
use std::path::Path;

impl Log {
    /// Appends `events` atomically (all survive a crash or none does) and returns the first
    /// event's offset. Under [`crate::SyncPolicy::Always`] it returns only once the events are
    /// fsynced; concurrent callers share fsyncs.
    ///
    /// # Errors
    /// [`Error::EmptyAppend`], [`Error::EventTooLarge`], [`Error::AppendTooLarge`],
    /// [`Error::InvalidEvent`] (checked before anything is written); [`Error::Io`] if the write
    /// or fsync failed and [`Error::Poisoned`] once any has (nothing is acknowledged after a
    /// failure); [`Error::Closed`].
    pub fn append(&self, events: &[AppendEvent<'_>]) -> Result<u64> {
        self.append_inner(events, None)
    }

    /// Appends only if the log's next offset is `expected_offset` (optimistic concurrency).
    ///
    /// # Errors
    /// [`Error::UnexpectedOffset`] naming the actual next offset; otherwise as [`Log::append`].
    pub fn append_expected(&self, events: &[AppendEvent<'_>], expected_offset: u64) -> Result<u64> {
        self.append_inner(events, Some(expected_offset))
    }

    fn append_inner(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
    ) -> Result<u64> {
        self.append_start(events, expected_offset)?.wait()
    }

    /// The first half of an append: checks, assigns offsets and writes the frame, without
    /// waiting for its fsync. Nothing is acknowledged until [`PendingAppend::wait`] returns;
    /// use it to write to several logs first and then wait for all of their fsyncs (weir-store
    /// does this for a produce that spans partitions).
    ///
    /// # Errors
    /// As [`Log::append`] (`expected_offset` as [`Log::append_expected`]).
    pub fn append_start(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
    ) -> Result<PendingAppend<'_>> {
        self.write_frame(FrameToWrite::Events(events), expected_offset, None, true)
    }

    /// [`Log::append_start`] for a caller that keeps its own journal (weir-store's): after the
    /// frame is written, and while no other append can be written to this log, `journal` gets
    /// the frame's bytes (as `docs/format.md` lays them out, its base offset inside). So a
    /// journal that records frames in the order it is called records each log's frames in
    /// offset order. Once the journal has made the frame durable, [`PendingAppend::journaled`]
    /// acknowledges it without an fsync of the segment.
    ///
    /// A journal must never hold a frame after a gap (after a crash its replay could not tell
    /// unacknowledged events from lost ones). If an earlier append on this log is neither
    /// durable nor journaled (it waits for the log's own fsync), the frame's
    /// [`JournalPoint::after_gap`] says so: the journal must then call [`Log::sync_segment`]
    /// before it writes the frame, which makes everything before it durable.
    ///
    /// # Errors
    /// As [`Log::append_start`]; `journal` is not called if the append fails.
    pub fn append_start_with(
        &self,
        events: &[AppendEvent<'_>],
        expected_offset: Option<u64>,
        journal: &mut dyn FnMut(&[u8], JournalPoint),
    ) -> Result<PendingAppend<'_>> {
        self.write_frame(
            FrameToWrite::Events(events),
            expected_offset,
            Some(journal),
            true,
        )
    }

    /// Assigns offsets and writes the frame of an append; `limits` says whether the
    /// configured limits apply (not to a frame restored from a journal: it was accepted once).
    fn write_frame(
        &self,
        frame: FrameToWrite<'_, '_>,
        expected_offset: Option<u64>,
        journal: Option<&mut JournalFn<'_>>,
        limits: bool,
    ) -> Result<PendingAppend<'_>> {
        let frame_len = match frame {
            FrameToWrite::Events(events) => self.check_append_within(events, limits)?,
            FrameToWrite::Lost(_) => FRAME_HEADER_LEN,
        };
        let inner = &self.inner;
        let (first_offset, end, rolled, journaled) = {
            let mut writer = lock(&inner.writer);
            self.check_writable(&writer)?;
            if let Some(expected) = expected_offset {
                if expected != writer.end.next_offset {
                    return Err(Error::UnexpectedOffset {
                        expected,
                        actual: writer.end.next_offset,
                    });
                }
            }
            let now = inner.clock.now_ms();
            let rolled = self.should_roll(&writer, frame_len, now);
            if rolled {
                self.roll(&mut writer, now)?;
            }
            let first_offset = writer.end.next_offset;
            let writer = &mut *writer;
            writer.timestamps.clear();
            writer.buffer.clear();
            let (len, event_count) = match frame {
                FrameToWrite::Events(events) => {
                    writer
                        .timestamps
                        .extend(events.iter().map(|event| event.timestamp_ms.unwrap_or(now)));
                    // Every frame records how far the segment files were fsynced when it was
                    // written: evidence, at recovery, that a damaged frame before it had been
                    // made durable. (Not in version 1 segments, whose readers want the field
                    // zero.)
                    let durable = (writer.active_version >= 2)
                        .then(|| inner.fsynced_next_offset.load(Ordering::Acquire));
                    let len = format::encode_frame_noting_durable(
                        &mut writer.buffer,
                        first_offset,
                        durable,
                        events,
                        &writer.timestamps,
                    );
                    (len, events.len() as u64)
                }
                FrameToWrite::Lost(count) => {
                    if writer.active_version < 2 {
                        return Err(Error::InvalidEvent {
                            index: 0,
                            reason: "a version 1 segment cannot hold a lost-events marker",
                        });
                    }
                    writer.timestamps.push(now);
                    format::encode_lost_marker(
                        &mut writer.buffer,
                        first_offset,
                        count,
                        now,
                        FRAME_HEADER_LEN as u32,
                    );
                    (FRAME_HEADER_LEN, u64::from(count))
                }
            };
            debug_assert_eq!(len, frame_len);
            debug_assert!(
                format::check_frame(&writer.buffer).is_ok(),
                "a frame must check before it is written"
            );
            let position = writer.end.position;
            self.preallocate(writer, position + len as u64)?;
            if let Err(source) = writer.file.write_all_at(&writer.buffer, position) {
                return Err(self.write_failed(writer, position, source));
            }
            writer.allocated_end = writer.allocated_end.max(position + len as u64);
            let timestamp_max_ms = writer.timestamps.iter().copied().max().unwrap_or(0);
            let entries_before = writer.index.entries.len();
            writer
                .index
                .on_frame(position, first_offset, len as u32, timestamp_max_ms);
            writer.end.position += len as u64;
            writer.end.next_offset += event_count;
            let new_entry = writer.index.entries.get(entries_before).copied();
            let (end, index_ts) = (writer.end, writer.index.timestamp_max_ms);
            writer.active.update_summary(|summary| {
                summary.end_offset = end.next_offset;
                summary.end_position = end.position;
                summary.timestamp_max_ms = index_ts;
                if let Some(entry) = new_entry {
                    summary.entries.push(entry);
                }
            });
            if !inner.config.sync_policy.is_durable() {
                self.publish(end);
            }
            // After a gap if something before it is neither durable nor journaled.
            let journaled = match journal {
                Some(journal) => {
                    let covered = writer
                        .journaled_end
                        .max(inner.durable_next_offset.load(Ordering::Acquire));
                    let point = JournalPoint {
                        first_offset,
                        end,
                        after_gap: covered < first_offset,
                    };
                    journal(&writer.buffer, point);
                    writer.journaled_end = end.next_offset;
                    true
                }
                None => false,
            };
            (first_offset, end, rolled, journaled)
        };
        Ok(PendingAppend {
            log: self,
            first_offset,
            end,
            rolled,
            journaled,
        })
    }

    /// Marks an append durable that an outside journal has fsynced: if every event before it
    /// is durable, it is now (readers see it); otherwise (an earlier append on this log was
    /// not journaled and its fsync has not ended) this waits for the log's own fsync, which
    /// covers both.
    pub(crate) fn finish_journaled(
        &self,
        first_offset: u64,
        end: EndPoint,
        rolled: bool,
    ) -> Result<()> {
        let inner = &self.inner;
        if let Some(cause) = inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        let point = JournalPoint {
            first_offset,
            end,
            after_gap: false,
        };
        if !self.mark_journaled(point) {
            self.wait_durable(end.next_offset)?;
        }
        if rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(())
    }

    /// Writes a frame taken from an outside journal back into the log after a crash
    /// (weir-store's journal replay). A frame whose events the log already holds is skipped
    /// (`Ok(0)`); a frame that starts at the log's end is appended with its events'
    /// timestamps, keys, headers and values, but not fsynced (call [`Log::sync_segment`] after
    /// the last one). Returns the events written.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the bytes are not a valid frame; [`Error::UnexpectedOffset`] if
    /// the frame starts past the log's end or overlaps it (events are missing between them, or
    /// the frame disagrees with the log); as [`Log::append`] otherwise.
    pub fn restore_frame(&self, frame: &[u8]) -> Result<u64> {
        let header = format::check_frame(frame).map_err(|e| Error::Corrupt {
            file: self.inner.dir.clone(),
            position: 0,
            reason: format!("a journaled frame is not valid: {e}"),
        })?;
        let end = self.end_offset_written();
        if header.end_offset() <= end {
            return Ok(0);
        }
        if header.base_offset != end {
            return Err(Error::UnexpectedOffset {
                expected: header.base_offset,
                actual: end,
            });
        }
        let views: Vec<format::EventView<'_>> =
            format::FrameEvents::new(&frame[..header.frame_len as usize], &header).collect();
        let headers: Vec<Vec<format::Header<'_>>> =
            views.iter().map(|v| v.headers().collect()).collect();
        let events: Vec<AppendEvent<'_>> = views
            .iter()
            .zip(&headers)
            .map(|(view, headers)| AppendEvent {
                timestamp_ms: Some(view.timestamp_ms),
                key: view.key,
                headers,
                value: view.value,
            })
            .collect();
        // The limits configured now do not apply: the frame was accepted under the ones of
        // the time, and refusing it would lose acknowledged events.
        let pending = self.write_frame(
            FrameToWrite::Events(&events),
            Some(header.base_offset),
            None,
            false,
        )?;
        if pending.rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(u64::from(header.event_count))
    }

    /// Records at the log's end that the events `first_offset..end_offset` are lost: a
    /// lost-events marker (`docs/format.md`) that readers and consumers report and step over,
    /// so that offsets stay dense and are never reused. `weir repair` writes them where
    /// acknowledged events are gone (events a damaged journal block held). Not fsynced: call
    /// [`Log::sync_segment`] after the last one.
    ///
    /// # Errors
    /// [`Error::UnexpectedOffset`] if the log does not end at `first_offset`;
    /// [`Error::InvalidEvent`] for an empty range, one of more than `u32::MAX` offsets, or a
    /// version 1 active segment; as [`Log::append`] otherwise.
    pub fn append_lost(&self, first_offset: u64, end_offset: u64) -> Result<()> {
        let count = end_offset
            .checked_sub(first_offset)
            .filter(|&count| count > 0)
            .and_then(|count| u32::try_from(count).ok())
            .ok_or(Error::InvalidEvent {
                index: 0,
                reason: "a lost range must hold 1 to u32::MAX offsets",
            })?;
        let pending =
            self.write_frame(FrameToWrite::Lost(count), Some(first_offset), None, false)?;
        if pending.rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        tracing::warn!(dir = %self.inner.dir.display(), first_offset, end_offset, "recorded lost events");
        Ok(())
    }

    /// The offset after the last written event (durable or not).
    pub(crate) fn end_offset_written(&self) -> u64 {
        lock(&self.inner.writer).end.next_offset
    }

    /// The second half of an append: waits as the sync policy requires.
    pub(crate) fn finish_append(&self, end_offset: u64, rolled: bool) -> Result<()> {
        let inner = &self.inner;
        match inner.config.sync_policy {
            SyncPolicy::Always => self.wait_durable(end_offset)?,
            SyncPolicy::IntervalLossy { interval_ms } => {
                let due = inner
                    .clock
                    .now_ms()
                    .saturating_sub(lock(&inner.sync).last_sync_ms)
                    >= interval_ms;
                if due {
                    self.wait_durable(end_offset)?;
                }
            }
            SyncPolicy::NeverLossy => {}
        }
        if rolled {
            if let Err(error) = self.apply_retention() {
                tracing::warn!(dir = %inner.dir.display(), %error, "retention after a segment roll failed");
            }
        }
        Ok(())
    }

    /// Checks an append against the limits (and the log's health) without writing anything:
    /// what [`Log::append`] checks first. weir-store checks every partition of a produce this
    /// way before writing to any of them.
    ///
    /// # Errors
    /// As the checks of [`Log::append`]; [`Error::Poisoned`].
    pub fn validate_append(&self, events: &[AppendEvent<'_>]) -> Result<()> {
        self.check_append(events)?;
        if let Some(cause) = self.inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if let Some(cause) = self.inner.damage.get() {
            return Err(Error::Damaged {
                cause: cause.clone(),
            });
        }
        Ok(())
    }

    /// Checks an append against the limits before anything is written; returns its frame length.
    fn check_append(&self, events: &[AppendEvent<'_>]) -> Result<usize> {
        self.check_append_within(events, true)
    }

    /// [`Log::check_append`], with the configured limits or only the format's.
    fn check_append_within(&self, events: &[AppendEvent<'_>], limits: bool) -> Result<usize> {
        let config = &self.inner.config;
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
        if limits && events.len() > config.append_events_max as usize {
            return Err(Error::AppendTooLarge {
                what: "events",
                actual: events.len() as u64,
                limit: u64::from(config.append_events_max),
                field: "append_events_max",
            });
        }
        let mut frame_len = FRAME_HEADER_LEN;
        for (index, event) in events.iter().enumerate() {
            let len = event.encoded_len().ok_or(Error::InvalidEvent {
                index,
                reason: "a key, value, header name or header count is too large for the format",
            })?;
            if limits && len > config.event_bytes_max as usize {
                return Err(Error::EventTooLarge {
                    index,
                    bytes: len as u64,
                    bytes_max: u64::from(config.event_bytes_max),
                });
            }
            frame_len += len;
        }
        if limits && frame_len > config.append_bytes_max as usize {
            return Err(Error::AppendTooLarge {
                what: "bytes",
                actual: frame_len as u64,
                limit: u64::from(config.append_bytes_max),
                field: "append_bytes_max",
            });
        }
        Ok(frame_len)
    }

    pub(crate) fn check_writable(&self, writer: &Writer) -> Result<()> {
        if let Some(cause) = self.inner.poison.get() {
            return Err(Error::Poisoned {
                cause: cause.clone(),
            });
        }
        if let Some(cause) = self.inner.damage.get() {
            return Err(Error::Damaged {
                cause: cause.clone(),
            });
        }
        if writer.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn should_roll(&self, writer: &Writer, frame_len: usize, now_ms: u64) -> bool {
        let config = &self.inner.config;
        let has_data = writer.end.position > SEGMENT_HEADER_LEN as u64;
        let too_big = writer.end.position + frame_len as u64 > config.segment_bytes_max;
        let too_old = config
            .segment_age_max_ms
            .is_some_and(|age| now_ms.saturating_sub(writer.created_ms) >= age);
        has_data && (too_big || too_old)
    }

    /// Seals the active segment (fsynced, index written) and starts a new one whose header
    /// and directory entry are durable before anything is written to it.
    fn roll(&self, writer: &mut Writer, now_ms: u64) -> Result<()> {
        let inner = &self.inner;
        self.cut_preallocated(writer)?;
        self.fsync_segment(&*writer.file, &writer.active.path)?;
        self.mark_fsynced(writer.end);
        if let Some(index) = writer.active.index_file() {
            if let Err(error) =
                segment::write_index_file(&*inner.storage, &writer.active.index_path, &index, false)
            {
                tracing::warn!(%error, "could not write the index of a sealed segment; it will be rebuilt");
            }
        }
        let base_offset = writer.end.next_offset;
        let segment = Segment::new(&inner.dir, base_offset);
        let file = match create_segment_file(
            &*inner.storage,
            &inner.dir,
            &segment.path,
            base_offset,
            now_ms,
        ) {
            Ok(file) => file,
            Err(error) if error.is_storage_full() => {
                // The old segment stays active (it was just fsynced); take the half-made file
                // away so the next roll can create it again.
                let removed = inner
                    .storage
                    .remove_file(&segment.path)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| Error::io("remove a half-created segment", &segment.path, e))
                    .and_then(|()| {
                        inner
                            .storage
                            .sync_dir(&inner.dir)
                            .map_err(|e| Error::io("fsync directory", &inner.dir, e))
                    });
                return match removed {
                    Ok(()) => Err(error),
                    Err(cleanup) => Err(self.poison(cleanup)),
                };
            }
            Err(error) => return Err(self.poison(error)),
        };
        let segment = Arc::new(segment.with_file(file.clone()));
        segment.set_summary(Summary::empty(base_offset));
        write(&inner.segments).insert(base_offset, segment.clone());
        writer.active = segment;
        writer.file = file;
        writer.end = EndPoint {
            next_offset: base_offset,
            segment_base: base_offset,
            position: SEGMENT_HEADER_LEN as u64,
        };
        writer.allocated_end = writer.end.position;
        writer.created_ms = now_ms;
        writer.active_version = format::SEGMENT_FORMAT_VERSION;
        writer.index = IndexBuilder::new(base_offset, inner.config.index_interval_bytes);
        self.mark_fsynced(writer.end);
        let end = writer.end;
        let refreshed = self.update_checkpoint(|checkpoint| {
            checkpoint.segment_base_offset = end.segment_base;
            checkpoint.position = end.position;
            checkpoint.next_offset = end.next_offset;
        });
        self.checkpoint_lags_if_full(refreshed)?;
        tracing::debug!(dir = %inner.dir.display(), base_offset, "rolled to a new segment");
        Ok(())
    }

    /// Writes zeros ahead of the end so that the frame ending at `needed_end` lands in blocks
    /// the file already has (see [`LogConfig::preallocate_bytes`]). Large frames skip it. A
    /// full device is not an error here: the zeros that fit are cut again and the frame is
    /// written without them (and meets the full device itself, if it does not fit either).
    fn preallocate(&self, writer: &mut Writer, needed_end: u64) -> Result<()> {
        let config = &self.inner.config;
        let chunk = config.preallocate_bytes;
        let frame_len = needed_end - writer.end.position;
        // Only fsync-per-append pays for a growing file; the lossy policies sync rarely and
        // would only write every byte twice.
        let syncs_often = matches!(config.sync_policy, SyncPolicy::Always);
        if needed_end <= writer.allocated_end
            || chunk == 0
            || frame_len >= chunk / 2
            || !syncs_often
        {
            return Ok(());
        }
        let from = writer.allocated_end.max(writer.end.position);
        let to = (needed_end + chunk).min(config.segment_bytes_max.max(needed_end));
        let mut position = from;
        while position < to {
            let len = (to - position).min(ZEROS.len() as u64) as usize;
            if let Err(source) = writer.file.write_all_at(&ZEROS[..len], position) {
                let error = Error::write(
                    "write zeros ahead of the end of",
                    &writer.active.path,
                    source,
                );
                if !error.is_storage_full() {
                    return Err(self.poison(error));
                }
                if let Err(source) = writer.file.set_len(from) {
                    return Err(self.poison(Error::io(
                        "cut zeros that did not fit from",
                        &writer.active.path,
                        source,
                    )));
                }
                writer.allocated_end = from;
                return Ok(());
            }
            position += len as u64;
        }
        writer.allocated_end = to;
        Ok(())
    }

    /// Cuts the zeros written ahead of the end of the active file (before it is sealed or
    /// closed), by the file's real length. The caller's fsync makes the cut durable.
    pub(crate) fn cut_preallocated(&self, writer: &mut Writer) -> Result<()> {
        let path = &writer.active.path;
        let len = writer
            .file
            .len()
            .map_err(|e| self.poison(Error::io("read the length of", path, e)))?;
        if len > writer.end.position {
            writer.file.set_len(writer.end.position).map_err(|e| {
                self.poison(Error::io("cut the zeros ahead of the end of", path, e))
            })?;
        }
        writer.allocated_end = writer.end.position;
        Ok(())
    }

    /// A failed write of a frame at `position`: on a full device the partial bytes are cut away
    /// and the log stays writable (nothing of the append was acknowledged, and every frame
    /// before `position` is untouched); any other write error poisons the log.
    fn write_failed(&self, writer: &Writer, position: u64, source: std::io::Error) -> Error {
        let error = Error::write("write", &writer.active.path, source);
        if !error.is_storage_full() {
            return self.poison(error);
        }
        match writer.file.set_len(position) {
            Ok(()) => {
                tracing::warn!(dir = %self.inner.dir.display(), %error, "append refused: the device is full");
                error
            }
            Err(source) => self.poison(Error::io(
                "cut a partial frame after a full-device write from",
                &writer.active.path,
                source,
            )),
        }
    }
}

/// What [`Log::write_frame`] writes.
#[derive(Clone, Copy)]
enum FrameToWrite<'e, 'a> {
    /// An append's events.
    Events(&'e [AppendEvent<'a>]),
    /// A lost-events marker for this many offsets.
    Lost(u32),
}

/// What [`Log::append_start_with`] hands each frame to: its bytes and where it sits.
pub(crate) type JournalFn<'a> = dyn FnMut(&[u8], JournalPoint) + 'a;

/// Where a journaled append's frame sits in its log: what [`Log::mark_journaled`] needs
/// once the journal has made the frame durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalPoint {
    pub(crate) first_offset: u64,
    pub(crate) end: EndPoint,
    pub(crate) after_gap: bool,
}

impl JournalPoint {
    /// The offset of the frame's first event.
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the frame's last event.
    pub fn end_offset(&self) -> u64 {
        self.end.next_offset
    }

    /// True if, when the frame was written, an earlier append on its log was neither durable
    /// nor journaled: the journal must call [`Log::sync_segment`] before it writes the frame,
    /// so that it never holds a frame after events a crash could take back.
    pub fn after_gap(&self) -> bool {
        self.after_gap
    }
}

/// An append whose frame is written but not yet acknowledged (see [`Log::append_start`]).
#[derive(Debug)]
#[must_use = "an append is acknowledged only once `wait` returns"]
pub struct PendingAppend<'a> {
    log: &'a Log,
    first_offset: u64,
    end: EndPoint,
    rolled: bool,
    journaled: bool,
}

impl PendingAppend<'_> {
    /// The offset assigned to the first event (not yet durable).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// The offset after the append's last event: [`Log::wait_durable`] with it waits for
    /// this append (and everything before it).
    pub fn end_offset(&self) -> u64 {
        self.end.next_offset
    }

    /// Waits until the append is durable under the log's sync policy (group commit), and
    /// returns its first offset: the acknowledgement.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Poisoned`] if the fsync failed.
    pub fn wait(self) -> Result<u64> {
        self.log.finish_append(self.end.next_offset, self.rolled)?;
        Ok(self.first_offset)
    }

    /// Acknowledges an append started with [`Log::append_start_with`] once the caller's
    /// journal has fsynced its frame: readers see it now, and no fsync of the segment is
    /// needed (unless an earlier append on this log is still waiting for one, which this then
    /// waits for). Returns its first offset.
    ///
    /// # Errors
    /// [`Error::Poisoned`] if the log is; [`Error::Io`] if the fsync it waited for failed.
    pub fn journaled(self) -> Result<u64> {
        if !self.journaled {
            return self.wait();
        }
        self.log
            .finish_journaled(self.first_offset, self.end, self.rolled)?;
        Ok(self.first_offset)
    }
}

/// Creates a segment file whose header and directory entry are durable before it is returned.
pub(crate) fn create_segment_file(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
    base_offset: u64,
    now_ms: u64,
) -> Result<Arc<dyn StorageFile>> {
    let file = storage
        .open(path, OpenMode::CreateNew)
        .map_err(|e| Error::write("create segment", path, e))?;
    let header = SegmentHeader {
        version: format::SEGMENT_FORMAT_VERSION,
        base_offset,
        created_ms: now_ms,
    }
    .encode();
    file.write_all_at(&header, 0)
        .map_err(|e| Error::write("write segment header", path, e))?;
    file.sync_data().map_err(|e| Error::io("fsync", path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(file)
}

/// Zeros for [`Log::preallocate`], written 64 KiB at a time.
pub(crate) static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
