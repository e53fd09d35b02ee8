//! The CI smoke run of the frame decoder: ~100,000 pseudo-random and mutated-valid inputs from
//! a fixed seed, fed to `decode_frame` as both requests and responses. The decoder must never
//! panic, never claim more bytes than it was given, and agree with itself on prefixes.
//!
//! Every input also goes through `weir_proto::fuzzing::frame_decoder`, the body of the
//! cargo-fuzz target `crates/proto/fuzz` (`frame_decoder`), so CI checks the long run's
//! properties too; see `docs/testing.md`, "Fuzzing". `WEIR_PROTO_SMOKE_INPUTS` and `WEIR_PROTO_SMOKE_SEED` change
//! the volume and the seed.

use weir_proto::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default)]
struct Outcomes {
    decoded: u64,
    incomplete: u64,
    errors: std::collections::BTreeMap<&'static str, u64>,
}

fn error_name(err: &FrameError) -> &'static str {
    match err {
        FrameError::BadMagic { .. } => "bad_magic",
        FrameError::UnsupportedVersion { .. } => "unsupported_version",
        FrameError::ReservedFlags { .. } => "reserved_flags",
        FrameError::ZeroLength => "zero_length",
        FrameError::TooLarge { .. } => "too_large",
        FrameError::BadCrc { .. } => "bad_crc",
        FrameError::UnknownKind { .. } => "unknown_kind",
        FrameError::Malformed { .. } => "malformed",
        _ => "other",
    }
}

/// Decodes `input` as `M` and checks what can be checked of any answer.
fn check<M: Message + PartialEq + std::fmt::Debug>(
    input: &[u8],
    limits: &FrameLimits,
    outcomes: &mut Outcomes,
) {
    match decode_frame::<M>(input, limits) {
        Ok(Some((frame, used))) => {
            outcomes.decoded += 1;
            assert!(used > FRAME_HEADER_LEN && used <= input.len());
            // Whatever decoded re-encodes and decodes to the same message.
            let mut again = Vec::new();
            encode_frame(
                &mut again,
                frame.request_id,
                &frame.message,
                &FrameLimits::default(),
            )
            .expect("a decoded message re-encodes");
            let (twice, _) = decode_frame::<M>(&again, &FrameLimits::default())
                .expect("re-encoded frame decodes")
                .expect("whole");
            assert_eq!(twice, frame);
        }
        Ok(None) => {
            outcomes.incomplete += 1;
            // "Incomplete" must be honest: a header that has arrived is a valid one.
            if input.len() >= FRAME_HEADER_LEN {
                let header = peek_header(input, limits)
                    .expect("incomplete with a bad header")
                    .expect("incomplete without a header");
                assert!(header.frame_len() > input.len());
            }
        }
        Err(err) => {
            *outcomes.errors.entry(error_name(&err)).or_default() += 1;
            // Every error maps to a code and a verdict without panicking.
            let _ = (
                err.code(),
                err.closes_connection(),
                err.request_id(),
                err.to_string(),
            );
        }
    }
}

/// Valid frames to mutate: a spread of requests and responses.
fn seeds() -> Vec<Vec<u8>> {
    let limits = FrameLimits::default();
    let mut frames = Vec::new();
    let requests = [
        Request::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: "smoke".into(),
            token: Some("secret".into()),
        }),
        Request::ListTopics,
        Request::Produce(Produce {
            topic: "orders".into(),
            partitioning: Partitioning::Key,
            expected_offset: Some(1 << 40),
            events: vec![
                WireEvent {
                    timestamp_ms: Some(1_764_064_800_000),
                    key: Some(b"customer-7".to_vec()),
                    headers: vec![("trace".into(), b"abc".to_vec())],
                    value: vec![7; 300].into(),
                },
                WireEvent {
                    value: b"second".to_vec().into(),
                    ..WireEvent::default()
                },
            ],
        }),
        Request::Read(Read {
            topic: "orders".into(),
            partition: 3,
            from: ReadFrom::TimeMs(1_764_064_800_000),
            max_events: 1000,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
        }),
        Request::Fetch(Fetch {
            group: "billing".into(),
            topic: "orders".into(),
            settings: ConsumerSettings::default(),
            wait_ms: 1000,
        }),
        Request::Nack(Nack {
            group: "billing".into(),
            topic: "orders".into(),
            partition: 1,
            batch_id: 99,
            delay_ms: 250,
            reason: Some("downstream timeout".into()),
        }),
        Request::ResetGroup(ResetGroup {
            group: "billing".into(),
            topic: "orders".into(),
            partition: Some(2),
            to: ResetTo::Offset(12),
        }),
    ];
    for (id, request) in requests.iter().enumerate() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, id as u64 + 1, request, &limits).unwrap();
        frames.push(frame);
    }
    let responses = [
        Response::error(ErrorCode::UnknownTopic, "no topic \"x\""),
        Response::Read(ReadResult {
            partition: 0,
            first_offset: 5,
            next_offset: 7,
            end_offset: 9,
            events: Events::LogFrames(LogFrames {
                bytes: vec![0x5A; 200],
                skip: 1,
                count: 2,
            }),
        }),
        Response::Fetched(Some(Batch {
            partition: 2,
            batch_id: 17,
            first_offset: 100,
            attempt: 2,
            close_reason: CloseReason::TailWait,
            lease_expires_ms: 1_764_064_830_000,
            events: Events::Decoded(vec![Event {
                offset: 100,
                timestamp_ms: 1,
                key: None,
                headers: vec![("h".into(), vec![1, 2])],
                value: b"v".to_vec(),
            }]),
        })),
        Response::Group(GroupDescription {
            group: "billing".into(),
            partitions: vec![GroupPartition {
                topic: "orders".into(),
                partition: 0,
                committed_offset: 10,
                end_offset: 20,
                lag_events: 10,
                lag_ms: 1500,
                active: true,
                in_flight: 1,
                oldest_unacked_age_ms: Some(30),
                redeliveries: 2,
                dead_letters: 0,
            }],
        }),
        Response::Produced(Produced::from_positions(&[(0, 10), (0, 11), (1, 4)])),
    ];
    for (id, response) in responses.iter().enumerate() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, id as u64 + 100, response, &limits).unwrap();
        frames.push(frame);
    }
    frames
}

/// Mutates a valid frame. Half the mutations rewrite the header's CRC afterwards so that the
/// body decoder (not only the CRC check) sees the damage.
fn mutate(rng: &mut fastrand::Rng, frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    let mutations = rng.usize(1..=4);
    for _ in 0..mutations {
        match rng.u8(0..7) {
            0 if !out.is_empty() => {
                let at = rng.usize(..out.len());
                out[at] ^= 1 << rng.u8(0..8);
            }
            1 if !out.is_empty() => {
                let at = rng.usize(..out.len());
                out[at] = rng.u8(..);
            }
            2 => out.truncate(rng.usize(..=out.len())),
            3 => {
                let at = rng.usize(..=out.len());
                let extra: Vec<u8> = (0..rng.usize(1..16)).map(|_| rng.u8(..)).collect();
                out.splice(at..at, extra);
            }
            4 if out.len() > FRAME_HEADER_LEN => {
                let at = rng.usize(FRAME_HEADER_LEN..out.len());
                let end = rng.usize(at..=out.len());
                out.drain(at..end);
            }
            5 if out.len() >= 8 => {
                // An interesting length: 0, tiny, huge, or off by a little.
                let body_len = match rng.u8(0..4) {
                    0 => 0u32,
                    1 => rng.u32(1..64),
                    2 => u32::MAX - rng.u32(0..4),
                    _ => (out.len().saturating_sub(FRAME_HEADER_LEN) as u32)
                        .wrapping_add(rng.u32(0..3))
                        .wrapping_sub(1),
                };
                out[4..8].copy_from_slice(&body_len.to_le_bytes());
            }
            _ => {
                // Bytes after the header replaced by random ones.
                for byte in out.iter_mut().skip(FRAME_HEADER_LEN) {
                    if rng.u8(0..8) == 0 {
                        *byte = rng.u8(..);
                    }
                }
            }
        }
    }
    if rng.bool() && out.len() >= FRAME_HEADER_LEN {
        // Rewrite the header around the (damaged) body so the CRC holds again.
        let body = out[FRAME_HEADER_LEN..].to_vec();
        let request_id = u64::from_le_bytes(out[8..16].try_into().unwrap());
        out.clear();
        encode_raw_frame(&mut out, request_id, &body);
    }
    out
}

#[test]
fn decoder_survives_random_and_mutated_inputs() {
    let inputs = env_u64("WEIR_PROTO_SMOKE_INPUTS", 100_000);
    let seed = env_u64("WEIR_PROTO_SMOKE_SEED", 0x5EED_F4E1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let seeds = seeds();
    let small = FrameLimits::new(FRAME_BYTES_MIN).unwrap();
    let default = FrameLimits::default();
    let mut outcomes = Outcomes::default();
    let mut target_decoded = 0u64;
    let started = std::time::Instant::now();

    for i in 0..inputs {
        let input = match i % 4 {
            // Pure noise, sometimes behind a valid magic and version.
            0 => {
                let mut noise: Vec<u8> = (0..rng.usize(0..96)).map(|_| rng.u8(..)).collect();
                if rng.bool() && noise.len() >= 4 {
                    noise[..4].copy_from_slice(&[0x57, 0x50, 0x01, 0x00]);
                }
                noise
            }
            // An intact frame around a random body: exercises the body decoder.
            1 => {
                let body: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
                let mut frame = Vec::new();
                encode_raw_frame(&mut frame, rng.u64(..), &body);
                frame
            }
            // Mutated valid frames.
            _ => {
                let seed_frame = &seeds[rng.usize(..seeds.len())];
                mutate(&mut rng, seed_frame)
            }
        };
        let limits = if rng.u8(0..8) == 0 { &small } else { &default };
        check::<Request>(&input, limits, &mut outcomes);
        check::<Response>(&input, limits, &mut outcomes);
        // The fuzz target's own body on the same bytes, as a stream (and, for noise, as the
        // body of an intact frame).
        let mode = if i % 4 == 0 && rng.bool() {
            weir_proto::fuzzing::BODY_ONLY
        } else {
            0
        };
        let selector = mode | u8::from(std::ptr::eq(limits, &small));
        let mut target_input = Vec::with_capacity(input.len() + 1);
        target_input.push(selector);
        target_input.extend_from_slice(&input);
        let verdict =
            std::panic::catch_unwind(|| weir_proto::fuzzing::frame_decoder(&target_input))
                .unwrap_or_else(|panic| {
                    let hex: String = target_input.iter().map(|b| format!("{b:02x}")).collect();
                    eprintln!("frame_decoder: input {i} of seed {seed:#x} failed; bytes: {hex}");
                    std::panic::resume_unwind(panic)
                });
        target_decoded += verdict.decoded;
    }

    // The seeds themselves decode, and the run reached every branch that matters.
    for seed_frame in &seeds {
        let request = decode_frame::<Request>(seed_frame, &default);
        let response = decode_frame::<Response>(seed_frame, &default);
        assert!(matches!(request, Ok(Some(_))) || matches!(response, Ok(Some(_))));
    }
    println!(
        "{inputs} inputs (seed {seed:#x}) in {:?}: {outcomes:?}",
        started.elapsed()
    );
    assert!(outcomes.decoded > 0, "{outcomes:?}");
    assert!(target_decoded > 0, "the fuzz target's body decoded nothing");
    assert!(outcomes.incomplete > 0, "{outcomes:?}");
    for kind in [
        "bad_magic",
        "bad_crc",
        "too_large",
        "zero_length",
        "unknown_kind",
        "malformed",
    ] {
        assert!(
            outcomes.errors.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {outcomes:?}"
        );
    }
}
