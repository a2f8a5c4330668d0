//! Scale-out on Redis, with real parts only: each test starts its own `redis-server` on a free
//! port in a temporary directory, and runs the `chat_server` example as separate processes (the
//! nodes), which clients reach over real sockets. Faults are real too: Redis stopped with
//! SIGSTOP (hung: connections open, no answers), killed and started again on the same port.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGCONT first: a stopped Redis would not die of SIGKILL until continued on some kernels.
        let _ = Command::new("kill").args(["-CONT", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis of the test's own: no persistence, in a temporary directory.
struct Redis {
    proc: Option<Proc>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let dir =
            std::env::temp_dir().join(format!("embedchat-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis { proc: None, port: free_port(), dir };
        r.restart();
        r
    }

    /// Starts (again) on the same port.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/test installs it)");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.proc.as_ref().unwrap().0.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    fn kill(&mut self) {
        self.proc = None;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node: the chat_server example as a process of its own.
struct Node {
    proc: Proc,
    port: u16,
}

impl Node {
    /// Stops it as an operator would (SIGINT: `chat_stop`).
    fn interrupt(&self) {
        assert!(Command::new("kill")
            .args(["-INT", &self.proc.0.id().to_string()])
            .status()
            .unwrap()
            .success());
    }
}

const API_KEY: &str = "cluster-test-api-key";

fn node_config(redis: &Redis, extra: Value) -> PathBuf {
    let mut cfg = json!({
        "redis_url": redis.url(),
        "redis_timeout_ms": 500,
        "max_messages_per_second": 10000,
        "message_burst": 10000,
        "api_key": API_KEY,
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    let path = redis.dir.join(format!("node-{}.json", free_port()));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

fn node(redis: &Redis, extra: Value) -> Node {
    let cfg = node_config(redis, extra);
    let mut child = Command::new(lib_dir().join("examples/chat_server"))
        .args(["--listen", "127.0.0.1:0", "--quiet", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .spawn()
        .expect("target/debug/examples/chat_server (cargo test builds it)");
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    // Keep reading: a node that stops prints its final counters.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let port = first.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        panic!("the node did not start: {first:?}");
    });
    Node { proc: Proc(child), port }
}

async fn ws(n: &Node, query: &str) -> Client {
    let url = format!("ws://127.0.0.1:{}/ws?{query}", n.port);
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// The welcome, then the history (which may come a little later: loaded from Redis).
async fn joined(c: &mut Client) -> (Value, Value) {
    let w = recv_type(c, "welcome").await;
    let h = recv_type(c, "history").await;
    (w, h)
}

fn ids(history: &Value) -> Vec<u64> {
    history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

async fn messages(c: &mut Client, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = recv_type(c, "message").await;
        got.push((m["id"].as_u64().unwrap(), m["text"].as_str().unwrap().to_string()));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_either_node_reach_every_member_once_in_one_order() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    let (wa, _) = joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    let (wb, _) = joined(&mut bob).await;
    assert_eq!(wa["epoch"], wb["epoch"], "one epoch for the cluster");
    assert_ne!(wa["id"], wb["id"], "connection ids are unique across nodes");

    for i in 0..20 {
        send(&mut ann, &format!("a{i}")).await;
        send(&mut bob, &format!("b{i}")).await;
    }
    let seen_by_ann = messages(&mut ann, 40).await;
    let seen_by_bob = messages(&mut bob, 40).await;
    assert_eq!(seen_by_ann, seen_by_bob, "the same messages in the same order on both nodes");
    let ids: Vec<u64> = seen_by_ann.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>(), "one sequence of ids for the room");
    let a_texts: Vec<&str> =
        seen_by_ann.iter().map(|(_, t)| t.as_str()).filter(|t| t.starts_with('a')).collect();
    assert_eq!(a_texts, (0..20).map(|i| format!("a{i}")).collect::<Vec<_>>(), "each sender's order kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_resume_work_whichever_node_a_client_comes_back_to() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({"history_size": 10})), node(&redis, json!({"history_size": 10})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    let (w, _) = joined(&mut ann).await;
    let epoch = w["epoch"].as_str().unwrap().to_string();
    for i in 1..=4 {
        send(&mut ann, &format!("m{i}")).await;
    }
    assert_eq!(messages(&mut ann, 4).await.last().unwrap().0, 4);

    // A newcomer on the other node, where the room had nobody: its history comes from Redis.
    let mut cy = ws(&b, "name=cy&room=r").await;
    let (_, h) = joined(&mut cy).await;
    assert_eq!(ids(&h), vec![1, 2, 3, 4]);
    assert_eq!(h["messages"][0]["text"], "m1");

    // Back on node B after seeing up to id 2: exactly 3 and 4, no gap.
    let mut back = ws(&b, &format!("name=ann2&room=r&since=2&epoch={epoch}")).await;
    let (_, h) = joined(&mut back).await;
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![3, 4], Some(false)));

    // Messages said on B while ann was away, then ann resumes on A: exactly those.
    for i in 5..=6 {
        send(&mut cy, &format!("m{i}")).await;
    }
    assert_eq!(messages(&mut cy, 2).await.last().unwrap().0, 6);
    // Node A has them too (it delivers them to ann), so its history has them when she comes back.
    assert_eq!(messages(&mut ann, 2).await.last().unwrap().0, 6);
    drop(ann);
    let mut ann = ws(&a, &format!("name=ann&room=r&since=4&epoch={epoch}")).await;
    let (_, h) = joined(&mut ann).await;
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![5, 6], Some(false)));

    // An epoch from elsewhere is a gap, with what is kept.
    let mut stranger = ws(&b, "name=s&room=r&since=3&epoch=another-cluster").await;
    let (_, h) = joined(&mut stranger).await;
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![1, 2, 3, 4, 5, 6], Some(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_through_one_nodes_http_api_reaches_members_on_every_node() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut bob = ws(&b, "name=bob&room=news").await;
    joined(&mut bob).await;
    let body = json!({"room": "news", "text": "from the site"}).to_string();
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (status, reply) = http(a.port, "POST", "/api/publish", &auth, &body);
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains(r#""delivered_scope":"node""#), "{reply}");
    let m = recv_type(&mut bob, "message").await;
    assert_eq!((m["text"].as_str(), m["id"].as_u64()), (Some("from the site"), Some(1)));

    // A room nobody is in yet keeps it for later arrivals, on any node.
    let (status, reply) =
        http(a.port, "POST", "/api/publish", &auth, &json!({"room": "later", "text": "kept"}).to_string());
    assert_eq!(status, 200, "{reply}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut cy = ws(&b, "name=cy&room=later").await;
    let (_, h) = joined(&mut cy).await;
    assert_eq!(h["messages"][0]["text"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_hangs_a_node_serves_its_own_members_and_catches_up_after() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut al = ws(&a, "name=al&room=r").await;
    joined(&mut al).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    joined(&mut bob).await;
    send(&mut ann, "before").await;
    assert_eq!(messages(&mut bob, 1).await, vec![(1, "before".to_string())]);
    messages(&mut al, 1).await;

    redis.signal("-STOP");
    let t0 = Instant::now();
    send(&mut ann, "during").await;
    let got = messages(&mut al, 1).await;
    assert_eq!(got, vec![(0, "during".to_string())], "delivered on this node, with id 0");
    assert!(t0.elapsed() < Duration::from_secs(3), "within a few seconds: {:?}", t0.elapsed());
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, health) = http(a.port, "GET", "/healthz", "", "");
        if health.contains("degraded") {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, metrics) = http(a.port, "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_cluster_up 0\n"), "{metrics}");

    redis.signal("-CONT");
    // The node reconnects (backoff from 100 ms) and messages cross nodes again, numbered.
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in [&a, &b] {
        loop {
            let (_, health) = http(n.port, "GET", "/healthz", "", "");
            if health.trim() == "ok" {
                break;
            }
            assert!(Instant::now() < deadline, "a node did not get Redis back: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    send(&mut ann, "after").await;
    // Redis may carry out the message it held while stopped (it read it before it hung): then
    // node B gets it numbered, and node A keeps it without sending it to its members again.
    let mut on_b = messages(&mut bob, 1).await;
    if on_b[0].1 == "during" {
        on_b.extend(messages(&mut bob, 1).await);
    }
    let after = on_b.last().unwrap();
    assert_eq!((after.1.as_str(), after.0), ("after", on_b.len() as u64 + 1), "{on_b:?}");
    assert_eq!(messages(&mut al, 1).await, vec![after.clone()], "no second copy of `during` on node A");
    let (_, metrics) = http(a.port, "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_cluster_local_only_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_the_nodes_reconnect_and_resubscribe() {
    let mut redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    joined(&mut bob).await;
    for text in ["one", "two"] {
        send(&mut ann, text).await;
    }
    assert_eq!(messages(&mut bob, 2).await.last().unwrap().0, 2);
    // A question about the cluster (on the connection questions share, kept from now on).
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let rooms = |port: u16| {
        let (status, body) = http(port, "GET", "/api/rooms", &auth, "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["rooms"][0]["users"].clone()
    };
    assert_eq!(rooms(a.port), 2);

    // Redis comes back empty (no persistence): the nodes put back what they know.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    // Both nodes notice (a closed connection, or the next check) and come back.
    let deadline = Instant::now() + Duration::from_secs(15);
    for n in [&a, &b] {
        loop {
            let (_, metrics) = http(n.port, "GET", "/metrics", "", "");
            if metrics.contains("embedchat_cluster_up 1\n")
                && !metrics.contains("embedchat_cluster_reconnects_total 0\n")
            {
                break;
            }
            assert!(Instant::now() < deadline, "a node did not reconnect: {metrics}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    send(&mut ann, "hello again").await;
    let m = recv_type(&mut bob, "message").await;
    assert_eq!(
        (m["text"].as_str(), m["id"].as_u64()),
        (Some("hello again"), Some(3)),
        "ids go on, not back to 1"
    );
    // The first question after the restart is answered too (on a new connection).
    assert_eq!(rooms(a.port), 2);
    // Presence was told again: a newcomer on a third node sees both, and the epoch is the same.
    let c = node(&redis, json!({}));
    let mut cy = ws(&c, "name=cy&room=r").await;
    let (w, h) = joined(&mut cy).await;
    assert_eq!(names(&w["members"]), vec![("ann".into(), 1), ("bob".into(), 1), ("cy".into(), 1)], "{w}");
    assert_eq!(ids(&h), vec![3], "only what Redis kept after it came back");
    let mut back = ws(&a, "name=ann2&room=r&since=2").await;
    let (wa, h) = joined(&mut back).await;
    assert_eq!(w["epoch"], wa["epoch"], "one epoch still");
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![3], Some(false)), "node A still has its history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_leaves_while_redis_hangs_is_gone_on_every_node_after() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    joined(&mut bob).await;
    recv_type(&mut ann, "join").await;

    redis.signal("-STOP");
    drop(ann);
    tokio::time::sleep(Duration::from_millis(1500)).await; // node A notices and serves alone
    redis.signal("-CONT");
    let l = recv_type(&mut bob, "leave").await;
    assert_eq!(l["user"]["name"], "ann");
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (_, p) = http(b.port, "GET", "/api/presence?room=r", &auth, "");
    let p: Value = serde_json::from_str(&p).unwrap();
    assert_eq!(names(&p["rooms"]["r"]["members"]), vec![("bob".into(), 1)], "{p}");
}

#[test]
fn a_node_that_cannot_reach_redis_fails_to_start_and_names_redis_url() {
    let port = free_port(); // nothing listens there
    let cfg = json!({"listen": "127.0.0.1:0", "redis_url": format!("redis://127.0.0.1:{port}"), "redis_timeout_ms": 300});
    let err = embedchat::Engine::start_json(&cfg.to_string()).err().expect("start fails");
    let text = err.to_string();
    assert!(text.contains("redis_url") && text.contains(&port.to_string()), "{text}");
}

fn names(list: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["tabs"].as_u64().unwrap_or(1)))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_every_node_are_listed_and_announced_once_per_user() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let ann_key = "ann-browser-key-0123456789";
    let mut ann = ws(&a, &format!("name=ann&room=r&client={ann_key}")).await;
    joined(&mut ann).await;

    // bob on the other node: his welcome lists ann, and ann hears bob come, once.
    let mut bob = ws(&b, "name=bob&room=r").await;
    let (w, _) = joined(&mut bob).await;
    assert_eq!(names(&w["members"]), vec![("ann".into(), 1), ("bob".into(), 1)], "{w}");
    let j = recv_type(&mut ann, "join").await;
    assert_eq!(j["user"]["name"], "bob");

    // A second tab of ann's, on node B: nobody hears a second `join`; lists count two tabs.
    let mut ann2 = ws(&b, &format!("name=ann&room=r&client={ann_key}")).await;
    let (w, _) = joined(&mut ann2).await;
    assert_eq!(names(&w["members"]), vec![("ann".into(), 2), ("bob".into(), 1)], "{w}");
    // The tab on node A leaves: ann is still in the room (her tab on B), so no `leave`. First
    // node A knows of her tab on B (its list shows two), then the tab on A goes; once node B
    // knows (one tab), a marker comes next, not a `leave`.
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let tabs_on = |port: u16, want: u64| {
        let auth = auth.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, p) = http(port, "GET", "/api/presence?room=r", &auth, "");
                let p: Value = serde_json::from_str(&p).unwrap();
                if names(&p["rooms"]["r"]["members"]) == vec![("ann".into(), want), ("bob".into(), 1)] {
                    break;
                }
                assert!(Instant::now() < deadline, "ann never had {want} tabs: {p}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tabs_on(a.port, 2).await;
    drop(ann);
    tabs_on(b.port, 1).await;
    send(&mut bob, "marker").await;
    let next = recv(&mut bob).await;
    assert!(next["type"] == "message" && next["text"] == "marker", "no leave for ann yet: {next}");
    // Her last tab leaves: bob hears it once.
    drop(ann2);
    let l = recv_type(&mut bob, "leave").await;
    assert_eq!(l["user"]["name"], "ann");

    // The host of each node sees the whole room.
    let mut cy = ws(&a, "name=cy&room=r").await;
    joined(&mut cy).await;
    recv_type(&mut bob, "join").await;
    let (_, p) = http(a.port, "GET", "/api/presence?room=r", &auth, "");
    let p: Value = serde_json::from_str(&p).unwrap();
    assert_eq!(names(&p["rooms"]["r"]["members"]), vec![("bob".into(), 1), ("cy".into(), 1)], "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_of_a_node_that_dies_leave_within_seconds() {
    let redis = Redis::start();
    let a = node(&redis, json!({}));
    let mut b = Some(node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(b.as_ref().unwrap(), "name=bob&room=r").await;
    joined(&mut bob).await;
    recv_type(&mut ann, "join").await;

    // Node B is killed (SIGKILL: it says nothing): its alive key expires (5 s) and the next
    // clean-up (every 5 s) announces bob gone.
    let t0 = Instant::now();
    b = None;
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(15);
    let left = loop {
        assert!(Instant::now() < deadline, "bob did not leave");
        match tokio::time::timeout(Duration::from_secs(1), futures_util::StreamExt::next(&mut ann)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "leave" {
                    break v;
                }
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            other => panic!("ann's connection ended: {other:?}"),
        }
    };
    assert_eq!(left["user"]["name"], "bob");
    assert!(t0.elapsed() < Duration::from_secs(12), "{:?}", t0.elapsed());
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whispers_kicks_and_host_messages_reach_connections_on_other_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    let (wb, _) = joined(&mut bob).await;
    let bob_id = wb["id"].as_u64().unwrap();
    recv_type(&mut ann, "join").await;

    // By name and by id, from node A to bob on node B; ann sees her echo.
    send(&mut ann, r#"{"type":"whisper","to":"BOB","text":"psst"}"#).await;
    let w = recv_type(&mut bob, "whisper").await;
    assert_eq!((w["from"]["name"].as_str(), w["text"].as_str()), (Some("ann"), Some("psst")));
    assert_eq!(recv_type(&mut ann, "whisper").await["text"], "psst");
    send(&mut ann, &format!(r#"{{"type":"whisper","to":{bob_id},"text":"by id"}}"#)).await;
    assert_eq!(recv_type(&mut bob, "whisper").await["text"], "by id");
    // Nobody by that name anywhere: refused as before.
    send(&mut ann, r#"{"type":"whisper","to":"nobody","text":"x","ref":1}"#).await;
    assert_eq!(recv_type(&mut ann, "error").await["code"], "unknown_user");

    // The host of node A: a message to bob, then a kick, both carried out by node B.
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (status, reply) =
        http(a.port, "POST", "/api/send", &auth, &json!({"id": bob_id, "text": "from the host"}).to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(recv_type(&mut bob, "whisper").await["text"], "from the host");
    let (status, reply) =
        http(a.port, "POST", "/api/kick", &auth, &json!({"id": bob_id, "reason": "bye"}).to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(close_code(&mut bob).await.map(u16::from), Some(4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_restored_by_a_host_is_the_clusters_and_new_ids_continue_above_it() {
    let redis = Redis::start();
    let b = node(&redis, json!({}));
    // A host (in this process) restores from its database, as two nodes' hosts would at start:
    // twice, and the second time changes nothing.
    let cfg = json!({"listen": "127.0.0.1:0", "redis_url": redis.url()}).to_string();
    let host = embedchat::Engine::start_json(&cfg).expect("a node in this process");
    for _ in 0..2 {
        for (id, text) in [(41, "old one"), (42, "old two")] {
            host.restore("r", id, 1_700_000_000_000 + id, "archive", text).unwrap();
        }
    }
    assert!(host.restore("bad room\n", 1, 0, "x", "y").is_err(), "room names are still checked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ann = ws(&b, "name=ann&room=r").await;
    let (_, h) = joined(&mut ann).await;
    assert_eq!(ids(&h), vec![41, 42], "{h}");
    send(&mut ann, "new").await;
    assert_eq!(messages(&mut ann, 1).await, vec![(43, "new".to_string())]);

    // The host here has nobody in `r`, yet its API sees the room and ann (asked from the host's
    // thread: the engine waits on Redis for it).
    let rooms = host.rooms().unwrap();
    let r = rooms.iter().find(|r| r.room == "r").expect("the cluster's room");
    assert_eq!((r.users, r.connections, r.last_id), (1, 1, 43));
    let p: Value = serde_json::from_str(&host.presence_json(Some("r")).unwrap()).unwrap();
    assert_eq!(names(&p["rooms"]["r"]["members"]), vec![("ann".into(), 1)], "{p}");
    host.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_across_nodes_and_free_again_when_their_user_leaves() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // node A has claimed the name

    // Someone on node B asks for "Ann": the name is taken (any case), so B renames its user.
    // Its welcome has the new name already, or a `nick` follows it (whichever came first:
    // node A's answer, or the room's history).
    let mut other = ws(&b, "name=Ann&room=r").await;
    let (w, _) = joined(&mut other).await;
    if w["name"] != "Ann-2" {
        assert_eq!(w["name"], "Ann");
        let n = recv_type(&mut other, "nick").await;
        assert_eq!((n["old"].as_str(), n["user"]["name"].as_str()), (Some("Ann"), Some("Ann-2")), "{n}");
    }
    // ann hears the newcomer's new name too (after its join).
    let n = recv_type(&mut ann, "nick").await;
    assert_eq!(n["user"]["name"], "Ann-2", "{n}");

    // ann leaves: the name is free again for anyone on any node.
    drop(ann);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = ws(&b, "name=ann&room=r").await;
    let (w, _) = joined(&mut again).await;
    assert_eq!(w["name"], "ann");
    send(&mut again, "still ann?").await;
    let next = recv(&mut again).await;
    assert!(next["type"] == "message" && next["from"]["name"] == "ann", "not renamed: {next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_message_to_every_room_reaches_rooms_that_have_members_only_on_other_nodes() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=here").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=there").await;
    joined(&mut bob).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // node B's presence is in Redis
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (status, reply) = http(a.port, "POST", "/api/publish", &auth, &json!({"text": "to all"}).to_string());
    assert_eq!(status, 200, "{reply}");
    for c in [&mut ann, &mut bob] {
        let m = recv_type(c, "message").await;
        assert_eq!((m["text"].as_str(), m["id"].as_u64()), (Some("to all"), Some(1)), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_add_up_every_live_node_and_keep_this_nodes_own() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    joined(&mut bob).await;
    let mut cy = ws(&b, "name=cy&room=r").await;
    joined(&mut cy).await;
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, s) = http(a.port, "GET", "/api/stats", &auth, "");
        let s: Value = serde_json::from_str(&s).unwrap();
        let c = &s["cluster"];
        if c["nodes"] == 2 && c["connections_open"] == 3 {
            assert_eq!(s["connections_open"], 1, "this node's own: {s}");
            break;
        }
        assert!(Instant::now() < deadline, "no cluster totals: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = http(a.port, "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_cluster_total_connections_open 3\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_presence_from_any_node_cover_the_whole_cluster() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=here").await;
    joined(&mut ann).await;
    let key = "bob-browser-key-0123456789";
    let mut bob = ws(&b, &format!("name=bob&room=there&client={key}")).await;
    joined(&mut bob).await;
    let mut bob2 = ws(&b, &format!("name=bob&room=there&client={key}")).await;
    joined(&mut bob2).await;
    send(&mut bob, "hi").await;
    recv_type(&mut bob2, "message").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Node A has nobody in `there`, yet lists it, with its users, tabs and last id.
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (_, rooms) = http(a.port, "GET", "/api/rooms", &auth, "");
    let rooms: Value = serde_json::from_str(&rooms).unwrap();
    let find = |name: &str| rooms["rooms"].as_array().unwrap().iter().find(|r| r["room"] == name).cloned();
    let there = find("there").unwrap_or_else(|| panic!("{rooms}"));
    assert_eq!(
        (there["users"].as_u64(), there["connections"].as_u64(), there["last_id"].as_u64()),
        (Some(1), Some(2), Some(1))
    );
    assert!(find("here").is_some(), "{rooms}");

    let (_, p) = http(a.port, "GET", "/api/presence?room=there", &auth, "");
    let p: Value = serde_json::from_str(&p).unwrap();
    assert_eq!(names(&p["rooms"]["there"]["members"]), vec![("bob".into(), 2)], "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_leaves_its_rooms_at_once() {
    let redis = Redis::start();
    let (a, b) = (node(&redis, json!({})), node(&redis, json!({})));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    let mut bob = ws(&b, "name=bob&room=r").await;
    joined(&mut bob).await;
    recv_type(&mut ann, "join").await;
    let t0 = Instant::now();
    b.interrupt();
    let l = recv_type(&mut ann, "leave").await;
    assert_eq!(l["user"]["name"], "bob");
    assert!(t0.elapsed() < Duration::from_secs(3), "not at once: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_kept_in_redis_is_bounded_by_count_and_bytes() {
    let redis = Redis::start();
    let cfg = json!({"history_size": 5, "history_max_bytes": 4096, "max_backlog_bytes": 1 << 20});
    let (a, b) = (node(&redis, cfg.clone()), node(&redis, cfg));
    let mut ann = ws(&a, "name=ann&room=r").await;
    joined(&mut ann).await;
    for i in 1..=8 {
        send(&mut ann, &format!("short {i}")).await;
    }
    assert_eq!(messages(&mut ann, 8).await.last().unwrap().0, 8);
    // By count: the newest 5, for a newcomer on the other node.
    let mut bob = ws(&b, "name=bob&room=r").await;
    let (_, h) = joined(&mut bob).await;
    assert_eq!(ids(&h), vec![4, 5, 6, 7, 8]);
    // By bytes: two messages of ~2,000 bytes leave room for nothing older (4 KiB in all).
    for _ in 0..2 {
        send(&mut ann, &"x".repeat(1900)).await;
    }
    assert_eq!(messages(&mut ann, 2).await.last().unwrap().0, 10);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await; // node B forgets the room
    let mut cy = ws(&b, "name=cy&room=r").await;
    let (_, h) = joined(&mut cy).await;
    let kept = ids(&h);
    assert!(kept.ends_with(&[9, 10]) && kept.len() < 5, "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_told_when_its_node_loses_redis_and_gets_it_back() {
    let redis = Redis::start();
    let cfg = json!({"listen": "127.0.0.1:0", "redis_url": redis.url(), "redis_timeout_ms": 300}).to_string();
    let host = embedchat::Engine::start_json(&cfg).expect("a node in this process");
    redis.signal("-STOP");
    let lost = wait_event(&host, embedchat::EventKind::Cluster);
    assert_eq!(lost.code(), 0, "{lost:?}");
    assert!(lost.text.as_deref().unwrap_or_default().contains("lost Redis"), "{lost:?}");
    redis.signal("-CONT");
    let back = wait_event(&host, embedchat::EventKind::Cluster);
    assert_eq!(back.code(), 1, "{back:?}");
    host.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_user_takes_its_name_from_a_guest_on_another_node() {
    let redis = Redis::start();
    let secret = "cluster-test-login-secret-0123456789";
    let cfg = json!({"auth": {"secret": secret, "required": false}});
    let (a, b) = (node(&redis, cfg.clone()), node(&redis, cfg));
    let mut guest = ws(&b, "name=bob&room=r").await;
    let (w, _) = joined(&mut guest).await;
    assert_eq!(w["name"], "bob");
    tokio::time::sleep(Duration::from_millis(200)).await; // node B has claimed the name
    let login = token(secret, json!({"sub": "42", "name": "bob", "exp": unix_now() + 600}));
    let mut bob = ws(&a, &format!("token={login}&room=r")).await;
    let (w, _) = joined(&mut bob).await;
    assert_eq!((w["name"].as_str(), w["bound"].as_bool()), (Some("bob"), Some(true)));
    let n = recv_type(&mut guest, "nick").await;
    assert_eq!((n["old"].as_str(), n["user"]["name"].as_str()), (Some("bob"), Some("bob-2")), "{n}");
}
