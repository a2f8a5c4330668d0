//! Engine configuration: the JSON object given to `chat_start` (or built in Rust).
//!
//! The JSON is one flat object (docs/config.md lists every key); in Rust the keys are grouped by
//! the part of the engine that reads them, and each part receives only its group: the hub
//! gets `chat`, `history` and `moderation`, a connection gets `limits`, the upgrade check gets
//! `admission`, the HTTP side gets `site` (secrets live only there), the event queue gets
//! `events`. Every key has a default, unknown keys are refused, and every error names the key,
//! because the host usually sees nothing but `chat_last_error()` and must know what to fix.
//!
//! Each group is a file of its own (`chat.rs`, `history.rs`, `moderation.rs`, `limits.rs`,
//! `admission.rs`, `events.rs`, `site.rs`, `cluster.rs`, `pusher.rs`) with its keys, their
//! defaults and their checks; this file has the whole `Config` and the shared value types. To
//! add a key: a field in its group's file (with its doc comment, default and range check), and
//! a row in docs/config.md. `parse.rs` finds it by itself.

mod admission;
mod chat;
mod cluster;
mod events;
mod history;
mod limits;
mod moderation;
mod parse;
mod pusher;
mod site;

pub use {
    admission::AdmissionConfig, chat::ChatConfig, cluster::ClusterConfig, events::EventsConfig,
    history::HistoryConfig, limits::LimitsConfig, moderation::ModerationConfig, pusher::PusherConfig,
    site::SiteConfig,
};

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

/// What happens to a client's chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// Broadcast to the room at once; the host is told afterwards.
    #[default]
    Auto,
    /// Held for the host: the message event carries a reply token and the host approves,
    /// rejects or replaces it (moderation, persistence first); `hook_default` after
    /// `hook_timeout_ms`.
    Host,
}

/// Outgoing wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Typed JSON messages (`welcome`, `message`, `join`, …), see `docs/protocol.md`.
    #[default]
    Json,
    /// The tutorial's `{"mess": text, "name": sender}` for chat messages and nothing else.
    Seed,
}

/// What happens when a connection's unsent backlog would pass `max_backlog_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumer {
    /// Close it with 1008 (it is not reading; it can reconnect and resume).
    #[default]
    Close,
    /// Keep it, dropping its oldest queued messages to make room (tickers, presence).
    DropOldest,
    /// Keep it, dropping the new message.
    DropNewest,
}

/// Who a client may whisper to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhisperScope {
    /// Someone who shares a room with the sender: a stranger elsewhere on the server cannot be
    /// reached by guessing connection ids or names.
    #[default]
    SharedRoom,
    /// Anyone connected to this engine.
    Any,
}

/// Settings for one room, overriding the engine's.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    pub slow_consumer: Option<SlowConsumer>,
    /// This room's `presence_limit`.
    pub presence_limit: Option<usize>,
}

/// What a held message gets when the host does not decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HookDefault {
    /// Publish it as sent: a slow host must not stop the chat.
    #[default]
    Accept,
    /// Refuse it: nothing unreviewed is ever published.
    Reject,
}

/// On which thread the C callback set with `chat_set_callback` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallbackThread {
    /// Only inside `chat_dispatch`, on the thread that calls it (safe for PHP).
    #[default]
    Host,
    /// On one dedicated engine thread (never a tokio worker), for C/Rust hosts.
    Engine,
}

/// Login carried into the chat: an HS256 JWT signed with `secret` (claims `sub`, `name`,
/// optional `rooms`, `exp`, `aud`), offered in the upgrade's `Sec-WebSocket-Protocol` (the
/// bundled page) or its `?token=` query (other clients).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The HMAC key the site signs tokens with (at least 16 bytes).
    pub secret: String,
    /// Refuse connections without a token (HTTP 401). When false, anonymous visitors chat
    /// under names they choose, and a token, if given, must still be valid.
    #[serde(default = "yes")]
    pub required: bool,
    /// The `aud` tokens must carry (one of, when `aud` is a list). A site whose secret also
    /// signs tokens for other services sets it, so those tokens do not open the chat. Absent:
    /// tokens must carry no `aud` at all (a token meant for someone else is never taken).
    #[serde(default)]
    pub audience: Option<String>,
}

fn yes() -> bool {
    true
}

/// HTTPS and `wss://` on the engine's own port: the certificate chain and its private key, PEM
/// files read at start and again by `chat_reload_tls` (a renewal replaces the files, then
/// reloads). See `src/tls.rs`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`fullchain.pem` as certbot writes it).
    pub cert: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key: String,
}

/// Engine settings. The top-level fields are the engine's own; the groups go to the parts that
/// read them. Field names are the JSON keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see `chat_port`).
    pub listen: String,
    /// Tokio worker threads serving sockets.
    pub worker_threads: usize,
    /// How long `chat_stop` waits for clients to close before it drops them.
    pub stop_timeout_ms: u64,
    /// Conformance mode: every complete text or binary message is echoed to its sender and
    /// nothing else is sent (no welcome, presence or pings). For the Autobahn test suite.
    pub echo: bool,
    /// permessage-deflate (RFC 7692) for clients that offer it (every browser does): a
    /// broadcast is compressed once for all of them; messages under 64 bytes go plain.
    pub compression: bool,
    #[serde(skip)]
    pub chat: ChatConfig,
    #[serde(skip)]
    pub history: HistoryConfig,
    #[serde(skip)]
    pub moderation: ModerationConfig,
    #[serde(skip)]
    pub limits: LimitsConfig,
    #[serde(skip)]
    pub admission: AdmissionConfig,
    #[serde(skip)]
    pub events: EventsConfig,
    #[serde(skip)]
    pub site: SiteConfig,
    #[serde(skip)]
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            worker_threads: 2,
            stop_timeout_ms: 5_000,
            echo: false,
            compression: true,
            chat: ChatConfig::default(),
            history: HistoryConfig::default(),
            moderation: ModerationConfig::default(),
            limits: LimitsConfig::default(),
            admission: AdmissionConfig::default(),
            events: EventsConfig::default(),
            site: SiteConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The JSON key (dotted path) at fault; empty when the document itself is broken.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config key `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

fn range(key: &str, v: usize, lo: usize, hi: usize) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(err(key, format!("must be between {lo} and {hi}, got {v}")));
    }
    Ok(())
}

impl Config {
    /// Parses a JSON object (empty string, `{}` or `[]` = all defaults) and validates it.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let cfg = parse::from_json(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and formats; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        range("worker_threads", self.worker_threads, 1, 64)?;
        range("stop_timeout_ms", self.stop_timeout_ms as usize, 10, 600_000)?;
        self.chat.validate()?;
        self.history.validate()?;
        self.moderation.validate()?;
        self.limits.validate()?;
        self.admission.validate()?;
        self.events.validate()?;
        self.site.validate()?;
        self.cluster.validate()?;
        if self.largest_frame() > self.limits.max_backlog_bytes {
            return Err(err(
                "max_backlog_bytes",
                format!(
                    "is {} bytes, but one message of `max_message_bytes` ({}) can take {} bytes on the wire \
                     (control characters are sent as 6-byte escapes): raise `max_backlog_bytes` or lower \
                     `max_message_bytes`",
                    self.limits.max_backlog_bytes,
                    self.limits.max_message_bytes,
                    self.largest_frame()
                ),
            ));
        }
        crate::protocol::validate_room(&self.chat.default_room, self.chat.max_room_chars)
            .map_err(|m| err("default_room", m))
    }

    /// The most bytes one message can take in a connection's backlog: the text of
    /// `max_message_bytes` with every byte escaped (`\u0001`), its room and sender name, the
    /// JSON around it and the frame header. Echo mode sends messages back as they came.
    pub fn largest_frame(&self) -> usize {
        let l = &self.limits;
        if self.echo {
            return l.max_message_bytes + 14;
        }
        6 * l.max_message_bytes + 8 * self.chat.max_room_chars + 4 * self.chat.max_name_chars + 256
    }

    /// The `listen` key as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            err("listen", format!("`{}` is not an IP:port address such as 127.0.0.1:8080", self.listen))
        })
    }
}

#[cfg(test)]
mod tests;
