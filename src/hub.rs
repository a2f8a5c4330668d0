//! Rooms, members and fan-out. No sockets: connections are represented by their outboxes, so
//! every rule here is testable without a network.
//!
//! Fan-out encodes each message once (JSON, then one WebSocket frame) and pushes the same bytes
//! into every member's bounded outbox; a member past its backlog limit is closed there (1008)
//! and counted, and the others are not slowed down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{Config, HookDefault, Protocol, Relay, SlowConsumer};
use crate::events::{Event, EventKind, EventQueue};
use crate::outbox::{Outbox, Push};
use crate::protocol::{self, Command, Member, Request, Target, User, Welcome};
use crate::stats::Stats;
use crate::wsframe;
use serde_json::Value;

pub type ConnId = u64;

/// A fresh history epoch. Made from the start time, the process and a process-wide counter so two
/// engines never share one, and hashed so clients do not learn the server's pid or start time.
fn new_epoch() -> String {
    use sha1::{Digest, Sha1};
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let digest = Sha1::digest(format!("{nanos}-{}-{n}", std::process::id()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a host operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubError {
    UnknownConnection(ConnId),
    BadRoom(String),
    /// No message waits for a decision under this token (decided already, or timed out).
    UnknownToken(u64),
    /// The connection's backlog is full; it is being closed as a slow consumer.
    QueueFull(ConnId),
    /// A restored message id is not above the room's last id.
    IdNotIncreasing {
        room: String,
        id: u64,
        last: u64,
    },
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::UnknownConnection(id) => write!(f, "no open connection with id {id}"),
            HubError::BadRoom(m) => write!(f, "bad room name: {m}"),
            HubError::UnknownToken(t) => {
                write!(f, "no message waits for a decision under token {t} (already decided, or timed out)")
            }
            HubError::QueueFull(id) => {
                write!(f, "connection {id} is not reading; its backlog is full and it is being closed")
            }
            HubError::IdNotIncreasing { room, id, last } => {
                write!(f, "message id {id} is not above room `{room}`'s last id {last}; restore oldest first")
            }
        }
    }
}

/// Who a connection is, settled before the upgrade (token, or what the client asked for).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Connections with the same key are one user (tabs): `sub:<token sub>`, or `key:<secret>`
    /// for an anonymous browser's own random key. None: this connection alone.
    pub user: Option<String>,
    pub name: Option<String>,
    /// The name comes from the site's login: `nick` is refused.
    pub bound: bool,
    /// Rooms the token allows (None: any).
    pub rooms: Option<Vec<String>>,
}

struct Conn {
    /// The user key (see `Identity::user`); `conn:<id>` for a connection on its own.
    user: Arc<str>,
    /// The user's name (every tab has the same).
    name: Arc<str>,
    outbox: Arc<Outbox>,
    /// Rooms in join order; the last one is the current room.
    rooms: Vec<Arc<str>>,
    allowed: Option<Arc<[String]>>,
    /// The login token's `sub`, reported in this connection's events.
    login: Option<Arc<str>>,
}

struct UserEntry {
    name: Arc<str>,
    bound: bool,
    /// Open connections (tabs), oldest first.
    conns: Vec<ConnId>,
}

struct Slot {
    id: ConnId,
    outbox: Arc<Outbox>,
}

struct Room {
    /// Dense list so fan-out is a straight walk; `index` finds a member for removal.
    members: Vec<Slot>,
    index: HashMap<ConnId, usize>,
    seq: u64,
    policy: SlowConsumer,
    /// The last messages as (id, JSON object), oldest first.
    history: VecDeque<(u64, Arc<str>)>,
    /// Tabs per user key: the room hears `join` for a user's first tab and `leave` for its last.
    tabs: HashMap<Arc<str>, u32>,
}

impl Room {
    fn new(policy: SlowConsumer, seq: u64) -> Self {
        Room {
            members: Vec::new(),
            index: HashMap::new(),
            seq,
            policy,
            history: VecDeque::new(),
            tabs: HashMap::new(),
        }
    }

    fn remember(&mut self, id: u64, json: &str, keep: usize) {
        if keep == 0 {
            return;
        }
        if self.history.len() == keep {
            self.history.pop_front();
        }
        self.history.push_back((id, json.into()));
    }

    /// What a client that last saw `since` (None: a newcomer) should get: the messages and
    /// whether some it missed are no longer kept.
    /// `foreign`: `since` is from another epoch (an engine that restarted), so it says
    /// nothing about this history.
    fn catch_up(&self, since: Option<u64>, foreign: bool, newcomer_window: usize) -> (Vec<&str>, bool) {
        let Some(since) = since else {
            let skip = self.history.len().saturating_sub(newcomer_window);
            return (self.history.iter().skip(skip).map(|(_, m)| &**m).collect(), false);
        };
        let oldest = self.history.front().map_or(self.seq + 1, |(id, _)| *id);
        let gap = foreign || since > self.seq || (since < self.seq && since + 1 < oldest);
        let from = if gap { 0 } else { since };
        (self.history.iter().filter(|(id, _)| *id > from).map(|(_, m)| &**m).collect(), gap)
    }

    fn add(&mut self, id: ConnId, outbox: Arc<Outbox>) {
        self.index.insert(id, self.members.len());
        self.members.push(Slot { id, outbox });
    }

    fn remove(&mut self, id: ConnId) {
        if let Some(i) = self.index.remove(&id) {
            self.members.swap_remove(i);
            if let Some(moved) = self.members.get(i) {
                self.index.insert(moved.id, i);
            }
        }
    }
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<Arc<str>, UserEntry>,
    rooms: HashMap<Arc<str>, Room>,
    /// Lower-cased names in use → user key, so "Bob" and "bob" cannot both appear.
    names: HashMap<String, Arc<str>>,
    /// Empty rooms kept for their history, longest-empty first (may hold rooms in use again).
    idle: VecDeque<Arc<str>>,
    /// Messages held for the host's decision, by reply token.
    held: HashMap<u64, Held>,
    next_token: u64,
    /// Highest message id of any room removed so far. A room that empties is removed (so
    /// abandoned names cost nothing) and, if it comes back, continues above this, so message
    /// ids in a room never go back and a returning client is never shown an old id again.
    retired_seq: u64,
}

/// A message waiting for the host (relay `host`).
struct Held {
    from: ConnId,
    name: Arc<str>,
    room: Arc<str>,
    what: HeldKind,
    deadline_ms: u64,
}

enum HeldKind {
    /// A chat message (relay `host`).
    Message(String),
    /// A join (`join_hook`): the connection's first room, or a `join` command; with its resume.
    Join { first: bool, resume: Resume },
}

/// The host's answer to a held message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject(String),
    Replace(String),
}

/// Where a joining client left off: the last id it saw and the epoch that id is from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub since: Option<u64>,
    pub epoch: Option<String>,
}

pub struct Hub {
    state: Mutex<State>,
    cfg: Config,
    /// Names this engine's message ids (`history_epoch`, or one made at start).
    epoch: String,
    /// Rooms whose slow-consumer policy differs from the engine's (from `cfg.rooms`).
    room_policies: HashMap<String, SlowConsumer>,
    stats: Arc<Stats>,
    events: Arc<EventQueue>,
}

impl Hub {
    pub fn new(cfg: &Config, stats: Arc<Stats>, events: Arc<EventQueue>) -> Self {
        let room_policies =
            cfg.rooms.iter().filter_map(|(name, r)| r.slow_consumer.map(|p| (name.clone(), p))).collect();
        let epoch = if cfg.history_epoch.is_empty() { new_epoch() } else { cfg.history_epoch.clone() };
        Hub { state: Mutex::default(), cfg: cfg.clone(), epoch, room_policies, stats, events }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn policy_for(&self, room: &str) -> SlowConsumer {
        self.room_policies.get(room).copied().unwrap_or(self.cfg.slow_consumer)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seed(&self) -> bool {
        self.cfg.protocol == Protocol::Seed
    }

    /// Pushes one frame to every member of a room; returns how many got it.
    fn fan_out(&self, room: &Room, frame: &Bytes, except: Option<ConnId>) -> usize {
        let mut sent = 0;
        for m in &room.members {
            if Some(m.id) != except {
                sent += usize::from(
                    self.account(m.id, m.outbox.push(frame.clone(), self.cfg.max_backlog_bytes, room.policy)),
                );
            }
        }
        Stats::add(&self.stats.messages_out, sent as u64);
        sent
    }

    fn to_one(&self, id: ConnId, outbox: &Outbox, json: &str) -> Push {
        let r = outbox.push(wsframe::text(json), self.cfg.max_backlog_bytes, self.cfg.slow_consumer);
        self.account(id, r);
        r
    }

    /// Counts what a push did; tells the host when a connection starts or keeps lagging (at 1,
    /// 10, 100… dropped messages, so a lagging client cannot flood the event queue). Returns
    /// whether the frame was queued.
    fn account(&self, id: ConnId, push: Push) -> bool {
        match push {
            Push::Queued => true,
            Push::Overflow => {
                Stats::inc(&self.stats.slow_consumer_closes);
                false
            }
            Push::Closed => false,
            Push::Lagging { queued, dropped, total } => {
                Stats::add(&self.stats.messages_dropped, u64::from(dropped));
                let before = total - u64::from(dropped);
                if before == 0 || before.ilog10() != total.ilog10() {
                    let mut ev = Event::new(EventKind::Lagging, id);
                    ev.code = total;
                    self.events.push(ev);
                }
                queued
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
        self.events.push(ev);
    }

    /// The room's users once each, as (oldest connection id in the room, name, tabs, user key).
    fn members_of(st: &State, room: &Room) -> Vec<(ConnId, Arc<str>, u32, Arc<str>)> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut out: Vec<(ConnId, Arc<str>, u32, Arc<str>)> = Vec::new();
        for m in &room.members {
            let Some(c) = st.conns.get(&m.id) else { continue };
            match seen.get(&*c.user) {
                Some(&i) => out[i].0 = out[i].0.min(m.id),
                None => {
                    seen.insert(&c.user, out.len());
                    let tabs = room.tabs.get(&c.user).copied().unwrap_or(1);
                    out.push((m.id, c.name.clone(), tabs, c.user.clone()));
                }
            }
        }
        out
    }

    /// Registers a new connection under a unique version of `requested` and joins `room`.
    /// Returns the name it got.
    /// A second tab of a known user gets that user's name. Returns the name it got.
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
        let name = match st.users.get_mut(&user) {
            Some(u) => {
                u.conns.push(id);
                u.name.clone()
            }
            None => {
                let base = who.name.unwrap_or_else(|| format!("guest-{id}"));
                let mut name = base.clone();
                let mut n = 2;
                while st.names.contains_key(&name.to_lowercase()) {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                let name: Arc<str> = name.into();
                st.names.insert(name.to_lowercase(), user.clone());
                st.users.insert(
                    user.clone(),
                    UserEntry { name: name.clone(), bound: who.bound, conns: vec![id] },
                );
                name
            }
        };
        let allowed = who.rooms.map(Arc::from);
        let login = user.strip_prefix("sub:").map(Arc::from);
        let conn =
            Conn { user, name: name.clone(), outbox: outbox.clone(), rooms: Vec::new(), allowed, login };
        st.conns.insert(id, conn);
        self.emit(&st, EventKind::Connect, id, None, &name);
        if self.cfg.join_hook {
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
        self.lock()
            .conns
            .insert(id, Conn { user, name, outbox, rooms: Vec::new(), allowed: None, login: None });
    }

    pub fn detach_silent(&self, id: ConnId) {
        self.lock().conns.remove(&id);
    }

    /// Adds `id` to `room` (making it current); sends welcome or presence to the joiner and
    /// `join` to the others.
    fn join_locked(&self, st: &mut State, id: ConnId, room: &str, first: bool, resume: Resume) {
        let Some(conn) = st.conns.get_mut(&id) else {
            return;
        };
        if let Some(pos) = conn.rooms.iter().position(|r| &**r == room) {
            // Already in: just make it current again.
            let r = conn.rooms.remove(pos);
            conn.rooms.push(r);
        } else {
            if conn.rooms.len() >= self.cfg.max_rooms_per_connection {
                let msg = format!("at most {} rooms per connection", self.cfg.max_rooms_per_connection);
                let outbox = conn.outbox.clone();
                self.command_error(id, &outbox, "too_many_rooms", &msg);
                return;
            }
            let key: Arc<str> =
                st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
            conn.rooms.push(key.clone());
            let name = conn.name.clone();
            let user = conn.user.clone();
            let outbox = conn.outbox.clone();
            let r = self.room_entry(st, &key);
            r.add(id, outbox);
            let tabs = r.tabs.entry(user).or_insert(0);
            *tabs += 1;
            if *tabs == 1 && !self.seed() {
                let frame = wsframe::text(&protocol::join(&key, User { id, name: &name }));
                let r = &st.rooms[&key];
                self.fan_out(r, &frame, Some(id));
            }
            self.emit(st, EventKind::Join, id, Some(&key), &name);
        }
        if self.seed() {
            return;
        }
        let (Some(conn), Some(r)) = (st.conns.get(&id), st.rooms.get(room)) else {
            return;
        };
        let members = Self::members_of(st, r);
        let users: Vec<Member<'_>> =
            members.iter().map(|(id, n, tabs, _)| Member { id: *id, name: n, tabs: *tabs }).collect();
        let json = if first {
            let bound = st.users.get(&conn.user).is_some_and(|u| u.bound);
            let w = Welcome { id, name: &conn.name, bound, room, epoch: &self.epoch };
            protocol::welcome(&w, &users)
        } else {
            protocol::presence(room, &users)
        };
        self.to_one(id, &conn.outbox, &json);
        let since = resume.since;
        let foreign = resume.epoch.as_deref().is_some_and(|e| e != self.epoch);
        let (messages, gap) = r.catch_up(since, foreign, self.cfg.history_on_join);
        let shown = messages.len();
        let more = !gap
            && since.is_none()
            && (shown < r.history.len() || r.history.front().is_some_and(|(f, _)| *f > 1));
        let json = protocol::history(room, messages.into_iter(), gap, more);
        self.to_one(id, &conn.outbox, &json);
    }

    /// Sends a user's message to its room and remembers it; returns its id (0 if the room is
    /// gone).
    fn publish(&self, st: &mut State, from: ConnId, name: &str, room: &Arc<str>, text: &str, ts: u64) -> u64 {
        let keep = self.cfg.history_size;
        let Some(r) = st.rooms.get_mut(room) else { return 0 };
        r.seq += 1;
        let json = protocol::message(room, r.seq, ts, User { id: from, name }, text);
        r.remember(r.seq, &json, keep);
        let wire = if self.seed() { protocol::seed_message(text, name) } else { json };
        self.fan_out(r, &wsframe::text(&wire), None);
        r.seq
    }

    /// The host's decision on a held message: publish it as sent, publish other text, or tell
    /// the sender it was refused.
    pub fn decide(&self, token: u64, decision: Decision) -> Result<(), HubError> {
        let mut st = self.lock();
        let held = st.held.remove(&token).ok_or(HubError::UnknownToken(token))?;
        self.apply(&mut st, held, decision);
        Ok(())
    }

    fn apply(&self, st: &mut State, held: Held, decision: Decision) {
        let outbox = st.conns.get(&held.from).map(|c| c.outbox.clone());
        match (held.what, decision) {
            (HeldKind::Message(text), Decision::Approve)
            | (HeldKind::Message(_), Decision::Replace(text)) => {
                let mut ev = Event::new(EventKind::Published, held.from);
                ev.msg_id = self.publish(st, held.from, &held.name, &held.room, &text, ev.ts);
                if ev.msg_id > 0 && self.cfg.published_events {
                    ev.room = Some(held.room);
                    ev.name = Some(held.name);
                    ev.text = Some(text);
                    self.push_event(st, ev);
                }
            }
            (HeldKind::Message(_), Decision::Reject(reason)) => {
                let reason =
                    if reason.is_empty() { "your message was not published".to_string() } else { reason };
                if let Some(o) = outbox {
                    self.command_error(held.from, &o, "rejected", &reason);
                }
            }
            (HeldKind::Join { first, resume }, Decision::Approve | Decision::Replace(_)) => {
                self.join_locked(st, held.from, &held.room, first, resume);
            }
            (HeldKind::Join { first, .. }, Decision::Reject(reason)) => {
                let reason =
                    if reason.is_empty() { format!("you may not join `{}`", held.room) } else { reason };
                if let Some(o) = outbox {
                    if first {
                        // Nowhere to be: the connection ends, with the reason.
                        o.close(wsframe::close::JOIN_REFUSED, &reason);
                    } else {
                        self.command_error(held.from, &o, "join_rejected", &reason);
                    }
                }
            }
        }
    }

    /// Holds a join for the host (`join_hook`): a `join_request` event with a reply token.
    fn hold_join(&self, st: &mut State, id: ConnId, room: &str, first: bool, resume: Resume) {
        let Some(conn) = st.conns.get(&id) else { return };
        st.next_token += 1;
        let mut ev = Event::new(EventKind::JoinRequest, id);
        ev.token = st.next_token;
        ev.name = Some(conn.name.clone());
        ev.room = Some(room.into());
        let held = Held {
            from: id,
            name: conn.name.clone(),
            room: room.into(),
            what: HeldKind::Join { first, resume },
            deadline_ms: ev.ts + self.cfg.hook_timeout_ms + 1,
        };
        st.held.insert(ev.token, held);
        self.push_event(st, ev);
    }

    /// Applies `hook_default` to held messages whose deadline passed; returns how many.
    pub fn expire(&self, now: u64) -> usize {
        let mut st = self.lock();
        let due: Vec<u64> = st.held.iter().filter(|(_, h)| h.deadline_ms <= now).map(|(t, _)| *t).collect();
        for token in &due {
            if let Some(held) = st.held.remove(token) {
                let decision = match self.cfg.hook_default {
                    HookDefault::Accept => Decision::Approve,
                    HookDefault::Reject => Decision::Reject("the moderator did not answer in time".into()),
                };
                Stats::inc(&self.stats.hook_timeouts);
                self.apply(&mut st, held, decision);
            }
        }
        due.len()
    }

    /// The room called `key`, created (continuing above every retired id) if need be.
    fn room_entry<'s>(&self, st: &'s mut State, key: &Arc<str>) -> &'s mut Room {
        let policy = self.policy_for(key);
        let retired = st.retired_seq;
        st.rooms.entry(key.clone()).or_insert_with(|| Room::new(policy, retired))
    }

    /// A room nobody is in: forgotten at once if it has no history, else kept, up to
    /// `max_idle_rooms` of them.
    fn room_emptied(&self, st: &mut State, key: Arc<str>) {
        let keep = st.rooms.get(&key).is_some_and(|r| !r.history.is_empty());
        if keep {
            st.idle.push_back(key);
            while st.idle.len() > self.cfg.max_idle_rooms {
                let Some(old) = st.idle.pop_front() else { break };
                if st.rooms.get(&old).is_some_and(|r| r.members.is_empty()) {
                    self.retire(st, &old);
                }
            }
        } else {
            self.retire(st, &key);
        }
    }

    fn retire(&self, st: &mut State, key: &str) {
        if let Some(r) = st.rooms.remove(key) {
            st.retired_seq = st.retired_seq.max(r.seq);
        }
    }

    fn leave_locked(&self, st: &mut State, id: ConnId, room: &str) -> bool {
        let Some(conn) = st.conns.get_mut(&id) else {
            return false;
        };
        let Some(pos) = conn.rooms.iter().position(|r| &**r == room) else {
            return false;
        };
        let key = conn.rooms.remove(pos);
        let name = conn.name.clone();
        let user = conn.user.clone();
        if let Some(r) = st.rooms.get_mut(&key) {
            r.remove(id);
            let last_tab = match r.tabs.get_mut(&user) {
                Some(t) if *t > 1 => {
                    *t -= 1;
                    false
                }
                _ => {
                    r.tabs.remove(&user);
                    true
                }
            };
            if r.members.is_empty() {
                self.room_emptied(st, key.clone());
            } else if last_tab && !self.seed() {
                let frame = wsframe::text(&protocol::leave(&key, User { id, name: &name }));
                self.fan_out(&st.rooms[&key], &frame, None);
            }
        }
        self.emit(st, EventKind::Leave, id, Some(&key), &name);
        true
    }

    fn command_error(&self, id: ConnId, outbox: &Outbox, code: &str, message: &str) {
        self.refuse(id, outbox, code, message, None);
    }

    fn refuse(&self, id: ConnId, outbox: &Outbox, code: &str, message: &str, reference: Option<&Value>) {
        Stats::inc(&self.stats.command_errors);
        if !self.seed() {
            self.to_one(id, outbox, &protocol::error(code, message, reference));
        }
    }

    /// Tells a connection its message was refused (echoing the command's `ref`, if any).
    pub fn reply_error(&self, id: ConnId, code: &str, message: &str, reference: Option<&Value>) {
        let outbox = self.lock().conns.get(&id).map(|c| c.outbox.clone());
        if let Some(o) = outbox {
            self.refuse(id, &o, code, message, reference);
        }
    }

    /// Carries out one command from a client; a refusal gets an `error` carrying its `ref`.
    pub fn command(&self, id: ConnId, req: Request) {
        let mut st = self.lock();
        let Some(conn) = st.conns.get(&id) else {
            return;
        };
        let outbox = conn.outbox.clone();
        let reference = req.reference.as_ref();
        let refuse = |code: &str, message: &str| self.refuse(id, &outbox, code, message, reference);
        match req.cmd {
            Command::Message { room, text } => {
                let room = match room {
                    Some(r) => match conn.rooms.iter().find(|x| ***x == *r) {
                        Some(k) => k.clone(),
                        None => return refuse("not_member", &format!("you are not in room `{r}`")),
                    },
                    None => match conn.rooms.last() {
                        Some(k) => k.clone(),
                        None => return refuse("no_room", "join a room first"),
                    },
                };
                if text.is_empty() {
                    return refuse("empty", "empty message");
                }
                let name = conn.name.clone();
                let mut ev = Event::new(EventKind::Message, id);
                match self.cfg.relay {
                    Relay::Auto => ev.msg_id = self.publish(&mut st, id, &name, &room, &text, ev.ts),
                    Relay::Host => {
                        st.next_token += 1;
                        ev.token = st.next_token;
                        let held = Held {
                            from: id,
                            name: name.clone(),
                            room: room.clone(),
                            what: HeldKind::Message(text.clone()),
                            // +1: `ts` is truncated to the millisecond; never hold less than asked.
                            deadline_ms: ev.ts + self.cfg.hook_timeout_ms + 1,
                        };
                        st.held.insert(ev.token, held);
                    }
                }
                ev.room = Some(room);
                ev.name = Some(name);
                ev.text = Some(text);
                self.push_event(&st, ev);
            }
            Command::Join { room, since, epoch } => {
                if let Err(m) = protocol::validate_room(&room, self.cfg.max_room_chars) {
                    return refuse("bad_room", &m);
                }
                if conn.allowed.as_ref().is_some_and(|a| !a.contains(&room)) {
                    return refuse("forbidden_room", &format!("your login does not allow room `{room}`"));
                }
                let member = conn.rooms.iter().any(|r| **r == *room);
                let resume = Resume { since, epoch };
                if self.cfg.join_hook && !member {
                    self.hold_join(&mut st, id, &room, false, resume);
                } else {
                    self.join_locked(&mut st, id, &room, false, resume);
                }
            }
            Command::Leave { room } => {
                if !self.leave_locked(&mut st, id, &room) {
                    refuse("not_member", &format!("you are not in room `{room}`"));
                }
            }
            Command::History { room, before, limit } => {
                if !conn.rooms.iter().any(|r| **r == *room) {
                    return refuse("not_member", &format!("you are not in room `{room}`"));
                }
                let Some(r) = st.rooms.get(room.as_str()) else { return };
                let limit = limit.unwrap_or(50).clamp(1, self.cfg.history_size.max(1) as u64) as usize;
                let older: Vec<&str> = r
                    .history
                    .iter()
                    .filter(|(mid, _)| before.is_none_or(|b| *mid < b))
                    .map(|(_, m)| &**m)
                    .collect();
                let start = older.len().saturating_sub(limit);
                let first_id =
                    r.history.iter().find(|(mid, _)| before.is_none_or(|b| *mid < b)).map(|(m, _)| *m);
                let more = start > 0 || first_id.is_some_and(|f| f > 1);
                let json = protocol::history(&room, older[start..].iter().copied(), false, more);
                self.to_one(id, &outbox, &json);
            }
            Command::Whisper { to, text } => {
                if text.is_empty() {
                    return refuse("empty", "empty message");
                }
                let target = match &to {
                    Target::Id(n) => st.conns.get(n).map(|c| c.user.clone()),
                    Target::Name(n) => st.names.get(&n.to_lowercase()).cloned(),
                };
                let Some(dest) = target.as_ref().and_then(|u| st.users.get(u)) else {
                    return refuse("unknown_user", "nobody by that name or id is here");
                };
                let target_id = dest.conns[0];
                let from = User { id, name: &conn.name };
                let json = protocol::whisper(now_ms(), from, User { id: target_id, name: &dest.name }, &text);
                let frame = wsframe::text(&json);
                // Every tab of the recipient, and the sender's other tabs (they show the echo).
                let mut tabs: Vec<ConnId> = dest.conns.clone();
                if target.as_ref() != Some(&conn.user) {
                    tabs.extend(st.users.get(&conn.user).map(|u| u.conns.as_slice()).unwrap_or(&[id]));
                }
                for t in tabs {
                    if let Some(c) = st.conns.get(&t) {
                        let push =
                            c.outbox.push(frame.clone(), self.cfg.max_backlog_bytes, self.cfg.slow_consumer);
                        self.account(t, push);
                    }
                }
                let mut ev = Event::new(EventKind::Whisper, id);
                ev.name = Some(conn.name.clone());
                ev.text = Some(text);
                ev.code = target_id;
                self.push_event(&st, ev);
            }
            Command::Nick { name } => {
                let Some(new) = protocol::clean_name(&name, self.cfg.max_name_chars) else {
                    return refuse("bad_name", "a name needs at least one visible character");
                };
                let user = conn.user.clone();
                let Some(entry) = st.users.get(&user) else { return };
                if entry.bound {
                    return refuse(
                        "name_bound",
                        "your name comes from your login and cannot be changed here",
                    );
                }
                let key = new.to_lowercase();
                if st.names.get(&key).is_some_and(|owner| *owner != user) {
                    return refuse("name_taken", &format!("`{new}` is taken"));
                }
                let old = conn.name.clone();
                let new: Arc<str> = new.into();
                // The user is renamed in every tab; each room it is in hears it once.
                let tabs = entry.conns.clone();
                let mut rooms: Vec<Arc<str>> = Vec::new();
                for t in &tabs {
                    if let Some(c) = st.conns.get_mut(t) {
                        c.name = new.clone();
                        for r in &c.rooms {
                            if !rooms.contains(r) {
                                rooms.push(r.clone());
                            }
                        }
                    }
                }
                if let Some(u) = st.users.get_mut(&user) {
                    u.name = new.clone();
                }
                st.names.remove(&old.to_lowercase());
                st.names.insert(key, user);
                if !self.seed() {
                    for room in &rooms {
                        if let Some(r) = st.rooms.get(room) {
                            let json = protocol::nick(room, User { id, name: &new }, &old);
                            self.fan_out(r, &wsframe::text(&json), None);
                        }
                    }
                }
                let mut ev = Event::new(EventKind::Nick, id);
                ev.name = Some(new);
                ev.text = Some(old.to_string());
                self.push_event(&st, ev);
            }
            Command::Ping => {
                if !self.seed() {
                    self.to_one(id, &outbox, &protocol::pong(reference));
                }
            }
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
        if let Some(conn) = st.conns.remove(&id) {
            if let Some(u) = st.users.get_mut(&conn.user) {
                u.conns.retain(|c| *c != id);
                if u.conns.is_empty() {
                    st.users.remove(&conn.user);
                    st.names.remove(&conn.name.to_lowercase());
                }
            }
            let dropped = conn.outbox.dropped();
            if dropped > 0 {
                // The final count, whatever the last power of ten reported was.
                let mut ev = Event::new(EventKind::Lagging, id);
                ev.name = Some(conn.name.clone());
                ev.user = conn.login.clone();
                ev.code = dropped;
                self.events.push(ev);
            }
            let mut ev = Event::new(EventKind::Disconnect, id);
            ev.name = Some(conn.name);
            ev.user = conn.login;
            ev.code = code as u64;
            self.events.push(ev);
        }
    }

    /// A host message to one room, or to every room when `room` is None. Returns how many
    /// connections it was queued to.
    pub fn broadcast(&self, room: Option<&str>, text: &str, from: &str) -> Result<usize, HubError> {
        if let Some(r) = room {
            protocol::validate_room(r, self.cfg.max_room_chars).map_err(HubError::BadRoom)?;
        }
        let mut st = self.lock();
        Stats::inc(&self.stats.host_broadcasts);
        let ts = now_ms();
        let host = User { id: 0, name: from };
        let seed = self.seed();
        let mut sent = 0;
        let keep = self.cfg.history_size;
        // Only made when published events are on: no allocation per broadcast otherwise.
        let sender: Option<Arc<str>> = self.cfg.published_events.then(|| from.into());
        let mut one = |name: &Arc<str>, r: &mut Room| {
            r.seq += 1;
            let json = protocol::message(name, r.seq, ts, host, text);
            r.remember(r.seq, &json, keep);
            let wire = if seed { protocol::seed_message(text, host.name) } else { json };
            sent += self.fan_out(r, &wsframe::text(&wire), None);
            let Some(sender) = &sender else { return };
            let mut ev = Event::new(EventKind::Published, 0);
            ev.ts = ts;
            ev.msg_id = r.seq;
            ev.room = Some(name.clone());
            ev.name = Some(sender.clone());
            ev.text = Some(text.to_string());
            self.events.push(ev);
        };
        match room {
            Some(name) => {
                // Nobody there yet: the room is kept for its history, so later arrivals see it.
                let key: Arc<str> =
                    st.rooms.get_key_value(name).map(|(k, _)| k.clone()).unwrap_or_else(|| name.into());
                let new = !st.rooms.contains_key(&key);
                one(&key, self.room_entry(&mut st, &key));
                if new {
                    self.room_emptied(&mut st, key);
                }
            }
            None => {
                for (name, r) in st.rooms.iter_mut() {
                    one(name, r);
                }
            }
        }
        Ok(sent)
    }

    /// A host message to one connection (shown as a whisper from the host).
    pub fn send(&self, id: ConnId, text: &str) -> Result<(), HubError> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(HubError::UnknownConnection(id))?;
        let json = if self.seed() {
            protocol::seed_message(text, &self.cfg.host_name)
        } else {
            protocol::whisper(
                now_ms(),
                User { id: 0, name: &self.cfg.host_name },
                User { id, name: &conn.name },
                text,
            )
        };
        match self.to_one(id, &conn.outbox, &json) {
            Push::Queued | Push::Lagging { queued: true, .. } => {
                Stats::inc(&self.stats.messages_out);
                Ok(())
            }
            Push::Overflow | Push::Closed | Push::Lagging { queued: false, .. } => {
                Err(HubError::QueueFull(id))
            }
        }
    }

    /// Closes one connection with code 4000 and `reason`.
    pub fn kick(&self, id: ConnId, reason: &str) -> Result<(), HubError> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(HubError::UnknownConnection(id))?;
        self.kick_conn(conn, reason);
        Ok(())
    }

    /// Closes a connection with 4000 and counts it; false if it was already closing.
    fn kick_conn(&self, conn: &Conn, reason: &str) -> bool {
        let closed = conn.outbox.close(wsframe::close::KICKED, reason);
        if closed {
            Stats::inc(&self.stats.kicks);
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

    /// Who is where, as JSON: `{"seq": N, "epoch", "rooms": {room: {"last_id", "connections",
    /// "members": [{id, name, tabs, conns, user?}]}}}` for one room or every room with members
    /// (`user`: the token's `sub`, for logged-in users). Taken under the lock every membership event is
    /// queued under, so it reflects exactly the events numbered up to `seq`: a host that lost
    /// track rebuilds from this and applies only events with a higher `seq`.
    pub fn presence(&self, room: Option<&str>) -> Value {
        let st = self.lock();
        let seq = self.events.last_seq();
        let mut rooms = serde_json::Map::new();
        let mut add = |name: &str, r: &Room| {
            // One pass over the room for every user's connections (not one per user).
            let mut conns_of: HashMap<&str, Vec<ConnId>> = HashMap::new();
            for m in &r.members {
                if let Some(c) = st.conns.get(&m.id) {
                    conns_of.entry(&*c.user).or_default().push(m.id);
                }
            }
            let members: Vec<Value> = Self::members_of(&st, r)
                .iter()
                .map(|(id, n, tabs, user)| {
                    let conns = conns_of.get(&**user).cloned().unwrap_or_default();
                    let mut m = serde_json::json!({"id": id, "name": &**n, "tabs": tabs, "conns": conns});
                    if let Some(sub) = user.strip_prefix("sub:") {
                        m["user"] = Value::from(sub);
                    }
                    m
                })
                .collect();
            let v = serde_json::json!({"last_id": r.seq, "connections": r.members.len(), "members": members});
            rooms.insert(name.to_string(), v);
        };
        match room {
            Some(name) => {
                if let Some(r) = st.rooms.get(name) {
                    add(name, r);
                }
            }
            None => {
                for (name, r) in st.rooms.iter().filter(|(_, r)| !r.members.is_empty()) {
                    add(name, r);
                }
            }
        }
        serde_json::json!({"seq": seq, "epoch": self.epoch, "rooms": rooms})
    }

    /// Rooms with someone in them (empty rooms kept for their history are not counted).
    pub fn room_count(&self) -> usize {
        self.lock().rooms.values().filter(|r| !r.members.is_empty()).count()
    }

    /// Users in a room once each as (a connection id, name, tabs).
    pub fn members(&self, room: &str) -> Vec<(ConnId, Arc<str>, u32)> {
        let st = self.lock();
        let Some(r) = st.rooms.get(room) else { return Vec::new() };
        Self::members_of(&st, r).into_iter().map(|(id, n, t, _)| (id, n, t)).collect()
    }

    /// Rooms with someone in them: (name, users, connections, last message id), by name.
    pub fn rooms(&self) -> Vec<(String, usize, usize, u64)> {
        let st = self.lock();
        let mut out: Vec<_> = st
            .rooms
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(k, r)| (k.to_string(), r.tabs.len(), r.members.len(), r.seq))
            .collect();
        out.sort();
        out
    }

    /// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many.
    pub fn kick_user(&self, sub: &str, reason: &str) -> usize {
        let st = self.lock();
        let key = format!("sub:{sub}");
        let Some(u) = st.users.get(key.as_str()) else { return 0 };
        u.conns.iter().filter(|id| st.conns.get(id).is_some_and(|c| self.kick_conn(c, reason))).count()
    }

    /// Puts a message the host kept (a database) back into a room's history, e.g. after a
    /// restart. Ids must increase per room; the room's next message continues above `id`, so a
    /// client resuming with `since` (and the same `history_epoch`) gets exactly what it missed.
    pub fn restore(&self, room: &str, id: u64, ts: u64, from: &str, text: &str) -> Result<(), HubError> {
        protocol::validate_room(room, self.cfg.max_room_chars).map_err(HubError::BadRoom)?;
        let mut st = self.lock();
        let key: Arc<str> =
            st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
        let new = !st.rooms.contains_key(&key);
        let keep = self.cfg.history_size;
        let r = self.room_entry(&mut st, &key);
        if id <= r.seq {
            return Err(HubError::IdNotIncreasing { room: room.to_string(), id, last: r.seq });
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
        let (h, ev) = hub(|c| c.relay = Relay::Host);
        let a = Arc::new(Outbox::new());
        h.connect(1, named(Some("ann")), "lobby", Resume::default(), a.clone());
        drain(&a);
        h.command(1, req(Command::Message { room: None, text: "hi".into() }));
        assert!(drain(&a).is_empty());
        assert_eq!(kinds(&ev), vec![EventKind::Connect, EventKind::Join, EventKind::Message]);
    }

    #[test]
    fn seed_protocol_sends_only_mess_and_name() {
        let (h, _) = hub(|c| c.protocol = Protocol::Seed);
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
        let (h, _) = hub(|c| c.max_rooms_per_connection = 2);
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
        assert_eq!(h.broadcast(Some("dev"), "deploy", "system"), Ok(1));
        assert_eq!(drain(&b)[0]["from"], serde_json::json!({"id": 0, "name": "system"}));
        assert!(drain(&a).is_empty());
        assert_eq!(h.broadcast(None, "all", "system"), Ok(2));
        assert_eq!(h.broadcast(Some("nobody-here"), "x", "system"), Ok(0));
        assert!(matches!(h.broadcast(Some(""), "x", "system"), Err(HubError::BadRoom(_))));
    }

    #[test]
    fn slow_member_is_closed_and_others_still_receive() {
        let (h, _) = hub(|c| c.max_backlog_bytes = 2048);
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
        assert_eq!(h.stats.slow_consumer_closes.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn a_drop_policy_room_keeps_slow_members_and_reports_them() {
        let (h, ev) = hub(|c| {
            c.max_backlog_bytes = 2048;
            c.rooms.insert(
                "ticker".into(),
                crate::config::RoomConfig { slow_consumer: Some(SlowConsumer::DropOldest) },
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
            .map(|e| e.code)
            .collect();
        assert_eq!(lagging, vec![1, 10, dropped], "first drop, each power of ten, and the total at the end");
    }

    #[test]
    fn send_and_kick_unknown_connection_is_an_error() {
        let (h, _) = hub(|_| {});
        assert_eq!(h.send(9, "x"), Err(HubError::UnknownConnection(9)));
        assert_eq!(h.kick(9, "x"), Err(HubError::UnknownConnection(9)));
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
            let cfg = Config { max_rooms_per_connection: 3, ..Config::default() };
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
                    prop_assert_eq!(r.members.len(), r.index.len());
                    for (i, m) in r.members.iter().enumerate() {
                        prop_assert_eq!(r.index[&m.id], i);
                        let conn = st.conns.get(&m.id);
                        prop_assert!(conn.is_some_and(|c| c.rooms.iter().any(|x| x == name)));
                    }
                }
                for (id, c) in &st.conns {
                    prop_assert!(c.rooms.len() <= 3);
                    for r in &c.rooms {
                        prop_assert!(st.rooms.get(r).is_some_and(|room| room.index.contains_key(id)));
                    }
                    prop_assert_eq!(st.names.get(&c.name.to_lowercase()), Some(&c.user));
                }
                prop_assert_eq!(st.names.len(), st.conns.len());
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
