//! Reading the JSON config into the grouped `Config`, with errors a host can act on: the key at
//! fault, plain words instead of Rust type names, the line and column of a syntax error, and a
//! suggestion for a misspelt key.
//!
//! Each group is read from the same top-level object (serde ignores the keys of other groups);
//! the keys no group knows are refused here, by comparing with the field names serde itself
//! reports for each group, so a new field is known the moment it is declared.

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    err, AdmissionConfig, ChatConfig, ClusterConfig, Config, ConfigError, EventsConfig, HistoryConfig,
    LimitsConfig, ModerationConfig, SiteConfig,
};

pub(super) fn from_json(text: &str) -> Result<Config, ConfigError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let top: Top = serde_json::from_str(text).map_err(|e| {
        err("", format!("not valid JSON at line {} column {}: {}", e.line(), e.column(), strip_position(&e)))
    })?;
    let entries = match top {
        Top::Object(entries) => entries,
        Top::Other(other) => return Err(err("", format!("must be a JSON object, not {}", kind_of(&other)))),
    };
    // In the order written, so the first mistake is the one reported.
    check_known_keys(&entries)?;
    let mut map = Map::new();
    for (key, value) in entries {
        if map.contains_key(&key) {
            return Err(err(&key, "given twice"));
        }
        map.insert(key, value);
    }
    let mut map = Value::Object(map);
    let mut cfg: Config = group(&mut map)?;
    cfg.chat = group(&mut map)?;
    cfg.history = group(&mut map)?;
    cfg.moderation = group(&mut map)?;
    cfg.limits = group(&mut map)?;
    cfg.admission = group(&mut map)?;
    cfg.events = group(&mut map)?;
    cfg.site = group(&mut map)?;
    cfg.cluster = group(&mut map)?;
    Ok(cfg)
}

/// Every top-level key, group by group.
fn known_keys() -> Vec<&'static str> {
    [
        field_names::<Config>(),
        field_names::<ChatConfig>(),
        field_names::<HistoryConfig>(),
        field_names::<ModerationConfig>(),
        field_names::<LimitsConfig>(),
        field_names::<AdmissionConfig>(),
        field_names::<EventsConfig>(),
        field_names::<SiteConfig>(),
        field_names::<ClusterConfig>(),
    ]
    .concat()
}

/// The top-level document: an object's entries in the order written (PHP's `[]` is an empty
/// object), or any other value, to be refused.
enum Top {
    Object(Vec<(String, Value)>),
    Other(Value),
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut m: A) -> Result<Top, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Top::Object(entries))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Top, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = s.next_element::<Value>()? {
                    items.push(v);
                }
                Ok(if items.is_empty() { Top::Object(Vec::new()) } else { Top::Other(Value::Array(items)) })
            }
            fn visit_bool<E>(self, v: bool) -> Result<Top, E> {
                Ok(Top::Other(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Top, E> {
                Ok(Top::Other(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Top, E> {
                Ok(Top::Other(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Top, E> {
                Ok(Top::Other(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Top, E> {
                Ok(Top::Other(Value::from(v)))
            }
            fn visit_unit<E>(self) -> Result<Top, E> {
                Ok(Top::Other(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

fn check_known_keys(entries: &[(String, Value)]) -> Result<(), ConfigError> {
    let known = known_keys();
    for (key, _) in entries {
        if !known.contains(&key.as_str()) {
            let hint = known
                .iter()
                .map(|k| (distance(key, k), *k))
                .filter(|(d, k)| *d <= 2.max(k.len() / 4))
                .min()
                .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(err(key, format!("unknown key{hint}; docs/config.md lists every key")));
        }
    }
    Ok(())
}

/// Reads one group from the whole object, naming the key of any error.
///
/// A list where the group takes an object is refused as a list, before serde, which would read
/// a struct from a list by position (`"auth": ["…"]` as a secret) — except an empty list: PHP's
/// `json_encode` writes an empty array for an empty map, so `"auth": []` or
/// `"rooms": {"ticker": []}` from a PHP host mean `{}`.
fn group<T: DeserializeOwned>(map: &mut Value) -> Result<T, ConfigError> {
    for path in list_paths(map, "") {
        if !object_expected::<T>(map, &path) {
            continue;
        }
        match at_path(map, &path) {
            Some(v) if v.as_array().is_some_and(Vec::is_empty) => *v = Value::Object(Map::new()),
            _ => return Err(err(&path, "expected an object, not a list")),
        }
    }
    serde_path_to_error::deserialize(&*map).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        // serde reports an unknown field at the parent's path; name the field itself.
        let key = match (path.as_str(), unknown_field(&msg)) {
            (".", Some(f)) | ("", Some(f)) => f,
            (".", None) => String::new(),
            (p, _) => p.to_string(),
        };
        err(&key, plain_words(&msg))
    })
}

/// Whether `T` takes an object (a struct or a map) at `path`: asked of serde, by putting a
/// value of the wrong kind there and reading what it expected instead.
fn object_expected<T: DeserializeOwned>(map: &Value, path: &str) -> bool {
    let mut probe = map.clone();
    let Some(v) = at_path(&mut probe, path) else { return false };
    *v = Value::Bool(true);
    match serde_path_to_error::deserialize::<_, T>(&probe) {
        Err(e) if e.path().to_string() == path => {
            let msg = e.inner().to_string();
            msg.contains("expected struct") || msg.contains("expected a map")
        }
        _ => false,
    }
}

/// The paths of every list in `v`, written as serde_path_to_error writes them (`a.b`, `a[1]`).
fn list_paths(v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Array(items) => {
            if !at.is_empty() {
                out.push(at.to_string());
            }
            for (i, item) in items.iter().enumerate() {
                out.extend(list_paths(item, &format!("{at}[{i}]")));
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let p = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                out.extend(list_paths(item, &p));
            }
        }
        _ => {}
    }
    out
}

/// The value at a path as serde_path_to_error writes it (`rooms.ticker`, `trusted_proxies[1]`).
fn at_path<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut v = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            v = v.as_object_mut()?.get_mut(name)?;
        }
        for i in indexes.split('[').filter(|i| !i.is_empty()) {
            v = v.as_array_mut()?.get_mut(i.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde_json appends " at line 1 column 17"; the message says where already.
fn strip_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// serde's messages name Rust types and serde's data model ("invalid type: sequence, expected
/// usize"); a host's author thinks in JSON ("expected a whole number (0 or more), not a list").
fn plain_words(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, want)) = msg.strip_prefix(prefix).and_then(|m| m.split_once(", expected ")) {
            return format!("expected {}, not {}", wanted(want), given(got));
        }
    }
    if let Some(i) = msg.find(", expected one of") {
        // "unknown variant `x`, expected one of `a`, `b`": keep the choices, they help.
        let mut out = msg.to_string();
        out.replace_range(i..i + 2, "; ");
        return out;
    }
    msg.to_string()
}

/// What serde expected, in JSON's words.
fn wanted(want: &str) -> String {
    let plain = match want {
        "usize" | "u64" | "u32" => "a whole number (0 or more)",
        "u16" => "a whole number from 0 to 65535",
        "u8" => "a whole number from 0 to 255",
        "i64" | "i32" => "a whole number",
        "f64" | "f32" => "a number",
        "a map" => "an object",
        "a sequence" => "a list",
        "a boolean" => "true or false",
        w if w.starts_with("struct ") => "an object",
        w => return w.to_string(),
    };
    plain.to_string()
}

/// What was found instead, as it looks in the JSON (serde says "sequence", "unit value"…).
fn given(got: &str) -> String {
    let code = |s: &str| s.trim_matches('`').to_string();
    match got {
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "unit value" => "null".into(),
        g if g.starts_with("string ") => format!("the string {}", &g["string ".len()..]),
        g if g.starts_with("integer ") => code(&g["integer ".len()..]),
        g if g.starts_with("floating point ") => code(&g["floating point ".len()..]),
        g if g.starts_with("boolean ") => code(&g["boolean ".len()..]),
        g => g.to_string(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The field names serde would accept for `T` (a struct), asked of serde itself.
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_miss_gets_a_suggestion() {
        let e = from_json(r#"{"lisen": "127.0.0.1:0"}"#).unwrap_err();
        assert_eq!(e.key, "lisen");
        assert!(e.message.contains("did you mean `listen`?"), "{e}");
        let e = from_json(r#"{"zzzz": 1}"#).unwrap_err();
        assert!(!e.message.contains("did you mean"), "{e}");
    }

    #[test]
    fn errors_speak_json_not_rust() {
        let e = from_json(r#"{"max_message_bytes": "big"}"#).unwrap_err();
        assert!(e.message.contains("a whole number"), "{e}");
        assert!(!e.message.contains("usize"), "{e}");
        let e = from_json("{\n  \"listen\": \"x\",\n  oops\n}").unwrap_err();
        assert!(e.message.contains("line 3 column"), "{e}");
        let e = from_json("42").unwrap_err();
        assert!(e.message.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn a_key_given_twice_is_refused_and_the_first_mistake_is_named() {
        let e = from_json(r#"{"listen": "127.0.0.1:0", "listen": "127.0.0.1:1"}"#).unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("listen", "given twice"));
        let e = from_json(r#"{"zeta": 1, "alpha": 2}"#).unwrap_err();
        assert_eq!(e.key, "zeta", "in the order written");
    }

    #[test]
    fn php_empty_arrays_are_empty_objects_where_objects_are_expected() {
        assert!(from_json("[]").is_ok());
        assert!(from_json(r#"{"rooms": []}"#).is_ok());
        let c = from_json(r#"{"rooms": {"ticker": []}}"#).unwrap();
        assert_eq!(c.chat.rooms["ticker"], super::super::RoomConfig::default());
        // An empty `auth` is still missing its secret, said as such, not as a type error.
        let e = from_json(r#"{"auth": []}"#).unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("auth", "missing field `secret`"));
        // Lists stay lists, and a non-empty list is no object.
        assert!(from_json(r#"{"trusted_proxies": []}"#).unwrap().admission.trusted_proxies.is_empty());
        // Not read by position either: a list is no object.
        for json in [
            r#"{"rooms": {"ticker": [1]}}"#,
            r#"{"auth": ["0123456789abcdef0"]}"#,
            r#"{"rooms": ["ticker"]}"#,
        ] {
            let e = from_json(json).unwrap_err();
            let key = if json.contains("ticker\": [") {
                "rooms.ticker"
            } else {
                json[2..].split('"').next().unwrap()
            };
            assert_eq!(
                (e.key.as_str(), e.message.as_str()),
                (key, "expected an object, not a list"),
                "{json}"
            );
        }
        assert_eq!(from_json(r#"{"allowed_origins": ["*"]}"#).unwrap().admission.allowed_origins, ["*"]);
    }

    #[test]
    fn type_errors_name_json_types_and_what_was_given() {
        let msg = |json: &str| from_json(json).unwrap_err().message;
        assert_eq!(
            msg(r#"{"max_rooms": "many"}"#),
            r#"expected a whole number (0 or more), not the string "many""#
        );
        assert_eq!(msg(r#"{"max_rooms": -1}"#), "expected a whole number (0 or more), not -1");
        assert_eq!(msg(r#"{"max_rooms": 1.5}"#), "expected a whole number (0 or more), not 1.5");
        assert_eq!(msg(r#"{"max_rooms": null}"#), "expected a whole number (0 or more), not null");
        assert_eq!(msg(r#"{"ipv6_prefix": 300}"#), "expected a whole number from 0 to 255, not 300");
        assert_eq!(msg(r#"{"echo": "yes"}"#), r#"expected true or false, not the string "yes""#);
        assert_eq!(msg(r#"{"allowed_origins": "*"}"#), r#"expected a list, not the string "*""#);
        assert_eq!(msg(r#"{"auth": "secret"}"#), r#"expected an object, not the string "secret""#);
        assert_eq!(msg(r#"{"listen": 8080}"#), "expected a string, not 8080");
        for json in [r#"{"rooms": 1}"#, r#"{"auth": true}"#, r#"{"control_socket_uids": [true]}"#] {
            let m = msg(json);
            for rust in ["usize", "u32", "struct", "sequence", "map", "unit value", "invalid type"] {
                assert!(!m.contains(rust), "{json}: {m}");
            }
        }
    }

    #[test]
    fn every_group_reports_its_fields() {
        assert!(field_names::<Config>().contains(&"listen"));
        assert!(field_names::<Config>().iter().all(|f| *f != "chat"), "groups are not keys");
        assert!(field_names::<SiteConfig>().contains(&"api_key"));
    }
}
