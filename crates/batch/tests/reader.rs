//! The reader's waiting and wiring: blocking and async waits, the tail wait, dead letters into a
//! log with their source headers, config validation and typed settle errors.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use weir_batch::{
    BatchConfig, BatchId, CloseReason, DeadLetterSink, Error, LogDeadLetterSink,
    MemoryDeadLetterSink, MemoryOffsets, OffsetCommits, PartitionReader, HEADER_ATTEMPTS,
    HEADER_LAST_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TOPIC,
};
use weir_log::sim::{CrashMode, SimStorage};
use weir_log::{AppendEvent, Log, LogConfig, SyncPolicy, SystemClock};

fn reader_with(
    log: &Arc<Log>,
    offsets: &Arc<MemoryOffsets>,
    config: BatchConfig,
) -> PartitionReader {
    reader_into(
        log,
        offsets,
        Arc::new(MemoryDeadLetterSink::default()),
        config,
    )
}

/// A reader of `log` for group "g" on topic "t", partition 0, dead-lettering into `sink`.
fn reader_into(
    log: &Arc<Log>,
    offsets: &Arc<MemoryOffsets>,
    sink: Arc<dyn DeadLetterSink>,
    config: BatchConfig,
) -> PartitionReader {
    PartitionReader::open(
        "g",
        "t",
        0,
        log.clone(),
        offsets.clone(),
        sink,
        config,
        Arc::new(SystemClock),
    )
    .expect("reader")
}

fn append(log: &Log, count: u8) {
    let values: Vec<[u8; 1]> = (0..count).map(|i| [i]).collect();
    let events: Vec<AppendEvent<'_>> = values.iter().map(|v| AppendEvent::value(v)).collect();
    log.append(&events).expect("append");
}

/// A minimal executor: polls a future on this thread, parking until its waker fires.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park_timeout(Duration::from_secs(5));
    }
}

#[test]
fn next_batch_waits_for_events_and_fills_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    let mut config = BatchConfig::default();
    config.batch_size = 5;
    config.max_wait_ms = 10_000;
    let reader = reader_with(&log, &Arc::new(MemoryOffsets::default()), config);
    assert!(
        reader
            .next_batch(Duration::from_millis(30))
            .unwrap()
            .is_none(),
        "an empty answer is normal"
    );
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(10));
                append(&log, 1);
            }
        })
    };
    let started = Instant::now();
    let batch = reader
        .next_batch(Duration::from_secs(10))
        .unwrap()
        .expect("a batch");
    writer.join().unwrap();
    // The batch waited for the fifth event rather than going out short.
    assert_eq!(
        (batch.events.len(), batch.close_reason),
        (5, CloseReason::Full)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_tail_wait_delivers_a_short_batch_when_it_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    let mut config = BatchConfig::default();
    config.batch_size = 10;
    config.max_wait_ms = 50;
    let reader = reader_with(&log, &Arc::new(MemoryOffsets::default()), config);
    append(&log, 3);
    let started = Instant::now();
    let batch = reader
        .next_batch(Duration::from_secs(10))
        .unwrap()
        .expect("a batch");
    assert_eq!(
        (batch.events.len(), batch.close_reason),
        (3, CloseReason::TailWait)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(45),
        "it waited for the batch to fill"
    );
}

#[test]
fn next_batch_async_waits_without_blocking_and_sees_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    let mut config = BatchConfig::default();
    config.batch_size = 2;
    config.ack_timeout_ms = 100;
    let reader = Arc::new(reader_with(
        &log,
        &Arc::new(MemoryOffsets::default()),
        config,
    ));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            append(&log, 2);
        })
    };
    let batch = block_on(reader.next_batch_async(Duration::from_secs(10)))
        .unwrap()
        .expect("a batch");
    writer.join().unwrap();
    assert_eq!((batch.first_offset, batch.attempt), (0, 1));
    // Not acked: the lease runs out after 100 ms and the same events come back.
    let started = Instant::now();
    let again = block_on(reader.next_batch_async(Duration::from_secs(10)))
        .unwrap()
        .expect("redelivered");
    assert_eq!(
        (again.first_offset, again.events.len(), again.attempt),
        (0, 2, 2)
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    // A nack with no delay wakes a waiting consumer at once.
    let waiter = {
        let reader = reader.clone();
        std::thread::spawn(move || {
            block_on(reader.next_batch_async(Duration::from_secs(10))).unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    reader
        .nack(again.id, Duration::ZERO, Some("try again"))
        .unwrap();
    let third = waiter.join().unwrap().expect("redelivered after the nack");
    assert_eq!(third.attempt, 3);
    assert!(block_on(reader.next_batch_async(Duration::from_millis(20)))
        .unwrap()
        .is_none());
}

#[test]
fn dead_letters_go_to_a_log_with_their_source_headers() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path().join("t-0"), LogConfig::default()).unwrap());
    let dlq = Arc::new(Log::open(dir.path().join("dlq-0"), LogConfig::default()).unwrap());
    let offsets = Arc::new(MemoryOffsets::default());
    let mut config = BatchConfig::default();
    config.batch_size = 2;
    config.max_attempts = 2;
    let reader = reader_into(
        &log,
        &offsets,
        Arc::new(LogDeadLetterSink::new(dlq.clone())),
        config,
    );
    append(&log, 3);
    for _ in 0..2 {
        let batch = reader
            .next_batch(Duration::from_secs(1))
            .unwrap()
            .expect("a batch");
        assert_eq!(batch.first_offset, 0);
        reader
            .nack(batch.id, Duration::ZERO, Some("poison"))
            .unwrap();
    }
    // The third fetch dead-letters offsets 0..2 and moves on to offset 2.
    let next = reader
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .expect("the next batch");
    assert_eq!(next.first_offset, 2);
    reader.ack(next.id).unwrap();
    assert_eq!(offsets.committed("g", "t", 0).unwrap(), Some(3));
    let letters = dlq.read(0, 10, usize::MAX).unwrap().events();
    assert_eq!(letters.len(), 2);
    for (i, letter) in letters.iter().enumerate() {
        let header = |name: &str| {
            letter
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header(HEADER_SOURCE_TOPIC).as_deref(), Some("t"));
        assert_eq!(header(HEADER_SOURCE_OFFSET), Some(i.to_string()));
        assert_eq!(header(HEADER_ATTEMPTS).as_deref(), Some("2"));
        assert_eq!(header(HEADER_LAST_REASON).as_deref(), Some("poison"));
        assert_eq!(&letter.value[..], &[i as u8]);
    }
    assert_eq!(reader.stats().unwrap().state.dead_letters, 1);
}

#[test]
fn bad_config_and_stale_settles_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    let offsets = Arc::new(MemoryOffsets::default());
    for (field, change) in [
        (
            "batch_size",
            Box::new(|c: &mut BatchConfig| c.batch_size = 0) as Box<dyn Fn(&mut BatchConfig)>,
        ),
        (
            "ack_timeout_ms",
            Box::new(|c: &mut BatchConfig| c.ack_timeout_ms = 0),
        ),
        (
            "max_in_flight",
            Box::new(|c: &mut BatchConfig| c.max_in_flight = 0),
        ),
        (
            "max_attempts",
            Box::new(|c: &mut BatchConfig| c.max_attempts = 0),
        ),
    ] {
        let mut config = BatchConfig::default();
        change(&mut config);
        let result = PartitionReader::open(
            "g",
            "t",
            0,
            log.clone(),
            offsets.clone(),
            Arc::new(MemoryDeadLetterSink::default()),
            config,
            Arc::new(SystemClock),
        );
        assert!(
            matches!(result, Err(Error::InvalidConfig { field: f, .. }) if f == field),
            "{field}"
        );
    }
    let reader = reader_with(&log, &offsets, BatchConfig::default());
    append(&log, 1);
    let batch = reader
        .next_batch(Duration::from_millis(500))
        .unwrap()
        .expect("a batch");
    assert!(matches!(
        reader.ack(BatchId(77)),
        Err(Error::UnknownBatch(weir_batch::BatchRef {
            id: BatchId(77),
            ..
        }))
    ));
    reader.ack(batch.id).unwrap();
    assert!(matches!(
        reader.ack(batch.id),
        Err(Error::AlreadySettled(_))
    ));
    assert!(matches!(
        reader.nack(batch.id, Duration::ZERO, None),
        Err(Error::AlreadySettled(_))
    ));
    let stats = reader.stats().unwrap();
    assert_eq!(
        (stats.committed_offset, stats.lag_events, stats.state.acked),
        (1, 0, 1)
    );
}

/// `ack_deferring_commit` records the ack without committing and says when the policy wants a
/// commit: always under `EveryAck`, once the interval or the ack count is reached otherwise.
#[test]
fn an_ack_deferring_its_commit_says_when_one_is_due() {
    use weir_batch::CommitPolicy;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    append(&log, 6);
    for (policy, due) in [
        (CommitPolicy::EveryAck, [true, true, true]),
        (
            CommitPolicy::Interval {
                interval_ms: 60_000,
                acks_max: 3,
            },
            [false, false, true],
        ),
    ] {
        let offsets = Arc::new(MemoryOffsets::default());
        let mut config = BatchConfig::default();
        config.batch_size = 2;
        config.commit_policy = policy;
        let reader = reader_with(&log, &offsets, config);
        for (n, due) in due.into_iter().enumerate() {
            let batch = reader
                .next_batch(Duration::from_secs(5))
                .unwrap()
                .expect("a batch");
            // The non-waiting form (nothing else holds the partition here) does the same.
            let acked = if n % 2 == 0 {
                reader.ack_deferring_commit(batch.id).unwrap()
            } else {
                reader
                    .try_ack_deferring_commit(batch.id)
                    .expect("the partition is not busy")
                    .unwrap()
            };
            assert_eq!(acked, due, "{policy:?} ack {n}");
            // Nothing committed by the ack itself.
            assert_eq!(
                offsets.committed("g", "t", 0).unwrap(),
                None,
                "{policy:?} ack {n}"
            );
        }
        assert_eq!(reader.commit().unwrap(), Some(6));
        assert_eq!(offsets.committed("g", "t", 0).unwrap(), Some(6));
    }
}

#[test]
fn dead_letters_survive_a_power_cut_even_in_a_lossy_dead_letter_log() {
    // A user may create the dead-letter topic with a lossy sync policy; the source offset is
    // committed past a dead-lettered batch, so the letters must be on disk regardless.
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path().join("t-0"), LogConfig::default()).unwrap());
    let storage = SimStorage::new();
    let mut lossy = LogConfig::default();
    lossy.sync_policy = SyncPolicy::NeverLossy;
    let open_dlq = |storage: &SimStorage| {
        Log::open_with(
            "/d/dlq-0",
            lossy.clone(),
            Arc::new(storage.clone()),
            Arc::new(SystemClock),
        )
        .unwrap()
    };
    let dlq = Arc::new(open_dlq(&storage));
    let offsets = Arc::new(MemoryOffsets::default());
    let mut config = BatchConfig::default();
    config.batch_size = 2;
    config.max_attempts = 1;
    let reader = reader_into(
        &log,
        &offsets,
        Arc::new(LogDeadLetterSink::new(dlq.clone())),
        config,
    );
    append(&log, 3);
    let batch = reader
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .expect("a batch");
    reader
        .nack(batch.id, Duration::ZERO, Some("poison"))
        .unwrap();
    // This fetch dead-letters offsets 0..2; acking the next batch commits past them.
    let next = reader
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .expect("the next batch");
    assert_eq!(next.first_offset, 2);
    reader.ack(next.id).unwrap();
    assert_eq!(offsets.committed("g", "t", 0).unwrap(), Some(3));

    let image = storage.power_cut(CrashMode::DropUnsynced);
    drop(reader);
    let reopened = open_dlq(&image);
    assert_eq!(
        reopened.end_offset(),
        2,
        "dead letters were lost although their source offsets were committed past them"
    );
}
