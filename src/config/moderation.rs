//! The `ModerationConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// What waits for the host's decision: read by the hub's moderation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ModerationConfig {
    pub relay: Relay,
    /// With relay `host` or `join_hook`: how long a message or join waits for the decision.
    pub hook_timeout_ms: u64,
    /// What happens to a message the host did not decide on in time.
    pub hook_default: HookDefault,
    /// Every join waits for the host (`join_request` event with a reply token; the first room
    /// refused → close 4003, a `join` refused → `error`); `hook_default` after `hook_timeout_ms`.
    pub join_hook: bool,
    /// Messages whose text starts with this (say `"/"`) are bot commands: held for the host's
    /// decision as under relay `host`, whatever `relay` says, so a bot can answer privately
    /// and keep the command out of the room (reject it). Empty (the default): off.
    pub command_prefix: String,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            relay: Relay::Auto,
            hook_timeout_ms: 2_000,
            hook_default: HookDefault::Accept,
            join_hook: false,
            command_prefix: String::new(),
        }
    }
}

impl ModerationConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("hook_timeout_ms", self.hook_timeout_ms as usize, 10, 600_000)?;
        let p = &self.command_prefix;
        if p.chars().count() > 8 || p.chars().any(char::is_control) || (!p.is_empty() && p.trim().is_empty())
        {
            return Err(err(
                "command_prefix",
                "must be a few visible characters, such as \"/\" (or empty: off)",
            ));
        }
        Ok(())
    }

    /// Whether anything waits for the host's decision (and so needs the deadline timer).
    pub fn holds_anything(&self) -> bool {
        self.relay == Relay::Host || self.join_hook || !self.command_prefix.is_empty()
    }
}
