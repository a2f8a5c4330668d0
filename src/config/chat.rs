//! The `ChatConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// Rooms, names and what clients see: read by the hub.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChatConfig {
    /// Room a client lands in when it gives none.
    pub default_room: String,
    pub protocol: Protocol,
    /// Sender name of messages the host broadcasts or sends.
    pub host_name: String,
    /// Longest display name in characters (longer names are cut).
    pub max_name_chars: usize,
    /// Longest room name in characters (longer → refused).
    pub max_room_chars: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Who a client may whisper to.
    pub whisper_scope: WhisperScope,
    /// Users a room may have and still send everyone the full member list and a `join`/`leave`
    /// per user; past it the room sends counts and batched updates (`crowd`) instead, and the
    /// list is asked for page by page (`members`). Per room: `rooms.<name>.presence_limit`.
    pub presence_limit: usize,
    /// How often a big room's joins and leaves are announced, batched.
    pub presence_interval_ms: u64,
    /// Rooms in the engine, with members or kept for their history; a client that would create
    /// one more first pushes out the room empty longest, and is refused when none is empty.
    pub max_rooms: usize,
    /// Rooms that clients from one address (or IPv6 network, see `ipv6_prefix`) created and that
    /// still exist; past it creating another is refused.
    pub max_rooms_per_ip: usize,
    /// Rooms one connection created that still exist; past it creating another is refused.
    pub max_created_rooms_per_connection: usize,
    /// Per-room overrides, by room name: `{"ticker": {"slow_consumer": "drop_oldest"}}`.
    pub rooms: BTreeMap<String, RoomConfig>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            default_room: "lobby".into(),
            protocol: Protocol::Json,
            host_name: "system".into(),
            max_name_chars: 32,
            max_room_chars: 64,
            max_rooms_per_connection: 16,
            whisper_scope: WhisperScope::SharedRoom,
            presence_limit: 100,
            presence_interval_ms: 1000,
            max_rooms: 100_000,
            max_rooms_per_ip: 256,
            max_created_rooms_per_connection: 64,
            rooms: BTreeMap::new(),
        }
    }
}

impl ChatConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("max_name_chars", self.max_name_chars, 1, 256)?;
        range("max_room_chars", self.max_room_chars, 1, 256)?;
        range("max_rooms_per_connection", self.max_rooms_per_connection, 1, 1024)?;
        range("max_rooms", self.max_rooms, 1, 10_000_000)?;
        range("presence_limit", self.presence_limit, 1, 10_000_000)?;
        range("presence_interval_ms", self.presence_interval_ms as usize, 50, 600_000)?;
        for (name, r) in &self.rooms {
            if let Some(l) = r.presence_limit {
                range(&format!("rooms.{name}.presence_limit"), l, 1, 10_000_000)?;
            }
        }
        range("max_rooms_per_ip", self.max_rooms_per_ip, 1, 10_000_000)?;
        range("max_created_rooms_per_connection", self.max_created_rooms_per_connection, 1, 1_000_000)?;
        if self.host_name.trim().is_empty() || self.host_name.chars().any(char::is_control) {
            return Err(err("host_name", "must be a non-empty name without control characters"));
        }
        Ok(())
    }

    /// The presence limit of `room`: its override, or the engine's.
    pub fn presence_limit_for(&self, room: &str) -> usize {
        self.rooms.get(room).and_then(|r| r.presence_limit).unwrap_or(self.presence_limit)
    }

    /// The slow-consumer policy of `room`: its override, or `default`.
    pub fn policy_for(&self, room: &str, default: SlowConsumer) -> SlowConsumer {
        self.rooms.get(room).and_then(|r| r.slow_consumer).unwrap_or(default)
    }
}
