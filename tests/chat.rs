//! The engine over real sockets: real WebSocket clients (tokio-tungstenite) on 127.0.0.1 port 0.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use embedchat::{Engine, Error, EventKind};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_chat_and_the_sender_gets_its_own_message() {
    let e = engine(json!({}));
    let mut ann = connect(&e, "name=ann").await;
    let welcome = welcomed(&mut ann).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["name"], "ann");
    assert_eq!(welcome["room"], "lobby");
    let mut bob = connect(&e, "name=bob").await;
    let w = welcomed(&mut bob).await;
    assert_eq!(w["members"].as_array().unwrap().len(), 2);
    let joined = recv(&mut ann).await;
    assert_eq!((joined["type"].as_str(), joined["user"]["name"].as_str()), (Some("join"), Some("bob")));

    send(&mut bob, "hello ann").await;
    for ws in [&mut ann, &mut bob] {
        let m = recv_type(ws, "message").await;
        assert_eq!(m["text"], "hello ann");
        assert_eq!(m["from"]["name"], "bob");
        assert_eq!(m["room"], "lobby");
        assert_eq!(m["id"], 1);
        assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
    }
    send(&mut ann, r#"{"type":"message","text":"hi bob"}"#).await;
    assert_eq!(recv_type(&mut bob, "message").await["id"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_isolate() {
    let e = engine(json!({}));
    let mut a = connect(&e, "name=a&room=red").await;
    let mut b = connect(&e, "name=b&room=blue").await;
    welcomed(&mut a).await;
    welcomed(&mut b).await;
    send(&mut a, "only red").await;
    assert_eq!(recv_type(&mut a, "message").await["text"], "only red");
    send(&mut b, "only blue").await;
    let m = recv(&mut b).await;
    assert_eq!(
        (m["type"].as_str(), m["text"].as_str()),
        (Some("message"), Some("only blue")),
        "b saw nothing from red"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_mode_wire_format_is_exact() {
    let e = engine(json!({"protocol": "seed"}));
    // The seed page connects to "/" and sends plain text.
    let url = format!("ws://127.0.0.1:{}/", e.port());
    let (mut a, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut b = connect(&e, "name=bob").await;
    send(&mut b, "{ hi \"there\" </script>").await;
    use futures_util::StreamExt;
    let raw = tokio::time::timeout(WAIT, a.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(raw.into_text().unwrap().as_str(), r#"{"mess":"{ hi \"there\" </script>","name":"bob"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_broadcast_reaches_a_room_and_only_that_room() {
    let e = engine(json!({"host_name": "desk"}));
    let mut a = connect(&e, "room=sales").await;
    let mut b = connect(&e, "room=ops").await;
    welcomed(&mut a).await;
    welcomed(&mut b).await;
    assert_eq!(e.broadcast(Some("sales"), "order #42").unwrap(), 1);
    let m = recv_type(&mut a, "message").await;
    assert_eq!(m["from"], json!({"id": 0, "name": "desk"}));
    assert_eq!(m["text"], "order #42");
    assert_eq!(e.broadcast(None, "to all").unwrap(), 2);
    assert_eq!(recv_type(&mut b, "message").await["text"], "to all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_with_names() {
    let e = engine(json!({}));
    let mut a = connect(&e, "name=ann&room=r1").await;
    welcomed(&mut a).await;
    send(&mut a, "first").await;
    recv_type(&mut a, "message").await;
    drop(a);
    let mut got: Vec<(EventKind, u64, Option<String>, Option<String>)> = Vec::new();
    while got.last().map(|(k, ..)| *k) != Some(EventKind::Disconnect) {
        let ev = e.poll_event(Some(WAIT)).unwrap().expect("event");
        got.push((
            ev.kind,
            ev.seq,
            ev.name.as_deref().map(String::from),
            ev.room.as_deref().map(String::from),
        ));
    }
    let kinds: Vec<_> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        kinds,
        [EventKind::Connect, EventKind::Join, EventKind::Message, EventKind::Leave, EventKind::Disconnect]
    );
    let seqs: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(got.iter().all(|g| g.2.as_deref() == Some("ann")));
    assert_eq!(got[2].3.as_deref(), Some("r1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_host_mode_sends_messages_only_to_the_host() {
    let e = engine(json!({"relay": "host"}));
    let mut a = connect(&e, "name=ann").await;
    welcomed(&mut a).await;
    send(&mut a, "moderate me").await;
    let ev = wait_event(&e, EventKind::Message);
    assert_eq!(ev.text.as_deref(), Some("moderate me"));
    assert_eq!(ev.msg_id, 0, "not broadcast");
    e.broadcast(Some("lobby"), "approved: moderate me").unwrap();
    let m = recv(&mut a).await;
    assert_eq!(m["text"], "approved: moderate me", "the client's own text never came back by itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_clients_with_1001() {
    let e = engine(json!({}));
    let mut a = connect(&e, "").await;
    let mut b = connect(&e, "").await;
    welcomed(&mut a).await;
    welcomed(&mut b).await;
    e.stop().unwrap();
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Away));
    assert_eq!(close_code(&mut b).await, Some(CloseCode::Away));
    assert!(matches!(e.stop(), Err(Error::Stopped)));
    assert!(matches!(e.broadcast(None, "x"), Err(Error::Stopped)));
    assert!(!e.stats().running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_before_stop_can_still_be_taken_after_it() {
    let e = engine(json!({}));
    let mut a = connect(&e, "name=ann").await;
    welcomed(&mut a).await;
    for i in 0..3 {
        send(&mut a, &format!("m{i}")).await;
        recv_type(&mut a, "message").await; // seen by a client: the host must be able to store it
    }
    e.stop().unwrap();
    let mut kinds = Vec::new();
    let texts: Vec<String> = std::iter::from_fn(|| e.poll_event(Some(Duration::ZERO)).ok().flatten())
        .inspect(|ev| kinds.push(ev.kind))
        .filter_map(|ev| ev.text)
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2"], "{kinds:?}");
    assert!(matches!(e.poll_event(None), Err(Error::Stopped)), "then the queue says stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_closes_with_4000_and_the_reason() {
    let e = engine(json!({}));
    let mut a = connect(&e, "").await;
    let id = welcomed(&mut a).await["id"].as_u64().unwrap();
    e.kick(id, "be nice").unwrap();
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(WAIT, a.next()).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 4000);
                assert_eq!(f.reason.as_str(), "be nice");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected close, got {other:?}"),
        }
    }
    assert!(matches!(e.kick(id, "again"), Err(Error::UnknownConnection(_)) | Ok(())));
    assert!(matches!(e.send(999_999, "x"), Err(Error::UnknownConnection(999_999))));
}

#[test]
fn busy_port_is_reported_with_the_address() {
    let a = engine(json!({}));
    let err = Engine::start_json(&format!(r#"{{"listen":"127.0.0.1:{}"}}"#, a.port()))
        .err()
        .expect("second bind fails");
    assert!(matches!(err, Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&a.port().to_string()), "{err}");
}

#[test]
fn bad_config_names_the_key() {
    for (cfg, key) in [
        (r#"{"listen":"127.0.0.1:0","max_backlog_bytes":-1}"#, "max_backlog_bytes"),
        (r#"{"listen":"127.0.0.1:0","relay":"maybe"}"#, "relay"),
        (r#"{"listen":"127.0.0.1:0","wat":1}"#, "wat"),
        (r#"{"listen":"127.0.0.1:0","default_room":""}"#, "default_room"),
    ] {
        let err = Engine::start_json(cfg).err().expect("refused");
        assert!(err.to_string().contains(&format!("`{key}`")), "{cfg} → {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_engines_in_one_process_are_independent() {
    let e1 = engine(json!({}));
    let e2 = engine(json!({"default_room": "other"}));
    assert_ne!(e1.port(), e2.port());
    let mut a = connect(&e1, "").await;
    let mut b = connect(&e2, "").await;
    assert_eq!(welcomed(&mut a).await["room"], "lobby");
    assert_eq!(welcomed(&mut b).await["room"], "other");
    e1.stop().unwrap();
    e2.broadcast(None, "still here").unwrap();
    assert_eq!(recv_type(&mut b, "message").await["text"], "still here");
}

/// A raw client past the handshake, to send what browsers never would.
fn raw_client(e: &Engine) -> std::net::TcpStream {
    let (code, s) = raw_upgrade(e.port(), "/ws", "");
    assert_eq!(code, 101);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_that_connection_with_the_right_code() {
    let e = engine(json!({"max_message_bytes": 1000}));
    let mut good = connect(&e, "name=good").await;
    welcomed(&mut good).await;

    let mut unmasked = raw_client(&e);
    unmasked.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(raw_close_code(&mut unmasked), Some(1002));

    let mut too_big = raw_client(&e);
    too_big.write_all(&[0x81, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4]).unwrap();
    assert_eq!(raw_close_code(&mut too_big), Some(1009));

    let mut bad_utf8 = raw_client(&e);
    bad_utf8.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]).unwrap();
    assert_eq!(raw_close_code(&mut bad_utf8), Some(1007));

    send(&mut good, "still fine").await;
    assert_eq!(recv_type(&mut good, "message").await["text"], "still fine");
    assert!(e.stats().protocol_errors >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_error_replies_not_silence() {
    let e = engine(json!({}));
    let mut a = connect(&e, "").await;
    welcomed(&mut a).await;
    for (cmd, code) in [
        ("{broken", "bad_json"),
        (r#"{"type":"fly"}"#, "unknown_type"),
        (r#"{"type":"message","text":5}"#, "bad_field"),
        (r#"{"type":"message","room":"elsewhere","text":"x"}"#, "not_member"),
        (r#"{"type":"join","room":""}"#, "bad_room"),
    ] {
        send(&mut a, cmd).await;
        let r = recv(&mut a).await;
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some(code)), "{cmd}");
    }
    send(&mut a, r#"{"type":"ping","ref":7}"#).await;
    assert_eq!(recv(&mut a).await, json!({"type": "pong", "ref": 7}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_the_others_get_everything() {
    // The limit leaves room: bytes count as unsent until the engine thread records its write,
    // and under CPU contention that thread can be preempted right after writev while the reader
    // already has the bytes and the loop below pushes more.
    let e = engine(json!({"max_backlog_bytes": 262144, "max_message_bytes": 16384}));
    let mut reader = connect(&e, "name=reader").await;
    welcomed(&mut reader).await;
    let sleeper = raw_client(&e); // never reads
    sleeper.set_nonblocking(true).unwrap();
    let text = "x".repeat(4000);
    let n = 2000; // 8 MB in all: far past the backlog plus the socket buffers
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            let m = recv(&mut reader).await;
            if m["type"] == "message" {
                got += 1;
                let _ = seen_tx.send(got);
            }
        }
        got
    });
    // Paced to the healthy reader (at most 8 messages, 32 KB, ahead): only the sleeper falls behind.
    for i in 0..n {
        e.broadcast(Some("lobby"), &text).unwrap();
        tokio::time::timeout(WAIT, seen.wait_for(|got| *got + 8 > i)).await.unwrap().unwrap();
    }
    assert_eq!(tokio::time::timeout(Duration::from_secs(20), reading).await.unwrap().unwrap(), n);
    drop(sleeper);
    assert_eq!(e.stats().slow_consumer_closes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_health_are_served_on_the_same_port() {
    let e = engine(json!({}));
    let get = |path: &'static str, port: u16| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let page = get("/", e.port()).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"));
    assert!(get("/healthz", e.port()).await.starts_with("HTTP/1.1 200"));
    assert!(get("/nope", e.port()).await.starts_with("HTTP/1.1 404"));
    let metrics = get("/metrics", e.port()).await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("\nembedchat_connections_open 0\n"), "{metrics}");
    assert!(metrics.contains("# TYPE embedchat_slow_consumer_closes_total counter"), "{metrics}");
}

#[test]
fn bad_room_in_the_url_is_refused_before_the_upgrade() {
    let e = engine(json!({}));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", e.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request("/ws?room=%0A", "x", "").as_bytes()).unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 400");
    assert_eq!(e.stats().handshake_rejects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_example_answers_time_and_stops_cleanly_on_sigint() {
    let child = std::process::Command::new(lib_dir().join("examples/chat_server"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("target/debug/examples/chat_server (cargo test builds it)");
    time_bot_scenario(child, "server time: ").await;
}
