//! The abuse driver of issue 8 ("Proof under faults"), shared by `tests/abuse.rs` (which
//! asserts on its [`Report`]) and the `abuse` suite of weir-bench (which prints its figures and
//! includes this file with `#[path]`).
//!
//! It starts a real `weir serve` process with short deadlines, runs a well-behaved client
//! (a producer, a consumer that acknowledges every batch, and a long-poller on a quiet topic,
//! each on its own connection) for the whole run, measures it undisturbed, and then runs the
//! abusive clients one scenario after another while the good client carries on, with an
//! undisturbed window again after each scenario (so both sets of latencies sample the disk over
//! the whole run):
//!
//! | scenario | what the abusers do | what the node must do |
//! |---|---|---|
//! | `oversized_prefix` | a 20-byte header claiming a 4 GiB body, before and after the handshake | `frame_too_large` (request id 0), close; no allocation (virtual size and RSS flat) |
//! | `bad_handshake` | a request before `Hello`; `Hello` with a wrong token; with none | `handshake_required` (the frame's id) / `unauthorized`, close |
//! | `idle` | connect and send nothing; handshake and send nothing | `timeout` (id 0), close at the handshake / idle timeout, not before |
//! | `slow_frames` | 1,000 connections sending one byte per second (a `Hello`, or a request after the handshake) | `timeout` (id 0), close at the handshake / frame deadline |
//! | `connection_flood` | fill the node to its connection cap, then connect many more at once | each extra one gets `too_many_connections` (id 0) and is closed at once; the cap frees up after |
//! | `never_reading_<n>` | `n` connections (4, 16, 64) pipeline large `Read`s and never read a response | bounded buffers (the node's RSS under 256 MiB), then the connection is closed by the write timeout |
//!
//! After every scenario the node's connection count must come back down to the good client's
//! connections (no handler leaks). Every attempt is either as expected or a failure with a
//! reason; the caller decides what to assert.

#![allow(
    dead_code,
    reason = "shared by a test and a benchmark, each of which uses a different part"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use weir_client::{
    Client, ClientConfig, ConsumerSettings, ErrorCode, Partitioning, ReadFrom, Record,
};
use weir_proto::{decode_frame, encode_frame, FrameLimits, Request, Response};

/// The node's counter of requests dropped unrun because their connection could not be answered.
const DROPPED_COUNTER: &str = "weir_node_requests_dropped_total";

/// The node's token.
pub const TOKEN: &str = "abuse-token";
/// The node's `frame_bytes_max`: its default. (The issue-8 runs used 1 MiB, so that "bounded"
/// was a small number; but the buffers a never-reading client could make the node hold grew
/// with it, and issue 16 measured 40 MiB per never-reading client at the default.) The node's
/// buffer limits (`connection_buffer_bytes_max`, `node_buffer_bytes_max`) are its defaults.
pub const FRAME_BYTES_MAX: u32 = weir_proto::FRAME_BYTES_DEFAULT;
/// The node's peak RSS must stay under this with any number of never-reading clients (issue 16).
pub const NEVER_READING_RSS_PEAK_MIB_MAX: f64 = 256.0;
/// How long after never-reading clients are gone the node's RSS is measured again (it must be
/// back within twice the idle node's by then).
pub const AFTER_NEVER_READING: Duration = Duration::from_secs(3);
/// The node's per-frame read deadline.
pub const FRAME_TIMEOUT: Duration = Duration::from_millis(2_000);
/// The node's idle timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(2_000);
/// The node's handshake deadline.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The node's write deadline.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(2_000);
/// The node's connection cap (its default).
pub const CONNECTIONS_MAX: usize = 1024;
/// How much later than its deadline a connection may be closed: the node, the 1,000 abusers
/// and the good client share two cores, in a debug build in CI.
pub const CLOSE_SLACK: Duration = Duration::from_millis(2_500);
/// The good client's connections: producer, consumer, long-poller.
const GOOD_CONNECTIONS: u32 = 3;
/// Bytes of each `Read` a never-reading client asks for.
pub const BULK_READ_BYTES: u32 = 512 * 1024;
/// The node's requests in flight per connection (its default).
pub const IN_FLIGHT_MAX: u32 = 128;

/// How much abuse to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long the good client runs alone first (its undisturbed latencies).
    pub undisturbed: Duration,
    /// How long it runs alone again after each scenario, also counted as undisturbed: so the
    /// undisturbed latencies sample the disk across the whole run, as the abused ones do (its
    /// fsync latency drifts by 10× over a minute on a shared VM).
    pub gap: Duration,
    /// Connections sending a 4 GiB length prefix.
    pub oversized: usize,
    /// Connections with a request before the handshake or a bad token.
    pub bad_handshakes: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections sending one byte per second.
    pub slow: usize,
    /// Connections past the cap.
    pub flood: usize,
    /// Connections that never read their responses: one scenario per entry
    /// (`never_reading_<count>`), in order.
    pub never_reading: Vec<usize>,
}

impl Settings {
    /// The figures of issue 8.
    pub fn issue() -> Settings {
        Settings {
            undisturbed: Duration::from_secs(2),
            gap: Duration::from_secs(1),
            oversized: 1_000,
            bad_handshakes: 300,
            idle: 200,
            slow: 1_000,
            flood: 500,
            never_reading: vec![4, 16, 64],
        }
    }
}

/// What one scenario did.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// Its name (see the module's table; `never_reading_<count>` for never-reading clients).
    pub name: String,
    /// Abusive connections made.
    pub attempted: usize,
    /// Those the node treated exactly as specified.
    pub as_expected: usize,
    /// The first few that were not, with the reason.
    pub failures: Vec<String>,
    /// What the close times are measured from, in words.
    pub close_from: &'static str,
    /// Median time to the node's close.
    pub close_p50: Duration,
    /// Slowest close.
    pub close_max: Duration,
    /// The deadline the close is due by, slack included.
    pub close_bound: Duration,
    /// The node's RSS before the scenario, MiB.
    pub rss_before_mib: f64,
    /// The node's highest RSS sampled during the scenario, MiB.
    pub rss_peak_mib: f64,
    /// The node's RSS once the scenario was over (its abusers gone) and the undisturbed gap
    /// after it had passed (at least [`AFTER_NEVER_READING`] after never-reading clients), MiB.
    pub rss_after_mib: f64,
    /// How much the node's peak virtual size (VmPeak) grew during the scenario, MiB.
    pub vm_peak_growth_mib: f64,
    /// Time for the node's connection count to come back to the good client's, after.
    pub settle: Duration,
    /// The good client's produce p99 during this scenario, ms.
    pub produce_p99_ms: f64,
    /// Requests the node dropped unrun during this scenario because their connection could no
    /// longer take an answer (`weir_node_requests_dropped_total`, from its `/metrics`).
    pub requests_dropped: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Operations measured.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
            samples[rank.min(samples.len() - 1)].as_secs_f64() * 1000.0
        };
        Latency {
            count: samples.len(),
            p50_ms: at(50.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
        }
    }
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per scenario, in the order run.
    pub scenarios: Vec<Scenario>,
    /// Produce (append 10 × 100 B, fsync) round trips, undisturbed.
    pub produce_undisturbed: Latency,
    /// The same, while the abusers ran.
    pub produce_under_abuse: Latency,
    /// Consume (fetch a non-empty batch, then ack it) round trips, undisturbed.
    pub consume_undisturbed: Latency,
    /// The same, while the abusers ran.
    pub consume_under_abuse: Latency,
    /// Every error the good client saw (it should see none).
    pub good_errors: Vec<String>,
    /// Events the good client produced.
    pub produced: u64,
    /// Events the good client consumed (and acknowledged), in order.
    pub consumed: u64,
    /// Long polls (longer than the idle timeout) the good client completed on a quiet topic.
    pub long_polls: u64,
    /// The node's RSS after start-up and the good client's first seconds, MiB.
    pub rss_undisturbed_mib: f64,
    /// The node's peak RSS over the whole run (VmHWM), MiB.
    pub rss_peak_mib: f64,
    /// The node's log (stderr), for a failure message.
    pub node_log: PathBuf,
}

impl Report {
    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(
            &mut out,
            format!(
                "{:<18} {:>6} {:>6} {:>9} {:>9} {:>9}  {:<26} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
                "scenario",
                "made",
                "ok",
                "close p50",
                "close max",
                "bound",
                "close measured from",
                "rss0 MiB",
                "rss^ MiB",
                "rss1 MiB",
                "vm+ MiB",
                "settle",
                "prod p99",
                "dropped"
            ),
        );
        for s in &self.scenarios {
            line(
                &mut out,
                format!(
                    "{:<18} {:>6} {:>6} {:>7.0}ms {:>7.0}ms {:>7.0}ms  {:<26} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6.0}ms {:>7.1}ms {:>8}",
                    s.name,
                    s.attempted,
                    s.as_expected,
                    ms(s.close_p50),
                    ms(s.close_max),
                    ms(s.close_bound),
                    s.close_from,
                    s.rss_before_mib,
                    s.rss_peak_mib,
                    s.rss_after_mib,
                    s.vm_peak_growth_mib,
                    ms(s.settle),
                    s.produce_p99_ms,
                    s.requests_dropped
                ),
            );
            for failure in &s.failures {
                line(&mut out, format!("    failure: {failure}"));
            }
        }
        for (name, undisturbed, abused) in [
            (
                "produce",
                self.produce_undisturbed,
                self.produce_under_abuse,
            ),
            (
                "consume",
                self.consume_undisturbed,
                self.consume_under_abuse,
            ),
        ] {
            line(
                &mut out,
                format!(
                    "good {name}: undisturbed p50 {:.2} ms p99 {:.2} ms (n={}); under abuse p50 {:.2} ms p99 {:.2} ms max {:.1} ms (n={}); p99 ratio {:.2}x",
                    undisturbed.p50_ms,
                    undisturbed.p99_ms,
                    undisturbed.count,
                    abused.p50_ms,
                    abused.p99_ms,
                    abused.max_ms,
                    abused.count,
                    abused.p99_ms / undisturbed.p99_ms
                ),
            );
        }
        line(
            &mut out,
            format!(
                "good client: produced {}, consumed {} in order, {} long polls, {} errors; node RSS {:.1} MiB undisturbed, peak {:.1} MiB",
                self.produced,
                self.consumed,
                self.long_polls,
                self.good_errors.len(),
                self.rss_undisturbed_mib,
                self.rss_peak_mib
            ),
        );
        for error in self.good_errors.iter().take(10) {
            line(&mut out, format!("    good client error: {error}"));
        }
        out
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs every scenario against a `weir serve` started from `binary`.
///
/// # Panics
/// If the node cannot be started or the good client cannot set up its topics: there is
/// nothing to measure then.
pub fn run(binary: &Path, settings: &Settings) -> Report {
    // The abusers' threads run at a lower CPU priority (nice 10): they stand for clients on
    // other machines, whose own work (opening 1,500 connections, encoding thousands of
    // requests) would otherwise take the cores from the node and the good client, and the
    // figures would measure this driver. The node's work for each abuser is not lowered.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(lower_this_threads_priority)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The good client gets a runtime of its own, as a separate program would have: on the
    // abusers' runtime its wake-ups would queue behind thousands of abusive tasks, and its
    // latency would measure the driver's scheduler rather than the node. Both runtimes and the
    // node still share the machine's cores.
    let good_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("good-client")
        .enable_all()
        .build()
        .expect("the good client's tokio runtime");
    let report = runtime.block_on(run_async(binary, settings, good_runtime.handle()));
    good_runtime.shutdown_timeout(Duration::from_secs(5));
    report
}

/// A `weir serve` child process, killed when dropped.
struct NodeProcess {
    child: Child,
    address: SocketAddr,
    /// The admin HTTP listener (`/metrics`).
    admin: SocketAddr,
    log: PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn start(binary: &Path, dir: &Path) -> NodeProcess {
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "token = \"{TOKEN}\"\n\
                 frame_bytes_max = {FRAME_BYTES_MAX}\n\
                 event_bytes_max = {}\n\
                 frame_timeout_ms = {}\n\
                 idle_timeout_ms = {}\n\
                 handshake_timeout_ms = {}\n\
                 write_timeout_ms = {}\n\
                 connections_max = {CONNECTIONS_MAX}\n\
                 in_flight_max = {IN_FLIGHT_MAX}\n",
                256 * 1024,
                FRAME_TIMEOUT.as_millis(),
                IDLE_TIMEOUT.as_millis(),
                HANDSHAKE_TIMEOUT.as_millis(),
                WRITE_TIMEOUT.as_millis(),
            ),
        )
        .expect("write the node's config");
        let log = dir.join("node.log");
        // The port is found by binding port 0 and letting go of it; another process may take
        // it in between, so a node that exits at once is retried on a fresh port.
        for _ in 0..5 {
            let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let child = Command::new(binary)
                .args(["serve", "--listen", &address.to_string()])
                .args(["--admin-listen", &admin.to_string()])
                .arg("--data-dir")
                .arg(dir.join("data"))
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the node's log"))
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
            let mut node = NodeProcess {
                child,
                address,
                admin,
                log: log.clone(),
            };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = node.child.try_wait() {
                    break;
                }
                if TcpStream::connect(address).await.is_ok() {
                    return node;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = node.child.kill();
        }
        panic!(
            "the node did not start; its log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// Lowers the calling thread's CPU priority to nice 10 with `renice` (Linux keeps a nice value
/// per thread; `/proc/thread-self` names the thread). Best effort: without `renice` the
/// abusers keep the normal priority, and the figures are only more pessimistic.
fn lower_this_threads_priority() {
    let Some(thread_id) = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name().map(|id| id.to_os_string()))
    else {
        return;
    };
    // `-n 10` is the nice value itself (util-linux), not an increment, unless POSIXLY_CORRECT.
    let _ = Command::new("renice")
        .args(["-n", "10", "-p"])
        .arg(thread_id)
        .env_remove("POSIXLY_CORRECT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A port free now (bound to port 0 and let go of; another process may take it before the node
/// does, so a node that exits at once is retried).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
        .port()
}

/// The value of one counter without labels in the node's `/metrics` (0 if it is not there yet:
/// a counter appears with its first increment).
async fn node_counter(admin: SocketAddr, name: &str) -> Result<u64, String> {
    let mut stream = TcpStream::connect(admin)
        .await
        .map_err(|e| format!("connect to the admin listener: {e}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: weir\r\n\r\n")
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut body))
        .await
        .map_err(|_| "GET /metrics: no answer within 10 s".to_string())?
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if !body.starts_with("HTTP/1.1 200") && !body.starts_with("HTTP/1.0 200") {
        let status = body.lines().next().unwrap_or_default();
        return Err(format!("GET /metrics answered {status:?}"));
    }
    let value = body.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse::<f64>().ok())?
    });
    Ok(value.map_or(0, |v| v as u64))
}

/// Reads one field (kB) of `/proc/<pid>/status`, in MiB.
pub fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Samples the node's RSS every 10 ms and keeps the highest value since the last reset.
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Samples on a thread of its own at normal priority (not on the abusers' runtime, whose
    /// threads run at nice 10 and could miss a short peak while the node is busy).
    fn start(pid: u32) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, stopped) = (peak_kib.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let rss = proc_status_mib(pid, "VmRSS");
                    if rss.is_finite() {
                        peak.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("start the RSS sampler");
        RssSampler {
            peak_kib,
            stop,
            thread: Some(thread),
        }
    }

    fn reset(&self) {
        self.peak_kib.store(0, Ordering::Relaxed);
    }

    fn peak_mib(&self) -> f64 {
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The well-behaved client's state: which scenario is running, its samples, its errors.
#[derive(Default)]
struct Good {
    /// 0 while undisturbed (first, and between scenarios), else 1 + the index of the running
    /// scenario.
    phase: AtomicUsize,
    stopping: AtomicBool,
    produce: Mutex<Vec<(usize, Duration)>>,
    consume: Mutex<Vec<(usize, Duration)>>,
    errors: Mutex<Vec<String>>,
    produced: AtomicU64,
    consumed: AtomicU64,
    long_polls: AtomicU64,
}

impl Good {
    fn error(&self, what: &str, error: impl std::fmt::Display) {
        let phase = self.phase.load(Ordering::Relaxed);
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < 1000 {
            errors.push(format!("{what} (phase {phase}): {error}"));
        }
    }

    /// After an error, as a real client would: pause, and reconnect if the connection is gone.
    async fn recover(&self, client: &Client) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = client.reconnect().await;
    }

    fn samples(list: &Mutex<Vec<(usize, Duration)>>, keep: impl Fn(usize) -> bool) -> Latency {
        let list = list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Latency::of(
            list.iter()
                .filter(|(phase, _)| keep(*phase))
                .map(|(_, sample)| *sample)
                .collect(),
        )
    }
}

fn good_config() -> ClientConfig {
    let mut config = ClientConfig::default().token(TOKEN);
    config.client_name = "good".into();
    config
}

async fn produce_loop(client: Client, good: Arc<Good>) {
    while !good.stopping.load(Ordering::Relaxed) {
        let records: Vec<Record> = (0..10).map(|_| Record::new(vec![b'g'; 100])).collect();
        let phase = good.phase.load(Ordering::Relaxed);
        let started = Instant::now();
        match client
            .append("good", records, Partitioning::Partition(0))
            .await
        {
            Ok(_) => {
                let elapsed = started.elapsed();
                good.produce
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((phase, elapsed));
                good.produced.fetch_add(10, Ordering::Relaxed);
            }
            Err(error) => {
                good.error("produce", error);
                good.recover(&client).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn consume_loop(client: Client, good: Arc<Good>) {
    let settings = ConsumerSettings {
        batch_size: 100,
        max_wait_ms: 2,
        ..ConsumerSettings::default()
    };
    let consumer = client.consumer("good", "good", settings);
    let mut drain_deadline = None;
    loop {
        if good.stopping.load(Ordering::Relaxed) {
            // Drain what was produced, then stop.
            let deadline =
                *drain_deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(10));
            if good.consumed.load(Ordering::Relaxed) >= good.produced.load(Ordering::Relaxed)
                || Instant::now() > deadline
            {
                return;
            }
        }
        let phase = good.phase.load(Ordering::Relaxed);
        let started = Instant::now();
        match consumer.next_batch(Duration::from_millis(500)).await {
            Ok(Some(batch)) => {
                let expected = good.consumed.load(Ordering::Relaxed);
                if batch.first_offset != expected {
                    good.error(
                        "consume",
                        format!(
                            "batch from offset {} while {expected} were consumed",
                            batch.first_offset
                        ),
                    );
                }
                match consumer.ack(&batch).await {
                    Ok(()) => {
                        let elapsed = started.elapsed();
                        good.consume
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((phase, elapsed));
                        good.consumed
                            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
                    }
                    Err(error) => {
                        good.error("ack", error);
                        good.recover(&client).await;
                    }
                }
            }
            Ok(None) => {}
            Err(error) => {
                good.error("fetch", error);
                good.recover(&client).await;
            }
        }
    }
}

/// Long polls, each longer than the idle timeout, on a topic nobody writes: a client waiting
/// for news is not idle.
async fn long_poll_loop(client: Client, good: Arc<Good>) {
    while !good.stopping.load(Ordering::Relaxed) {
        let wait = IDLE_TIMEOUT + Duration::from_millis(500);
        match client
            .read("quiet", 0, ReadFrom::Latest, 10, 64 * 1024, wait)
            .await
        {
            Ok(read) if read.events.is_empty() => {
                good.long_polls.fetch_add(1, Ordering::Relaxed);
            }
            Ok(read) => good.error(
                "long poll",
                format!("{} events on a quiet topic", read.events.len()),
            ),
            Err(error) => {
                good.error("long poll", error);
                good.recover(&client).await;
            }
        }
    }
}

async fn run_async(binary: &Path, settings: &Settings, good_runtime: &Handle) -> Report {
    let dir = tempfile::Builder::new()
        .prefix("weir-abuse-")
        .tempdir()
        .expect("a scratch directory");
    let node = NodeProcess::start(binary, dir.path()).await;
    let address = node.address;
    let pid = node.pid();
    let admin = Client::connect(address, good_config())
        .await
        .expect("the good client connects");
    for topic in ["good", "quiet", "bulk"] {
        admin
            .create_topic(topic, 1, Default::default())
            .await
            .expect("create the topics");
    }
    // 8 MiB for the never-reading clients to ask for, in log frames of 512 KiB.
    for _ in 0..16 {
        let records: Vec<Record> = (0..4)
            .map(|_| Record::new(vec![b'b'; 128 * 1024]))
            .collect();
        admin
            .append("bulk", records, Partitioning::Partition(0))
            .await
            .expect("fill the bulk topic");
    }
    drop(admin);

    let good = Arc::new(Good::default());
    // Connected on the good runtime, so that their connections' tasks run there too.
    let connect_good = || async {
        good_runtime
            .spawn(Client::connect(address, good_config()))
            .await
            .expect("the connect task")
            .expect("connect")
    };
    let producer = connect_good().await;
    let consumer = connect_good().await;
    let poller = connect_good().await;
    let mut good_tasks = JoinSet::new();
    good_tasks.spawn_on(produce_loop(producer.clone(), good.clone()), good_runtime);
    good_tasks.spawn_on(consume_loop(consumer, good.clone()), good_runtime);
    good_tasks.spawn_on(long_poll_loop(poller, good.clone()), good_runtime);
    tokio::time::sleep(settings.undisturbed).await;

    let sampler = RssSampler::start(pid);
    let mut report = Report {
        rss_undisturbed_mib: proc_status_mib(pid, "VmRSS"),
        node_log: node.log.clone(),
        ..Report::default()
    };
    let context = Context {
        address,
        producer: producer.clone(),
    };
    type Runner = fn(Context, usize) -> Attempts;
    let mut scenarios: Vec<(String, usize, &'static str, Duration, Runner)> = vec![
        (
            "oversized_prefix".into(),
            settings.oversized,
            "sending the header",
            CLOSE_SLACK,
            |c, n| Box::pin(oversized(c, n)),
        ),
        (
            "bad_handshake".into(),
            settings.bad_handshakes,
            "connecting",
            CLOSE_SLACK,
            |c, n| Box::pin(bad_handshakes(c, n)),
        ),
        (
            "idle".into(),
            settings.idle,
            "connect / handshake",
            IDLE_TIMEOUT.max(HANDSHAKE_TIMEOUT) + CLOSE_SLACK,
            |c, n| Box::pin(idle(c, n)),
        ),
        (
            "slow_frames".into(),
            settings.slow,
            "connect / first byte",
            FRAME_TIMEOUT.max(HANDSHAKE_TIMEOUT) + CLOSE_SLACK,
            |c, n| Box::pin(slow_frames(c, n)),
        ),
        (
            "connection_flood".into(),
            settings.flood,
            "connecting past the cap",
            CLOSE_SLACK,
            |c, n| Box::pin(connection_flood(c, n)),
        ),
    ];
    for &count in &settings.never_reading {
        scenarios.push((
            format!("never_reading_{count}"),
            count,
            "the first request",
            WRITE_TIMEOUT + CLOSE_SLACK + Duration::from_secs(2),
            |c, n| Box::pin(never_reading(c, n)),
        ));
    }
    // A scenario with no connections is not run (an experiment's selection).
    scenarios.retain(|scenario| scenario.1 > 0);
    for (index, (name, count, close_from, close_bound, runner)) in scenarios.into_iter().enumerate()
    {
        let rss_before_mib = proc_status_mib(pid, "VmRSS");
        let vm_peak_before = proc_status_mib(pid, "VmPeak");
        let dropped_before = node_counter(node.admin, DROPPED_COUNTER).await;
        sampler.reset();
        good.phase.store(index + 1, Ordering::Relaxed);
        let phase_started = Instant::now();
        eprintln!("abuse: {name} ({count} connections)...");
        let outcomes = runner(context.clone(), count).await;
        eprintln!(
            "abuse: {name} done in {:.1} s",
            phase_started.elapsed().as_secs_f64()
        );
        let mut scenario = Scenario {
            name: name.clone(),
            attempted: outcomes.len(),
            close_from,
            close_bound,
            ..Scenario::default()
        };
        let mut closes = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok(close) if close <= close_bound => {
                    scenario.as_expected += 1;
                    closes.push(close);
                }
                Ok(close) => scenario.failures.push(format!(
                    "closed after {:.0} ms, past the bound of {:.0} ms",
                    ms(close),
                    ms(close_bound)
                )),
                Err(reason) => scenario.failures.push(reason),
            }
        }
        closes.sort_unstable();
        scenario.close_p50 = closes.get(closes.len() / 2).copied().unwrap_or_default();
        scenario.close_max = closes.last().copied().unwrap_or_default();
        // Every abusive connection must be gone from the node.
        let settle_started = Instant::now();
        loop {
            match producer.server_info().await {
                Ok(info) if info.connections <= GOOD_CONNECTIONS => break,
                Ok(info) if settle_started.elapsed() > Duration::from_secs(10) => {
                    scenario.failures.push(format!(
                        "{} connections still open 10 s after the scenario (the good client has {GOOD_CONNECTIONS})",
                        info.connections
                    ));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(error) => {
                    good.error("server info", error);
                    break;
                }
            }
        }
        scenario.settle = settle_started.elapsed();
        scenario.rss_before_mib = rss_before_mib;
        scenario.rss_peak_mib = sampler.peak_mib();
        scenario.vm_peak_growth_mib = proc_status_mib(pid, "VmPeak") - vm_peak_before;
        scenario.produce_p99_ms = Good::samples(&good.produce, |phase| phase == index + 1).p99_ms;
        match (
            dropped_before,
            node_counter(node.admin, DROPPED_COUNTER).await,
        ) {
            (Ok(before), Ok(after)) => scenario.requests_dropped = after.saturating_sub(before),
            (Err(error), _) | (_, Err(error)) => scenario.failures.push(error),
        }
        scenario.failures.truncate(5);
        good.phase.store(0, Ordering::Relaxed);
        // Never-reading clients leave their memory to give back, which takes the node a moment
        // (it trims its allocator after connections close, at most once a second): their RSS
        // "after" is measured a fixed while after they are gone.
        let after = if name.starts_with("never_reading_") {
            settings.gap.max(AFTER_NEVER_READING)
        } else {
            settings.gap
        };
        tokio::time::sleep(after).await;
        scenario.rss_after_mib = proc_status_mib(pid, "VmRSS");
        report.scenarios.push(scenario);
    }

    good.stopping.store(true, Ordering::Relaxed);
    while let Some(joined) = good_tasks.join_next().await {
        if let Err(error) = joined {
            good.error("task", error);
        }
    }
    report.rss_peak_mib = proc_status_mib(pid, "VmHWM");
    report.produce_undisturbed = Good::samples(&good.produce, |phase| phase == 0);
    report.produce_under_abuse = Good::samples(&good.produce, |phase| phase > 0);
    report.consume_undisturbed = Good::samples(&good.consume, |phase| phase == 0);
    report.consume_under_abuse = Good::samples(&good.consume, |phase| phase > 0);
    report.produced = good.produced.load(Ordering::Relaxed);
    report.consumed = good.consumed.load(Ordering::Relaxed);
    report.long_polls = good.long_polls.load(Ordering::Relaxed);
    report.good_errors = good
        .errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // Keep the node's log past the scratch directory when something went wrong.
    let failed =
        !report.good_errors.is_empty() || report.scenarios.iter().any(|s| !s.failures.is_empty());
    let kept = std::env::temp_dir().join(format!("weir-abuse-node-{pid}.log"));
    if failed && std::fs::copy(dir.path().join("node.log"), &kept).is_ok() {
        report.node_log = kept;
    }
    drop(sampler);
    drop(node);
    report
}

/// What a scenario needs.
#[derive(Clone)]
struct Context {
    address: SocketAddr,
    /// The good producer's client, for `ServerInfo` (connection counts).
    producer: Client,
}

/// One attempt: the time to the node's close (from the moment named in the report), or why it
/// was not as specified.
type Attempt = Result<Duration, String>;

/// A scenario run: one attempt per abusive connection.
type Attempts = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Attempt>> + Send>>;

/// Runs `count` attempts, at most `concurrency` at once.
async fn attempts<F, Fut>(count: usize, concurrency: usize, attempt: F) -> Vec<Attempt>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Attempt> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await.expect("open semaphore");
        let attempt = attempt(i);
        set.spawn(async move {
            let outcome = attempt.await;
            drop(permit);
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        outcomes.push(joined.unwrap_or_else(|error| Err(format!("the attempt panicked: {error}"))));
    }
    outcomes
}

fn frame(request_id: u64, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, request_id, request, &FrameLimits::default())
        .expect("a request that fits in a frame");
    out
}

fn hello(token: Option<&str>) -> Request {
    Request::Hello(weir_proto::Hello {
        protocol_version: weir_proto::PROTOCOL_VERSION,
        client_name: "abuser".into(),
        token: token.map(str::to_string),
    })
}

async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|error| format!("connect: {error}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The first response frame on `stream`, within `wait`.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Result<(u64, Response), String> {
    let limits = FrameLimits::default();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match decode_frame::<Response>(&buffer, &limits) {
            Ok(Some((frame, _))) => return Ok((frame.request_id, frame.message)),
            Ok(None) => {}
            Err(error) => return Err(format!("a bad frame from the node: {error}")),
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| format!("no response within {wait:?}"))?
            .map_err(|error| format!("read: {error}"))?;
        if read == 0 {
            return Err("closed without a response".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

/// Expects the error `code` for `request_id`, then the node's close.
async fn expect_error_and_close(
    stream: &mut TcpStream,
    request_id: u64,
    code: ErrorCode,
    wait: Duration,
) -> Result<(), String> {
    let (id, response) = read_response(stream, wait).await?;
    if (id, error_code(&response)) != (request_id, Some(code)) {
        return Err(format!(
            "expected {} for request {request_id}, got {response:?} for request {id}",
            code.name()
        ));
    }
    expect_close(stream, Duration::from_secs(5)).await
}

/// Expects the node to close `stream` (end of stream or a reset) within `wait`.
async fn expect_close(stream: &mut TcpStream, wait: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Err(format!("not closed within {wait:?} of the answer")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn handshake(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(&frame(1, &hello(Some(TOKEN))))
        .await
        .map_err(|error| format!("write the Hello: {error}"))?;
    match read_response(stream, Duration::from_secs(10)).await? {
        (1, Response::Welcome(_)) => Ok(()),
        other => Err(format!("handshake answered {other:?}")),
    }
}

/// A frame header that claims a 4 GiB body.
fn oversized_header() -> [u8; weir_proto::FRAME_HEADER_LEN] {
    let mut header = [0u8; weir_proto::FRAME_HEADER_LEN];
    header[0..2].copy_from_slice(&weir_proto::FRAME_MAGIC);
    header[2] = weir_proto::FRAME_VERSION;
    header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    header[8..16].copy_from_slice(&9u64.to_le_bytes());
    header
}

async fn oversized(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    attempts(count, 64, move |i| async move {
        let mut stream = connect(address).await?;
        if i % 2 == 1 {
            handshake(&mut stream).await?;
        }
        let started = Instant::now();
        stream
            .write_all(&oversized_header())
            .await
            .map_err(|error| format!("write: {error}"))?;
        expect_error_and_close(
            &mut stream,
            0,
            ErrorCode::FrameTooLarge,
            Duration::from_secs(10),
        )
        .await?;
        Ok(started.elapsed())
    })
    .await
}

async fn bad_handshakes(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    attempts(count, 64, move |i| async move {
        let started = Instant::now();
        let mut stream = connect(address).await?;
        let (bytes, request_id, code) = match i % 3 {
            0 => (
                frame(7, &Request::ListTopics),
                7,
                ErrorCode::HandshakeRequired,
            ),
            1 => (
                frame(1, &hello(Some("not-the-token"))),
                1,
                ErrorCode::Unauthorized,
            ),
            _ => (frame(1, &hello(None)), 1, ErrorCode::Unauthorized),
        };
        stream
            .write_all(&bytes)
            .await
            .map_err(|error| format!("write: {error}"))?;
        expect_error_and_close(&mut stream, request_id, code, Duration::from_secs(10)).await?;
        Ok(started.elapsed())
    })
    .await
}

async fn idle(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    attempts(count, count.max(1), move |i| async move {
        let mut stream = connect(address).await?;
        let mut started = Instant::now();
        let due = if i % 2 == 1 {
            handshake(&mut stream).await?;
            started = Instant::now();
            IDLE_TIMEOUT
        } else {
            HANDSHAKE_TIMEOUT
        };
        expect_error_and_close(&mut stream, 0, ErrorCode::Timeout, due + CLOSE_SLACK * 2).await?;
        let elapsed = started.elapsed();
        // Not before its time either (a little early is the clocks' rounding).
        if elapsed + Duration::from_millis(50) < due {
            return Err(format!(
                "closed after {:.0} ms, before the {:.0} ms timeout",
                ms(elapsed),
                ms(due)
            ));
        }
        Ok(elapsed)
    })
    .await
}

/// Half of the connections dribble a `Hello`, the others a request after the handshake, one
/// byte per second: each frame would take 20 s or more to arrive.
async fn slow_frames(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    attempts(count, count.max(1), move |i| async move {
        let mut stream = connect(address).await?;
        let connected = Instant::now();
        let handshaken = i % 2 == 1;
        let bytes = if handshaken {
            handshake(&mut stream).await?;
            frame(2, &Request::ListTopics)
        } else {
            frame(1, &hello(Some(TOKEN)))
        };
        let (mut read, mut write) = stream.into_split();
        let mut received = Vec::new();
        let mut chunk = [0u8; 1024];
        let mut sent = 0;
        let mut first_byte = None;
        let mut next_byte = tokio::time::Instant::now();
        let give_up = tokio::time::Instant::now() + FRAME_TIMEOUT + CLOSE_SLACK * 3;
        loop {
            tokio::select! {
                outcome = read.read(&mut chunk) => match outcome {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                },
                () = tokio::time::sleep_until(next_byte), if sent < bytes.len() => {
                    if write.write_all(&bytes[sent..=sent]).await.is_err() {
                        sent = bytes.len(); // the node closed its side; read what it said
                    } else {
                        sent += 1;
                        first_byte.get_or_insert_with(Instant::now);
                    }
                    next_byte += Duration::from_secs(1);
                }
                () = tokio::time::sleep_until(give_up) => {
                    return Err(format!("still open after {:.0} ms", ms(connected.elapsed())));
                }
            }
        }
        // Before the handshake the deadline runs from the accept; after it, from the first
        // byte of the frame.
        let elapsed = if handshaken {
            first_byte.map_or(Duration::ZERO, |first| first.elapsed())
        } else {
            connected.elapsed()
        };
        match decode_frame::<Response>(&received, &FrameLimits::default()) {
            Ok(Some((frame, _)))
                if (frame.request_id, error_code(&frame.message))
                    == (0, Some(ErrorCode::Timeout)) =>
            {
                Ok(elapsed)
            }
            other => Err(format!(
                "closed after {sent} bytes ({} handshake) without a timeout error: {other:?}",
                if handshaken {
                    "after the"
                } else {
                    "before the"
                }
            )),
        }
    })
    .await
}

/// Fills the node to its cap with well-behaved connections (each sends a request every 500 ms
/// so as not to idle out), then connects `count` more at once.
async fn connection_flood(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    let (release, released) = watch::channel(false);
    let mut holders = JoinSet::new();
    let holder_count = CONNECTIONS_MAX - GOOD_CONNECTIONS as usize;
    let gate = Arc::new(Semaphore::new(64));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(holder_count);
    for _ in 0..holder_count {
        let permit = gate.clone().acquire_owned().await.expect("open semaphore");
        let mut released = released.clone();
        let ready = ready_tx.clone();
        holders.spawn(async move {
            let mut stream = match connect(address).await {
                Ok(stream) => stream,
                Err(error) => {
                    let _ = ready.send(Err(error)).await;
                    return;
                }
            };
            let handshaken = handshake(&mut stream).await;
            drop(permit);
            let failed = handshaken.is_err();
            let _ = ready.send(handshaken).await;
            drop(ready); // the filling is over when every holder has reported
            if failed {
                return;
            }
            let mut id = 2;
            loop {
                tokio::select! {
                    _ = released.changed() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {
                        if stream.write_all(&frame(id, &Request::ServerInfo)).await.is_err()
                            || read_response(&mut stream, Duration::from_secs(10)).await.is_err()
                        {
                            return;
                        }
                        id += 1;
                    }
                }
            }
        });
    }
    drop(ready_tx);
    let mut outcomes = Vec::new();
    let mut holder_failures = 0;
    while let Some(ready) = ready_rx.recv().await {
        if let Err(error) = ready {
            holder_failures += 1;
            if holder_failures <= 3 {
                outcomes.push(Err(format!("filling to the cap: {error}")));
            }
        }
    }
    match context.producer.server_info().await {
        Ok(info) if info.connections as usize == CONNECTIONS_MAX => {}
        Ok(info) => outcomes.push(Err(format!(
            "filled to {} connections, not the cap of {CONNECTIONS_MAX}",
            info.connections
        ))),
        Err(error) => outcomes.push(Err(format!("server info: {error}"))),
    }

    // The flood: 100 connects at a time (more at once overflow the kernel's accept queue on a
    // loaded 2-core box, which measures the kernel's SYN retries rather than the node).
    outcomes.extend(
        attempts(count, 100, move |_| async move {
            let started = Instant::now();
            let mut stream = connect(address).await?;
            expect_error_and_close(
                &mut stream,
                0,
                ErrorCode::TooManyConnections,
                Duration::from_secs(10),
            )
            .await?;
            Ok(started.elapsed())
        })
        .await,
    );

    // Let go of the cap: new clients are served again.
    let _ = release.send(true);
    while holders.join_next().await.is_some() {}
    let started = Instant::now();
    loop {
        match Client::connect(address, good_config()).await {
            Ok(_) => break,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                outcomes.push(Err(format!(
                    "no new connection served 5 s after the cap was released: {error}"
                )));
                break;
            }
        }
    }
    outcomes
}

/// Clients that pipeline `Read`s of 512 KiB as fast as the node takes them and never read a
/// response: the node must stop reading them (their buffers are bounded, and so are all
/// connections' together), then close them once a write has waited the write timeout.
async fn never_reading(context: Context, count: usize) -> Vec<Attempt> {
    let address = context.address;
    attempts(count, count.max(1), move |_| async move {
        let mut stream = connect(address).await?;
        handshake(&mut stream).await?;
        let started = Instant::now();
        let give_up = WRITE_TIMEOUT + CLOSE_SLACK * 4;
        // Encoded once and sent again and again: the node reads at most its in-flight cap of
        // them (and answers the rest `too_many_in_flight`); the repeats only fill the socket
        // buffers. Encoding each again would spend the cores the node and the good client
        // share on the abuser's own work.
        let batch: Vec<u8> = (2..2 + 4 * IN_FLIGHT_MAX as u64)
            .flat_map(|id| {
                let read = Request::Read(weir_proto::Read {
                    topic: "bulk".into(),
                    partition: 0,
                    from: weir_proto::ReadFrom::Offset(0),
                    max_events: 1000,
                    max_bytes: BULK_READ_BYTES,
                    max_wait_ms: 0,
                });
                frame(id, &read)
            })
            .collect();
        let mut sent = 0usize;
        loop {
            let remaining = give_up.saturating_sub(started.elapsed());
            match tokio::time::timeout(remaining, stream.write_all(&batch)).await {
                Ok(Ok(())) => sent += 4 * IN_FLIGHT_MAX as usize,
                Ok(Err(_)) => return Ok(started.elapsed()),
                Err(_) => {
                    return Err(format!(
                        "still connected {:.0} ms after its first request ({sent} requests sent)",
                        ms(started.elapsed()),
                    ))
                }
            }
        }
    })
    .await
}
