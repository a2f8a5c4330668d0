//! What clients send: one text message is plain chat text or a JSON command object.

use serde_json::{Map, Value};

/// A command parsed from one client text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Chat text for `room` (None = the connection's current room).
    Message { room: Option<String>, text: String },
    /// Join a room (and make it current); `since` = the last message id seen there (resume),
    /// `epoch` = the engine epoch that id is from (from `welcome`).
    Join { room: String, since: Option<u64>, epoch: Option<String> },
    /// Leave a room.
    Leave { room: String },
    /// Older messages of a room: up to `limit` with ids below `before` (None = the newest).
    History { room: String, before: Option<u64>, limit: Option<u64> },
    /// A private message to a user (by name, every tab) or one connection (by id).
    Whisper { to: Target, text: String },
    /// A new display name.
    Nick { name: String },
    /// A page of a room's member list (big rooms send counts, not lists): `limit` users from
    /// `offset`, only names starting with `prefix` (any case) if given.
    Members { room: String, offset: Option<u64>, limit: Option<u64>, prefix: Option<String> },
    /// Application-level ping; answered with `pong`.
    Ping,
}

/// Who a whisper is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Id(u64),
    Name(String),
}

/// A parsed command and the client's `ref` (any JSON), echoed in the reply or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub cmd: Command,
    pub reference: Option<Value>,
}

/// Why a client message was refused; sent back as an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Stable machine-readable code (`bad_json`, `unknown_type`, `bad_field`, …).
    pub code: &'static str,
    pub message: String,
    /// The command's `ref`, when the command was readable enough to have one.
    pub reference: Option<Value>,
}

fn perr(code: &'static str, message: impl Into<String>) -> ProtocolError {
    ProtocolError { code, message: message.into(), reference: None }
}

/// Parses one client text message.
///
/// Text whose first non-blank character is `{` must be a JSON command object with a string
/// `type`; anything else is plain chat text for the current room (what the seed page sends).
/// With `plain_only` (seed protocol) every message is plain text.
pub fn parse_client(text: &str, plain_only: bool) -> Result<Request, ProtocolError> {
    if plain_only || !text.trim_start().starts_with('{') {
        return Ok(Request { cmd: Command::Message { room: None, text: text.to_string() }, reference: None });
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| perr("bad_json", format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(perr("bad_json", "a command must be a JSON object"));
    };
    let reference = obj.get("ref").cloned();
    command(&obj)
        .map(|cmd| Request { cmd, reference: reference.clone() })
        .map_err(|e| ProtocolError { reference, ..e })
}

fn command(obj: &Map<String, Value>) -> Result<Command, ProtocolError> {
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(perr("bad_field", "`type` must be a string")),
        None => return Err(perr("bad_field", "missing `type`")),
    };
    match kind {
        "message" => Ok(Command::Message { room: opt_str(obj, "room")?, text: req_str(obj, "text")? }),
        "join" => Ok(Command::Join {
            room: req_str(obj, "room")?,
            since: opt_u64(obj, "since")?,
            epoch: opt_str(obj, "epoch")?,
        }),
        "leave" => Ok(Command::Leave { room: req_str(obj, "room")? }),
        "history" => Ok(Command::History {
            room: req_str(obj, "room")?,
            before: opt_u64(obj, "before")?,
            limit: opt_u64(obj, "limit")?,
        }),
        "whisper" => {
            let to = match obj.get("to") {
                Some(Value::String(s)) => Target::Name(s.clone()),
                Some(Value::Number(n)) => Target::Id(
                    n.as_u64().ok_or_else(|| perr("bad_field", "`to` must be a name or a connection id"))?,
                ),
                _ => return Err(perr("bad_field", "`to` must be a name or a connection id")),
            };
            Ok(Command::Whisper { to, text: req_str(obj, "text")? })
        }
        "nick" => Ok(Command::Nick { name: req_str(obj, "name")? }),
        "members" => Ok(Command::Members {
            room: req_str(obj, "room")?,
            offset: opt_u64(obj, "offset")?,
            limit: opt_u64(obj, "limit")?,
            prefix: opt_str(obj, "prefix")?,
        }),
        "ping" => Ok(Command::Ping),
        other => Err(perr("unknown_type", format!("unknown message type `{}`", clip(other, 40)))),
    }
}

fn opt_u64(obj: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, ProtocolError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| perr("bad_field", format!("`{key}` must be a whole number")))
        }
    }
}

fn req_str(obj: &Map<String, Value>, key: &'static str) -> Result<String, ProtocolError> {
    opt_str(obj, key)?.ok_or_else(|| perr("bad_field", format!("missing `{key}`")))
}

fn opt_str(obj: &Map<String, Value>, key: &'static str) -> Result<Option<String>, ProtocolError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(perr("bad_field", format!("`{key}` must be a string"))),
    }
}

fn clip(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_message_to_the_current_room() {
        assert_eq!(
            parse_client("hello there", false).unwrap().cmd,
            Command::Message { room: None, text: "hello there".into() }
        );
    }

    #[test]
    fn seed_mode_treats_braces_as_text() {
        assert_eq!(
            parse_client("{not json", true).unwrap().cmd,
            Command::Message { room: None, text: "{not json".into() }
        );
    }

    #[test]
    fn json_message_with_room() {
        let c = parse_client(r#"{"type":"message","room":"dev","text":"hi","ref":3}"#, false).unwrap();
        assert_eq!(c.cmd, Command::Message { room: Some("dev".into()), text: "hi".into() });
        assert_eq!(c.reference, Some(Value::from(3)));
    }

    #[test]
    fn new_commands_parse_with_their_fields() {
        let p = |t: &str| parse_client(t, false).map(|r| r.cmd);
        assert_eq!(
            p(r#"{"type":"join","room":"a","since":41}"#),
            Ok(Command::Join { room: "a".into(), since: Some(41), epoch: None })
        );
        assert_eq!(
            p(r#"{"type":"history","room":"a","before":10,"limit":5}"#),
            Ok(Command::History { room: "a".into(), before: Some(10), limit: Some(5) })
        );
        assert_eq!(
            p(r#"{"type":"whisper","to":"bob","text":"psst"}"#),
            Ok(Command::Whisper { to: Target::Name("bob".into()), text: "psst".into() })
        );
        assert_eq!(
            p(r#"{"type":"whisper","to":7,"text":"x"}"#).unwrap(),
            Command::Whisper { to: Target::Id(7), text: "x".into() }
        );
        assert_eq!(p(r#"{"type":"nick","name":"zed"}"#), Ok(Command::Nick { name: "zed".into() }));
        assert_eq!(p(r#"{"type":"join","room":"a","since":-1}"#).unwrap_err().code, "bad_field");
        assert_eq!(p(r#"{"type":"whisper","to":[1],"text":"x"}"#).unwrap_err().code, "bad_field");
    }

    #[test]
    fn malformed_json_is_an_error_not_text() {
        assert_eq!(parse_client("{oops", false).unwrap_err().code, "bad_json");
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!("{{\"type\":\"message\",\"text\":{deep}}}");
        assert_eq!(parse_client(&text, false).unwrap_err().code, "bad_json");
    }

    #[test]
    fn unknown_type_and_wrong_field_types_are_errors() {
        assert_eq!(parse_client(r#"{"type":"dance"}"#, false).unwrap_err().code, "unknown_type");
        assert_eq!(parse_client(r#"{"type":7}"#, false).unwrap_err().code, "bad_field");
        assert_eq!(parse_client(r#"{"type":"message","text":12}"#, false).unwrap_err().code, "bad_field");
        assert_eq!(parse_client(r#"{"type":"join"}"#, false).unwrap_err().code, "bad_field");
        assert_eq!(parse_client(r#"[1,2]"#, false).map(|_| ()), Ok(()), "not an object: plain text");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const CODES: [&str; 4] = ["bad_json", "bad_field", "unknown_type", "bad_room"];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            ".{0,20}".prop_map(Value::from),
            prop_oneof![
                Just("message"),
                Just("join"),
                Just("leave"),
                Just("ping"),
                Just("type"),
                Just("text")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("text".to_string()),
                        Just("room".to_string()),
                        ".{0,6}"
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_or_gets_a_known_error_code(text in ".{0,200}") {
            if let Err(e) = parse_client(&text, false) {
                prop_assert!(CODES.contains(&e.code), "{:?}", e);
            }
        }

        #[test]
        fn any_json_document_parses_or_gets_a_known_error_code(v in json_value()) {
            let text = format!("{{\"type\":\"message\",\"text\":\"hi\",\"x\":{v}}}");
            prop_assert!(parse_client(&text, false).is_ok());
            if let Err(e) = parse_client(&v.to_string(), false) {
                prop_assert!(CODES.contains(&e.code), "{:?}", e);
            }
        }
    }
}
