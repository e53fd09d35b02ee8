//! [`Message`]: what can travel in a frame — a [`Request`] (client to node) or a [`Response`]
//! (node to client). The trait is sealed: the set of messages is the protocol.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::request::Request;
use crate::response::Response;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Request {}
    impl Sealed for crate::Response {}
}

/// A message of the protocol: [`Request`] or [`Response`].
pub trait Message: Serialize + DeserializeOwned + sealed::Sealed {
    /// How many kinds this version knows; a body whose kind number is not below it is
    /// [`crate::FrameError::UnknownKind`].
    const KINDS: u32;

    /// This message's kind number (its variant index on the wire).
    fn kind(&self) -> u32;

    /// A stable `snake_case` name of this message's kind.
    fn kind_name(&self) -> &'static str;
}

impl Message for Request {
    const KINDS: u32 = Request::KINDS;

    fn kind(&self) -> u32 {
        Request::kind(self)
    }

    fn kind_name(&self) -> &'static str {
        Request::kind_name(self)
    }
}

impl Message for Response {
    const KINDS: u32 = Response::KINDS;

    fn kind(&self) -> u32 {
        Response::kind(self)
    }

    fn kind_name(&self) -> &'static str {
        Response::kind_name(self)
    }
}
