//! The harness shared by the kill -9 loop (`kill_loop.rs`) and the soak (`soak.rs`): the real
//! `weir serve` process, self-describing records, and the oracle of issue 8.
//!
//! Every produced event says what it is: its value carries its topic, partition, epoch (the
//! node lifetime it was sent in), producer, sequence number and a payload derived from those,
//! followed by a checksum; its key and headers are derived from the same. So any event read
//! back can be checked on its own (checksum, and equal byte for byte to the record regenerated
//! from its identity), including appends whose acknowledgement the kill swallowed.
//!
//! The oracle remembers, per partition, which event each offset was seen holding (from an
//! acknowledgement, a read or a delivery) and, per group, the floor under its committed offsets
//! (the end of every batch whose ack returned) and the offsets delivered. It checks:
//!
//! 1. every acknowledged append reads back with identical bytes at its offset;
//! 2. every event read or delivered passes its checksum and equals what was written; one offset
//!    never holds two different events;
//! 3. each partition is dense, every event in it was sent to it, and each producer's events
//!    appear in the order it sent them, with epochs never going backwards along a partition;
//! 4. each group's committed offset is at least its floor, at most the log end, and every offset
//!    below it was delivered at least once.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weir_client::{
    Batch, Client, ClientConfig, ConsumerSettings, Error, ErrorCode, Event, ReadFrom, Record,
};

// ---------------------------------------------------------------------------------------------
// Records

/// Who wrote an event, and where it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id {
    pub topic: u8,
    pub partition: u32,
    /// The node lifetime the producer was connected to when it sent the event.
    pub epoch: u32,
    pub producer: u32,
    pub seq: u64,
}

impl Id {
    /// The ids of `events` consecutive sequence numbers from this one's.
    pub fn run(self, events: u64) -> Vec<Id> {
        (self.seq..self.seq + events)
            .map(|seq| Id { seq, ..self })
            .collect()
    }
}

const HEAD_BYTES: usize = 1 + 4 + 4 + 4 + 8 + 4;
const SUM_BYTES: usize = 8;
const SEQ_BITS: u32 = 40;
const PRODUCER_BITS: u32 = 23;
const ACKED_BIT: u64 = 1 << 63;

impl Id {
    /// The identity as one non-zero word (0 means "never seen"): producer and sequence; the
    /// topic and partition are where the word is stored, the epoch is one per sequence.
    fn word(&self) -> u64 {
        assert!(u64::from(self.producer) + 1 < 1 << PRODUCER_BITS);
        assert!(self.seq < 1 << SEQ_BITS);
        ((u64::from(self.producer) + 1) << SEQ_BITS) | self.seq
    }

    fn hash(&self) -> u64 {
        let mut h = SplitMix(
            u64::from(self.topic) << 56
                ^ u64::from(self.partition) << 40
                ^ u64::from(self.epoch) << 20
                ^ u64::from(self.producer),
        );
        h.0 ^= self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h.next()
    }
}

fn describe_word(word: u64) -> String {
    if word & !ACKED_BIT == 0 {
        return "nothing".into();
    }
    let producer = ((word & !ACKED_BIT) >> SEQ_BITS) - 1;
    let seq = word & ((1 << SEQ_BITS) - 1);
    format!("producer {producer} seq {seq}")
}

/// A tiny deterministic generator for payload bytes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An event's key, value and headers.
type Parts = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Key, value and headers of the event `id`.
fn parts(id: Id) -> Parts {
    let h = id.hash();
    // Mostly small events, one in 50 of 1-9 KiB (frames of several pages, quicker rolls).
    let payload_len = if h.is_multiple_of(50) {
        1024 + (h >> 8) as usize % 8192
    } else {
        (h >> 8) as usize % 256
    };
    let mut value = Vec::with_capacity(HEAD_BYTES + payload_len + SUM_BYTES);
    value.push(id.topic);
    value.extend_from_slice(&id.partition.to_le_bytes());
    value.extend_from_slice(&id.epoch.to_le_bytes());
    value.extend_from_slice(&id.producer.to_le_bytes());
    value.extend_from_slice(&id.seq.to_le_bytes());
    value.extend_from_slice(&(payload_len as u32).to_le_bytes());
    let mut bytes = SplitMix(h);
    while value.len() < HEAD_BYTES + payload_len {
        let word = bytes.next().to_le_bytes();
        let take = (HEAD_BYTES + payload_len - value.len()).min(8);
        value.extend_from_slice(&word[..take]);
    }
    let sum = fnv64(&value);
    value.extend_from_slice(&sum.to_le_bytes());
    let key = id
        .seq
        .is_multiple_of(2)
        .then(|| format!("p{}", id.producer).into_bytes());
    let headers = if id.seq.is_multiple_of(3) {
        vec![("seq".to_string(), id.seq.to_string().into_bytes())]
    } else {
        Vec::new()
    };
    (key, value, headers)
}

/// The record to produce for `id`.
pub fn record(id: Id) -> Record {
    let (key, value, headers) = parts(id);
    let mut record = Record::new(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    for (name, value) in headers {
        record = record.header(name, value);
    }
    record
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The identity of an event read back from `topic`/`partition`, after checking its checksum
/// and that every byte (key, value, headers) is what was written.
pub fn decode(event: &Event, topic: u8, partition: u32) -> Result<Id, String> {
    let v = &event.value;
    if v.len() < HEAD_BYTES + SUM_BYTES {
        return Err(format!("a value of {} bytes is too short", v.len()));
    }
    let body = v.len() - SUM_BYTES;
    if fnv64(&v[..body]) != le_u64(v, body) {
        return Err("the value fails its checksum".into());
    }
    let id = Id {
        topic: v[0],
        partition: le_u32(v, 1),
        epoch: le_u32(v, 5),
        producer: le_u32(v, 9),
        seq: le_u64(v, 13),
    };
    if (id.topic, id.partition) != (topic, partition) {
        return Err(format!(
            "{id:?} was sent to topic {} partition {} but read from topic {topic} partition \
             {partition}",
            id.topic, id.partition
        ));
    }
    let (key, value, headers) = parts(id);
    if event.key != key || event.value != value || event.headers != headers {
        return Err(format!("{id:?}: bytes differ from what was written"));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// The node process

/// A free port below the ephemeral range (so no client's outgoing connection can take it, or
/// connect to itself on it, while the node is down).
pub fn pick_port() -> u16 {
    let mut rng = fastrand::Rng::new();
    loop {
        let port = rng.u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What a node's stderr said once it was gone.
#[derive(Debug, Default)]
pub struct NodeLog {
    /// "recovery finished" was logged: the store was open.
    pub recovered: bool,
    /// "weir node serving" was logged.
    pub serving: bool,
    /// Torn tails its recovery cut.
    pub torn_tails: u64,
    /// The whole log, for failure messages.
    pub text: String,
}

/// One `weir serve` process.
#[derive(Debug)]
pub struct Node {
    child: tokio::process::Child,
    pid: u32,
    log_path: PathBuf,
}

impl Node {
    /// Starts `weir serve` on `data_dir`, serving 127.0.0.1:`port` (no admin listener), stderr
    /// (JSON lines, level info) to `log_path`.
    pub fn spawn(data_dir: &Path, port: u16, log_path: &Path) -> Node {
        let log = std::fs::File::create(log_path).expect("create the node log");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-admin")
            .arg("--log-format")
            .arg("json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, _) in std::env::vars() {
            if name.starts_with("WEIR_") {
                command.env_remove(name);
            }
        }
        command.env("RUST_LOG", "info");
        let child = command.spawn().expect("spawn weir serve");
        let pid = child.id().expect("a running child has a pid");
        Node {
            child,
            pid,
            log_path: log_path.to_path_buf(),
        }
    }

    /// The node's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// SIGKILLs the node and reaps it. `Err` with the log if it had already exited by itself.
    pub async fn kill(mut self) -> Result<NodeLog, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = read_log(&self.log_path);
            return Err(format!(
                "the node exited by itself ({status}) before the kill; its log:\n{}",
                log.text
            ));
        }
        self.child.kill().await.expect("SIGKILL the node");
        let log = read_log(&self.log_path);
        if log.text.contains("panicked") {
            return Err(format!("the node panicked; its log:\n{}", log.text));
        }
        Ok(log)
    }
}

fn read_log(path: &Path) -> NodeLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = NodeLog::default();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &value["fields"];
        match fields["message"].as_str() {
            Some("recovery finished") => {
                log.recovered = true;
                log.torn_tails += fields["torn_tails"].as_u64().unwrap_or(0);
            }
            Some("weir node serving") => log.serving = true,
            _ => {}
        }
    }
    log.text = text;
    log
}

/// The client settings of every test client: a short request timeout, so a hang is a failure
/// rather than a stuck test.
pub fn client_config(name: &str) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client_name = name.into();
    config.request_timeout = Duration::from_secs(20);
    config
}

/// Connects, retrying while the node starts, until `give_up` says stop.
pub async fn connect(port: u16, name: &str, give_up: impl Fn() -> bool) -> Option<Client> {
    loop {
        if give_up() {
            return None;
        }
        match Client::connect(("127.0.0.1", port), client_config(name)).await {
            Ok(client) => return Some(client),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Whether an error is what a node's death looks like from a client. Anything else (a server
/// error, a corrupt frame, a protocol violation) is a finding.
pub fn is_disconnect(error: &Error) -> bool {
    matches!(error, Error::Io(_) | Error::Closed | Error::Timeout)
}

/// The consumer settings of every group: one batch in flight per partition (so an ack that
/// returns moves the barrier to the batch's end) and every ack committed before it returns.
pub fn consumer_settings(batch_size: u32) -> ConsumerSettings {
    ConsumerSettings {
        batch_size,
        max_wait_ms: 5,
        ack_timeout_ms: 600_000,
        max_in_flight: 1,
        max_attempts: 1_000,
        ..ConsumerSettings::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle

/// A topic under test.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
}

/// A group under test and the topic it consumes.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub topic: u8,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Offset → identity seen there (0: never seen), with `ACKED_BIT` once an ack said so.
    at: Vec<u64>,
    /// One past the highest acknowledged offset.
    acked_end: u64,
    /// The forward scan has checked every offset below this.
    scanned_end: u64,
    /// Forward scan state: the last sequence of each producer, the last epoch.
    last_seq: HashMap<u32, u64>,
    last_epoch: u32,
}

#[derive(Debug, Default)]
struct GroupPartitionState {
    /// The end of every batch whose ack returned: the committed offset may not be below it.
    floor: u64,
    delivered: Vec<bool>,
    /// Every offset below this was delivered.
    covered: u64,
}

#[derive(Debug)]
struct GroupState {
    spec: GroupSpec,
    partitions: Vec<GroupPartitionState>,
}

/// Figures the oracle counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub appends_acked: u64,
    pub events_acked: u64,
    pub events_delivered: u64,
    pub acks_returned: u64,
    pub events_scanned: u64,
    pub group_checks: u64,
}

#[derive(Debug)]
struct State {
    topics: Vec<TopicSpec>,
    partitions: Vec<Vec<PartitionState>>,
    groups: Vec<GroupState>,
    violations: Vec<String>,
    counts: Counts,
}

/// What was acknowledged and seen, and the checks. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Oracle(Arc<Mutex<State>>);

impl Oracle {
    pub fn new(topics: Vec<TopicSpec>, groups: Vec<GroupSpec>) -> Oracle {
        let partitions = topics
            .iter()
            .map(|t| {
                (0..t.partitions)
                    .map(|_| PartitionState::default())
                    .collect()
            })
            .collect();
        let groups = groups
            .into_iter()
            .map(|spec| GroupState {
                partitions: (0..topics[spec.topic as usize].partitions)
                    .map(|_| GroupPartitionState::default())
                    .collect(),
                spec,
            })
            .collect();
        Oracle(Arc::new(Mutex::new(State {
            topics,
            partitions,
            groups,
            violations: Vec::new(),
            counts: Counts::default(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn topic_name(&self, topic: u8) -> String {
        self.lock().topics[topic as usize].name.clone()
    }

    pub fn violation(&self, message: String) {
        self.lock().violations.push(message);
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// An append of `ids` (all to one partition) returned these positions.
    pub fn acked(&self, ids: &[Id], positions: &[(u32, u64)]) {
        let mut state = self.lock();
        let state = &mut *state;
        if positions.len() != ids.len()
            || positions
                .windows(2)
                .any(|w| w[1].1 != w[0].1 + 1 || w[1].0 != w[0].0)
        {
            state.violations.push(format!(
                "an append of {} events to one partition returned positions {positions:?}",
                ids.len()
            ));
            return;
        }
        state.counts.appends_acked += 1;
        for (id, &(partition, offset)) in ids.iter().zip(positions) {
            if partition != id.partition {
                state
                    .violations
                    .push(format!("{id:?} was acknowledged in partition {partition}"));
                continue;
            }
            state.counts.events_acked += 1;
            let p = &mut state.partitions[id.topic as usize][partition as usize];
            p.acked_end = p.acked_end.max(offset + 1);
            see(p, &mut state.violations, id, offset, true, "its ack");
        }
    }

    /// A consumer of group `group` got `batch`: checks every event and remembers the delivery.
    pub fn delivered(&self, group: usize, batch: &Batch) {
        let topic = self.lock().groups[group].spec.topic;
        let decoded: Vec<_> = batch
            .events
            .iter()
            .map(|e| decode(e, topic, batch.partition))
            .collect();
        let mut state = self.lock();
        let state = &mut *state;
        let name = state.groups[group].spec.name.clone();
        let gp = &mut state.groups[group].partitions[batch.partition as usize];
        let p = &mut state.partitions[topic as usize][batch.partition as usize];
        for (i, (event, id)) in batch.events.iter().zip(decoded).enumerate() {
            let offset = batch.first_offset + i as u64;
            if event.offset != offset {
                state.violations.push(format!(
                    "group {name} partition {}: a batch from {} holds offset {} at {i}",
                    batch.partition, batch.first_offset, event.offset
                ));
                continue;
            }
            match id {
                Ok(id) => see(p, &mut state.violations, &id, offset, false, "a delivery"),
                Err(why) => state.violations.push(format!(
                    "group {name} partition {} offset {offset}: {why}",
                    batch.partition
                )),
            }
            state.counts.events_delivered += 1;
            let at = offset as usize;
            if gp.delivered.len() <= at {
                gp.delivered.resize(at + 1, false);
            }
            gp.delivered[at] = true;
        }
        while gp.delivered.get(gp.covered as usize) == Some(&true) {
            gp.covered += 1;
        }
    }

    /// The ack of `batch` by group `group` returned: its commit is durable.
    pub fn ack_returned(&self, group: usize, batch: &Batch) {
        let mut state = self.lock();
        state.counts.acks_returned += 1;
        let gp = &mut state.groups[group].partitions[batch.partition as usize];
        gp.floor = gp.floor.max(batch.first_offset + batch.events.len() as u64);
    }

    /// Forgets the forward scan's progress, so the next scan re-reads every partition from 0
    /// and compares every offset with what it held before.
    pub fn restart_scan(&self) {
        let mut state = self.lock();
        for p in state.partitions.iter_mut().flatten() {
            p.scanned_end = 0;
            p.last_seq.clear();
            p.last_epoch = 0;
        }
    }

    /// Reads every partition from where the last scan stopped to its end, checking each event.
    /// `Err` if the connection failed (the scan resumes from there next time).
    pub async fn scan(&self, client: &Client) -> Result<(), Error> {
        let topics = self.lock().topics.clone();
        for (t, spec) in topics.iter().enumerate() {
            for partition in 0..spec.partitions {
                self.scan_partition(client, t as u8, &spec.name, partition)
                    .await?;
            }
        }
        Ok(())
    }

    async fn scan_partition(
        &self,
        client: &Client,
        topic: u8,
        name: &str,
        partition: u32,
    ) -> Result<(), Error> {
        let mut end = None;
        // Acknowledged before the first read, so it must be below the end that read sees.
        let acked_end = self.lock().partitions[topic as usize][partition as usize].acked_end;
        loop {
            let from = self.lock().partitions[topic as usize][partition as usize].scanned_end;
            if end.is_some_and(|end| from >= end) {
                break;
            }
            let read = match client
                .read(
                    name,
                    partition,
                    ReadFrom::Offset(from),
                    2_000,
                    4 << 20,
                    Duration::ZERO,
                )
                .await
            {
                Ok(read) => read,
                Err(error) if is_disconnect(&error) => return Err(error),
                Err(error) => {
                    self.violation(format!(
                        "{name}/{partition}: reading from offset {from} (the end of what \
                         earlier reads saw) failed: {error}"
                    ));
                    return Ok(());
                }
            };
            let end = *end.get_or_insert(read.end_offset);
            let decoded: Vec<_> = read
                .events
                .iter()
                .map(|e| decode(e, topic, partition))
                .collect();
            let mut state = self.lock();
            let state = &mut *state;
            state.counts.events_scanned += read.events.len() as u64;
            let p = &mut state.partitions[topic as usize][partition as usize];
            if read.events.is_empty() && from < end {
                state.violations.push(format!(
                    "{name}/{partition}: a read at {from} below the end {end} returned nothing"
                ));
                return Ok(());
            }
            for (i, (event, id)) in read.events.iter().zip(decoded).enumerate() {
                let offset = from + i as u64;
                if event.offset != offset {
                    state.violations.push(format!(
                        "{name}/{partition}: a read from {from} holds offset {} at {i}",
                        event.offset
                    ));
                    return Ok(());
                }
                let id = match id {
                    Ok(id) => id,
                    Err(why) => {
                        state
                            .violations
                            .push(format!("{name}/{partition} offset {offset}: {why}"));
                        continue;
                    }
                };
                if id.epoch < p.last_epoch {
                    state.violations.push(format!(
                        "{name}/{partition} offset {offset}: {id:?} follows an event of epoch {}",
                        p.last_epoch
                    ));
                }
                p.last_epoch = p.last_epoch.max(id.epoch);
                if let Some(&last) = p.last_seq.get(&id.producer) {
                    if id.seq <= last {
                        state.violations.push(format!(
                            "{name}/{partition} offset {offset}: {id:?} follows seq {last} of \
                             the same producer (out of order or twice)"
                        ));
                    }
                }
                p.last_seq.insert(id.producer, id.seq);
                see(p, &mut state.violations, &id, offset, false, "a read");
            }
            p.scanned_end = from + read.events.len() as u64;
            if p.scanned_end >= end && acked_end > end {
                state.violations.push(format!(
                    "{name}/{partition}: offset {} was acknowledged but the log ends at {end}",
                    acked_end - 1
                ));
            }
        }
        Ok(())
    }

    /// Checks each group's committed offsets against what its consumers saw.
    pub async fn check_groups(&self, client: &Client) -> Result<(), Error> {
        let groups = self.lock().groups.len();
        for g in 0..groups {
            let (name, topic_name, floors) = {
                let state = self.lock();
                let group = &state.groups[g];
                let floors: Vec<u64> = group.partitions.iter().map(|p| p.floor).collect();
                (
                    group.spec.name.clone(),
                    state.topics[group.spec.topic as usize].name.clone(),
                    floors,
                )
            };
            let description = match client.describe_group(&name).await {
                Ok(description) => Some(description),
                Err(error) if error.code() == Some(ErrorCode::UnknownGroup) => None,
                Err(error) if is_disconnect(&error) => return Err(error),
                Err(error) => {
                    self.violation(format!("describing group {name} failed: {error}"));
                    continue;
                }
            };
            let mut state = self.lock();
            let state = &mut *state;
            state.counts.group_checks += 1;
            let group = &state.groups[g];
            for (partition, floor) in floors.iter().enumerate() {
                let found = description.as_ref().and_then(|d| {
                    d.partitions
                        .iter()
                        .find(|p| p.topic == topic_name && p.partition as usize == partition)
                });
                let (committed, end) = found.map_or((0, 0), |p| (p.committed_offset, p.end_offset));
                let covered = group.partitions[partition].covered;
                let at = format!("group {name} on {topic_name}/{partition}");
                if committed < *floor {
                    state.violations.push(format!(
                        "{at}: committed offset {committed} is below the last acknowledged \
                         commit {floor}"
                    ));
                }
                if found.is_some() && committed > end {
                    state.violations.push(format!(
                        "{at}: committed offset {committed} is past the log end {end}"
                    ));
                }
                if committed > covered {
                    state.violations.push(format!(
                        "{at}: committed offset {committed} but offset {covered} was never \
                         delivered"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Per partition: (events present as far as scanned, of which acknowledged).
    pub fn presence(&self) -> (u64, u64) {
        let state = self.lock();
        let mut present = 0;
        let mut acked = 0;
        for p in state.partitions.iter().flatten() {
            let scanned = &p.at[..(p.scanned_end as usize).min(p.at.len())];
            present += scanned.iter().filter(|&&w| w != 0).count() as u64;
            acked += scanned.iter().filter(|&&w| w & ACKED_BIT != 0).count() as u64;
        }
        (present, acked)
    }
}

/// Offset `offset` was seen holding `id`: remember it, or report a different event there.
fn see(
    p: &mut PartitionState,
    violations: &mut Vec<String>,
    id: &Id,
    offset: u64,
    acked: bool,
    source: &str,
) {
    let at = offset as usize;
    if p.at.len() <= at {
        p.at.resize(at + 1, 0);
    }
    let word = id.word();
    let before = p.at[at];
    if before != 0 && before & !ACKED_BIT != word {
        violations.push(format!(
            "topic {} partition {} offset {offset}: {source} shows {id:?}, but it held {} before",
            id.topic,
            id.partition,
            describe_word(before)
        ));
        return;
    }
    p.at[at] = word | (before & ACKED_BIT) | if acked { ACKED_BIT } else { 0 };
}

// ---------------------------------------------------------------------------------------------
// Small things

/// A seed from `var`, or a fresh one; printed either way so a failure can be replayed.
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (replay with {var}={seed})");
    seed
}

/// A number from `var`, or `default`.
pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Panics with the first violations, if any.
#[track_caller]
pub fn assert_no_violations(oracle: &Oracle, context: &str) {
    let violations = oracle.violations();
    if !violations.is_empty() {
        let shown: Vec<&String> = violations.iter().take(20).collect();
        panic!(
            "{context}: {} oracle violations, the first ones:\n{}",
            violations.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Replaces `to` with a copy of `from` (files and directories; nothing if `from` is missing).
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    std::fs::create_dir_all(to).expect("create a copy directory");
    for entry in entries {
        let entry = entry.expect("list a directory");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // A file removed meanwhile is no loss for a post-mortem copy.
            let _ = std::fs::copy(entry.path(), target);
        }
    }
}

/// Seconds since `start`, for summaries.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
