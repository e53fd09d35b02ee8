//! Property tests: frames with random bodies decode as the protocol says, messages survive an
//! encode/decode round trip, and a stream of frames cut into arbitrary chunks decodes to the
//! same frames in order.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use weir_proto::*;

fn limits() -> FrameLimits {
    FrameLimits::default()
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,20}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    vec(("\\PC{0,8}", bytes(16)), 0..4)
}

fn wire_event() -> impl Strategy<Value = WireEvent> {
    (
        option::of(any::<u64>()),
        option::of(bytes(16)),
        headers(),
        bytes(300),
    )
        .prop_map(|(timestamp_ms, key, headers, value)| WireEvent {
            timestamp_ms,
            key,
            headers,
            value: value.into(),
        })
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<u64>(),
        option::of(bytes(16)),
        headers(),
        bytes(300),
    )
        .prop_map(|(offset, timestamp_ms, key, headers, value)| Event {
            offset,
            timestamp_ms,
            key,
            headers,
            value,
        })
}

fn events() -> impl Strategy<Value = Events> {
    prop_oneof![
        (bytes(2000), any::<u32>(), any::<u32>()).prop_map(|(bytes, skip, count)| {
            Events::LogFrames(LogFrames { bytes, skip, count })
        }),
        vec(event(), 0..5).prop_map(Events::Decoded),
    ]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![Just(Limit::Unlimited), any::<u64>().prop_map(Limit::Max)]
}

fn topic_settings() -> impl Strategy<Value = TopicSettings> {
    let sync = prop_oneof![
        Just(SyncPolicy::Always),
        any::<u64>().prop_map(|interval_ms| SyncPolicy::IntervalLossy { interval_ms }),
        Just(SyncPolicy::NeverLossy),
    ];
    (
        option::of(limit()),
        option::of(limit()),
        option::of(any::<u64>()),
        option::of(limit()),
        option::of(sync),
    )
        .prop_map(
            |(
                retention_bytes_max,
                retention_age_max_ms,
                segment_bytes_max,
                segment_age_max_ms,
                sync_policy,
            )| TopicSettings {
                retention_bytes_max,
                retention_age_max_ms,
                segment_bytes_max,
                segment_age_max_ms,
                sync_policy,
            },
        )
}

fn consumer_settings() -> impl Strategy<Value = ConsumerSettings> {
    let commit_policy = prop_oneof![
        Just(CommitPolicy::EveryAck),
        (any::<u64>(), any::<u32>()).prop_map(|(interval_ms, acks_max)| CommitPolicy::Interval {
            interval_ms,
            acks_max
        }),
    ];
    (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        commit_policy,
    )
        .prop_map(
            |(
                batch_size,
                batch_bytes_max,
                max_wait_ms,
                ack_timeout_ms,
                max_in_flight,
                max_attempts,
                commit_policy,
            )| ConsumerSettings {
                batch_size,
                batch_bytes_max,
                max_wait_ms,
                ack_timeout_ms,
                max_in_flight,
                max_attempts,
                commit_policy,
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    let partitioning = prop_oneof![
        Just(Partitioning::Key),
        Just(Partitioning::RoundRobin),
        any::<u32>().prop_map(Partitioning::Partition),
    ];
    let read_from = prop_oneof![
        any::<u64>().prop_map(ReadFrom::Offset),
        any::<u64>().prop_map(ReadFrom::TimeMs),
        Just(ReadFrom::Earliest),
        Just(ReadFrom::Latest),
    ];
    let reset_to = prop_oneof![
        Just(ResetTo::Earliest),
        Just(ResetTo::Latest),
        any::<u64>().prop_map(ResetTo::Offset),
        any::<u64>().prop_map(ResetTo::TimeMs),
    ];
    prop_oneof![
        (any::<u16>(), "\\PC{0,20}", option::of("\\PC{0,20}")).prop_map(
            |(protocol_version, client_name, token)| Request::Hello(Hello {
                protocol_version,
                client_name,
                token,
            })
        ),
        Just(Request::ServerInfo),
        (name(), any::<u32>(), topic_settings()).prop_map(|(topic, partitions, settings)| {
            Request::CreateTopic(CreateTopic {
                topic,
                partitions,
                settings,
            })
        }),
        Just(Request::ListTopics),
        name().prop_map(|topic| Request::DescribeTopic { topic }),
        name().prop_map(|topic| Request::DeleteTopic { topic }),
        (
            name(),
            partitioning,
            option::of(any::<u64>()),
            vec(wire_event(), 0..6)
        )
            .prop_map(|(topic, partitioning, expected_offset, events)| {
                Request::Produce(Produce {
                    topic,
                    partitioning,
                    expected_offset,
                    events,
                })
            }),
        (
            name(),
            any::<u32>(),
            read_from,
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(topic, partition, from, max_events, max_bytes, max_wait_ms)| {
                    Request::Read(Read {
                        topic,
                        partition,
                        from,
                        max_events,
                        max_bytes,
                        max_wait_ms,
                    })
                }
            ),
        (name(), name(), consumer_settings(), any::<u32>()).prop_map(
            |(group, topic, settings, wait_ms)| Request::Fetch(Fetch {
                group,
                topic,
                settings,
                wait_ms,
            })
        ),
        (name(), name(), any::<u32>(), any::<u64>()).prop_map(
            |(group, topic, partition, batch_id)| Request::Ack(Ack {
                group,
                topic,
                partition,
                batch_id,
            })
        ),
        (
            name(),
            name(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            option::of("\\PC{0,30}")
        )
            .prop_map(|(group, topic, partition, batch_id, delay_ms, reason)| {
                Request::Nack(Nack {
                    group,
                    topic,
                    partition,
                    batch_id,
                    delay_ms,
                    reason,
                })
            }),
        Just(Request::ListGroups),
        name().prop_map(|group| Request::DescribeGroup { group }),
        (name(), name(), option::of(any::<u32>()), reset_to).prop_map(
            |(group, topic, partition, to)| Request::ResetGroup(ResetGroup {
                group,
                topic,
                partition,
                to,
            })
        ),
        name().prop_map(|group| Request::DeleteGroup { group }),
    ]
}

fn group_partition() -> impl Strategy<Value = GroupPartition> {
    (
        (
            name(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<u64>(),
            any::<bool>(),
            any::<u32>(),
            option::of(any::<u64>()),
        ),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (topic, partition, committed_offset, end_offset, lag_events),
                (lag_ms, active, in_flight, oldest_unacked_age_ms),
                (redeliveries, dead_letters),
            )| GroupPartition {
                topic,
                partition,
                committed_offset,
                end_offset,
                lag_events,
                lag_ms,
                active,
                in_flight,
                oldest_unacked_age_ms,
                redeliveries,
                dead_letters,
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    let close_reason = prop_oneof![
        Just(CloseReason::Full),
        Just(CloseReason::ByteLimit),
        Just(CloseReason::TailWait),
        Just(CloseReason::BeforeLost),
    ];
    let offsets = option::of((any::<u64>(), any::<u64>()).prop_map(
        |(start_offset, end_offset)| OffsetRange {
            start_offset,
            end_offset,
        },
    ));
    prop_oneof![
        (any::<u16>(), "\\PC{0,40}", offsets).prop_map(|(code, message, offsets)| {
            Response::Error(ErrorResponse {
                code: ErrorCode::from_u16(code),
                message,
                offsets,
            })
        }),
        (
            any::<u16>(),
            "\\PC{0,20}",
            any::<u32>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(
                |(protocol_version, server_version, frame_bytes_max, in_flight_max, idle)| {
                    Response::Welcome(Welcome {
                        protocol_version,
                        server_version,
                        frame_bytes_max,
                        in_flight_max,
                        idle_timeout_ms: idle,
                    })
                }
            ),
        (
            name(),
            topic_settings(),
            any::<u64>(),
            vec((any::<u32>(), any::<u64>()), 0..4)
        )
            .prop_map(|(topic, settings, created_ms, partitions)| {
                Response::Topic(TopicDescription {
                    topic,
                    settings,
                    created_ms,
                    partitions: partitions
                        .into_iter()
                        .map(|(partition, end_offset)| PartitionInfo {
                            partition,
                            start_offset: 0,
                            end_offset,
                            size_bytes: end_offset / 3,
                            segment_count: u64::from(partition),
                            oldest_timestamp_ms: None,
                            newest_timestamp_ms: Some(end_offset),
                        })
                        .collect(),
                })
            }),
        vec((name(), any::<u32>()), 0..4).prop_map(|topics| Response::Topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| TopicSummary { topic, partitions })
                .collect()
        )),
        vec((0u32..3, any::<u64>()), 0..10)
            .prop_map(|positions| Response::Produced(Produced::from_positions(&positions))),
        (
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()),
            events()
        )
            .prop_map(
                |((partition, first_offset, next_offset, end_offset), events)| {
                    Response::Read(ReadResult {
                        partition,
                        first_offset,
                        next_offset,
                        end_offset,
                        events,
                    })
                }
            ),
        option::of((
            (any::<u32>(), any::<u64>(), any::<u64>(), any::<u32>()),
            close_reason,
            any::<u64>(),
            events()
        ))
        .prop_map(|batch| {
            Response::Fetched(batch.map(
                |(
                    (partition, batch_id, first_offset, attempt),
                    close_reason,
                    lease_expires_ms,
                    events,
                )| Batch {
                    partition,
                    batch_id,
                    first_offset,
                    attempt,
                    close_reason,
                    lease_expires_ms,
                    events,
                },
            ))
        }),
        vec(name(), 0..4).prop_map(Response::Groups),
        (name(), vec(group_partition(), 0..4)).prop_map(|(group, partitions)| {
            Response::Group(GroupDescription { group, partitions })
        }),
        vec((any::<u32>(), any::<u64>()), 0..4).prop_map(|offsets| Response::GroupReset(
            offsets
                .into_iter()
                .map(|(partition, offset)| PartitionOffset { partition, offset })
                .collect()
        )),
        Just(Response::Acked),
        Just(Response::Nacked),
        Just(Response::GroupDeleted),
    ]
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(request_id: u64, message: &M) {
    let mut wire = Vec::new();
    let len = encode_frame(&mut wire, request_id, message, &limits()).unwrap();
    assert_eq!(len, wire.len());
    let (frame, used) = decode_frame::<M>(&wire, &limits()).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(frame.request_id, request_id);
    assert_eq!(&frame.message, message);
    assert_eq!(frame.message.kind(), u32::from(wire[FRAME_HEADER_LEN]));
    // The shared decoder reads the same message from the same bytes.
    let shared = bytes::Bytes::from(wire);
    let (frame, used) = decode_frame_shared::<M>(&shared, &limits())
        .unwrap()
        .unwrap();
    assert_eq!(used, shared.len());
    assert_eq!(&frame.message, message);
}

/// Decoded from a shared buffer, a produce's values are slices of that buffer: no copy.
#[test]
fn shared_decoding_slices_produce_values_out_of_the_frame() {
    let produce = Request::Produce(Produce {
        topic: "t".into(),
        partitioning: Partitioning::RoundRobin,
        expected_offset: None,
        events: (0..3u8)
            .map(|i| WireEvent {
                value: vec![i; 100 + usize::from(i)].into(),
                ..WireEvent::default()
            })
            .collect(),
    });
    let mut wire = Vec::new();
    encode_frame(&mut wire, 9, &produce, &limits()).unwrap();
    let shared = bytes::Bytes::from(wire);
    let inside = |value: &bytes::Bytes| {
        let start = shared.as_ptr() as usize;
        let at = value.as_ptr() as usize;
        at >= start && at + value.len() <= start + shared.len()
    };
    let (frame, _) = decode_frame_shared::<Request>(&shared, &limits())
        .unwrap()
        .unwrap();
    let Request::Produce(decoded) = &frame.message else {
        panic!("{:?}", frame.message)
    };
    assert_eq!(frame.message, produce);
    assert!(decoded.events.iter().all(|event| inside(&event.value)));
    // The plain decoder copies.
    let (frame, _) = decode_frame::<Request>(&shared, &limits())
        .unwrap()
        .unwrap();
    let Request::Produce(copied) = &frame.message else {
        panic!("{:?}", frame.message)
    };
    assert!(copied.events.iter().all(|event| !inside(&event.value)));
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("WEIR_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000),
        // Shrunk failures are kept beside this file (`roundtrip.proptest-regressions`).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn requests_round_trip(request_id in any::<u64>(), request in request()) {
        round_trip(request_id, &request);
    }

    #[test]
    fn responses_round_trip(request_id in any::<u64>(), response in response()) {
        round_trip(request_id, &response);
    }

    /// Runs built from positions expand back to exactly those positions, and runs are maximal.
    #[test]
    fn produced_runs_expand_to_their_positions(
        positions in vec((0u32..3, 0u64..6), 0..40),
    ) {
        let produced = Produced::from_positions(&positions);
        prop_assert_eq!(produced.event_count(), positions.len() as u64);
        prop_assert_eq!(produced.positions().collect::<Vec<_>>(), positions);
        for pair in produced.ranges.windows(2) {
            prop_assert!(
                pair[0].partition != pair[1].partition
                    || pair[0].first_offset + u64::from(pair[0].count) != pair[1].first_offset
            );
        }
    }

    /// Any body in an intact frame: never incomplete, never a CRC error; it decodes, or it is
    /// an unknown kind or a malformed body carrying the frame's request id. Every strict prefix
    /// is incomplete.
    #[test]
    fn frames_with_random_bodies(request_id in any::<u64>(), body in vec(any::<u8>(), 1..200)) {
        let mut wire = Vec::new();
        let len = encode_raw_frame(&mut wire, request_id, &body);
        prop_assert_eq!(len, FRAME_HEADER_LEN + body.len());
        for decoded in [
            decode_frame::<Request>(&wire, &limits()).map(|f| f.map(|(f, n)| (f.request_id, n))),
            decode_frame::<Response>(&wire, &limits()).map(|f| f.map(|(f, n)| (f.request_id, n))),
        ] {
            match decoded {
                Ok(Some((id, used))) => {
                    prop_assert_eq!(id, request_id);
                    prop_assert_eq!(used, wire.len());
                }
                Err(FrameError::UnknownKind { request_id: id, .. })
                | Err(FrameError::Malformed { request_id: id, .. }) => prop_assert_eq!(id, request_id),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        for prefix in 0..wire.len() {
            prop_assert_eq!(decode_frame::<Request>(&wire[..prefix], &limits()), Ok(None));
        }
    }

    /// A stream of frames delivered in arbitrary chunks decodes to the same frames, in order,
    /// the way a network reader drives the decoder.
    #[test]
    fn chunked_streams_decode_in_order(
        requests in vec((any::<u64>(), request()), 1..8),
        chunks in vec(1usize..64, 1..400),
    ) {
        let mut wire = Vec::new();
        for (request_id, request) in &requests {
            encode_frame(&mut wire, *request_id, request, &limits()).unwrap();
        }
        let mut buffer = Vec::new();
        let mut decoded = Vec::new();
        let mut at = 0;
        let mut chunk = chunks.iter().cycle();
        while at < wire.len() {
            let take = (*chunk.next().unwrap()).min(wire.len() - at);
            buffer.extend_from_slice(&wire[at..at + take]);
            at += take;
            while let Some((frame, used)) = decode_frame::<Request>(&buffer, &limits()).unwrap() {
                decoded.push((frame.request_id, frame.message));
                buffer.drain(..used);
            }
        }
        prop_assert!(buffer.is_empty());
        prop_assert_eq!(decoded, requests);
    }
}
