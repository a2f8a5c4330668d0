//! The Pusher Channels protocol on this engine (`docs/pusher.md`): what a Pusher connection
//! does between its frames and the hub. The wire format is `protocol/pusher.rs` (pure), the
//! signatures `sign.rs`, the rooms `hub/pusher.rs`, the HTTP API `http/pusher.rs`.
//!
//! A Pusher connection is a session like any other (same limits, rate limit, outbox, pings);
//! only its text frames go here instead of to the JSON command parser, and it starts with
//! `pusher:connection_established` instead of a `welcome` in a room.

pub mod sign;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::config::PusherConfig;
use crate::context::Context;
use crate::identity::ConnId;
use crate::outbox::Outbox;
use crate::protocol::pusher::{self as wire, In, Kind};
use crate::stats::Stats;

/// The protocol versions spoken (pusher-js 8 speaks 7; 5 and 6 differ only in what this
/// server does not do).
const PROTOCOLS: [&str; 3] = ["5", "6", "7"];

/// Pusher's close codes this server uses.
pub mod code {
    /// The app key is not this engine's.
    pub const APP_NOT_FOUND: u16 = 4001;
    /// The `protocol` query is missing or not one spoken here.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// A signin's signature is wrong; also what `terminate_connections` closes with.
    pub const UNAUTHORIZED: u16 = 4009;
}

/// Why a Pusher upgrade is refused once it is a WebSocket (Pusher answers with
/// `pusher:error` and a 4xxx close, not an HTTP status, so the client knows not to retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: u16,
    pub message: String,
}

/// Checks `/app/{key}?protocol=7&…`. `path` starts with `/app/`.
pub fn check_endpoint(cfg: &PusherConfig, path: &str, query: Option<&str>) -> Result<(), Refused> {
    let key = path.trim_start_matches("/app/").trim_end_matches('/');
    if key != cfg.key {
        let message = format!("App key {key} does not exist on this server");
        return Err(Refused { code: code::APP_NOT_FOUND, message });
    }
    let protocol = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "protocol")
        .map(|(_, v)| v.into_owned());
    match protocol {
        Some(p) if PROTOCOLS.contains(&p.as_str()) => Ok(()),
        Some(p) => Err(Refused {
            code: code::UNSUPPORTED_PROTOCOL,
            message: format!("Unsupported protocol version {p}: this server speaks 7"),
        }),
        None => Err(Refused {
            code: code::UNSUPPORTED_PROTOCOL,
            message: "No protocol version given (?protocol=7)".into(),
        }),
    }
}

/// A number that makes this engine's socket ids its own: two engines (or one restarted) do
/// not hand out the same `socket_id` for their connection 1.
fn engine_salt() -> u64 {
    static SALT: OnceLock<u64> = OnceLock::new();
    static STARTS: AtomicU64 = AtomicU64::new(0);
    *SALT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mix =
            nanos ^ u64::from(std::process::id()).rotate_left(32) ^ STARTS.fetch_add(1, Ordering::Relaxed);
        // Digits only (pusher-js checks nothing, but Pusher's libraries match `\d+\.\d+`).
        mix % 1_000_000_000
    })
}

/// A connection's `socket_id`: `salt.id`, digits, as Pusher's look.
pub fn socket_id(id: ConnId) -> String {
    format!("{}.{id}", engine_salt())
}

/// The connection a `socket_id` names, if it is one of this engine's.
pub fn conn_of(socket_id: &str) -> Option<ConnId> {
    let (salt, id) = socket_id.split_once('.')?;
    (salt.parse::<u64>().ok()? == engine_salt()).then_some(())?;
    id.parse().ok()
}

/// Whether `socket_id` is written as Pusher's are (`digits.digits`).
pub fn valid_socket_id(socket_id: &str) -> bool {
    socket_id.split_once('.').is_some_and(|(a, b)| {
        [a, b].iter().all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// Queues one frame of ours for a Pusher connection (compressed if it negotiated that).
fn send(ctx: &Context, outbox: &Outbox, text: &str) {
    let frame = crate::wsframe::text(text);
    let frame = match outbox.deflate() {
        0 => frame,
        bits => crate::hub::deflated(&frame, bits).unwrap_or(frame),
    };
    outbox.push(frame, ctx.cfg.limits.max_backlog_bytes, ctx.cfg.limits.slow_consumer);
}

/// A refused frame: the error, counted.
fn refuse(ctx: &Context, outbox: &Outbox, text: &str) {
    Stats::inc(&ctx.stats.command_errors);
    send(ctx, outbox, text);
}

/// A new Pusher connection: refused (error and close) or registered and told its socket id.
pub fn open(ctx: &Context, id: ConnId, ip: Option<IpAddr>, outbox: &Arc<Outbox>, refused: Option<Refused>) {
    let Some(cfg) = &ctx.cfg.site.pusher else { return };
    if let Some(r) = refused {
        refuse(ctx, outbox, &wire::error(Some(r.code), &r.message));
        outbox.close(r.code, &r.message);
        return;
    }
    let socket = socket_id(id);
    ctx.hub.pusher_connect(id, &socket, ip, outbox.clone());
    send(ctx, outbox, &wire::established(&socket, cfg.activity_timeout));
}

/// One text frame from a Pusher connection.
pub fn text(ctx: &Context, id: ConnId, outbox: &Outbox, text: &str) {
    let Some(cfg) = &ctx.cfg.site.pusher else { return };
    match wire::parse(text) {
        Err(m) => refuse(ctx, outbox, &wire::error(None, &m)),
        Ok(In::Ping) => send(ctx, outbox, &wire::pong()),
        Ok(In::Pong) => {}
        Ok(In::Subscribe { channel, auth, channel_data }) => {
            if let Err((status, m)) = subscribe(ctx, cfg, id, &channel, auth, channel_data) {
                refuse(ctx, outbox, &wire::subscription_error(&channel, status, &m));
            }
        }
        Ok(In::Unsubscribe { channel }) => {
            ctx.hub.pusher_unsubscribe(id, &channel);
        }
        Ok(In::ClientEvent { event, channel, data }) => {
            if let Err(m) = client_event(ctx, cfg, id, &channel, &event, &data) {
                refuse(ctx, outbox, &wire::error(None, &m));
            }
        }
        Ok(In::Signin { auth, user_data }) => signin(ctx, cfg, id, outbox, &auth, &user_data),
        Ok(In::Unsupported(event)) => {
            refuse(ctx, outbox, &wire::error(None, &format!("`{event}` is not supported by this server")))
        }
    }
}

/// User authentication: a good signature makes the connection that user's (events sent to the
/// user, `terminate_connections`); a bad one closes it with 4009, as Pusher does.
fn signin(ctx: &Context, cfg: &PusherConfig, id: ConnId, outbox: &Outbox, auth: &str, user_data: &str) {
    let expected = sign::user_auth(&cfg.key, &cfg.secret, &socket_id(id), user_data);
    if !sign::same(auth, &expected) {
        let why = "Invalid signature for pusher:signin: check the user auth endpoint's key and secret";
        refuse(ctx, outbox, &wire::error(Some(code::UNAUTHORIZED), why));
        outbox.close(code::UNAUTHORIZED, "invalid signin");
        return;
    }
    match wire::signin_user(user_data) {
        Ok(user) => {
            ctx.hub.pusher_signin(id, &user);
            send(ctx, outbox, &wire::signin_success(user_data));
        }
        Err(m) => refuse(ctx, outbox, &wire::error(None, &m)),
    }
}

/// Checks a subscription's name and signature, then joins. Err: the HTTP-like status Pusher
/// clients expect in `pusher:subscription_error`, and why.
fn subscribe(
    ctx: &Context,
    cfg: &PusherConfig,
    id: ConnId,
    channel: &str,
    auth: Option<String>,
    channel_data: Option<String>,
) -> Result<(), (u16, String)> {
    if let Some(user) = channel.strip_prefix(wire::USER_CHANNEL) {
        // What pusher-js subscribes to after a signin: the signed-in user's own, no auth.
        if ctx.hub.pusher_signed_in(id).as_deref() != Some(user) {
            return Err((403, format!("sign in as `{user}` first (pusher:signin)")));
        }
        return ctx.hub.pusher_subscribe(id, channel, None).map_err(|m| (403, m));
    }
    wire::validate_channel(channel, ctx.cfg.chat.max_room_chars).map_err(|m| (400, m))?;
    let kind = Kind::of(channel);
    let presence = match (kind, &channel_data) {
        (Kind::Presence, Some(d)) => Some(wire::presence_user(d).map_err(|m| (400, m))?),
        (Kind::Presence, None) => return Err((400, "a presence subscription needs channel_data".into())),
        _ => None,
    };
    if kind.authorised() {
        let data = channel_data.as_deref().filter(|_| kind == Kind::Presence);
        let ok = auth
            .as_deref()
            .is_some_and(|a| sign::channel_auth_ok(&cfg.key, &cfg.secret, &socket_id(id), channel, data, a));
        if !ok {
            return Err((
                401,
                format!("Invalid signature for channel {channel}: check the auth endpoint's key and secret"),
            ));
        }
    }
    ctx.hub.pusher_subscribe(id, channel, presence).map_err(|m| (403, m))
}

fn client_event(
    ctx: &Context,
    cfg: &PusherConfig,
    id: ConnId,
    channel: &str,
    event: &str,
    data: &str,
) -> Result<(), String> {
    if !cfg.client_events {
        return Err("client events are off on this server (config `pusher.client_events`)".into());
    }
    if !matches!(Kind::of(channel), Kind::Private | Kind::Presence) {
        return Err("client events are allowed on private- and presence- channels only".into());
    }
    check_event(cfg, event, data)?;
    ctx.hub.pusher_client_event(id, channel, event, data)
}

/// The limits on one event's name and data (clients and the HTTP API alike).
pub fn check_event(cfg: &PusherConfig, name: &str, data: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > cfg.max_event_name_chars {
        return Err(format!("an event name has 1 to {} characters", cfg.max_event_name_chars));
    }
    if data.len() > cfg.max_event_data_bytes {
        return Err(format!("event data is larger than {} bytes", cfg.max_event_data_bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PusherConfig {
        serde_json::from_str(r#"{"app_id":"1","key":"app-key","secret":"0123456789abcdef"}"#).unwrap()
    }

    #[test]
    fn socket_ids_are_digits_and_name_their_connection() {
        let s = socket_id(42);
        assert!(valid_socket_id(&s), "{s}");
        assert_eq!(conn_of(&s), Some(42));
        assert_eq!(conn_of("1.42").filter(|_| engine_salt() != 1), None, "another engine's");
        assert!(!valid_socket_id("1.x") && !valid_socket_id("12") && !valid_socket_id(".1"));
    }

    #[test]
    fn the_endpoint_checks_key_and_protocol() {
        let c = cfg();
        assert_eq!(check_endpoint(&c, "/app/app-key", Some("protocol=7&client=js&version=8.4.0")), Ok(()));
        assert_eq!(check_endpoint(&c, "/app/other", Some("protocol=7")).unwrap_err().code, 4001);
        assert_eq!(check_endpoint(&c, "/app/app-key", Some("protocol=3")).unwrap_err().code, 4007);
        assert_eq!(check_endpoint(&c, "/app/app-key", None).unwrap_err().code, 4007);
    }

    #[test]
    fn event_limits() {
        let c = cfg();
        assert!(check_event(&c, "e", "x").is_ok());
        assert!(check_event(&c, &"e".repeat(201), "x").is_err());
        assert!(check_event(&c, "e", &"x".repeat(10 * 1024 + 1)).is_err());
        assert!(check_event(&c, "", "x").is_err());
    }
}
