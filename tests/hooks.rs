//! Relay `host`: messages held for the host's decision, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use embedchat::{Error, EventKind};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_replace_and_reject_each_do_what_they_say() {
    let e = engine(json!({"relay": "host"}));
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

    send(&mut ann, "darn it").await;
    let ev = wait_event(&e, EventKind::Message);
    e.replace(ev.token, "d*rn it").unwrap();
    assert_eq!(recv_type(&mut ann, "message").await["text"], "d*rn it");

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
