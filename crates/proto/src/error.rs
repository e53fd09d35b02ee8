//! [`FrameError`], the one error type of weir-proto: what is wrong with a frame read from the
//! wire (and so which [`ErrorCode`] the peer is told, and whether the connection must close),
//! a message that cannot be encoded, or bad limits.

use crate::code::ErrorCode;

/// weir-proto's result type.
pub type Result<T> = std::result::Result<T, FrameError>;

/// Everything that can go wrong encoding or decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first two bytes are not the protocol's magic: the peer does not speak weir.
    #[error("not a weir frame: magic {found:02x?}, expected \"WP\"")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },

    /// The frame's version byte is not one this crate reads.
    #[error("unsupported frame version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },

    /// Reserved flag bits are set.
    #[error("reserved frame flags are set: {flags:#04x}")]
    ReservedFlags {
        /// The flags byte found.
        flags: u8,
    },

    /// The body length is zero; every message has at least one byte (its kind).
    #[error("zero body length")]
    ZeroLength,

    /// The frame is larger than the limit: a header that claims too many bytes (nothing more
    /// was read or allocated), or a message too large to send.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {frame_bytes_max} bytes")]
    TooLarge {
        /// The frame's size, header included.
        frame_bytes: u64,
        /// The limit in force.
        frame_bytes_max: u32,
    },

    /// The CRC does not match the header and body.
    #[error("frame CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },

    /// The frame is intact but its message kind is unknown to this version (a newer peer).
    /// The receiver can answer it: frame boundaries are intact.
    #[error("unknown message kind {kind} (request id {request_id})")]
    UnknownKind {
        /// The frame's request id.
        request_id: u64,
        /// The kind number found.
        kind: u32,
    },

    /// The frame is intact (its CRC holds) but its body is not a valid message.
    #[error("malformed message body (request id {request_id}): {reason}")]
    Malformed {
        /// The frame's request id.
        request_id: u64,
        /// What the decoder found (bincode's error text, or trailing bytes).
        reason: String,
    },

    /// A message could not be encoded (a bug: every message of this crate is encodable).
    #[error("cannot encode message: {reason}")]
    Encode {
        /// The encoder's error text.
        reason: String,
    },

    /// A [`crate::FrameLimits`] field is out of bounds.
    #[error("invalid frame limits field `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl FrameError {
    /// The code to answer this error with (see `docs/protocol.md`, "Reacting to bad frames").
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BadMagic { .. }
            | FrameError::ReservedFlags { .. }
            | FrameError::ZeroLength
            | FrameError::BadCrc { .. }
            | FrameError::Malformed { .. } => ErrorCode::MalformedFrame,
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::UnknownKind { .. } => ErrorCode::UnknownRequest,
            FrameError::Encode { .. } | FrameError::InvalidConfig { .. } => ErrorCode::Internal,
        }
    }

    /// The request id to answer with: the frame's id when its CRC held, so it can be trusted;
    /// `None` otherwise (answer with request id 0, "the connection").
    pub fn request_id(&self) -> Option<u64> {
        match self {
            FrameError::UnknownKind { request_id, .. }
            | FrameError::Malformed { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// Whether a receiver must close the connection after answering this error when decoding.
    /// Only an unknown kind leaves the stream usable: the frame was whole and intact, so the
    /// next frame starts right after it. Everything else means the peer is broken or hostile
    /// (or the stream is out of step), and nothing after it can be trusted.
    pub fn closes_connection(&self) -> bool {
        !matches!(self, FrameError::UnknownKind { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_kinds_keep_the_connection() {
        let unknown = FrameError::UnknownKind {
            request_id: 7,
            kind: 99,
        };
        assert!(!unknown.closes_connection());
        assert_eq!(unknown.code(), ErrorCode::UnknownRequest);
        assert_eq!(unknown.request_id(), Some(7));

        let bad_crc = FrameError::BadCrc {
            stored: 1,
            computed: 2,
        };
        assert!(bad_crc.closes_connection());
        assert_eq!(bad_crc.code(), ErrorCode::MalformedFrame);
        assert_eq!(bad_crc.request_id(), None);

        let too_large = FrameError::TooLarge {
            frame_bytes: u64::from(u32::MAX),
            frame_bytes_max: 16 << 20,
        };
        assert!(too_large.closes_connection());
        assert_eq!(too_large.code(), ErrorCode::FrameTooLarge);
        assert!(too_large.to_string().contains("4294967295"));
    }
}
