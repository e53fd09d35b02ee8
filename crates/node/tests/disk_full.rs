//! Disk full, for real: the node's data directory on a size-capped tmpfs (mounted by this test;
//! it needs root, which the CI machine has — without it the test says it was skipped). A
//! ballast file takes part of the space; producers fill the rest. Then:
//!
//! - appends fail with `storage_full` and are not acknowledged; the node keeps serving reads
//!   and every acknowledged event reads back with identical bytes;
//! - the ballast is removed and appends succeed again — the same node process, no restart;
//! - a consumer group acknowledges everything once space is back;
//! - after a SIGKILL and a restart, every acknowledged event is still there, identical, and
//!   after a graceful stop `weir verify` finds the data directory clean.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_client::{Client, ClientConfig, ErrorCode, Record};
use weir_proto::{ConsumerSettings, Partitioning, ReadFrom, TopicSettings};

const TMPFS_BYTES: u64 = 24 << 20;
const BALLAST_BYTES: usize = 6 << 20;
const EVENT_BYTES: usize = 4 << 10;
const TOPIC: &str = "fill";

/// The mounted tmpfs and the node on it; unmounted (after killing the node) on drop.
struct Mounted {
    dir: PathBuf,
    node: Option<Child>,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut node) = self.node.take() {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn_node(data: &Path, address: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(address.to_string())
        .arg("--no-admin")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn weir serve")
}

async fn connect(address: SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(address, ClientConfig::default()).await {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("the node never answered: {error}"),
        }
    }
}

fn value(n: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; EVENT_BYTES];
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for byte in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// Reads the whole partition and checks it against the acknowledged values (offset → value).
async fn check_all(client: &Client, acked: &[(u64, Vec<u8>)]) -> u64 {
    let mut next = 0;
    let mut read = Vec::new();
    loop {
        let batch = client
            .read(
                TOPIC,
                0,
                ReadFrom::Offset(next),
                1000,
                8 << 20,
                Duration::ZERO,
            )
            .await
            .expect("reads keep working");
        if batch.events.is_empty() {
            break;
        }
        for event in batch.events {
            assert_eq!(event.offset, next, "dense offsets");
            read.push(event.value.to_vec());
            next += 1;
        }
    }
    for (offset, value) in acked {
        let got = read
            .get(*offset as usize)
            .unwrap_or_else(|| panic!("acknowledged offset {offset} is gone"));
        assert!(got == value, "offset {offset} reads back different bytes");
    }
    next
}

#[test]
fn a_full_disk_refuses_appends_and_the_node_resumes_when_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}")])
        .arg("tmpfs")
        .arg(dir.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the disk-full suite did not run"
        );
        return;
    }
    let mut guard = Mounted {
        dir: dir.path().to_path_buf(),
        node: None,
    };
    let ballast = dir.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; BALLAST_BYTES]).unwrap();
    let data = dir.path().join("data");
    let address = free_port();
    guard.node = Some(spawn_node(&data, address));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked = runtime.block_on(async {
        let client = connect(address).await;
        let settings = TopicSettings {
            segment_bytes_max: Some(1 << 20),
            ..TopicSettings::default()
        };
        client.create_topic(TOPIC, 1, settings).await.unwrap();

        // Fill the disk.
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut n = 0u64;
        let mut refusals = 0;
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the disk never filled"
            );
            let values: Vec<Vec<u8>> = (0..4)
                .map(|_| {
                    n += 1;
                    value(n)
                })
                .collect();
            let records = values.iter().map(|v| Record::new(v.clone())).collect();
            match client
                .append(TOPIC, records, Partitioning::Partition(0))
                .await
            {
                Ok(positions) => {
                    for ((_, offset), v) in positions.into_iter().zip(values) {
                        acked.push((offset, v));
                    }
                }
                Err(error) => {
                    assert_eq!(
                        error.code(),
                        Some(ErrorCode::StorageFull),
                        "a full disk answers storage_full: {error}"
                    );
                    assert!(
                        error.to_string().contains("no space left"),
                        "the message says why: {error}"
                    );
                    refusals += 1;
                    if refusals == 5 {
                        break;
                    }
                }
            }
        }
        println!(
            "disk full after {} acknowledged events ({} MiB); {refusals} appends refused",
            acked.len(),
            (acked.len() * EVENT_BYTES) >> 20
        );
        let end = check_all(&client, &acked).await;
        assert_eq!(
            end,
            acked.len() as u64,
            "refused appends left nothing behind"
        );

        // A consumer group on the full disk: fetching works; the commit of an ack needs a
        // few bytes in sled and may be refused, but never corrupts anything.
        let consumer = client.consumer(
            "drain",
            TOPIC,
            ConsumerSettings {
                batch_size: 256,
                max_wait_ms: 10,
                ..ConsumerSettings::default()
            },
        );
        let batch = consumer
            .next_batch(Duration::from_secs(5))
            .await
            .expect("fetching works on a full disk")
            .expect("a batch");
        let full_ack = consumer.ack(&batch).await;
        println!("an ack (with its commit) on the full disk: {full_ack:?}");

        // Free space: the same node takes appends again.
        std::fs::remove_file(&ballast).unwrap();
        for _ in 0..20 {
            n += 1;
            let v = value(n);
            let positions = client
                .append(
                    TOPIC,
                    vec![Record::new(v.clone())],
                    Partitioning::Partition(0),
                )
                .await
                .expect("appends resume once space is freed, without a restart");
            acked.push((positions[0].1, v));
        }
        let end = check_all(&client, &acked).await;
        assert_eq!(end, acked.len() as u64);

        // The group reads and acknowledges everything (commits work again).
        let mut delivered = 0u64;
        while delivered < end {
            let batch = consumer
                .next_batch(Duration::from_secs(5))
                .await
                .expect("fetch after the disk-full episode")
                .expect("a batch");
            delivered = batch.first_offset + batch.events.len() as u64;
            consumer.ack(&batch).await.expect("ack commits again");
        }
        let group = client.describe_group("drain").await.unwrap();
        assert_eq!(group.partitions[0].committed_offset, end);
        acked
    });
    // SIGKILL, restart on the same directory, everything acknowledged is intact.
    let mut node = guard.node.take().unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
    guard.node = Some(spawn_node(&data, address));
    let intact = runtime.block_on(async {
        let client = connect(address).await;
        check_all(&client, &acked).await
    });
    // A graceful stop (SIGTERM) so that `weir verify` can expect a clean directory.
    let mut node = guard.node.take().unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = node.wait().unwrap();
    assert!(
        stopped.success(),
        "the node stops cleanly on SIGTERM: {stopped}"
    );
    let verify = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("verify")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "weir verify after the episode: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    println!("after a kill -9 and a restart: {intact} events intact; weir verify: clean");
}
