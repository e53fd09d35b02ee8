//! Dead letters: where a batch goes after `max_attempts` deliveries, carrying headers that
//! name its source. [`LogDeadLetterSink`] appends to a weir-log partition (weir-store wires
//! it to the group's dead-letter topic).

use std::fmt;
use std::sync::Arc;

use weir_log::{AppendEvent, Event, Header, Log};

use crate::error::BoxError;

/// Header naming the source topic of a dead-lettered event.
pub const HEADER_SOURCE_TOPIC: &str = "weir.dlq.topic";
/// Header naming the source partition (decimal).
pub const HEADER_SOURCE_PARTITION: &str = "weir.dlq.partition";
/// Header naming the source offset (decimal).
pub const HEADER_SOURCE_OFFSET: &str = "weir.dlq.offset";
/// Header with the number of deliveries made (decimal).
pub const HEADER_ATTEMPTS: &str = "weir.dlq.attempts";
/// Header with the reason given with the last nack (absent if none was given).
pub const HEADER_LAST_REASON: &str = "weir.dlq.reason";
/// Header naming the consumer group.
pub const HEADER_GROUP: &str = "weir.dlq.group";

/// A batch that reached `max_attempts`.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The consumer group.
    pub group: &'a str,
    /// The source topic.
    pub topic: &'a str,
    /// The source partition.
    pub partition: u32,
    /// The batch's events, unchanged.
    pub events: &'a [Event],
    /// Deliveries made.
    pub attempts: u32,
    /// The reason given with the last nack, if any.
    pub last_reason: Option<&'a str>,
}

impl DeadLetter<'_> {
    /// The headers that name an event's source: group, topic, partition, offset, attempts and
    /// the last nack reason.
    pub fn source_headers(&self, event: &Event) -> Vec<(&'static str, Vec<u8>)> {
        let mut headers = vec![
            (HEADER_GROUP, self.group.as_bytes().to_vec()),
            (HEADER_SOURCE_TOPIC, self.topic.as_bytes().to_vec()),
            (
                HEADER_SOURCE_PARTITION,
                self.partition.to_string().into_bytes(),
            ),
            (HEADER_SOURCE_OFFSET, event.offset.to_string().into_bytes()),
            (HEADER_ATTEMPTS, self.attempts.to_string().into_bytes()),
        ];
        if let Some(reason) = self.last_reason {
            headers.push((HEADER_LAST_REASON, reason.as_bytes().to_vec()));
        }
        headers
    }
}

/// Where dead-lettered batches go. `dead_letter` must make the events durable before it
/// returns `Ok`: the batch then counts as acknowledged and the partition moves on.
pub trait DeadLetterSink: Send + Sync + fmt::Debug {
    /// Stores the batch's events.
    ///
    /// # Errors
    /// Any error: the batch stays waiting and is tried again on the next fetch.
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), BoxError>;
}

/// A sink that appends each dead-lettered batch, in one atomic append, to a log: the events
/// keep their key, value, timestamp and headers, plus the source headers. The append is made
/// durable before `dead_letter` returns, also when the log's sync policy is a lossy one.
#[derive(Debug, Clone)]
pub struct LogDeadLetterSink {
    log: Arc<Log>,
}

impl LogDeadLetterSink {
    /// A sink appending to `log`.
    pub fn new(log: Arc<Log>) -> Self {
        LogDeadLetterSink { log }
    }
}

impl DeadLetterSink for LogDeadLetterSink {
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), BoxError> {
        let sources: Vec<Vec<(&'static str, Vec<u8>)>> = letter
            .events
            .iter()
            .map(|event| letter.source_headers(event))
            .collect();
        let headers: Vec<Vec<Header<'_>>> = letter
            .events
            .iter()
            .zip(&sources)
            .map(|(event, source)| {
                event
                    .headers
                    .iter()
                    .map(|(name, value)| Header { name, value })
                    .chain(source.iter().map(|(name, value)| Header { name, value }))
                    .collect()
            })
            .collect();
        let events: Vec<AppendEvent<'_>> = letter
            .events
            .iter()
            .zip(&headers)
            .map(|(event, headers)| AppendEvent {
                timestamp_ms: Some(event.timestamp_ms),
                key: event.key.as_deref(),
                headers,
                value: &event.value,
            })
            .collect();
        self.log.append(&events)?;
        // The batch counts as settled once this returns, and the source partition's offset may
        // then be committed past it: the letters must be on disk whatever the dead-letter log's
        // own sync policy (a user may have created it with a lossy one).
        if !self.log.config().sync_policy.is_durable() {
            self.log.sync()?;
        }
        Ok(())
    }
}

/// A sink that keeps dead letters in memory (tests, examples).
#[derive(Debug, Default, Clone)]
pub struct MemoryDeadLetterSink {
    letters: Arc<std::sync::Mutex<Vec<StoredDeadLetter>>>,
}

/// A dead letter as [`MemoryDeadLetterSink`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The source partition.
    pub partition: u32,
    /// The batch's offsets.
    pub offsets: Vec<u64>,
    /// Deliveries made.
    pub attempts: u32,
    /// The last nack reason.
    pub last_reason: Option<String>,
}

impl MemoryDeadLetterSink {
    /// The dead letters received so far.
    pub fn letters(&self) -> Vec<StoredDeadLetter> {
        self.letters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl DeadLetterSink for MemoryDeadLetterSink {
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), BoxError> {
        self.letters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(StoredDeadLetter {
                partition: letter.partition,
                offsets: letter.events.iter().map(|event| event.offset).collect(),
                attempts: letter.attempts,
                last_reason: letter.last_reason.map(str::to_string),
            });
        Ok(())
    }
}
