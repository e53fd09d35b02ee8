//! The body codec: the only module that touches bincode (pinned `=2.0.1`, see `deny.toml`),
//! so replacing it changes this file alone.
//!
//! Bodies use bincode's *standard* configuration — little-endian, variable-length integers —
//! with a decode limit of [`FRAME_BYTES_HARD_MAX`]; `docs/protocol.md` ("Body encoding")
//! spells out what that means byte by byte, and the golden-bytes tests below pin it.
//!
//! Invariants kept here:
//! - a body decodes to exactly one message and nothing after it (trailing bytes are an error);
//! - a body whose kind number (its leading variant index) is not one this version knows is
//!   reported as such, distinct from a malformed body, so that it can be answered;
//! - decoding allocates only for bytes that are there: byte strings and text go through the
//!   borrowing adapters of `adapters.rs`, and sequences preallocate at most serde's cautious
//!   1 MiB before their elements arrive.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::enc::write::Writer;
use bincode::error::EncodeError;

use crate::config::FRAME_BYTES_HARD_MAX;
use crate::message::Message;

type BodyConfig = Configuration<LittleEndian, Varint, Limit<{ FRAME_BYTES_HARD_MAX as usize }>>;

const CONFIG: BodyConfig = bincode::config::standard()
    .with_little_endian()
    .with_variable_int_encoding()
    .with_limit::<{ FRAME_BYTES_HARD_MAX as usize }>();

/// Why a body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// The body's kind number is not one this version knows.
    UnknownKind(u32),
    /// The body is not a valid message; bincode's error text, or trailing bytes.
    Malformed(String),
}

/// Appends bincode straight to the output buffer (no intermediate `Vec`).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends the encoded `message` to `out`.
///
/// # Errors
/// bincode's error text (none of this crate's messages can fail to encode).
pub(crate) fn encode_body<M: Message>(out: &mut Vec<u8>, message: &M) -> Result<(), String> {
    bincode::serde::encode_into_writer(message, VecWriter(out), CONFIG).map_err(|e| e.to_string())
}

/// Decodes one whole `body`.
///
/// # Errors
/// [`BodyError::UnknownKind`] for a kind number this version does not know, otherwise
/// [`BodyError::Malformed`].
pub(crate) fn decode_body<M: Message>(body: &[u8]) -> Result<M, BodyError> {
    let (kind, _) = bincode::serde::decode_from_slice::<u32, _>(body, CONFIG)
        .map_err(|e| BodyError::Malformed(format!("reading the message kind: {e}")))?;
    if kind >= M::KINDS {
        return Err(BodyError::UnknownKind(kind));
    }
    let (message, used) = bincode::serde::decode_from_slice::<M, _>(body, CONFIG)
        .map_err(|e| BodyError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(BodyError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    debug_assert_eq!(message.kind(), kind);
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::ErrorCode;
    use crate::request::*;
    use crate::response::*;

    fn encode<M: Message>(message: &M) -> Vec<u8> {
        let mut out = Vec::new();
        encode_body(&mut out, message).unwrap();
        out
    }

    #[test]
    fn golden_produce_request() {
        // docs/protocol.md, "Example: a Produce body".
        let request = Request::Produce(Produce {
            topic: "t".into(),
            partitioning: Partitioning::Partition(2),
            expected_offset: Some(300),
            events: vec![WireEvent {
                timestamp_ms: None,
                key: Some(b"k".to_vec()),
                headers: vec![("h".into(), vec![0xAA])],
                value: b"hi".to_vec().into(),
            }],
        });
        let expected: &[u8] = &[
            0x06, // kind 6: Produce
            0x01, b't', // topic: length 1, "t"
            0x02, 0x02, // partitioning: variant 2 (Partition), 2
            0x01, 0xFB, 0x2C, 0x01, // expected_offset: Some, 300 as 0xFB + u16 LE
            0x01, // events: 1
            0x00, // timestamp_ms: None
            0x01, 0x01, b'k', // key: Some, length 1, "k"
            0x01, 0x01, b'h', 0x01, 0xAA, // headers: 1, name "h", value [AA]
            0x02, b'h', b'i', // value: length 2, "hi"
        ];
        assert_eq!(encode(&request), expected);
        assert_eq!(decode_body::<Request>(expected).unwrap(), request);
    }

    #[test]
    fn golden_hello_request() {
        let request = Request::Hello(Hello {
            protocol_version: 1,
            client_name: "cli".into(),
            token: None,
        });
        let expected: &[u8] = &[0x00, 0x01, 0x03, b'c', b'l', b'i', 0x00];
        assert_eq!(encode(&request), expected);
        assert_eq!(decode_body::<Request>(expected).unwrap(), request);
    }

    #[test]
    fn golden_error_response() {
        // docs/protocol.md, "Example: an Error body".
        let response = Response::Error(ErrorResponse {
            code: ErrorCode::UnexpectedOffset,
            message: "end 7".into(),
            offsets: Some(OffsetRange {
                start_offset: 0,
                end_offset: 7,
            }),
        });
        let expected: &[u8] = &[
            0x00, // kind 0: Error
            0x69, // code 105 (unexpected_offset), one varint byte
            0x05, b'e', b'n', b'd', b' ', b'7', // message
            0x01, 0x00, 0x07, // offsets: Some, start 0, end 7
        ];
        assert_eq!(encode(&response), expected);
        assert_eq!(decode_body::<Response>(expected).unwrap(), response);
    }

    #[test]
    fn golden_produced_response() {
        // Events 0-1 to partition 3 at 500, 501; event 2 to partition 0 at 7.
        let response = Response::Produced(Produced::from_positions(&[(3, 500), (3, 501), (0, 7)]));
        let expected: &[u8] = &[
            0x07, // kind 7: Produced
            0x02, // ranges: 2
            0x03, 0xFB, 0xF4, 0x01, 0x02, // partition 3, first_offset 500, count 2
            0x00, 0x07, 0x01, // partition 0, first_offset 7, count 1
        ];
        assert_eq!(encode(&response), expected);
        let Response::Produced(produced) = decode_body::<Response>(expected).unwrap() else {
            panic!("not produced");
        };
        assert_eq!(produced.event_count(), 3);
        assert_eq!(
            produced.positions().collect::<Vec<_>>(),
            [(3, 500), (3, 501), (0, 7)]
        );
    }

    #[test]
    fn golden_read_response_with_log_frames() {
        let response = Response::Read(ReadResult {
            partition: 1,
            first_offset: 10,
            next_offset: 12,
            end_offset: 1000,
            events: Events::LogFrames(LogFrames {
                bytes: vec![1, 2, 3],
                skip: 1,
                count: 2,
            }),
        });
        let expected: &[u8] = &[
            0x08, // kind 8: Read
            0x01, 0x0A, 0x0C, // partition 1, first_offset 10, next_offset 12
            0xFB, 0xE8, 0x03, // end_offset 1000
            0x00, // events: variant 0, LogFrames
            0x03, 0x01, 0x02, 0x03, // bytes
            0x01, 0x02, // skip 1, count 2
        ];
        assert_eq!(encode(&response), expected);
        assert_eq!(decode_body::<Response>(expected).unwrap(), response);
    }

    #[test]
    fn kind_numbers_are_the_leading_variant_index() {
        let requests = [
            Request::Hello(Hello {
                protocol_version: 1,
                client_name: String::new(),
                token: Some("s".into()),
            }),
            Request::ServerInfo,
            Request::CreateTopic(CreateTopic {
                topic: "t".into(),
                partitions: 3,
                settings: TopicSettings::default(),
            }),
            Request::ListTopics,
            Request::DescribeTopic { topic: "t".into() },
            Request::DeleteTopic { topic: "t".into() },
            Request::Produce(Produce {
                topic: "t".into(),
                partitioning: Partitioning::Key,
                expected_offset: None,
                events: vec![],
            }),
            Request::Read(Read {
                topic: "t".into(),
                partition: 0,
                from: ReadFrom::Earliest,
                max_events: 1,
                max_bytes: 1,
                max_wait_ms: 0,
            }),
            Request::Fetch(Fetch {
                group: "g".into(),
                topic: "t".into(),
                settings: ConsumerSettings::default(),
                wait_ms: 0,
            }),
            Request::Ack(Ack {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                batch_id: 1,
            }),
            Request::Nack(Nack {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                batch_id: 1,
                delay_ms: 0,
                reason: None,
            }),
            Request::ListGroups,
            Request::DescribeGroup { group: "g".into() },
            Request::ResetGroup(ResetGroup {
                group: "g".into(),
                topic: "t".into(),
                partition: None,
                to: ResetTo::Latest,
            }),
            Request::DeleteGroup { group: "g".into() },
        ];
        assert_eq!(requests.len() as u32, Request::KINDS);
        for (index, request) in requests.iter().enumerate() {
            assert_eq!(request.kind(), index as u32);
            let body = encode(request);
            assert_eq!(u32::from(body[0]), request.kind(), "{request:?}");
            assert_eq!(&decode_body::<Request>(&body).unwrap(), request);
        }

        let responses = [
            Response::error(ErrorCode::Internal, "x"),
            Response::Welcome(Welcome {
                protocol_version: 1,
                server_version: "weir 0.1.0".into(),
                frame_bytes_max: 16 << 20,
                in_flight_max: 128,
                idle_timeout_ms: 300_000,
            }),
            Response::ServerInfo(ServerInfo {
                server_version: "weir".into(),
                protocol_version: 1,
                started_ms: 5,
                connections: 1,
                topic_count: 0,
            }),
            Response::TopicCreated,
            Response::Topics(vec![]),
            Response::Topic(TopicDescription {
                topic: "t".into(),
                settings: TopicSettings::default(),
                created_ms: 0,
                partitions: vec![],
            }),
            Response::TopicDeleted,
            Response::Produced(Produced::from_positions(&[(0, 0)])),
            Response::Read(ReadResult {
                partition: 0,
                first_offset: 0,
                next_offset: 0,
                end_offset: 0,
                events: Events::empty(),
            }),
            Response::Fetched(None),
            Response::Acked,
            Response::Nacked,
            Response::Groups(vec![]),
            Response::Group(GroupDescription {
                group: "g".into(),
                partitions: vec![],
            }),
            Response::GroupReset(vec![]),
            Response::GroupDeleted,
        ];
        assert_eq!(responses.len() as u32, Response::KINDS);
        for (index, response) in responses.iter().enumerate() {
            assert_eq!(response.kind(), index as u32);
            let body = encode(response);
            assert_eq!(u32::from(body[0]), response.kind(), "{response:?}");
            assert_eq!(&decode_body::<Response>(&body).unwrap(), response);
        }
    }

    #[test]
    fn unknown_kinds_are_told_apart_from_garbage() {
        assert_eq!(
            decode_body::<Request>(&[15]),
            Err(BodyError::UnknownKind(15))
        );
        assert_eq!(
            decode_body::<Request>(&[0xFB, 0x10, 0x27]),
            Err(BodyError::UnknownKind(10_000))
        );
        assert_eq!(
            decode_body::<Response>(&[16]),
            Err(BodyError::UnknownKind(16))
        );
        // A known kind with a truncated payload, or bytes after the message.
        assert!(matches!(
            decode_body::<Request>(&[4, 5, b'a']),
            Err(BodyError::Malformed(_))
        ));
        let Err(BodyError::Malformed(reason)) = decode_body::<Request>(&[1, 0]) else {
            panic!("trailing byte accepted");
        };
        assert!(reason.contains("1 trailing bytes"), "{reason}");
        assert!(matches!(
            decode_body::<Request>(&[]),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn booleans_other_than_0_and_1_are_malformed() {
        let describe = |active| {
            Response::Group(GroupDescription {
                group: "g".into(),
                partitions: vec![GroupPartition {
                    topic: "t".into(),
                    active,
                    ..GroupPartition::default()
                }],
            })
        };
        let (yes, no) = (encode(&describe(true)), encode(&describe(false)));
        let at: Vec<usize> = (0..yes.len()).filter(|&i| yes[i] != no[i]).collect();
        assert_eq!(at.len(), 1);
        assert_eq!((yes[at[0]], no[at[0]]), (1, 0));
        let mut two = yes.clone();
        two[at[0]] = 2;
        assert!(matches!(
            decode_body::<Response>(&two),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_error_codes_decode() {
        let body = [0x00, 0xFB, 0xE7, 0x03, 0x00, 0x00]; // code 999, empty message, no offsets
        let Response::Error(error) = decode_body::<Response>(&body).unwrap() else {
            panic!("not an error");
        };
        assert_eq!(error.code, ErrorCode::Unknown(999));
    }

    #[test]
    fn claimed_lengths_past_the_body_are_rejected() {
        // DescribeTopic whose topic claims 2^40 bytes; and a value claiming 100 MiB.
        let body = [4, 0xFD, 0, 0, 0, 0, 0, 1, 0, 0, b'x'];
        assert!(matches!(
            decode_body::<Request>(&body),
            Err(BodyError::Malformed(_))
        ));
        let mut produce = vec![6, 1, b't', 1, 0, 1, 0, 0, 0];
        produce.extend_from_slice(&[0xFC, 0, 0, 0x40, 0x06]); // value length ~100 MiB
        assert!(matches!(
            decode_body::<Request>(&produce),
            Err(BodyError::Malformed(_))
        ));
    }
}
