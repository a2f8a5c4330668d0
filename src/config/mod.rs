//! Engine configuration: the JSON object given to `chat_start` (or built in Rust).
//!
//! The JSON is one flat object (docs/config.md lists every key); in Rust the keys are grouped by
//! the part of the engine that reads them, and each part receives only its group: the hub
//! gets `chat`, `history` and `moderation`, a connection gets `limits`, the upgrade check gets
//! `admission`, the HTTP side gets `site` (secrets live only there), the event queue gets
//! `events`. Every key has a default, unknown keys are refused, and every error names the key,
//! because the host usually sees nothing but `chat_last_error()` and must know what to fix.
//!
//! To add a key: a field in its group below (with its doc comment, default and range check),
//! and a row in docs/config.md. `parse.rs` finds it by itself.

mod parse;

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

/// Who may open a WebSocket: read by the upgrade check.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    /// Open WebSocket connections allowed at once; past it → HTTP 503.
    pub max_connections: usize,
    /// Open WebSocket connections per client IP; past it → HTTP 429. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Origins allowed to open a WebSocket (exact `scheme://host[:port]`), `"*"` for any.
    /// Empty (the default) = same origin only: a browser's `Origin` must match the `Host` it
    /// connects to. Requests without `Origin` (non-browser clients) are allowed. Else HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Proxy addresses (IPs or CIDR ranges) whose `X-Forwarded-For` is believed; for everyone
    /// else the TCP peer address is the client's address.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are counted per network of this prefix length (one household or host
    /// usually has a whole /64); IPv4 clients per address.
    pub ipv6_prefix: u8,
    /// Most request headers in the upgrade request; more → HTTP 431.
    pub max_header_count: usize,
    /// Most bytes of request line and headers; more → HTTP 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its HTTP request headers; with `tls`, also the time it has
    /// for the TLS handshake before that (each phase gets the whole time).
    pub handshake_timeout_ms: u64,
}

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

/// The site's ways in besides the chat: the page, metrics, login tokens, the HTTP API and the
/// control socket. The secrets live here and nowhere else.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SiteConfig {
    /// Serve the bundled chat page at `GET /`.
    pub page: bool,
    /// Where the page may be framed: the CSP `frame-ancestors` sources of `GET /` (`'self'`,
    /// `'none'`, or origins such as `https://site.example`). A site that shows the page in an
    /// iframe from another origin lists that origin.
    pub page_frame_ancestors: Vec<String>,
    /// Serve counters in Prometheus text format at `GET /metrics`.
    pub metrics: bool,
    /// `/metrics` asks for the `api_key` (`Authorization: Bearer`) like the HTTP API: the
    /// counters tell an outsider how busy the chat is and which limits are being hit.
    pub metrics_auth: bool,
    /// Tokens from the site's login (see `AuthConfig`); absent = everyone is anonymous.
    pub auth: Option<AuthConfig>,
    /// Bearer key for the HTTP API (`/api/...`); absent = the API is off.
    pub api_key: Option<String>,
    /// Path of a local control socket (Unix domain) for `chat_connect`; absent = none.
    pub control_socket: Option<String>,
    /// File mode of the control socket, octal digits as a string.
    pub control_socket_mode: String,
    /// Users (numeric uids) allowed on the control socket besides the engine's own user and
    /// root; a peer whose uid (`SO_PEERCRED`) is neither is closed at once. The file mode decides
    /// who can reach the socket at all; this list decides whose requests are carried out (with
    /// mode `0660` and a shared group: the FPM pool's uid). Uids, not gids: `SO_PEERCRED` carries
    /// only the peer's primary group, so a gid list would refuse a user who is in the group
    /// through a supplementary membership, which is how a web user is usually added to one.
    pub control_socket_uids: Vec<u32>,
    /// Control connections open at once; past it a new one is refused and closed.
    pub control_socket_max_connections: usize,
    /// A control connection that sends no request (or does not read its reply) for this long is
    /// closed; `chat_connect` handles reconnect by themselves.
    pub control_socket_idle_timeout_ms: u64,
    /// Serve HTTPS and `wss://` on `listen` (see `TlsConfig`); absent = plain HTTP and `ws://`.
    pub tls: Option<TlsConfig>,
    /// Speak the Pusher Channels protocol too (see `PusherConfig`); absent = not.
    pub pusher: Option<PusherConfig>,
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

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: 100_000,
            max_connections_per_ip: 256,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            handshake_timeout_ms: 10_000,
        }
    }
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

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            page: true,
            page_frame_ancestors: vec!["'self'".into()],
            metrics: true,
            metrics_auth: false,
            auth: None,
            api_key: None,
            control_socket: None,
            control_socket_mode: "0600".into(),
            control_socket_uids: Vec::new(),
            // Near the largest PHP-FPM pools (one connection per request that posts, all at once
            // at worst); each costs a file descriptor and a few KiB.
            control_socket_max_connections: 256,
            control_socket_idle_timeout_ms: 60_000,
            tls: None,
            pusher: None,
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

impl ChatConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl HistoryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl ModerationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl AdmissionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        range("max_connections", self.max_connections, 1, 10_000_000)?;
        range("max_connections_per_ip", self.max_connections_per_ip, 0, 10_000_000)?;
        range("max_header_count", self.max_header_count, 8, 1000)?;
        range("ipv6_prefix", self.ipv6_prefix as usize, 32, 128)?;
        range("max_header_bytes", self.max_header_bytes, 8192, 1 << 20)?;
        range("handshake_timeout_ms", self.handshake_timeout_ms as usize, 100, 600_000)?;
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(err(
                    &format!("allowed_origins[{i}]"),
                    format!("`{o}` is not \"*\" or an origin such as https://example.com"),
                ));
            }
        }
        self.proxy_nets().map(drop)
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
}

impl EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        range("event_queue", self.event_queue, 16, 1 << 24)?;
        range("max_event_bytes", self.max_event_bytes, 64 << 10, 1 << 40)
    }
}

impl PusherConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl ClusterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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

impl SiteConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.auth {
            if a.secret.len() < 16 {
                return Err(err(
                    "auth.secret",
                    "must be at least 16 bytes (HS256 key; 32 random bytes recommended)",
                ));
            }
            if a.audience.as_ref().is_some_and(|aud| aud.is_empty() || aud.chars().any(char::is_control)) {
                return Err(err("auth.audience", "must be a non-empty string without control characters"));
            }
        }
        if self.metrics_auth && self.api_key.is_none() {
            return Err(err("metrics_auth", "needs `api_key`: /metrics then asks for that key"));
        }
        self.frame_ancestors()?;
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
        for (i, uid) in self.control_socket_uids.iter().enumerate() {
            if *uid == u32::MAX {
                return Err(err(&format!("control_socket_uids[{i}]"), "4294967295 is not a user id"));
            }
        }
        range("control_socket_max_connections", self.control_socket_max_connections, 1, 65_536)?;
        range(
            "control_socket_idle_timeout_ms",
            self.control_socket_idle_timeout_ms as usize,
            100,
            86_400_000,
        )?;
        if let Some(t) = &self.tls {
            // The files themselves are read at start (`tls::Tls::load`), where a bad one fails
            // `chat_start` naming the same keys.
            for (key, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if path.trim().is_empty() {
                    return Err(err(key, "must be the path of a PEM file"));
                }
            }
        }
        if let Some(p) = &self.pusher {
            p.validate()?;
        }
        self.socket_mode().map(drop)
    }

    /// The `page_frame_ancestors` sources, space-separated, for the page's CSP. Each must be one
    /// CSP source (no blanks, `;` or `,`, which would end or split the directive and let a
    /// config value add directives of its own).
    pub fn frame_ancestors(&self) -> Result<String, ConfigError> {
        let list = &self.page_frame_ancestors;
        if list.is_empty() {
            return Err(err(
                "page_frame_ancestors",
                "must list at least one source; [\"'none'\"] forbids framing",
            ));
        }
        for (i, src) in list.iter().enumerate() {
            let key = format!("page_frame_ancestors[{i}]");
            let quoted = src.starts_with('\'');
            let ok = if quoted {
                src == "'self'" || src == "'none'"
            } else {
                // A host or scheme source (`https://site.example`, `https://*.site.example`,
                // `https:`): no quotes, since other keywords ('unsafe-inline' …) mean nothing here.
                !src.is_empty() && src.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/*%[]".contains(c))
            };
            if !ok {
                return Err(err(
                    &key,
                    format!("`{src}` is not 'self', 'none' or a source such as https://site.example"),
                ));
            }
            if src == "'none'" && list.len() > 1 {
                return Err(err(&key, "'none' must be the only source"));
            }
        }
        Ok(list.join(" "))
    }

    /// The control socket's file mode.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        match u32::from_str_radix(&self.control_socket_mode, 8) {
            Ok(m) if m <= 0o777 && !self.control_socket_mode.is_empty() => Ok(m),
            _ => Err(err("control_socket_mode", "must be octal permission digits like \"0600\"")),
        }
    }
}

#[cfg(test)]
mod tests;
