//! A node whose data directory has a damaged partition (issue 15): it starts, serves every
//! other partition, refuses appends to the damaged one with `damaged` (205), serves its reads
//! below the damage, and says so on `/readyz` and in the metrics.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_client::{Client, ClientConfig, ErrorCode, ReadFrom, Record};

fn weir(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weir");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for weir");
    assert!(
        output.status.success(),
        "weir {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// The last segment of partition `partition` of topic `t`.
fn active_segment(root: &Path, partition: u32) -> std::path::PathBuf {
    let dir = root.join("topics/t").join(partition.to_string());
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .expect("partition directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

#[tokio::test]
async fn a_damaged_partition_takes_no_appends_and_the_rest_works_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    let d = root.to_str().unwrap();
    weir(
        &["topic", "create", "t", "--partitions", "2", "--data-dir", d],
        b"",
    );
    let lines: String = (0..20).map(|i| format!("event-{i}\n")).collect();
    for partition in ["0", "1"] {
        weir(
            &[
                "produce",
                "t",
                "--partition",
                partition,
                "--batch-size",
                "1",
                "--data-dir",
                d,
            ],
            lines.as_bytes(),
        );
    }
    // After the clean stop, one byte of partition 0's last frame is flipped.
    let segment = active_segment(&root, 0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();

    let (port, admin) = (free_port(), free_port());
    let mut node = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--data-dir",
            d,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("WEIR_TOKEN")
        .spawn()
        .expect("spawn weir serve");
    let started = Instant::now();
    let client = loop {
        let mut config = ClientConfig::default();
        config.request_timeout = Duration::from_secs(10);
        if let Ok(client) = Client::connect(("127.0.0.1", port), config).await {
            break client;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Appends to the damaged partition are refused; the other partition takes them.
    let refused = client
        .append(
            "t",
            vec![Record::new("x")],
            weir_client::Partitioning::Partition(0),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Damaged), "{refused}");
    client
        .append(
            "t",
            vec![Record::new("y")],
            weir_client::Partitioning::Partition(1),
        )
        .await
        .unwrap();
    // Reads below the damage are served.
    let read = client
        .read("t", 0, ReadFrom::Offset(0), 100, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert!(!read.events.is_empty());
    assert!(read.events.len() < 20);

    // /readyz is ready and lists it; the metrics count it.
    let ready = http_get(admin, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("damaged t/0"), "{ready}");
    // (The store's maintenance pass sets the gauge every second.)
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = http_get(admin, "/metrics");
        if metrics.contains("weir_partitions_damaged 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("weir_partitions_damaged 1"), "{metrics}");
    assert!(
        metrics.contains("weir_partition_damaged{topic=\"t\",partition=\"0\"} 1"),
        "{metrics}"
    );
    node.kill().unwrap();
    let _ = node.wait();
}
