//! What the server sends. Every message is an `Out`; a connection's `Wire` turns it into text:
//! typed JSON (the default), or the seed tutorial's `{"mess", "name"}`, which carries chat text
//! only. The wire is chosen once per connection, so the rest of the engine never asks which
//! protocol it speaks: it builds an `Out`, and a wire that does not carry it gives nothing.
//! The Pusher wire (`pusher.rs`) is the third: the same `Out`s as Pusher Channels events.

use serde::Serialize;
use serde_json::Value;

/// Who sent something, as it appears on the wire. `bound`: the name comes from the site's
/// login (a page shows it as verified); written only when true.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct User<'a> {
    pub id: u64,
    pub name: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    pub bound: bool,
}

impl<'a> User<'a> {
    /// An anonymous sender (or the host, id 0).
    pub fn named(id: u64, name: &'a str) -> Self {
        User { id, name, bound: false }
    }
}

/// A user in a member list: `id` is one of its connections (whisper to it reaches them all),
/// `tabs` how many of its connections are in the room, `bound` as for `User`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Member<'a> {
    pub id: u64,
    pub name: &'a str,
    pub tabs: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub bound: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One server message, before encoding.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Out<'a> {
    /// The first message of a connection: who it is, where it is, who else is there.
    Welcome {
        id: u64,
        name: &'a str,
        /// The name comes from the site's login token; `nick` is refused.
        bound: bool,
        room: &'a str,
        /// The engine's history epoch (sent back with `since` when resuming).
        epoch: &'a str,
        /// Who is in the room, in a room up to `presence_limit` users; else absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<&'a [Member<'a>]>,
        /// How many users are in the room, in a room past `presence_limit`; else absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<usize>,
    },
    Presence {
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        members: Option<&'a [Member<'a>]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<usize>,
    },
    /// A big room's presence, batched: how many are in it now, who came and who went since the
    /// last one (names up to a cap; `others` counts the comings and goings not named).
    Crowd {
        room: &'a str,
        count: usize,
        joined: &'a [&'a str],
        left: &'a [&'a str],
        others: u32,
    },
    /// A page of a room's member list, in answer to `members`.
    Members {
        room: &'a str,
        /// Users in the room (matching the prefix, if one was given).
        count: usize,
        offset: usize,
        members: &'a [Member<'a>],
        /// Further pages exist.
        more: bool,
    },
    Message {
        room: &'a str,
        id: u64,
        ts: u64,
        from: User<'a>,
        text: &'a str,
    },
    Join {
        room: &'a str,
        user: User<'a>,
    },
    Leave {
        room: &'a str,
        user: User<'a>,
    },
    Whisper {
        ts: u64,
        from: User<'a>,
        to: User<'a>,
        text: &'a str,
    },
    Nick {
        room: &'a str,
        user: User<'a>,
        old: &'a str,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    /// A named event in a room: a Pusher client's `client-*` event, or one published through
    /// the Pusher HTTP API. The JSON wire writes it as a `message` whose `text` is `data` and
    /// whose `event` is the name; the Pusher wire as the event itself (`docs/pusher.md`).
    #[serde(skip)]
    Event {
        room: &'a str,
        id: u64,
        ts: u64,
        from: User<'a>,
        event: &'a str,
        data: &'a str,
    },
    /// Pusher presence: a user's first connection subscribed to a presence channel
    /// (`user_info`: JSON). Only the Pusher wire carries it.
    #[serde(skip)]
    MemberAdded {
        room: &'a str,
        user_id: &'a str,
        user_info: &'a str,
    },
    /// Pusher presence: a user's last connection left a presence channel.
    #[serde(skip)]
    MemberRemoved {
        room: &'a str,
        user_id: &'a str,
    },
    /// Pusher: a subscription took effect; `data` is the presence hash (JSON) or `{}`.
    #[serde(skip)]
    Subscribed {
        room: &'a str,
        data: &'a str,
    },
    /// Stored messages (each already a JSON object), oldest first; see `history`.
    #[serde(skip)]
    History {
        room: &'a str,
        messages: &'a [&'a str],
        gap: bool,
        more: bool,
        /// More pages of the same history follow.
        partial: bool,
    },
}

/// How one connection's messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Typed JSON messages (`docs/protocol.md`).
    Json,
    /// The tutorial's `{"mess": text, "name": sender}` for chat text, and nothing else.
    Seed,
    /// Pusher Channels protocol 7 (`pusher.rs`, `docs/pusher.md`): chosen per connection by
    /// the endpoint it connected to (`/app/{key}`), whatever the config's `protocol`.
    Pusher,
}

/// How one connection's messages are sent: its wire, and the compressor window it negotiated
/// with permessage-deflate (0: not negotiated; see `deflate.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub wire: Wire,
    pub deflate: u8,
}

impl Wire {
    /// How many wires there are (fan-out keeps one encoding per wire).
    pub const COUNT: usize = 3;

    /// A small number per wire, below `COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether clients on this wire send only plain chat text (no JSON commands).
    pub fn plain_text_only(self) -> bool {
        self == Wire::Seed
    }

    /// The text of `out` on this wire, or None when this wire does not carry it.
    pub fn encode(self, out: &Out<'_>) -> Option<String> {
        match self {
            Wire::Json => Some(match out {
                Out::History { room, messages, gap, more, partial } => {
                    history(room, messages.iter().copied(), *gap, *more, *partial)
                }
                Out::Event { room, id, ts, from, event, data } => {
                    event_message(room, *id, *ts, *from, event, data)
                }
                Out::MemberAdded { .. } | Out::MemberRemoved { .. } | Out::Subscribed { .. } => return None,
                // Serializing plain strings and integers cannot fail.
                other => serde_json::to_string(other).unwrap_or_default(),
            }),
            Wire::Seed => match out {
                Out::Message { from, text, .. }
                | Out::Whisper { from, text, .. }
                | Out::Event { from, data: text, .. } => Some(seed_message(text, from.name)),
                _ => None,
            },
            Wire::Pusher => super::pusher::encode(out),
        }
    }
}

/// A chat message as JSON (what rooms keep in their history).
pub fn message(room: &str, id: u64, ts: u64, from: User<'_>, text: &str) -> String {
    Wire::Json.encode(&Out::Message { room, id, ts, from, text }).unwrap_or_default()
}

/// A named event as the JSON wire writes it (and rooms keep it): a `message` with `event`.
pub fn event_message(room: &str, id: u64, ts: u64, from: User<'_>, event: &str, data: &str) -> String {
    #[derive(Serialize)]
    struct EventMessage<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        room: &'a str,
        id: u64,
        ts: u64,
        from: User<'a>,
        text: &'a str,
        event: &'a str,
    }
    let m = EventMessage { kind: "message", room, id, ts, from, text: data, event };
    serde_json::to_string(&m).unwrap_or_default()
}

#[cfg(test)]
pub fn error(code: &str, message: &str, reference: Option<&Value>) -> String {
    Wire::Json.encode(&Out::Error { code, message, reference }).unwrap_or_default()
}

/// A `history` message from stored message objects (each already JSON), oldest first. `gap`:
/// the client asked to resume from a message older than the window, so some are missing;
/// `more`: older ones can be paged back; `partial`: more pages of this history follow.
/// Built by hand so the stored objects are copied in as they are, not parsed again.
pub fn history<'a>(
    room: &str,
    messages: impl Iterator<Item = &'a str>,
    gap: bool,
    more: bool,
    partial: bool,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"type":"history","room":"#);
    out.push_str(&serde_json::to_string(room).unwrap_or_default());
    out.push_str(&format!(r#","gap":{gap},"more":{more},"#));
    if partial {
        out.push_str(r#""partial":true,"#);
    }
    out.push_str(r#""messages":["#);
    for (i, m) in messages.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push_str("]}");
    out
}

/// The seed tutorial's chat message, byte for byte what its `json_encode` produced
/// (PHP escapes `/` and non-ASCII; browsers decode both the same, so we keep serde's form).
pub fn seed_message(text: &str, sender: &str) -> String {
    #[derive(Serialize)]
    struct Seed<'a> {
        mess: &'a str,
        name: &'a str,
    }
    serde_json::to_string(&Seed { mess: text, name: sender }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_client;

    #[test]
    fn errors_carry_the_ref_of_a_readable_command() {
        let e = parse_client(r#"{"type":"fly","ref":"r1"}"#, false).unwrap_err();
        assert_eq!((e.code, e.reference), ("unknown_type", Some(Value::from("r1"))));
        let v: Value = serde_json::from_str(&error("x", "y", Some(&Value::from(9)))).unwrap();
        assert_eq!(v["ref"], 9);
    }

    #[test]
    fn history_is_a_json_array_of_the_stored_messages() {
        let m1 = message("r", 1, 5, User::named(1, "a"), "one");
        let m2 = message("r", 2, 6, User::named(1, "a"), "two");
        let v: Value = serde_json::from_str(&history(
            "r\"oom",
            [m1.as_str(), m2.as_str()].into_iter(),
            true,
            false,
            false,
        ))
        .unwrap();
        assert_eq!(v["room"], "r\"oom");
        assert_eq!(v["gap"], true);
        assert_eq!(v["messages"][1]["text"], "two");
        let empty: Value =
            serde_json::from_str(&history("r", std::iter::empty(), false, false, true)).unwrap();
        assert_eq!(empty["messages"], serde_json::json!([]));
        assert_eq!(empty["partial"], true);
        assert!(v.get("partial").is_none(), "only pages that others follow say so");
    }

    #[test]
    fn message_encoding_has_every_field() {
        let v: Value =
            serde_json::from_str(&message("lobby", 7, 123, User::named(3, "bob"), "<b>hi")).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "lobby");
        assert_eq!(v["id"], 7);
        assert_eq!(v["ts"], 123);
        assert_eq!(v["from"]["id"], 3);
        assert_eq!(v["from"]["name"], "bob");
        assert_eq!(v["text"], "<b>hi");
    }

    #[test]
    fn seed_message_is_exactly_mess_then_name() {
        assert_eq!(seed_message("hi \"you\"", "bob"), r#"{"mess":"hi \"you\"","name":"bob"}"#);
    }

    #[test]
    fn seed_carries_chat_text_only() {
        let from = User::named(1, "ann");
        let m = Out::Message { room: "r", id: 1, ts: 2, from, text: "hi" };
        assert_eq!(Wire::Seed.encode(&m).as_deref(), Some(r#"{"mess":"hi","name":"ann"}"#));
        assert_eq!(Wire::Seed.encode(&Out::Join { room: "r", user: from }), None);
        assert_eq!(Wire::Seed.encode(&Out::Pong { reference: None }), None);
        assert!(Wire::Json.encode(&Out::Join { room: "r", user: from }).unwrap().contains("\"join\""));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn any_chat_text_round_trips_through_the_server_encoding(text in any::<String>(), name in ".{1,32}") {
            let v: Value = serde_json::from_str(&message("r", 1, 2, User::named(3, &name), &text)).unwrap();
            prop_assert_eq!(v["text"].as_str(), Some(text.as_str()));
            let v: Value = serde_json::from_str(&seed_message(&text, &name)).unwrap();
            prop_assert_eq!(v["mess"].as_str(), Some(text.as_str()));
        }
    }
}
