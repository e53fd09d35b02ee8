//! The server (mini-redis shape): a listener with an accept loop and a connection cap, one
//! handler task per connection (handshake, then requests answered concurrently up to the
//! in-flight cap), and one shutdown signal shared by every task.
//!
//! [`run`] takes already-bound listeners, so tests bind port 0 and the binary binds the real
//! ports. On shutdown the listener stops accepting, handlers stop reading new requests and
//! finish the ones in flight, then the node commits consumer progress and closes the store
//! (fsync, clean-shutdown markers).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use weir_proto::{encode_frame, ErrorCode, FrameLimits, Request, Response};
use weir_store::Store;

use crate::buffers::{Charge, ConnectionBuffers};
use crate::config::NodeConfig;
use crate::connection::{write_frames, FrameReader, Outgoing, ReadOutcome};
use crate::dispatch::{dispatch, Answer, Shared};
use crate::rate_limit::{Kind, Noise};

/// Serves `store` on `listener` (and the admin HTTP endpoints on `admin`) until `shutdown`
/// completes, then shuts down gracefully and closes the store.
///
/// # Errors
/// An invalid configuration, or the store failing to close cleanly.
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    store: Store,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate()?;
    let limits = FrameLimits::new(config.frame_bytes_max)?;
    let shared = Arc::new(Shared::new(store, config));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // The bound addresses, plainly ("127.0.0.1:7450"; port 0 resolved), both of them.
    let address = listener
        .local_addr()
        .map_or_else(|error| format!("unknown ({error})"), |a| a.to_string());
    let admin_address = admin.as_ref().map_or_else(
        || "off".to_string(),
        |admin| {
            admin
                .local_addr()
                .map_or_else(|error| format!("unknown ({error})"), |a| a.to_string())
        },
    );
    if let Some(admin) = admin {
        // Installed, and every metric of the node registered at 0, before anything is served:
        // /metrics shows all of them from the start, and no early count is lost.
        crate::admin::prometheus();
        crate::admin::register_metrics();
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tasks.spawn(crate::admin::serve(admin, shared, stop));
    }
    tasks.spawn(shared.trimmer.clone().run());
    tasks.spawn(shared.noise.clone().report_every_window());
    shared.ready.store(true, Ordering::SeqCst);
    tracing::info!(%address, admin = %admin_address, "weir node serving");
    let connections = Arc::new(Semaphore::new(shared.config.connections_max as usize));
    let mut handlers = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        if let Some(note) = shared.noise.allow(Kind::AcceptFailed) {
                            tracing::warn!(%error, "accept failed{note}");
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                match connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let stop = stop_rx.clone();
                        handlers.spawn(async move {
                            shared.connections.fetch_add(1, Ordering::Relaxed);
                            metrics::gauge!("weir_node_connections").increment(1.0);
                            handle(socket, peer, &shared, limits, stop).await;
                            shared.connections.fetch_sub(1, Ordering::Relaxed);
                            metrics::gauge!("weir_node_connections").decrement(1.0);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        // Over the cap: refuse at once, with a reason, without queueing.
                        metrics::counter!("weir_node_connections_refused_total").increment(1);
                        tokio::spawn(refuse(socket, limits));
                    }
                }
                // Reap finished handlers so the set does not grow.
                while handlers.try_join_next().is_some() {}
            }
        }
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    shared.ready.store(false, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    drop(listener);
    while handlers.join_next().await.is_some() {}
    tasks.abort_all();
    let shared_for_close = shared.clone();
    tokio::task::spawn_blocking(move || {
        shared_for_close.commit_consumers();
        shared_for_close.store.close()
    })
    .await??;
    tracing::info!("weir node stopped cleanly");
    Ok(())
}

/// Tells a connection over the cap why it is closed.
async fn refuse(socket: TcpStream, limits: FrameLimits) {
    use tokio::io::AsyncWriteExt;
    let mut socket = socket;
    let mut frame = Vec::new();
    let response = Response::error(
        ErrorCode::TooManyConnections,
        "the node serves its maximum number of connections",
    );
    if encode_frame(&mut frame, 0, &response, &limits).is_ok() {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), socket.write_all(&frame)).await;
    }
}

/// Frames waiting for the connection's writer, besides the one it is writing. Their bytes are
/// charged to the connection's buffers until written (`buffers.rs`); the count bounds the small
/// uncharged part of each (the channel's slots). Once it is full (a client that does not read),
/// requests wait to hand over their response, holding their charge, and the connection's
/// budget runs out: its reads and fetches wait before they read anything, and its reader waits
/// before it reads another frame, until the write deadline closes it. (It was
/// `in_flight_max + 4` frames, uncharged: ~200 MiB per never-reading connection with 512 KiB
/// reads — found by `tests/abuse.rs`.)
const OUTPUT_FRAMES_MAX: usize = 2;

/// Sends `response` for `request_id` with the `charge` taken for it (if any: otherwise its
/// encoded bytes are charged now), and returns false if the connection's writer is gone. The
/// response is dropped once encoded, so a request waiting for room in the output buffer holds
/// one copy of its answer, not two; its charge is made to fit the encoded frame.
async fn send(
    out: &Out,
    request_id: u64,
    response: Response,
    charge: Option<Charge>,
    limits: &FrameLimits,
) -> bool {
    let frame = if matches!(response, Response::Read(_)) {
        // Read events: up to a frame of copying and checksumming. Do it on the blocking pool,
        // so that a burst of large reads does not hold up other connections' small requests
        // on the runtime's threads. (Consumer batches stay here: a consumer waits for each
        // one, and the hop would add to every round trip.)
        let limits = *limits;
        match tokio::task::spawn_blocking(move || encode_response(request_id, response, &limits))
            .await
        {
            Ok(frame) => frame,
            Err(_) => return false,
        }
    } else {
        encode_response(request_id, response, limits)
    };
    let Some(frame) = frame else {
        return false;
    };
    let charge = match charge {
        Some(mut charge) => {
            // Smaller than charged: the rest goes back. Larger (a read's answer is at most its
            // charge, but an encoding may add a little): taken if free now, never waited for
            // while holding the charge.
            charge.resize(frame.capacity());
            charge
        }
        None => out.buffers.charge(frame.capacity()).await,
    };
    out.frames.send(Outgoing { frame, charge }).await.is_ok()
}

/// Where a connection's responses go: its writer's queue, and the budget they are charged to.
#[derive(Clone)]
pub(crate) struct Out {
    pub frames: mpsc::Sender<Outgoing>,
    pub buffers: ConnectionBuffers,
}

impl Out {
    /// Charges `bytes` for an answer about to be made (waiting while the connection or the
    /// node is at its limit); `None` if the connection can no longer be answered by then: the
    /// request is dropped unrun, as if the connection had gone before it arrived (protocol.md,
    /// "Closing"), instead of being made for nobody.
    pub(crate) async fn charge(&self, bytes: usize) -> Option<Charge> {
        let charge = self.buffers.charge(bytes).await;
        if self.frames.is_closed() {
            metrics::counter!("weir_node_requests_dropped_total").increment(1);
            return None;
        }
        Some(charge)
    }
}

/// Encodes `response` as a frame (dropping it once encoded); an `internal` error frame if it
/// cannot be encoded; `None` if not even that can.
fn encode_response(request_id: u64, response: Response, limits: &FrameLimits) -> Option<Vec<u8>> {
    // Sized up front: grown as it is written, a large frame would be copied at each doubling
    // and end up with up to twice the room it needs, uncharged.
    let mut frame = Vec::with_capacity(encoded_bytes_hint(&response));
    let encoded = encode_frame(&mut frame, request_id, &response, limits);
    drop(response);
    if let Err(error) = encoded {
        tracing::error!(%error, "a response could not be encoded");
        let fallback = Response::error(
            ErrorCode::Internal,
            format!("the response could not be encoded: {error}"),
        );
        frame.clear();
        encode_frame(&mut frame, request_id, &fallback, limits).ok()?;
    }
    Some(frame)
}

/// At least the bytes `response` encodes to (a little more for events, whose lengths are
/// counted at their largest), for the responses that carry events; a small start otherwise.
fn encoded_bytes_hint(response: &Response) -> usize {
    let events = match response {
        Response::Read(read) => &read.events,
        Response::Fetched(Some(batch)) => &batch.events,
        _ => return 256,
    };
    let events_bytes = match events {
        weir_proto::Events::LogFrames(frames) => frames.bytes.len(),
        weir_proto::Events::Decoded(events) => events
            .iter()
            .map(|event| {
                // Offset, timestamp, the key's and value's lengths, the header count: varints of
                // at most 10 bytes each, and an option tag.
                51 + event.key.as_ref().map_or(0, Vec::len)
                    + event.value.len()
                    + event
                        .headers
                        .iter()
                        .map(|(name, value)| 20 + name.len() + value.len())
                        .sum::<usize>()
            })
            .sum(),
    };
    weir_proto::FRAME_HEADER_LEN + 128 + events_bytes
}

/// Why the node closes a connection on its own (besides a shutdown): the `reason` label of
/// `weir_node_connections_closed_total`.
pub(crate) const CLOSE_REASONS: [&str; 8] = [
    "unauthorized",
    "unsupported_version",
    "handshake_required",
    "handshake_timeout",
    "frame_error",
    "frame_timeout",
    "idle_timeout",
    "write_timeout",
];

/// Counts a connection the node closes for `reason` (one of [`CLOSE_REASONS`]).
pub(crate) fn closed_for(reason: &'static str) {
    debug_assert!(
        CLOSE_REASONS.contains(&reason),
        "an unlisted reason {reason}"
    );
    metrics::counter!("weir_node_connections_closed_total", "reason" => reason).increment(1);
}

/// Counts a frame refused as invalid, by the error code it is answered with.
fn invalid_frame(error: &weir_proto::FrameError) {
    metrics::counter!("weir_node_frames_invalid_total", "code" => error.code().name()).increment(1);
}

/// Compares two tokens in time that depends only on their lengths, not on where they differ.
fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut difference = u8::from(a.len() != b.len());
    for (i, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(i).copied().unwrap_or(0);
    }
    difference == 0
}

/// Frames before the handshake are at most this long (a `Hello` is far smaller): a peer that
/// has not shown its token never gets more than this charged to the node's buffers.
const HANDSHAKE_FRAME_BYTES_MAX: u32 = weir_proto::FRAME_BYTES_MIN;

/// One connection: the handshake, then requests until the peer leaves, breaks the protocol,
/// idles out, or the node shuts down.
async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    limits: FrameLimits,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let (read, write) = socket.into_split();
    let (frames, outgoing) = mpsc::channel::<Outgoing>(OUTPUT_FRAMES_MAX);
    let out = Out {
        frames,
        buffers: shared.buffers.connection(),
    };
    let writer_failed = Arc::new(Notify::new());
    let writer = tokio::spawn(write_frames(
        write,
        outgoing,
        config.write_timeout(),
        writer_failed.clone(),
        shared.noise.clone(),
    ));
    let handshake_limits =
        FrameLimits::new(HANDSHAKE_FRAME_BYTES_MAX.min(config.frame_bytes_max)).unwrap_or(limits);
    let mut reader = FrameReader::new(read, handshake_limits, out.buffers.clone());

    // The handshake: the first frame must be a Hello with an acceptable version and token.
    // The handshake deadline runs from the accept and covers the whole Hello: without the outer
    // timeout, a client dribbling its Hello a byte at a time would hold a connection slot for
    // the handshake timeout plus the (longer) frame deadline.
    let first = tokio::time::timeout(
        config.handshake_timeout(),
        reader.next(config.handshake_timeout(), config.frame_timeout()),
    )
    .await
    .unwrap_or(ReadOutcome::Incomplete);
    let welcomed = match first {
        ReadOutcome::Frame(frame, charge) => {
            drop(charge);
            match frame.message {
                Request::Hello(hello) => {
                    let response = welcome(config, &hello, peer, &shared.noise);
                    let ok = matches!(response, Response::Welcome(_));
                    send(&out, frame.request_id, response, None, &limits).await && ok
                }
                _ => {
                    closed_for("handshake_required");
                    send(
                        &out,
                        frame.request_id,
                        Response::error(
                            ErrorCode::HandshakeRequired,
                            "the first request must be a Hello",
                        ),
                        None,
                        &limits,
                    )
                    .await;
                    false
                }
            }
        }
        ReadOutcome::Invalid(error) => {
            invalid_frame(&error);
            closed_for("frame_error");
            let response = Response::error(error.code(), error.to_string());
            send(
                &out,
                error.request_id().unwrap_or(0),
                response,
                None,
                &limits,
            )
            .await;
            false
        }
        ReadOutcome::Idle | ReadOutcome::Incomplete => {
            closed_for("handshake_timeout");
            send(
                &out,
                0,
                Response::error(ErrorCode::Timeout, "no handshake in time"),
                None,
                &limits,
            )
            .await;
            false
        }
        ReadOutcome::Closed | ReadOutcome::Io(_) => false,
    };

    if welcomed {
        reader.set_limits(limits);
        serve_requests(
            &mut reader,
            &out,
            shared,
            limits,
            &mut stop,
            &writer_failed,
            peer,
        )
        .await;
    }
    drop(reader);
    drop(out);
    let _ = writer.await;
    // Its buffers are freed now; the allocator is to give them back to the OS, not keep them
    // (memory.rs).
    shared.trimmer.request();
}

/// The answer to a `Hello`: `Welcome`, or why not (counted, and logged within the rate limit).
fn welcome(
    config: &NodeConfig,
    hello: &weir_proto::Hello,
    peer: SocketAddr,
    noise: &Noise,
) -> Response {
    let version_ok = (weir_proto::PROTOCOL_VERSION_MIN..=weir_proto::PROTOCOL_VERSION)
        .contains(&hello.protocol_version);
    let token_ok = match (&config.token, &hello.token) {
        (None, _) => true,
        (Some(expected), Some(given)) => token_matches(expected, given),
        (Some(_), None) => false,
    };
    if !version_ok {
        closed_for("unsupported_version");
        Response::error(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not served (this node speaks {})",
                hello.protocol_version,
                weir_proto::PROTOCOL_VERSION
            ),
        )
    } else if !token_ok {
        closed_for("unauthorized");
        if let Some(note) = noise.allow(Kind::BadToken) {
            tracing::warn!(%peer, "handshake with a wrong or missing token{note}");
        }
        Response::error(ErrorCode::Unauthorized, "wrong or missing token")
    } else {
        Response::Welcome(weir_proto::Welcome {
            protocol_version: weir_proto::PROTOCOL_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
            frame_bytes_max: config.frame_bytes_max,
            in_flight_max: config.in_flight_max,
            idle_timeout_ms: config.idle_timeout_ms,
        })
    }
}

async fn serve_requests(
    reader: &mut FrameReader,
    out: &Out,
    shared: &Arc<Shared>,
    limits: FrameLimits,
    stop: &mut watch::Receiver<bool>,
    writer_failed: &Arc<Notify>,
    peer: SocketAddr,
) {
    let config = &shared.config;
    let in_flight_max = config.in_flight_max as usize;
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    let mut requests = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        // Biased: once the node is stopping or the writer has given up, no further frame is
        // taken (it could not be answered).
        let outcome = tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = writer_failed.notified() => break,
            outcome = reader.next(config.idle_timeout(), config.frame_timeout()) => outcome,
        };
        match outcome {
            ReadOutcome::Frame(frame, charge) => {
                metrics::counter!("weir_node_requests_total", "kind" => frame.message.kind_name())
                    .increment(1);
                match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        // A produce's values are slices of its frame: its charge lasts until the
                        // append is done. Other requests copied what they need when decoded.
                        let charge = matches!(frame.message, Request::Produce(_)).then_some(charge);
                        let shared = shared.clone();
                        let out = out.clone();
                        requests.spawn(async move {
                            // The writer gave up (a peer that does not read its answers, or a
                            // broken socket): nothing can be answered any more, so a request
                            // not yet started is dropped unrun (protocol.md, "Closing").
                            if out.frames.is_closed() {
                                metrics::counter!("weir_node_requests_dropped_total").increment(1);
                                return;
                            }
                            let answer = dispatch(&shared, frame.message, &out).await;
                            drop(charge);
                            if let Answer::Respond(response, charge) = answer {
                                send(&out, frame.request_id, response, charge, &limits).await;
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        drop(charge);
                        let response = Response::error(
                            ErrorCode::TooManyInFlight,
                            format!(
                                "at most {} requests may be in flight on one connection",
                                config.in_flight_max
                            ),
                        );
                        send(out, frame.request_id, response, None, &limits).await;
                    }
                }
                while requests.try_join_next().is_some() {}
            }
            ReadOutcome::Invalid(error) => {
                invalid_frame(&error);
                if let Some(note) = shared.noise.allow(Kind::MalformedFrame) {
                    tracing::info!(%peer, %error, "a malformed frame{note}");
                }
                let response = Response::error(error.code(), error.to_string());
                send(
                    out,
                    error.request_id().unwrap_or(0),
                    response,
                    None,
                    &limits,
                )
                .await;
                if error.closes_connection() {
                    closed_for("frame_error");
                    break;
                }
            }
            ReadOutcome::Idle if in_flight.available_permits() < in_flight_max => {
                // A request is in flight (a long poll may wait longer than the idle timeout):
                // the connection is not idle, so keep waiting for the next frame.
            }
            ReadOutcome::Idle => {
                closed_for("idle_timeout");
                send(
                    out,
                    0,
                    Response::error(ErrorCode::Timeout, "idle for too long"),
                    None,
                    &limits,
                )
                .await;
                break;
            }
            ReadOutcome::Incomplete => {
                closed_for("frame_timeout");
                send(
                    out,
                    0,
                    Response::error(ErrorCode::Timeout, "a frame did not arrive whole in time"),
                    None,
                    &limits,
                )
                .await;
                break;
            }
            ReadOutcome::Closed => break,
            ReadOutcome::Io(error) => {
                tracing::debug!(%peer, %error, "reading from a connection failed");
                break;
            }
        }
    }
    // Finish what is in flight (its responses are still written), then close.
    while requests.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_compare_by_content() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret", "secreT"));
        assert!(!token_matches("secret", "secret2"));
        assert!(!token_matches("secret", ""));
    }
}
