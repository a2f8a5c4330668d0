//! The `LimitsConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// What one connection may do and hold: read by each connection (and by fan-out, for the
/// backlog).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest client message (after reassembly of fragments); larger → close 1009.
    pub max_message_bytes: usize,
    /// Largest number of frames one client message may be split into; more → close 1009.
    pub max_fragments: usize,
    /// Outbound bytes queued for one connection before it counts as a slow consumer.
    pub max_backlog_bytes: usize,
    /// Policy for connections that fall `max_backlog_bytes` behind.
    pub slow_consumer: SlowConsumer,
    /// Messages a connection may send per second on average (token bucket); 0 = unlimited.
    /// Excess messages get an `error` (`rate_limited`); a client that keeps going for a whole
    /// burst's worth of refusals is closed with 1008.
    pub max_messages_per_second: u32,
    /// Bucket size: how many messages may come at once.
    pub message_burst: u32,
    /// After this much silence from a client the server pings it; 0 = never.
    pub ping_interval_ms: u64,
    /// How long a pinged client has to send anything (its pong) before it is closed (1001).
    pub pong_timeout_ms: u64,
    /// How long a closing connection may take to flush its close frame and hear the reply.
    pub close_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 64 * 1024,
            max_fragments: 1024,
            max_backlog_bytes: 1024 * 1024,
            slow_consumer: SlowConsumer::Close,
            max_messages_per_second: 20,
            message_burst: 40,
            ping_interval_ms: 30_000,
            pong_timeout_ms: 10_000,
            close_timeout_ms: 2_000,
        }
    }
}

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("max_message_bytes", self.max_message_bytes, 16, 64 << 20)?;
        range("max_fragments", self.max_fragments, 1, 1 << 20)?;
        range("max_backlog_bytes", self.max_backlog_bytes, 1024, 1 << 30)?;
        range("max_messages_per_second", self.max_messages_per_second as usize, 0, 1_000_000)?;
        range("message_burst", self.message_burst as usize, 1, 1_000_000)?;
        range("ping_interval_ms", self.ping_interval_ms as usize, 0, 3_600_000)?;
        range("pong_timeout_ms", self.pong_timeout_ms as usize, 10, 600_000)?;
        range("close_timeout_ms", self.close_timeout_ms as usize, 10, 600_000)
    }
}
