//! The Pusher protocol over real sockets, with the JSON protocol's clients and the host in the
//! same rooms: the endpoint's refusals (4001, 4007), the handshake, ping, subscriptions and
//! their signatures, messages crossing between the two protocols both ways, the host's events,
//! the private rooms a JSON client cannot join. (Third-party clients: tests/pusher/*.test.js.)

mod common;

use common::*;
use embedchat::EventKind;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const KEY: &str = "rust-app-key";
const SECRET: &str = "rust-app-secret-0123456789";

fn pusher_engine(extra: Value) -> embedchat::Engine {
    let mut cfg = json!({"pusher": {"app_id": "7", "key": KEY, "secret": SECRET, "client_events": true}});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    engine(cfg)
}

fn hmac_hex(secret: &str, msg: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, msg.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

async fn pusher(e: &embedchat::Engine, key: &str, protocol: &str) -> Client {
    let url = format!("ws://127.0.0.1:{}/app/{key}?protocol={protocol}&client=js&version=8.4.0", e.port());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Next frame as JSON, with its `data` string parsed (Pusher sends data as JSON text).
async fn event(ws: &mut Client) -> Value {
    let mut v = recv(ws).await;
    if let Some(s) = v["data"].as_str() {
        if let Ok(d) = serde_json::from_str::<Value>(s) {
            v["data"] = d;
        }
    }
    v
}

/// Connects and reads `connection_established`; returns the socket and its socket id.
async fn established(e: &embedchat::Engine) -> (Client, String) {
    let mut ws = pusher(e, KEY, "7").await;
    let hello = event(&mut ws).await;
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    assert_eq!(hello["data"]["activity_timeout"], 120);
    (ws, hello["data"]["socket_id"].as_str().unwrap().to_string())
}

async fn subscribe(ws: &mut Client, socket_id: &str, channel: &str) {
    let auth = format!("{KEY}:{}", hmac_hex(SECRET, &format!("{socket_id}:{channel}")));
    let frame = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
    send(ws, &frame.to_string()).await;
    let ok = event(ws).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded", "{ok}");
    assert_eq!(ok["channel"], channel);
}

#[tokio::test]
async fn a_wrong_key_or_protocol_gets_pushers_error_and_close_code() {
    let e = pusher_engine(json!({}));
    let mut ws = pusher(&e, "not-the-key", "7").await;
    let err = recv(&mut ws).await;
    assert_eq!(
        (err["event"].as_str(), err["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4001)),
        "{err}"
    );
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::from(4001)));

    let mut ws = pusher(&e, KEY, "3").await;
    let err = recv(&mut ws).await;
    assert_eq!(err["data"]["code"], 4007, "{err}");
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::from(4007)));
    e.stop().unwrap();
}

#[tokio::test]
async fn without_the_pusher_key_there_is_no_pusher_endpoint_or_api() {
    let e = engine(json!({}));
    let (status, _) = raw_upgrade(e.port(), "/app/x?protocol=7", "");
    assert_eq!(status, 404);
    let (status, _) = http(e.port(), "POST", "/apps/1/events", "", "{}");
    assert_eq!(status, 404);
    e.stop().unwrap();
}

#[tokio::test]
async fn handshake_ping_and_socket_ids() {
    let e = pusher_engine(json!({}));
    let (mut a, id_a) = established(&e).await;
    let (_b, id_b) = established(&e).await;
    for id in [&id_a, &id_b] {
        let (x, y) = id.split_once('.').unwrap();
        assert!(x.bytes().chain(y.bytes()).all(|c| c.is_ascii_digit()), "{id}");
    }
    assert_ne!(id_a, id_b);
    send(&mut a, r#"{"event":"pusher:ping","data":{}}"#).await;
    assert_eq!(event(&mut a).await["event"], "pusher:pong");
    send(&mut a, r#"{"event":"pusher:teleport","data":{}}"#).await;
    let err = event(&mut a).await;
    assert_eq!(err["event"], "pusher:error");
    assert!(err["data"]["message"].as_str().unwrap().contains("not supported"), "{err}");
    e.stop().unwrap();
}

#[tokio::test]
async fn private_channels_need_the_apps_signature() {
    let e = pusher_engine(json!({}));
    let (mut ws, socket_id) = established(&e).await;
    // Signed for another socket: refused on the channel, as pusher-js expects.
    let auth = format!("{KEY}:{}", hmac_hex(SECRET, "1.1:private-x"));
    send(
        &mut ws,
        &json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": auth}}).to_string(),
    )
    .await;
    let err = event(&mut ws).await;
    assert_eq!(
        (err["event"].as_str(), err["channel"].as_str()),
        (Some("pusher:subscription_error"), Some("private-x"))
    );
    assert_eq!(err["data"]["status"], 401);
    send(&mut ws, r#"{"event":"pusher:subscribe","data":{"channel":"private-x"}}"#).await;
    assert_eq!(event(&mut ws).await["data"]["status"], 401, "no auth at all");
    subscribe(&mut ws, &socket_id, "private-x").await;
    // A client event on a public channel is refused; on a private one it goes through.
    subscribe(&mut ws, &socket_id, "open").await;
    send(&mut ws, r#"{"event":"client-x","channel":"open","data":{}}"#).await;
    assert_eq!(event(&mut ws).await["event"], "pusher:error");
    e.stop().unwrap();
}

#[tokio::test]
async fn messages_cross_between_json_and_pusher_clients_in_a_room() {
    let e = pusher_engine(json!({"api_key": "0123456789abcdef-key"}));
    let mut j = connect(&e, "room=news&name=jay").await;
    welcomed(&mut j).await;
    let (mut p, socket_id) = established(&e).await;
    subscribe(&mut p, &socket_id, "news").await;
    let joined = recv_type(&mut j, "join").await;
    assert_eq!(joined["user"]["name"], socket_id.as_str(), "the JSON client sees the Pusher client come");

    // JSON client → Pusher client: the event `message`, the message object as data.
    send(&mut j, r#"{"type":"message","room":"news","text":"hi from json"}"#).await;
    let m = event(&mut p).await;
    assert_eq!((m["event"].as_str(), m["channel"].as_str()), (Some("message"), Some("news")), "{m}");
    assert_eq!(
        (m["data"]["text"].as_str(), m["data"]["from"]["name"].as_str()),
        (Some("hi from json"), Some("jay"))
    );
    assert_eq!(recv_type(&mut j, "message").await["text"], "hi from json", "its own, as always");

    // The host's broadcast → both.
    e.broadcast(Some("news"), "from the host").unwrap();
    assert_eq!(event(&mut p).await["data"]["text"], "from the host");
    assert_eq!(recv_type(&mut j, "message").await["text"], "from the host");

    // The Pusher HTTP API → the JSON client sees a message with its event name.
    let body = json!({"name": "alert", "channel": "news", "data": "{\"level\":2}"}).to_string();
    let path = signed_path("POST", "/apps/7/events", &body, SECRET);
    let (status, reply) = http(e.port(), "POST", &path, "", &body);
    assert_eq!(status, 200, "{reply}");
    let m = recv_type(&mut j, "message").await;
    assert_eq!((m["event"].as_str(), m["text"].as_str()), (Some("alert"), Some("{\"level\":2}")), "{m}");
    let pm = event(&mut p).await;
    assert_eq!((pm["event"].as_str(), pm["data"]["level"].as_u64()), (Some("alert"), Some(2)));

    // A wrong secret: 401, and nothing delivered.
    let path = signed_path("POST", "/apps/7/events", &body, "not-the-secret-0123456789");
    assert_eq!(http(e.port(), "POST", &path, "", &body).0, 401);
    e.stop().unwrap();
}

/// `path?auth_…&auth_signature=…` as Pusher's libraries sign it.
fn signed_path(method: &str, path: &str, body: &str, secret: &str) -> String {
    use md5::{Digest, Md5};
    let md5: String = Md5::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let query = format!("auth_key={KEY}&auth_timestamp={}&auth_version=1.0&body_md5={md5}", unix_now());
    let sig = hmac_hex(secret, &format!("{method}\n{path}\n{query}"));
    format!("{path}?{query}&auth_signature={sig}")
}

#[tokio::test]
async fn the_host_sees_pusher_clients_connect_join_send_and_leave() {
    let e = pusher_engine(json!({}));
    let (mut a, id_a) = established(&e).await;
    let (mut b, id_b) = established(&e).await;
    assert_eq!(wait_event(&e, EventKind::Connect).name.as_deref(), Some(id_a.as_str()));
    subscribe(&mut a, &id_a, "private-room").await;
    let join = wait_event(&e, EventKind::Join);
    assert_eq!(join.room.as_deref(), Some("private-room"));
    subscribe(&mut b, &id_b, "private-room").await;
    send(&mut a, r#"{"event":"client-typing","channel":"private-room","data":{"on":true}}"#).await;
    let got = event(&mut b).await;
    assert_eq!((got["event"].as_str(), got["data"]["on"].as_bool()), (Some("client-typing"), Some(true)));
    let msg = wait_event(&e, EventKind::Message);
    let text: Value = serde_json::from_str(msg.text.as_deref().unwrap()).unwrap();
    assert_eq!(text, json!({"event": "client-typing", "data": "{\"on\":true}"}));
    send(&mut a, r#"{"event":"pusher:unsubscribe","data":{"channel":"private-room"}}"#).await;
    assert_eq!(wait_event(&e, EventKind::Leave).room.as_deref(), Some("private-room"));
    e.stop().unwrap();
}

#[tokio::test]
async fn a_json_client_cannot_join_a_private_or_presence_room() {
    let e = pusher_engine(json!({}));
    let (status, _) = raw_upgrade(e.port(), "/ws?room=private-x", "");
    assert_eq!(status, 403);
    let mut j = connect(&e, "name=jo").await;
    welcomed(&mut j).await;
    send(&mut j, r#"{"type":"join","room":"presence-x"}"#).await;
    let err = recv_type(&mut j, "error").await;
    assert_eq!(err["code"], "forbidden_room", "{err}");
    e.stop().unwrap();
}

#[tokio::test]
async fn client_events_are_refused_unless_configured() {
    let e = engine(json!({"pusher": {"app_id": "7", "key": KEY, "secret": SECRET}}));
    let (mut a, id) = established(&e).await;
    subscribe(&mut a, &id, "private-q").await;
    send(&mut a, r#"{"event":"client-x","channel":"private-q","data":{}}"#).await;
    let err = event(&mut a).await;
    assert!(err["data"]["message"].as_str().unwrap().contains("client_events"), "{err}");
    e.stop().unwrap();
}

#[tokio::test]
async fn a_chat_that_requires_a_login_refuses_pusher_clients_too() {
    let e = pusher_engine(json!({"auth": {"secret": "login-secret-0123456789"}}));
    let (status, _) = raw_upgrade(e.port(), &format!("/app/{KEY}?protocol=7"), "");
    assert_eq!(status, 401, "Pusher clients carry no login token");
    e.stop().unwrap();
}

/// A `redis-server` of the test's own on a free port (no persistence), killed at the end.
struct TestRedis(std::process::Child, u16, std::path::PathBuf);

impl TestRedis {
    fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("embedchat-pusher-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/test installs it)");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        TestRedis(child, port, dir)
    }
}

impl TestRedis {
    /// SIGSTOP (hung: connections open, no answers) or SIGCONT.
    fn signal(&self, sig: &str) {
        let pid = self.0.id().to_string();
        assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

#[tokio::test]
async fn in_a_cluster_pusher_events_cross_nodes() {
    let redis = TestRedis::start();
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let a = pusher_engine(json!({"redis_url": url}));
    let b = pusher_engine(json!({"redis_url": url}));
    let (mut pa, id_a) = established(&a).await;
    let (mut pb, id_b) = established(&b).await;
    subscribe(&mut pa, &id_a, "private-team").await;
    subscribe(&mut pb, &id_b, "private-team").await;
    subscribe(&mut pa, &id_a, "news").await;
    let mut jb = connect(&b, "room=news&name=jo").await;
    welcomed(&mut jb).await;

    // An API event to node B reaches the Pusher client on node A, and B's JSON client.
    let body = json!({"name": "alert", "channel": "news", "data": "{\"n\":1}"}).to_string();
    let path = signed_path("POST", "/apps/7/events", &body, SECRET);
    // The rooms' watches may still be starting: the event is sent until A's client has it.
    let deadline = std::time::Instant::now() + WAIT;
    let got = loop {
        assert_eq!(http(b.port(), "POST", &path, "", &body).0, 200);
        let next = tokio::time::timeout(std::time::Duration::from_millis(500), event(&mut pa)).await;
        if let Ok(v) = next {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "no event on node A");
    };
    assert_eq!((got["event"].as_str(), got["data"]["n"].as_u64()), (Some("alert"), Some(1)), "{got}");
    let m = recv_type(&mut jb, "message").await;
    assert_eq!((m["event"].as_str(), m["text"].as_str()), (Some("alert"), Some("{\"n\":1}")));

    // A client event from A's client reaches B's, and not its sender.
    send(&mut pa, r#"{"event":"client-ping","channel":"private-team","data":{"k":2}}"#).await;
    let mut seen = event(&mut pb).await;
    while seen["event"] != "client-ping" {
        seen = event(&mut pb).await;
    }
    assert_eq!(seen["data"]["k"], 2);
    send(&mut pa, r#"{"event":"pusher:ping","data":{}}"#).await;
    loop {
        let v = event(&mut pa).await;
        assert_ne!(v["event"], "client-ping", "the sender does not get its own");
        if v["event"] == "pusher:pong" {
            break;
        }
    }
    a.stop().unwrap();
    b.stop().unwrap();
}

/// Two engines sharing a Redis of the test's own, quick to notice when it hangs.
fn two_nodes() -> (TestRedis, embedchat::Engine, embedchat::Engine) {
    let redis = TestRedis::start();
    let cfg = json!({"redis_url": format!("redis://127.0.0.1:{}/0", redis.1), "redis_timeout_ms": 300});
    let (a, b) = (pusher_engine(cfg.clone()), pusher_engine(cfg));
    (redis, a, b)
}

/// Waits until both engines' `/healthz` starts with `state` (`ok`, or `degraded` while they
/// serve alone).
async fn until_health(engines: [&embedchat::Engine; 2], state: &str) {
    let healthz = |port: u16| http(port, "GET", "/healthz", "", "").1;
    until(&format!("both nodes {state}"), || engines.iter().all(|e| healthz(e.port()).starts_with(state)))
        .await;
}

/// Asks to subscribe to a presence channel as `user`.
async fn ask_presence(ws: &mut Client, socket_id: &str, channel: &str, user: &str) {
    let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
    let auth = format!("{KEY}:{}", hmac_hex(SECRET, &format!("{socket_id}:{channel}:{data}")));
    let frame = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}});
    send(ws, &frame.to_string()).await;
}

/// Subscribes to a presence channel as `user`; returns `subscription_succeeded`'s presence.
async fn join_presence(ws: &mut Client, socket_id: &str, channel: &str, user: &str) -> Value {
    ask_presence(ws, socket_id, channel, user).await;
    loop {
        let ok = event(ws).await;
        if ok["event"] == "pusher_internal:subscription_succeeded" && ok["channel"] == channel {
            return ok["data"]["presence"].clone();
        }
    }
}

/// A GET of the Pusher API on `port`, signed, as JSON.
fn api_get(port: u16, path: &str, query: &str) -> Value {
    use md5::{Digest, Md5};
    let md5: String = Md5::digest(b"").iter().map(|b| format!("{b:02x}")).collect();
    let mut params: Vec<String> = vec![
        format!("auth_key={KEY}"),
        format!("auth_timestamp={}", unix_now()),
        "auth_version=1.0".into(),
        format!("body_md5={md5}"),
    ];
    params.extend(query.split('&').filter(|q| !q.is_empty()).map(str::to_string));
    params.sort();
    let q = params.join("&");
    let sig = hmac_hex(SECRET, &format!("GET\n{path}\n{q}"));
    let (status, body) = http(port, "GET", &format!("{path}?{q}&auth_signature={sig}"), "", "");
    assert_eq!(status, 200, "{path}?{query}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `f` until it holds (the cluster's news takes a Redis round trip).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn in_a_cluster_presence_channels_and_channel_queries_span_every_node() {
    let (redis, a, b) = two_nodes();
    let ch = "presence-team";
    let users_on = |port: u16| -> Vec<String> {
        let v = api_get(port, &format!("/apps/7/channels/{ch}/users"), "");
        let mut ids: Vec<String> =
            v["users"].as_array().unwrap().iter().map(|u| u["id"].to_string()).collect();
        ids.sort();
        ids
    };

    let (mut ann, ann_id) = established(&a).await;
    assert_eq!(join_presence(&mut ann, &ann_id, ch, "ann").await["count"], 1);
    until("node B's API lists ann, on node A", || users_on(b.port()) == ["\"ann\""]).await;

    // Bob on node B sees ann (on node A) in his member list; ann hears bob come.
    let (mut bob, bob_id) = established(&b).await;
    let list = join_presence(&mut bob, &bob_id, ch, "bob").await;
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["hash"]["ann"]["name"], "ann", "with her user_info: {list}");
    let added = event(&mut ann).await;
    assert_eq!(
        (
            added["event"].as_str(),
            added["data"]["user_id"].as_str(),
            added["data"]["user_info"]["name"].as_str()
        ),
        (Some("pusher_internal:member_added"), Some("bob"), Some("bob")),
        "{added}"
    );

    // Redis hangs for a while and comes back: the nodes tell it their members again, and
    // nobody is announced gone who did not go.
    redis.signal("-STOP");
    until_health([&a, &b], "degraded").await;
    redis.signal("-CONT");
    until_health([&a, &b], "ok").await;
    until("node A's API lists both again", || users_on(a.port()) == ["\"ann\"", "\"bob\""]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), event(&mut ann)).await;
    assert!(quiet.is_err(), "ann hears nothing of the outage: {quiet:?}");

    // Bob's second tab, on node A: the same member, not news to ann.
    let (mut bob2, bob2_id) = established(&a).await;
    assert_eq!(join_presence(&mut bob2, &bob2_id, ch, "bob").await["count"], 2);
    let info = format!("/apps/7/channels/{ch}");
    until("three subscriptions on both nodes", || {
        [a.port(), b.port()].iter().all(|&p| {
            api_get(p, &info, "info=subscription_count,user_count")
                == json!({"occupied": true, "subscription_count": 3, "user_count": 2})
        })
    })
    .await;
    assert_eq!(users_on(a.port()), ["\"ann\"", "\"bob\""]);
    let listed = api_get(a.port(), "/apps/7/channels", "filter_by_prefix=presence-&info=user_count");
    assert_eq!(listed, json!({"channels": {ch: {"user_count": 2}}}));

    // Bob leaves node B: he is still on node A, so ann hears nothing yet.
    send(&mut bob, &json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}).to_string()).await;
    until("bob's tab on node B gone", || {
        api_get(b.port(), &info, "info=subscription_count")["subscription_count"] == 2
    })
    .await;

    // terminate_connections through node B closes bob's tab on node A (4009); then ann hears bob
    // go, once, and nothing else came before it.
    let body = "{}";
    let path = signed_path("POST", "/apps/7/users/bob/terminate_connections", body, SECRET);
    assert_eq!(http(b.port(), "POST", &path, "", body).0, 200);
    let err = event(&mut bob2).await;
    assert_eq!(
        (err["event"].as_str(), err["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4009)),
        "{err}"
    );
    assert_eq!(close_code(&mut bob2).await, Some(CloseCode::from(4009)));
    let removed = event(&mut ann).await;
    assert_eq!(
        (removed["event"].as_str(), removed["data"]["user_id"].as_str()),
        (Some("pusher_internal:member_removed"), Some("bob")),
        "bob's second tab and his leaving node B were not news: {removed}"
    );
    until("only ann left", || users_on(b.port()) == ["\"ann\""]).await;
    a.stop().unwrap();
    b.stop().unwrap();
}

/// A presence channel's member list as a client keeps it: `subscription_succeeded`'s ids, then
/// each `member_added` / `member_removed`, each checked against the list (no user added twice,
/// none removed that was not there).
struct Members(std::collections::BTreeSet<String>);

impl Members {
    fn from(presence: &Value) -> Members {
        Members(presence["ids"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect())
    }

    /// Reads events until `member_added` of `until`, applying every member event on the way;
    /// returns those events' (added, user id).
    async fn read_until_added(&mut self, ws: &mut Client, until: &str) -> Vec<(bool, String)> {
        let mut seen = Vec::new();
        loop {
            let v = event(ws).await;
            let added = match v["event"].as_str() {
                Some("pusher_internal:member_added") => true,
                Some("pusher_internal:member_removed") => false,
                _ => continue,
            };
            let id = v["data"]["user_id"].as_str().unwrap().to_string();
            if added {
                assert!(self.0.insert(id.clone()), "{id} added while listed already: {:?} {seen:?}", self.0);
            } else {
                assert!(self.0.remove(&id), "{id} removed while not listed: {:?} {seen:?}", self.0);
            }
            seen.push((added, id.clone()));
            if added && id == until {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn in_a_cluster_each_node_announces_members_as_its_lists_show_them_through_races_and_outages() {
    let (redis, a, b) = two_nodes();
    let ch = "presence-lobby";
    let unsubscribe = json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}).to_string();

    // ann and cy at once on the same node, the channel's first there (it is loading from the
    // cluster meanwhile): each hears nothing before its own list, and nobody of anybody twice.
    let (mut ann, ann_id) = established(&a).await;
    let (mut cy, cy_id) = established(&a).await;
    ask_presence(&mut ann, &ann_id, ch, "ann").await;
    ask_presence(&mut cy, &cy_id, ch, "cy").await;
    let (first_ann, first_cy) = (event(&mut ann).await, event(&mut cy).await);
    for first in [&first_ann, &first_cy] {
        assert_eq!(
            first["event"], "pusher_internal:subscription_succeeded",
            "nothing before the list: {first}"
        );
    }
    let mut anns = Members::from(&first_ann["data"]["presence"]);
    let mut cys = Members::from(&first_cy["data"]["presence"]);
    let (mut bob, bob_id) = established(&b).await;
    join_presence(&mut bob, &bob_id, ch, "bob").await;
    let three: std::collections::BTreeSet<String> =
        ["ann", "bob", "cy"].iter().map(|s| s.to_string()).collect();
    anns.read_until_added(&mut ann, "bob").await;
    cys.read_until_added(&mut cy, "bob").await;
    assert_eq!((&anns.0, &cys.0), (&three, &three));

    // Redis hangs; meanwhile bob (still on node B) comes to node A and leaves it: node A knows
    // he is on node B, so that is no news, then or after Redis is back.
    redis.signal("-STOP");
    until_health([&a, &b], "degraded").await;
    let (mut visit, visit_id) = established(&a).await;
    join_presence(&mut visit, &visit_id, ch, "bob").await;
    send(&mut visit, &unsubscribe).await;
    send(&mut visit, r#"{"event":"pusher:ping","data":{}}"#).await;
    while event(&mut visit).await["event"] != "pusher:pong" {}
    redis.signal("-CONT");
    until_health([&a, &b], "ok").await;
    let (mut dan, dan_id) = established(&b).await;
    join_presence(&mut dan, &dan_id, ch, "dan").await;
    assert_eq!(
        anns.read_until_added(&mut ann, "dan").await,
        [(true, "dan".into())],
        "bob's visit was no news"
    );

    // bob moves from node B to node A: whatever order node A hears of it in, its members end
    // with bob listed, each news consistent with their list.
    send(&mut bob, &unsubscribe).await;
    let (mut bob2, bob2_id) = established(&a).await;
    join_presence(&mut bob2, &bob2_id, ch, "bob").await;
    let (mut eve, eve_id) = established(&b).await;
    join_presence(&mut eve, &eve_id, ch, "eve").await;
    for (who, list, ws) in [("ann", &mut anns, &mut ann), ("cy", &mut cys, &mut cy)] {
        list.read_until_added(ws, "eve").await;
        let want: std::collections::BTreeSet<String> =
            ["ann", "bob", "cy", "dan", "eve"].iter().map(|s| s.to_string()).collect();
        assert_eq!(list.0, want, "{who}'s list");
    }
    a.stop().unwrap();
    b.stop().unwrap();
}
