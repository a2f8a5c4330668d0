//! The site's side: login tokens carried into the chat, one user across tabs, the HTTP API
//! and the control socket (`chat_connect`), resume across an engine restart, restored history.

mod common;

use std::ffi::{CStr, CString};

use common::*;
use embedchat::ffi::*;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-0123456789";

fn login(sub: &str, name: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "name": name, "exp": unix_now() + 600});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            claims[k] = v;
        }
    }
    token(SECRET, claims)
}

fn names(members: &Value) -> Vec<(String, u64)> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["tabs"].as_u64().unwrap()))
        .collect()
}

/// Sends a ping and waits for its pong: everything sent to `ws` before is then read.
async fn sync(ws: &mut Client) -> Vec<Value> {
    send(ws, r#"{"type":"ping","ref":"sync"}"#).await;
    let mut seen = Vec::new();
    loop {
        let v = recv(ws).await;
        if v["type"] == "pong" {
            return seen;
        }
        seen.push(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_user_is_one_member_however_many_tabs() {
    let e = engine(json!({"auth": {"secret": SECRET}}));
    let mut bob = connect(&e, &format!("token={}", login("2", "Bob", json!({})))).await;
    welcomed(&mut bob).await;

    let ada = login("1", "Ada", json!({}));
    let mut tab1 = connect(&e, &format!("token={ada}&name=Mallory")).await;
    let w1 = welcomed(&mut tab1).await;
    assert_eq!(
        (w1["name"].as_str(), w1["bound"].as_bool()),
        (Some("Ada"), Some(true)),
        "the token names her"
    );
    let mut tab2 = connect(&e, &format!("token={ada}")).await;
    let w2 = welcomed(&mut tab2).await;
    assert_eq!(w2["name"], "Ada", "a second tab is the same user, not Ada-2");
    assert_eq!(names(&w2["members"]), [("Bob".to_string(), 1), ("Ada".to_string(), 2)]);

    let heard = sync(&mut bob).await;
    let joins: Vec<&Value> = heard.iter().filter(|v| v["type"] == "join").collect();
    assert_eq!(joins.len(), 1, "Bob hears Ada join once: {heard:?}");

    // A whisper to Ada reaches both tabs, and Bob's echo.
    send(&mut bob, r#"{"type":"whisper","to":"ada","text":"psst"}"#).await;
    for ws in [&mut tab1, &mut tab2, &mut bob] {
        let w = recv_type(ws, "whisper").await;
        assert_eq!((w["text"].as_str(), w["to"]["name"].as_str()), (Some("psst"), Some("Ada")));
    }

    // The name comes from the login.
    send(&mut tab1, r#"{"type":"nick","name":"Eve"}"#).await;
    assert_eq!(recv_type(&mut tab1, "error").await["code"], "name_bound");

    // Closing one tab is not a leave; closing the last one is.
    tab1.close(None).await.unwrap();
    wait_event(&e, embedchat::EventKind::Disconnect);
    assert!(sync(&mut bob).await.iter().all(|v| v["type"] != "leave"));
    tab2.close(None).await.unwrap();
    let leave = recv_type(&mut bob, "leave").await;
    assert_eq!(leave["user"]["name"], "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_browser_key_joins_its_tabs_and_others_stay_apart() {
    let e = engine(json!({}));
    let key = "k3y-0f-this-browser-123456";
    let mut a = connect(&e, &format!("name=sam&client={key}")).await;
    welcomed(&mut a).await;
    let mut b = connect(&e, &format!("name=other&client={key}")).await;
    let w = welcomed(&mut b).await;
    assert_eq!(w["name"], "sam", "same browser, same user");
    assert_eq!(names(&w["members"]), [("sam".to_string(), 2)]);
    let mut c = connect(&e, "name=sam").await;
    assert_eq!(welcomed(&mut c).await["name"], "sam-2", "a stranger cannot take the name");
    send(&mut a, r#"{"type":"nick","name":"samuel"}"#).await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(recv_type(ws, "nick").await["user"]["name"], "samuel");
    }
    assert!(sync(&mut c).await.iter().all(|v| v["type"] != "nick"), "the room hears the rename once");
}

#[test]
fn bad_tokens_get_401_before_the_upgrade_and_are_counted() {
    let e = engine(json!({"auth": {"secret": SECRET}}));
    let port = e.port();
    let forged = token("some-other-secret-xyz", json!({"sub": "1", "exp": unix_now() + 600}));
    let expired = token(SECRET, json!({"sub": "1", "exp": unix_now() - 3600}));
    let limited = login("1", "Ada", json!({"rooms": ["staff"]}));
    assert_eq!(raw_upgrade(port, "/ws", "").0, 401, "required, and missing");
    assert_eq!(raw_upgrade(port, &format!("/ws?token={forged}"), "").0, 401);
    assert_eq!(raw_upgrade(port, &format!("/ws?token={expired}"), "").0, 401);
    assert_eq!(raw_upgrade(port, "/ws?token=garbage", "").0, 401);
    assert_eq!(raw_upgrade(port, &format!("/ws?token={limited}&room=lobby"), "").0, 403, "room not in token");
    assert_eq!(raw_upgrade(port, &format!("/ws?token={limited}"), "").0, 101, "lands in its first room");
    assert_eq!(e.stats().auth_failures, 5);

    let open = engine(json!({"auth": {"secret": SECRET, "required": false}}));
    assert_eq!(raw_upgrade(open.port(), "/ws?name=anon", "").0, 101, "anonymous allowed");
    assert_eq!(raw_upgrade(open.port(), &format!("/ws?token={forged}"), "").0, 401, "a bad token never is");
}

/// An upgrade request with extra header lines; the status and the whole response head.
fn upgrade_head(port: u16, path: &str, extra: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // A refused request may be cut off mid-write; the answer is still read below.
    let _ = s.write_all(upgrade_request(path, &format!("127.0.0.1:{port}"), extra).as_bytes());
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    (head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0), head)
}

/// A tungstenite client that offers `protocols` in Sec-WebSocket-Protocol, as a browser's
/// `new WebSocket(url, protocols)` does; tungstenite, like browsers, fails the connection unless
/// the server answers one of the offered values.
async fn connect_offering(
    e: &embedchat::Engine,
    query: &str,
    protocols: &str,
) -> Result<(Client, tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>), u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{}/ws?{query}", e.port()).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => Ok(ok),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_sec_websocket_protocol_logs_in_and_is_never_echoed() {
    let e = engine(json!({"auth": {"secret": SECRET}}));
    let t = login("1", "Ada", json!({}));
    let (mut ws, resp) =
        connect_offering(&e, "name=Mallory", &format!("embedchat, embedchat.token.{t}")).await.expect("101");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "embedchat", "the marker, never the token");
    let w = welcomed(&mut ws).await;
    assert_eq!((w["name"].as_str(), w["bound"].as_bool()), (Some("Ada"), Some(true)));

    // Byte for byte: the token appears nowhere in the 101.
    let (status, head) = upgrade_head(
        e.port(),
        "/ws",
        &format!("Sec-WebSocket-Protocol: embedchat\r\nSec-WebSocket-Protocol: embedchat.token.{t}\r\n"),
    );
    assert_eq!(status, 101, "{head}");
    assert!(head.contains("sec-websocket-protocol: embedchat\r\n"), "{head}");
    assert!(!head.contains(&t) && !head.contains("embedchat.token"), "{head}");
    // Without the marker it still logs in; nothing is named, since only the token was offered.
    let (status, head) =
        upgrade_head(e.port(), "/ws", &format!("Sec-WebSocket-Protocol: embedchat.token.{t}\r\n"));
    assert_eq!(status, 101, "{head}");
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    assert_eq!(e.stats().auth_failures, 0);
}

#[test]
fn bad_tokens_in_sec_websocket_protocol_get_401_and_are_counted() {
    let e = engine(json!({"auth": {"secret": SECRET}}));
    let port = e.port();
    let forged = token("some-other-secret-xyz", json!({"sub": "1", "exp": unix_now() + 600}));
    let expired = token(SECRET, json!({"sub": "1", "exp": unix_now() - 3600}));
    let good = login("1", "Ada", json!({}));
    let offer = |t: &str| format!("Sec-WebSocket-Protocol: embedchat, embedchat.token.{t}\r\n");
    assert_eq!(upgrade_head(port, "/ws", &offer(&forged)).0, 401);
    assert_eq!(upgrade_head(port, "/ws", &offer(&expired)).0, 401);
    assert_eq!(upgrade_head(port, "/ws", &offer("garbage")).0, 401);
    assert_eq!(upgrade_head(port, "/ws", &offer("")).0, 401, "an empty token is a bad token");
    let (status, body) = upgrade_head(port, "/ws", "Sec-WebSocket-Protocol: embedchat\r\n");
    assert_eq!(status, 401, "the marker alone is no login: {body}");
    let two = format!("Sec-WebSocket-Protocol: embedchat.token.{good}, embedchat.token.{good}\r\n");
    assert_eq!(upgrade_head(port, "/ws", &two).0, 401, "two tokens");
    assert_eq!(upgrade_head(port, &format!("/ws?token={good}"), &offer(&good)).0, 401, "header and query");
    assert_eq!(e.stats().auth_failures, 7);
    assert_eq!(upgrade_head(port, &format!("/ws?token={good}"), "").0, 101, "?token= still works");

    let off = engine(json!({}));
    assert_eq!(upgrade_head(off.port(), "/ws", &offer(&good)).0, 401, "no auth configured: no tokens");
    let (status, head) = upgrade_head(off.port(), "/ws?name=x", "Sec-WebSocket-Protocol: embedchat\r\n");
    assert_eq!(status, 101);
    assert!(head.contains("sec-websocket-protocol: embedchat\r\n"), "anonymous clients get the marker too");
}

#[test]
fn auth_audience_requires_a_matching_aud_claim() {
    let e = engine(json!({"auth": {"secret": SECRET, "audience": "chat.example"}}));
    let port = e.port();
    let with_aud = |aud: Value| login("1", "Ada", json!({ "aud": aud }));
    let offer = |t: &str| format!("Sec-WebSocket-Protocol: embedchat, embedchat.token.{t}\r\n");
    assert_eq!(upgrade_head(port, "/ws", &offer(&with_aud(json!("chat.example")))).0, 101);
    assert_eq!(upgrade_head(port, &format!("/ws?token={}", with_aud(json!("chat.example"))), "").0, 101);
    let (status, head) = upgrade_head(port, "/ws", &offer(&with_aud(json!("billing.example"))));
    assert_eq!(status, 401, "{head}");
    let (status, head) = upgrade_head(port, "/ws", &offer(&login("1", "Ada", json!({}))));
    assert_eq!(status, 401, "a token without aud: {head}");
    assert_eq!(e.stats().auth_failures, 2);

    let e = engine(json!({"auth": {"secret": SECRET}}));
    assert_eq!(
        upgrade_head(e.port(), "/ws", &offer(&login("1", "Ada", json!({})))).0,
        101,
        "unset: as before"
    );

    let bad = embedchat::Engine::start_json(
        &json!({"listen": "127.0.0.1:0", "auth": {"secret": SECRET, "audience": ""}}).to_string(),
    );
    assert!(bad.err().expect("refused").to_string().contains("auth.audience"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_csp_nosniff_and_no_referrer() {
    let e = engine(json!({}));
    let (status, head, body) = http_response(e.port(), "GET", "/", "", "");
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    let csp = head.lines().find_map(|l| l.strip_prefix("content-security-policy: ")).expect(&head);
    for directive in ["default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'"]
    {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(csp.ends_with("frame-ancestors 'self'"), "framed only by its own origin by default: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(head.contains("\r\nx-content-type-options: nosniff"), "{head}");
    assert!(head.contains("\r\nreferrer-policy: no-referrer"), "{head}");
    assert!(body.contains("<script>"));

    let site = engine(json!({"page_frame_ancestors": ["'self'", "https://site.example"]}));
    let (_, head, _) = http_response(site.port(), "GET", "/", "", "");
    assert!(head.contains("frame-ancestors 'self' https://site.example\r\n"), "{head}");

    for bad in [
        json!([]),
        json!(["https://a.example; script-src *"]),
        json!(["'unsafe-inline'"]),
        json!(["'none'", "'self'"]),
    ] {
        let r = embedchat::Engine::start_json(
            &json!({"listen": "127.0.0.1:0", "page_frame_ancestors": bad}).to_string(),
        );
        let err = r.err().unwrap_or_else(|| panic!("{bad} accepted")).to_string();
        assert!(err.contains("page_frame_ancestors"), "{err}");
    }
}

#[test]
fn metrics_auth_puts_metrics_behind_the_api_key() {
    let key = "api-key-0123456789abcdef";
    let e = engine(json!({"api_key": key, "metrics_auth": true}));
    let port = e.port();
    let (status, head, _) = http_response(port, "GET", "/metrics", "", "");
    assert_eq!(status, 401, "{head}");
    assert!(head.to_ascii_lowercase().contains("www-authenticate: bearer"), "{head}");
    assert_eq!(
        http_response(port, "GET", "/metrics", "Authorization: Bearer wrong-key-0123456789\r\n", "").0,
        401
    );
    assert_eq!(e.stats().api_auth_failures, 2);
    let (status, _, body) =
        http_response(port, "GET", "/metrics", &format!("Authorization: Bearer {key}\r\n"), "");
    assert_eq!(status, 200);
    assert!(body.contains("embedchat_api_auth_failures_total 2"), "{body}");
    assert_eq!(http_response(port, "GET", "/healthz", "", "").0, 200, "health stays open for probes");

    let open = engine(json!({"api_key": key}));
    assert_eq!(http_response(open.port(), "GET", "/metrics", "", "").0, 200, "off by default");
    let r =
        embedchat::Engine::start_json(&json!({"listen": "127.0.0.1:0", "metrics_auth": true}).to_string());
    assert!(r.err().expect("refused without api_key").to_string().contains("metrics_auth"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limited_to_rooms_cannot_join_others() {
    let e = engine(json!({"auth": {"secret": SECRET}}));
    let t = login("5", "Cy", json!({"rooms": ["a", "b"]}));
    let mut ws = connect(&e, &format!("token={t}")).await;
    assert_eq!(welcomed(&mut ws).await["room"], "a");
    let joined = wait_event(&e, embedchat::EventKind::Join);
    assert_eq!(joined.user.as_deref(), Some("5"), "the host learns which site user it is");
    send(&mut ws, r#"{"type":"join","room":"secret"}"#).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "forbidden_room");
    send(&mut ws, r#"{"type":"join","room":"b"}"#).await;
    assert_eq!(recv_type(&mut ws, "presence").await["room"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_publishes_kicks_and_reports_behind_its_key() {
    let key = "api-key-0123456789abcdef";
    let e = engine(json!({"api_key": key, "auth": {"secret": SECRET}}));
    let port = e.port();
    let ada = login("1", "Ada", json!({}));
    let mut t1 = connect(&e, &format!("token={ada}")).await;
    welcomed(&mut t1).await;
    let mut t2 = connect(&e, &format!("token={ada}")).await;
    welcomed(&mut t2).await;
    let auth = format!("Authorization: Bearer {key}\r\n");

    let (status, _) = http(port, "POST", "/api/publish", "Authorization: Bearer wrong\r\n", "{}");
    assert_eq!(status, 401);
    assert_eq!(http(port, "GET", "/api/stats", "", "").0, 401);
    assert_eq!(e.stats().api_auth_failures, 2);

    let (status, body) =
        http(port, "POST", "/api/publish", &auth, r#"{"room":"lobby","text":"Sale at noon","from":"Shop"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["delivered"], 2);
    let m = recv_type(&mut t1, "message").await;
    assert_eq!((m["text"].as_str(), m["from"]["name"].as_str()), (Some("Sale at noon"), Some("Shop")));

    let (status, body) = http(port, "POST", "/api/publish", &auth, r#"{"room":"no\u0000pe","text":"x"}"#);
    assert_eq!(status, 400, "{body}");
    assert_eq!(http(port, "POST", "/api/publish", &auth, r#"{"text":1}"#).0, 400);
    assert_eq!(http(port, "GET", "/api/publish", &auth, "").0, 405);
    assert_eq!(http(port, "POST", "/api/send", &auth, r#"{"id":999,"text":"x"}"#).0, 404);

    let (_, rooms) = http(port, "GET", "/api/rooms", &auth, "");
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    assert_eq!(rooms["rooms"], json!([{"room": "lobby", "users": 1, "connections": 2, "last_id": 1}]));
    let (_, presence) = http(port, "GET", "/api/presence?room=lobby", &auth, "");
    let presence: Value = serde_json::from_str(&presence).unwrap();
    let ada_there = &presence["rooms"]["lobby"]["members"][0];
    assert_eq!((ada_there["user"].as_str(), ada_there["tabs"].as_u64()), (Some("1"), Some(2)));
    let (_, stats) = http(port, "GET", "/api/stats", &auth, "");
    assert_eq!(serde_json::from_str::<Value>(&stats).unwrap()["connections_open"], 2);

    let (status, body) = http(port, "POST", "/api/kick", &auth, r#"{"user":"1","reason":"banned"}"#);
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["kicked"].as_u64()), (200, Some(2)));
    for ws in [&mut t1, &mut t2] {
        assert_eq!(close_code(ws).await, Some(4000.into()));
    }
    let (_, metrics) = http(port, "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_api_auth_failures_total 2"), "{metrics}");

    let off = engine(json!({}));
    assert_eq!(http(off.port(), "GET", "/api/stats", &auth, "").0, 404, "no key configured: no API");
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_connect_drives_a_daemon_through_its_control_socket() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("embedchat-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("chat.sock");
        let sock_s = sock.to_str().unwrap().to_string();
        let e = engine(json!({"control_socket": sock_s}));
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the daemon's user may post");

        let second = embedchat::Engine::start_json(
            &json!({"listen": "127.0.0.1:0", "control_socket": sock_s}).to_string(),
        );
        let err = second.err().expect("a live socket is not taken over").to_string();
        assert!(err.contains("control_socket"), "{err}");

        let mut ws = connect(&e, "name=reader").await;
        let w = welcomed(&mut ws).await;
        let id = w["id"].as_u64().unwrap();

        let path = c(&sock_s);
        let h = chat_connect(path.as_ptr());
        assert!(!h.is_null(), "{}", last_error());
        assert_eq!(chat_port(h), e.port());
        assert_eq!(chat_broadcast(h, c("lobby").as_ptr(), c("from FPM").as_ptr()), 1);
        assert_eq!(recv_type(&mut ws, "message").await["text"], "from FPM");
        assert_eq!(chat_send(h, id, c("just you").as_ptr()), 0);
        assert_eq!(recv_type(&mut ws, "whisper").await["text"], "just you");
        assert_eq!(chat_send(h, 99_999, c("x").as_ptr()), chat_result::CHAT_ERR_UNKNOWN_CONN as i32);
        assert_eq!(chat_broadcast(h, c("").as_ptr(), c("x").as_ptr()), chat_result::CHAT_ERR_INVALID as i32);
        let stats = chat_stats_json(h);
        // SAFETY: a string from chat_stats_json, freed once below.
        let v: Value = serde_json::from_str(CStr::from_ptr(stats).to_str().unwrap()).unwrap();
        chat_string_free(stats);
        assert_eq!(v["connections_open"], 1);
        assert_eq!(
            chat_dispatch(h, 0),
            chat_result::CHAT_ERR_UNSUPPORTED as i32,
            "events stay with the daemon"
        );
        let mut ev = std::ptr::null_mut();
        assert_eq!(chat_poll_event(h, 0, &mut ev), chat_result::CHAT_ERR_UNSUPPORTED as i32);
        assert_eq!(chat_kick(h, id, c("bye").as_ptr()), 0);
        assert_eq!(close_code(&mut ws).await, Some(4000.into()));

        // Another handle, then the daemon stops: calls fail with a clear code, the socket goes.
        let h2 = chat_connect(path.as_ptr());
        assert_eq!(chat_stop(h), 0, "closes the handle, not the daemon");
        assert_eq!(
            chat_broadcast(h, std::ptr::null(), c("x").as_ptr()),
            chat_result::CHAT_ERR_STOPPED as i32
        );
        chat_free(h);
        e.stop().unwrap();
        assert!(!sock.exists(), "the socket file is removed at stop");
        assert_eq!(
            chat_broadcast(h2, std::ptr::null(), c("x").as_ptr()),
            chat_result::CHAT_ERR_CONTROL as i32
        );
        assert!(last_error().contains("chat.sock"), "{}", last_error());
        chat_free(h2);
        assert!(chat_connect(path.as_ptr()).is_null());
        assert!(last_error().contains("cannot reach"), "{}", last_error());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_another_epoch_gets_the_whole_window_with_a_gap() {
    let e = engine(json!({}));
    e.broadcast(Some("r"), "after the restart").unwrap();
    let mut ws = connect(&e, "room=r&since=57&epoch=an-engine-that-is-gone").await;
    let w = recv_type(&mut ws, "welcome").await;
    assert!(w["epoch"].as_str().is_some_and(|s| s != "an-engine-that-is-gone"));
    let h = recv(&mut ws).await;
    assert_eq!(
        (h["gap"].as_bool(), h["messages"][0]["text"].as_str()),
        (Some(true), Some("after the restart"))
    );

    let epoch = w["epoch"].as_str().unwrap();
    let mut same = connect(&e, &format!("room=r&since=1&epoch={epoch}")).await;
    recv_type(&mut same, "welcome").await;
    let h = recv(&mut same).await;
    assert_eq!((h["gap"].as_bool(), h["messages"].as_array().unwrap().len()), (Some(false), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_history_continues_its_ids_across_a_restart() {
    let e = engine(json!({"history_epoch": "db-1"}));
    e.restore("r", 10, 1_700_000_000_000, "ann", "kept 10").unwrap();
    e.restore("r", 11, 1_700_000_000_001, "bob", "kept 11").unwrap();
    assert!(e.restore("r", 11, 0, "x", "again").is_err(), "ids must increase");
    let mut ws = connect(&e, "room=r&since=10&epoch=db-1").await;
    recv_type(&mut ws, "welcome").await;
    let h = recv(&mut ws).await;
    assert_eq!((h["gap"].as_bool(), h["messages"][0]["id"].as_u64()), (Some(false), Some(11)));
    send(&mut ws, "next").await;
    assert_eq!(recv_type(&mut ws, "message").await["id"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_host_reaches_a_daemon_the_way_c_and_php_do() {
    let dir = std::env::temp_dir().join(format!("embedchat-rs-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("chat.sock");
    let daemon = engine(
        json!({"control_socket": sock.to_str().unwrap(), "auth": {"secret": SECRET, "required": false}}),
    );
    let mut ann = connect(&daemon, &format!("token={}", login("7", "Ann", json!({})))).await;
    let w = welcomed(&mut ann).await;

    let site = embedchat::Engine::connect(sock.to_str().unwrap()).expect("connects");
    assert!(site.is_remote());
    assert_eq!(site.port(), daemon.port());
    assert_eq!(site.broadcast(Some("lobby"), "from the site").unwrap(), 1);
    assert_eq!(recv_type(&mut ann, "message").await["text"], "from the site");
    assert_eq!(site.broadcast_from(Some("lobby"), "9 o'clock", "Front desk").unwrap(), 1);
    assert_eq!(recv_type(&mut ann, "message").await["from"]["name"], "Front desk");
    site.send(w["id"].as_u64().unwrap(), "psst").unwrap();
    assert_eq!(recv_type(&mut ann, "whisper").await["text"], "psst");
    let rooms = site.rooms().unwrap();
    assert_eq!((rooms[0].room.as_str(), rooms[0].users, rooms[0].last_id), ("lobby", 1, 2));
    assert_eq!(site.members("lobby").unwrap()[0].1, "Ann");
    assert_eq!(site.stats().connections_open, 1);
    assert!(
        matches!(site.poll_event(None), Err(embedchat::Error::Unsupported(_))),
        "events stay with the daemon"
    );
    assert!(matches!(site.approve(1), Err(embedchat::Error::Unsupported(_))));
    assert!(matches!(site.kick_user("nobody", ""), Err(embedchat::Error::UnknownUser(_))));
    assert_eq!(site.kick_user("7", "signed out").unwrap(), 1);
    assert_eq!(close_code(&mut ann).await, Some(4000.into()));

    site.stop().unwrap();
    assert!(matches!(site.broadcast(None, "x"), Err(embedchat::Error::Stopped)), "a closed handle says so");
    assert!(!daemon.is_stopped(), "stopping the handle leaves the daemon running");
    daemon.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn get_ws_says_what_an_upgrade_would_be_answered_without_connecting() {
    let e = engine(json!({"auth": {"secret": SECRET, "required": true}, "refused_events": true}));
    let port = e.port();
    let (status, head, body) = http_response(port, "GET", "/ws?room=lobby", "", "");
    assert_eq!(status, 401, "{head}");
    assert!(body.contains("a login token is required"), "{body}");
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{head}");
    let bearer = format!("Authorization: Bearer {}\r\n", login("1", "Ada", json!({})));
    let (status, _, body) = http_response(port, "GET", "/ws?room=lobby", &bearer, "");
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http_response(port, "GET", "/ws?room=%20bad", &bearer, "");
    assert_eq!(status, 400, "{body}");
    let expired = token(SECRET, json!({"sub": "1", "name": "Ada", "exp": unix_now() - 600}));
    let (status, _, body) =
        http_response(port, "GET", "/ws", &format!("Authorization: Bearer {expired}\r\n"), "");
    assert_eq!((status, body.trim()), (401, "token expired"));
    // Only asked: nothing counted, nothing reported to the host.
    assert_eq!((e.stats().handshake_rejects, e.stats().auth_failures), (0, 0));
    assert!(e.poll_event(Some(std::time::Duration::from_millis(100))).unwrap().is_none());

    let open = engine(json!({}));
    let (status, _, body) = http_response(open.port(), "GET", "/ws", &bearer, "");
    assert_eq!(status, 401);
    assert!(body.contains("does not accept login tokens"), "not an expired login: {body}");
}

#[test]
fn refused_upgrades_are_reported_to_the_host_when_it_asks() {
    let e = engine(json!({"auth": {"secret": SECRET}, "refused_events": true}));
    let (status, _) = upgrade_head(
        e.port(),
        "/ws?room=lobby",
        "Sec-WebSocket-Protocol: embedchat, embedchat.token.forged\r\n",
    );
    assert_eq!(status, 401);
    let ev = wait_event(&e, embedchat::EventKind::Refused);
    assert_eq!((ev.conn_id, ev.close_code), (0, 401));
    assert!(ev.text.as_deref().is_some_and(|t| t.contains("token")), "{ev:?}");
    assert!(ev.to_json().contains("\"kind\":\"refused\""), "{}", ev.to_json());
    let (status, _) = upgrade_head(e.port(), "/chat", "");
    assert_eq!(status, 404);
    assert_eq!(wait_event(&e, embedchat::EventKind::Refused).close_code, 404);

    let quiet = engine(json!({"auth": {"secret": SECRET}}));
    assert_eq!(upgrade_head(quiet.port(), "/ws", "").0, 401);
    assert!(
        quiet.poll_event(Some(std::time::Duration::from_millis(100))).unwrap().is_none(),
        "off by default"
    );
}

#[test]
fn the_admin_page_is_served_with_its_own_csp_only_with_an_api_key() {
    let e = engine(json!({"api_key": "api-key-0123456789abcdef"}));
    let (status, head, body) = http_response(e.port(), "GET", "/admin", "", "");
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    let csp = head.lines().find_map(|l| l.strip_prefix("content-security-policy: ")).expect(&head);
    assert!(csp.contains("script-src 'sha256-") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(body.contains("embedchat admin"));
    let (status, head, body) = http_response(e.port(), "GET", "/favicon.svg", "", "");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: image/svg+xml"), "{head}");
    assert!(body.starts_with("<svg"));

    let off = engine(json!({}));
    let (status, _, body) = http_response(off.port(), "GET", "/admin", "", "");
    assert_eq!(status, 404);
    assert!(body.contains("api_key"), "{body}");
}
