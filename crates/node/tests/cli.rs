//! The `weir` binary, run as a user runs it: against a node started in this test on port 0
//! (in-process, through `weir_node::run`), and against data directories — happy paths, bad
//! input with its one-line error and exit code, and `weir verify`/`weir repair` on data
//! directories this test damages.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokio::sync::oneshot;
use weir_node::NodeConfig;

const TOKEN: &str = "test-token";

/// A node on 127.0.0.1:0, served by a runtime of its own while the test drives the binary.
struct Node {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    fn start(dir: &Path, token: Option<&str>) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = dir.to_path_buf();
        let token = token.map(str::to_string);
        let (address, stop, task) = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let store = weir_store::Store::open(&dir).unwrap();
            let mut config = NodeConfig::default();
            config.admin_listen = None;
            config.token = token;
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(weir_node::run(listener, None, store, config, async move {
                let _ = stopped.await;
            }));
            (address, stop, task)
        });
        Node {
            runtime,
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        self.runtime.block_on(task).unwrap().unwrap();
    }
}

/// Runs `weir ARGS` with `stdin`, with no WEIR_* variables from the environment.
fn weir_with(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("WEIR_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn weir(args: &[&str], stdin: &[u8]) -> Output {
    weir_with(args, stdin, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Asserts the exit code and one `weir: ...` line on stderr containing `needle`.
#[track_caller]
fn fails(output: Output, code: i32, needle: &str) {
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("weir: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err:?}");
}

/// Every file of a directory and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn segments(partition_dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

#[test]
fn commands_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), Some(TOKEN));
    let server = node.address.to_string();
    let with = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--server".into(),
            server.clone(),
            "--token".into(),
            TOKEN.into(),
        ]);
        args
    };
    let run = |extra: &[&str], stdin: &[u8]| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weir(&args, stdin)
    };

    // Topics.
    let out = ok(run(
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    ));
    assert!(out.contains("created topic orders"), "{out}");
    fails(run(&["topic", "create", "orders"], b""), 1, "topic_exists");
    let out = ok(run(&["topic", "list"], b""));
    assert!(
        out.lines()
            .any(|l| l.starts_with("orders") && l.ends_with('2')),
        "{out}"
    );

    // Produce: lines with keys and headers to partition 1; plain lines to partition 0;
    // length-delimited binary records.
    let out = ok(run(
        &[
            "produce",
            "orders",
            "--partition",
            "1",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--print-offsets",
        ],
        b"k1:v1\nk2:v2:with-colon\n",
    ));
    assert_eq!(out, "1 0\n1 1\n");
    let out = ok(run(
        &["produce", "orders", "--partition", "0", "--print-offsets"],
        b"a\nb\nc\n",
    ));
    assert_eq!(out, "0 0\n0 1\n0 2\n");
    let mut binary = Vec::new();
    for value in [&b"bin\xff\x00"[..], b"line\nbreak"] {
        binary.extend_from_slice(&(value.len() as u32).to_le_bytes());
        binary.extend_from_slice(value);
    }
    ok(run(
        &["produce", "orders", "--partition", "0", "--binary"],
        &binary,
    ));
    fails(
        run(
            &["produce", "orders", "--key-separator", ":"],
            b"no separator\n",
        ),
        1,
        "line 1 has no key separator",
    );
    fails(
        run(
            &["produce", "orders", "--partition", "0", "--binary"],
            &[9, 0, 0, 0, 1],
        ),
        1,
        "ends inside the record",
    );

    // Describe.
    let out = ok(run(
        &["topic", "describe", "orders", "--format", "json"],
        b"",
    ));
    let description: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(description["partitions"][0]["end_offset"], 5);
    assert_eq!(description["partitions"][1]["end_offset"], 2);
    let out = ok(run(&["topic", "describe", "orders"], b""));
    assert!(out.contains("sync:                 always"), "{out}");

    // Replay: raw, JSON (base64 for bytes that are not UTF-8), a template, from a time.
    let out = ok(run(
        &["replay", "orders", "--from-offset", "1", "--to-offset", "3"],
        b"",
    ));
    assert_eq!(out, "b\nc\n");
    let out = ok(run(
        &[
            "replay",
            "orders",
            "--from-offset",
            "3",
            "--to-offset",
            "4",
            "--format",
            "json",
        ],
        b"",
    ));
    let event: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(event["offset"], 3);
    assert_eq!(event["value_base64"], "Ymlu/wA=");
    assert!(event.get("value").is_none());
    let out = ok(run(
        &[
            "replay",
            "orders",
            "--partition",
            "1",
            "--template",
            "{offset} {key}={value} {header.source}",
        ],
        b"",
    ));
    assert_eq!(out, "0 k1=v1 cli\n1 k2=v2:with-colon cli\n");
    let out = ok(run(
        &[
            "replay",
            "orders",
            "--from-time",
            "1h ago",
            "--template",
            "{offset}",
        ],
        b"",
    ));
    assert_eq!(out.lines().count(), 5, "{out}");
    let out = ok(run(
        &["replay", "orders", "--from-time", "2999-01-01T00:00:00Z"],
        b"",
    ));
    assert_eq!(out, "");

    // Consume: JSON lines, acknowledged batches; the group resumes after them.
    let out = ok(run(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--format",
            "json",
            "--max",
            "7",
            "--batch-size",
            "10",
            "--idle-exit-ms",
            "3000",
        ],
        b"",
    ));
    assert_eq!(out.lines().count(), 7, "{out}");
    for line in out.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            event["partition"].is_u64() && event["timestamp"].is_string(),
            "{line}"
        );
    }
    let out = ok(run(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--batch-size",
            "10",
            "--idle-exit-ms",
            "300",
        ],
        b"",
    ));
    assert_eq!(out, "", "everything was acknowledged");
    let out = ok(run(
        &["group", "describe", "billing", "--format", "json"],
        b"",
    ));
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lag: u64 = group["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lag_events"].as_u64().unwrap())
        .sum();
    assert_eq!(lag, 0, "{out}");
    let out = ok(run(&["group", "describe", "billing"], b""));
    let header = out.lines().next().unwrap();
    for column in [
        "COMMITTED",
        "END",
        "LAG",
        "LAG-TIME",
        "IN-FLIGHT",
        "OLDEST-UNACKED",
        "REDELIVERIES",
        "DEAD-LETTERS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(ok(run(&["group", "list"], b"")), "billing\n");
    let out = ok(run(
        &[
            "group",
            "reset",
            "billing",
            "--topic",
            "orders",
            "--to",
            "offset:1",
            "--partition",
            "0",
        ],
        b"",
    ));
    assert!(
        out.contains("orders") && out.lines().nth(1).unwrap().ends_with('1'),
        "{out}"
    );
    let out = ok(run(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--template",
            "{partition}:{offset}",
            "--batch-size",
            "10",
            "--idle-exit-ms",
            "1000",
            "--max",
            "4",
        ],
        b"",
    ));
    assert_eq!(out, "0:1\n0:2\n0:3\n0:4\n");

    // Bad input: one line, and an exit code that says what kind of failure.
    fails(run(&["replay", "nope"], b""), 1, "unknown_topic");
    fails(
        run(&["consume", "nope", "--group", "g", "--max", "1"], b""),
        1,
        "unknown_topic",
    );
    fails(
        run(&["replay", "orders", "--from-time", "yesterday"], b""),
        64,
        "bad time",
    );
    fails(
        run(
            &[
                "group",
                "reset",
                "billing",
                "--topic",
                "orders",
                "--to",
                "time:soon",
            ],
            b"",
        ),
        64,
        "bad time",
    );
    fails(
        run(&["replay", "orders", "--from-offset", "99"], b""),
        1,
        "offset_out_of_range",
    );
    fails(
        run(&["replay", "orders", "--from-offset=-1"], b""),
        64,
        "--from-offset",
    );
    fails(
        run(
            &[
                "group", "reset", "billing", "--topic", "orders", "--to", "offset:x",
            ],
            b"",
        ),
        64,
        "not an offset",
    );
    fails(
        run(&["group", "describe", "nobody"], b""),
        1,
        "unknown_group",
    );
    fails(
        weir(
            &["topic", "list", "--server", &server, "--token", "wrong"],
            b"",
        ),
        1,
        "refused the token",
    );
    fails(
        weir(&["topic", "list", "--server", &server], b""),
        1,
        "refused the token",
    );
    fails(
        weir_with(&["topic", "list"], b"", &[("WEIR_SERVER", "127.0.0.1:1")]),
        1,
        "cannot connect to 127.0.0.1:1",
    );
    fails(weir(&["topic", "frobnicate"], b""), 64, "frobnicate");

    // The token from the environment works like the flag.
    let out = ok(weir_with(
        &["topic", "list"],
        b"",
        &[("WEIR_SERVER", server.as_str()), ("WEIR_TOKEN", TOKEN)],
    ));
    assert!(out.contains("orders"));

    // A short load run through the node.
    let out = ok(run(
        &[
            "bench",
            "--duration",
            "300ms",
            "--event-bytes",
            "64",
            "--batch-size",
            "10",
        ],
        b"",
    ));
    assert!(
        out.contains("produce (append latency)") && out.contains("P999"),
        "{out}"
    );

    ok(run(&["group", "delete", "billing"], b""));
    ok(run(&["topic", "delete", "orders"], b""));
    fails(
        run(&["topic", "describe", "orders"], b""),
        1,
        "unknown_topic",
    );
    node.stop();
}

#[test]
fn consume_does_not_acknowledge_what_it_could_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), None);
    let server = node.address.to_string();
    let base = ["--server", server.as_str()];
    let args = |extra: &[&'static str]| -> Vec<String> {
        extra
            .iter()
            .chain(base.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |extra: &[&'static str], stdin: &[u8]| {
        let args = args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weir(&args, stdin)
    };
    ok(run(&["topic", "create", "t"], b""));
    ok(run(&["produce", "t"], b"one\ntwo\nthree\n"));
    let consume = [
        "consume",
        "t",
        "--group",
        "g",
        "--batch-size",
        "3",
        "--ack-timeout-ms",
        "500",
        "--max",
        "3",
        "--idle-exit-ms",
        "5000",
    ];

    // Stdout closed before the batch is written: EPIPE, no ack, one line on stderr.
    let consume_args = args(&consume);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(&consume_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    fails(output, 1, "was not acknowledged");
    let out = ok(run(&["group", "describe", "g", "--format", "json"], b""));
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(group["partitions"][0]["committed_offset"], 0, "{out}");

    // The batch comes back once its lease runs out, and this time it is acknowledged.
    let out = ok(run(&consume, b""));
    assert_eq!(out, "one\ntwo\nthree\n");
    let out = ok(run(&["group", "describe", "g", "--format", "json"], b""));
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(group["partitions"][0]["committed_offset"], 3, "{out}");
    assert!(
        group["partitions"][0]["redeliveries"].as_u64().unwrap() >= 1,
        "{out}"
    );
    node.stop();
}

#[test]
fn commands_on_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let d = data.to_str().unwrap();
    ok(weir(&["topic", "create", "events", "--data-dir", d], b""));
    ok(weir(&["produce", "events", "--data-dir", d], b"x\ny\nz\n"));
    let out = ok(weir(
        &[
            "consume",
            "events",
            "--group",
            "audit",
            "--max",
            "2",
            "--batch-size",
            "2",
            "--data-dir",
            d,
        ],
        b"",
    ));
    assert_eq!(out, "x\ny\n");
    let out = ok(weir(
        &["replay", "events", "--from-offset", "1", "--data-dir", d],
        b"",
    ));
    assert_eq!(out, "y\nz\n");
    let out = ok(weir(&["topic", "list", "--data-dir", d], b""));
    assert!(out.contains("events"), "{out}");
    let out = ok(weir(
        &[
            "group",
            "describe",
            "audit",
            "--format",
            "json",
            "--data-dir",
            d,
        ],
        b"",
    ));
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(group["partitions"][0]["committed_offset"], 2, "{out}");
    assert_eq!(group["partitions"][0]["lag_events"], 1, "{out}");

    // Verify is clean, and writes nothing.
    let before = snapshot(&data);
    let out = ok(weir(&["verify", "--data-dir", d], b""));
    assert!(out.contains("result: clean"), "{out}");
    assert!(out.contains("offsets: opens, 1 group(s)"), "{out}");
    assert_eq!(snapshot(&data), before);

    // A data directory in use by a node is refused, by verify and by the other commands.
    let node = Node::start(&data, None);
    fails(weir(&["verify", "--data-dir", d], b""), 3, "in use");
    fails(
        weir(&["replay", "events", "--data-dir", d], b""),
        1,
        "in use",
    );
    node.stop();
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    fails(
        weir(&["verify", "--data-dir", m], b""),
        3,
        "no data directory",
    );
    fails(
        weir(&["replay", "events", "--data-dir", m], b""),
        64,
        "no data directory",
    );
    assert!(!missing.exists());

    let out = ok(weir(
        &[
            "bench",
            "--duration",
            "300ms",
            "--consumers",
            "0",
            "--data-dir",
            d,
        ],
        b"",
    ));
    assert!(out.contains("embedded store"), "{out}");

    let out = ok(weir(&["completions", "bash"], b""));
    assert!(out.contains("weir"), "{out}");
}

#[test]
fn verify_reports_damage_and_repair_cuts_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    std::fs::create_dir(&pristine).unwrap();
    let p = pristine.to_str().unwrap();
    ok(weir(
        &[
            "topic",
            "create",
            "t",
            "--segment-bytes-max",
            "4096",
            "--data-dir",
            p,
        ],
        b"",
    ));
    let lines: String = (0..60)
        .map(|i| format!("{i:03}-{}\n", "v".repeat(200)))
        .collect();
    // One append per line, so segments roll between events.
    ok(weir(
        &["produce", "t", "--batch-size", "1", "--data-dir", p],
        lines.as_bytes(),
    ));
    let partition = |root: &Path| root.join("topics/t/0");
    let sealed = segments(&partition(&pristine));
    assert!(sealed.len() >= 3, "{sealed:?}");
    let verify = |root: &Path| weir(&["verify", "--data-dir", root.to_str().unwrap()], b"");

    // A torn tail: garbage after the last frame of the active segment, after a crash.
    let torn = dir.path().join("torn");
    copy_dir(&pristine, &torn);
    let active = segments(&partition(&torn)).pop().unwrap();
    let length = std::fs::metadata(&active).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap()
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0])
        .unwrap();
    std::fs::remove_file(partition(&torn).join("clean-shutdown")).unwrap();
    let before = snapshot(&torn);
    let output = verify(&torn);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let out = stdout(&output);
    let name = active.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains("the next open will: cut the torn tail of")
            && out.contains(&format!("{name} at byte {length} (7 bytes")),
        "{out}"
    );
    assert!(out.contains("result: repairable"), "{out}");
    assert_eq!(snapshot(&torn), before, "verify changed nothing");

    // A flipped byte in a sealed segment: corruption, with the file and byte position.
    let flipped = dir.path().join("flipped");
    copy_dir(&pristine, &flipped);
    let first = segments(&partition(&flipped)).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();
    let before = snapshot(&flipped);
    let output = verify(&flipped);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let out = stdout(&output);
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(out.contains("damage") && out.contains(name), "{out}");
    assert!(out.contains("invalid frame in a sealed segment"), "{out}");
    assert!(out.contains("result: damaged"), "{out}");
    assert_eq!(snapshot(&flipped), before, "verify changed nothing");
    // Reading stops at the damage: the events before it, then the error naming the file.
    let output = weir(
        &["replay", "t", "--data-dir", flipped.to_str().unwrap()],
        b"",
    );
    assert!(stderr(&output).contains(name), "{}", stderr(&output));
    assert!(!stdout(&output).is_empty(), "the events before the damage");
    assert_eq!(output.status.code(), Some(1));

    // A missing index: derived data, rebuilt at open.
    let unindexed = dir.path().join("unindexed");
    copy_dir(&pristine, &unindexed);
    let index = segments(&partition(&unindexed))[1].with_extension("index");
    std::fs::remove_file(&index).unwrap();
    let output = verify(&unindexed);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let out = stdout(&output);
    assert!(
        out.contains("needs rebuilding") && out.contains("Missing"),
        "{out}"
    );

    // Repair prints what it would cut, and changes nothing without --yes.
    let f = flipped.to_str().unwrap();
    let before = snapshot(&flipped);
    let output = weir(&["repair", "--data-dir", f], b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("LOST"), "{}", stdout(&output));
    assert!(stderr(&output).contains("--yes"), "{}", stderr(&output));
    assert_eq!(snapshot(&flipped), before);
    let out = ok(weir(&["repair", "--data-dir", f, "--yes"], b""));
    assert!(out.contains("repaired: 1 partition(s) mended"), "{out}");
    assert!(out.contains("1 event(s) lost"), "{out}");
    let out = ok(verify(&flipped));
    assert!(out.contains("result: clean"), "{out}");
    // Only the damaged frame's event is lost (one event per append here): every event after
    // it is kept, and the replay says which offset was lost.
    let output = weir(
        &["replay", "t", "--template", "{offset}", "--data-dir", f],
        b"",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("lost to damage"),
        "{}",
        stderr(&output)
    );
    let replayed: Vec<u64> = stdout(&output)
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(replayed.len(), 59, "{replayed:?}");
    let lost: Vec<u64> = (0..60).filter(|o| !replayed.contains(o)).collect();
    assert_eq!(lost.len(), 1, "{replayed:?}");
    // Offsets are never reused: the next event continues after the last one.
    let out = ok(weir(
        &["produce", "t", "--print-offsets", "--data-dir", f],
        b"after\n",
    ));
    assert_eq!(out, "0 60\n");
}

/// `weir verify` reads the journal files a node that did not stop cleanly leaves: repairable
/// (the next start writes back what the partitions lack), unless an acknowledged block is
/// damaged, which is corruption with the file and byte position.
#[test]
fn verify_reads_the_journal_files_of_a_node_that_did_not_stop_cleanly() {
    use weir_store::journal_format::{encode_header, BlockBuilder};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let d = root.to_str().unwrap();
    ok(weir(&["topic", "create", "t", "--data-dir", d], b""));
    let mut file = encode_header(7).to_vec();
    for offset in 0..2u64 {
        let mut frame = Vec::new();
        weir_log::format::encode_frame(
            &mut frame,
            offset,
            &[weir_log::AppendEvent::value(b"journaled")],
            &[1],
        );
        let mut block = BlockBuilder::new();
        block.push(42, 0, &frame);
        let position = file.len() as u64;
        file.extend_from_slice(block.finish(7, position));
    }
    let path = root.join("journal/00000000000000000007.wjl");
    std::fs::write(&path, &file).unwrap();
    let verify = || weir(&["verify", "--data-dir", d], b"");
    let output = verify();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("2 journaled append(s)"),
        "{}",
        stdout(&output)
    );
    // A bit of the first block's body: a valid block follows, so it was acknowledged.
    file[32 + 8 + 13] ^= 0x04;
    std::fs::write(&path, &file).unwrap();
    let output = verify();
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let out = stdout(&output);
    assert!(
        out.contains("00000000000000000007.wjl") && out.contains("at byte 32"),
        "{out}"
    );
}
