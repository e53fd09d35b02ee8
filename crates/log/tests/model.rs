//! Model test: the log behaves like a `Vec` of events (plus a start offset) across appends,
//! reads, rolls, time lookups, truncation, retention, clean reopens and power cuts.
//! Shrunk failures are kept below as named regression tests.

use std::sync::Arc;

use proptest::prelude::*;
use weir_log::sim::{CrashMode, SimStorage};
use weir_log::{AppendEvent, Clock, Log, LogConfig, ManualClock};

const DIR: &str = "/data/p0";

#[derive(Debug, Clone)]
enum Op {
    /// Events as (timestamp, value length, with key).
    Append(Vec<(u64, usize, bool)>),
    Read {
        from: u64,
        max_events: usize,
        max_bytes: usize,
    },
    OffsetForTime(u64),
    TruncateBefore(u64),
    Retention {
        advance_ms: u64,
    },
    Reopen,
    PowerCut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u64..2_000, 0usize..700, any::<bool>()), 1..6).prop_map(Op::Append),
        3 => (0u64..400, 0usize..50, 1usize..4000).prop_map(|(from, max_events, max_bytes)| Op::Read { from, max_events, max_bytes }),
        1 => (0u64..2_100).prop_map(Op::OffsetForTime),
        1 => (0u64..400).prop_map(Op::TruncateBefore),
        1 => (0u64..5_000).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => Just(Op::Reopen),
        1 => Just(Op::PowerCut),
    ]
}

fn config() -> LogConfig {
    let mut config = LogConfig::default();
    config.segment_bytes_max = 4096;
    config.index_interval_bytes = 128;
    config.retention_age_max_ms = Some(20_000);
    config
}

fn value(offset: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (offset as usize * 31 + i) as u8).collect()
}

struct Model {
    start: u64,
    /// (timestamp, key, value) by offset.
    events: Vec<(u64, Option<Vec<u8>>, Vec<u8>)>,
}

/// Retention by age removed the events below `new_start`: each must be past the age limit.
fn check_expired(model: &Model, new_start: u64, now_ms: u64) -> Result<(), TestCaseError> {
    for offset in model.start..new_start {
        let (ts, _, _) = model.events[offset as usize];
        prop_assert!(
            ts + 20_000 < now_ms,
            "offset {} (ts {}) removed at {} before it expired",
            offset,
            ts,
            now_ms
        );
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(1_000_000);
    let mut storage = SimStorage::new();
    let open = |storage: &SimStorage| {
        Log::open_with(
            DIR,
            config(),
            Arc::new(storage.clone()),
            Arc::new(clock.clone()),
        )
        .expect("open")
    };
    let mut log = open(&storage);
    let mut model = Model {
        start: 0,
        events: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Append(specs) => {
                let end = model.events.len() as u64;
                let values: Vec<(u64, Option<Vec<u8>>, Vec<u8>)> = specs
                    .iter()
                    .enumerate()
                    .map(|(i, &(ts, len, keyed))| {
                        let offset = end + i as u64;
                        (
                            1_000_000 + ts,
                            keyed.then(|| offset.to_le_bytes().to_vec()),
                            value(offset, len),
                        )
                    })
                    .collect();
                let events: Vec<AppendEvent<'_>> = values
                    .iter()
                    .map(|(ts, key, v)| AppendEvent {
                        timestamp_ms: Some(*ts),
                        key: key.as_deref(),
                        headers: &[],
                        value: v,
                    })
                    .collect();
                prop_assert_eq!(log.append(&events).expect("append"), end);
                model.events.extend(values);
                // A roll runs retention, which may remove whole segments of expired events.
                let start = log.start_offset();
                prop_assert!(start >= model.start);
                check_expired(&model, start, clock.now_ms())?;
                model.start = start;
            }
            Op::Read {
                from,
                max_events,
                max_bytes,
            } => {
                let end = model.events.len() as u64;
                let from = model.start + from % (end - model.start + 1);
                let batch = log.read(from, max_events, max_bytes).expect("read");
                prop_assert_eq!(batch.first_offset(), from);
                let expected_len = if max_events == 0 {
                    0
                } else {
                    let mut bytes = 0usize;
                    let mut count = 0usize;
                    for (_, key, v) in &model.events[from as usize..] {
                        let size = 18 + key.as_ref().map_or(0, Vec::len) + v.len();
                        if count == max_events || (count > 0 && bytes + size > max_bytes) {
                            break;
                        }
                        bytes += size;
                        count += 1;
                    }
                    count
                };
                prop_assert_eq!(batch.len(), expected_len);
                for event in batch.iter() {
                    let (ts, key, v) = &model.events[event.offset as usize];
                    prop_assert_eq!(event.timestamp_ms, *ts);
                    prop_assert_eq!(event.key, key.as_deref());
                    prop_assert_eq!(event.value, &v[..]);
                }
            }
            Op::OffsetForTime(ts) => {
                let target = 1_000_000 + ts;
                let expected = model.events[model.start as usize..]
                    .iter()
                    .position(|(t, _, _)| *t >= target)
                    .map(|i| model.start + i as u64);
                prop_assert_eq!(
                    log.offset_for_time(target).expect("offset_for_time"),
                    expected
                );
            }
            Op::TruncateBefore(to) => {
                let to = to.min(model.events.len() as u64);
                log.truncate_before(to).expect("truncate");
                model.start = model.start.max(to);
                prop_assert_eq!(log.start_offset(), model.start);
            }
            Op::Retention { advance_ms } => {
                clock.advance(advance_ms);
                let report = log.apply_retention().expect("retention");
                prop_assert!(report.start_offset >= model.start);
                prop_assert!(report.start_offset <= model.events.len() as u64);
                check_expired(&model, report.start_offset, clock.now_ms())?;
                model.start = report.start_offset;
            }
            Op::Reopen => {
                log.close().expect("close");
                drop(log);
                log = open(&storage);
                prop_assert!(log.recovery_report().clean_shutdown);
            }
            Op::PowerCut => {
                // Every append returned after its fsync, so a power cut loses nothing.
                let image = storage.power_cut(CrashMode::Scramble {
                    seed: model.events.len() as u64,
                });
                drop(log);
                storage = image;
                log = open(&storage);
            }
        }
        prop_assert_eq!(log.start_offset(), model.start);
        prop_assert_eq!(log.end_offset(), model.events.len() as u64);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("WEIR_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_a_vec(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

/// Found by the model: a roll runs age retention, which moves the start offset during an
/// append; the model must hold retention to its rule rather than expect a fixed start.
#[test]
fn regression_retention_during_an_append_roll() {
    let mut ops: Vec<Op> = [722, 3401, 1900, 2003, 4610, 4893, 3620]
        .iter()
        .map(|&advance_ms| Op::Retention { advance_ms })
        .collect();
    ops.push(Op::Append(vec![
        (0, 128, true),
        (0, 676, true),
        (0, 679, true),
        (0, 516, false),
        (0, 199, true),
    ]));
    ops.push(Op::Append(vec![
        (0, 169, false),
        (0, 31, true),
        (0, 600, true),
        (0, 600, true),
        (0, 600, true),
    ]));
    ops.push(Op::Retention { advance_ms: 4_000 });
    ops.push(Op::Append(vec![(0, 600, false); 5]));
    ops.push(Op::Append(vec![(0, 600, false); 5]));
    run(ops).expect("the model holds");
}
