//! `weir serve` as an operator meets it (issue 16): plain log lines when stderr is not a
//! terminal, a start-up line that names both bound addresses, every node metric on `/metrics`
//! from the start, bad-token floods that do not flood the log (the metrics count them exactly),
//! and `--help` without a dangling `[env: NAME=]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_proto::{encode_frame, FrameLimits, Hello, Request};

const TOKEN: &str = "serve-test-token";

/// A `weir serve` on ports of the system's choosing, its stderr in a file; killed when dropped.
struct Serve {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Serves on `listen` (client) and `admin`; port 0 lets the system choose.
    fn start(listen: SocketAddr, admin: SocketAddr) -> Serve {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let log = dir.path().join("node.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("serve")
            .args(["--listen", &listen.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log"));
        for (name, _) in std::env::vars() {
            if name.starts_with("WEIR_") || name == "NO_COLOR" {
                command.env_remove(name);
            }
        }
        command.env("RUST_LOG", "info").env("WEIR_TOKEN", TOKEN);
        let child = command.spawn().expect("spawn weir serve");
        Serve {
            child,
            log,
            _dir: dir,
        }
    }

    /// Serves on two ports known in advance (not read from the start-up line).
    fn start_on_free_ports() -> (Serve, SocketAddr, SocketAddr) {
        let (listen, admin) = (free_address(), free_address());
        let mut node = Serve::start(listen, admin);
        node.serving_line();
        (node, listen, admin)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The start-up line, once it is there.
    fn serving_line(&mut self) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|line| line.contains("weir node serving"))
            {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir serve exited ({status}):\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no start-up line in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The value of `name=` on a log line, up to the next space.
fn field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    Some(line[at..].split_whitespace().next()?.to_string())
}

fn get_metrics(admin: SocketAddr) -> String {
    let mut stream = TcpStream::connect(admin).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: weir\r\n\r\n")
        .expect("GET /metrics");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the answer");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series `series` (name and labels as rendered) in a `/metrics` body.
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// A handshake with a wrong token, and the node's answer (read until it closes).
fn bad_handshake(address: SocketAddr) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut frame = Vec::new();
    let hello = Request::Hello(Hello {
        protocol_version: weir_proto::PROTOCOL_VERSION,
        client_name: "intruder".into(),
        token: Some("not-the-token".into()),
    });
    encode_frame(&mut frame, 1, &hello, &FrameLimits::default()).expect("encode");
    stream.write_all(&frame).expect("send the Hello");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.is_empty(), "no answer to a bad token");
}

/// A loopback address with a port free now (bound and let go of).
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
}

#[test]
fn the_start_up_line_names_both_bound_addresses_in_plain_text() {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut node = Serve::start(any, any);
    let line = node.serving_line();
    // stderr is a file here, not a terminal: no colour codes.
    assert!(!line.contains('\u{1b}'), "ANSI escapes in {line:?}");
    // Both bound addresses, plainly, the ports of 127.0.0.1:0 resolved.
    let [address, admin] = ["address", "admin"].map(|name| {
        let value = field(&line, name).unwrap_or_else(|| panic!("no {name} on {line:?}"));
        let bound: SocketAddr = value
            .parse()
            .unwrap_or_else(|error| panic!("{error}: {name}={value} on {line:?}"));
        assert_ne!(bound.port(), 0, "{line:?}");
        bound
    });
    get_metrics(admin);
    bad_handshake(address);
    // Nor anywhere else in the log, a warning included.
    let log = node.log();
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log:\n{log}");
}

#[test]
fn every_node_metric_is_on_metrics_from_the_start() {
    let (_node, _, admin) = Serve::start_on_free_ports();
    let body = get_metrics(admin);
    for series in [
        "weir_node_connections",
        "weir_node_connections_refused_total",
        "weir_node_requests_dropped_total",
        "weir_node_buffer_bytes",
        "weir_node_connections_closed_total{reason=\"unauthorized\"}",
        "weir_node_connections_closed_total{reason=\"write_timeout\"}",
        "weir_node_frames_invalid_total{code=\"malformed_frame\"}",
        "weir_node_buffer_waits_total{level=\"node\"}",
        "weir_node_log_lines_suppressed_total{kind=\"bad_token\"}",
    ] {
        assert_eq!(metric(&body, series), Some(0.0), "{series} in:\n{body}");
    }
}

#[test]
fn bad_tokens_are_counted_exactly_and_logged_a_few_times() {
    let (node, address, admin) = Serve::start_on_free_ports();
    let attempts = 200;
    for _ in 0..attempts {
        bad_handshake(address);
    }
    let body = get_metrics(admin);
    assert_eq!(
        metric(
            &body,
            "weir_node_connections_closed_total{reason=\"unauthorized\"}"
        ),
        Some(f64::from(attempts)),
        "{body}"
    );
    let log = node.log();
    let warnings = log
        .lines()
        .filter(|line| line.contains("handshake with a wrong or missing token"))
        .count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} warnings for {attempts} bad tokens:\n{log}"
    );
    assert_eq!(
        metric(
            &body,
            "weir_node_log_lines_suppressed_total{kind=\"bad_token\"}"
        ),
        Some(f64::from(attempts) - warnings as f64),
        "{body}"
    );
}

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env_remove("WEIR_SERVER")
        .env_remove("WEIR_LISTEN")
        .output()
        .expect("run weir");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn help_lists_environment_variables_without_a_dangling_equals_sign() {
    let serve = help(&["serve", "--help"]);
    assert!(serve.contains("[env: WEIR_LISTEN]"), "{serve}");
    assert!(
        serve.contains("[env: WEIR_NODE_BUFFER_BYTES_MAX]"),
        "{serve}"
    );
    let topic = help(&["topic", "list", "--help"]);
    assert!(topic.contains("[env: WEIR_SERVER]"), "{topic}");
    for text in [&serve, &topic] {
        assert!(!text.contains("=]"), "a dangling `=`:\n{text}");
    }
}
