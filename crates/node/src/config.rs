//! [`NodeConfig`]: every setting of `weir serve`, with documented defaults. Sources, from
//! lowest to highest precedence: the defaults, a TOML file (`--config`), environment variables
//! (`WEIR_*`), command-line flags. Validation names the bad field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The largest `node_buffer_bytes_max` (1 TiB): far more than any machine, and small enough
/// for the budget's counters.
const NODE_BUFFER_BYTES_LIMIT: u64 = 1 << 40;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The data directory. Default `./weir-data`.
    pub data_dir: PathBuf,
    /// The data listener. Default `127.0.0.1:7450` (loopback only).
    pub listen: SocketAddr,
    /// The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`). Default `127.0.0.1:7451`.
    pub admin_listen: Option<SocketAddr>,
    /// A token clients must present in the handshake. Default none (no authentication).
    pub token: Option<String>,
    /// The largest frame accepted, header included. Default 16 MiB.
    pub frame_bytes_max: u32,
    /// A frame must arrive whole within this time of its first byte. Default 30 s.
    pub frame_timeout_ms: u64,
    /// A connection with no frame for this long is closed. Default 300 s.
    pub idle_timeout_ms: u64,
    /// The handshake must arrive within this time of connecting. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// A response must be written within this time, or the connection is closed. Default 10 s.
    pub write_timeout_ms: u64,
    /// Connections served at once; more are refused at once. Default 1024.
    pub connections_max: u32,
    /// Requests in flight per connection; more get `too_many_in_flight`. Default 128.
    pub in_flight_max: u32,
    /// Bytes of buffers one connection may hold: request frames being read or in flight, and
    /// responses being made or waiting to be written. A connection at its limit is not read,
    /// and its reads and fetches wait, until it drains (`docs/protocol.md`, "Limits"). At least
    /// `frame_bytes_max`. Default 16 MiB.
    pub connection_buffer_bytes_max: u64,
    /// Bytes of buffers all connections together may hold. Half of it is set aside in equal
    /// parts for each of `connections_max` connections (64 KiB each by default), so that a
    /// small request or response is never held up by other connections; the other half is
    /// shared. At least 2 × `connection_buffer_bytes_max`. Default 128 MiB.
    pub node_buffer_bytes_max: u64,
    /// Longest long-poll wait a request may ask for. Default 60 s.
    pub wait_max_ms: u64,
    /// The largest event, encoded. Default 1 MiB.
    pub event_bytes_max: u32,
    /// Log format on stderr. Default pretty.
    pub log_format: LogFormat,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("weir-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7450)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7451))),
            token: None,
            frame_bytes_max: weir_proto::FRAME_BYTES_DEFAULT,
            frame_timeout_ms: 30_000,
            idle_timeout_ms: 300_000,
            handshake_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            connections_max: 1024,
            in_flight_max: 128,
            connection_buffer_bytes_max: 16 << 20,
            node_buffer_bytes_max: 128 << 20,
            wait_max_ms: 60_000,
            event_bytes_max: 1 << 20,
            log_format: LogFormat::Pretty,
        }
    }
}

/// A configuration problem: which field, and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl NodeConfig {
    /// Reads a TOML file over the defaults.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file problem or the bad field.
    pub fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError {
            field: error.span().map_or_else(
                || "file".to_string(),
                |span| format!("file at bytes {span:?}"),
            ),
            reason: error.message().to_string(),
        })
    }

    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| {
            Err(ConfigError {
                field: field.to_string(),
                reason,
            })
        };
        if let Err(error) = weir_proto::FrameLimits::new(self.frame_bytes_max) {
            return bad("frame_bytes_max", error.to_string());
        }
        for (field, value) in [
            ("frame_timeout_ms", self.frame_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1 ms".into());
            }
        }
        if self.connections_max == 0 {
            return bad("connections_max", "must be at least 1".into());
        }
        if self.in_flight_max == 0 {
            return bad("in_flight_max", "must be at least 1".into());
        }
        if self.connection_buffer_bytes_max < u64::from(self.frame_bytes_max) {
            return bad(
                "connection_buffer_bytes_max",
                format!(
                    "{} is less than frame_bytes_max {}: a connection must be able to hold one \
                     frame",
                    self.connection_buffer_bytes_max, self.frame_bytes_max
                ),
            );
        }
        if self.node_buffer_bytes_max / 2 < self.connection_buffer_bytes_max {
            return bad(
                "node_buffer_bytes_max",
                format!(
                    "{} is less than twice connection_buffer_bytes_max {}: the shared half \
                     must hold one connection's buffers",
                    self.node_buffer_bytes_max, self.connection_buffer_bytes_max
                ),
            );
        }
        if self.node_buffer_bytes_max > NODE_BUFFER_BYTES_LIMIT {
            return bad(
                "node_buffer_bytes_max",
                format!(
                    "{} is more than {NODE_BUFFER_BYTES_LIMIT}",
                    self.node_buffer_bytes_max
                ),
            );
        }
        if self.token.as_deref() == Some("") {
            return bad(
                "token",
                "must not be empty (leave it unset for no authentication)".into(),
            );
        }
        if u64::from(self.event_bytes_max) + 1024 > u64::from(self.frame_bytes_max) {
            return bad(
                "event_bytes_max",
                format!(
                    "{} does not fit in a frame of frame_bytes_max {}",
                    self.event_bytes_max, self.frame_bytes_max
                ),
            );
        }
        Ok(())
    }

    pub(crate) fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &NodeConfig) -> Option<String> {
        config.validate().err().map(|error| error.field)
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(NodeConfig::default().validate().is_ok());
    }

    #[test]
    fn buffers_hold_a_frame_per_connection_and_two_connections_in_the_pool() {
        let mut config = NodeConfig::default();
        config.connection_buffer_bytes_max = u64::from(config.frame_bytes_max) - 1;
        assert_eq!(
            field_of(&config).as_deref(),
            Some("connection_buffer_bytes_max")
        );
        let mut config = NodeConfig::default();
        config.node_buffer_bytes_max = 2 * config.connection_buffer_bytes_max - 1;
        assert_eq!(field_of(&config).as_deref(), Some("node_buffer_bytes_max"));
        config.node_buffer_bytes_max += 1;
        assert_eq!(field_of(&config), None);
    }

    #[test]
    fn buffer_limits_come_from_the_file() {
        let config = NodeConfig::from_toml(
            "connection_buffer_bytes_max = 33554432\nnode_buffer_bytes_max = 268435456\n",
        )
        .expect("parses");
        assert_eq!(config.connection_buffer_bytes_max, 32 << 20);
        assert_eq!(config.node_buffer_bytes_max, 256 << 20);
    }
}
