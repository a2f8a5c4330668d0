//! Rooms, members and fan-out. No sockets: connections are represented by their outboxes, so
//! every rule here is testable without a network.
//!
//! One lock guards the whole chat state (`State`); every operation takes it once. The parts:
//! this file has the hub itself, connections coming and going, joining and leaving, and the
//! host's operations; `room.rs` one room and its history; `users.rs` names and tabs;
//! `commands.rs` the client commands; `moderation.rs` what waits for the host; `presence.rs`
//! member lists and snapshots; `fanout.rs` where messages leave the hub.

mod commands;
mod fanout;
mod moderation;
mod presence;
mod room;
mod users;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::now_ms;
use crate::config::{ChatConfig, Config, HistoryConfig, ModerationConfig, Protocol};
use crate::error::Error;
use crate::events::{Event, EventKind, EventQueue};
use crate::identity::{ConnId, Identity, Resume};
use crate::outbox::{Outbox, Push};
use crate::protocol::{self, Member, Out, User, Wire};
use crate::stats::Stats;
use crate::wsframe;

pub use fanout::{Broker, LocalOnly};
pub use moderation::Decision;
pub use presence::Snapshot;

use fanout::{Delivery, Frames};
use moderation::Held;
use room::Room;
use users::Users;

/// A fresh history epoch. Made from the start time, the process and a process-wide counter so two
/// engines never share one, and hashed so clients do not learn the server's pid or start time.
fn new_epoch() -> String {
    use sha1::{Digest, Sha1};
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let digest = Sha1::digest(format!("{nanos}-{}-{n}", std::process::id()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

struct Conn {
    /// The user key (see `Identity::user`); `conn:<id>` for a connection on its own.
    user: Arc<str>,
    /// The user's name (every tab has the same).
    name: Arc<str>,
    outbox: Arc<Outbox>,
    wire: Wire,
    /// Rooms in join order; the last one is the current room.
    rooms: Vec<Arc<str>>,
    allowed: Option<Arc<[String]>>,
    /// The login token's `sub`, reported in this connection's events.
    login: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    users: Users,
    rooms: HashMap<Arc<str>, Room>,
    /// Empty rooms kept for their history, longest-empty first (may hold rooms in use again).
    idle: VecDeque<Arc<str>>,
    /// Messages and joins held for the host's decision, by reply token.
    held: HashMap<u64, Held>,
    next_token: u64,
    /// Highest message id of any room removed so far. A room that empties is removed (so
    /// abandoned names cost nothing) and, if it comes back, continues above this, so message
    /// ids in a room never go back and a returning client is never shown an old id again.
    retired_seq: u64,
}

pub struct Hub {
    state: Mutex<State>,
    chat: ChatConfig,
    history: HistoryConfig,
    moderation: ModerationConfig,
    published_events: bool,
    /// The wire new connections speak.
    wire: Wire,
    /// Names this engine's message ids (`history_epoch`, or one made at start).
    epoch: String,
    delivery: Delivery,
    broker: Box<dyn Broker>,
}

impl Hub {
    /// A hub for one engine; it keeps only the parts of `cfg` it reads.
    pub fn new(cfg: &Config, stats: Arc<Stats>, events: Arc<EventQueue>) -> Self {
        let epoch = if cfg.history.history_epoch.is_empty() {
            new_epoch()
        } else {
            cfg.history.history_epoch.clone()
        };
        let wire = match cfg.chat.protocol {
            Protocol::Json => Wire::Json,
            Protocol::Seed => Wire::Seed,
        };
        Hub {
            state: Mutex::default(),
            chat: cfg.chat.clone(),
            history: cfg.history.clone(),
            moderation: cfg.moderation.clone(),
            published_events: cfg.events.published_events,
            wire,
            epoch,
            delivery: Delivery {
                stats,
                events,
                max_backlog: cfg.limits.max_backlog_bytes,
                policy: cfg.limits.slow_consumer,
            },
            broker: Box::new(LocalOnly),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The wire new connections speak (the config's `protocol`).
    pub fn wire(&self) -> Wire {
        self.wire
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `out` to the members of `room` (all but `except`), then to the broker; returns
    /// how many connections here got it.
    fn to_room(&self, st: &State, room: &str, out: Out<'_>, except: Option<ConnId>) -> usize {
        self.room_frames(st, room, &mut Frames::new(out), except)
    }

    fn room_frames(&self, st: &State, room: &str, frames: &mut Frames<'_>, except: Option<ConnId>) -> usize {
        let Some(r) = st.rooms.get(room) else { return 0 };
        let sent = self.delivery.to_members(&r.members, frames, r.policy, except);
        self.broker.room(room, &frames.out);
        sent
    }

    /// Sends `out` to one connection (if its wire carries it).
    fn to_conn(&self, st: &State, id: ConnId, out: &Out<'_>) -> Option<Push> {
        let c = st.conns.get(&id)?;
        self.delivery.to_one(id, &c.outbox, c.wire, out)
    }

    /// Sends `out` to several connections, encoded once per wire.
    fn to_conns(&self, st: &State, ids: &[ConnId], out: Out<'_>) {
        let mut frames = Frames::new(out);
        for id in ids {
            if let Some(c) = st.conns.get(id) {
                if let Some(f) = frames.get(c.wire) {
                    let push = c.outbox.push(f.clone(), self.delivery.max_backlog, self.delivery.policy);
                    self.delivery.account(*id, push);
                }
            }
        }
    }

    fn emit(&self, st: &State, kind: EventKind, id: ConnId, room: Option<&Arc<str>>, name: &Arc<str>) {
        let mut ev = Event::new(kind, id);
        ev.room = room.cloned();
        ev.name = Some(name.clone());
        self.push_event(st, ev);
    }

    /// Queues an event about a connection, naming its logged-in user (the token's `sub`).
    fn push_event(&self, st: &State, mut ev: Event) {
        if ev.user.is_none() {
            ev.user = st.conns.get(&ev.conn_id).and_then(|c| c.login.clone());
        }
        self.delivery.events.push(ev);
    }

    /// Registers a new connection (a second tab of a known user gets that user's name; a new
    /// user a unique version of the name it asked for) and joins `room`. Returns its name.
    pub fn connect(
        &self,
        id: ConnId,
        who: Identity,
        room: &str,
        resume: Resume,
        outbox: Arc<Outbox>,
    ) -> Arc<str> {
        let mut st = self.lock();
        let user: Arc<str> = who.user.map(Into::into).unwrap_or_else(|| format!("conn:{id}").into());
        let name = st.users.add_tab(&user, id, who.name, who.bound);
        let allowed = who.rooms.map(Arc::from);
        let login = user.strip_prefix("sub:").map(Arc::from);
        let conn =
            Conn { user, name: name.clone(), outbox, wire: self.wire, rooms: Vec::new(), allowed, login };
        st.conns.insert(id, conn);
        self.emit(&st, EventKind::Connect, id, None, &name);
        if self.moderation.join_hook {
            self.hold_join(&mut st, id, room, true, resume);
        } else {
            self.join_locked(&mut st, id, room, true, resume);
        }
        name
    }

    /// Registers a connection that takes part in no room and produces no events (echo mode),
    /// so that stop and kick still reach it.
    pub fn attach_silent(&self, id: ConnId, outbox: Arc<Outbox>) {
        let name: Arc<str> = format!("echo-{id}").into();
        let user = name.clone();
        let conn =
            Conn { user, name, outbox, wire: self.wire, rooms: Vec::new(), allowed: None, login: None };
        self.lock().conns.insert(id, conn);
    }

    pub fn detach_silent(&self, id: ConnId) {
        self.lock().conns.remove(&id);
    }

    /// Adds `id` to `room` (making it current); sends welcome or presence and the history to the
    /// joiner and `join` to the others.
    fn join_locked(&self, st: &mut State, id: ConnId, room: &str, first: bool, resume: Resume) {
        let Some(conn) = st.conns.get_mut(&id) else {
            return;
        };
        if let Some(pos) = conn.rooms.iter().position(|r| &**r == room) {
            // Already in: just make it current again.
            let r = conn.rooms.remove(pos);
            conn.rooms.push(r);
        } else {
            if conn.rooms.len() >= self.chat.max_rooms_per_connection {
                let msg = format!("at most {} rooms per connection", self.chat.max_rooms_per_connection);
                self.refuse(st, id, "too_many_rooms", &msg, None);
                return;
            }
            let key: Arc<str> =
                st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
            conn.rooms.push(key.clone());
            let (name, user, outbox, wire) =
                (conn.name.clone(), conn.user.clone(), conn.outbox.clone(), conn.wire);
            let r = self.room_entry(st, &key);
            r.add(id, outbox, wire);
            if r.add_tab(user) {
                self.to_room(st, &key, Out::Join { room: &key, user: User { id, name: &name } }, Some(id));
            }
            self.emit(st, EventKind::Join, id, Some(&key), &name);
        }
        let (Some(conn), Some(r)) = (st.conns.get(&id), st.rooms.get(room)) else {
            return;
        };
        let members = presence::members_of(st, r);
        let members: Vec<Member<'_>> =
            members.iter().map(|m| Member { id: m.id, name: &m.name, tabs: m.tabs }).collect();
        let hello = if first {
            let bound = st.users.get(&conn.user).is_some_and(|u| u.bound);
            Out::Welcome { id, name: &conn.name, bound, room, epoch: &self.epoch, members: &members }
        } else {
            Out::Presence { room, members: &members }
        };
        self.delivery.to_one(id, &conn.outbox, conn.wire, &hello);
        let foreign = resume.epoch.as_deref().is_some_and(|e| e != self.epoch);
        let page = r.catch_up(resume.since, foreign, self.history.history_on_join);
        let out = Out::History { room, messages: &page.messages, gap: page.gap, more: page.more };
        self.delivery.to_one(id, &conn.outbox, conn.wire, &out);
    }

    /// Takes `id` out of `room`, telling the others if it was the user's last tab there.
    /// Returns false if it was not in it.
    fn leave_locked(&self, st: &mut State, id: ConnId, room: &str) -> bool {
        let Some(conn) = st.conns.get_mut(&id) else {
            return false;
        };
        let Some(pos) = conn.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        let key = conn.rooms.remove(pos);
        let (name, user) = (conn.name.clone(), conn.user.clone());
        if let Some(r) = st.rooms.get_mut(&key) {
            r.remove(id);
            let last_tab = r.remove_tab(&user);
            if r.is_empty() {
                self.room_emptied(st, key.clone());
            } else if last_tab {
                self.to_room(st, &key, Out::Leave { room: &key, user: User { id, name: &name } }, None);
            }
        }
        self.emit(st, EventKind::Leave, id, Some(&key), &name);
        true
    }

    /// Gives a message the room's next id, keeps it and delivers it; returns its id (0 if the
    /// room is gone) and how many connections here got it.
    fn publish(
        &self,
        st: &mut State,
        from: ConnId,
        name: &str,
        room: &Arc<str>,
        text: &str,
        ts: u64,
    ) -> (u64, usize) {
        let keep = self.history.history_size;
        let Some(r) = st.rooms.get_mut(room) else { return (0, 0) };
        r.seq += 1;
        let id = r.seq;
        let from = User { id: from, name };
        let json = protocol::message(room, id, ts, from, text);
        r.remember(id, &json, keep);
        let mut frames = Frames::with_json(Out::Message { room, id, ts, from, text }, &json);
        (id, self.room_frames(st, room, &mut frames, None))
    }

    /// The room called `key`, created (continuing above every retired id) if need be.
    fn room_entry<'s>(&self, st: &'s mut State, key: &Arc<str>) -> &'s mut Room {
        let policy = self.chat.policy_for(key, self.delivery.policy);
        let retired = st.retired_seq;
        st.rooms.entry(key.clone()).or_insert_with(|| Room::new(policy, retired))
    }

    /// A room nobody is in: forgotten at once if it has no history, else kept, up to
    /// `max_idle_rooms` of them.
    fn room_emptied(&self, st: &mut State, key: Arc<str>) {
        let keep = st.rooms.get(&key).is_some_and(|r| !r.history.is_empty());
        if keep {
            st.idle.push_back(key);
            while st.idle.len() > self.history.max_idle_rooms {
                let Some(old) = st.idle.pop_front() else { break };
                if st.rooms.get(&old).is_some_and(Room::is_empty) {
                    Self::retire(st, &old);
                }
            }
        } else {
            Self::retire(st, &key);
        }
    }

    fn retire(st: &mut State, key: &str) {
        if let Some(r) = st.rooms.remove(key) {
            st.retired_seq = st.retired_seq.max(r.seq);
        }
    }

    /// Removes a connection: leaves every room (telling the others) and reports `disconnect`.
    pub fn disconnect(&self, id: ConnId, code: u16) {
        let mut st = self.lock();
        let Some(conn) = st.conns.get(&id) else {
            return;
        };
        let rooms: Vec<Arc<str>> = conn.rooms.iter().rev().cloned().collect();
        for r in rooms {
            self.leave_locked(&mut st, id, &r);
        }
        let Some(conn) = st.conns.remove(&id) else { return };
        st.users.remove_tab(&conn.user, id);
        let dropped = conn.outbox.dropped();
        if dropped > 0 {
            // The final count, whatever the last power of ten reported was.
            let mut ev = Event::new(EventKind::Lagging, id);
            ev.name = Some(conn.name.clone());
            ev.user = conn.login.clone();
            ev.count = dropped;
            self.delivery.events.push(ev);
        }
        let mut ev = Event::new(EventKind::Disconnect, id);
        ev.name = Some(conn.name);
        ev.user = conn.login;
        ev.close_code = code;
        self.delivery.events.push(ev);
    }

    /// A host message to one room, or to every room when `room` is None. Returns how many
    /// connections it was queued to.
    pub fn broadcast(&self, room: Option<&str>, text: &str, from: &str) -> Result<usize, Error> {
        if let Some(r) = room {
            protocol::validate_room(r, self.chat.max_room_chars).map_err(Error::BadRoom)?;
        }
        let mut st = self.lock();
        Stats::inc(&self.delivery.stats.host_broadcasts);
        let ts = now_ms();
        let keys: Vec<Arc<str>> = match room {
            Some(name) => {
                vec![st.rooms.get_key_value(name).map(|(k, _)| k.clone()).unwrap_or_else(|| name.into())]
            }
            None => st.rooms.keys().cloned().collect(),
        };
        let mut sent = 0;
        for key in keys {
            // Nobody there yet: the room is kept for its history, so later arrivals see it.
            let new = !st.rooms.contains_key(&key);
            self.room_entry(&mut st, &key);
            let (id, n) = self.publish(&mut st, 0, from, &key, text, ts);
            sent += n;
            if new {
                self.room_emptied(&mut st, key.clone());
            }
            self.published(&key, id, ts, from, text);
        }
        Ok(sent)
    }

    /// A `published` event for a host message, when the config asks for them.
    fn published(&self, room: &Arc<str>, msg_id: u64, ts: u64, from: &str, text: &str) {
        if !self.published_events {
            return;
        }
        let mut ev = Event::new(EventKind::Published, 0);
        ev.ts = ts;
        ev.msg_id = msg_id;
        ev.room = Some(room.clone());
        ev.name = Some(from.into());
        ev.text = Some(text.to_string());
        self.delivery.events.push(ev);
    }

    /// A host message to one connection (shown as a whisper from the host).
    pub fn send(&self, id: ConnId, text: &str) -> Result<(), Error> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(Error::UnknownConnection(id))?;
        let host = User { id: 0, name: &self.chat.host_name };
        let out = Out::Whisper { ts: now_ms(), from: host, to: User { id, name: &conn.name }, text };
        match self.delivery.to_one(id, &conn.outbox, conn.wire, &out) {
            Some(Push::Queued | Push::Lagging { queued: true, .. }) | None => {
                Stats::inc(&self.delivery.stats.messages_out);
                Ok(())
            }
            Some(Push::Overflow | Push::Closed | Push::Lagging { queued: false, .. }) => {
                Err(Error::QueueFull(id))
            }
        }
    }

    /// Closes one connection with code 4000 and `reason`.
    pub fn kick(&self, id: ConnId, reason: &str) -> Result<(), Error> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(Error::UnknownConnection(id))?;
        self.kick_conn(conn, reason);
        Ok(())
    }

    /// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many.
    pub fn kick_user(&self, sub: &str, reason: &str) -> usize {
        let st = self.lock();
        let Some(u) = st.users.get(&format!("sub:{sub}")) else { return 0 };
        u.conns.iter().filter(|id| st.conns.get(id).is_some_and(|c| self.kick_conn(c, reason))).count()
    }

    /// Closes a connection with 4000 and counts it; false if it was already closing.
    fn kick_conn(&self, conn: &Conn, reason: &str) -> bool {
        let closed = conn.outbox.close(wsframe::close::KICKED, reason);
        if closed {
            Stats::inc(&self.delivery.stats.kicks);
        }
        closed
    }

    /// Closes every connection with `code` at once, dropping undelivered backlog (used by stop:
    /// 1001; delivering megabytes of backlog first would make stop unbounded).
    pub fn close_all(&self, code: u16, reason: &str) {
        let st = self.lock();
        for c in st.conns.values() {
            c.outbox.close_discarding(code, reason);
        }
    }

    /// Puts a message the host kept (a database) back into a room's history, e.g. after a
    /// restart. Ids must increase per room; the room's next message continues above `id`, so a
    /// client resuming with `since` (and the same `history_epoch`) gets exactly what it missed.
    pub fn restore(&self, room: &str, id: u64, ts: u64, from: &str, text: &str) -> Result<(), Error> {
        protocol::validate_room(room, self.chat.max_room_chars).map_err(Error::BadRoom)?;
        let mut st = self.lock();
        let key: Arc<str> =
            st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
        let new = !st.rooms.contains_key(&key);
        let keep = self.history.history_size;
        let r = self.room_entry(&mut st, &key);
        if id <= r.seq {
            let last = r.seq;
            if new {
                self.room_emptied(&mut st, key);
            }
            return Err(Error::InvalidArgument(format!(
                "message id {id} is not above room `{room}`'s last id {last}; restore oldest first"
            )));
        }
        r.seq = id;
        let json = protocol::message(room, id, ts, User { id: 0, name: from }, text);
        r.remember(id, &json, keep);
        if new {
            self.room_emptied(&mut st, key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        (Hub::new(&c, Arc::new(Stats::default()), events.clone()), events)
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
        let ada =
            || Identity { user: Some("sub:1".into()), name: Some("Ada".into()), bound: true, rooms: None };
        let (watcher, t1, t2) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        h.connect(1, named(Some("bob")), "r", Resume::default(), watcher.clone());
        h.connect(2, ada(), "r", Resume::default(), t1.clone());
        h.connect(3, ada(), "r", Resume::default(), t2.clone());
        let welcome = &drain(&t2)[0];
        assert_eq!(welcome["name"], "Ada", "the second tab is the same user, not Ada-2");
        assert_eq!(welcome["members"][1], serde_json::json!({"id": 2, "name": "Ada", "tabs": 2}));
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
                crate::config::RoomConfig { slow_consumer: Some(crate::config::SlowConsumer::DropOldest) },
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

#[cfg(test)]
mod properties {
    use super::*;
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
            let h = Hub::new(&cfg, Arc::new(Stats::default()), events);
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
