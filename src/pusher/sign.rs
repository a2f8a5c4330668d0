//! Pusher's two signatures, both HMAC-SHA256 with the app secret, written in lowercase hex:
//! a channel subscription's `auth` (`key:hex(HMAC(secret, "socket_id:channel[:channel_data]"))`,
//! what a site's auth endpoint returns), and an HTTP API request's `auth_signature`
//! (over `"METHOD\nPATH\nsorted query"`, the query without `auth_signature`, keys sorted, values
//! as given, joined `k=v&…`).

use ring::hmac;

/// How old an API request's `auth_timestamp` may be, in seconds (either way: a clock ahead is
/// as wrong as one behind), as Pusher refuses them.
pub const MAX_SKEW_SECS: u64 = 600;

/// HMAC-SHA256 of `msg` under `secret`, in lowercase hex.
pub fn hmac_hex(secret: &str, msg: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hex(hmac::sign(&key, msg.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first differing byte (the time an answer takes must not
/// tell how much of a guessed signature was right).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `auth` a site's endpoint returns for a subscription: `key:signature`. `channel_data`
/// only for presence channels.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let msg = match channel_data {
        Some(d) => format!("{socket_id}:{channel}:{d}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{key}:{}", hmac_hex(secret, &msg))
}

/// The `auth` of a user signin: over `"socket_id::user::user_data"`.
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!("{key}:{}", hmac_hex(secret, &format!("{socket_id}::user::{user_data}")))
}

/// Whether a subscription's `auth` is the one the app's secret gives.
pub fn channel_auth_ok(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    given: &str,
) -> bool {
    same(given, &channel_auth(key, secret, socket_id, channel, channel_data))
}

/// Why an API request's signature was refused (the 401's text).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsigned(pub String);

/// Checks an HTTP API request: `query` its decoded parameters, `body` its bytes, `now` the
/// Unix time in seconds.
pub fn check_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<(), Unsigned> {
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let refuse = |why: &str| Err(Unsigned(why.into()));
    match get("auth_key") {
        None => return refuse("auth_key is missing"),
        Some(k) if k != key => return refuse("auth_key is not this app's key"),
        _ => {}
    }
    if get("auth_version").is_some_and(|v| v != "1.0") {
        return refuse("only auth_version 1.0 is supported");
    }
    let Some(ts) = get("auth_timestamp").and_then(|t| t.parse::<u64>().ok()) else {
        return refuse("auth_timestamp is missing or not a number");
    };
    if now.abs_diff(ts) > MAX_SKEW_SECS {
        return refuse("auth_timestamp is more than 600 seconds from the server's time (check the clock)");
    }
    let md5 = hex(&digest_md5::compute(body));
    match get("body_md5") {
        Some(m) if !same(m, &md5) => return refuse("body_md5 does not match the body"),
        None if !body.is_empty() => return refuse("body_md5 is missing"),
        _ => {}
    }
    let Some(given) = get("auth_signature") else { return refuse("auth_signature is missing") };
    if !same(given, &hmac_hex(secret, &string_to_sign(method, path, query))) {
        return refuse("invalid signature: check the app key and secret");
    }
    Ok(())
}

/// `METHOD\nPATH\nk=v&…`: every parameter but `auth_signature`, keys lowercased and sorted.
pub fn string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
    let mut params: Vec<(String, &str)> = query
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    params.sort();
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}\n{path}\n{}", q.join("&"))
}

mod digest_md5 {
    use md5::{Digest, Md5};

    pub fn compute(bytes: &[u8]) -> [u8; 16] {
        Md5::digest(bytes).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of Pusher's own documentation (channel auth and HTTP API signing).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_auth_matches_pushers_example() {
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None),
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let good = channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None);
        assert!(channel_auth_ok(KEY, SECRET, "1234.1234", "private-foobar", None, &good));
        assert!(!channel_auth_ok(KEY, SECRET, "1234.1235", "private-foobar", None, &good));
    }

    #[test]
    fn presence_channel_auth_matches_pushers_example() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data)),
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn api_signature_matches_pushers_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(hex(&digest_md5::compute(body)), "ec365a775a4cd0599faeb73354201b6f");
        let mut query = q(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        ]);
        let sts = string_to_sign("POST", "/apps/3/events", &query);
        assert_eq!(
            sts,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            hmac_hex(SECRET, &sts),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        query.push(("auth_signature".into(), hmac_hex(SECRET, &sts)));
        let check = |q: &[(String, String)], body: &[u8], now| {
            check_request(KEY, SECRET, "POST", "/apps/3/events", q, body, now)
        };
        assert_eq!(check(&query, body, 1353088179 + 10), Ok(()));
        assert!(check(&query, body, 1353088179 + 601).is_err(), "too old");
        assert!(check(&query, b"{}", 1353088179).is_err(), "another body");
        assert!(
            check_request(KEY, "wrong-secret", "POST", "/apps/3/events", &query, body, 1353088179).is_err()
        );
        let no_sig = &query[..4];
        assert!(check(no_sig, body, 1353088179).is_err());
    }
}
