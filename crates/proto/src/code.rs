//! [`ErrorCode`]: the stable numbers carried by [`crate::ErrorResponse`].
//!
//! Invariants kept here: every code's number is written once, in the table below, and is the
//! code's `#[repr(u16)]` discriminant; a number is never reused, even after its code is
//! retired; a number this version does not know decodes to [`ErrorCode::Unknown`] (carrying the
//! number) rather than failing the whole response, so an older client can still report an error
//! from a newer node. `docs/protocol.md` holds the same table.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $name:ident = $number:literal => $text:literal,)*) => {
        /// Why a request failed (or a connection is being closed), as a stable number.
        ///
        /// On the wire a code is its number, a `u16`. See `docs/protocol.md`, "Error codes".
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name = $number,)*
            /// A number this version does not know (sent by a newer peer). Treat it like
            /// [`ErrorCode::Internal`]: the request failed, and the message says why.
            Unknown(u16) = 0,
        }

        impl ErrorCode {
            /// Every code this version knows, in number order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code's number on the wire.
            pub const fn as_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $number,)*
                    ErrorCode::Unknown(number) => number,
                }
            }

            /// The code with this number; [`ErrorCode::Unknown`] for a number this version
            /// does not know.
            pub const fn from_u16(number: u16) -> ErrorCode {
                match number {
                    $($number => ErrorCode::$name,)*
                    unknown => ErrorCode::Unknown(unknown),
                }
            }

            /// The code's stable name (`snake_case`), for logs, metrics and the CLI;
            /// `"unknown"` for an unknown number.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                    ErrorCode::Unknown(_) => "unknown",
                }
            }
        }
    };
}

error_codes! {
    // ---- 1..=99: the connection and its frames -------------------------------------------
    /// A frame could not be decoded: bad magic, reserved flags set, a zero length, a bad CRC,
    /// or a body that is not a valid message. The node closes the connection after sending it.
    MalformedFrame = 1 => "malformed_frame",
    /// A frame's length is over the receiver's `frame_bytes_max`; the body was not read. The
    /// node closes the connection after sending it. Also sent for a response that would be too
    /// large to send (the request is refused; the connection stays open).
    FrameTooLarge = 2 => "frame_too_large",
    /// The frame version or the `Hello`'s protocol version is not supported. The node closes
    /// the connection after sending it.
    UnsupportedVersion = 3 => "unsupported_version",
    /// A request other than `Hello` arrived before the handshake completed. The node closes
    /// the connection after sending it.
    HandshakeRequired = 4 => "handshake_required",
    /// The `Hello`'s token is missing or wrong. The node closes the connection after sending it.
    Unauthorized = 5 => "unauthorized",
    /// The request's kind is not one the node knows (a newer client). The connection stays
    /// open: the frame was intact, only its kind is unknown.
    UnknownRequest = 6 => "unknown_request",
    /// The node is at its connection cap. Sent with request id 0, then the connection closes.
    TooManyConnections = 7 => "too_many_connections",
    /// The connection already has `in_flight_max` requests in flight; this one was not started.
    TooManyInFlight = 8 => "too_many_in_flight",
    /// The node is shutting down; the request was not started. In-flight requests finish.
    ShuttingDown = 9 => "shutting_down",
    /// The connection was idle past the idle timeout, or a frame did not arrive whole within the
    /// per-frame read deadline. Sent with request id 0, then the connection closes.
    Timeout = 10 => "timeout",

    // ---- 100..=199: the request's arguments -------------------------------------------------
    /// An argument is invalid: a bad topic or group name, a bad setting, an empty produce,
    /// contradictory options. The message names the field.
    InvalidArgument = 100 => "invalid_argument",
    /// `CreateTopic` for a topic that exists.
    TopicExists = 101 => "topic_exists",
    /// The topic does not exist.
    UnknownTopic = 102 => "unknown_topic",
    /// The partition number is not below the topic's partition count.
    PartitionOutOfRange = 103 => "partition_out_of_range",
    /// The offset is before the partition's start or after its end; `offsets` holds the range.
    OffsetOutOfRange = 104 => "offset_out_of_range",
    /// `expected_offset` did not equal the partition's end offset; nothing was appended.
    /// `offsets` holds the partition's range, so the actual end is `offsets.end_offset`.
    UnexpectedOffset = 105 => "unexpected_offset",
    /// An event is larger than the node's `event_bytes_max`; nothing was appended.
    EventTooLarge = 106 => "event_too_large",
    /// The produce holds more events or bytes than one append may; nothing was appended.
    AppendTooLarge = 107 => "append_too_large",
    /// The consumer group does not exist.
    UnknownGroup = 108 => "unknown_group",
    /// No batch with this id was delivered on this partition (or it is too old to remember).
    UnknownBatch = 109 => "unknown_batch",
    /// The batch's lease ran out and the batch was redelivered; its new holder settles it.
    BatchExpired = 110 => "batch_expired",
    /// The batch was already acknowledged, nacked or dead-lettered through this id.
    BatchAlreadySettled = 111 => "batch_already_settled",
    /// A group reset or delete while the group has consumers open on the node.
    GroupActive = 112 => "group_active",
    /// A fetch whose batch settings differ from those the group's open consumer runs with.
    GroupSettingsMismatch = 113 => "group_settings_mismatch",

    // ---- 200..=299: the node and its storage --------------------------------------------------
    /// A read, write or fsync failed on the node; the message names the operation and path.
    StorageIo = 200 => "storage_io",
    /// The node found corrupt data (the message names the file and byte position).
    Corruption = 201 => "corruption",
    /// The partition is poisoned after a failed write or fsync, or otherwise unavailable,
    /// until the node reopens and recovers it.
    Unavailable = 202 => "unavailable",
    /// A bug in the node; the message says what.
    Internal = 203 => "internal",
    /// The node's disk is full: nothing of the request was acknowledged and the partition stays
    /// writable; retry once space is freed. A produce spanning partitions may have written
    /// those before the one that did not fit (a retry can repeat them, as after a lost ack).
    StorageFull = 204 => "storage_full",
    /// The partition's acknowledged data is damaged (the message names the file and byte
    /// position): it serves reads below the damage and takes no appends until an operator runs
    /// `weir repair`. Other partitions are not affected.
    Damaged = 205 => "damaged",
    /// The read started at events lost to damage (`weir repair` replaced them with a marker);
    /// `offsets` holds the lost range: read on from its end.
    EventsLost = 206 => "events_lost",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.as_u16())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(ErrorCode::from_u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ErrorCode::ALL {
            let number = code.as_u16();
            assert_ne!(number, 0, "0 is never a code");
            assert!(seen.insert(number), "{number} used twice");
            assert_eq!(ErrorCode::from_u16(number), code);
        }
        assert!(seen
            .iter()
            .copied()
            .eq(ErrorCode::ALL.iter().map(|c| c.as_u16())));
    }

    #[test]
    fn the_numbers_are_the_documented_ones() {
        // Pinned: a change here breaks every deployed client. Add codes; never renumber.
        let table: &[(ErrorCode, u16, &str)] = &[
            (ErrorCode::MalformedFrame, 1, "malformed_frame"),
            (ErrorCode::FrameTooLarge, 2, "frame_too_large"),
            (ErrorCode::UnsupportedVersion, 3, "unsupported_version"),
            (ErrorCode::HandshakeRequired, 4, "handshake_required"),
            (ErrorCode::Unauthorized, 5, "unauthorized"),
            (ErrorCode::UnknownRequest, 6, "unknown_request"),
            (ErrorCode::TooManyConnections, 7, "too_many_connections"),
            (ErrorCode::TooManyInFlight, 8, "too_many_in_flight"),
            (ErrorCode::ShuttingDown, 9, "shutting_down"),
            (ErrorCode::Timeout, 10, "timeout"),
            (ErrorCode::InvalidArgument, 100, "invalid_argument"),
            (ErrorCode::TopicExists, 101, "topic_exists"),
            (ErrorCode::UnknownTopic, 102, "unknown_topic"),
            (
                ErrorCode::PartitionOutOfRange,
                103,
                "partition_out_of_range",
            ),
            (ErrorCode::OffsetOutOfRange, 104, "offset_out_of_range"),
            (ErrorCode::UnexpectedOffset, 105, "unexpected_offset"),
            (ErrorCode::EventTooLarge, 106, "event_too_large"),
            (ErrorCode::AppendTooLarge, 107, "append_too_large"),
            (ErrorCode::UnknownGroup, 108, "unknown_group"),
            (ErrorCode::UnknownBatch, 109, "unknown_batch"),
            (ErrorCode::BatchExpired, 110, "batch_expired"),
            (ErrorCode::BatchAlreadySettled, 111, "batch_already_settled"),
            (ErrorCode::GroupActive, 112, "group_active"),
            (
                ErrorCode::GroupSettingsMismatch,
                113,
                "group_settings_mismatch",
            ),
            (ErrorCode::StorageIo, 200, "storage_io"),
            (ErrorCode::Corruption, 201, "corruption"),
            (ErrorCode::Unavailable, 202, "unavailable"),
            (ErrorCode::Internal, 203, "internal"),
            (ErrorCode::StorageFull, 204, "storage_full"),
            (ErrorCode::Damaged, 205, "damaged"),
            (ErrorCode::EventsLost, 206, "events_lost"),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for &(code, number, name) in table {
            assert_eq!(code.as_u16(), number);
            assert_eq!(code.name(), name);
        }
    }

    #[test]
    fn unknown_numbers_are_kept() {
        for number in [0, 11, 99, 114, 207, 999, u16::MAX] {
            let code = ErrorCode::from_u16(number);
            assert_eq!(code, ErrorCode::Unknown(number));
            assert_eq!(code.as_u16(), number);
            assert_eq!(code.name(), "unknown");
        }
    }
}
