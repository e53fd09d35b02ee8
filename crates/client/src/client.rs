//! [`Client`]: typed calls over one pipelined connection, mirroring weir-store's API, and the
//! remote [`Consumer`] and [`Replay`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::Mutex;
use weir_proto::{self as proto, ErrorCode, Event, FrameLimits, Request, Response};

use crate::connection::Connection;
use crate::error::{Error, Result};

/// How a client connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The node's token, if it requires one.
    pub token: Option<String>,
    /// The name the node logs for this client. Default `weir-client`.
    pub client_name: String,
    /// The largest response frame accepted. Default 64 MiB.
    pub frame_bytes_max: u32,
    /// How long a request may wait for its response (long polls included). Default 120 s.
    pub request_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            client_name: "weir-client".into(),
            frame_bytes_max: 64 << 20,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl ClientConfig {
    /// The same config with a token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// An event to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record(proto::WireEvent);

impl Record {
    /// A record with only a value. A `Vec<u8>`, `String` or static slice converts without a
    /// copy; cloning a record (to send it again) shares its value.
    pub fn new(value: impl Into<bytes::Bytes>) -> Self {
        Record(proto::WireEvent {
            value: value.into(),
            ..proto::WireEvent::default()
        })
    }

    /// The same record with a key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.0.key = Some(key.into());
        self
    }

    /// The same record with one more header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.0.headers.push((name.into(), value.into()));
        self
    }

    /// The same record with an explicit timestamp.
    #[must_use]
    pub fn timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.0.timestamp_ms = Some(timestamp_ms);
        self
    }
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The events, in offset order.
    pub events: Vec<Event>,
    /// Where the next read should start.
    pub next_offset: u64,
    /// The partition's end when the node answered.
    pub end_offset: u64,
}

/// A batch delivered to a remote consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The partition.
    pub partition: u32,
    /// This delivery's id (ack or nack it).
    pub id: u64,
    /// The first event's offset.
    pub first_offset: u64,
    /// 1 for the first delivery, +1 for each redelivery.
    pub attempt: u32,
    /// Why the batch holds the events it holds.
    pub close_reason: proto::CloseReason,
    /// When the lease runs out (ms since the Unix epoch, by the node's clock).
    pub lease_expires_ms: u64,
    /// The events.
    pub events: Vec<Event>,
}

struct Inner {
    addresses: Vec<std::net::SocketAddr>,
    config: ClientConfig,
    connection: Mutex<Arc<Connection>>,
}

/// A connection to a weir node. Cheap to clone; clones share the connection, and calls from
/// many tasks are pipelined on it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addresses", &self.inner.addresses)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects and does the handshake.
    ///
    /// # Errors
    /// [`Error::Io`] if the node cannot be reached; [`Error::Server`] with `unauthorized` or
    /// `unsupported_version` if the handshake is refused.
    pub async fn connect(address: impl ToSocketAddrs, config: ClientConfig) -> Result<Client> {
        let addresses: Vec<std::net::SocketAddr> =
            tokio::net::lookup_host(address).await?.collect();
        let connection = Arc::new(open(&addresses, &config).await?);
        Ok(Client {
            inner: Arc::new(Inner {
                addresses,
                config,
                connection: Mutex::new(connection),
            }),
        })
    }

    /// Replaces the connection with a new one (after [`Error::Closed`], or a node restart).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn reconnect(&self) -> Result<()> {
        let connection = Arc::new(open(&self.inner.addresses, &self.inner.config).await?);
        *self.inner.connection.lock().await = connection;
        Ok(())
    }

    async fn call(&self, request: Request) -> Result<Response> {
        let connection = self.inner.connection.lock().await.clone();
        match connection.call(&request).await? {
            Response::Error(error) => Err(Error::Server {
                code: error.code,
                message: error.message,
                offsets: error.offsets,
            }),
            response => Ok(response),
        }
    }

    /// The node's version and figures.
    ///
    /// # Errors
    /// Connection and server errors.
    pub async fn server_info(&self) -> Result<proto::ServerInfo> {
        match self.call(Request::ServerInfo).await? {
            Response::ServerInfo(info) => Ok(info),
            _ => Err(Error::Unexpected("server info")),
        }
    }

    /// Creates a topic.
    ///
    /// # Errors
    /// `invalid_argument`, `topic_exists`; connection errors.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        settings: proto::TopicSettings,
    ) -> Result<()> {
        let request = Request::CreateTopic(proto::CreateTopic {
            topic: topic.into(),
            partitions,
            settings,
        });
        match self.call(request).await? {
            Response::TopicCreated => Ok(()),
            _ => Err(Error::Unexpected("create topic")),
        }
    }

    /// The topics and their partition counts.
    ///
    /// # Errors
    /// Connection and server errors.
    pub async fn list_topics(&self) -> Result<Vec<proto::TopicSummary>> {
        match self.call(Request::ListTopics).await? {
            Response::Topics(topics) => Ok(topics),
            _ => Err(Error::Unexpected("list topics")),
        }
    }

    /// A topic's settings and partitions.
    ///
    /// # Errors
    /// `unknown_topic`; connection errors.
    pub async fn describe_topic(&self, topic: &str) -> Result<proto::TopicDescription> {
        match self
            .call(Request::DescribeTopic {
                topic: topic.into(),
            })
            .await?
        {
            Response::Topic(description) => Ok(description),
            _ => Err(Error::Unexpected("describe topic")),
        }
    }

    /// Deletes a topic.
    ///
    /// # Errors
    /// `unknown_topic`, `group_active`; connection errors.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        match self
            .call(Request::DeleteTopic {
                topic: topic.into(),
            })
            .await?
        {
            Response::TopicDeleted => Ok(()),
            _ => Err(Error::Unexpected("delete topic")),
        }
    }

    /// Appends `records`, choosing partitions by `partitioning`; returns (partition, offset) of
    /// each record once they are durable.
    ///
    /// # Errors
    /// `unknown_topic`, `partition_out_of_range`, `event_too_large`, ...; connection errors.
    pub async fn append(
        &self,
        topic: &str,
        records: Vec<Record>,
        partitioning: proto::Partitioning,
    ) -> Result<Vec<(u32, u64)>> {
        let request = Request::Produce(proto::Produce {
            topic: topic.into(),
            partitioning,
            expected_offset: None,
            events: records.into_iter().map(|record| record.0).collect(),
        });
        match self.call(request).await? {
            Response::Produced(produced) => Ok(produced.positions().collect()),
            _ => Err(Error::Unexpected("produce")),
        }
    }

    /// Appends to one partition only if its end is `expected_offset`; returns the first offset.
    ///
    /// # Errors
    /// `unexpected_offset` (its `offsets` carry the actual end); as [`Client::append`].
    pub async fn append_expected(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        expected_offset: u64,
    ) -> Result<u64> {
        let request = Request::Produce(proto::Produce {
            topic: topic.into(),
            partitioning: proto::Partitioning::Partition(partition),
            expected_offset: Some(expected_offset),
            events: records.into_iter().map(|record| record.0).collect(),
        });
        match self.call(request).await? {
            Response::Produced(produced) => produced
                .positions()
                .next()
                .map(|(_, offset)| offset)
                .ok_or(Error::Unexpected("empty produce")),
            _ => Err(Error::Unexpected("produce")),
        }
    }

    /// Reads events of one partition, waiting up to `wait` for new ones at the end (a long
    /// poll; an empty answer after the wait is normal).
    ///
    /// # Errors
    /// `offset_out_of_range` (with the partition's offsets), `unknown_topic`, ...;
    /// [`Error::CorruptEvents`] if shipped log frames fail their checks.
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: proto::ReadFrom,
        max_events: u32,
        max_bytes: u32,
        wait: Duration,
    ) -> Result<ReadResult> {
        let request = Request::Read(proto::Read {
            topic: topic.into(),
            partition,
            from,
            max_events,
            max_bytes,
            max_wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        });
        match self.call(request).await? {
            Response::Read(read) => Ok(ReadResult {
                events: decode_events(read.events, read.first_offset)?,
                next_offset: read.next_offset,
                end_offset: read.end_offset,
            }),
            _ => Err(Error::Unexpected("read")),
        }
    }

    /// Replays one partition from `from`, following new events when `follow` is set.
    pub fn replay(
        &self,
        topic: &str,
        partition: u32,
        from: proto::ReadFrom,
        follow: bool,
    ) -> Replay {
        Replay {
            client: self.clone(),
            topic: topic.into(),
            partition,
            from,
            follow,
            buffered: Default::default(),
        }
    }

    /// A member of `group` consuming `topic` with these batch settings. Every member of a group
    /// must use the same settings.
    pub fn consumer(
        &self,
        group: &str,
        topic: &str,
        settings: proto::ConsumerSettings,
    ) -> Consumer {
        Consumer {
            client: self.clone(),
            group: group.into(),
            topic: topic.into(),
            settings,
        }
    }

    /// Every group with committed offsets or consumers.
    ///
    /// # Errors
    /// Connection and server errors.
    pub async fn list_groups(&self) -> Result<Vec<String>> {
        match self.call(Request::ListGroups).await? {
            Response::Groups(groups) => Ok(groups),
            _ => Err(Error::Unexpected("list groups")),
        }
    }

    /// A group's progress per partition.
    ///
    /// # Errors
    /// `unknown_group`; connection errors.
    pub async fn describe_group(&self, group: &str) -> Result<proto::GroupDescription> {
        match self
            .call(Request::DescribeGroup {
                group: group.into(),
            })
            .await?
        {
            Response::Group(description) => Ok(description),
            _ => Err(Error::Unexpected("describe group")),
        }
    }

    /// Moves a group's committed offsets for `topic` (one partition, or all).
    ///
    /// # Errors
    /// `group_active`, `unknown_topic`; connection errors.
    pub async fn reset_group(
        &self,
        group: &str,
        topic: &str,
        to: proto::ResetTo,
        partition: Option<u32>,
    ) -> Result<Vec<(u32, u64)>> {
        let request = Request::ResetGroup(proto::ResetGroup {
            group: group.into(),
            topic: topic.into(),
            partition,
            to,
        });
        match self.call(request).await? {
            Response::GroupReset(moved) => {
                Ok(moved.into_iter().map(|p| (p.partition, p.offset)).collect())
            }
            _ => Err(Error::Unexpected("reset group")),
        }
    }

    /// Deletes a group's committed offsets.
    ///
    /// # Errors
    /// `unknown_group`, `group_active`; connection errors.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        match self
            .call(Request::DeleteGroup {
                group: group.into(),
            })
            .await?
        {
            Response::GroupDeleted => Ok(()),
            _ => Err(Error::Unexpected("delete group")),
        }
    }
}

async fn open(addresses: &[std::net::SocketAddr], config: &ClientConfig) -> Result<Connection> {
    let stream = TcpStream::connect(addresses).await?;
    let limits = FrameLimits::new(config.frame_bytes_max)?;
    let connection = Connection::open(stream, limits, config.request_timeout).await;
    let hello = Request::Hello(proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        client_name: config.client_name.clone(),
        token: config.token.clone(),
    });
    match connection.call(&hello).await? {
        Response::Welcome(_) => Ok(connection),
        Response::Error(error) => Err(Error::Server {
            code: error.code,
            message: error.message,
            offsets: error.offsets,
        }),
        _ => Err(Error::Unexpected("handshake")),
    }
}

/// Decodes events: log frames are checked here (CRC, structure, dense offsets), as the node
/// shipped them from disk without re-encoding.
fn decode_events(events: proto::Events, first_offset: u64) -> Result<Vec<Event>> {
    let frames = match events {
        proto::Events::Decoded(events) => return Ok(events),
        proto::Events::LogFrames(frames) => frames,
    };
    let mut out = Vec::with_capacity(frames.count as usize);
    let mut at = 0usize;
    let mut skip = frames.skip as usize;
    let mut expected: Option<u64> = None;
    while at < frames.bytes.len() && out.len() < frames.count as usize {
        let header = weir_log::format::check_frame(&frames.bytes[at..])
            .map_err(|error| Error::CorruptEvents(format!("frame at byte {at}: {error}")))?;
        if expected.is_some_and(|next| next != header.base_offset) {
            return Err(Error::CorruptEvents(format!(
                "frame at byte {at} breaks the offsets"
            )));
        }
        expected = Some(header.end_offset());
        let frame = &frames.bytes[at..at + header.frame_len as usize];
        for event in weir_log::format::FrameEvents::new(frame, &header) {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if out.len() == frames.count as usize {
                break;
            }
            out.push(Event {
                offset: event.offset,
                timestamp_ms: event.timestamp_ms,
                key: event.key.map(<[u8]>::to_vec),
                headers: event
                    .headers()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
                value: event.value.to_vec(),
            });
        }
        at += header.frame_len as usize;
    }
    if out.len() != frames.count as usize || out.first().is_some_and(|e| e.offset != first_offset) {
        return Err(Error::CorruptEvents(
            "the frames do not hold the events announced".into(),
        ));
    }
    Ok(out)
}

/// A remote member of a consumer group.
#[derive(Debug, Clone)]
pub struct Consumer {
    client: Client,
    group: String,
    topic: String,
    settings: proto::ConsumerSettings,
}

impl Consumer {
    /// Waits up to `timeout` for the next batch (a long poll on the node); `None` if none came.
    ///
    /// # Errors
    /// `group_settings_mismatch`, `unknown_topic`, ...; connection errors.
    pub async fn next_batch(&self, timeout: Duration) -> Result<Option<Batch>> {
        let request = Request::Fetch(proto::Fetch {
            group: self.group.clone(),
            topic: self.topic.clone(),
            settings: self.settings,
            wait_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        });
        match self.client.call(request).await? {
            Response::Fetched(None) => Ok(None),
            Response::Fetched(Some(batch)) => Ok(Some(Batch {
                partition: batch.partition,
                id: batch.batch_id,
                first_offset: batch.first_offset,
                attempt: batch.attempt,
                close_reason: batch.close_reason,
                lease_expires_ms: batch.lease_expires_ms,
                events: decode_events(batch.events, batch.first_offset)?,
            })),
            _ => Err(Error::Unexpected("fetch")),
        }
    }

    /// Acknowledges a batch.
    ///
    /// # Errors
    /// `unknown_batch`, `batch_expired`, `batch_already_settled`; connection errors.
    pub async fn ack(&self, batch: &Batch) -> Result<()> {
        let request = Request::Ack(proto::Ack {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: batch.partition,
            batch_id: batch.id,
        });
        match self.client.call(request).await? {
            Response::Acked => Ok(()),
            _ => Err(Error::Unexpected("ack")),
        }
    }

    /// Gives a batch back for redelivery after `delay`, with an optional reason.
    ///
    /// # Errors
    /// As [`Consumer::ack`].
    pub async fn nack(&self, batch: &Batch, delay: Duration, reason: Option<&str>) -> Result<()> {
        let request = Request::Nack(proto::Nack {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: batch.partition,
            batch_id: batch.id,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason: reason.map(str::to_string),
        });
        match self.client.call(request).await? {
            Response::Nacked => Ok(()),
            _ => Err(Error::Unexpected("nack")),
        }
    }
}

/// Replays a partition through repeated reads.
#[derive(Debug)]
pub struct Replay {
    client: Client,
    topic: String,
    partition: u32,
    from: proto::ReadFrom,
    follow: bool,
    buffered: std::collections::VecDeque<Event>,
}

impl Replay {
    /// The next event; `None` at the end (when not following).
    ///
    /// # Errors
    /// As [`Client::read`]. Events lost to damage (`weir repair` marked them) come as one
    /// `events_lost` error whose `offsets` hold the lost range; the next call goes on after
    /// them.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(Some(event));
            }
            let wait = if self.follow {
                Duration::from_secs(30)
            } else {
                Duration::ZERO
            };
            let read = match self
                .client
                .read(&self.topic, self.partition, self.from, 1000, 4 << 20, wait)
                .await
            {
                Ok(read) => read,
                Err(Error::Server {
                    code: ErrorCode::EventsLost,
                    message,
                    offsets: Some(lost),
                }) => {
                    self.from = proto::ReadFrom::Offset(lost.end_offset);
                    return Err(Error::Server {
                        code: ErrorCode::EventsLost,
                        message,
                        offsets: Some(lost),
                    });
                }
                Err(error) => return Err(error),
            };
            self.from = proto::ReadFrom::Offset(read.next_offset);
            if read.events.is_empty() && !self.follow {
                return Ok(None);
            }
            self.buffered.extend(read.events);
        }
    }
}
