//! Rooms, members and fan-out. No sockets: connections are represented by their outboxes, so
//! every rule here is testable without a network.
//!
//! One lock guards the whole chat state (`State`); every operation takes it once. The parts:
//! this file has the hub itself, connections coming and going, joining and leaving; `room.rs`
//! one room and its history; `users.rs` names and tabs; `commands.rs` the client commands;
//! `moderation.rs` what waits for the host; `operations.rs` what the host does (broadcast,
//! send, kick, restore); `presence.rs` member lists and snapshots; `fanout.rs` where messages
//! leave the hub; `tests.rs` the rules, without sockets.

mod cluster;
mod cluster_presence;
mod commands;
mod fanout;
mod history;
mod lifecycle;
mod moderation;
mod operations;
mod presence;
mod pusher;
mod room;
mod users;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{ChatConfig, Config, HistoryConfig, ModerationConfig, Protocol, SlowConsumer};
use crate::events::{Event, EventKind, EventQueue};
use crate::identity::{ConnId, Identity, Resume};
use crate::outbox::{Outbox, Push};
use crate::protocol::{self, Codec, Member, Out, User, Wire};
use crate::stats::Stats;

pub use cluster::{Loaded, Posted};
pub use cluster_presence::{Presence, PresenceChange};
pub use fanout::{deflated, Broker, LocalOnly, NodeOp, Post};
pub use moderation::Decision;
pub use presence::Snapshot;
pub use pusher::{cluster_users as pusher_cluster_users, ChannelInfo, GUARDED as PUSHER_GUARDED};

use fanout::{Delivery, Frames};
use moderation::Held;
use room::Room;
use users::Users;

/// A fresh history epoch. Made from the start time, the process and a process-wide counter so two
/// engines never share one, and hashed so clients do not learn the server's pid or start time.
pub fn new_epoch() -> String {
    use sha1::{Digest, Sha1};
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let digest = Sha1::digest(format!("{nanos}-{}-{n}", std::process::id()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A connection as the hub knows it. Kept small (and boxed in the map) because there is one
/// per connection: the fields only some connections need live in `more`.
struct Conn {
    /// The user key (see `Identity::user`); `conn:<id>` for a connection on its own.
    user: Arc<str>,
    /// The user's name (every tab has the same).
    name: Arc<str>,
    outbox: Arc<Outbox>,
    /// Rooms in join order; the last one is the current room.
    rooms: Vec<Arc<str>>,
    /// The client's address as limits count it.
    ip: Option<IpAddr>,
    wire: Codec,
    /// The name comes from the site's login.
    bound: bool,
    /// Rooms this connection created that still exist.
    created: u32,
    more: Option<Box<ConnMore>>,
}

/// What only some connections have: a login, rooms a token limits them to, history owed.
#[derive(Default)]
struct ConnMore {
    /// Rooms the login token allows (None: any).
    allowed: Option<Arc<[String]>>,
    /// The login token's `sub`, reported in this connection's events.
    login: Option<Arc<str>>,
    /// History it is still owed, sent page by page as it drains.
    owed: Vec<history::Owed>,
    /// Pusher presence channels it subscribed to, and as whom (`pusher.rs`).
    presence: Vec<(Arc<str>, Arc<pusher::Presence>)>,
    /// The Pusher user it signed in as (`pusher:signin`).
    signed_in: Option<Arc<str>>,
}

impl Conn {
    fn new(user: Arc<str>, name: Arc<str>, outbox: Arc<Outbox>, wire: Codec) -> Box<Self> {
        Box::new(Conn {
            user,
            name,
            outbox,
            rooms: Vec::new(),
            ip: None,
            wire,
            bound: false,
            created: 0,
            more: None,
        })
    }

    fn login(&self) -> Option<Arc<str>> {
        self.more.as_ref().and_then(|m| m.login.clone())
    }

    fn allows(&self, room: &str) -> bool {
        self.more.as_ref().and_then(|m| m.allowed.as_ref()).is_none_or(|a| a.iter().any(|r| r == room))
    }

    fn more(&mut self) -> &mut ConnMore {
        self.more.get_or_insert_with(Box::default)
    }

    fn owed(&mut self) -> &mut Vec<history::Owed> {
        &mut self.more().owed
    }

    fn owes(&self) -> bool {
        self.more.as_ref().is_some_and(|m| !m.owed.is_empty())
    }
}

struct State {
    conns: HashMap<ConnId, Box<Conn>>,
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
    /// Bytes the history of every room holds.
    history_bytes: usize,
    /// Rooms clients from each address created that still exist.
    by_ip: HashMap<IpAddr, u32>,
    /// Crowds with comings and goings not yet announced (see `presence.rs`).
    crowded: Vec<Arc<str>>,
    /// Watches of cluster rooms so far (see `cluster.rs`).
    generation: u64,
}

/// The parts of the engine's config the hub reads; it never sees the rest (no secrets).
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub chat: ChatConfig,
    pub history: HistoryConfig,
    pub moderation: ModerationConfig,
    pub max_backlog_bytes: usize,
    pub slow_consumer: SlowConsumer,
    pub published_events: bool,
    /// The Pusher protocol is on: `private-` and `presence-` rooms are its authorised channels.
    pub pusher: bool,
}

impl From<&Config> for HubConfig {
    fn from(cfg: &Config) -> Self {
        HubConfig {
            chat: cfg.chat.clone(),
            history: cfg.history.clone(),
            moderation: cfg.moderation.clone(),
            max_backlog_bytes: cfg.limits.max_backlog_bytes,
            slow_consumer: cfg.limits.slow_consumer,
            published_events: cfg.events.published_events,
            pusher: cfg.site.pusher.is_some(),
        }
    }
}

pub struct Hub {
    state: Mutex<State>,
    chat: ChatConfig,
    history: HistoryConfig,
    moderation: ModerationConfig,
    published_events: bool,
    /// `HubConfig::pusher`.
    pusher: bool,
    /// The wire new connections speak.
    wire: Wire,
    /// The most bytes of history one frame carries (half the backlog: live messages need room).
    page_bytes: usize,
    /// Names this engine's message ids (`history_epoch`, or one made at start).
    epoch: String,
    delivery: Delivery,
    broker: Box<dyn Broker>,
    /// The broker numbers messages (a cluster): they are posted to it, not delivered here first.
    clustered: bool,
}

impl Hub {
    /// A hub for one engine. `broker` is where messages go besides this engine's own
    /// connections (`LocalOnly` for an engine that is alone). `epoch` names the message ids
    /// (a cluster's, shared by its nodes); None: `history_epoch`, or one made now.
    pub fn new(
        cfg: HubConfig,
        stats: Arc<Stats>,
        events: Arc<EventQueue>,
        broker: Box<dyn Broker>,
        epoch: Option<String>,
    ) -> Self {
        let epoch = match epoch {
            Some(e) => e,
            None if cfg.history.history_epoch.is_empty() => new_epoch(),
            None => cfg.history.history_epoch.clone(),
        };
        let wire = match cfg.chat.protocol {
            Protocol::Json => Wire::Json,
            Protocol::Seed => Wire::Seed,
        };
        let state = State {
            conns: HashMap::new(),
            users: Users::new(&cfg.chat.host_name),
            rooms: HashMap::new(),
            idle: VecDeque::new(),
            held: HashMap::new(),
            next_token: 0,
            retired_seq: cfg.history.id_floor,
            history_bytes: 0,
            by_ip: HashMap::new(),
            crowded: Vec::new(),
            generation: 0,
        };
        Hub {
            state: Mutex::new(state),
            page_bytes: cfg.max_backlog_bytes / 2,
            chat: cfg.chat,
            history: cfg.history,
            moderation: cfg.moderation,
            published_events: cfg.published_events,
            pusher: cfg.pusher,
            wire,
            epoch,
            delivery: Delivery {
                stats,
                events,
                max_backlog: cfg.max_backlog_bytes,
                policy: cfg.slow_consumer,
            },
            clustered: broker.orders(),
            broker,
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

    /// `to_room`, but not to the connections in `skip`.
    fn to_room_but(&self, st: &State, room: &str, out: Out<'_>, skip: &HashSet<ConnId>) -> usize {
        let Some(r) = st.rooms.get(room) else { return 0 };
        let mut frames = Frames::new(out);
        let sent = self.delivery.to_members_where(&r.members, &mut frames, r.policy, |m| !skip.contains(&m));
        self.broker.room(room, &frames.out);
        sent
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

    /// Sends `out` to the tabs of a user (`ids`, this engine's), encoded once per wire, then to
    /// the broker for the user's tabs elsewhere.
    fn to_user(&self, st: &State, user: &str, ids: &[ConnId], out: Out<'_>) {
        let mut frames = Frames::new(out);
        self.to_tabs(st, ids, &mut frames);
        self.broker.user(user, &frames.out);
    }

    /// Pushes `frames` to connections `ids` of this engine.
    fn to_tabs(&self, st: &State, ids: &[ConnId], frames: &mut Frames<'_>) {
        for id in ids {
            if let Some(c) = st.conns.get(id) {
                if let Some(f) = frames.get(c.wire) {
                    let push = c.outbox.push(f, self.delivery.max_backlog, self.delivery.policy);
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
            ev.user = st.conns.get(&ev.conn_id).and_then(|c| c.login());
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
        if who.bound && st.users.get(&user).is_none() {
            // A logged-in user's name wins: an anonymous holder is renamed, and its rooms hear it.
            let holder = who.name.as_deref().and_then(|n| st.users.anonymous_holder(n));
            if let Some((holder, u)) = holder.and_then(|h| st.users.get(&h).map(|u| (h.clone(), u))) {
                let (new, tab) = (st.users.free_name(&u.name), u.conns[0]);
                self.rename_user(&mut st, &holder, tab, new.into());
            }
        }
        let new_user = st.users.get(&user).is_none();
        let name = st.users.add_tab(&user, id, who.name, who.bound);
        if self.clustered && new_user {
            self.broker.name(&user, &name, true, who.bound);
        }
        let codec = Codec { wire: self.wire, deflate: outbox.deflate() };
        let mut conn = Conn::new(user, name.clone(), outbox, codec);
        let login = conn.user.strip_prefix("sub:").map(Arc::from);
        if who.rooms.is_some() || login.is_some() {
            let more = conn.more();
            more.allowed = who.rooms.map(Arc::from);
            more.login = login;
        }
        conn.ip = who.ip;
        conn.bound = who.bound;
        st.conns.insert(id, conn);
        self.emit(&st, EventKind::Connect, id, None, &name);
        if self.moderation.join_hook {
            self.hold_join(&mut st, id, room, true, resume, None);
        } else {
            self.join_locked(&mut st, id, room, true, resume, None);
        }
        name
    }

    /// Registers a connection that takes part in no room and produces no events (echo mode),
    /// so that stop and kick still reach it.
    pub fn attach_silent(&self, id: ConnId, outbox: Arc<Outbox>) {
        let name: Arc<str> = format!("echo-{id}").into();
        let user = name.clone();
        let codec = Codec { wire: self.wire, deflate: outbox.deflate() };
        self.lock().conns.insert(id, Conn::new(user, name, outbox, codec));
    }

    pub fn detach_silent(&self, id: ConnId) {
        self.lock().conns.remove(&id);
    }

    /// Adds `id` to `room` (making it current); sends welcome or presence and the history to the
    /// joiner and `join` to the others.
    /// `reference` is the `join` command's `ref`, for the refusals.
    fn join_locked(
        &self,
        st: &mut State,
        id: ConnId,
        room: &str,
        first: bool,
        resume: Resume,
        reference: Option<&serde_json::Value>,
    ) {
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
                self.refuse(st, id, "too_many_rooms", &msg, reference);
                return;
            }
            let key: Arc<str> =
                st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
            if !st.rooms.contains_key(&key) {
                if let Err(why) = self.create_room(st, id, &key) {
                    if first {
                        // Nowhere to be: the connection ends, with the reason.
                        if let Some(c) = st.conns.get(&id) {
                            c.outbox.close(crate::wsframe::close::POLICY, &why);
                        }
                    } else {
                        self.refuse(st, id, "room_limit", &why, reference);
                    }
                    return;
                }
            }
            let Some(conn) = st.conns.get_mut(&id) else { return };
            conn.rooms.push(key.clone());
            let (name, user, outbox, wire, bound) =
                (conn.name.clone(), conn.user.clone(), conn.outbox.clone(), conn.wire, conn.bound);
            let r = self.room_entry(st, &key);
            r.add(id, outbox, wire);
            let first_tab = r.add_tab(user.clone());
            if self.clustered {
                // Announced by the cluster, to every node (this one included), once per user.
                self.tell_cluster(st, &key, &user, id, &name, bound, None);
            } else if first_tab && self.crowd_came(st, &key, &name) {
                let user = User { id, name: &name, bound };
                self.to_room(st, &key, Out::Join { room: &key, user }, Some(id));
            }
            self.emit(st, EventKind::Join, id, Some(&key), &name);
        }
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        if let Some(l) = st.rooms.get_mut(&key).and_then(|r| r.loading.as_mut()) {
            // A cluster room whose members and history are on their way (`loaded`).
            l.waiting.retain(|(w, ..)| *w != id);
            l.waiting.push((id, resume, first));
            return;
        }
        self.greet(st, id, &key, first, &resume);
    }

    /// A joiner's welcome (its first room) or presence, then the room's history.
    fn greet(&self, st: &mut State, id: ConnId, room: &Arc<str>, first: bool, resume: &Resume) {
        let (Some(conn), Some(r)) = (st.conns.get(&id), st.rooms.get(room)) else {
            return;
        };
        if conn.wire.wire == Wire::Pusher {
            return self.pusher_greet(st, id, room);
        }
        // A crowd's newcomer gets the count, not the list (which would cost O(n) per join).
        let listed =
            (r.crowd.is_none() && r.users() <= r.presence_limit).then(|| presence::members_of(st, room, r));
        let members: Option<Vec<Member<'_>>> = listed.as_ref().map(|l| {
            l.iter().map(|m| Member { id: m.id, name: &m.name, tabs: m.tabs, bound: m.bound }).collect()
        });
        let (members, count) = match &members {
            Some(m) => (Some(m.as_slice()), None),
            None => (None, Some(r.users())),
        };
        let hello = if first {
            let bound = st.users.get(&conn.user).is_some_and(|u| u.bound);
            Out::Welcome { id, name: &conn.name, bound, room, epoch: &self.epoch, members, count }
        } else {
            Out::Presence { room, members, count }
        };
        self.delivery.to_one(id, &conn.outbox, conn.wire, &hello);
        self.send_history(st, id, room, resume);
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
        // A Pusher presence subscriber counts as its user_id there, not as its connection.
        let presence = conn.take_presence(&key);
        let (name, bound) = (conn.name.clone(), conn.bound);
        let user = presence.as_ref().map_or_else(|| conn.user.clone(), |p| p.tab.clone());
        if let Some(r) = st.rooms.get_mut(&key) {
            r.remove(id);
            let last_tab = r.remove_tab(&user);
            let (empty, elsewhere) = (r.is_empty(), r.elsewhere.contains_key(&user));
            if let Some(p) = presence.as_ref().filter(|_| last_tab && !elsewhere && !empty) {
                self.pusher_member_news(st, &key, &p.tab, None, false, &HashSet::new());
            }
            if self.clustered {
                let info = presence.as_ref().map(|p| p.user_info.clone());
                self.tell_cluster(st, &key, &user, id, &name, bound, info);
            }
            if empty {
                if let Some(r) = st.rooms.get_mut(&key) {
                    r.crowd = None; // an empty room is small again
                }
                self.room_emptied(st, key.clone());
            } else if last_tab && !self.clustered && self.crowd_went(st, &key, &name) {
                let user = User { id, name: &name, bound };
                self.to_room(st, &key, Out::Leave { room: &key, user }, None);
            }
        }
        self.emit(st, EventKind::Leave, id, Some(&key), &name);
        true
    }

    /// Gives a message the room's next id, keeps it and delivers it, then reports `ev` (the
    /// message: its sender, room, name, text and time) with that id when `report` is set.
    /// Returns how many connections here got it. In a cluster the message is posted to the
    /// broker instead, which numbers it and brings it back to every node (`cluster.rs`); the
    /// event is reported then, and the count is of this node's members.
    fn publish(&self, st: &mut State, mut ev: Event, report: bool) -> usize {
        let (Some(room), Some(name)) = (ev.room.clone(), ev.name.clone()) else { return 0 };
        let bound = st.conns.get(&ev.conn_id).is_some_and(|c| c.bound);
        if self.clustered {
            if ev.user.is_none() {
                ev.user = st.conns.get(&ev.conn_id).and_then(|c| c.login());
            }
            let here = st.rooms.get(&room).map_or(0, |r| r.members.len());
            let post = Post {
                room,
                from: ev.conn_id,
                name,
                bound,
                ts: ev.ts,
                text: ev.text.clone().unwrap_or_default(),
                key: 0,
                event: report.then_some(ev),
                event_name: None,
                except: None,
            };
            self.broker.post(post);
            return here;
        }
        let Some(r) = st.rooms.get_mut(&room) else { return 0 };
        r.seq += 1;
        let id = r.seq;
        let (ts, text) = (ev.ts, ev.text.as_deref().unwrap_or_default());
        let from = User { id: ev.conn_id, name: &name, bound };
        let json = protocol::message(&room, id, ts, from, text);
        self.keep(st, &room, id, &json);
        let mut frames = Frames::with_json(Out::Message { room: &room, id, ts, from, text }, &json);
        let sent = self.room_frames(st, &room, &mut frames, None);
        if report {
            ev.msg_id = id;
            self.push_event(st, ev);
        }
        sent
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
        if self.clustered && st.users.get(&conn.user).is_none() {
            self.broker.name(&conn.user, &conn.name, false, false);
        }
        let dropped = conn.outbox.dropped();
        if dropped > 0 {
            // The final count, whatever the last power of ten reported was.
            let mut ev = Event::new(EventKind::Lagging, id);
            ev.name = Some(conn.name.clone());
            ev.user = conn.login();
            ev.count = dropped;
            self.delivery.events.push(ev);
        }
        let mut ev = Event::new(EventKind::Disconnect, id);
        ev.user = conn.login();
        ev.name = Some(conn.name);
        ev.close_code = code;
        self.delivery.events.push(ev);
    }
}

#[cfg(test)]
mod tests;
