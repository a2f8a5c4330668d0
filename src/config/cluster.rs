//! The `ClusterConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// Scale-out on Redis (see `src/cluster/` and `docs/scaling.md`): read by the runtime, which
/// joins the cluster before it serves. Without `redis_url` the engine is alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`; absent or empty = one engine, no Redis.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel the engine uses, so clusters can share a Redis.
    pub redis_prefix: String,
    /// The longest one Redis call may take; past it the engine serves its own connections
    /// alone (messages reach local members only) until Redis answers again.
    pub redis_timeout_ms: u64,
    /// How long a room's history and sequence stay in Redis after its last message.
    pub redis_history_ttl_s: u64,
}

impl ClusterConfig {
    /// The Redis address, when there is one.
    pub fn url(&self) -> Option<&str> {
        self.redis_url.as_deref().filter(|u| !u.is_empty())
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            redis_prefix: "embedchat".into(),
            redis_timeout_ms: 1_000,
            redis_history_ttl_s: 7 * 24 * 3600,
        }
    }
}

impl ClusterConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = self.url() {
            if !(url.starts_with("redis://")
                || url.starts_with("valkey://")
                || url.starts_with("redis+unix://"))
            {
                return Err(err("redis_url", "must start with redis:// (or redis+unix://)"));
            }
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.chars().any(|c| c.is_control() || c == ' ') {
            return Err(err("redis_prefix", "must be a non-empty name without blanks or control characters"));
        }
        range("redis_timeout_ms", self.redis_timeout_ms as usize, 50, 60_000)?;
        range("redis_history_ttl_s", self.redis_history_ttl_s as usize, 1, 10 * 365 * 24 * 3600)?;
        Ok(())
    }
}
