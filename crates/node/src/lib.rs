//! weir-node: the storage node behind `weir serve`. It serves a `weir_store::Store` over TCP
//! with the protocol of `docs/protocol.md` (weir-proto), plus an admin HTTP listener for
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! The shape follows tokio's mini-redis: [`run`] takes already-bound listeners and a shutdown
//! future; a listener task accepts connections up to a cap; each connection gets a handler
//! (handshake, then requests answered concurrently up to the in-flight cap, responses written
//! in completion order with their request ids); framing (`connection.rs`) is apart from
//! request semantics (`dispatch.rs`). Every limit of design.md is enforced: frame size before
//! allocation, per-frame deadline, idle timeout, connection cap, in-flight cap, write deadline,
//! token compared in constant time; and the bytes of request and response buffers, per
//! connection and for the node (`buffers.rs`). Memory freed when connections go is given back
//! to the OS (`memory.rs`), and the log lines clients can cause at will are rate-limited
//! (`rate_limit.rs`).
#![deny(missing_docs)]

mod admin;
mod buffers;
pub mod config;
mod connection;
mod dispatch;
mod memory;
mod rate_limit;
mod server;

pub use crate::config::{ConfigError, LogFormat, NodeConfig};
pub use crate::memory::limit_arenas;
pub use crate::server::run;
