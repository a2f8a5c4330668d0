//! The `PusherConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// The Pusher Channels protocol (version 7) beside the engine's own (`docs/pusher.md`): one
/// app, its WebSocket endpoint `/app/{key}` and its HTTP API `/apps/{app_id}/...`, both
/// signed with `secret` as Pusher's server libraries and auth endpoints sign them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PusherConfig {
    /// The app id the HTTP API's paths carry (`/apps/{app_id}/events`).
    pub app_id: String,
    /// The public key clients connect with (`/app/{key}`) and requests are signed under.
    pub key: String,
    /// The secret channel auth and API requests are signed with (HMAC-SHA256).
    pub secret: String,
    /// Let clients send `client-*` events on private and presence channels (Pusher's
    /// "client events" app setting); off, such an event is refused.
    #[serde(default)]
    pub client_events: bool,
    /// The longest event name (characters), from clients and from the HTTP API.
    #[serde(default = "pusher_name_chars")]
    pub max_event_name_chars: usize,
    /// The most bytes of an event's `data`, from clients and from the HTTP API.
    #[serde(default = "pusher_data_bytes")]
    pub max_event_data_bytes: usize,
    /// The most channels one HTTP API event may name.
    #[serde(default = "pusher_channels")]
    pub max_channels_per_event: usize,
    /// Seconds of silence after which a client pings (sent in `connection_established`).
    #[serde(default = "pusher_activity")]
    pub activity_timeout: u64,
}

fn pusher_name_chars() -> usize {
    200
}

fn pusher_data_bytes() -> usize {
    10 * 1024
}

fn pusher_channels() -> usize {
    100
}

fn pusher_activity() -> u64 {
    120
}

impl PusherConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // Ids and keys travel in URL paths and signed strings: no separators, no blanks.
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars().all(|c| c.is_ascii_graphic() && !"/?#&=:".contains(c))
        };
        if !plain(&self.app_id) {
            return Err(err(
                "pusher.app_id",
                "must be 1 to 128 printable ASCII characters without / ? # & = :",
            ));
        }
        if !plain(&self.key) {
            return Err(err("pusher.key", "must be 1 to 128 printable ASCII characters without / ? # & = :"));
        }
        if self.secret.len() < 16 {
            return Err(err("pusher.secret", "must be at least 16 bytes (an HMAC-SHA256 key)"));
        }
        range("pusher.max_event_name_chars", self.max_event_name_chars, 1, 1000)?;
        range("pusher.max_event_data_bytes", self.max_event_data_bytes, 1, 16 << 20)?;
        range("pusher.max_channels_per_event", self.max_channels_per_event, 1, 1000)?;
        range("pusher.activity_timeout", self.activity_timeout as usize, 1, 3600)
    }
}
