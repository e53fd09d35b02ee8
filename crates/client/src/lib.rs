//! weir-client: the tokio client for a weir node. Its producer, consumer (batches, ack, nack),
//! replay and admin calls mirror weir-store's, so moving from embedded to remote is a change
//! of constructor. Requests are pipelined on one connection (each carries a request id;
//! responses may come back in any order), errors map to typed variants by their stable wire
//! codes, and [`Client::reconnect`] opens a fresh connection when asked.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_client::{Client, ClientConfig, ConsumerSettings, Partitioning, Record};
//!
//! # async fn example() -> Result<(), weir_client::Error> {
//! let client = Client::connect("127.0.0.1:7450", ClientConfig::default()).await?;
//! client.create_topic("orders", 4, Default::default()).await?;
//! client.append("orders", vec![Record::new("created").key("order-7")], Partitioning::Key).await?;
//! let consumer = client.consumer("billing", "orders", ConsumerSettings::default());
//! if let Some(batch) = consumer.next_batch(Duration::from_secs(1)).await? {
//!     consumer.ack(&batch).await?;
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod client;
mod connection;
mod error;

pub use crate::client::{Batch, Client, ClientConfig, Consumer, ReadResult, Record, Replay};
pub use crate::error::{Error, Result};
pub use weir_proto::{
    CloseReason, ConsumerSettings, ErrorCode, Event, GroupDescription, GroupPartition, Limit,
    Partitioning, ReadFrom, ResetTo, ServerInfo, SyncPolicy, TopicDescription, TopicSettings,
    TopicSummary,
};
