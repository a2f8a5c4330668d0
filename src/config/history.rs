//! The `HistoryConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// What rooms remember: read by the hub's rooms.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HistoryConfig {
    /// Messages each room keeps for history, resume and late joiners (0 = none).
    pub history_size: usize,
    /// Bytes of history one room keeps (as sent, JSON); past it the oldest messages go.
    pub history_max_bytes: usize,
    /// Bytes of history all rooms together keep; past it the rooms empty longest are forgotten
    /// first, then the oldest messages of the room that grew.
    pub history_total_bytes: usize,
    /// How many of the newest kept messages a newcomer gets on join (the rest by paging).
    pub history_on_join: usize,
    /// Empty rooms kept for their history; past this the one empty longest is forgotten.
    pub max_idle_rooms: usize,
    /// Names this engine's message ids. A client resuming with `since` from another epoch (an
    /// engine that has since restarted) gets the whole window with `gap: true`. Empty = a new
    /// one per start; a host that restores history across restarts sets a fixed one.
    pub history_epoch: String,
    /// Message ids in every room continue above this: a host that restarts with a fixed
    /// `history_epoch` passes the highest id it ever learned of (stored or reported lost), so
    /// no id is given out twice.
    pub id_floor: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            history_size: 100,
            history_max_bytes: 1 << 20,
            history_total_bytes: 256 << 20,
            history_on_join: 50,
            max_idle_rooms: 10_000,
            history_epoch: String::new(),
            id_floor: 0,
        }
    }
}

impl HistoryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("history_size", self.history_size, 0, 100_000)?;
        range("history_max_bytes", self.history_max_bytes, 1024, 1 << 30)?;
        range("history_total_bytes", self.history_total_bytes, 1024, 1 << 40)?;
        if self.history_total_bytes < self.history_max_bytes {
            return Err(err("history_total_bytes", "must be at least `history_max_bytes`"));
        }
        range("history_on_join", self.history_on_join, 0, 100_000)?;
        range("max_idle_rooms", self.max_idle_rooms, 0, 10_000_000)?;
        if self.history_epoch.len() > 64 || self.history_epoch.chars().any(|c| c.is_control()) {
            return Err(err("history_epoch", "must be at most 64 bytes without control characters"));
        }
        Ok(())
    }
}
