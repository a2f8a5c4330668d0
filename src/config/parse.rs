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
    err, AdmissionConfig, ChatConfig, Config, ConfigError, EventsConfig, HistoryConfig, LimitsConfig,
    ModerationConfig, SiteConfig,
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
        // PHP's json_encode writes an empty map as `[]`.
        let value = if key == "rooms" && value.as_array().is_some_and(Vec::is_empty) {
            Value::Object(Map::new())
        } else {
            value
        };
        map.insert(key, value);
    }
    let map = Value::Object(map);
    let mut cfg: Config = group(&map)?;
    cfg.chat = group(&map)?;
    cfg.history = group(&map)?;
    cfg.moderation = group(&map)?;
    cfg.limits = group(&map)?;
    cfg.admission = group(&map)?;
    cfg.events = group(&map)?;
    cfg.site = group(&map)?;
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
            return Err(err(key, format!("unknown key{hint}; the README lists every key")));
        }
    }
    Ok(())
}

/// Reads one group from the whole object, naming the key of any error.
fn group<T: DeserializeOwned>(map: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(map).map_err(|e| {
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

/// serde's messages name Rust types ("expected usize"); a host's author thinks in JSON.
fn plain_words(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected a map", "expected an object"),
        ("expected a sequence", "expected a list"),
        ("expected struct AuthConfig", "expected an object"),
        ("expected struct RoomConfig", "expected an object"),
        ("expected struct TlsConfig", "expected an object"),
        ("invalid type: ", ""),
        ("invalid value: ", ""),
    ] {
        out = out.replace(rust, plain);
    }
    if let Some(i) = out.find(", expected one of") {
        // "unknown variant `x`, expected one of `a`, `b`": keep the choices, they help.
        out.replace_range(i..i + 2, "; ");
    }
    out
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
    fn php_empty_arrays_are_empty_objects() {
        assert!(from_json("[]").is_ok());
        assert!(from_json(r#"{"rooms": []}"#).is_ok());
    }

    #[test]
    fn every_group_reports_its_fields() {
        assert!(field_names::<Config>().contains(&"listen"));
        assert!(field_names::<Config>().iter().all(|f| *f != "chat"), "groups are not keys");
        assert!(field_names::<SiteConfig>().contains(&"api_key"));
    }
}
