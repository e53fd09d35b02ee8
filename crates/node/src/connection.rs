//! Framing for one connection (the mini-redis `Connection` split): a [`FrameReader`] that
//! buffers bytes, cuts frames with weir-proto's decoder and enforces the idle timeout and the
//! per-frame deadline, and a writer task that sends encoded responses under a write deadline.
//! Request semantics live in `dispatch.rs`.
//!
//! Bounded everywhere: the read buffer starts small, never grows past one frame (whose length is
//! checked against `frame_bytes_max` before the body is read, and charged to the connection's
//! buffer budget before the body is read: `buffers.rs`), and responses wait in a bounded channel,
//! each with its charge, which the writer returns once the response is written.
//!
//! A whole frame is split off the read buffer without a copy and decoded with
//! `decode_frame_shared`, so a produce's values are slices of the bytes read from the socket
//! all the way into the log's frame.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, Notify};
use weir_proto::{decode_frame_shared, peek_header, Frame, FrameError, FrameLimits, Request};

use crate::buffers::{Charge, ConnectionBuffers};
use crate::rate_limit::{Kind, Noise};

/// Bytes read per call once a frame has started.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Room for reading until a frame's header is complete: a whole small request, or the header of
/// a large one. An idle connection, or one dribbling its header, holds no more than this
/// (1,000 of them hold ~4 MiB of buffers, not the 64 MiB that a `READ_CHUNK_BYTES` buffer each
/// would). Far more than a header, so `FIRST_READ_BYTES - buffered` is never 0.
const FIRST_READ_BYTES: usize = 4 * 1024;
const _: () = assert!(weir_proto::FRAME_HEADER_LEN < FIRST_READ_BYTES);

/// What reading the next frame gave.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// A whole, checked frame, and its bytes' charge (to keep as long as the request holds
    /// them: a `Produce`'s values are slices of the frame).
    Frame(Frame<Request>, Charge),
    /// The peer closed the connection between frames.
    Closed,
    /// No frame started within the idle timeout.
    Idle,
    /// A frame started but did not complete within the frame deadline (or the peer closed
    /// the connection in the middle of it).
    Incomplete,
    /// The bytes are not a valid frame.
    Invalid(FrameError),
    /// Reading failed.
    Io(std::io::Error),
}

pub(crate) struct FrameReader {
    read: OwnedReadHalf,
    buffer: BytesMut,
    limits: FrameLimits,
    buffers: ConnectionBuffers,
    /// The charge for the frame at the head of the buffer, once its header was read.
    charge: Option<Charge>,
}

impl FrameReader {
    pub(crate) fn new(
        read: OwnedReadHalf,
        limits: FrameLimits,
        buffers: ConnectionBuffers,
    ) -> Self {
        FrameReader {
            read,
            buffer: BytesMut::new(),
            limits,
            buffers,
            charge: None,
        }
    }

    /// From now on, frames up to `limits` (the node's, once the handshake is done).
    pub(crate) fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }

    /// The next frame, waiting at most `idle` for it to start and `frame_deadline` for it to
    /// complete once started (not counting the time its charge waited for the connection to
    /// drain). Cancel-safe: what was read, and a charge taken, stay for the next call.
    pub(crate) async fn next(&mut self, idle: Duration, frame_deadline: Duration) -> ReadOutcome {
        let mut frame_started: Option<Instant> = (!self.buffer.is_empty()).then(Instant::now);
        loop {
            // The header is checked as soon as it is there (garbage and oversized lengths are
            // refused before the body is awaited); a whole frame is split off and decoded.
            let frame_len = match peek_header(&self.buffer, &self.limits) {
                Ok(Some(header)) => Some(header.frame_len()),
                Ok(None) => None,
                Err(error) => return ReadOutcome::Invalid(error),
            };
            if let Some(frame_len) = frame_len.filter(|_| self.charge.is_none()) {
                // Charged before its body is read: a connection at its limit (or a node whose
                // pool is spent) is not read until it drains; that wait is not the peer's.
                let asked = Instant::now();
                self.charge = Some(self.buffers.charge(frame_len).await);
                if let Some(started) = frame_started.as_mut() {
                    *started += asked.elapsed();
                }
            }
            if let Some(frame_len) = frame_len.filter(|&len| len <= self.buffer.len()) {
                let charge = self
                    .charge
                    .take()
                    .unwrap_or_else(|| unreachable!("a frame is charged once its header is read"));
                let bytes = self.buffer.split_to(frame_len).freeze();
                if self.buffer.is_empty() {
                    // Nothing of the next frame is here: let go of the allocation (the frame
                    // keeps it as long as it needs it), so that a connection that now idles
                    // holds no large buffer; the next read starts small again.
                    self.buffer = BytesMut::new();
                }
                return match decode_frame_shared::<Request>(&bytes, &self.limits) {
                    Ok(Some((frame, _))) => ReadOutcome::Frame(frame, charge),
                    Ok(None) => unreachable!("a whole frame was split off"),
                    // The caller closes on a bad CRC or body; after an unknown kind (a whole,
                    // sound frame) it goes on, and the frame is already gone from the buffer.
                    Err(error) => ReadOutcome::Invalid(error),
                };
            }
            let wait = match frame_started {
                None => idle,
                Some(started) => frame_deadline.saturating_sub(started.elapsed()),
            };
            // Room for the next read. Until a header is complete, `FIRST_READ_BYTES` in all
            // (an idle or slow peer holds no more). Once a frame has started, a chunk, or for a
            // large frame up to as much again as has arrived (so a big frame is not copied chunk
            // by chunk, and a peer that claims a big frame but sends little of it gets little
            // memory); at least a chunk, so pipelined frames behind it come in the same read.
            let buffered = self.buffer.len();
            let wanted = match frame_len {
                Some(len) => (len - buffered)
                    .min(buffered.max(READ_CHUNK_BYTES))
                    .max(READ_CHUNK_BYTES),
                None => FIRST_READ_BYTES - buffered,
            };
            self.buffer.reserve(wanted);
            match tokio::time::timeout(wait, self.read.read_buf(&mut self.buffer)).await {
                Err(_) if frame_started.is_none() => return ReadOutcome::Idle,
                Err(_) => return ReadOutcome::Incomplete,
                Ok(Ok(0)) if self.buffer.is_empty() => return ReadOutcome::Closed,
                Ok(Ok(0)) => return ReadOutcome::Incomplete,
                Ok(Ok(_)) => {
                    frame_started.get_or_insert_with(Instant::now);
                }
                Ok(Err(error)) => return ReadOutcome::Io(error),
            }
        }
    }
}

/// An encoded response on its way to the socket, with its charge.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub frame: Vec<u8>,
    pub charge: Charge,
}

/// Writes encoded frames from `frames` until the channel closes, returning each one's charge
/// once written; gives up (and notifies `failed`) when a write does not finish within
/// `write_timeout` (a peer that never reads). Frames still queued then are dropped with the
/// channel, and their charges with them.
pub(crate) async fn write_frames(
    mut write: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Outgoing>,
    write_timeout: Duration,
    failed: std::sync::Arc<Notify>,
    noise: std::sync::Arc<Noise>,
) {
    while let Some(outgoing) = frames.recv().await {
        match tokio::time::timeout(write_timeout, write.write_all(&outgoing.frame)).await {
            // Written: its bytes are the kernel's now.
            Ok(Ok(())) => drop(outgoing.charge),
            Ok(Err(error)) => {
                tracing::debug!(%error, "writing a response failed");
                failed.notify_one();
                return;
            }
            Err(_) => {
                crate::server::closed_for("write_timeout");
                if let Some(note) = noise.allow(Kind::WriteTimeout) {
                    tracing::info!(
                        "a client did not read its responses within the write timeout; \
                         closing{note}"
                    );
                }
                failed.notify_one();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(write_timeout, write.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};
    use weir_proto::{encode_frame, Partitioning, Produce, WireEvent};

    use super::*;

    /// A reader over one end of a loopback connection, and the peer's end.
    async fn connected() -> (FrameReader, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (node_side, _) = listener.accept().await.expect("accept");
        let (read, write) = node_side.into_split();
        drop(write);
        let buffers = crate::buffers::NodeBuffers::new(&crate::NodeConfig::default()).connection();
        (
            FrameReader::new(read, FrameLimits::default(), buffers),
            peer,
        )
    }

    fn produce_frame(request_id: u64, value_bytes: usize) -> Vec<u8> {
        let request = Request::Produce(Produce {
            topic: "t".into(),
            partitioning: Partitioning::Partition(0),
            expected_offset: None,
            events: vec![WireEvent {
                timestamp_ms: None,
                key: None,
                headers: Vec::new(),
                value: vec![7u8; value_bytes].into(),
            }],
        });
        let mut frame = Vec::new();
        encode_frame(&mut frame, request_id, &request, &FrameLimits::default()).expect("encode");
        frame
    }

    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_peer_dribbling_a_header_gets_a_small_buffer() {
        let (mut reader, mut peer) = connected().await;
        let frame = produce_frame(1, 1 << 20);
        peer.write_all(&frame[..3]).await.expect("write");
        assert!(matches!(
            reader.next(SHORT, SHORT).await,
            ReadOutcome::Incomplete
        ));
        assert_eq!(reader.buffer.len(), 3);
        assert!(
            reader.buffer.capacity() <= FIRST_READ_BYTES,
            "{} bytes held for 3 bytes of a header",
            reader.buffer.capacity()
        );
    }

    #[tokio::test]
    async fn a_large_frame_read_whole_leaves_no_buffer_behind() {
        let (mut reader, mut peer) = connected().await;
        let frame = produce_frame(1, 1 << 20);
        let writer = tokio::spawn(async move {
            peer.write_all(&frame).await.expect("write");
            peer
        });
        let ReadOutcome::Frame(read, _) = reader.next(SHORT, Duration::from_secs(10)).await else {
            panic!("no frame");
        };
        assert_eq!(read.request_id, 1);
        assert_eq!(
            reader.buffer.capacity(),
            0,
            "an idle connection keeps its buffer"
        );
        drop(writer.await);
    }

    #[tokio::test]
    async fn pipelined_frames_behind_a_frame_stay_in_the_buffer() {
        let (mut reader, mut peer) = connected().await;
        let mut frames = produce_frame(1, 100);
        frames.extend(produce_frame(2, 100));
        frames.extend(produce_frame(3, 200 * 1024));
        let writer = tokio::spawn(async move {
            peer.write_all(&frames).await.expect("write");
            peer
        });
        for expected in 1..=3 {
            let ReadOutcome::Frame(read, _) = reader.next(SHORT, Duration::from_secs(10)).await
            else {
                panic!("no frame {expected}");
            };
            assert_eq!(read.request_id, expected);
        }
        drop(writer.await);
    }
}
