//! One connection to a node: a writer task sending encoded request frames, a reader task
//! decoding response frames and routing each to the request waiting for its id (pipelining;
//! responses may arrive in any order). A connection-level error (request id 0) or a broken
//! connection fails every waiting request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use weir_proto::{decode_frame, encode_frame, FrameLimits, Request, Response};

use crate::error::{Error, Result};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Response>>>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data, consistent after every critical section.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) struct Connection {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
    limits: FrameLimits,
    request_timeout: Duration,
}

impl Connection {
    pub(crate) async fn open(
        stream: TcpStream,
        limits: FrameLimits,
        request_timeout: Duration,
    ) -> Connection {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(256);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        {
            let closed = closed.clone();
            let pending = pending.clone();
            tokio::spawn(async move {
                while let Some(frame) = outgoing.recv().await {
                    if write.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                closed.store(true, Ordering::SeqCst);
                fail_all(&pending, || Error::Closed);
            });
        }
        tokio::spawn(read_responses(
            read,
            limits,
            pending.clone(),
            closed.clone(),
        ));
        Connection {
            frames,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            limits,
            request_timeout,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends `request` and waits for its response.
    pub(crate) async fn call(&self, request: &Request) -> Result<Response> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode_frame(&mut frame, id, request, &self.limits)?;
        let (done, response) = oneshot::channel();
        lock(&self.pending).insert(id, done);
        if self.frames.send(frame).await.is_err() {
            lock(&self.pending).remove(&id);
            return Err(Error::Closed);
        }
        match tokio::time::timeout(self.request_timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(Error::Timeout)
            }
        }
    }
}

fn fail_all(pending: &Pending, error: impl Fn() -> Error) {
    for (_, waiter) in lock(pending).drain() {
        let _ = waiter.send(Err(error()));
    }
}

async fn read_responses(
    mut read: OwnedReadHalf,
    limits: FrameLimits,
    pending: Pending,
    closed: Arc<AtomicBool>,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        match decode_frame::<Response>(&buffer, &limits) {
            Ok(Some((frame, consumed))) => {
                buffer.drain(..consumed);
                if frame.request_id == 0 {
                    // A connection-level error: it applies to every request, and the node
                    // closes the connection after it.
                    let (code, message, offsets) = match frame.message {
                        Response::Error(error) => (error.code, error.message, error.offsets),
                        _ => (
                            weir_proto::ErrorCode::Internal,
                            "a response without a request".into(),
                            None,
                        ),
                    };
                    closed.store(true, Ordering::SeqCst);
                    fail_all(&pending, || Error::Server {
                        code,
                        message: message.clone(),
                        offsets,
                    });
                    return;
                }
                if let Some(waiter) = lock(&pending).remove(&frame.request_id) {
                    let _ = waiter.send(Ok(frame.message));
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                closed.store(true, Ordering::SeqCst);
                fail_all(&pending, || Error::Protocol(error.clone()));
                return;
            }
        }
        buffer.reserve(64 * 1024);
        match read.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => {
                closed.store(true, Ordering::SeqCst);
                fail_all(&pending, || Error::Closed);
                return;
            }
            Ok(_) => {}
        }
    }
}
