//! The Pusher Channels protocol, version 7, both ways: what a Pusher client (pusher-js, Laravel
//! Echo) sends, parsed into `In`, and what the server sends, from the same `Out`s every other
//! wire encodes. Pure, like the rest of `protocol/`; the session glue is `src/pusher/`.
//!
//! Every server frame is `{"event", "channel"?, "data"}` where `data` is itself JSON written
//! as a string (pusher-js parses it again), except `pusher:error`, whose `data` is an object,
//! as Pusher sends it. A message that did not come from a Pusher client (the host, the JSON
//! protocol's clients) is the event `message` with the JSON message object as its data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::encode::{Out, User};

/// The event name messages from outside the Pusher protocol carry (`docs/pusher.md`).
pub const MESSAGE_EVENT: &str = "message";

/// What a Pusher client asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum In {
    Ping,
    /// An answer to a `pusher:ping` of ours (nothing to do: it was activity).
    Pong,
    Subscribe {
        channel: String,
        /// `key:signature` from the site's auth endpoint (private and presence channels).
        auth: Option<String>,
        /// Presence channels: the JSON the signature also covers (`user_id`, `user_info`).
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    /// A `client-*` event for the other subscribers of `channel`; `data` as JSON text, or the
    /// string itself when the client sent a string.
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    /// User authentication: `auth` signs `user_data` (JSON with an `id`) for this socket.
    Signin {
        auth: String,
        user_data: String,
    },
    /// Something this server does not do (unknown `pusher:` events): refused with this name.
    Unsupported(String),
}

/// The kinds of channel, from the name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Public,
    Private,
    /// `private-encrypted-`: authorised like a private channel; the server passes the
    /// ciphertext through (it never holds the key) and takes no client events.
    Encrypted,
    Presence,
}

impl Kind {
    pub fn of(channel: &str) -> Kind {
        if channel.starts_with("private-encrypted-") {
            Kind::Encrypted
        } else if channel.starts_with("private-") {
            Kind::Private
        } else if channel.starts_with("presence-") {
            Kind::Presence
        } else {
            Kind::Public
        }
    }

    /// Whether a subscription needs an `auth` signature.
    pub fn authorised(self) -> bool {
        self != Kind::Public
    }
}

#[derive(Deserialize)]
struct Frame {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    user_data: String,
}

#[derive(Deserialize)]
struct SubscribeData {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

/// Parses one client frame. The error is the text of the `pusher:error` to answer.
pub fn parse(text: &str) -> Result<In, String> {
    let f: Frame = serde_json::from_str(text).map_err(|e| format!("not a Pusher frame: {e}"))?;
    // Some clients send `data` as a JSON string, pusher-js as an object: both are taken.
    let object = |data: Value| -> Result<Value, String> {
        match data {
            Value::String(s) => serde_json::from_str(&s).map_err(|e| format!("`data` is not JSON: {e}")),
            other => Ok(other),
        }
    };
    match f.event.as_str() {
        "pusher:ping" => Ok(In::Ping),
        "pusher:pong" => Ok(In::Pong),
        "pusher:subscribe" => {
            let d: SubscribeData = serde_json::from_value(object(f.data)?)
                .map_err(|e| format!("pusher:subscribe needs data.channel: {e}"))?;
            Ok(In::Subscribe { channel: d.channel, auth: d.auth, channel_data: d.channel_data })
        }
        "pusher:signin" => {
            let d: SigninData = serde_json::from_value(object(f.data)?)
                .map_err(|e| format!("pusher:signin needs data.auth and data.user_data: {e}"))?;
            Ok(In::Signin { auth: d.auth, user_data: d.user_data })
        }
        "pusher:unsubscribe" => {
            let d: SubscribeData = serde_json::from_value(object(f.data)?)
                .map_err(|e| format!("pusher:unsubscribe needs data.channel: {e}"))?;
            Ok(In::Unsubscribe { channel: d.channel })
        }
        e if e.starts_with("client-") => {
            let channel = f.channel.ok_or("a client event needs a `channel`")?;
            let data = match f.data {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Ok(In::ClientEvent { event: f.event, channel, data })
        }
        other => Ok(In::Unsupported(other.to_string())),
    }
}

/// How long a cache channel's last event is given to new subscribers (Pusher's 30 minutes).
pub const CACHE_TTL_MS: u64 = 30 * 60 * 1000;

/// Whether `channel` is a cache channel: a new subscriber gets its last event at once, or
/// `pusher:cache_miss`.
pub fn is_cache(channel: &str) -> bool {
    ["cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"]
        .iter()
        .any(|p| channel.starts_with(p))
}

/// A kept message (its JSON, as rooms keep it) as the event it was: a named event's name and
/// data, or `message` with the message object as data; None once older than `CACHE_TTL_MS`.
pub fn cached_event(json: &str, now_ms: u64) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(json).ok()?;
    if now_ms.saturating_sub(v["ts"].as_u64()?) > CACHE_TTL_MS {
        return None;
    }
    Some(match (v["event"].as_str(), v["text"].as_str()) {
        (Some(event), Some(data)) => (event.to_string(), data.to_string()),
        _ => (MESSAGE_EVENT.to_string(), json.to_string()),
    })
}

/// Checks a channel name as Pusher does (letters, digits and `_-=@,.;`), within `max_chars`.
pub fn validate_channel(name: &str, max_chars: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max_chars {
        return Err(format!("a channel name has 1 to {max_chars} characters"));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_alphanumeric() && !"_-=@,.;".contains(*c)) {
        return Err(format!("`{c}` is not allowed in a channel name (letters, digits and _-=@,.;)"));
    }
    Ok(())
}

/// A presence subscriber as its `channel_data` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUser {
    /// `user_id`, as a string (a number is written as its digits).
    pub user_id: String,
    /// `user_info` as JSON text (`null` when absent).
    pub user_info: String,
}

/// Reads a presence subscription's `channel_data`.
pub fn presence_user(channel_data: &str) -> Result<PresenceUser, String> {
    let v: Value =
        serde_json::from_str(channel_data).map_err(|e| format!("channel_data is not JSON: {e}"))?;
    let user_id = match v.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("channel_data needs a `user_id` (a string or a number)".into()),
    };
    if user_id.len() > 128 {
        return Err("a user_id has at most 128 characters".into());
    }
    let user_info = v.get("user_info").map_or_else(|| "null".to_string(), Value::to_string);
    Ok(PresenceUser { user_id, user_info })
}

/// The prefix of the channel a signed-in user's connections hear events sent to the user on
/// (`POST /apps/{app_id}/users/{id}/events`); pusher-js subscribes to it after `signin_success`.
pub const USER_CHANNEL: &str = "#server-to-user-";

/// The `id` of a signin's `user_data`.
pub fn signin_user(user_data: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(user_data).map_err(|e| format!("user_data is not JSON: {e}"))?;
    match v.get("id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
        _ => Err("user_data needs an `id`: a string of 1 to 128 characters".into()),
    }
}

/// `pusher:signin_success`, its data carrying `user_data` as signed.
pub fn signin_success(user_data: &str) -> String {
    frame("pusher:signin_success", None, &serde_json::json!({ "user_data": user_data }).to_string())
}

/// The `data` of a presence channel's `subscription_succeeded`: every user once, in order.
pub fn presence_data<'a>(users: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut ids: Vec<&str> = Vec::new();
    let mut hash = serde_json::Map::new();
    for (id, info) in users {
        if hash.contains_key(id) {
            continue;
        }
        ids.push(id);
        hash.insert(id.to_string(), serde_json::from_str(info).unwrap_or(Value::Null));
    }
    let count = ids.len();
    serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": count}}).to_string()
}

#[derive(Serialize)]
struct ServerFrame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    /// JSON text, written as a string.
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// A server frame whose `data` is `data` (JSON text) written as a string.
pub fn frame(event: &str, channel: Option<&str>, data: &str) -> String {
    serde_json::to_string(&ServerFrame { event, channel, data, user_id: None }).unwrap_or_default()
}

/// The first frame of a connection.
pub fn established(socket_id: &str, activity_timeout: u64) -> String {
    let data = serde_json::json!({"socket_id": socket_id, "activity_timeout": activity_timeout});
    frame("pusher:connection_established", None, &data.to_string())
}

pub fn pong() -> String {
    frame("pusher:pong", None, "{}")
}

/// `pusher:error`: `code` is one of Pusher's (4001 app not found, 4007 protocol, 4009
/// unauthorised, 4301 client event rejected…) or None for an error that does not close.
pub fn error(code: Option<u16>, message: &str) -> String {
    serde_json::json!({"event": "pusher:error", "data": {"code": code, "message": message}}).to_string()
}

/// A refused subscription, on its channel (pusher-js and Echo hand it to the channel's
/// `error` callbacks), as Soketi and Reverb send it.
pub fn subscription_error(channel: &str, status: u16, message: &str) -> String {
    let data = serde_json::json!({"type": "AuthError", "error": message, "status": status});
    serde_json::json!({"event": "pusher:subscription_error", "channel": channel, "data": data}).to_string()
}

/// The text of `out` on the Pusher wire, or None when Pusher clients do not get it.
pub fn encode(out: &Out<'_>) -> Option<String> {
    Some(match out {
        Out::Message { room, id, ts, from, text } => {
            frame(MESSAGE_EVENT, Some(room), &super::message(room, *id, *ts, *from, text))
        }
        Out::Event { room, event, data, from, .. } => event_frame(room, event, data, *from),
        Out::MemberAdded { room, user_id, user_info } => {
            let info: Value = serde_json::from_str(user_info).unwrap_or(Value::Null);
            let data = serde_json::json!({"user_id": user_id, "user_info": info});
            frame("pusher_internal:member_added", Some(room), &data.to_string())
        }
        Out::MemberRemoved { room, user_id } => {
            let data = serde_json::json!({"user_id": user_id});
            frame("pusher_internal:member_removed", Some(room), &data.to_string())
        }
        Out::Subscribed { room, data } => frame("pusher_internal:subscription_succeeded", Some(room), data),
        Out::Error { message, .. } => error(None, message),
        // Presence of the JSON protocol, whispers, nicks, history, pongs: none of Pusher's.
        _ => return None,
    })
}

/// An event as subscribers get it. A client event on a presence channel also names its
/// sender's `user_id`, as Pusher does; the hub passes it as the sender's name.
fn event_frame(room: &str, event: &str, data: &str, from: User<'_>) -> String {
    let user_id = (event.starts_with("client-") && Kind::of(room) == Kind::Presence).then_some(from.name);
    serde_json::to_string(&ServerFrame { event, channel: Some(room), data, user_id }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_frames_parse_with_data_as_object_or_string() {
        let a = parse(r#"{"event":"pusher:subscribe","data":{"channel":"private-a","auth":"k:s"}}"#).unwrap();
        assert_eq!(
            a,
            In::Subscribe { channel: "private-a".into(), auth: Some("k:s".into()), channel_data: None }
        );
        let b = parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}"#).unwrap();
        assert_eq!(b, In::Subscribe { channel: "news".into(), auth: None, channel_data: None });
        assert!(parse(r#"{"event":"pusher:subscribe","data":{}}"#).is_err());
        assert!(parse("nonsense").is_err());
        assert_eq!(parse(r#"{"event":"pusher:ping","data":{}}"#).unwrap(), In::Ping);
        assert!(parse(r#"{"event":"pusher:signin","data":{}}"#).is_err());
        let s =
            parse(r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"7\"}"}}"#).unwrap();
        assert_eq!(s, In::Signin { auth: "k:s".into(), user_data: r#"{"id":"7"}"#.into() });
        assert_eq!(signin_user(r#"{"id":"7","user_info":{}}"#).unwrap(), "7");
        assert!(signin_user(r#"{"id":7}"#).is_err(), "pusher-js wants a string id");
        assert_eq!(
            parse(r#"{"event":"pusher:cache","data":{}}"#).unwrap(),
            In::Unsupported("pusher:cache".into())
        );
    }

    #[test]
    fn client_events_keep_their_data_as_json_text() {
        let e = parse(r#"{"event":"client-typing","channel":"private-a","data":{"who":"ann"}}"#).unwrap();
        assert_eq!(
            e,
            In::ClientEvent {
                event: "client-typing".into(),
                channel: "private-a".into(),
                data: r#"{"who":"ann"}"#.into()
            }
        );
        let s = parse(r#"{"event":"client-x","channel":"private-a","data":"plain"}"#).unwrap();
        assert!(matches!(s, In::ClientEvent { data, .. } if data == "plain"));
        assert!(parse(r#"{"event":"client-x","data":1}"#).is_err(), "no channel");
    }

    #[test]
    fn channel_kinds_come_from_the_prefix() {
        assert_eq!(Kind::of("news"), Kind::Public);
        assert_eq!(Kind::of("private-a"), Kind::Private);
        assert_eq!(Kind::of("private-encrypted-a"), Kind::Encrypted);
        assert_eq!(Kind::of("presence-a"), Kind::Presence);
        assert!(validate_channel("private-chat.1=@,;_", 64).is_ok());
        assert!(validate_channel("a b", 64).is_err());
        assert!(validate_channel("", 64).is_err());
        assert!(validate_channel(&"x".repeat(65), 64).is_err());
    }

    #[test]
    fn cache_channels_replay_their_last_event_within_the_ttl() {
        assert!(is_cache("cache-a") && is_cache("presence-cache-a") && is_cache("private-encrypted-cache-a"));
        assert!(!is_cache("news") && !is_cache("private-a"));
        let ev =
            crate::protocol::event_message("cache-a", 1, 1_000, User::named(0, "h"), "temp", "{\"c\":20}");
        assert_eq!(cached_event(&ev, 2_000), Some(("temp".into(), "{\"c\":20}".into())));
        assert_eq!(cached_event(&ev, 1_000 + CACHE_TTL_MS + 1), None);
        let m = crate::protocol::message("cache-a", 2, 1_000, User::named(0, "h"), "hi");
        assert_eq!(cached_event(&m, 2_000), Some(("message".into(), m.clone())));
    }

    #[test]
    fn presence_users_and_the_presence_hash() {
        let u = presence_user(r#"{"user_id":7,"user_info":{"name":"Ann"}}"#).unwrap();
        assert_eq!(u, PresenceUser { user_id: "7".into(), user_info: r#"{"name":"Ann"}"#.into() });
        assert_eq!(presence_user(r#"{"user_id":"b"}"#).unwrap().user_info, "null");
        assert!(presence_user(r#"{"user_info":{}}"#).is_err());
        let d: Value = serde_json::from_str(&presence_data(
            [("7", r#"{"name":"Ann"}"#), ("8", "null"), ("7", r#"{"name":"Ann"}"#)].into_iter(),
        ))
        .unwrap();
        assert_eq!(d["presence"]["ids"], serde_json::json!(["7", "8"]));
        assert_eq!(d["presence"]["count"], 2);
        assert_eq!(d["presence"]["hash"]["7"]["name"], "Ann");
    }

    #[test]
    fn server_frames_carry_data_as_a_json_string() {
        let v: Value = serde_json::from_str(&established("12.34", 120)).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            (data["socket_id"].as_str(), data["activity_timeout"].as_u64()),
            (Some("12.34"), Some(120))
        );
        let e: Value = serde_json::from_str(&error(Some(4001), "no such app")).unwrap();
        assert_eq!(
            (e["data"]["code"].as_u64(), e["data"]["message"].as_str()),
            (Some(4001), Some("no such app"))
        );
    }

    #[test]
    fn messages_from_other_protocols_are_message_events() {
        let out = Out::Message { room: "news", id: 3, ts: 9, from: User::named(0, "system"), text: "hi" };
        let v: Value = serde_json::from_str(&encode(&out).unwrap()).unwrap();
        assert_eq!((v["event"].as_str(), v["channel"].as_str()), (Some("message"), Some("news")));
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!((data["text"].as_str(), data["id"].as_u64()), (Some("hi"), Some(3)));
        let ev = Out::Event {
            room: "news",
            id: 4,
            ts: 9,
            from: User::named(0, "system"),
            event: "e",
            data: "{\"a\":1}",
        };
        let v: Value = serde_json::from_str(&encode(&ev).unwrap()).unwrap();
        assert_eq!((v["event"].as_str(), v["data"].as_str()), (Some("e"), Some("{\"a\":1}")));
        assert!(v.get("user_id").is_none());
        let j: Value = serde_json::from_str(&crate::protocol::Wire::Json.encode(&ev).unwrap()).unwrap();
        assert_eq!(
            (j["type"].as_str(), j["event"].as_str(), j["text"].as_str()),
            (Some("message"), Some("e"), Some("{\"a\":1}"))
        );
        assert_eq!(encode(&Out::Pong { reference: None }), None);
        let c = Out::Event {
            room: "presence-r",
            id: 1,
            ts: 1,
            from: User::named(5, "u7"),
            event: "client-x",
            data: "1",
        };
        assert_eq!(serde_json::from_str::<Value>(&encode(&c).unwrap()).unwrap()["user_id"], "u7");
    }
}
