//! The group's dead-letter topic: `weir.dlq.<group>`, created on demand (one partition) the
//! first time a batch of the group is dead-lettered, and readable like any topic.

use std::sync::Weak;

use weir_batch::{BoxError, DeadLetter, DeadLetterSink, LogDeadLetterSink};

use crate::config::TopicConfig;
use crate::error::Error;
use crate::store::Inner;

/// The name of a group's dead-letter topic.
pub fn dead_letter_topic(group: &str) -> String {
    format!("weir.dlq.{group}")
}

/// Appends dead letters of one group to its dead-letter topic.
pub(crate) struct TopicDeadLetterSink {
    pub store: Weak<Inner>,
    pub topic: String,
}

impl std::fmt::Debug for TopicDeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicDeadLetterSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetterSink for TopicDeadLetterSink {
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> Result<(), BoxError> {
        let store = self.store.upgrade().ok_or(Error::Closed)?;
        let topic = match store.topic(&self.topic) {
            Ok(topic) => topic,
            Err(Error::UnknownTopic(_)) => {
                match store.create_topic(&self.topic, TopicConfig::default()) {
                    Ok(()) | Err(Error::TopicExists(_)) => store.topic(&self.topic)?,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        let log = topic.log(0)?.clone();
        LogDeadLetterSink::new(log).dead_letter(letter)
    }
}
