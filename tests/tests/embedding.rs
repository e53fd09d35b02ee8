//! The embedded store's API without traps (issue 16, items 5–7): `close` closes, whoever still
//! holds a clone or a consumer; acks and writes of your own in one durable step; the types a
//! helper over events needs are re-exported; settings and async acks are easy to reach.

use std::time::Duration;

use weir_store::{ConsumerConfig, Error, Partitioning, Record, ReplayFrom, Store, TopicConfig};

#[test]
fn close_closes_for_every_clone_and_consumer_and_the_directory_opens_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    store
        .append(
            "t",
            &[Record::new("a"), Record::new("b")],
            Partitioning::Partition(0),
        )
        .unwrap();
    let clone = store.clone();
    let mut config = ConsumerConfig::default();
    config.batch_size = 1;
    let consumer = store.consumer("g", "t", config).unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let replay = store
        .replay("t", 0, ReplayFrom::Earliest, Default::default())
        .unwrap();

    store.close().unwrap();

    // The directory opens again at once, while the clone and the consumer are alive.
    let again = Store::open(dir.path()).expect("the closed store let go of everything");
    // Every operation on the old handles says the store is closed.
    assert!(matches!(consumer.ack(&batch), Err(Error::Closed)));
    assert!(matches!(
        consumer.next_batch(Duration::from_millis(10)),
        Err(Error::Closed)
    ));
    assert!(matches!(
        consumer.nack(&batch, Duration::ZERO, None),
        Err(Error::Closed)
    ));
    assert!(matches!(consumer.commit(), Err(Error::Closed)));
    assert!(matches!(
        clone.append("t", &[Record::new("c")], Partitioning::Partition(0)),
        Err(Error::Closed)
    ));
    assert!(matches!(clone.list_groups(), Err(Error::Closed)));
    assert!(matches!(clone.describe_group("g"), Err(Error::Closed)));
    for event in replay {
        assert!(matches!(event, Err(Error::Closed)), "{event:?}");
    }
    // The ack after close changed nothing: the batch comes again in the new store.
    let consumer = again.consumer("g", "t", ConsumerConfig::default()).unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert_eq!(batch.first_offset, 0);
    again.close().unwrap();
}

#[test]
fn ack_with_keeps_writes_and_progress_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(format!("{i}")).key("k"))
        .collect();
    store
        .append("t", &records, Partitioning::Partition(0))
        .unwrap();
    let tree = store.user_tree("sums").unwrap();
    let mut config = ConsumerConfig::default();
    config.batch_size = 4;
    // max_in_flight must be 1.
    config.max_in_flight = 2;
    let consumer = store.consumer("g", "t", config.clone()).unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let refused = consumer.ack_with(&batch, &tree, |_| {
        Ok::<_, weir_store::ConflictableTransactionError<()>>(())
    });
    assert!(refused.is_err(), "max_in_flight 2 is refused");
    drop(consumer);
    config.max_in_flight = 1;
    let store2 = store.clone();
    drop(store);
    let consumer = store2.consumer("h", "t", config).unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    // Writes that give up: nothing written, the batch stays leased.
    let gave_up = consumer
        .ack_with(&batch, &tree, |writes| {
            writes.insert("sum", &1u64.to_le_bytes())?;
            Err::<(), _>(weir_store::ConflictableTransactionError::Abort("no"))
        })
        .unwrap();
    assert_eq!(gave_up, Err("no"));
    assert_eq!(tree.get("sum").unwrap(), None);
    let described = store2.describe_group("h").unwrap();
    assert_eq!(described.partitions[0].committed_offset, 0);
    // Writes that go through: committed with the offset, in one step.
    consumer
        .ack_with(&batch, &tree, |writes| {
            writes.insert("sum", &4u64.to_le_bytes())?;
            Ok::<_, weir_store::ConflictableTransactionError<()>>(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(tree.get("sum").unwrap(), Some(4u64.to_le_bytes().to_vec()));
    let described = store2.describe_group("h").unwrap();
    assert_eq!(described.partitions[0].committed_offset, 4);
    store2.close().unwrap();
    assert!(matches!(tree.get("sum"), Err(Error::Closed)));
}

/// A helper over a batch's events needs only weir-store: `BatchEvents`, `EventView` and
/// `Header` are re-exported.
fn keys_of(events: &weir_store::BatchEvents) -> Vec<Option<Vec<u8>>> {
    events
        .iter()
        .map(|event: weir_store::EventView<'_>| {
            let _headers: Vec<weir_store::Header<'_>> = event.headers().collect();
            event.key.map(<[u8]>::to_vec)
        })
        .collect()
}

#[test]
fn the_api_reads_in_one_expression_and_async_code_can_ack() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .unwrap();
    let records: Vec<Record> = (0..6)
        .map(|i| Record::new(format!("{i}")).key("k"))
        .collect();
    // A slice for `append`, the same slice for `append_async`.
    store
        .append("t", &records, Partitioning::Partition(0))
        .unwrap();
    weir_tests::block_on(store.append_async("t", &records[..2], Partitioning::Partition(0)))
        .unwrap();
    weir_tests::block_on(store.append_async("t", records.clone(), Partitioning::Partition(0)))
        .unwrap();
    // Settings in one expression despite #[non_exhaustive].
    let config = ConsumerConfig::default()
        .batch_size(5)
        .max_wait(Duration::from_millis(10))
        .max_in_flight(1);
    let consumer = store.consumer("g", "t", config).unwrap();
    assert_eq!(consumer.undelivered_events().unwrap(), 14);
    assert!(!consumer.caught_up().unwrap());
    let mut seen = 0;
    while !consumer.caught_up().unwrap() {
        let batch = consumer
            .next_batch(Duration::from_secs(1))
            .unwrap()
            .unwrap();
        assert!(keys_of(&batch.events)
            .iter()
            .all(|k| k.as_deref() == Some(&b"k"[..])));
        seen += batch.events.len();
        weir_tests::block_on(consumer.ack_async(&batch)).unwrap();
    }
    assert_eq!(seen, 14);
    // An ack of a settled batch names the partition and where the batch starts.
    let store2 = store.clone();
    drop(consumer);
    let consumer = store2
        .consumer("h", "t", ConsumerConfig::default().batch_size(3))
        .unwrap();
    let batch = consumer
        .next_batch(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    consumer.ack(&batch).unwrap();
    let twice = consumer.ack(&batch).unwrap_err().to_string();
    assert!(
        twice.contains("partition 0")
            && twice.contains("from offset 0")
            && twice.contains("already settled"),
        "{twice}"
    );
    // Replay from a time, as a SystemTime or as "this long ago".
    let recent = store2
        .replay(
            "t",
            0,
            ReplayFrom::Ago(Duration::from_secs(3600)),
            Default::default(),
        )
        .unwrap();
    assert_eq!(recent.count(), 14);
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    let none = store2
        .replay("t", 0, ReplayFrom::Time(future), Default::default())
        .unwrap();
    assert_eq!(none.count(), 0);
    store2.close().unwrap();
}
