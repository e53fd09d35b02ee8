//! Request semantics: each weir-proto request executed against the store, and the mapping of
//! store errors to stable wire error codes. Blocking store calls (appends wait for an fsync,
//! reads touch the disk) run on tokio's blocking pool, never on a runtime thread.
//!
//! Consumers are held by the node, not by connections: a member that disconnects leaves its
//! leases to run out normally, so its batches are redelivered to the others (no loss, no
//! blocking).

#![allow(
    clippy::result_large_err,
    reason = "errors are responses to send back: both sides of the Result are a Response"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_proto::{self as proto, ErrorCode, Request, Response};
use weir_store::{
    CommitPolicy, Consumer, ConsumerConfig, Error as StoreError, Partitioning, Record, ResetTo,
    Store, TopicConfig, TopicSync,
};

use crate::buffers::{Charge, NodeBuffers};
use crate::config::NodeConfig;
use crate::memory::Trimmer;
use crate::rate_limit::Noise;
use crate::server::Out;

/// State shared by every connection.
pub(crate) struct Shared {
    pub store: Store,
    pub config: NodeConfig,
    /// The buffer budget of every connection (`buffers.rs`).
    pub buffers: Arc<NodeBuffers>,
    /// Gives memory back to the OS after connections go (`memory.rs`).
    pub trimmer: Arc<Trimmer>,
    /// Rate limits for the log lines clients can cause at will (`rate_limit.rs`).
    pub noise: Arc<Noise>,
    consumers: Mutex<HashMap<(String, String), (Consumer, proto::ConsumerSettings)>>,
    pub started_ms: u64,
    pub connections: AtomicU32,
    pub ready: AtomicBool,
}

impl Shared {
    pub(crate) fn new(store: Store, config: NodeConfig) -> Self {
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Shared {
            store,
            buffers: NodeBuffers::new(&config),
            trimmer: Arc::default(),
            noise: Arc::default(),
            config,
            consumers: Mutex::new(HashMap::new()),
            started_ms,
            connections: AtomicU32::new(0),
            ready: AtomicBool::new(false),
        }
    }

    fn consumers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Consumer, proto::ConsumerSettings)>>
    {
        self.consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets go of the node's consumers of `group` (all topics, or one), so the group can be
    /// reset or deleted (both refuse while a group has members); their leases are forgotten (a
    /// later ack of them is `unknown_batch`). Returns them, so that their acknowledged progress
    /// is committed first: acks already answered `Acked` are then not lost if the reset or
    /// delete is refused after all (another request still holding the group).
    fn release_group(&self, group: &str, topic: Option<&str>) -> Vec<Consumer> {
        let mut released = Vec::new();
        self.consumers().retain(|(g, t), (consumer, _)| {
            let release = g == group && topic.is_none_or(|topic| topic == t);
            if release {
                released.push(consumer.clone());
            }
            !release
        });
        released
    }

    /// Commits every consumer's acknowledged progress (shutdown).
    pub(crate) fn commit_consumers(&self) {
        let consumers: Vec<Consumer> = self.consumers().values().map(|(c, _)| c.clone()).collect();
        for consumer in consumers {
            if let Err(error) = consumer.commit() {
                tracing::error!(group = consumer.group(), %error, "committing a group at shutdown failed");
            }
        }
        self.consumers().clear();
    }
}

/// Commits the acknowledged progress of consumers let go of for a reset or delete, and drops
/// them (so the group has no members left from this node).
fn commit_released(released: Vec<Consumer>) -> Result<(), StoreError> {
    for consumer in released {
        consumer.commit()?;
    }
    Ok(())
}

/// What a request comes to.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and moved once; boxing would allocate for every answer"
)]
pub(crate) enum Answer {
    /// This response, with what was charged for it if it was charged while being made.
    Respond(Response, Option<Charge>),
    /// Nothing: the connection could no longer be answered before the request started its
    /// work (counted in `weir_node_requests_dropped_total`).
    Dropped,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer::Respond(response, None)
    }
}

/// Executes one request (never the handshake). A `Read` or `Fetch` charges its answer to the
/// connection's buffers through `out` before it makes it.
pub(crate) async fn dispatch(shared: &Arc<Shared>, request: Request, out: &Out) -> Answer {
    let result = match request {
        Request::Hello(_) => Err(error(
            ErrorCode::InvalidArgument,
            "the handshake was already done",
        )),
        Request::ServerInfo => server_info(shared),
        Request::CreateTopic(create) => {
            let config = match topic_config(create.partitions, &create.settings) {
                Ok(config) => config,
                Err(response) => return response.into(),
            };
            blocking(shared, move |store| {
                store
                    .create_topic(&create.topic, config)
                    .map(|()| Response::TopicCreated)
            })
            .await
        }
        Request::ListTopics => {
            blocking(shared, |store| {
                let mut topics = Vec::new();
                for topic in store.list_topics()? {
                    let partitions = store.partition_count(&topic)?;
                    topics.push(proto::TopicSummary { topic, partitions });
                }
                Ok(Response::Topics(topics))
            })
            .await
        }
        Request::DescribeTopic { topic } => {
            blocking(shared, move |store| {
                store
                    .describe_topic(&topic)
                    .map(|d| Response::Topic(describe(d)))
            })
            .await
        }
        Request::DeleteTopic { topic } => {
            shared.consumers().retain(|(_, t), _| *t != topic);
            blocking(shared, move |store| {
                store.delete_topic(&topic).map(|()| Response::TopicDeleted)
            })
            .await
        }
        Request::Produce(produce) => produce_events(shared, produce).await,
        Request::Read(read) => return read_events(shared, read, out).await,
        Request::Fetch(fetch) => return fetch_batch(shared, fetch, out).await,
        Request::Ack(ack) => {
            let consumer = shared
                .consumers()
                .get(&(ack.group.clone(), ack.topic.clone()))
                .map(|(c, _)| c.clone());
            match consumer {
                None => Err(error(
                    ErrorCode::UnknownBatch,
                    format!("group {:?} holds no batch {} here", ack.group, ack.batch_id),
                )),
                Some(consumer) => {
                    // The ack itself is in memory: done here, unless the partition is busy.
                    // Only a commit the policy wants now (every ack, or the interval's) goes
                    // to a blocking thread, and the response waits for it, as before.
                    let (partition, id) = (ack.partition, weir_store::BatchId(ack.batch_id));
                    match consumer.try_ack_id_deferring_commit(partition, id) {
                        Err(failed) => Err(store_error(failed)),
                        Ok(Some(false)) => Ok(Response::Acked),
                        Ok(Some(true)) => {
                            blocking(shared, move |_| {
                                consumer
                                    .commit_partition(partition)
                                    .map(|()| Response::Acked)
                            })
                            .await
                        }
                        // The partition is busy (possibly with disk I/O): not on this thread.
                        Ok(None) => {
                            blocking(shared, move |_| {
                                consumer.ack_id(partition, id).map(|()| Response::Acked)
                            })
                            .await
                        }
                    }
                }
            }
        }
        Request::Nack(nack) => {
            let consumer = shared
                .consumers()
                .get(&(nack.group.clone(), nack.topic.clone()))
                .map(|(c, _)| c.clone());
            match consumer {
                None => Err(error(
                    ErrorCode::UnknownBatch,
                    format!(
                        "group {:?} holds no batch {} here",
                        nack.group, nack.batch_id
                    ),
                )),
                // On a blocking thread: the nack waits for the partition's lock, which a fetch
                // may hold through a log read or a dead letter's fsync.
                Some(consumer) => {
                    blocking(shared, move |_| {
                        consumer
                            .nack_id(
                                nack.partition,
                                weir_store::BatchId(nack.batch_id),
                                Duration::from_millis(nack.delay_ms),
                                nack.reason.as_deref(),
                            )
                            .map(|()| Response::Nacked)
                    })
                    .await
                }
            }
        }
        Request::ListGroups => {
            blocking(shared, |store| store.list_groups().map(Response::Groups)).await
        }
        Request::DescribeGroup { group } => {
            blocking(shared, move |store| {
                let description = store.describe_group(&group)?;
                Ok(Response::Group(proto::GroupDescription {
                    group: description.group,
                    partitions: description
                        .partitions
                        .into_iter()
                        .map(|p| proto::GroupPartition {
                            topic: p.topic,
                            partition: p.partition,
                            committed_offset: p.committed_offset,
                            end_offset: p.end_offset,
                            lag_events: p.lag_events,
                            lag_ms: p.lag_ms,
                            active: p.active,
                            in_flight: p.in_flight,
                            oldest_unacked_age_ms: p.oldest_unacked_age_ms,
                            redeliveries: p.redeliveries,
                            dead_letters: p.dead_letters,
                        })
                        .collect(),
                }))
            })
            .await
        }
        Request::ResetGroup(reset) => {
            let released = shared.release_group(&reset.group, Some(&reset.topic));
            let to = match reset.to {
                proto::ResetTo::Earliest => ResetTo::Earliest,
                proto::ResetTo::Latest => ResetTo::Latest,
                proto::ResetTo::Offset(offset) => ResetTo::Offset(offset),
                proto::ResetTo::TimeMs(time) => ResetTo::TimeMs(time),
            };
            blocking(shared, move |store| {
                commit_released(released)?;
                let moved = store.reset_group(&reset.group, &reset.topic, to, reset.partition)?;
                Ok(Response::GroupReset(
                    moved
                        .into_iter()
                        .map(|(partition, offset)| proto::PartitionOffset { partition, offset })
                        .collect(),
                ))
            })
            .await
        }
        Request::DeleteGroup { group } => {
            let released = shared.release_group(&group, None);
            blocking(shared, move |store| {
                commit_released(released)?;
                store.delete_group(&group).map(|()| Response::GroupDeleted)
            })
            .await
        }
    };
    result.unwrap_or_else(|response| response).into()
}

type Outcome = Result<Response, Response>;

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::error(code, message)
}

/// Runs a blocking store call on tokio's blocking pool.
async fn blocking(
    shared: &Arc<Shared>,
    call: impl FnOnce(&Store) -> Result<Response, StoreError> + Send + 'static,
) -> Outcome {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || call(&store)).await {
        Ok(result) => result.map_err(store_error),
        Err(join) => Err(error(
            ErrorCode::Internal,
            format!("the request failed: {join}"),
        )),
    }
}

fn server_info(shared: &Arc<Shared>) -> Outcome {
    Ok(Response::ServerInfo(proto::ServerInfo {
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: proto::PROTOCOL_VERSION,
        started_ms: shared.started_ms,
        connections: shared.connections.load(Ordering::Relaxed),
        topic_count: shared.store.list_topics().map_or(0, |t| t.len() as u32),
    }))
}

fn topic_config(partitions: u32, settings: &proto::TopicSettings) -> Result<TopicConfig, Response> {
    let mut config = TopicConfig::with_partitions(partitions);
    let limit = |limit: Option<proto::Limit>, default: Option<u64>| match limit {
        None => default,
        Some(proto::Limit::Unlimited) => None,
        Some(proto::Limit::Max(value)) => Some(value),
    };
    config.retention_bytes_max = limit(settings.retention_bytes_max, config.retention_bytes_max);
    config.retention_age_max_ms = limit(settings.retention_age_max_ms, config.retention_age_max_ms);
    config.segment_age_max_ms = limit(settings.segment_age_max_ms, config.segment_age_max_ms);
    if let Some(bytes) = settings.segment_bytes_max {
        config.segment_bytes_max = bytes;
    }
    if let Some(sync) = settings.sync_policy {
        config.sync = match sync {
            proto::SyncPolicy::Always => TopicSync::Always,
            proto::SyncPolicy::IntervalLossy { interval_ms } => {
                TopicSync::IntervalLossy { interval_ms }
            }
            proto::SyncPolicy::NeverLossy => TopicSync::NeverLossy,
        };
    }
    Ok(config)
}

fn describe(description: weir_store::TopicDescription) -> proto::TopicDescription {
    let config = &description.config;
    let limit = |value: Option<u64>| Some(value.map_or(proto::Limit::Unlimited, proto::Limit::Max));
    proto::TopicDescription {
        topic: description.name.clone(),
        settings: proto::TopicSettings {
            retention_bytes_max: limit(config.retention_bytes_max),
            retention_age_max_ms: limit(config.retention_age_max_ms),
            segment_bytes_max: Some(config.segment_bytes_max),
            segment_age_max_ms: limit(config.segment_age_max_ms),
            sync_policy: Some(match config.sync {
                TopicSync::Always => proto::SyncPolicy::Always,
                TopicSync::IntervalLossy { interval_ms } => {
                    proto::SyncPolicy::IntervalLossy { interval_ms }
                }
                TopicSync::NeverLossy => proto::SyncPolicy::NeverLossy,
            }),
        },
        created_ms: description.created_ms,
        partitions: description
            .partitions
            .iter()
            .map(|p| proto::PartitionInfo {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                size_bytes: p.bytes,
                segment_count: p.segments as u64,
                oldest_timestamp_ms: p.oldest_timestamp_ms,
                newest_timestamp_ms: p.newest_timestamp_ms,
            })
            .collect(),
    }
}

async fn produce_events(shared: &Arc<Shared>, produce: proto::Produce) -> Outcome {
    let records: Vec<Record> = produce
        .events
        .into_iter()
        .map(|event| Record {
            timestamp_ms: event.timestamp_ms,
            key: event.key.map(Into::into),
            headers: event
                .headers
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .collect(),
            value: event.value,
        })
        .collect();
    let topic = produce.topic;
    let partitioning = match produce.partitioning {
        proto::Partitioning::Key => Partitioning::ByKey,
        proto::Partitioning::RoundRobin => Partitioning::RoundRobin,
        proto::Partitioning::Partition(partition) => Partitioning::Partition(partition),
    };
    match (produce.expected_offset, partitioning) {
        (Some(expected), Partitioning::Partition(partition)) => {
            blocking(shared, move |store| {
                let count = records.len() as u32;
                let first = store.append_expected(&topic, partition, &records, expected)?;
                Ok(Response::Produced(proto::Produced {
                    ranges: vec![proto::ProducedRange {
                        partition,
                        first_offset: first,
                        count,
                    }],
                }))
            })
            .await
        }
        (Some(_), _) => Err(error(
            ErrorCode::InvalidArgument,
            "expected_offset needs an explicit partition",
        )),
        (None, partitioning) => {
            blocking(shared, move |store| {
                let produced = store.append(&topic, &records, partitioning)?;
                Ok(Response::Produced(proto::Produced::from_positions(
                    &produced.positions,
                )))
            })
            .await
        }
    }
}

/// The most bytes a `Read`'s answer of `max_bytes` takes: its events come to at most `max_bytes`
/// unless its first event alone is larger (which may be as large as an event may be), and no
/// answer is larger than a frame. The answer is cut to fit ([`read_answer_events`]).
fn read_answer_bytes(max_bytes: u32, config: &NodeConfig) -> usize {
    max_bytes
        .max(config.event_bytes_max)
        .min(config.frame_bytes_max) as usize
}

/// While an answer is made, two copies of it are held at the most: the log's buffers (or the
/// batch) and the answer's events copied out of them, then the answer and its encoding. It is
/// charged for both until encoded, then for its frame alone (`server.rs`, `send`).
const MAKING_COPIES: usize = 2;

async fn read_events(shared: &Arc<Shared>, read: proto::Read, out: &Out) -> Answer {
    match read_events_charged(shared, read, out).await {
        Ok(Some((response, charge))) => Answer::Respond(response, Some(charge)),
        Ok(None) => Answer::Dropped,
        Err(response) => response.into(),
    }
}

async fn read_events_charged(
    shared: &Arc<Shared>,
    read: proto::Read,
    out: &Out,
) -> Result<Option<(Response, Charge)>, Response> {
    let log = shared
        .store
        .partition_log(&read.topic, read.partition)
        .map_err(store_error)?;
    let from = match read.from {
        proto::ReadFrom::Offset(offset) => offset,
        proto::ReadFrom::Earliest => log.start_offset(),
        proto::ReadFrom::Latest => log.end_offset(),
        proto::ReadFrom::TimeMs(time) => {
            let searcher = log.clone();
            let found = tokio::task::spawn_blocking(move || searcher.offset_for_time(time))
                .await
                .map_err(|join| error(ErrorCode::Internal, join.to_string()))?;
            let found =
                found.map_err(|e| store_error(log_error(&read.topic, read.partition, e)))?;
            found.unwrap_or_else(|| log.end_offset())
        }
    };
    let wait = Duration::from_millis(u64::from(read.max_wait_ms).min(shared.config.wait_max_ms));
    if wait > Duration::ZERO && from == log.end_offset() {
        // Long poll: until the offset is visible or the wait runs out (an empty answer). It
        // holds no charge while it waits.
        let _ = tokio::time::timeout(wait, log.wait_for_async(from)).await;
    }
    // The end is taken before the read, which sees at least that much: an answer never claims
    // an end past `first_offset` with no events (events appended after the read but before
    // the answer used to make an empty answer say so; found by the soak's oracle). The read
    // stops there, so that what is charged for it holds: the bytes of the largest answer it can
    // give, or next to nothing if there is nothing to read (a long poll that ran out).
    let end_offset = log.end_offset();
    let visible_events = end_offset.saturating_sub(from);
    let charge_bytes = if visible_events == 0 {
        ANSWER_OVERHEAD_BYTES
    } else {
        MAKING_COPIES * read_answer_bytes(read.max_bytes, &shared.config)
    };
    // Charged before the log is read, waiting while the connection or the node is at its limit.
    let Some(charge) = out.charge(charge_bytes).await else {
        return Ok(None);
    };
    let (topic, partition) = (read.topic.clone(), read.partition);
    let max_events = u64::from(read.max_events.max(1)).min(visible_events) as usize;
    let max_bytes = read.max_bytes.max(1) as usize;
    let reader = log.clone();
    let batch = tokio::task::spawn_blocking(move || reader.read(from, max_events, max_bytes))
        .await
        .map_err(|join| error(ErrorCode::Internal, join.to_string()))?
        .map_err(|e| store_error(log_error(&topic, partition, e)))?;
    if let Some(lost) = batch.lost().filter(|_| batch.is_empty()) {
        // The read starts at events lost to damage: say which, so the reader goes on after them.
        return Err(store_error(weir_store::Error::EventsLost {
            topic,
            partition,
            first_offset: lost.start,
            end_offset: lost.end,
        }));
    }
    let events = read_answer_events(&batch, charge.bytes() / MAKING_COPIES);
    Ok(Some((
        Response::Read(proto::ReadResult {
            partition,
            first_offset: from,
            next_offset: batch.next_offset(),
            end_offset: end_offset.max(batch.next_offset()),
            events,
        }),
        charge,
    )))
}

/// A read's events as answered: the log's own checked frames, shipped as they are (the client
/// checks the same CRCs), when they fit in `answer_bytes`; else only the events read, decoded.
/// The log's frames may hold far more than was asked for (a frame is read whole, even for one of
/// its events), and an answer must not be larger than what was charged for it (`buffers.rs`).
fn read_answer_events(batch: &weir_log::ReadBatch, answer_bytes: usize) -> proto::Events {
    let frames = batch.frames();
    let Some(first) = frames.first() else {
        return proto::Events::empty();
    };
    let frame_bytes: usize = frames.iter().map(|f| f.bytes.len()).sum();
    if frame_bytes + ANSWER_OVERHEAD_BYTES > answer_bytes {
        return proto::Events::Decoded(batch.iter().map(|event| decoded_event(&event)).collect());
    }
    let mut bytes = Vec::with_capacity(frame_bytes);
    for frame in frames {
        bytes.extend_from_slice(&frame.bytes);
    }
    proto::Events::LogFrames(proto::LogFrames {
        bytes,
        skip: (batch.first_offset() - first.header.base_offset) as u32,
        count: batch.len() as u32,
    })
}

/// What an answer adds to its events: the frame's header and the answer's other fields.
const ANSWER_OVERHEAD_BYTES: usize = 256;

/// A batch's events: the log's own checked frames when the batch is one piece (the client
/// checks the same CRCs), decoded events otherwise.
fn batch_events(events: &weir_batch::BatchEvents) -> proto::Events {
    if let Some((frames, skip, count)) = events.frames() {
        let mut bytes = Vec::with_capacity(frames.iter().map(|f| f.bytes.len()).sum());
        for frame in frames {
            bytes.extend_from_slice(&frame.bytes);
        }
        return proto::Events::LogFrames(proto::LogFrames {
            bytes,
            skip: skip as u32,
            count: count as u32,
        });
    }
    proto::Events::Decoded(events.iter().map(|event| decoded_event(&event)).collect())
}

/// One event as the protocol's decoded form (its bytes copied out of the log's buffers).
fn decoded_event(event: &weir_log::EventView<'_>) -> proto::Event {
    proto::Event {
        offset: event.offset,
        timestamp_ms: event.timestamp_ms,
        key: event.key.map(<[u8]>::to_vec),
        headers: event
            .headers()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        value: event.value.to_vec(),
    }
}

fn consumer_config(settings: &proto::ConsumerSettings) -> ConsumerConfig {
    let mut config = ConsumerConfig::default();
    config.batch_size = settings.batch_size;
    config.batch_bytes_max = settings.batch_bytes_max;
    config.max_wait_ms = settings.max_wait_ms;
    config.ack_timeout_ms = settings.ack_timeout_ms;
    config.max_in_flight = settings.max_in_flight;
    config.max_attempts = settings.max_attempts;
    config.commit_policy = match settings.commit_policy {
        proto::CommitPolicy::EveryAck => CommitPolicy::EveryAck,
        proto::CommitPolicy::Interval {
            interval_ms,
            acks_max,
        } => CommitPolicy::Interval {
            interval_ms,
            acks_max,
        },
    };
    config
}

async fn fetch_batch(shared: &Arc<Shared>, fetch: proto::Fetch, out: &Out) -> Answer {
    match fetch_batch_charged(shared, fetch, out).await {
        Ok(Some((response, charge))) => Answer::Respond(response, charge),
        Ok(None) => Answer::Dropped,
        Err(response) => response.into(),
    }
}

async fn fetch_batch_charged(
    shared: &Arc<Shared>,
    fetch: proto::Fetch,
    out: &Out,
) -> Result<Option<(Response, Option<Charge>)>, Response> {
    let key = (fetch.group.clone(), fetch.topic.clone());
    let existing = shared.consumers().get(&key).cloned();
    let consumer = match existing {
        Some((consumer, settings)) if settings == fetch.settings => consumer,
        Some(_) => {
            return Err(error(
                ErrorCode::GroupSettingsMismatch,
                format!(
                    "group {:?} on topic {:?} already runs with other batch settings",
                    fetch.group, fetch.topic
                ),
            ))
        }
        None => {
            let consumer = shared
                .store
                .consumer(&fetch.group, &fetch.topic, consumer_config(&fetch.settings))
                .map_err(store_error)?;
            shared
                .consumers()
                .entry(key)
                .or_insert((consumer, fetch.settings))
                .0
                .clone()
        }
    };
    let wait = Duration::from_millis(u64::from(fetch.wait_ms).min(shared.config.wait_max_ms));
    // The batch is the group's (held by the store until acknowledged or expired), whether or
    // not this answer is ever made: charged once it is known, before it is copied out.
    let Some(batch) = consumer.next_batch_async(wait).await.map_err(store_error)? else {
        return Ok(Some((Response::Fetched(None), None)));
    };
    let bytes = (batch_bytes(&batch.events) + ANSWER_OVERHEAD_BYTES)
        .min(shared.config.frame_bytes_max as usize);
    let Some(charge) = out.charge(MAKING_COPIES * bytes).await else {
        // Nobody will take it: its lease runs out and it is delivered again, as if the
        // connection had gone with it.
        return Ok(None);
    };
    let response = Response::Fetched(Some(proto::Batch {
        partition: batch.partition,
        batch_id: batch.id.0,
        first_offset: batch.first_offset,
        attempt: batch.attempt,
        close_reason: match batch.close_reason {
            weir_store::CloseReason::Full => proto::CloseReason::Full,
            weir_store::CloseReason::ByteLimit => proto::CloseReason::ByteLimit,
            weir_store::CloseReason::TailWait => proto::CloseReason::TailWait,
            weir_store::CloseReason::BeforeLost => proto::CloseReason::BeforeLost,
        },
        lease_expires_ms: batch.lease_expires_ms,
        events: batch_events(&batch.events),
    }));
    Ok(Some((response, Some(charge))))
}

/// About the bytes [`batch_events`] makes of `events`: their frames' bytes, or the events'
/// (with a few bytes each for their offset, timestamp and lengths).
fn batch_bytes(events: &weir_batch::BatchEvents) -> usize {
    if let Some((frames, _, _)) = events.frames() {
        return frames.iter().map(|f| f.bytes.len()).sum();
    }
    events
        .iter()
        .map(|event| {
            32 + event.key.map_or(0, <[u8]>::len)
                + event.value.len()
                + event
                    .headers()
                    .map(|h| 8 + h.name.len() + h.value.len())
                    .sum::<usize>()
        })
        .sum()
}

fn log_error(topic: &str, partition: u32, error: weir_log::Error) -> StoreError {
    match error {
        weir_log::Error::OffsetOutOfRange { offset, start, end } => StoreError::OffsetOutOfRange {
            topic: topic.to_string(),
            partition,
            offset,
            start,
            end,
        },
        source => StoreError::Log {
            topic: topic.to_string(),
            partition,
            source,
        },
    }
}

/// The wire error for a store error.
pub(crate) fn store_error(error: StoreError) -> Response {
    let message = error.to_string();
    let code = match &error {
        StoreError::InvalidName(_)
        | StoreError::InvalidConfig { .. }
        | StoreError::InvalidRequest(_) => ErrorCode::InvalidArgument,
        StoreError::TopicExists(_) => ErrorCode::TopicExists,
        StoreError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        StoreError::PartitionOutOfRange { .. } => ErrorCode::PartitionOutOfRange,
        StoreError::OffsetOutOfRange { start, end, .. } => {
            return Response::Error(proto::ErrorResponse {
                code: ErrorCode::OffsetOutOfRange,
                message,
                offsets: Some(proto::OffsetRange {
                    start_offset: *start,
                    end_offset: *end,
                }),
            })
        }
        StoreError::UnexpectedOffset { actual, .. } => {
            return Response::Error(proto::ErrorResponse {
                code: ErrorCode::UnexpectedOffset,
                message,
                offsets: Some(proto::OffsetRange {
                    start_offset: *actual,
                    end_offset: *actual,
                }),
            })
        }
        StoreError::InvalidEvent { source, .. } => match source {
            weir_log::Error::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            weir_log::Error::AppendTooLarge { .. } => ErrorCode::AppendTooLarge,
            _ => ErrorCode::InvalidArgument,
        },
        StoreError::GroupActive { .. } => ErrorCode::GroupActive,
        StoreError::GroupConfigMismatch { .. } => ErrorCode::GroupSettingsMismatch,
        StoreError::UnknownGroup(_) => ErrorCode::UnknownGroup,
        StoreError::EventsLost {
            first_offset,
            end_offset,
            ..
        } => {
            return Response::Error(proto::ErrorResponse {
                code: ErrorCode::EventsLost,
                message,
                offsets: Some(proto::OffsetRange {
                    start_offset: *first_offset,
                    end_offset: *end_offset,
                }),
            })
        }
        StoreError::Closed => ErrorCode::ShuttingDown,
        StoreError::Corrupt { .. } => ErrorCode::Corruption,
        StoreError::JournalPoisoned { .. } => ErrorCode::Unavailable,
        StoreError::Log { source, .. } => log_code(source),
        StoreError::Batch(batch) | StoreError::Partition { source: batch, .. } => {
            match batch.as_ref() {
                weir_batch::Error::UnknownBatch(_) => ErrorCode::UnknownBatch,
                weir_batch::Error::LeaseExpired(_) => ErrorCode::BatchExpired,
                weir_batch::Error::AlreadySettled(_) => ErrorCode::BatchAlreadySettled,
                weir_batch::Error::InvalidConfig { .. } => ErrorCode::InvalidArgument,
                weir_batch::Error::Log(source) => log_code(source),
                _ => ErrorCode::StorageIo,
            }
        }
        StoreError::Offsets(_) | StoreError::Io { .. } => ErrorCode::StorageIo,
        _ => ErrorCode::Internal,
    };
    Response::error(code, message)
}

fn log_code(error: &weir_log::Error) -> ErrorCode {
    match error {
        weir_log::Error::Corrupt { .. } => ErrorCode::Corruption,
        weir_log::Error::Damaged { .. } => ErrorCode::Damaged,
        weir_log::Error::Poisoned { .. } | weir_log::Error::Closed => ErrorCode::Unavailable,
        weir_log::Error::StorageFull { .. } => ErrorCode::StorageFull,
        _ => ErrorCode::StorageIo,
    }
}
