//! The read side of [`Log`]: reads from an offset, lookups by time, waiting for new events
//! (blocking or as a future), and a full verification of a live log. Readers see only the
//! visible range; every frame returned has been CRC-checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_LEN;
use crate::log::Log;
use crate::read::{self, Collector, ReadBatch};
use crate::segment::{self, lock, read, Segment, Summary};

/// What [`Log::verify`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Frames checked.
    pub frames: u64,
    /// Bytes checked.
    pub bytes: u64,
}

impl Log {
    /// Reads up to `max_events` events from `from_offset`, stopping before the event that would
    /// take the encoded size over `max_bytes` (but always returning at least one event if any
    /// is visible). Every frame's CRC is checked. An empty batch means `from_offset` is the end
    /// (or, see [`ReadBatch::lost`], the start of lost events).
    ///
    /// A read that reaches damaged bytes returns the events before them ([`crate::ReadEnd::Damaged`]);
    /// the next read, from the damage, fails with it. Damage found so stops writes to the log
    /// (see [`Log::damage`]).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the start or past the end; [`Error::Corrupt`] if the
    /// first frame read fails its checks, [`Error::Damaged`] at the end of a log that opened
    /// damaged; [`Error::Io`].
    pub fn read(&self, from_offset: u64, max_events: usize, max_bytes: usize) -> Result<ReadBatch> {
        let (start, end) = self.visible_range()?;
        if from_offset < start || from_offset > end.next_offset {
            return Err(Error::OffsetOutOfRange {
                offset: from_offset,
                start,
                end: end.next_offset,
            });
        }
        let mut collector = Collector::new(from_offset, max_events, max_bytes);
        match self.collect(&mut collector, end) {
            Ok(()) => {}
            Err(error) if error.is_corruption() => {
                self.note_damage(&error);
                if collector.len() == 0 {
                    return Err(error);
                }
                collector.stop_at_damage();
            }
            Err(error) => return Err(error),
        }
        if collector.len() == 0 && collector.next_offset() == end.next_offset {
            // Nothing new will come to a log that opened damaged: say why instead of waiting.
            if let Some(cause) = self.blocked_at(end.next_offset) {
                return Err(Error::Damaged { cause });
            }
        }
        Ok(collector.finish())
    }

    /// The damage a log opened with, if reads stop at `offset` because of it.
    pub(crate) fn blocked_at(&self, offset: u64) -> Option<Arc<Error>> {
        let inner = &self.inner;
        if !inner.read_only || inner.report.damage.is_empty() {
            return None;
        }
        let blocks = inner
            .report
            .damage
            .iter()
            .filter_map(crate::recovery::Damage::blocks_reads_at)
            .min()?;
        (blocks <= offset)
            .then(|| inner.damage.get().cloned())
            .flatten()
    }

    /// A segment's file for reading; damage its header check found stops writes (the frames
    /// are read all the same).
    pub(crate) fn segment_file(
        &self,
        segment: &Segment,
    ) -> Result<Arc<dyn crate::storage::StorageFile>> {
        let file = segment.file(&*self.inner.storage)?;
        if let Some(damage) = segment.take_header_damage() {
            self.note_damage(&damage);
        }
        Ok(file)
    }

    /// Reads frames into `collector` up to the visible `end`.
    fn collect(&self, collector: &mut Collector, end: crate::log::EndPoint) -> Result<()> {
        while !collector.is_done() && collector.next_offset() < end.next_offset {
            let offset = collector.next_offset();
            let (segment, next_base) = self.segment_for(offset);
            let Some(segment) = segment else { break };
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                let Some(next_base) = next_base else { break };
                self.sealed_info(&segment, next_base)?.end_position
            };
            let (position, first_offset) = segment.seek(offset);
            let file = match self.segment_file(&segment) {
                Ok(file) => file,
                Err(error) => return Err(self.out_of_range_or(error, offset)),
            };
            // About the bytes wanted: the events asked for at ~256 bytes each (within
            // `max_bytes`), plus the distance from the indexed frame to `offset`.
            let skip_bytes = usize::try_from(offset - first_offset).unwrap_or(usize::MAX);
            let hint = collector
                .events_max()
                .saturating_mul(256)
                .min(collector.bytes_max())
                .saturating_add(skip_bytes.saturating_mul(64));
            read::read_frames(
                &*file,
                &segment.path,
                position,
                first_offset,
                limit,
                hint,
                |frame| {
                    collector.offer(frame);
                    !collector.is_done()
                },
            )?;
            if collector.next_offset() == offset && !collector.is_done() {
                // The index promised events here and there were none: never loop on it.
                break;
            }
        }
        Ok(())
    }

    /// The first offset whose event has a timestamp ≥ `timestamp_ms`, or `None` if no visible
    /// event is that recent. Timestamps need not be ordered: this is the first such offset in
    /// log order.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if a frame fails its checks; [`Error::Io`].
    pub fn offset_for_time(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        let inner = &self.inner;
        let (start, end) = self.visible_range()?;
        let segments: Vec<(Arc<Segment>, Option<u64>)> = {
            let map = read(&inner.segments);
            let keys: Vec<u64> = map.keys().copied().collect();
            map.values()
                .enumerate()
                .map(|(i, segment)| (segment.clone(), keys.get(i + 1).copied()))
                .collect()
        };
        for (segment, next_base) in segments {
            if segment.base_offset >= end.next_offset || next_base.is_some_and(|next| next <= start)
            {
                continue;
            }
            let (limit, timestamp_max_ms) = if segment.base_offset == end.segment_base {
                let info = segment
                    .info()
                    .unwrap_or_else(|| Summary::empty(segment.base_offset).info());
                (end.position, info.timestamp_max_ms)
            } else {
                let Some(next_base) = next_base else { continue };
                let info = self.sealed_info(&segment, next_base)?;
                (info.end_position, info.timestamp_max_ms)
            };
            if timestamp_max_ms < timestamp_ms {
                continue;
            }
            let (position, first_offset) = segment.seek_time(timestamp_ms);
            let file = self.segment_file(&segment)?;
            let mut found = None;
            read::read_frames(
                &*file,
                &segment.path,
                position,
                first_offset,
                limit,
                usize::MAX,
                |frame| {
                    if frame.header.timestamp_max_ms >= timestamp_ms {
                        found = frame
                            .events()
                            .find(|event| {
                                event.offset >= start && event.timestamp_ms >= timestamp_ms
                            })
                            .map(|event| event.offset);
                    }
                    found.is_none()
                },
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Blocks until the event at `offset` is visible (then `true`) or `timeout` passes
    /// (`false`).
    ///
    /// # Errors
    /// [`Error::Closed`] if the log closes, [`Error::Poisoned`] if it fails, while waiting.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut visible = lock(&inner.visible);
        loop {
            if visible.end.next_offset > offset {
                return Ok(true);
            }
            if let Some(cause) = inner.poison.get() {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if let Some(cause) = inner.damage.get() {
                // A damaged log takes no appends: nothing new will come.
                return Err(Error::Damaged {
                    cause: cause.clone(),
                });
            }
            if visible.closed {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            visible = inner
                .visible_changed
                .wait_timeout(visible, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// A future that resolves once the event at `offset` is visible, without blocking a
    /// thread: usable from any async runtime (wrap it in the runtime's timeout).
    pub fn wait_for_async(&self, offset: u64) -> WaitForOffset<'_> {
        WaitForOffset { log: self, offset }
    }

    /// Checks every frame of every segment (CRC, structure, dense offsets) up to the visible
    /// end, reading everything: an offline-style verification of a live log.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the file and position of the first damage; [`Error::Io`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let inner = &self.inner;
        let (_, end) = self.visible_range()?;
        let segments: Vec<Arc<Segment>> = read(&inner.segments).values().cloned().collect();
        let mut report = VerifyReport::default();
        for segment in segments {
            if segment.base_offset > end.segment_base {
                break;
            }
            let file = self.segment_file(&segment)?;
            let limit = if segment.base_offset == end.segment_base {
                end.position
            } else {
                file.len()
                    .map_err(|e| Error::io("read length of segment", &segment.path, e))?
            };
            segment::check_header(
                &*file,
                &segment.path,
                segment.base_offset,
                limit.max(SEGMENT_HEADER_LEN as u64),
            )?;
            let reached = read::read_frames(
                &*file,
                &segment.path,
                SEGMENT_HEADER_LEN as u64,
                segment.base_offset,
                limit,
                usize::MAX,
                |_| {
                    report.frames += 1;
                    true
                },
            )?;
            report.bytes += reached;
            report.segments += 1;
        }
        Ok(report)
    }
}

/// Future returned by [`Log::wait_for_async`].
#[derive(Debug)]
pub struct WaitForOffset<'a> {
    log: &'a Log,
    offset: u64,
}

impl Future for WaitForOffset<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let inner = &self.log.inner;
        let mut visible = lock(&inner.visible);
        if visible.end.next_offset > self.offset {
            return Poll::Ready(Ok(()));
        }
        if let Some(cause) = inner.poison.get() {
            return Poll::Ready(Err(Error::Poisoned {
                cause: cause.clone(),
            }));
        }
        if let Some(cause) = inner.damage.get() {
            return Poll::Ready(Err(Error::Damaged {
                cause: cause.clone(),
            }));
        }
        if visible.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if !visible
            .wakers
            .iter()
            .any(|waker| waker.will_wake(cx.waker()))
        {
            visible.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
