//! The hub's rules, without sockets: outboxes stand in for connections.

mod behaviour {
    use super::super::*;
    use crate::error::Error;
    use crate::protocol::{Command, Request, Target};
    use serde_json::Value;
    use std::collections::VecDeque;
    use std::time::Duration;

    fn named(name: Option<&str>) -> Identity {
        Identity { name: name.map(str::to_string), ..Default::default() }
    }

    fn req(cmd: Command) -> Request {
        Request { cmd, reference: None }
    }

    fn hub(cfg: impl FnOnce(&mut Config)) -> (Hub, Arc<EventQueue>) {
        let mut c = Config::default();
        cfg(&mut c);
        let events = Arc::new(EventQueue::new(1024).unwrap());
        (Hub::new((&c).into(), Arc::new(Stats::default()), events.clone(), Box::new(LocalOnly), None), events)
    }

    fn drain(o: &Outbox) -> Vec<Value> {
        let mut q = VecDeque::new();
        o.take(&mut q);
        q.iter()
            .map(|f| {
                let start = if f[1] == 126 { 4 } else { 2 };
                serde_json::from_slice(&f[start..]).unwrap()
            })
            .collect()
    }

    fn kinds(events: &EventQueue) -> Vec<EventKind> {
        std::iter::from_fn(|| events.pop(Some(Duration::ZERO)).unwrap()).map(|e| e.kind).collect()
    }

    #[test]
    fn welcome_lists_members_and_others_hear_the_join() {
        let (h, _) = hub(|_| {});
        let a = Arc::new(Outbox::new());
        let b = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        drain(&a);
        h.connect(2, named(Some("bob")), "lobby", Resume::default(), b.clone());
        let wb = drain(&b);
        assert_eq!(wb[0]["type"], "welcome");
        assert_eq!(wb[0]["name"], "bob");
        assert_eq!(wb[0]["members"].as_array().unwrap().len(), 2);
        let wa = drain(&a);
        assert_eq!(wa[0]["type"], "join");
        assert_eq!(wa[0]["user"]["name"], "bob");
    }

    #[test]
    fn a_users_tabs_are_one_member_and_share_whispers() {
        let (h, _) = hub(|_| {});
        let ada = || Identity {
            user: Some("sub:1".into()),
            name: Some("Ada".into()),
            bound: true,
            ..Default::default()
        };
        let (watcher, t1, t2) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        h.connect(1, named(Some("bob")), "r", Resume::default(), watcher.clone());
        h.connect(2, ada(), "r", Resume::default(), t1.clone());
        h.connect(3, ada(), "r", Resume::default(), t2.clone());
        let welcome = &drain(&t2)[0];
        assert_eq!(welcome["name"], "Ada", "the second tab is the same user, not Ada-2");
        assert_eq!(
            welcome["members"][1],
            serde_json::json!({"id": 2, "name": "Ada", "tabs": 2, "bound": true})
        );
        let heard: Vec<Value> = drain(&watcher).into_iter().filter(|m| m["type"] == "join").collect();
        assert_eq!(heard.len(), 1, "Ada's two tabs join once: {heard:?}");
        drain(&t1);

        h.command(1, req(Command::Whisper { to: Target::Id(3), text: "hi".into() }));
        assert_eq!(drain(&t1)[0]["text"], "hi", "a whisper to one tab's id reaches every tab");
        assert_eq!(drain(&t2)[0]["text"], "hi");

        h.command(2, req(Command::Nick { name: "Eve".into() }));
        assert_eq!(drain(&t1)[0]["code"], "name_bound");

        h.disconnect(2, 1000);
        assert!(drain(&watcher).iter().all(|m| m["type"] != "leave"), "one tab closing is not a leave");
        assert_eq!(h.members("r")[1].2, 1);
        h.disconnect(3, 1000);
        assert_eq!(drain(&watcher).iter().filter(|m| m["type"] == "leave").count(), 1);
        assert_eq!(h.members("r").len(), 1);
    }

    #[test]
    fn nobody_takes_the_hosts_name() {
        let (h, _) = hub(|_| {});
        let o = Arc::new(Outbox::new());
        assert_eq!(&*h.connect(1, named(Some("SYSTEM")), "lobby", Resume::default(), o.clone()), "SYSTEM-2");
        drain(&o);
        h.command(1, req(Command::Nick { name: "System".into() }));
        assert_eq!(drain(&o)[0]["code"], "name_reserved");
    }

    #[test]
    fn a_logged_in_users_name_wins_over_an_anonymous_one_and_is_marked() {
        let (h, ev) = hub(|_| {});
        let (anon, ada) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        h.connect(1, named(Some("Ada")), "lobby", Resume::default(), anon.clone());
        drain(&anon);
        let login = Identity {
            user: Some("sub:9".into()),
            name: Some("ada".into()),
            bound: true,
            ..Default::default()
        };
        assert_eq!(&*h.connect(2, login, "lobby", Resume::default(), ada.clone()), "ada");
        let heard = drain(&anon);
        assert_eq!(heard[0]["type"], "nick", "the anonymous Ada hears she is renamed: {heard:?}");
        assert_eq!(
            (heard[0]["old"].as_str(), heard[0]["user"]["name"].as_str()),
            (Some("Ada"), Some("Ada-2"))
        );
        assert_eq!(
            heard[1]["user"],
            serde_json::json!({"id": 2, "name": "ada", "bound": true}),
            "joins marked"
        );
        h.command(2, req(Command::Message { room: None, text: "hi".into() }));
        assert_eq!(drain(&anon)[0]["from"]["bound"], true, "messages marked");
        assert!(kinds(&ev).contains(&EventKind::Nick));
    }

    #[test]
    fn whispers_reach_only_people_who_share_a_room_unless_configured() {
        let (h, _) = hub(|_| {});
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        h.connect(1, named(Some("ann")), "one", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "two", Resume::default(), b.clone());
        drain(&a);
        h.command(1, req(Command::Whisper { to: Target::Id(2), text: "psst".into() }));
        assert_eq!(drain(&a)[0]["code"], "unknown_user");
        assert!(drain(&b).iter().all(|m| m["type"] != "whisper"));
        let (h, _) = hub(|c| c.chat.whisper_scope = crate::config::WhisperScope::Any);
        let (a, b) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        h.connect(1, named(Some("ann")), "one", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "two", Resume::default(), b.clone());
        drain(&b);
        h.command(1, req(Command::Whisper { to: Target::Name("BOB".into()), text: "psst".into() }));
        assert_eq!(drain(&b)[0]["text"], "psst");
    }

    #[test]
    fn a_client_creating_one_room_too_many_pushes_out_the_room_empty_longest() {
        let (h, _) = hub(|c| c.chat.max_rooms = 2);
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "kept", Resume::default(), a.clone());
        h.command(1, req(Command::Message { room: None, text: "remember me".into() }));
        h.command(1, req(Command::Leave { room: "kept".into() }));
        h.command(1, req(Command::Join { room: "b".into(), since: None, epoch: None }));
        h.command(1, req(Command::Join { room: "c".into(), since: None, epoch: None }));
        assert_eq!(h.delivery.stats.rooms_evicted.load(std::sync::atomic::Ordering::Relaxed), 1);
        h.command(1, req(Command::Join { room: "d".into(), since: None, epoch: None }));
        let last = drain(&a).pop().unwrap();
        assert_eq!((last["type"].as_str(), last["code"].as_str()), (Some("error"), Some("room_limit")));
    }

    #[test]
    fn names_are_made_unique_ignoring_case() {
        let (h, _) = hub(|_| {});
        assert_eq!(
            &*h.connect(1, named(Some("Bob")), "lobby", Resume::default(), Arc::new(Outbox::new())),
            "Bob"
        );
        assert_eq!(
            &*h.connect(2, named(Some("bob")), "lobby", Resume::default(), Arc::new(Outbox::new())),
            "bob-2"
        );
        assert_eq!(
            &*h.connect(3, named(None), "lobby", Resume::default(), Arc::new(Outbox::new())),
            "guest-3"
        );
        h.disconnect(1, 1000);
        assert_eq!(
            &*h.connect(4, named(Some("BOB")), "lobby", Resume::default(), Arc::new(Outbox::new())),
            "BOB"
        );
    }

    #[test]
    fn messages_reach_the_room_including_sender_with_increasing_ids() {
        let (h, ev) = hub(|_| {});
        let a = Arc::new(Outbox::new());
        let b = Arc::new(Outbox::new());
        let c = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "lobby", Resume::default(), b.clone());
        h.connect(3, named(Some("cy")), "other", Resume::default(), c.clone());
        for o in [&a, &b, &c] {
            drain(o);
        }
        h.command(1, req(Command::Message { room: None, text: "one".into() }));
        h.command(2, req(Command::Message { room: None, text: "two".into() }));
        let got: Vec<(u64, String)> = drain(&a)
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), m["text"].as_str().unwrap().into()))
            .collect();
        assert_eq!(got, vec![(1, "one".into()), (2, "two".into())]);
        assert_eq!(drain(&b).len(), 2);
        assert!(drain(&c).is_empty(), "rooms isolate");
        let k = kinds(&ev);
        assert_eq!(k.iter().filter(|k| **k == EventKind::Message).count(), 2);
    }

    #[test]
    fn host_relay_sends_nothing_to_the_room() {
        let (h, ev) = hub(|c| c.moderation.relay = crate::config::Relay::Host);
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        drain(&a);
        h.command(1, req(Command::Message { room: None, text: "hi".into() }));
        assert!(drain(&a).is_empty());
        assert_eq!(kinds(&ev), vec![EventKind::Connect, EventKind::Join, EventKind::Message]);
    }

    #[test]
    fn seed_protocol_sends_only_mess_and_name() {
        let (h, _) = hub(|c| c.chat.protocol = Protocol::Seed);
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "lobby", Resume::default(), Arc::new(Outbox::new()));
        h.command(2, req(Command::Message { room: None, text: "hi".into() }));
        let got = drain(&a);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], serde_json::json!({"mess": "hi", "name": "bob"}));
    }

    #[test]
    fn joining_several_rooms_and_leaving() {
        let (h, _) = hub(|c| c.chat.max_rooms_per_connection = 2);
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        h.command(1, req(Command::Join { room: "dev".into(), since: None, epoch: None }));
        h.command(1, req(Command::Join { room: "ops".into(), since: None, epoch: None }));
        let types: Vec<String> = drain(&a)
            .iter()
            .map(|m| format!("{}{}", m["type"].as_str().unwrap(), m["code"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(types, ["welcome", "history", "presence", "history", "errortoo_many_rooms"]);
        h.command(1, req(Command::Message { room: None, text: "x".into() }));
        assert_eq!(drain(&a)[0]["room"], "dev", "the last joined room is current");
        h.command(1, req(Command::Leave { room: "dev".into() }));
        h.command(1, req(Command::Message { room: Some("dev".into()), text: "x".into() }));
        assert_eq!(drain(&a)[0]["code"], "not_member");
        assert_eq!(h.room_count(), 1);
    }

    #[test]
    fn host_broadcast_to_one_room_or_all() {
        let (h, _) = hub(|_| {});
        let a = Arc::new(Outbox::new());
        let b = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "dev", Resume::default(), b.clone());
        drain(&a);
        drain(&b);
        assert_eq!(h.broadcast(Some("dev"), "deploy", "system").unwrap(), 1);
        assert_eq!(drain(&b)[0]["from"], serde_json::json!({"id": 0, "name": "system"}));
        assert!(drain(&a).is_empty());
        assert_eq!(h.broadcast(None, "all", "system").unwrap(), 2);
        assert_eq!(h.broadcast(Some("nobody-here"), "x", "system").unwrap(), 0);
        assert!(matches!(h.broadcast(Some(""), "x", "system"), Err(Error::BadRoom(_))));
    }

    #[test]
    fn slow_member_is_closed_and_others_still_receive() {
        let (h, _) = hub(|c| c.limits.max_backlog_bytes = 2048);
        let slow = Arc::new(Outbox::new());
        let fast = Arc::new(Outbox::new());
        h.connect(1, named(Some("slow")), "lobby", Resume::default(), slow.clone());
        h.connect(2, named(Some("fast")), "lobby", Resume::default(), fast.clone());
        let mut q = VecDeque::new();
        for i in 0..100 {
            h.broadcast(Some("lobby"), &format!("message {i}"), "system").unwrap();
            fast.take(&mut q);
            let n: usize = q.drain(..).map(|f| f.len()).sum();
            fast.written(n);
        }
        assert!(slow.is_closing());
        assert!(!fast.is_closing());
        assert_eq!(h.delivery.stats.slow_consumer_closes.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn a_drop_policy_room_keeps_slow_members_and_reports_them() {
        let (h, ev) = hub(|c| {
            c.limits.max_backlog_bytes = 2048;
            c.chat.rooms.insert(
                "ticker".into(),
                crate::config::RoomConfig {
                    slow_consumer: Some(crate::config::SlowConsumer::DropOldest),
                    ..Default::default()
                },
            );
        });
        let slow = Arc::new(Outbox::new());
        let fast = Arc::new(Outbox::new());
        h.connect(1, named(Some("slow")), "ticker", Resume::default(), slow.clone());
        h.connect(2, named(Some("fast")), "ticker", Resume::default(), fast.clone());
        let mut q = VecDeque::new();
        for i in 0..100 {
            h.broadcast(Some("ticker"), &format!("price {i}"), "system").unwrap();
            fast.take(&mut q);
            let n: usize = q.drain(..).map(|f| f.len()).sum();
            fast.written(n);
        }
        assert!(!slow.is_closing(), "kept, not closed");
        let dropped = slow.dropped();
        assert!(dropped > 50, "{dropped}");
        let last: Vec<Value> = drain(&slow);
        assert_eq!(last.last().unwrap()["text"], "price 99", "the newest messages are the ones kept");
        h.disconnect(1, 1000);
        let lagging: Vec<u64> = std::iter::from_fn(|| ev.pop(Some(Duration::ZERO)).unwrap())
            .filter(|e| e.kind == EventKind::Lagging)
            .map(|e| e.count)
            .collect();
        assert_eq!(lagging, vec![1, 10, dropped], "first drop, each power of ten, and the total at the end");
    }

    #[test]
    fn send_and_kick_unknown_connection_is_an_error() {
        let (h, _) = hub(|_| {});
        assert!(matches!(h.send(9, "x"), Err(Error::UnknownConnection(9))));
        assert!(matches!(h.kick(9, "x"), Err(Error::UnknownConnection(9))));
    }

    #[test]
    fn disconnect_tells_the_room_and_the_host() {
        let (h, ev) = hub(|_| {});
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        h.connect(2, named(Some("bob")), "lobby", Resume::default(), Arc::new(Outbox::new()));
        drain(&a);
        h.disconnect(2, 1000);
        assert_eq!(drain(&a)[0]["type"], "leave");
        let k = kinds(&ev);
        assert_eq!(&k[k.len() - 2..], &[EventKind::Leave, EventKind::Disconnect]);
    }
}

mod properties {
    use super::super::*;
    use crate::protocol::{Command, Request};
    use proptest::prelude::*;

    fn req(cmd: Command) -> Request {
        Request { cmd, reference: None }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Connect(u8, u8),
        Join(u8, u8),
        Leave(u8, u8),
        Say(u8),
        Disconnect(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0u8..4).prop_map(|(c, r)| Op::Connect(c, r)),
            (0u8..8, 0u8..4).prop_map(|(c, r)| Op::Join(c, r)),
            (0u8..8, 0u8..4).prop_map(|(c, r)| Op::Leave(c, r)),
            (0u8..8).prop_map(Op::Say),
            (0u8..8).prop_map(Op::Disconnect),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn membership_names_and_ids_stay_consistent(ops in prop::collection::vec(op(), 1..80)) {
            let mut cfg = Config::default();
            cfg.chat.max_rooms_per_connection = 3;
            let events = Arc::new(EventQueue::new(1 << 16).unwrap());
            let h = Hub::new((&cfg).into(), Arc::new(Stats::default()), events, Box::new(LocalOnly), None);
            let mut outboxes: HashMap<u64, Arc<Outbox>> = HashMap::new();
            let mut last_id: HashMap<String, u64> = HashMap::new();
            let room = |r: u8| format!("room{r}");
            for op in ops {
                match op {
                    Op::Connect(c, r) if !outboxes.contains_key(&(c as u64)) => {
                        let o = Arc::new(Outbox::new());
                        let who = Identity { name: Some("same".into()), ..Default::default() };
                        h.connect(c as u64, who, &room(r), Resume::default(), o.clone());
                        outboxes.insert(c as u64, o);
                    }
                    Op::Join(c, r) => h.command(c as u64, req(Command::Join { room: room(r), since: None, epoch: None })),
                    Op::Leave(c, r) => h.command(c as u64, req(Command::Leave { room: room(r) })),
                    Op::Say(c) => h.command(c as u64, req(Command::Message { room: None, text: "x".into() })),
                    Op::Disconnect(c) => {
                        h.disconnect(c as u64, 1000);
                        outboxes.remove(&(c as u64));
                    }
                    _ => {}
                }
                let st = h.lock();
                for (name, r) in &st.rooms {
                    prop_assert!(!r.members.is_empty() || !r.history.is_empty(), "empty room {} kept", name);
                    prop_assert!(r.history.iter().zip(r.history.iter().skip(1)).all(|(a, b)| a.0 < b.0));
                    prop_assert!(r.index_is_consistent());
                    for m in &r.members {
                        let conn = st.conns.get(&m.id);
                        prop_assert!(conn.is_some_and(|c| c.rooms.iter().any(|x| x == name)));
                    }
                }
                for (id, c) in &st.conns {
                    prop_assert!(c.rooms.len() <= 3);
                    for r in &c.rooms {
                        prop_assert!(st.rooms.get(r).is_some_and(|room| room.contains(*id)));
                    }
                    prop_assert_eq!(st.users.owner_of(&c.name), Some(&c.user));
                }
                prop_assert_eq!(st.users.name_count(), st.conns.len());
            }
            // Every member saw that room's message ids without gaps or repeats while it was in it.
            for o in outboxes.values() {
                let mut q = VecDeque::new();
                o.take(&mut q);
                for f in q {
                    let start = if f[1] == 126 { 4 } else { 2 };
                    let v: serde_json::Value = serde_json::from_slice(&f[start..]).unwrap();
                    if v["type"] == "message" {
                        let r = v["room"].as_str().unwrap().to_string();
                        let id = v["id"].as_u64().unwrap();
                        let prev = last_id.insert(r.clone() + &format!("{:p}", Arc::as_ptr(o)), id);
                        prop_assert!(prev.is_none_or(|p| p < id), "ids went back in {}", r);
                    }
                }
            }
        }
    }
}
