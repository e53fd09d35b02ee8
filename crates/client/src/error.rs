//! The client's error type: connection failures, protocol violations, and the server's errors
//! by their stable codes.

use weir_proto::{ErrorCode, FrameError, OffsetRange};

/// weir-client's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),

    /// The node sent bytes that are not a valid frame (or a frame could not be encoded).
    #[error("protocol error: {0}")]
    Protocol(#[from] FrameError),

    /// The node answered with an error.
    #[error("{message} ({})", code.name())]
    Server {
        /// The stable error code (see `docs/protocol.md`).
        code: ErrorCode,
        /// The node's message.
        message: String,
        /// The partition's offsets, for `offset_out_of_range` and `unexpected_offset`.
        offsets: Option<OffsetRange>,
    },

    /// The node answered with a response of the wrong kind for the request.
    #[error("unexpected response: {0}")]
    Unexpected(&'static str),

    /// Events shipped as log frames failed their checks (CRC, structure, offsets).
    #[error("corrupt events in a response: {0}")]
    CorruptEvents(String),

    /// The connection is closed; [`crate::Client::reconnect`] opens a new one.
    #[error("the connection is closed")]
    Closed,

    /// No response within the request timeout.
    #[error("no response within the request timeout")]
    Timeout,
}

impl Error {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}
