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

use crate::config::NodeConfig;
use crate::connection::{write_frames, FrameReader, ReadOutcome};
use crate::dispatch::{dispatch, Shared};

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
    if let Some(admin) = admin {
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tasks.spawn(crate::admin::serve(admin, shared, stop));
    }
    shared.ready.store(true, Ordering::SeqCst);
    let address = listener.local_addr().ok();
    tracing::info!(?address, "weir node serving");
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
                        tracing::warn!(%error, "accept failed");
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

/// Frames waiting for the connection's writer, besides the one it is writing: with each at most
/// `frame_bytes_max`, this is the output buffer of 2 × `frame_bytes_max` of `docs/protocol.md`. Once it is full (a client that does not
/// read), requests in flight wait to hand over their response and the reader waits to answer
/// the next one, so the node stops reading the connection until the write deadline closes it.
/// (It was `in_flight_max + 4` frames: a client that never read its responses could make the
/// node hold about 2 × `in_flight_max` large responses, ~200 MiB per connection with 512 KiB
/// reads — found by `tests/abuse.rs`.)
const OUTPUT_FRAMES_MAX: usize = 2;

/// Sends `response` for `request_id`; false if the connection's writer is gone. The response is
/// dropped once encoded, so a request waiting for room in the output buffer holds one copy of
/// its answer, not two.
async fn send(
    frames: &mpsc::Sender<Vec<u8>>,
    request_id: u64,
    response: Response,
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
    match frame {
        Some(frame) => frames.send(frame).await.is_ok(),
        None => false,
    }
}

/// Encodes `response` as a frame (dropping it once encoded); an `internal` error frame if it
/// cannot be encoded; `None` if not even that can.
fn encode_response(request_id: u64, response: Response, limits: &FrameLimits) -> Option<Vec<u8>> {
    let mut frame = Vec::new();
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

/// Compares two tokens in time that depends only on their lengths, not on where they differ.
fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut difference = u8::from(a.len() != b.len());
    for (i, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(i).copied().unwrap_or(0);
    }
    difference == 0
}

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
    let (frames, outgoing) = mpsc::channel::<Vec<u8>>(OUTPUT_FRAMES_MAX);
    let writer_failed = Arc::new(Notify::new());
    let writer = tokio::spawn(write_frames(
        write,
        outgoing,
        config.write_timeout(),
        writer_failed.clone(),
    ));
    let mut reader = FrameReader::new(read, limits);

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
        ReadOutcome::Frame(frame) => match frame.message {
            Request::Hello(hello) => {
                let version_ok = (weir_proto::PROTOCOL_VERSION_MIN..=weir_proto::PROTOCOL_VERSION)
                    .contains(&hello.protocol_version);
                let token_ok = match (&config.token, &hello.token) {
                    (None, _) => true,
                    (Some(expected), Some(given)) => token_matches(expected, given),
                    (Some(_), None) => false,
                };
                let response = if !version_ok {
                    Response::error(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "protocol version {} is not served (this node speaks {})",
                            hello.protocol_version,
                            weir_proto::PROTOCOL_VERSION
                        ),
                    )
                } else if !token_ok {
                    tracing::warn!(%peer, "handshake with a wrong or missing token");
                    Response::error(ErrorCode::Unauthorized, "wrong or missing token")
                } else {
                    Response::Welcome(weir_proto::Welcome {
                        protocol_version: weir_proto::PROTOCOL_VERSION,
                        server_version: env!("CARGO_PKG_VERSION").to_string(),
                        frame_bytes_max: config.frame_bytes_max,
                        in_flight_max: config.in_flight_max,
                        idle_timeout_ms: config.idle_timeout_ms,
                    })
                };
                let ok = matches!(response, Response::Welcome(_));
                send(&frames, frame.request_id, response, &limits).await && ok
            }
            _ => {
                send(
                    &frames,
                    frame.request_id,
                    Response::error(
                        ErrorCode::HandshakeRequired,
                        "the first request must be a Hello",
                    ),
                    &limits,
                )
                .await;
                false
            }
        },
        ReadOutcome::Invalid(error) => {
            let response = Response::error(error.code(), error.to_string());
            send(&frames, error.request_id().unwrap_or(0), response, &limits).await;
            false
        }
        ReadOutcome::Idle | ReadOutcome::Incomplete => {
            send(
                &frames,
                0,
                Response::error(ErrorCode::Timeout, "no handshake in time"),
                &limits,
            )
            .await;
            false
        }
        ReadOutcome::Closed | ReadOutcome::Io(_) => false,
    };

    if welcomed {
        serve_requests(
            &mut reader,
            &frames,
            shared,
            limits,
            &mut stop,
            &writer_failed,
            peer,
        )
        .await;
    }
    drop(frames);
    let _ = writer.await;
}

async fn serve_requests(
    reader: &mut FrameReader,
    frames: &mpsc::Sender<Vec<u8>>,
    shared: &Arc<Shared>,
    limits: FrameLimits,
    stop: &mut watch::Receiver<bool>,
    writer_failed: &Arc<Notify>,
    peer: SocketAddr,
) {
    let config = &shared.config;
    let in_flight_max = config.in_flight_max as usize;
    let in_flight = Arc::new(Semaphore::new(in_flight_max));
    // Response bytes this connection may have in the making at once, in KiB: a request that
    // answers with events (a read, a batch) reserves its byte limit before it starts, and gives
    // it back once its response is queued. Other requests reserve nothing, so a produce or an
    // ack never waits behind reads. A client that sends reads faster than it takes their
    // answers has at most this budget's worth of them at work (the rest wait, holding nothing),
    // and `in_flight_max` bounds how many wait.
    let budget_kib = response_budget_kib(config.frame_bytes_max);
    let response_budget = Arc::new(Semaphore::new(budget_kib as usize));
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
            ReadOutcome::Frame(frame) => {
                metrics::counter!("weir_node_requests_total", "kind" => frame.message.kind_name())
                    .increment(1);
                match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let reserve =
                            response_kib(&frame.message, config.frame_bytes_max).min(budget_kib);
                        let budget = response_budget.clone();
                        let shared = shared.clone();
                        let frames = frames.clone();
                        requests.spawn(async move {
                            let reserved = match reserve {
                                0 => None,
                                kib => budget.acquire_many_owned(kib).await.ok(),
                            };
                            // The writer gave up (a peer that does not read its answers, or
                            // a broken socket): nothing can be answered any more, so a request
                            // not yet started is dropped unrun, as if the connection had
                            // dropped before it arrived (protocol.md, "Closing"). Otherwise
                            // every read waiting for the budget would run, one after another,
                            // for nobody.
                            if frames.is_closed() {
                                metrics::counter!("weir_node_requests_dropped_total").increment(1);
                                return;
                            }
                            let response = dispatch(&shared, frame.message).await;
                            send(&frames, frame.request_id, response, &limits).await;
                            drop(reserved);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let response = Response::error(
                            ErrorCode::TooManyInFlight,
                            format!(
                                "at most {} requests may be in flight on one connection",
                                config.in_flight_max
                            ),
                        );
                        send(frames, frame.request_id, response, &limits).await;
                    }
                }
                while requests.try_join_next().is_some() {}
            }
            ReadOutcome::Invalid(error) => {
                tracing::info!(%peer, %error, "a malformed frame");
                let response = Response::error(error.code(), error.to_string());
                send(frames, error.request_id().unwrap_or(0), response, &limits).await;
                if error.closes_connection() {
                    break;
                }
            }
            ReadOutcome::Idle if in_flight.available_permits() < in_flight_max => {
                // A request is in flight (a long poll may wait longer than the idle timeout):
                // the connection is not idle, so keep waiting for the next frame.
            }
            ReadOutcome::Idle => {
                send(
                    frames,
                    0,
                    Response::error(ErrorCode::Timeout, "idle for too long"),
                    &limits,
                )
                .await;
                break;
            }
            ReadOutcome::Incomplete => {
                send(
                    frames,
                    0,
                    Response::error(ErrorCode::Timeout, "a frame did not arrive whole in time"),
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

/// The response bytes one connection may have in the making at once (KiB): one of the
/// largest frames (so any single request fits, and a client pipelining reads of ordinary size
/// still has dozens in flight).
fn response_budget_kib(frame_bytes_max: u32) -> u32 {
    (u64::from(frame_bytes_max) / 1024).clamp(64, u64::from(u32::MAX >> 4)) as u32
}

/// What a request reserves of its connection's response budget (KiB): the byte limit it asked
/// for if it answers with events (capped by the largest frame); nothing otherwise.
fn response_kib(request: &Request, frame_bytes_max: u32) -> u32 {
    let bytes = match request {
        Request::Read(read) => u64::from(read.max_bytes),
        Request::Fetch(fetch) => fetch.settings.batch_bytes_max,
        _ => return 0,
    };
    (bytes.min(u64::from(frame_bytes_max)) / 1024).max(4) as u32
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
