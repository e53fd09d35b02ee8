//! [`BatchEvents`]: the events of a batch as views into the log's own checked frames. Nothing is
//! copied or decoded until the consumer iterates; [`BatchEvents::to_vec`] gives owned events
//! (still sharing the frames' bytes) when they must outlive the batch, and
//! [`BatchEvents::frames`] hands the frames themselves to the node, which ships them to remote
//! consumers as they are.

use weir_log::{CheckedFrame, Event, EventView, ReadBatch};

/// The events of one batch, in offset order.
#[derive(Debug, Clone, Default)]
pub struct BatchEvents {
    parts: Vec<ReadBatch>,
}

impl BatchEvents {
    pub(crate) fn new(parts: Vec<ReadBatch>) -> Self {
        BatchEvents { parts }
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.parts.iter().map(ReadBatch::len).sum()
    }

    /// True for a batch of no event (never delivered).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events, borrowing the frames (keys, headers and values are slices of them).
    pub fn iter(&self) -> impl Iterator<Item = EventView<'_>> + '_ {
        self.parts.iter().flat_map(ReadBatch::iter)
    }

    /// The events as owned values (sharing the frames' bytes, so keys and values are not copied).
    pub fn to_vec(&self) -> Vec<Event> {
        self.parts.iter().flat_map(ReadBatch::events).collect()
    }

    /// The checked frames and how to cut them: `(frames, skip, count)` — skip `skip` events of
    /// the first frame, then take `count` events. `None` when the batch was read in several
    /// pieces (a redelivery read in parts), whose frames may repeat.
    pub fn frames(&self) -> Option<(&[CheckedFrame], u64, usize)> {
        match self.parts.as_slice() {
            [part] => {
                let frames = part.frames();
                let skip = frames
                    .first()
                    .map_or(0, |frame| part.first_offset() - frame.header.base_offset);
                Some((frames, skip, part.len()))
            }
            _ => None,
        }
    }
}

impl<'a> IntoIterator for &'a BatchEvents {
    type Item = EventView<'a>;
    type IntoIter = Box<dyn Iterator<Item = EventView<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
