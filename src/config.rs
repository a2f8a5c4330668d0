//! Engine configuration: the JSON object given to `chat_start` (or built in Rust).
//!
//! Every key has a default, unknown keys are refused, and every error names the key, because
//! the host usually sees nothing but `chat_last_error()` and must know what to fix.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What happens to a client's chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Typed JSON messages (`welcome`, `message`, `join`, …), see `docs/protocol.md`.
    #[default]
    Json,
    /// The tutorial's `{"mess": text, "name": sender}` for chat messages and nothing else.
    Seed,
}

/// What happens when a connection's unsent backlog would pass `max_backlog_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
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

/// Settings for one room, overriding the engine's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    pub slow_consumer: Option<SlowConsumer>,
}

/// What a held message gets when the host does not decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HookDefault {
    /// Publish it as sent: a slow host must not stop the chat.
    #[default]
    Accept,
    /// Refuse it: nothing unreviewed is ever published.
    Reject,
}

/// On which thread the C callback set with `chat_set_callback` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallbackThread {
    /// Only inside `chat_dispatch`, on the thread that calls it (safe for PHP).
    #[default]
    Host,
    /// On one dedicated engine thread (never a tokio worker), for C/Rust hosts.
    Engine,
}

/// Login carried into the chat: browsers connect with `?token=` holding an HS256 JWT signed
/// with `secret` (claims `sub`, `name`, optional `rooms`, `exp`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The HMAC key the site signs tokens with (at least 16 bytes).
    pub secret: String,
    /// Refuse connections without a token (HTTP 401). When false, anonymous visitors chat
    /// under names they choose, and a token, if given, must still be valid.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Engine settings. Field names are the JSON keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see `chat_port`).
    pub listen: String,
    /// Room a client lands in when it gives none.
    pub default_room: String,
    pub relay: Relay,
    pub protocol: Protocol,
    /// Tokio worker threads serving sockets.
    pub worker_threads: usize,
    /// Largest client message (after reassembly of fragments); larger → close 1009.
    pub max_message_bytes: usize,
    /// Largest number of frames one client message may be split into; more → close 1009.
    pub max_fragments: usize,
    /// Outbound bytes queued for one connection before it counts as a slow consumer (close 1008).
    pub max_backlog_bytes: usize,
    /// Events waiting for the host; past this they are dropped and counted.
    pub event_queue: usize,
    /// Memory the waiting events may hold (their texts mostly); past it they are dropped and
    /// counted like a full queue.
    pub max_event_bytes: usize,
    pub callback_thread: CallbackThread,
    /// Longest display name in characters (longer names are cut).
    pub max_name_chars: usize,
    /// Longest room name in characters (longer → refused).
    pub max_room_chars: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Open WebSocket connections allowed at once; past it → HTTP 503.
    pub max_connections: usize,
    /// Sender name of messages the host broadcasts or sends.
    pub host_name: String,
    /// Serve the bundled chat page at `GET /`.
    pub page: bool,
    /// Serve counters in Prometheus text format at `GET /metrics`.
    pub metrics: bool,
    /// Time a client has to send its HTTP request headers.
    pub handshake_timeout_ms: u64,
    /// How long a closing connection may take to flush its close frame and hear the reply.
    pub close_timeout_ms: u64,
    /// How long `chat_stop` waits for clients to close before it drops them.
    pub stop_timeout_ms: u64,
    /// Conformance mode: every complete text or binary message is echoed to its sender and
    /// nothing else is sent (no welcome, presence or pings). For the Autobahn test suite.
    pub echo: bool,
    /// Messages a connection may send per second on average (token bucket); 0 = unlimited.
    /// Excess messages get an `error` (`rate_limited`); a client that keeps going for a whole
    /// burst's worth of refusals is closed with 1008.
    pub max_messages_per_second: u32,
    /// Bucket size: how many messages may come at once.
    pub message_burst: u32,
    /// Open WebSocket connections per client IP; past it → HTTP 429. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Origins allowed to open a WebSocket (exact `scheme://host[:port]`), `"*"` for any.
    /// Empty (the default) = same origin only: a browser's `Origin` must match the `Host` it
    /// connects to. Requests without `Origin` (non-browser clients) are allowed. Else HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Proxy addresses (IPs or CIDR ranges) whose `X-Forwarded-For` is believed; for everyone
    /// else the TCP peer address is the client's address.
    pub trusted_proxies: Vec<String>,
    /// After this much silence from a client the server pings it; 0 = never.
    pub ping_interval_ms: u64,
    /// How long a pinged client has to send anything (its pong) before it is closed (1001).
    pub pong_timeout_ms: u64,
    /// Most request headers in the upgrade request; more → HTTP 431.
    pub max_header_count: usize,
    /// Most bytes of request line and headers; more → HTTP 431.
    pub max_header_bytes: usize,
    /// Policy for connections that fall `max_backlog_bytes` behind.
    pub slow_consumer: SlowConsumer,
    /// With relay `host`: how long a message waits for the host's decision.
    pub hook_timeout_ms: u64,
    /// What happens to a message the host did not decide on in time.
    pub hook_default: HookDefault,
    /// Every join waits for the host (`join_request` event with a reply token; the first room
    /// refused → close 4003, a `join` refused → `error`); `hook_default` after `hook_timeout_ms`.
    pub join_hook: bool,
    /// Messages each room keeps for history, resume and late joiners (0 = none).
    pub history_size: usize,
    /// How many of the newest kept messages a newcomer gets on join (the rest by paging).
    pub history_on_join: usize,
    /// Empty rooms kept for their history; past this the one empty longest is forgotten.
    pub max_idle_rooms: usize,
    /// Per-room overrides, by room name: `{"ticker": {"slow_consumer": "drop_oldest"}}`.
    pub rooms: std::collections::BTreeMap<String, RoomConfig>,
    /// Tokens from the site's login (see `AuthConfig`); absent = everyone is anonymous.
    pub auth: Option<AuthConfig>,
    /// Bearer key for the HTTP API (`/api/...`); absent = the API is off.
    pub api_key: Option<String>,
    /// Path of a local control socket (Unix domain) for `chat_connect`; absent = none.
    pub control_socket: Option<String>,
    /// File mode of the control socket, octal digits as a string.
    pub control_socket_mode: String,
    /// Report every message that enters a room's history with its id (`published` events): held
    /// messages once decided, and host messages from any path. For hosts that store messages;
    /// off by default, since a host that never takes its events would only fill the queue.
    pub published_events: bool,
    /// Names this engine's message ids. A client resuming with `since` from another epoch (an
    /// engine that has since restarted) gets the whole window with `gap: true`. Empty = a new
    /// one per start; a host that restores history across restarts sets a fixed one.
    pub history_epoch: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            default_room: "lobby".into(),
            relay: Relay::Auto,
            protocol: Protocol::Json,
            worker_threads: 2,
            max_message_bytes: 64 * 1024,
            max_fragments: 1024,
            max_backlog_bytes: 1024 * 1024,
            event_queue: 65_536,
            max_event_bytes: 64 << 20,
            callback_thread: CallbackThread::Host,
            max_name_chars: 32,
            max_room_chars: 64,
            max_rooms_per_connection: 16,
            max_connections: 100_000,
            host_name: "system".into(),
            page: true,
            metrics: true,
            handshake_timeout_ms: 10_000,
            close_timeout_ms: 2_000,
            stop_timeout_ms: 5_000,
            echo: false,
            max_messages_per_second: 20,
            message_burst: 40,
            max_connections_per_ip: 256,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            ping_interval_ms: 30_000,
            pong_timeout_ms: 10_000,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            slow_consumer: SlowConsumer::Close,
            hook_timeout_ms: 2_000,
            hook_default: HookDefault::Accept,
            join_hook: false,
            history_size: 100,
            history_on_join: 50,
            max_idle_rooms: 10_000,
            rooms: Default::default(),
            auth: None,
            api_key: None,
            control_socket: None,
            control_socket_mode: "0600".into(),
            history_epoch: String::new(),
            published_events: false,
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

impl Config {
    /// Parses a JSON object (empty string or `{}` = all defaults) and validates it.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let text = if text.trim().is_empty() { "{}" } else { text };
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // serde reports an unknown field at the parent's path; name the field itself.
            let msg = inner.to_string();
            let key = match (path.as_str(), unknown_field(&msg)) {
                (".", Some(f)) | ("", Some(f)) => f,
                (".", None) => String::new(),
                (p, _) => p.to_string(),
            };
            err(&key, strip_position(&msg))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The control socket's file mode.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        match u32::from_str_radix(&self.control_socket_mode, 8) {
            Ok(m) if m <= 0o777 && !self.control_socket_mode.is_empty() => Ok(m),
            _ => Err(err("control_socket_mode", "must be octal permission digits like \"0600\"")),
        }
    }

    /// Checks ranges and formats; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        range("worker_threads", self.worker_threads, 1, 64)?;
        range("max_message_bytes", self.max_message_bytes, 16, 64 << 20)?;
        range("max_fragments", self.max_fragments, 1, 1 << 20)?;
        range("max_backlog_bytes", self.max_backlog_bytes, 1024, 1 << 30)?;
        range("event_queue", self.event_queue, 16, 1 << 24)?;
        range("max_event_bytes", self.max_event_bytes, 64 << 10, 1 << 40)?;
        range("max_name_chars", self.max_name_chars, 1, 256)?;
        range("max_room_chars", self.max_room_chars, 1, 256)?;
        range("max_rooms_per_connection", self.max_rooms_per_connection, 1, 1024)?;
        range("max_connections", self.max_connections, 1, 10_000_000)?;
        range("handshake_timeout_ms", self.handshake_timeout_ms as usize, 100, 600_000)?;
        range("close_timeout_ms", self.close_timeout_ms as usize, 10, 600_000)?;
        range("stop_timeout_ms", self.stop_timeout_ms as usize, 10, 600_000)?;
        range("max_messages_per_second", self.max_messages_per_second as usize, 0, 1_000_000)?;
        range("message_burst", self.message_burst as usize, 1, 1_000_000)?;
        range("max_connections_per_ip", self.max_connections_per_ip, 0, 10_000_000)?;
        range("ping_interval_ms", self.ping_interval_ms as usize, 0, 3_600_000)?;
        range("pong_timeout_ms", self.pong_timeout_ms as usize, 10, 600_000)?;
        range("max_header_count", self.max_header_count, 8, 1000)?;
        range("max_header_bytes", self.max_header_bytes, 8192, 1 << 20)?;
        range("history_size", self.history_size, 0, 100_000)?;
        range("history_on_join", self.history_on_join, 0, 100_000)?;
        range("hook_timeout_ms", self.hook_timeout_ms as usize, 10, 600_000)?;
        range("max_idle_rooms", self.max_idle_rooms, 0, 10_000_000)?;
        if let Some(a) = &self.auth {
            if a.secret.len() < 16 {
                return Err(err(
                    "auth.secret",
                    "must be at least 16 bytes (HS256 key; 32 random bytes recommended)",
                ));
            }
        }
        if let Some(k) = &self.api_key {
            if k.len() < 16 || k.chars().any(|c| c.is_control() || c == ' ') {
                return Err(err(
                    "api_key",
                    "must be at least 16 characters, without spaces or control characters",
                ));
            }
        }
        if let Some(p) = &self.control_socket {
            if p.is_empty() || p.len() > 100 {
                return Err(err(
                    "control_socket",
                    "must be a file path of 1 to 100 bytes (Unix socket path limit)",
                ));
            }
        }
        self.socket_mode()?;
        if self.history_epoch.len() > 64 || self.history_epoch.chars().any(|c| c.is_control()) {
            return Err(err("history_epoch", "must be at most 64 bytes without control characters"));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(err(
                    &format!("allowed_origins[{i}]"),
                    format!("`{o}` is not \"*\" or an origin such as https://example.com"),
                ));
            }
        }
        self.proxy_nets()?;
        crate::protocol::validate_room(&self.default_room, self.max_room_chars)
            .map_err(|m| err("default_room", m))?;
        if self.host_name.trim().is_empty() || self.host_name.chars().any(char::is_control) {
            return Err(err("host_name", "must be a non-empty name without control characters"));
        }
        Ok(())
    }

    /// The `trusted_proxies` key as networks (a plain IP is a one-address network).
    pub fn proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        err(
                            &format!("trusted_proxies[{i}]"),
                            format!("`{p}` is not an IP address or CIDR range"),
                        )
                    })
            })
            .collect()
    }

    /// The `listen` key as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            err("listen", format!("`{}` is not an IP:port address such as 127.0.0.1:8080", self.listen))
        })
    }
}

fn range(key: &str, v: usize, lo: usize, hi: usize) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(err(key, format!("must be between {lo} and {hi}, got {v}")));
    }
    Ok(())
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde_json appends " at line 1 column 17"; the key already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let c = Config::from_json("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.default_room, "lobby");
        assert_eq!(c.worker_threads, 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_json(r#"{"listen":"127.0.0.1:0","colour":"red"}"#).unwrap_err();
        assert_eq!(e.key, "colour");
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::from_json(r#"{"worker_threads":"two"}"#).unwrap_err();
        assert_eq!(e.key, "worker_threads");
    }

    #[test]
    fn out_of_range_names_the_key_and_bounds() {
        let e = Config::from_json(r#"{"worker_threads":0}"#).unwrap_err();
        assert_eq!(e.key, "worker_threads");
        assert!(e.message.contains("between 1 and 64"), "{e}");
    }

    #[test]
    fn bad_enum_value_names_the_key() {
        let e = Config::from_json(r#"{"relay":"sometimes"}"#).unwrap_err();
        assert_eq!(e.key, "relay");
    }

    #[test]
    fn bad_listen_address_names_the_key() {
        let e = Config::from_json(r#"{"listen":"localhost"}"#).unwrap_err();
        assert_eq!(e.key, "listen");
    }

    #[test]
    fn list_entries_are_named_with_their_index() {
        let e = Config::from_json(r#"{"trusted_proxies":["10.0.0.0/8","nonsense"]}"#).unwrap_err();
        assert_eq!(e.key, "trusted_proxies[1]");
        let e = Config::from_json(r#"{"allowed_origins":["example.com"]}"#).unwrap_err();
        assert_eq!(e.key, "allowed_origins[0]");
        assert!(Config::from_json(r#"{"trusted_proxies":["10.0.0.0/8","127.0.0.1"]}"#).is_ok());
    }

    #[test]
    fn room_overrides_are_checked_too() {
        let c = Config::from_json(r#"{"rooms":{"ticker":{"slow_consumer":"drop_oldest"}}}"#).unwrap();
        assert_eq!(c.rooms["ticker"].slow_consumer, Some(SlowConsumer::DropOldest));
        let e = Config::from_json(r#"{"rooms":{"ticker":{"slow_consumer":"ignore"}}}"#).unwrap_err();
        assert_eq!(e.key, "rooms.ticker.slow_consumer");
        let e = Config::from_json(r#"{"rooms":{"ticker":{"colour":1}}}"#).unwrap_err();
        assert_eq!(e.key, "rooms.ticker.colour");
    }

    #[test]
    fn broken_json_is_reported() {
        let e = Config::from_json("{").unwrap_err();
        assert!(e.to_string().starts_with("config"), "{e}");
    }
}
