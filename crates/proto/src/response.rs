//! [`Response`]: everything a node answers, and the types its responses carry — among them
//! [`Events`], which can ship the log's own CRC-checked frames as opaque bytes.
//!
//! As for requests, the order of [`Response`]'s variants (its kind numbers) and the order of
//! fields in each type are part of the protocol (`docs/protocol.md`, "Responses").

use serde::{Deserialize, Serialize};

use crate::adapters;
use crate::code::ErrorCode;
use crate::request::TopicSettings;

/// A response, from node to client, in a frame carrying the request's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Kind 0. The request failed, or (with request id 0) the connection is being closed.
    Error(ErrorResponse),
    /// Kind 1. The handshake succeeded; answers [`crate::Request::Hello`].
    Welcome(Welcome),
    /// Kind 2. Answers [`crate::Request::ServerInfo`].
    ServerInfo(ServerInfo),
    /// Kind 3. The topic was created (durably); answers [`crate::Request::CreateTopic`].
    TopicCreated,
    /// Kind 4. Every topic, by name; answers [`crate::Request::ListTopics`].
    Topics(Vec<TopicSummary>),
    /// Kind 5. Answers [`crate::Request::DescribeTopic`].
    Topic(TopicDescription),
    /// Kind 6. The topic and its events are gone; answers [`crate::Request::DeleteTopic`].
    TopicDeleted,
    /// Kind 7. The events were appended (and, under [`crate::SyncPolicy::Always`], fsynced);
    /// answers [`crate::Request::Produce`].
    Produced(Produced),
    /// Kind 8. Answers [`crate::Request::Read`]; may hold no events.
    Read(ReadResult),
    /// Kind 9. A leased batch, or `None` when no batch was ready within `wait_ms`;
    /// answers [`crate::Request::Fetch`].
    Fetched(Option<Batch>),
    /// Kind 10. Answers [`crate::Request::Ack`].
    Acked,
    /// Kind 11. Answers [`crate::Request::Nack`].
    Nacked,
    /// Kind 12. Every consumer group's name, sorted; answers [`crate::Request::ListGroups`].
    Groups(#[serde(with = "adapters::texts")] Vec<String>),
    /// Kind 13. Answers [`crate::Request::DescribeGroup`].
    Group(GroupDescription),
    /// Kind 14. The new committed offsets; answers [`crate::Request::ResetGroup`].
    GroupReset(Vec<PartitionOffset>),
    /// Kind 15. Answers [`crate::Request::DeleteGroup`].
    GroupDeleted,
}

impl Response {
    /// The number of kinds known.
    pub(crate) const KINDS: u32 = 16;

    /// An error response with no offsets.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorResponse {
            code,
            message: message.into(),
            offsets: None,
        })
    }

    /// This response's kind number (its variant index on the wire).
    pub fn kind(&self) -> u32 {
        match self {
            Response::Error(_) => 0,
            Response::Welcome(_) => 1,
            Response::ServerInfo(_) => 2,
            Response::TopicCreated => 3,
            Response::Topics(_) => 4,
            Response::Topic(_) => 5,
            Response::TopicDeleted => 6,
            Response::Produced(_) => 7,
            Response::Read(_) => 8,
            Response::Fetched(_) => 9,
            Response::Acked => 10,
            Response::Nacked => 11,
            Response::Groups(_) => 12,
            Response::Group(_) => 13,
            Response::GroupReset(_) => 14,
            Response::GroupDeleted => 15,
        }
    }

    /// A stable `snake_case` name of this response's kind, for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Response::Error(_) => "error",
            Response::Welcome(_) => "welcome",
            Response::ServerInfo(_) => "server_info",
            Response::TopicCreated => "topic_created",
            Response::Topics(_) => "topics",
            Response::Topic(_) => "topic",
            Response::TopicDeleted => "topic_deleted",
            Response::Produced(_) => "produced",
            Response::Read(_) => "read",
            Response::Fetched(_) => "fetched",
            Response::Acked => "acked",
            Response::Nacked => "nacked",
            Response::Groups(_) => "groups",
            Response::Group(_) => "group",
            Response::GroupReset(_) => "group_reset",
            Response::GroupDeleted => "group_deleted",
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The stable code: what the client can do about it.
    pub code: ErrorCode,
    /// Human-readable detail (names the field, file, offsets...). Not for parsing.
    #[serde(with = "adapters::text")]
    pub message: String,
    /// For [`ErrorCode::UnexpectedOffset`] and [`ErrorCode::OffsetOutOfRange`]: the partition's
    /// readable range when the request was refused. `None` otherwise.
    pub offsets: Option<OffsetRange>,
}

/// A partition's readable offsets, `start_offset..end_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    /// The first readable offset.
    pub start_offset: u64,
    /// The offset the next append gets (the visible end).
    pub end_offset: u64,
}

/// The handshake's answer: the connection is open for requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version spoken on this connection from now on: the client's version if the
    /// node speaks it, else the node's highest below it.
    pub protocol_version: u16,
    /// The node's software version (e.g. `weir 0.1.0`).
    #[serde(with = "adapters::text")]
    pub server_version: String,
    /// The largest frame the node accepts; the client must not send larger ones.
    pub frame_bytes_max: u32,
    /// Requests the client may have in flight on this connection.
    pub in_flight_max: u32,
    /// The node closes the connection after this long with no request in flight and no frame
    /// arriving.
    pub idle_timeout_ms: u64,
}

/// The node's version and a few figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The node's software version.
    #[serde(with = "adapters::text")]
    pub server_version: String,
    /// The highest protocol version the node speaks.
    pub protocol_version: u16,
    /// When the node started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Open connections now.
    pub connections: u32,
    /// Topics now.
    pub topic_count: u32,
}

/// A topic's name and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// Its number of partitions.
    pub partitions: u32,
}

/// A topic's settings in force and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The settings in force (every field `Some`).
    pub settings: TopicSettings,
    /// When the topic was created, ms since the Unix epoch.
    pub created_ms: u64,
    /// One entry per partition, in partition order.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// The first readable offset.
    pub start_offset: u64,
    /// The visible end: the offset the next append gets.
    pub end_offset: u64,
    /// Bytes of segments on disk.
    pub size_bytes: u64,
    /// Segment files.
    pub segment_count: u64,
    /// The timestamp of the oldest readable event, if any.
    pub oldest_timestamp_ms: Option<u64>,
    /// The timestamp of the newest event, if any.
    pub newest_timestamp_ms: Option<u64>,
}

/// Where a produce's events went: runs of consecutive events of the request that landed on one
/// partition at consecutive offsets, in the request's order. A produce to one partition is one
/// run; [`Produced::positions`] expands the runs to one (partition, offset) per event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Produced {
    /// The runs, in the order of the request's events.
    pub ranges: Vec<ProducedRange>,
}

/// `count` consecutive events of a produce, appended to `partition` from `first_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedRange {
    /// The partition.
    pub partition: u32,
    /// The first of these events' offsets; the others follow densely.
    pub first_offset: u64,
    /// How many events (≥ 1).
    pub count: u32,
}

impl Produced {
    /// The runs of `positions` — one (partition, offset) per event, in the request's order,
    /// as `weir_store::Produced::positions` holds them.
    pub fn from_positions(positions: &[(u32, u64)]) -> Produced {
        let mut ranges: Vec<ProducedRange> = Vec::new();
        for &(partition, offset) in positions {
            match ranges.last_mut() {
                Some(run)
                    if run.partition == partition
                        && run.count < u32::MAX
                        && run.first_offset.checked_add(u64::from(run.count)) == Some(offset) =>
                {
                    run.count += 1;
                }
                _ => ranges.push(ProducedRange {
                    partition,
                    first_offset: offset,
                    count: 1,
                }),
            }
        }
        Produced { ranges }
    }

    /// One (partition, offset) per event, in the request's order.
    pub fn positions(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.ranges.iter().flat_map(|run| {
            (0..u64::from(run.count))
                .map(move |i| (run.partition, run.first_offset.saturating_add(i)))
        })
    }

    /// The number of events the runs cover (a client checks it equals the events it sent
    /// before expanding them).
    pub fn event_count(&self) -> u64 {
        self.ranges.iter().map(|run| u64::from(run.count)).sum()
    }
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    /// The partition read.
    pub partition: u32,
    /// The first event's offset; with no events, where the read resolved to (so a read from a
    /// time or from `Latest` tells the client where it stands).
    pub first_offset: u64,
    /// The offset to read next: `first_offset` + the number of events.
    pub next_offset: u64,
    /// The partition's visible end when the read was answered (for lag).
    pub end_offset: u64,
    /// The events.
    pub events: Events,
}

/// A leased batch of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The partition.
    pub partition: u32,
    /// This delivery's id: ack or nack it with this id and partition.
    pub batch_id: u64,
    /// The first event's offset.
    pub first_offset: u64,
    /// 1 for the first delivery, +1 for each redelivery (same events).
    pub attempt: u32,
    /// Why the batch holds the events it holds.
    pub close_reason: CloseReason,
    /// When the lease runs out, ms since the Unix epoch by the node's clock.
    pub lease_expires_ms: u64,
    /// The events (at least one).
    pub events: Events,
}

/// Why a batch closed with the events it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// Variant 0: it holds `batch_size` events.
    Full,
    /// Variant 1: the next event would have taken it over `batch_bytes_max`.
    ByteLimit,
    /// Variant 2: fewer events were at the tail and `max_wait_ms` ran out.
    TailWait,
    /// Variant 3: the events after it were lost to damage (the group steps over them) or are
    /// damaged (the next fetch fails with the damage).
    BeforeLost,
}

/// The events of a read or a batch, in one of two shapes; the node picks one per response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Events {
    /// Variant 0: the log's own frames, as stored (see [`LogFrames`]). The hot path: the node
    /// ships bytes it read from disk without decoding them, and the client checks their CRCs.
    LogFrames(LogFrames),
    /// Variant 1: decoded events, in offset order.
    Decoded(Vec<Event>),
}

impl Events {
    /// No events.
    pub fn empty() -> Events {
        Events::Decoded(Vec::new())
    }

    /// The number of events delivered.
    pub fn count(&self) -> u64 {
        match self {
            Events::LogFrames(frames) => u64::from(frames.count),
            Events::Decoded(events) => events.len() as u64,
        }
    }

    /// Whether no event is delivered.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

/// weir-log frames back to back, exactly as `docs/format.md` ("Frame") lays them out, each with
/// its own CRC. The events delivered are `count` consecutive events starting at event `skip` of
/// the first frame; the last frame may hold events after them, which are not delivered.
///
/// A client must check every frame (`weir_log::format::check_frame`) before trusting any field,
/// and check that the frames' offsets are consecutive, that they hold at least `skip + count`
/// events, and that the first delivered event's offset is the response's `first_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFrames {
    /// The frames' bytes, back to back.
    #[serde(with = "adapters::bytes")]
    pub bytes: Vec<u8>,
    /// Events to skip in the first frame.
    pub skip: u32,
    /// Events delivered.
    pub count: u32,
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Event {
    /// The event's offset in its partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key, if any.
    #[serde(with = "adapters::option_bytes")]
    pub key: Option<Vec<u8>>,
    /// Headers, name → bytes, in order.
    #[serde(with = "adapters::headers")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value.
    #[serde(with = "adapters::bytes")]
    pub value: Vec<u8>,
}

/// A consumer group's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// The group.
    #[serde(with = "adapters::text")]
    pub group: String,
    /// One entry per (topic, partition) the group has an offset or a consumer on, by topic,
    /// then partition.
    pub partitions: Vec<GroupPartition>,
}

/// A consumer group's figures on one partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupPartition {
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The committed offset: the next offset the group reads.
    pub committed_offset: u64,
    /// The partition's visible end.
    pub end_offset: u64,
    /// Events between the committed offset and the end.
    pub lag_events: u64,
    /// The head's timestamp minus the first uncommitted event's timestamp (0 without lag).
    pub lag_ms: u64,
    /// Whether a consumer of the group is open on the node for this topic.
    pub active: bool,
    /// Batches leased or waiting for redelivery.
    pub in_flight: u32,
    /// Age of the oldest delivered, unacknowledged batch, if any.
    pub oldest_unacked_age_ms: Option<u64>,
    /// Redeliveries since the group became active on the node (after a nack or an expired
    /// lease).
    pub redeliveries: u64,
    /// Batches dead-lettered since the group became active on the node.
    pub dead_letters: u64,
}

/// A partition's committed offset after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: u32,
    /// Its committed offset now.
    pub offset: u64,
}
