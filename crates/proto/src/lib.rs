//! The weir node's wire protocol: frames, requests, responses and error codes.
//!
//! `docs/protocol.md` is the specification; this crate is its one implementation, shared by
//! `weir-node` and `weir-client`. It is a pure, synchronous codec over byte slices — no
//! sockets, no tokio: the node and the client put their own framing loop around
//! [`decode_frame`] and [`encode_frame`].
//!
//! - A [`Frame`] is a 20-byte header (magic `WP`, version, flags, `body_len`, `request_id`,
//!   CRC-32 over header and body) and a body holding one [`Message`]: a [`Request`] from client
//!   to node, a [`Response`] from node to client. Bodies are bincode 2 (`codec.rs` alone uses
//!   it).
//! - A length is checked against [`FrameLimits`] before anything is buffered or allocated;
//!   [`decode_frame`] returns `Ok(None)` until a frame is all there.
//! - Each [`FrameError`] says which [`ErrorCode`] to answer with and whether to close.
//!
//! ```
//! use weir_proto::{decode_frame, encode_frame, FrameLimits, Request, Response, ReadFrom, Read};
//!
//! let limits = FrameLimits::default();
//! let request = Request::Read(Read {
//!     topic: "orders".into(),
//!     partition: 0,
//!     from: ReadFrom::Offset(42),
//!     max_events: 1000,
//!     max_bytes: 1 << 20,
//!     max_wait_ms: 500,
//! });
//!
//! // The client encodes into its write buffer...
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, 7, &request, &limits)?;
//!
//! // ...and the node decodes from its read buffer as bytes arrive.
//! assert!(decode_frame::<Request>(&wire[..10], &limits)?.is_none()); // not all there yet
//! let (frame, used) = decode_frame::<Request>(&wire, &limits)?.expect("a whole frame");
//! assert_eq!((frame.request_id, used), (7, wire.len()));
//! assert_eq!(frame.message, request);
//!
//! // Garbage is refused from its first bytes, with the code to answer and a verdict.
//! let err = decode_frame::<Response>(b"GET / HTTP/1.1\r\n", &limits).unwrap_err();
//! assert_eq!(err.code(), weir_proto::ErrorCode::MalformedFrame);
//! assert!(err.closes_connection());
//! # Ok::<(), weir_proto::FrameError>(())
//! ```
#![deny(missing_docs)]

mod adapters;
mod code;
mod codec;
mod config;
mod error;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod message;
mod request;
mod response;

pub use code::ErrorCode;
pub use config::{
    FrameLimits, FRAME_BYTES_DEFAULT, FRAME_BYTES_HARD_MAX, FRAME_BYTES_MIN, PROTOCOL_VERSION,
    PROTOCOL_VERSION_MIN,
};
pub use error::{FrameError, Result};
pub use frame::{
    decode_frame, decode_frame_shared, encode_frame, encode_raw_frame, peek_header, Frame,
    FrameHeader, FRAME_HEADER_LEN, FRAME_MAGIC, FRAME_VERSION,
};
pub use message::Message;
pub use request::{
    Ack, CommitPolicy, ConsumerSettings, CreateTopic, Fetch, Hello, Limit, Nack, Partitioning,
    Produce, Read, ReadFrom, Request, ResetGroup, ResetTo, SyncPolicy, TopicSettings, WireEvent,
};
pub use response::{
    Batch, CloseReason, ErrorResponse, Event, Events, GroupDescription, GroupPartition, LogFrames,
    OffsetRange, PartitionInfo, PartitionOffset, Produced, ProducedRange, ReadResult, Response,
    ServerInfo, TopicDescription, TopicSummary, Welcome,
};
