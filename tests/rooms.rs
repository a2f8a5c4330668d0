//! Rooms over real sockets: history on join, paging, resume with and without a gap, whispers,
//! renames, and `ref` on replies.

mod common;

use std::time::Duration;

use common::*;
use embedchat::EventKind;
use serde_json::{json, Value};

fn texts(history: &Value) -> Vec<String> {
    history["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect()
}

fn ids(history: &Value) -> Vec<u64> {
    history["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_gets_the_rooms_history_and_can_page_back() {
    let e = engine(json!({"history_size": 5}));
    for i in 1..=8 {
        e.broadcast(Some("news"), &format!("n{i}")).unwrap(); // nobody there yet: kept anyway
    }
    let mut a = connect(&e, "room=news").await;
    assert_eq!(recv(&mut a).await["type"], "welcome");
    let h = recv(&mut a).await;
    assert_eq!(h["type"], "history");
    assert_eq!(texts(&h), ["n4", "n5", "n6", "n7", "n8"], "the last history_size messages, oldest first");
    assert_eq!((h["gap"].as_bool(), h["more"].as_bool()), (Some(false), Some(true)));

    send(&mut a, r#"{"type":"history","room":"news","before":7,"limit":2,"ref":"p1"}"#).await;
    let page = recv(&mut a).await;
    assert_eq!(ids(&page), [5, 6]);
    assert_eq!(page["more"], true);
    send(&mut a, r#"{"type":"history","room":"news","before":5,"limit":10}"#).await;
    let page = recv(&mut a).await;
    assert_eq!(ids(&page), [4]);
    assert_eq!(page["more"], true, "older messages existed but are no longer kept");

    send(&mut a, r#"{"type":"history","room":"elsewhere","ref":9}"#).await;
    let err = recv(&mut a).await;
    assert_eq!((err["code"].as_str(), err["ref"].as_u64()), (Some("not_member"), Some(9)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_gets_exactly_what_was_missed_or_a_gap() {
    let e = engine(json!({"history_size": 10}));
    let mut a = connect(&e, "name=a&room=r").await;
    welcomed(&mut a).await;
    for i in 1..=4 {
        send(&mut a, &format!("m{i}")).await;
        recv_type(&mut a, "message").await;
    }
    drop(a);

    // Back after seeing up to id 2: exactly 3 and 4.
    let mut b = connect(&e, "name=a&room=r&since=2").await;
    recv_type(&mut b, "welcome").await;
    let h = recv(&mut b).await;
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![3, 4], Some(false)));

    // Saw everything: nothing, no gap.
    send(&mut b, r#"{"type":"join","room":"r","since":4}"#).await;
    recv_type(&mut b, "presence").await;
    let h = recv(&mut b).await;
    assert_eq!((ids(&h), h["gap"].as_bool()), (vec![], Some(false)));

    // Away so long that messages fell out of the window: what is kept, flagged as a gap.
    for i in 5..=20 {
        e.broadcast(Some("r"), &format!("m{i}")).unwrap();
    }
    let mut c = connect(&e, "name=c&room=r&since=4").await;
    recv_type(&mut c, "welcome").await;
    let h = recv(&mut c).await;
    assert_eq!(h["gap"], true);
    assert_eq!(ids(&h), (11..=20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whispers_reach_only_the_addressee_and_echo_to_the_sender() {
    let e = engine(json!({}));
    let mut ann = connect(&e, "name=ann").await;
    let ann_id = welcomed(&mut ann).await["id"].as_u64().unwrap();
    let mut bob = connect(&e, "name=bob").await;
    welcomed(&mut bob).await;
    let mut cy = connect(&e, "name=cy").await;
    welcomed(&mut cy).await;

    send(&mut bob, r#"{"type":"whisper","to":"ANN","text":"psst"}"#).await;
    let got = recv_type(&mut ann, "whisper").await;
    assert_eq!(
        (got["from"]["name"].as_str(), got["to"]["name"].as_str(), got["text"].as_str()),
        (Some("bob"), Some("ann"), Some("psst"))
    );
    assert_eq!(recv_type(&mut bob, "whisper").await["text"], "psst", "echoed to the sender");

    send(&mut cy, &format!(r#"{{"type":"whisper","to":{ann_id},"text":"by id"}}"#)).await;
    assert_eq!(recv_type(&mut ann, "whisper").await["text"], "by id");

    send(&mut cy, r#"{"type":"whisper","to":"nobody","text":"x","ref":"w1"}"#).await;
    let err = recv_type(&mut cy, "error").await;
    assert_eq!((err["code"].as_str(), err["ref"].as_str()), (Some("unknown_user"), Some("w1")));

    // Bob's inbox holds his echo only; the message to ann went to nobody else.
    send(&mut bob, "public").await;
    let next = recv_type(&mut bob, "message").await;
    assert_eq!(next["text"], "public");
    let ev = std::iter::from_fn(|| e.poll_event(Some(std::time::Duration::ZERO)).unwrap())
        .find(|ev| ev.kind == EventKind::Whisper)
        .expect("the host hears of whispers");
    assert_eq!((ev.name.as_deref(), ev.to), (Some("bob"), ann_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_is_announced_and_names_stay_unique() {
    let e = engine(json!({}));
    let mut ann = connect(&e, "name=ann").await;
    welcomed(&mut ann).await;
    let mut bob = connect(&e, "name=bob").await;
    welcomed(&mut bob).await;
    recv_type(&mut ann, "join").await;

    send(&mut bob, r#"{"type":"nick","name":"Ann","ref":1}"#).await;
    let err = recv_type(&mut bob, "error").await;
    assert_eq!((err["code"].as_str(), err["ref"].as_u64()), (Some("name_taken"), Some(1)));

    send(&mut bob, r#"{"type":"nick","name":"  robert  "}"#).await;
    let n = recv_type(&mut ann, "nick").await;
    assert_eq!(
        (n["old"].as_str(), n["user"]["name"].as_str(), n["room"].as_str()),
        (Some("bob"), Some("robert"), Some("lobby"))
    );
    send(&mut bob, "hi").await;
    assert_eq!(recv_type(&mut ann, "message").await["from"]["name"], "robert");
    let mut bob2 = connect(&e, "name=bob").await;
    assert_eq!(welcomed(&mut bob2).await["name"], "bob", "the old name is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_snapshot_matches_the_event_numbers() {
    let e = engine(json!({}));
    let mut a = connect(&e, "name=ann&room=r1").await;
    welcomed(&mut a).await;
    let mut b = connect(&e, "name=bob&room=r1").await;
    welcomed(&mut b).await;
    send(&mut b, r#"{"type":"join","room":"r2"}"#).await;
    recv_type(&mut b, "presence").await;

    let snap: Value = serde_json::from_str(&e.presence_json(None).unwrap()).unwrap();
    let mut last_seq = 0;
    while let Some(ev) = e.poll_event(Some(std::time::Duration::ZERO)).unwrap() {
        last_seq = ev.seq;
    }
    assert_eq!(snap["seq"], last_seq, "the snapshot reflects exactly the events so far");
    let names = |room: &str| -> Vec<String> {
        snap["rooms"][room]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("r1"), ["ann", "bob"]);
    assert_eq!(names("r2"), ["bob"]);
    let one: Value = serde_json::from_str(&e.presence_json(Some("r2")).unwrap()).unwrap();
    assert_eq!(one["rooms"].as_object().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_past_its_presence_limit_sends_counts_batched_updates_and_pages_of_members() {
    let e = engine(
        json!({"presence_limit": 3, "presence_interval_ms": 100, "rooms": {"tiny": {"presence_limit": 1}}}),
    );
    let mut first = connect(&e, "name=first&room=big").await;
    welcomed(&mut first).await;
    let mut others = Vec::new();
    for name in ["bea", "cy"] {
        let mut c = connect(&e, &format!("name={name}&room=big")).await;
        let w = welcomed(&mut c).await;
        assert!(w["members"].is_array(), "a small room lists its members: {w}");
        others.push(c);
    }
    // Up to the limit: a `join` per user, as always.
    assert_eq!(recv_type(&mut first, "join").await["user"]["name"], "bea");
    assert_eq!(recv_type(&mut first, "join").await["user"]["name"], "cy");

    // Past it: newcomers get the count instead of the list, and nobody gets a join each.
    for i in 0..5 {
        let mut c = connect(&e, &format!("name=late{i}&room=big")).await;
        let w = welcomed(&mut c).await;
        assert!(w.get("members").is_none(), "{w}");
        assert_eq!(w["count"], 4 + i, "{w}");
        others.push(c);
    }
    let update = recv(&mut first).await;
    assert_eq!(update["type"], "crowd", "one batched update, not a join each: {update}");
    assert_eq!(update["count"], 8);
    let named: Vec<&str> = update["joined"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(named, ["late0", "late1", "late2", "late3", "late4"]);

    // Leaving is batched too.
    drop(others.pop());
    let update = recv_type(&mut first, "crowd").await;
    assert_eq!((update["count"].as_u64(), update["left"][0].as_str()), (Some(7), Some("late4")));

    // The list, page by page, searchable by the start of a name.
    send(&mut first, r#"{"type":"members","room":"big","limit":3}"#).await;
    let page = recv_type(&mut first, "members").await;
    assert_eq!((page["count"].as_u64(), page["more"].as_bool()), (Some(7), Some(true)));
    assert_eq!(page["members"].as_array().unwrap().len(), 3);
    send(&mut first, r#"{"type":"members","room":"big","prefix":"LATE","offset":3}"#).await;
    let page = recv_type(&mut first, "members").await;
    assert_eq!(page["count"], 4, "{page}");
    assert_eq!(page["members"][0]["name"], "late3");
    assert_eq!(page["more"], false);

    // The host still hears every join, and the snapshot is whole.
    let joins = std::iter::from_fn(|| e.poll_event(Some(Duration::ZERO)).ok().flatten())
        .filter(|ev| ev.kind == EventKind::Join)
        .count();
    assert_eq!(joins, 8);
    let snap: Value = serde_json::from_str(&e.presence_json(Some("big")).unwrap()).unwrap();
    assert_eq!(snap["rooms"]["big"]["members"].as_array().unwrap().len(), 7);

    // A per-room limit: `tiny` is a crowd from its second user.
    let _a = connect(&e, "name=a&room=tiny").await;
    let mut b = connect(&e, "name=b&room=tiny").await;
    assert_eq!(welcomed(&mut b).await["count"], 2);
}
