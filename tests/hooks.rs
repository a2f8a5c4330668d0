//! Relay `host`: messages held for the host's decision, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use embedchat::{Error, EventKind};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_replace_and_reject_each_do_what_they_say() {
    let e = engine(json!({"relay": "host", "published_events": true}));
    let mut ann = connect(&e, "name=ann").await;
    welcomed(&mut ann).await;

    send(&mut ann, "hello").await;
    let ev = wait_event(&e, EventKind::Message);
    assert!(ev.token > 0, "a held message carries a reply token");
    e.approve(ev.token).unwrap();
    let m = recv_type(&mut ann, "message").await;
    assert_eq!(
        (m["text"].as_str(), m["from"]["name"].as_str(), m["id"].as_u64()),
        (Some("hello"), Some("ann"), Some(1))
    );
    assert!(matches!(e.approve(ev.token), Err(Error::UnknownToken(_))), "a decision is final");

    let published = wait_event(&e, EventKind::Published);
    assert_eq!((published.msg_id, published.text.as_deref()), (1, Some("hello")), "the host learns the id");

    send(&mut ann, "darn it").await;
    let ev = wait_event(&e, EventKind::Message);
    e.replace(ev.token, "d*rn it").unwrap();
    assert_eq!(recv_type(&mut ann, "message").await["text"], "d*rn it");
    let published = wait_event(&e, EventKind::Published);
    assert_eq!((published.msg_id, published.text.as_deref()), (2, Some("d*rn it")), "what was shown, stored");

    send(&mut ann, "spam spam").await;
    let ev = wait_event(&e, EventKind::Message);
    e.reject(ev.token, "no spam here").unwrap();
    let err = recv(&mut ann).await;
    assert_eq!((err["code"].as_str(), err["message"].as_str()), (Some("rejected"), Some("no spam here")));
    assert!(matches!(e.approve(424242), Err(Error::UnknownToken(424242))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_message_gets_the_default_after_the_deadline() {
    let e = engine(json!({"relay": "host", "hook_timeout_ms": 200}));
    let mut ann = connect(&e, "name=ann").await;
    welcomed(&mut ann).await;
    let sent = Instant::now();
    send(&mut ann, "anyone there?").await;
    let m = recv_type(&mut ann, "message").await;
    let waited = sent.elapsed();
    assert_eq!(m["text"], "anyone there?", "default accept keeps the chat moving");
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(3), "{waited:?}");
    let ev = wait_event(&e, EventKind::Message);
    assert!(matches!(e.approve(ev.token), Err(Error::UnknownToken(_))), "too late to decide");
    assert_eq!(e.stats().hook_timeouts, 1);

    let strict = engine(json!({"relay": "host", "hook_timeout_ms": 100, "hook_default": "reject"}));
    let mut bob = connect(&strict, "name=bob").await;
    welcomed(&mut bob).await;
    send(&mut bob, "unreviewed").await;
    assert_eq!(recv(&mut bob).await["code"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_hooks_let_the_host_admit_or_refuse() {
    use futures_util::StreamExt;
    let e = engine(json!({"join_hook": true, "hook_timeout_ms": 5000}));
    // Admitted: nothing arrives before the host says yes, then the usual welcome.
    let mut ann = connect(&e, "name=ann&room=vip").await;
    let req = wait_event(&e, EventKind::JoinRequest);
    assert_eq!((req.room.as_deref(), req.name.as_deref()), (Some("vip"), Some("ann")));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ann.next()).await.is_err(),
        "held until approved"
    );
    e.approve(req.token).unwrap();
    assert_eq!(welcomed(&mut ann).await["room"], "vip");
    let joined = wait_event(&e, EventKind::Join);
    assert_eq!(joined.token, 0, "the join event follows, once a member");

    // A later join refused: an error, the connection stays.
    send(&mut ann, r#"{"type":"join","room":"staff","ref":5}"#).await;
    let req = wait_event(&e, EventKind::JoinRequest);
    e.reject(req.token, "staff only").unwrap();
    let err = recv(&mut ann).await;
    assert_eq!((err["code"].as_str(), err["message"].as_str()), (Some("join_rejected"), Some("staff only")));

    // The first room refused: nowhere to be, so the connection closes with 4003 and the reason.
    let mut bob = connect(&e, "name=bob&room=vip").await;
    let req = wait_event(&e, EventKind::JoinRequest);
    e.reject(req.token, "invitation only").unwrap();
    match tokio::time::timeout(WAIT, bob.next()).await.unwrap() {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (4003, "invitation only"));
        }
        other => panic!("expected close 4003, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_join_gets_the_default() {
    let e = engine(json!({"join_hook": true, "hook_timeout_ms": 100}));
    let mut ann = connect(&e, "name=ann").await;
    assert_eq!(welcomed(&mut ann).await["name"], "ann", "admitted by the default (accept)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_queue_refuses_held_messages_instead_of_letting_them_through() {
    // The host never takes its events; relay "host" with the default accept after the deadline
    // would publish whatever the queue could not hold, unreviewed.
    let e = engine(
        json!({"relay": "host", "event_queue": 16, "hook_timeout_ms": 100, "max_messages_per_second": 0}),
    );
    let mut c = connect(&e, "name=spammer").await;
    welcomed(&mut c).await;
    for i in 0..40 {
        send(&mut c, &format!("unreviewed {i}")).await;
    }
    let err = recv_type(&mut c, "error").await;
    assert_eq!(err["code"], "moderation_unavailable", "{err}");
    tokio::time::sleep(Duration::from_millis(400)).await; // every deadline has passed
    send(&mut c, r#"{"type":"ping"}"#).await;
    let mut published = Vec::new();
    loop {
        let m = recv(&mut c).await;
        if m["type"] == "message" {
            published.push(m["text"].as_str().unwrap().to_string());
        }
        if m["type"] == "pong" {
            break;
        }
    }
    // The held messages whose events were queued get `hook_default` (accept) after the
    // deadline, as configured; those the queue could not take were refused and never appear.
    let st = e.stats();
    let expected: Vec<String> = (0..published.len()).map(|i| format!("unreviewed {i}")).collect();
    assert_eq!(published, expected, "only the first ones, which the host could have seen");
    assert!(published.len() < 16, "{published:?}");
    assert_eq!(st.moderation_refusals as usize, 40 - published.len(), "{st:?}");
    assert_eq!(st.events_dropped, 0, "refused, not dropped silently: {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_commands_wait_for_the_host_and_their_refusal_names_the_command() {
    // Relay `auto`, but text starting with the prefix is the bot's: held like relay `host`.
    let e = engine(json!({"command_prefix": "/"}));
    let mut ann = connect(&e, "name=ann").await;
    welcomed(&mut ann).await;
    let mut bob = connect(&e, "name=bob").await;
    welcomed(&mut bob).await;

    send(&mut ann, "plain words").await;
    let ev = wait_event(&e, EventKind::Message);
    assert_eq!((ev.token, ev.msg_id), (0, 1), "published at once, nothing to decide");
    assert_eq!(recv_type(&mut bob, "message").await["text"], "plain words");

    send(&mut ann, r#"{"type":"message","text":"/time","ref":7}"#).await;
    let ev = wait_event(&e, EventKind::Message);
    assert!(ev.token > 0 && ev.msg_id == 0, "held for the bot");
    e.send(ev.conn_id, "server time: noon").unwrap();
    e.reject(ev.token, "answered privately").unwrap();
    assert_eq!(recv_type(&mut ann, "whisper").await["text"], "server time: noon");
    let err = recv_type(&mut ann, "error").await;
    assert_eq!((err["code"].as_str(), err["ref"].as_u64()), (Some("rejected"), Some(7)), "{err}");

    // The room never heard the command: the next thing bob gets is the next message.
    send(&mut ann, "after").await;
    assert_eq!(recv_type(&mut bob, "message").await["text"], "after");

    let bad =
        embedchat::Engine::start_json(&json!({"listen": "127.0.0.1:0", "command_prefix": "  "}).to_string());
    assert!(bad.err().expect("refused").to_string().contains("command_prefix"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_joins_carry_the_commands_ref() {
    let e = engine(json!({"max_rooms_per_connection": 2, "join_hook": true}));
    let mut ann = connect(&e, "name=ann").await;
    e.approve(wait_event(&e, EventKind::JoinRequest).token).unwrap();
    welcomed(&mut ann).await;

    // The host refuses a join decided later: the error still names the command.
    send(&mut ann, r#"{"type":"join","room":"vip","ref":"j1"}"#).await;
    e.reject(wait_event(&e, EventKind::JoinRequest).token, "members only").unwrap();
    let err = recv_type(&mut ann, "error").await;
    assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("join_rejected"), Some("j1")));

    // One room too many.
    send(&mut ann, r#"{"type":"join","room":"two","ref":"j2"}"#).await;
    e.approve(wait_event(&e, EventKind::JoinRequest).token).unwrap();
    assert_eq!(recv_type(&mut ann, "presence").await["room"], "two");
    send(&mut ann, r#"{"type":"join","room":"three","ref":"j3"}"#).await;
    e.approve(wait_event(&e, EventKind::JoinRequest).token).unwrap();
    let err = recv_type(&mut ann, "error").await;
    assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("too_many_rooms"), Some("j3")));
}
