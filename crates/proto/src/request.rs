//! [`Request`]: everything a client can ask of a node, and the types its requests carry.
//!
//! The order of [`Request`]'s variants is part of the protocol: a variant's index is its *kind*
//! number on the wire (`docs/protocol.md`, "Requests"). New kinds are appended, never inserted,
//! and a retired kind's number is never reused. Field order inside each type is part of the
//! protocol too.

use serde::{Deserialize, Serialize};

use crate::adapters;

/// A request, from client to node. Each travels in its own frame with a request id; the
/// response frame carries the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Kind 0. The handshake: must be the first request on a connection.
    /// Answered by [`crate::Response::Welcome`].
    Hello(Hello),
    /// Kind 1. The node's version and figures. Answered by [`crate::Response::ServerInfo`].
    ServerInfo,
    /// Kind 2. Create a topic. Answered by [`crate::Response::TopicCreated`].
    CreateTopic(CreateTopic),
    /// Kind 3. Every topic. Answered by [`crate::Response::Topics`].
    ListTopics,
    /// Kind 4. One topic's settings and partitions. Answered by [`crate::Response::Topic`].
    DescribeTopic {
        /// The topic.
        #[serde(with = "adapters::text")]
        topic: String,
    },
    /// Kind 5. Delete a topic and all its events. Answered by [`crate::Response::TopicDeleted`].
    DeleteTopic {
        /// The topic.
        #[serde(with = "adapters::text")]
        topic: String,
    },
    /// Kind 6. Append events; those bound for one partition are appended atomically.
    /// Answered by [`crate::Response::Produced`].
    Produce(Produce),
    /// Kind 7. Read a partition from an offset or a time (replay), waiting for new events at the
    /// end. Answered by [`crate::Response::Read`].
    Read(Read),
    /// Kind 8. Lease the next batch of a consumer group. Answered by
    /// [`crate::Response::Fetched`].
    Fetch(Fetch),
    /// Kind 9. Acknowledge a batch. Answered by [`crate::Response::Acked`].
    Ack(Ack),
    /// Kind 10. Give a batch back for redelivery. Answered by [`crate::Response::Nacked`].
    Nack(Nack),
    /// Kind 11. Every consumer group's name. Answered by [`crate::Response::Groups`].
    ListGroups,
    /// Kind 12. One group's progress and figures per partition. Answered by
    /// [`crate::Response::Group`].
    DescribeGroup {
        /// The group.
        #[serde(with = "adapters::text")]
        group: String,
    },
    /// Kind 13. Move a group's committed offsets. Answered by [`crate::Response::GroupReset`].
    ResetGroup(ResetGroup),
    /// Kind 14. Delete a group's committed offsets (all topics). Answered by
    /// [`crate::Response::GroupDeleted`].
    DeleteGroup {
        /// The group.
        #[serde(with = "adapters::text")]
        group: String,
    },
}

impl Request {
    /// The kind number of each variant, in declaration order. Also the number of kinds known.
    pub(crate) const KINDS: u32 = 15;

    /// This request's kind number (its variant index on the wire).
    pub fn kind(&self) -> u32 {
        match self {
            Request::Hello(_) => 0,
            Request::ServerInfo => 1,
            Request::CreateTopic(_) => 2,
            Request::ListTopics => 3,
            Request::DescribeTopic { .. } => 4,
            Request::DeleteTopic { .. } => 5,
            Request::Produce(_) => 6,
            Request::Read(_) => 7,
            Request::Fetch(_) => 8,
            Request::Ack(_) => 9,
            Request::Nack(_) => 10,
            Request::ListGroups => 11,
            Request::DescribeGroup { .. } => 12,
            Request::ResetGroup(_) => 13,
            Request::DeleteGroup { .. } => 14,
        }
    }

    /// A stable `snake_case` name of this request's kind, for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Request::Hello(_) => "hello",
            Request::ServerInfo => "server_info",
            Request::CreateTopic(_) => "create_topic",
            Request::ListTopics => "list_topics",
            Request::DescribeTopic { .. } => "describe_topic",
            Request::DeleteTopic { .. } => "delete_topic",
            Request::Produce(_) => "produce",
            Request::Read(_) => "read",
            Request::Fetch(_) => "fetch",
            Request::Ack(_) => "ack",
            Request::Nack(_) => "nack",
            Request::ListGroups => "list_groups",
            Request::DescribeGroup { .. } => "describe_group",
            Request::ResetGroup(_) => "reset_group",
            Request::DeleteGroup { .. } => "delete_group",
        }
    }
}

/// The handshake, sent first on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The highest protocol version the client speaks ([`crate::PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// Free text naming the client (program and version), for the node's logs.
    #[serde(with = "adapters::text")]
    pub client_name: String,
    /// The shared secret, if the node requires one. The node compares it in constant time.
    #[serde(with = "adapters::option_text")]
    pub token: Option<String>,
}

/// Creates a topic with a fixed number of partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// The topic's name: `[A-Za-z0-9._-]{1,249}`, not `.` or `..`.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// Number of partitions (≥ 1); fixed for the topic's life.
    pub partitions: u32,
    /// Settings that differ from the node's defaults.
    pub settings: TopicSettings,
}

/// A topic's settings. In a [`CreateTopic`], `None` means "the node's default"; in a
/// [`crate::TopicDescription`] every field is `Some`: the values in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Delete a partition's oldest segments once it holds more than this many bytes.
    pub retention_bytes_max: Option<Limit>,
    /// Delete segments whose newest event is older than this many ms.
    pub retention_age_max_ms: Option<Limit>,
    /// Roll to a new segment once the active one would grow past this many bytes.
    pub segment_bytes_max: Option<u64>,
    /// Roll to a new segment once the active one is this many ms old.
    pub segment_age_max_ms: Option<Limit>,
    /// When appends are fsynced, and so when they are acknowledged.
    pub sync_policy: Option<SyncPolicy>,
}

/// A bound that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// No bound (variant 0).
    Unlimited,
    /// At most this much, in the unit of the field's name (variant 1).
    Max(u64),
}

/// When a topic's appends are fsynced (mirrors weir-log's policy of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SyncPolicy {
    /// Variant 0, the default: an append is acknowledged only after it is fsynced; concurrent
    /// appends share one fsync. Consumers see only fsynced events.
    #[default]
    Always,
    /// Variant 1: acknowledged once written to the OS, fsynced every `interval_ms`.
    /// **An acknowledged event can be lost** on a power cut within the interval.
    IntervalLossy {
        /// Milliseconds between fsyncs (≥ 1).
        interval_ms: u64,
    },
    /// Variant 2: acknowledged once written to the OS, fsynced only when a segment rolls or the
    /// topic closes. **Acknowledged events can be lost** on a power cut.
    NeverLossy,
}

/// Appends 1..N events. The events bound for one partition are appended atomically: after a
/// crash all of them or none survive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produce {
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// How the partition is chosen.
    pub partitioning: Partitioning,
    /// Append only if the partition's end offset equals this (optimistic concurrency);
    /// otherwise fail with [`crate::ErrorCode::UnexpectedOffset`] naming the actual end.
    /// Needs [`Partitioning::Partition`].
    pub expected_offset: Option<u64>,
    /// The events, in order (at least one).
    pub events: Vec<WireEvent>,
}

/// How a produce chooses its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitioning {
    /// Variant 0: each event by its own key, with Kafka's default partitioner (murmur2 of the
    /// key, made positive, modulo the partition count); keyless events go round-robin.
    Key,
    /// Variant 1: every event of the produce to the node's next partition in turn.
    RoundRobin,
    /// Variant 2: every event to this partition.
    Partition(u32),
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WireEvent {
    /// Milliseconds since the Unix epoch; `None`: stamped by the node at append.
    pub timestamp_ms: Option<u64>,
    /// Optional key.
    #[serde(with = "adapters::option_bytes")]
    pub key: Option<Vec<u8>>,
    /// Headers, name → bytes, in order. Names are UTF-8 (at most 65,535 bytes).
    #[serde(with = "adapters::headers")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// The event's value. Decoded by [`crate::decode_frame_shared`], a slice of the frame's
    /// buffer (no copy).
    #[serde(with = "adapters::shared_bytes")]
    pub value: bytes::Bytes,
}

/// Reads one partition (replay), waiting for new events at its end (long-poll).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read {
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Where to start.
    pub from: ReadFrom,
    /// At most this many events (≥ 1).
    pub max_events: u32,
    /// At most this many encoded event bytes (≥ 1); the first event is returned whatever its
    /// size.
    pub max_bytes: u32,
    /// If no event is there yet, wait up to this long for one; 0 answers at once.
    pub max_wait_ms: u32,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadFrom {
    /// Variant 0: at this offset.
    Offset(u64),
    /// Variant 1: at the first event whose timestamp is at or after this (ms since the epoch).
    TimeMs(u64),
    /// Variant 2: at the partition's first readable event.
    Earliest,
    /// Variant 3: at the partition's end (only events appended from now on).
    Latest,
}

/// Leases the next batch of a consumer group on a topic, from any of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// The consumer group (same name rule as topics).
    #[serde(with = "adapters::text")]
    pub group: String,
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The group's batch settings.
    pub settings: ConsumerSettings,
    /// If no batch is ready, wait up to this long for one; 0 answers at once.
    pub wait_ms: u32,
}

/// A consumer group's batch settings (mirrors weir-batch's `BatchConfig`; same defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSettings {
    /// Events per batch: exactly this many unless the byte limit or the tail wait cut it.
    /// Default 100.
    pub batch_size: u32,
    /// The largest batch in encoded event bytes (one event is always delivered). Default 4 MiB.
    pub batch_bytes_max: u64,
    /// How long to wait at the tail of the log for a batch to fill. Default 100 ms.
    pub max_wait_ms: u64,
    /// How long a delivered batch is leased before it is redelivered. Default 30 s.
    pub ack_timeout_ms: u64,
    /// Batches of one partition leased or waiting at once; 1 keeps a partition strictly
    /// ordered. Default 1.
    pub max_in_flight: u32,
    /// Deliveries before a batch is dead-lettered. Default 5.
    pub max_attempts: u32,
    /// When acknowledgements are committed durably. Default [`CommitPolicy::EveryAck`].
    pub commit_policy: CommitPolicy,
}

/// When a group's acknowledgements are committed durably (mirrors weir-batch's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommitPolicy {
    /// Variant 0, the default: after every ack that moves the barrier. On a crash, at most the
    /// batches in flight are delivered again.
    #[default]
    EveryAck,
    /// Variant 1: when `interval_ms` passed since the last commit or `acks_max` acks moved the
    /// barrier, whichever comes first. On a crash, batches acknowledged since the last commit are
    /// delivered again (redelivery, never loss).
    Interval {
        /// Milliseconds between commits (≥ 1).
        interval_ms: u64,
        /// Acks that trigger a commit early (≥ 1).
        acks_max: u32,
    },
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            batch_size: 100,
            batch_bytes_max: 4 << 20,
            max_wait_ms: 100,
            ack_timeout_ms: 30_000,
            max_in_flight: 1,
            max_attempts: 5,
            commit_policy: CommitPolicy::EveryAck,
        }
    }
}

/// Acknowledges a batch: its events are done with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The consumer group.
    #[serde(with = "adapters::text")]
    pub group: String,
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The batch's partition.
    pub partition: u32,
    /// The batch's id, from [`crate::Batch::batch_id`].
    pub batch_id: u64,
}

/// Gives a batch back: it is redelivered (same events, `attempt + 1`) after `delay_ms`, or
/// dead-lettered once it has been delivered `max_attempts` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The consumer group.
    #[serde(with = "adapters::text")]
    pub group: String,
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// The batch's partition.
    pub partition: u32,
    /// The batch's id.
    pub batch_id: u64,
    /// Redeliver no sooner than this many ms from now.
    pub delay_ms: u64,
    /// Why, kept with the batch and written into its dead-letter headers.
    #[serde(with = "adapters::option_text")]
    pub reason: Option<String>,
}

/// Moves a group's committed offsets on one topic (all partitions, or one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetGroup {
    /// The consumer group.
    #[serde(with = "adapters::text")]
    pub group: String,
    /// The topic.
    #[serde(with = "adapters::text")]
    pub topic: String,
    /// Only this partition; `None`: every partition of the topic.
    pub partition: Option<u32>,
    /// Where to.
    pub to: ResetTo,
}

/// Where a group reset moves the committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTo {
    /// Variant 0: the partition's first readable event (everything is delivered again).
    Earliest,
    /// Variant 1: the partition's end (everything there now is skipped).
    Latest,
    /// Variant 2: this offset (clamped to the partition's range).
    Offset(u64),
    /// Variant 3: the first event at or after this time (ms since the epoch).
    TimeMs(u64),
}
