//! Model-based test of the batch reader: random sequences of fetches, acks, nacks with delays,
//! clock advances (lease expiry), appends, commits, stale settles and crash+restart, run
//! through the real `PartitionReader` over a log on `SimStorage` with a manual clock. After
//! every step the rules of design.md are checked against what was observed:
//!
//! - nothing is committed past an unacknowledged event;
//! - every event below the committed offset was delivered at least once;
//! - a redelivered batch carries exactly the same events, with `attempt + 1`;
//! - with `max_in_flight = 1`, batches are delivered in offset order and never overlap;
//! - after a restart, delivery starts at the committed offset;
//! - a batch is dead-lettered exactly when it reached `max_attempts`, with its events and its
//!   source coordinates;
//! - a batch is exactly `batch_size` events when that many were there (unless the byte limit
//!   cut it).
//!
//! `WEIR_PROPTEST_CASES` sets the number of cases (default 10,000).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use weir_batch::{
    Attempt, Batch, BatchConfig, BatchId, CloseReason, CommitPolicy, Error, MemoryDeadLetterSink,
    MemoryOffsets, OffsetCommits, PartitionReader,
};
use weir_log::sim::SimStorage;
use weir_log::{AppendEvent, Log, LogConfig, ManualClock};

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Fetch,
    Ack(usize),
    Nack(usize, u64),
    Advance(u64),
    Commit,
    StaleAck(u64),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..12).prop_map(Op::Append),
        5 => Just(Op::Fetch),
        4 => (0usize..4).prop_map(Op::Ack),
        2 => ((0usize..4), (0u64..300)).prop_map(|(i, delay)| Op::Nack(i, delay)),
        2 => (0u64..1_500).prop_map(Op::Advance),
        1 => Just(Op::Commit),
        1 => (0u64..50).prop_map(Op::StaleAck),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    batch_size: u32,
    max_in_flight: u32,
    max_attempts: u32,
    interval_commits: bool,
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        1u32..6,
        1u32..4,
        1u32..4,
        any::<bool>(),
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(
            |(batch_size, max_in_flight, max_attempts, interval_commits, ops)| Scenario {
                batch_size,
                max_in_flight,
                max_attempts,
                interval_commits,
                ops,
            },
        )
}

const GROUP: &str = "g";
const TOPIC: &str = "t";

fn value(offset: u64) -> Vec<u8> {
    format!("event-{offset}").into_bytes()
}

struct Model {
    /// Offsets ever delivered (any attempt, any incarnation).
    delivered: BTreeSet<u64>,
    /// Offsets acknowledged or dead-lettered.
    done: BTreeSet<u64>,
    /// Outstanding leases of the current incarnation: id → batch.
    leases: Vec<Batch>,
    /// Batches of this incarnation by first offset: (end, attempts so far).
    ranges: BTreeMap<u64, (u64, u32)>,
    /// End of the last batch delivered for the first time (this incarnation).
    last_new_end: Option<u64>,
    /// The committed offset at the last restart: the first delivery must start there.
    restart_at: Option<u64>,
    /// Where this incarnation started delivering.
    incarnation_start: u64,
    /// Every delivery id of this incarnation and its batch's range.
    ids: BTreeMap<BatchId, (u64, u64)>,
    dead_letters_seen: usize,
    /// First offsets of batches nacked (with a reason) in this incarnation.
    nacked: BTreeSet<u64>,
}

fn run(scenario: Scenario) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1_000_000);
    let storage = SimStorage::new();
    let log = Arc::new(
        Log::open_with(
            "/d/t-0",
            LogConfig::default(),
            Arc::new(storage),
            Arc::new(clock.clone()),
        )
        .expect("open log"),
    );
    let offsets = Arc::new(MemoryOffsets::default());
    let sink = MemoryDeadLetterSink::default();
    let mut config = BatchConfig::default();
    config.batch_size = scenario.batch_size;
    config.max_in_flight = scenario.max_in_flight;
    config.max_attempts = scenario.max_attempts;
    config.ack_timeout_ms = 1_000;
    config.max_wait_ms = 200;
    if scenario.interval_commits {
        config.commit_policy = CommitPolicy::Interval {
            interval_ms: 500,
            acks_max: 3,
        };
    }
    let open = || {
        PartitionReader::open(
            GROUP,
            TOPIC,
            0,
            log.clone(),
            offsets.clone(),
            Arc::new(sink.clone()),
            config.clone(),
            Arc::new(clock.clone()),
        )
        .expect("open reader")
    };
    let mut reader = open();
    let mut model = Model {
        delivered: BTreeSet::new(),
        done: BTreeSet::new(),
        leases: Vec::new(),
        ranges: BTreeMap::new(),
        last_new_end: None,
        restart_at: Some(0),
        incarnation_start: 0,
        ids: BTreeMap::new(),
        dead_letters_seen: 0,
        nacked: BTreeSet::new(),
    };
    for op in scenario.ops {
        match op {
            Op::Append(count) => {
                let end = log.end_offset();
                let values: Vec<Vec<u8>> = (end..end + u64::from(count)).map(value).collect();
                let events: Vec<AppendEvent<'_>> =
                    values.iter().map(|v| AppendEvent::value(v)).collect();
                log.append(&events).expect("append");
            }
            Op::Fetch => {
                let available = log.end_offset();
                match reader.try_next_batch().expect("fetch") {
                    Attempt::Batch(batch) => {
                        absorb_dead_letters(&sink, &mut model, config.max_attempts)?;
                        check_delivery(&scenario_config(&config), &mut model, &batch, available)?
                    }
                    Attempt::Wait { .. } => {}
                }
            }
            Op::Ack(i) => {
                if !model.leases.is_empty() {
                    let batch = model.leases.remove(i % model.leases.len());
                    match reader.ack(batch.id) {
                        Ok(()) => {
                            model.done.extend(batch.first_offset..batch.end_offset());
                        }
                        // The lease ran out and the batch went to someone else (or is waiting).
                        Err(Error::LeaseExpired(_)) => {}
                        Err(other) => {
                            return Err(TestCaseError::fail(format!("ack {}: {other}", batch.id)))
                        }
                    }
                }
            }
            Op::Nack(i, delay) => {
                if !model.leases.is_empty() {
                    let batch = model.leases.remove(i % model.leases.len());
                    match reader.nack(
                        batch.id,
                        std::time::Duration::from_millis(delay),
                        Some("model nack"),
                    ) {
                        Ok(()) => {
                            model.nacked.insert(batch.first_offset);
                        }
                        Err(Error::LeaseExpired(_)) => {}
                        Err(other) => {
                            return Err(TestCaseError::fail(format!("nack {}: {other}", batch.id)))
                        }
                    }
                }
            }
            Op::Advance(ms) => clock.advance(ms),
            Op::Commit => {
                reader.commit().expect("commit");
            }
            Op::StaleAck(id) => {
                // Any id that holds no lease gets a typed error, never a panic or a silent
                // success: an id delivered earlier in this incarnation (settled, expired or
                // redelivered), or one never delivered.
                let id = if model.ids.is_empty() || id % 4 == 0 {
                    BatchId(id)
                } else {
                    *model
                        .ids
                        .keys()
                        .nth(id as usize % model.ids.len())
                        .expect("not empty")
                };
                if !model.leases.iter().any(|batch| batch.id == id) {
                    let known = model.ids.get(&id).copied();
                    match (reader.ack(id), known) {
                        (Err(Error::UnknownBatch(_)), None) => {}
                        (Err(Error::AlreadySettled(_) | Error::LeaseExpired(_)), Some(_)) => {}
                        // A late ack of an expired lease whose batch nobody holds yet is accepted.
                        (Ok(()), Some((first, end))) => model.done.extend(first..end),
                        (result, known) => {
                            return Err(TestCaseError::fail(format!(
                                "stale ack {id} (known: {known:?}): {result:?}"
                            )))
                        }
                    }
                }
            }
            Op::Restart => {
                // A crash: the reader's memory is gone; only committed offsets survive.
                drop(reader);
                reader = open();
                model.leases.clear();
                model.ranges.clear();
                model.last_new_end = None;
                let committed = offsets
                    .committed(GROUP, TOPIC, 0)
                    .expect("committed")
                    .unwrap_or(0);
                model.restart_at = Some(committed);
                model.incarnation_start = committed;
                model.ids.clear();
                model.nacked.clear();
            }
        }
        absorb_dead_letters(&sink, &mut model, config.max_attempts)?;
        let committed = offsets
            .committed(GROUP, TOPIC, 0)
            .expect("committed")
            .unwrap_or(0);
        prop_assert!(committed <= log.end_offset(), "committed past the log end");
        for offset in 0..committed {
            prop_assert!(
                model.delivered.contains(&offset),
                "offset {} committed but never delivered",
                offset
            );
            prop_assert!(
                model.done.contains(&offset),
                "offset {} committed but never acknowledged",
                offset
            );
        }
    }
    Ok(())
}

/// Dead letters seen since the last look: exactly the batches that reached max_attempts, with
/// their events and source coordinates.
fn absorb_dead_letters(
    sink: &MemoryDeadLetterSink,
    model: &mut Model,
    max_attempts: u32,
) -> Result<(), TestCaseError> {
    let letters = sink.letters();
    for letter in &letters[model.dead_letters_seen..] {
        prop_assert_eq!(letter.attempts, max_attempts);
        let first = letter.offsets[0];
        let (end, attempts) = model
            .ranges
            .get(&first)
            .copied()
            .expect("a dead letter is a known batch");
        prop_assert_eq!(
            attempts,
            max_attempts,
            "dead-lettered exactly at max_attempts"
        );
        prop_assert_eq!(letter.offsets.clone(), (first..end).collect::<Vec<_>>());
        prop_assert_eq!(letter.partition, 0);
        prop_assert_eq!(letter.last_reason.clone(), attempts_reason(model, first));
        model.done.extend(first..end);
        model.leases.retain(|batch| batch.first_offset != first);
    }
    model.dead_letters_seen = letters.len();
    Ok(())
}

/// The last nack reason the model gave for the batch at `first`, if any was nacked.
fn attempts_reason(model: &Model, first: u64) -> Option<String> {
    model
        .nacked
        .contains(&first)
        .then(|| "model nack".to_string())
}

struct CheckConfig {
    batch_size: u32,
    max_in_flight: u32,
    max_attempts: u32,
}

fn scenario_config(config: &BatchConfig) -> CheckConfig {
    CheckConfig {
        batch_size: config.batch_size,
        max_in_flight: config.max_in_flight,
        max_attempts: config.max_attempts,
    }
}

fn check_delivery(
    config: &CheckConfig,
    model: &mut Model,
    batch: &Batch,
    available: u64,
) -> Result<(), TestCaseError> {
    let (first, end) = (batch.first_offset, batch.end_offset());
    prop_assert!(end > first, "a batch holds at least one event");
    prop_assert!(
        batch.attempt <= config.max_attempts,
        "no delivery past max_attempts"
    );
    for (i, event) in batch.events.iter().enumerate() {
        prop_assert_eq!(event.offset, first + i as u64);
        prop_assert_eq!(
            event.value,
            &value(event.offset)[..],
            "events are what was appended"
        );
    }
    if let Some(restart_at) = model.restart_at.take() {
        prop_assert_eq!(
            first,
            restart_at,
            "after a restart delivery starts at the committed offset"
        );
    }
    match model.ranges.get(&first).copied() {
        Some((known_end, attempts)) if batch.attempt > 1 => {
            prop_assert_eq!(
                end,
                known_end,
                "a redelivery carries exactly the same events"
            );
            prop_assert_eq!(batch.attempt, attempts + 1);
            model.ranges.insert(first, (end, batch.attempt));
        }
        _ => {
            prop_assert_eq!(batch.attempt, 1);
            if let Some(last_end) = model.last_new_end {
                prop_assert_eq!(
                    first,
                    last_end,
                    "new batches follow each other in offset order"
                );
            }
            match batch.close_reason {
                CloseReason::Full => prop_assert_eq!(batch.events.len() as u32, config.batch_size),
                CloseReason::TailWait => {
                    prop_assert!(
                        available - first < u64::from(config.batch_size),
                        "a short batch only at the tail"
                    )
                }
                CloseReason::ByteLimit => {}
                CloseReason::BeforeLost => {
                    prop_assert!(false, "the model's log holds no lost or damaged events")
                }
            }
            model.last_new_end = Some(end);
            model.ranges.insert(first, (end, 1));
        }
    }
    if config.max_in_flight == 1 {
        // Strictly ordered: a batch (new or redelivered) goes out only when everything before
        // it in this incarnation is settled, so batches never overlap and follow offset order.
        for offset in model.incarnation_start..first {
            prop_assert!(
                model.done.contains(&offset),
                "offset {} unsettled when batch {} went out",
                offset,
                first
            );
        }
    }
    model.leases.retain(|lease| lease.first_offset != first);
    model.delivered.extend(first..end);
    model.ids.insert(batch.id, (first, end));
    model.leases.push(batch.clone());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("WEIR_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_batch_reader_keeps_its_rules(scenario in scenario()) {
        run(scenario)?;
    }
}
