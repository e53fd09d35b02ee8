//! Replay: an iterator over one partition's events from an offset or a time, optionally up to
//! an end offset, or following the log as new events arrive. Replay reads the log directly and
//! never moves a group's offsets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_log::{Event, Log};

use crate::error::{Error, Result};

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The partition's first readable offset.
    Earliest,
    /// The partition's end: only events appended from now on (with `follow`).
    Latest,
    /// This offset (an error if below the start or past the end).
    Offset(u64),
    /// The first event with a timestamp at or after this time (ms since the Unix epoch); the
    /// end if there is none.
    TimeMs(u64),
    /// The first event with a timestamp at or after this time; the end if there is none.
    Time(std::time::SystemTime),
    /// The first event at most this long ago (by the store's clock); the end if there is none.
    Ago(Duration),
}

/// How a replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Stop before this offset. Default `None`: at the end (or never, with `follow`).
    pub to_offset: Option<u64>,
    /// Keep waiting for new events at the end. Default false.
    pub follow: bool,
    /// Events read per call to the log. Default 1,000.
    pub read_events: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            to_offset: None,
            follow: false,
            read_events: 1000,
        }
    }
}

impl ReplayOptions {
    /// Replay up to (not including) `offset`.
    #[must_use]
    pub fn to_offset(mut self, offset: u64) -> Self {
        self.to_offset = Some(offset);
        self
    }

    /// Keep waiting for new events at the end.
    #[must_use]
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }
}

/// Events of one partition, in offset order. As an [`Iterator`] it blocks at the end when
/// following; [`Replay::next_timeout`] bounds the wait. Events lost to damage (a marker `weir
/// repair` wrote stands for them) come as one [`Error::EventsLost`] item, after which the
/// replay goes on.
#[derive(Debug)]
pub struct Replay {
    topic: String,
    partition: u32,
    log: Arc<Log>,
    next_offset: u64,
    options: ReplayOptions,
    buffered: VecDeque<Event>,
    failed: bool,
}

impl Replay {
    pub(crate) fn new(
        topic: &str,
        partition: u32,
        log: Arc<Log>,
        from: ReplayFrom,
        options: ReplayOptions,
        now_ms: u64,
    ) -> Result<Replay> {
        let (start, end) = (log.start_offset(), log.end_offset());
        let next_offset = match from {
            ReplayFrom::Earliest => start,
            ReplayFrom::Latest => end,
            ReplayFrom::Offset(offset) => {
                if offset < start || offset > end {
                    return Err(Error::OffsetOutOfRange {
                        topic: topic.to_string(),
                        partition,
                        offset,
                        start,
                        end,
                    });
                }
                offset
            }
            ReplayFrom::TimeMs(_) | ReplayFrom::Time(_) | ReplayFrom::Ago(_) => {
                let time_ms = match from {
                    ReplayFrom::TimeMs(time_ms) => time_ms,
                    ReplayFrom::Time(time) => time
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| {
                            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                        }),
                    ReplayFrom::Ago(ago) => {
                        now_ms.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX))
                    }
                    _ => unreachable!("matched above"),
                };
                log.offset_for_time(time_ms)
                    .map_err(|e| Error::from_log(topic, partition, e))?
                    .unwrap_or(end)
            }
        };
        Ok(Replay {
            topic: topic.to_string(),
            partition,
            log,
            next_offset,
            options: ReplayOptions {
                read_events: options.read_events.max(1),
                ..options
            },
            buffered: VecDeque::new(),
            failed: false,
        })
    }

    /// The offset of the next event this replay returns.
    pub fn position(&self) -> u64 {
        self.buffered
            .front()
            .map_or(self.next_offset, |event| event.offset)
    }

    /// The next event, waiting at most `timeout` for one when following. `Ok(None)` at the end
    /// (or at `to_offset`), or when the wait ran out while following.
    ///
    /// # Errors
    /// [`Error::EventsLost`] for events lost to damage (`weir repair` marked them; the next
    /// call goes on after them); [`Error::OffsetOutOfRange`] if retention removed the events
    /// being replayed; [`Error::Log`] (I/O, corruption).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(Some(event));
            }
            let limit = self.options.to_offset.unwrap_or(u64::MAX);
            if self.next_offset >= limit {
                return Ok(None);
            }
            let want = self
                .options
                .read_events
                .min(usize::try_from(limit - self.next_offset).unwrap_or(usize::MAX));
            let batch = self
                .log
                .read(self.next_offset, want, usize::MAX)
                .map_err(|e| Error::from_log(&self.topic, self.partition, e))?;
            if !batch.is_empty() {
                self.next_offset = batch.next_offset();
                self.buffered.extend(batch.events());
                continue;
            }
            if let Some(lost) = batch.lost() {
                self.next_offset = lost.end.min(limit);
                return Err(Error::EventsLost {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    first_offset: lost.start,
                    end_offset: lost.end,
                });
            }
            if !self.options.follow {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.log
                .wait_for(self.next_offset, deadline - now)
                .map_err(|e| Error::from_log(&self.topic, self.partition, e))?;
        }
    }
}

impl Iterator for Replay {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.failed {
            return None;
        }
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None)
                    if self.options.follow
                        && self.next_offset < self.options.to_offset.unwrap_or(u64::MAX) => {}
                Ok(None) => return None,
                // Lost events are reported, and the replay goes on after them.
                Err(error @ Error::EventsLost { .. }) => return Some(Err(error)),
                Err(error) => {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
