//! The `EventsConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// What the host is told and how: read by the event queue and the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// Events waiting for the host; past this they are dropped and counted.
    pub event_queue: usize,
    /// Memory the waiting events may hold (their texts mostly); past it they are dropped and
    /// counted like a full queue.
    pub max_event_bytes: usize,
    pub callback_thread: CallbackThread,
    /// Report every message that enters a room's history with its id (`published` events): held
    /// messages once decided, and host messages from any path. For hosts that store messages;
    /// off by default, since a host that never takes its events would only fill the queue.
    pub published_events: bool,
    /// Report every refused WebSocket upgrade (`refused` events: the HTTP status and the reason
    /// the client was sent), for a daemon's log. Off by default; queued only while the queue
    /// is less than half full, so a storm of bad requests cannot crowd out the chat's events.
    pub refused_events: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            event_queue: 65_536,
            max_event_bytes: 64 << 20,
            callback_thread: CallbackThread::Host,
            published_events: false,
            refused_events: false,
        }
    }
}

impl EventsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("event_queue", self.event_queue, 16, 1 << 24)?;
        range("max_event_bytes", self.max_event_bytes, 64 << 10, 1 << 40)
    }
}
