//! The node on loopback (bound to port 0), driven through weir-client and through raw bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use weir_client::{
    Client, ClientConfig, ConsumerSettings, ErrorCode, Partitioning, ReadFrom, Record, ResetTo,
};
use weir_node::NodeConfig;
use weir_proto::{decode_frame, encode_frame, encode_raw_frame, FrameLimits, Request, Response};

struct Node {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Node {
    async fn start(dir: &std::path::Path, config: NodeConfig) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let dir = dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || weir_store::Store::open(dir))
            .await
            .unwrap()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(weir_node::run(listener, None, store, config, async move {
            let _ = stopped.await;
        }));
        Node {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.admin_listen = None;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_replay_and_groups_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), config()).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    client
        .create_topic("orders", 3, Default::default())
        .await
        .unwrap();
    let error = client
        .create_topic("orders", 3, Default::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::TopicExists));
    assert_eq!(client.list_topics().await.unwrap()[0].partitions, 3);
    let records: Vec<Record> = (0..30)
        .map(|i| Record::new(format!("v{i}")).key(format!("k{}", i % 5)))
        .collect();
    let positions = client
        .append("orders", records, Partitioning::Key)
        .await
        .unwrap();
    assert_eq!(positions.len(), 30);
    let first = client
        .append_expected("orders", 0, vec![Record::new("x")], 999)
        .await
        .unwrap_err();
    assert_eq!(first.code(), Some(ErrorCode::UnexpectedOffset));

    // Reads ship the log's own frames; the client checks them.
    let (partition, _) = positions[0];
    let read = client
        .read(
            "orders",
            partition,
            ReadFrom::Earliest,
            100,
            1 << 20,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(!read.events.is_empty());
    assert_eq!(read.events[0].offset, 0);
    let middle = client
        .read(
            "orders",
            partition,
            ReadFrom::Offset(1),
            2,
            1 << 20,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        middle.events.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let error = client
        .read(
            "orders",
            partition,
            ReadFrom::Offset(10_000),
            1,
            1,
            Duration::ZERO,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::OffsetOutOfRange));

    // A long poll returns when an event arrives.
    let poller = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .read(
                    "orders",
                    2,
                    ReadFrom::Latest,
                    10,
                    1 << 20,
                    Duration::from_secs(10),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .append(
            "orders",
            vec![Record::new("late")],
            Partitioning::Partition(2),
        )
        .await
        .unwrap();
    let polled = poller.await.unwrap().unwrap();
    assert_eq!(polled.events.len(), 1);
    assert_eq!(polled.events[0].value, b"late");

    let settings = ConsumerSettings {
        batch_size: 5,
        max_wait_ms: 20,
        ..ConsumerSettings::default()
    };
    let consumer = client.consumer("billing", "orders", settings);
    let mut consumed = 0;
    while let Some(batch) = consumer
        .next_batch(Duration::from_millis(300))
        .await
        .unwrap()
    {
        consumed += batch.events.len();
        consumer.ack(&batch).await.unwrap();
    }
    assert_eq!(consumed, 31);
    let description = client.describe_group("billing").await.unwrap();
    assert!(
        description.partitions.iter().all(|p| p.lag_events == 0),
        "{description:?}"
    );
    assert_eq!(
        client.list_groups().await.unwrap(),
        vec!["billing".to_string()]
    );
    let moved = client
        .reset_group("billing", "orders", ResetTo::Earliest, Some(0))
        .await
        .unwrap();
    assert_eq!(moved, vec![(0, 0)]);

    let mut replay = client.replay("orders", partition, ReadFrom::Offset(0), false);
    let mut replayed = 0;
    while replay.next().await.unwrap().is_some() {
        replayed += 1;
    }
    let end =
        client.describe_topic("orders").await.unwrap().partitions[partition as usize].end_offset;
    assert_eq!(replayed as u64, end);
    client.delete_group("billing").await.unwrap();
    client.delete_topic("orders").await.unwrap();
    assert!(client.list_topics().await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_disconnects_mid_lease_has_its_batch_redelivered_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), config()).await;
    let admin = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    admin
        .create_topic("jobs", 1, Default::default())
        .await
        .unwrap();
    let records: Vec<Record> = (0..10).map(|i| Record::new(format!("{i}"))).collect();
    admin
        .append("jobs", records, Partitioning::Partition(0))
        .await
        .unwrap();
    let settings = ConsumerSettings {
        batch_size: 5,
        ack_timeout_ms: 300,
        max_wait_ms: 10,
        ..ConsumerSettings::default()
    };

    let crashing = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    let lost = crashing
        .consumer("workers", "jobs", settings)
        .next_batch(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lost.first_offset, lost.attempt), (0, 1));
    drop(crashing); // the connection goes away holding the lease

    let healthy = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    let consumer = healthy.consumer("workers", "jobs", settings);
    let mut seen = Vec::new();
    while let Some(batch) = consumer.next_batch(Duration::from_secs(2)).await.unwrap() {
        seen.push((batch.first_offset, batch.attempt));
        consumer.ack(&batch).await.unwrap();
        if seen.len() == 2 {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![(0, 2), (5, 1)],
        "the lost batch came back as attempt 2"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restart_mid_stream_resumes_groups_at_their_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), config()).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    client
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();
    let records: Vec<Record> = (0..20).map(|i| Record::new(format!("{i}"))).collect();
    client
        .append("t", records, Partitioning::Partition(0))
        .await
        .unwrap();
    let settings = ConsumerSettings {
        batch_size: 5,
        ..ConsumerSettings::default()
    };
    let consumer = client.consumer("g", "t", settings);
    for _ in 0..2 {
        let batch = consumer
            .next_batch(Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        consumer.ack(&batch).await.unwrap();
    }
    let unacked = consumer
        .next_batch(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unacked.first_offset, 10);
    node.stop().await;
    assert!(matches!(
        client.server_info().await,
        Err(weir_client::Error::Closed | weir_client::Error::Io(_))
    ));

    let node = Node::start(dir.path(), config()).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    let consumer = client.consumer("g", "t", settings);
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (batch.first_offset, batch.attempt),
        (10, 1),
        "resumes at the committed offset"
    );
    let error = consumer.ack(&unacked).await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(ErrorCode::UnknownBatch),
        "a lease from before the restart is unknown"
    );
    node.stop().await;
}

/// Sends raw bytes and returns the first response frame (or None if the node closed first).
async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Option<(u64, Response)> {
    stream.write_all(bytes).await.ok()?;
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> Option<(u64, Response)> {
    let limits = FrameLimits::default();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((frame, _))) = decode_frame::<Response>(&buffer, &limits) {
            return Some((frame.request_id, frame.message));
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn frame(request_id: u64, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, request_id, request, &FrameLimits::default()).unwrap();
    out
}

fn hello(token: Option<&str>) -> Request {
    Request::Hello(weir_proto::Hello {
        protocol_version: weir_proto::PROTOCOL_VERSION,
        client_name: "raw".into(),
        token: token.map(str::to_string),
    })
}

/// A raw connection that completed the handshake.
async fn handshaken(address: SocketAddr, token: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let (_, response) = exchange(&mut stream, &frame(1, &hello(token)))
        .await
        .unwrap();
    assert!(matches!(response, Response::Welcome(_)));
    stream
}

fn code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_are_answered_as_specified_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = config();
    node_config.token = Some("sesame".into());
    node_config.frame_timeout_ms = 300;
    node_config.frame_bytes_max = 64 * 1024;
    node_config.event_bytes_max = 32 * 1024;
    let node = Node::start(dir.path(), node_config).await;
    let good = Client::connect(node.address, ClientConfig::default().token("sesame"))
        .await
        .unwrap();
    good.create_topic("t", 1, Default::default()).await.unwrap();

    // Garbage: a malformed-frame error, then the connection closes.
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    let (id, response) = exchange(&mut stream, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!((id, code(&response)), (0, Some(ErrorCode::MalformedFrame)));
    assert!(closed(&mut stream).await);

    // A frame before the handshake.
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    let (id, response) = exchange(&mut stream, &frame(7, &Request::ListTopics))
        .await
        .unwrap();
    assert_eq!(
        (id, code(&response)),
        (7, Some(ErrorCode::HandshakeRequired))
    );
    assert!(closed(&mut stream).await);

    // A frame longer than 4 KiB before the handshake (a Hello is far smaller): refused from its
    // header, though within the node's frame_bytes_max, so that a peer without the token never
    // has more than 4 KiB charged to the node's buffers.
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    let mut long_hello = hello(Some("sesame"));
    if let Request::Hello(hello) = &mut long_hello {
        hello.client_name = "x".repeat(5000);
    }
    let long_hello = frame(1, &long_hello);
    let (id, response) = exchange(&mut stream, &long_hello[..weir_proto::FRAME_HEADER_LEN])
        .await
        .unwrap();
    assert_eq!((id, code(&response)), (0, Some(ErrorCode::FrameTooLarge)));
    assert!(closed(&mut stream).await);

    // A wrong token, and none.
    for token in [Some("open"), None] {
        let mut stream = TcpStream::connect(node.address).await.unwrap();
        let (_, response) = exchange(&mut stream, &frame(1, &hello(token)))
            .await
            .unwrap();
        assert_eq!(code(&response), Some(ErrorCode::Unauthorized));
        assert!(closed(&mut stream).await);
    }

    // After a good handshake: a bad CRC, an oversized length, a truncated frame, an unknown kind.
    let handshaken = || handshaken(node.address, Some("sesame"));
    let mut stream = handshaken().await;
    let mut bad_crc = frame(2, &Request::ListTopics);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let (_, response) = exchange(&mut stream, &bad_crc).await.unwrap();
    assert_eq!(code(&response), Some(ErrorCode::MalformedFrame));
    assert!(closed(&mut stream).await);

    let mut stream = handshaken().await;
    let mut oversized = frame(3, &Request::ListTopics);
    oversized[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // body length
    let (_, response) = exchange(&mut stream, &oversized[..8]).await.unwrap();
    assert_eq!(
        code(&response),
        Some(ErrorCode::FrameTooLarge),
        "rejected from the length alone"
    );
    assert!(closed(&mut stream).await);

    let mut stream = handshaken().await;
    let whole = frame(4, &Request::ListTopics);
    let (_, response) = exchange(&mut stream, &whole[..whole.len() - 3])
        .await
        .unwrap();
    assert_eq!(
        code(&response),
        Some(ErrorCode::Timeout),
        "the frame deadline closes a truncated frame"
    );
    assert!(closed(&mut stream).await);

    let mut stream = handshaken().await;
    let mut unknown = Vec::new();
    encode_raw_frame(&mut unknown, 5, &[200]); // kind 200 (a varint), unknown to this version
    let (id, response) = exchange(&mut stream, &unknown).await.unwrap();
    assert_eq!((id, code(&response)), (5, Some(ErrorCode::UnknownRequest)));
    // An unknown kind keeps the connection: the next request is answered.
    let (id, response) = exchange(&mut stream, &frame(6, &Request::ListTopics))
        .await
        .unwrap();
    assert_eq!(id, 6);
    assert!(matches!(response, Response::Topics(_)));

    // The well-behaved client was served throughout.
    assert_eq!(good.list_topics().await.unwrap().len(), 1);
    good.append(
        "t",
        vec![Record::new("still here")],
        Partitioning::Partition(0),
    )
    .await
    .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = config();
    node_config.connections_max = 2;
    let node = Node::start(dir.path(), node_config).await;
    let _a = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    let _b = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(node.address).await.unwrap();
    let (id, response) = read_response(&mut stream).await.unwrap();
    assert_eq!(
        (id, code(&response)),
        (0, Some(ErrorCode::TooManyConnections))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_the_in_flight_cap_answers_the_excess() {
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = config();
    node_config.idle_timeout_ms = 200;
    node_config.in_flight_max = 1;
    let node = Node::start(dir.path(), node_config).await;
    let client = Client::connect(node.address, ClientConfig::default())
        .await
        .unwrap();
    client
        .create_topic("t", 1, Default::default())
        .await
        .unwrap();

    let handshaken = || handshaken(node.address, None);
    // Idle past the timeout: told why, then closed.
    let mut stream = handshaken().await;
    let started = std::time::Instant::now();
    let (id, response) = read_response(&mut stream).await.unwrap();
    assert_eq!((id, code(&response)), (0, Some(ErrorCode::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(closed(&mut stream).await);

    // Two requests pipelined with a cap of one in flight: a long poll holds the slot, so the
    // second is refused (and the connection stays usable).
    let mut stream = handshaken().await;
    let poll = Request::Read(weir_proto::Read {
        topic: "t".into(),
        partition: 0,
        from: weir_proto::ReadFrom::Latest,
        max_events: 10,
        max_bytes: 1 << 20,
        max_wait_ms: 150,
    });
    let mut both = frame(2, &poll);
    both.extend(frame(3, &Request::ListTopics));
    stream.write_all(&both).await.unwrap();
    let (id, response) = read_response(&mut stream).await.unwrap();
    assert_eq!((id, code(&response)), (3, Some(ErrorCode::TooManyInFlight)));
    let (id, response) = read_response(&mut stream).await.unwrap();
    assert_eq!(id, 2);
    assert!(matches!(response, Response::Read(_)));
    node.stop().await;
}
