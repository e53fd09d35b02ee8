//! The admin HTTP listener: `GET /metrics` (Prometheus text), `/healthz` (the process is up) and
//! `/readyz` (recovery finished and the node accepts requests). A deliberately small HTTP/1.1
//! responder: one request per connection, a bounded request head, a read deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::dispatch::Shared;
use weir_proto::ErrorCode;

/// The largest request head read.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// The process-wide Prometheus recorder (installed once; later nodes in the same process,
/// as in tests, share it).
pub(crate) fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "no Prometheus recorder: another metrics recorder is installed");
                None
            }
        })
        .as_ref()
}

/// Registers every metric of the node (at 0) and describes it, so that `/metrics` lists them all
/// from the start rather than each after its first event. Metrics labelled by request kind
/// (`weir_node_requests_total`) appear with the first request of each kind; the store's metrics
/// with their topics and groups.
pub(crate) fn register_metrics() {
    use metrics::{counter, describe_counter, describe_gauge, gauge};
    describe_gauge!("weir_node_connections", "connections served now");
    gauge!("weir_node_connections").increment(0.0);
    describe_counter!(
        "weir_node_connections_refused_total",
        "connections refused at once because the node served connections_max"
    );
    counter!("weir_node_connections_refused_total").increment(0);
    describe_counter!(
        "weir_node_connections_closed_total",
        "connections the node closed because of the client, by reason"
    );
    for reason in crate::server::CLOSE_REASONS {
        counter!("weir_node_connections_closed_total", "reason" => reason).increment(0);
    }
    describe_counter!(
        "weir_node_frames_invalid_total",
        "frames refused as invalid, by the error code answered"
    );
    for code in [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownRequest,
    ] {
        counter!("weir_node_frames_invalid_total", "code" => code.name()).increment(0);
    }
    describe_counter!("weir_node_requests_total", "requests read, by kind");
    describe_counter!(
        "weir_node_requests_dropped_total",
        "requests dropped unrun because their connection could no longer be answered"
    );
    counter!("weir_node_requests_dropped_total").increment(0);
    describe_gauge!(
        "weir_node_buffer_bytes",
        "bytes of request and response buffers the connections hold (node_buffer_bytes_max)"
    );
    gauge!("weir_node_buffer_bytes").increment(0.0);
    describe_counter!(
        "weir_node_buffer_waits_total",
        "times a frame, read or answer waited for its connection to drain or for the node's buffers"
    );
    for level in ["connection", "node"] {
        counter!("weir_node_buffer_waits_total", "level" => level).increment(0);
    }
    describe_counter!(
        "weir_node_log_lines_suppressed_total",
        "log lines clients caused that the rate limit counted instead of writing, by kind"
    );
    for kind in crate::rate_limit::Kind::LABELS {
        counter!("weir_node_log_lines_suppressed_total", "kind" => kind).increment(0);
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let handle = prometheus();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((socket, _)) = accepted else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(socket, &shared, handle))
                .await;
        });
    }
}

async fn respond(
    mut socket: TcpStream,
    shared: &Shared,
    handle: Option<&PrometheusHandle>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => match handle {
            Some(handle) => {
                // A gauge read when asked for, not kept up to date on every charge.
                metrics::gauge!("weir_node_buffer_bytes")
                    .set(shared.buffers.charged_bytes() as f64);
                ("200 OK", "text/plain; version=0.0.4", handle.render())
            }
            None => (
                "503 Service Unavailable",
                "text/plain",
                "no metrics recorder\n".to_string(),
            ),
        },
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if shared.ready.load(Ordering::SeqCst) => {
            // Ready: the node serves. Damaged partitions are listed (they serve reads below
            // the damage and take no appends until `weir repair`); the rest works on.
            let damaged = shared.store.damaged_partitions();
            let mut body = "ready\n".to_string();
            if !damaged.is_empty() {
                body = format!(
                    "ready; {} damaged partition(s): reads stop at the damage, appends are \
                     refused until `weir repair`\n",
                    damaged.len()
                );
                for partition in damaged {
                    body.push_str(&format!(
                        "damaged {}/{}: readable below offset {}: {}\n",
                        partition.topic,
                        partition.partition,
                        partition.readable_end,
                        partition.damage
                    ));
                }
            }
            ("200 OK", "text/plain", body)
        }
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}
