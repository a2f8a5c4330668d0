//! Pusher clients in the hub: a Pusher channel is a room, a subscription a join. What differs
//! from the JSON protocol's clients is kept here: a connection joins no room when it connects;
//! a presence subscriber is counted as its `user_id` (so two tabs of one user are one member,
//! `member_added` once and `member_removed` once); events carry a name. Everything else (room
//! caps, fan-out encoded once per wire, slow consumers, the broker, the host's events) is the
//! hub's own, so messages cross between the two kinds of client in a room both ways.

use std::collections::HashSet;
use std::sync::Arc;

use super::fanout::{Frames, Post};
use super::{Conn, Hub, State};
use crate::clock::now_ms;
use crate::events::{Event, EventKind};
use crate::identity::ConnId;
use crate::outbox::Outbox;
use crate::protocol::pusher::{self as wire, Kind, PresenceUser};
use crate::protocol::{self, Codec, Out, User, Wire};
use crate::stats::Stats;

/// A presence subscriber, as its `channel_data` said.
#[derive(Debug)]
pub struct Presence {
    pub user_id: Arc<str>,
    /// `user_info`, JSON.
    pub user_info: Arc<str>,
    /// The room's tab key for this user: every connection of one `user_id` shares it.
    pub tab: Arc<str>,
}

/// A channel as the Pusher HTTP API describes it.
#[derive(Debug)]
pub struct ChannelInfo {
    pub name: String,
    pub occupied: bool,
    /// Connections subscribed.
    pub subscription_count: usize,
    /// Presence channels: distinct users.
    pub user_count: Option<usize>,
}

impl ChannelInfo {
    /// A channel as the cluster has it: `conns` subscriptions and `members` presence members
    /// on every node.
    pub fn of_cluster(name: &str, conns: usize, members: usize) -> ChannelInfo {
        ChannelInfo {
            name: name.to_string(),
            occupied: conns > 0,
            subscription_count: conns,
            user_count: (Kind::of(name) == Kind::Presence).then_some(members),
        }
    }

    /// One channel from the cluster's entries for it (one per node and user).
    pub fn of_entries(name: &str, entries: &[super::cluster_presence::Presence]) -> ChannelInfo {
        let conns = entries.iter().map(|e| e.tabs as usize).sum();
        Self::of_cluster(name, conns, cluster_users(entries).len())
    }
}

/// A presence channel's user ids, each once, from the cluster's entries for it (one per node
/// and user).
pub fn cluster_users(entries: &[super::cluster_presence::Presence]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for e in entries {
        if let Some(id) = e.user.strip_prefix(MEMBER).filter(|_| e.tabs > 0) {
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

/// The start of a presence member's tab key in a room (`pusher:{user_id}`): every connection of
/// one user shares it, on every node.
const MEMBER: &str = "pusher:";

/// A presence channel's members on every node, as far as this node knows.
fn members_count(r: &super::room::Room) -> usize {
    let here = r.tabs.keys().filter(|t| t.starts_with(MEMBER)).count();
    let elsewhere = r.elsewhere.keys().filter(|t| t.starts_with(MEMBER) && !r.tabs.contains_key(*t)).count();
    here + elsewhere
}

/// Why a JSON-protocol client may not join a `private-` or `presence-` room.
pub const GUARDED: &str =
    "`private-` and `presence-` rooms are Pusher channels: they need the channel's auth (or a login token that lists the room)";

impl Conn {
    /// Whether its login token names `room` among the rooms it allows.
    pub(super) fn listed(&self, room: &str) -> bool {
        self.more.as_ref().and_then(|m| m.allowed.as_ref()).is_some_and(|a| a.iter().any(|r| r == room))
    }

    /// This connection's presence in `room`, if it subscribed to it as a presence user.
    pub(super) fn presence_in(&self, room: &str) -> Option<&Arc<Presence>> {
        self.more.as_ref()?.presence.iter().find(|(r, _)| **r == *room).map(|(_, p)| p)
    }

    /// The key this connection counts under in `room`'s tabs: its presence member's
    /// (`pusher:{user_id}`, shared by the user's tabs), else its user's.
    pub(super) fn tab_in(&self, room: &str) -> &Arc<str> {
        self.presence_in(room).map_or(&self.user, |p| &p.tab)
    }

    /// Forgets (and returns) this connection's presence in `room`.
    pub(super) fn take_presence(&mut self, room: &str) -> Option<Arc<Presence>> {
        let list = &mut self.more.as_mut()?.presence;
        let i = list.iter().position(|(r, _)| **r == *room)?;
        Some(list.swap_remove(i).1)
    }
}

/// A host event's text for a named event: `{"event", "data"}` (the C event has no field for
/// the name).
pub fn event_text(event: &str, data: &str) -> String {
    serde_json::json!({"event": event, "data": data}).to_string()
}

impl Hub {
    /// Whether `room` is a Pusher channel that needs authorisation: with the Pusher protocol
    /// on, a JSON-protocol client cannot read a private channel by joining its room.
    pub fn pusher_guarded(&self, room: &str) -> bool {
        self.pusher && (Kind::of(room).authorised() || room.starts_with(wire::USER_CHANNEL))
    }

    /// Records the user a Pusher connection signed in as.
    pub fn pusher_signin(&self, id: ConnId, user: &str) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.more().signed_in = Some(user.into());
        }
    }

    /// The user a Pusher connection signed in as, if it did.
    pub fn pusher_signed_in(&self, id: ConnId) -> Option<Arc<str>> {
        self.lock().conns.get(&id)?.more.as_ref()?.signed_in.clone()
    }

    /// Registers a Pusher connection (its name is its `socket_id`); it joins rooms by
    /// subscribing. The host gets `connect`.
    pub fn pusher_connect(
        &self,
        id: ConnId,
        socket_id: &str,
        ip: Option<std::net::IpAddr>,
        outbox: Arc<Outbox>,
    ) {
        let mut st = self.lock();
        let user: Arc<str> = format!("conn:{id}").into();
        let name = st.users.add_tab(&user, id, Some(socket_id.to_string()), false);
        let codec = Codec { wire: Wire::Pusher, deflate: outbox.deflate() };
        let mut conn = Conn::new(user, name.clone(), outbox, codec);
        conn.ip = ip;
        st.conns.insert(id, conn);
        self.emit(&st, EventKind::Connect, id, None, &name);
    }

    /// Subscribes `id` to `channel` (its auth already checked): joins the room, tells a
    /// presence channel's members about a new user, answers `subscription_succeeded`. The host
    /// gets `join`. Err: why not (room caps, a full presence channel).
    pub fn pusher_subscribe(
        &self,
        id: ConnId,
        channel: &str,
        presence: Option<PresenceUser>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conn) = st.conns.get(&id) else { return Ok(()) };
        let already = conn.rooms.iter().any(|r| **r == *channel);
        if !already {
            if conn.rooms.len() >= self.chat.max_rooms_per_connection {
                return Err(format!(
                    "at most {} channels per connection",
                    self.chat.max_rooms_per_connection
                ));
            }
            let key: Arc<str> =
                st.rooms.get_key_value(channel).map(|(k, _)| k.clone()).unwrap_or_else(|| channel.into());
            if !st.rooms.contains_key(&key) {
                self.create_room(st, id, &key)?;
            }
            let presence = presence.map(|p| {
                let tab: Arc<str> = format!("{MEMBER}{}", p.user_id).into();
                Arc::new(Presence { user_id: p.user_id.into(), user_info: p.user_info.into(), tab })
            });
            if let (Some(p), Some(r)) = (&presence, st.rooms.get(&key)) {
                let known = r.tabs.contains_key(&p.tab) || r.elsewhere.contains_key(&p.tab);
                if !known && members_count(r) >= r.presence_limit {
                    let (limit, empty) = (r.presence_limit, r.is_empty());
                    if empty {
                        self.room_emptied(st, key.clone());
                    }
                    Stats::inc(&self.delivery.stats.room_refusals);
                    return Err(format!("this presence channel has its {limit} members"));
                }
            }
            let Some(conn) = st.conns.get_mut(&id) else { return Ok(()) };
            conn.rooms.push(key.clone());
            if let Some(p) = &presence {
                conn.more().presence.push((key.clone(), p.clone()));
            }
            let (name, outbox, codec, bound) =
                (conn.name.clone(), conn.outbox.clone(), conn.wire, conn.bound);
            let tab = presence.as_ref().map_or_else(|| conn.user.clone(), |p| p.tab.clone());
            let r = self.room_entry(st, &key);
            r.add(id, outbox, codec);
            let first_tab = r.add_tab(tab.clone());
            let elsewhere = r.elsewhere.contains_key(&tab);
            if let Some(p) = presence.as_ref().filter(|_| first_tab && !elsewhere) {
                self.pusher_member_news(st, &key, &p.tab, Some(&p.user_info), true, &HashSet::new());
            }
            if self.clustered {
                // The JSON protocol's `join`, announced by the cluster on every node (this one
                // included), once per user.
                let info = presence.as_ref().map(|p| p.user_info.clone());
                self.tell_cluster(st, &key, &tab, id, &name, bound, info);
            } else if first_tab && self.crowd_came(st, &key, &name) {
                let user = User { id, name: &name, bound };
                self.to_room(st, &key, Out::Join { room: &key, user }, Some(id));
            }
            self.emit(st, EventKind::Join, id, Some(&key), &name);
        }
        let Some(key) = st.rooms.get_key_value(channel).map(|(k, _)| k.clone()) else { return Ok(()) };
        if let Some(l) = st.rooms.get_mut(&key).and_then(|r| r.loading.as_mut()) {
            // A cluster room whose members and history are on their way: answered by `loaded`.
            l.waiting.retain(|(w, ..)| *w != id);
            l.waiting.push((id, crate::identity::Resume::default(), false));
            return Ok(());
        }
        self.pusher_greet(st, id, &key);
        Ok(())
    }

    /// A subscriber's `subscription_succeeded` (a presence channel's: with its members on every
    /// node), then a cache channel's last event.
    pub(super) fn pusher_greet(&self, st: &State, id: ConnId, channel: &Arc<str>) {
        let data = match Kind::of(channel) {
            Kind::Presence => {
                let Some(r) = st.rooms.get(channel) else { return };
                let members = super::presence::members_of(st, channel, r);
                let users = members.iter().filter_map(|m| {
                    Some((m.user.strip_prefix(MEMBER)?, m.info.as_deref().unwrap_or("null")))
                });
                wire::presence_data(users)
            }
            _ => "{}".to_string(),
        };
        self.to_conn(st, id, &Out::Subscribed { room: channel, data: &data });
        if wire::is_cache(channel) {
            self.cache_replay(st, id, channel);
        }
    }

    /// A presence channel's members hear that a user came into this node's view of the channel
    /// (`member_added`, not to the user's own connections) or left it (`member_removed`).
    ///
    /// The view is what the member lists in `subscription_succeeded` are made from: the users
    /// with connections here, and (in a cluster) those the cluster announced on other nodes. A
    /// user enters it with its first connection here while no other node has it, or when the
    /// cluster announces it on another node while it has none here; it leaves it likewise.
    /// Announcing the view's changes, as they are made under the hub's lock, keeps a list and
    /// the news after it in agreement on every node, whatever order the cluster's news come in
    /// (and while the cluster cannot be reached). Subscribers that wait for their list (a room
    /// loading from the cluster: on its first load, all of them) are not told: their list will
    /// say it. `user`: the room's tab key for it (`pusher:{user_id}`); other users are not
    /// Pusher members and nothing is said. `skip`: other connections not to tell.
    pub(super) fn pusher_member_news(
        &self,
        st: &State,
        room: &str,
        user: &str,
        info: Option<&str>,
        came: bool,
        skip: &HashSet<ConnId>,
    ) {
        let Some(user_id) = user.strip_prefix(MEMBER) else { return };
        let Some(r) = st.rooms.get(room) else { return };
        let waiting: HashSet<ConnId>;
        let skip = match r.loading.as_deref() {
            Some(l) if !l.reload => return,
            Some(l) => {
                waiting = l.waiting.iter().map(|(id, ..)| *id).chain(skip.iter().copied()).collect();
                &waiting
            }
            None => skip,
        };
        let out = match came {
            true => Out::MemberAdded { room, user_id, user_info: info.unwrap_or("null") },
            false => Out::MemberRemoved { room, user_id },
        };
        let to = |m: ConnId| !skip.contains(&m) && st.conns.get(&m).is_none_or(|c| **c.tab_in(room) != *user);
        self.delivery.to_members_where(&r.members, &mut Frames::new(out), r.policy, to);
    }

    /// Whether `user` (a room's tab key) is in this node's view of `room` (see
    /// `pusher_member_news`).
    pub(super) fn in_view(r: &super::room::Room, user: &str) -> bool {
        r.tabs.contains_key(user) || r.elsewhere.contains_key(user)
    }

    /// A cache channel's newcomer gets its last event (from the room's history), or
    /// `pusher:cache_miss`.
    fn cache_replay(&self, st: &State, id: ConnId, channel: &str) {
        let last = st.rooms.get(channel).and_then(|r| r.history.back());
        let cached = last.and_then(|(_, json)| wire::cached_event(json, now_ms()));
        let (event, data) = cached.unwrap_or_else(|| ("pusher:cache_miss".into(), "{}".into()));
        let from = User::named(0, &self.chat.host_name);
        self.to_conn(st, id, &Out::Event { room: channel, id: 0, ts: 0, from, event: &event, data: &data });
    }

    /// Unsubscribes `id` from `channel`; false if it was not subscribed.
    pub fn pusher_unsubscribe(&self, id: ConnId, channel: &str) -> bool {
        self.leave_locked(&mut self.lock(), id, channel)
    }

    /// A client event from `id` to the other subscribers of `channel` (the caller checked the
    /// channel's kind and the config). The host gets a `message` whose text is
    /// `{"event", "data"}`.
    pub fn pusher_client_event(
        &self,
        id: ConnId,
        channel: &str,
        event: &str,
        data: &str,
    ) -> Result<(), String> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conn) = st.conns.get(&id) else { return Ok(()) };
        let Some(room) = conn.rooms.iter().find(|r| ***r == *channel).cloned() else {
            return Err(format!("subscribe to `{channel}` before sending events to it"));
        };
        // On a presence channel the receivers learn the sender's user_id (see `wire::encode`).
        let sender: Arc<str> =
            conn.presence_in(&room).map_or_else(|| conn.name.clone(), |p| p.user_id.clone());
        let mut ev = Event::new(EventKind::Message, id);
        ev.room = Some(room.clone());
        ev.name = Some(conn.name.clone());
        ev.text = Some(event_text(event, data));
        ev.user = conn.login();
        self.publish_event(st, id, &sender, &room, event, data, Some(id), Some(ev));
        Ok(())
    }

    /// An event from the Pusher HTTP API to `channels` (skipping connection `except`, the
    /// sender's socket). Returns how many connections here get it. Like a host broadcast, it
    /// is kept in the rooms' history and, with `published_events`, reported.
    pub fn pusher_publish(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<ConnId>,
    ) -> usize {
        let mut st = self.lock();
        let st = &mut *st;
        Stats::inc(&self.delivery.stats.host_broadcasts);
        let ts = now_ms();
        let host = self.chat.host_name.clone();
        let mut sent = 0;
        for channel in channels {
            let key: Arc<str> = st
                .rooms
                .get_key_value(channel.as_str())
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| channel.as_str().into());
            let mut ev = Event::new(EventKind::Published, 0);
            ev.ts = ts;
            ev.room = Some(key.clone());
            ev.name = Some(host.as_str().into());
            ev.text = Some(event_text(event, data));
            let report = self.published_events.then_some(ev);
            // Clustered, the cluster keeps the history: no room is made here for it.
            let new = !self.clustered && !st.rooms.contains_key(&key);
            if new {
                self.room_entry(st, &key);
            }
            sent += self.publish_event(st, 0, &host, &key, event, data, except, report);
            if new {
                self.room_emptied(st, key.clone());
            }
        }
        sent
    }

    /// Gives a named event the room's next message id, keeps it and delivers it (all but
    /// `except`), then tells the host (`report`, with the id). In a cluster the cluster numbers
    /// it and every node delivers it when it comes back (`hub/cluster.rs`), as a chat message.
    /// Returns how many connections here get it.
    #[allow(clippy::too_many_arguments)]
    fn publish_event(
        &self,
        st: &mut State,
        from: ConnId,
        name: &str,
        room: &Arc<str>,
        event: &str,
        data: &str,
        except: Option<ConnId>,
        report: Option<Event>,
    ) -> usize {
        let ts = report.as_ref().map_or_else(now_ms, |e| e.ts);
        let bound = st.conns.get(&from).is_some_and(|c| c.bound);
        if self.clustered {
            let here = st.rooms.get(room).map_or(0, |r| r.members.len());
            self.broker.post(Post {
                room: room.clone(),
                from,
                name: name.into(),
                bound,
                ts,
                text: data.to_string(),
                key: 0,
                event: report,
                event_name: Some(event.into()),
                except,
            });
            return here;
        }
        let Some(r) = st.rooms.get_mut(room) else { return 0 };
        r.seq += 1;
        let id = r.seq;
        let from = User { id: from, name, bound };
        let json = protocol::event_message(room, id, ts, from, event, data);
        self.keep(st, room, id, &json);
        let mut frames = Frames::with_json(Out::Event { room, id, ts, from, event, data }, &json);
        let sent = self.room_frames(st, room, &mut frames, except);
        if let Some(mut ev) = report {
            ev.msg_id = id;
            self.push_event(st, ev);
        }
        sent
    }

    /// Occupied channels (with members), those starting with `prefix` if given.
    pub fn pusher_channels(&self, prefix: Option<&str>) -> Vec<ChannelInfo> {
        let st = self.lock();
        let mut out: Vec<ChannelInfo> = st
            .rooms
            .iter()
            .filter(|(name, r)| !r.is_empty() && prefix.is_none_or(|p| name.starts_with(p)))
            .map(|(name, r)| Self::channel_info(name, Some(r)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One channel (unoccupied when nobody is subscribed).
    pub fn pusher_channel(&self, name: &str) -> ChannelInfo {
        let st = self.lock();
        Self::channel_info(name, st.rooms.get(name).filter(|r| !r.is_empty()))
    }

    fn channel_info(name: &str, room: Option<&super::room::Room>) -> ChannelInfo {
        let presence = Kind::of(name) == Kind::Presence;
        ChannelInfo {
            name: name.to_string(),
            occupied: room.is_some(),
            subscription_count: room.map_or(0, |r| r.members.len()),
            user_count: presence.then(|| room.map_or(0, members_count)),
        }
    }

    /// The user ids subscribed to a presence channel, each once.
    pub fn pusher_users(&self, channel: &str) -> Vec<String> {
        let st = self.lock();
        let Some(r) = st.rooms.get(channel) else { return Vec::new() };
        let mut ids: Vec<String> = Vec::new();
        for m in &r.members {
            if let Some(p) = st.conns.get(&m.id).and_then(|c| c.presence_in(channel)) {
                if !ids.iter().any(|i| **i == *p.user_id) {
                    ids.push(p.user_id.to_string());
                }
            }
        }
        ids
    }

    /// Closes every connection signed in as `user_id`, or subscribed to a presence channel as
    /// that user (Pusher's `terminate_connections`), with a `pusher:error` 4009 first; returns
    /// how many (in a cluster: on this node; the other nodes close theirs).
    pub fn pusher_terminate(&self, user_id: &str) -> usize {
        if self.clustered {
            self.broker.node_op(super::NodeOp::PusherTerminate { user_id: user_id.to_string() });
        }
        self.pusher_terminate_here(user_id)
    }

    /// `pusher_terminate` for this node's connections only.
    pub fn pusher_terminate_here(&self, user_id: &str) -> usize {
        let st = self.lock();
        let mut n = 0;
        for c in st.conns.values() {
            let theirs = c.more.as_ref().is_some_and(|m| {
                m.signed_in.as_deref() == Some(user_id)
                    || m.presence.iter().any(|(_, p)| *p.user_id == *user_id)
            });
            if theirs && c.wire.wire == Wire::Pusher {
                let frame = crate::wsframe::text(&wire::error(Some(4009), "terminated by the app"));
                c.outbox.push(frame, self.delivery.max_backlog, self.delivery.policy);
                c.outbox.close(4009, "terminated by the app");
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::events::EventQueue;
    use crate::hub::LocalOnly;
    use crate::identity::{Identity, Resume};
    use serde_json::Value;
    use std::collections::VecDeque;

    fn hub() -> Hub {
        let mut c = Config::default();
        c.site.pusher =
            serde_json::from_str(r#"{"app_id":"1","key":"k","secret":"0123456789abcdef"}"#).unwrap();
        let events = Arc::new(EventQueue::new(1024).unwrap());
        Hub::new((&c).into(), Arc::new(Stats::default()), events, Box::new(LocalOnly), None)
    }

    /// What an outbox holds, as JSON, Pusher `data` strings parsed.
    fn drain(o: &Outbox) -> Vec<Value> {
        let mut q = VecDeque::new();
        o.take(&mut q);
        q.iter()
            .map(|f| {
                let start = if f[1] == 126 { 4 } else { 2 };
                let mut v: Value = serde_json::from_slice(&f[start..]).unwrap();
                if let Some(d) = v["data"].as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()) {
                    v["data"] = d;
                }
                v
            })
            .collect()
    }

    fn user(id: &str) -> Option<PresenceUser> {
        Some(PresenceUser { user_id: id.into(), user_info: format!(r#"{{"name":"{id}"}}"#) })
    }

    #[test]
    fn a_presence_user_is_announced_once_however_many_tabs() {
        let h = hub();
        let outs: Vec<Arc<Outbox>> = (0..3).map(|_| Arc::new(Outbox::new())).collect();
        for (i, o) in outs.iter().enumerate() {
            h.pusher_connect(i as u64 + 1, &format!("9.{}", i + 1), None, o.clone());
        }
        h.pusher_subscribe(1, "presence-r", user("ann")).unwrap();
        drain(&outs[0]);
        h.pusher_subscribe(2, "presence-r", user("bob")).unwrap();
        let ann = drain(&outs[0]);
        assert_eq!(ann.len(), 1, "{ann:?}");
        assert_eq!(
            (ann[0]["event"].as_str(), ann[0]["data"]["user_id"].as_str()),
            (Some("pusher_internal:member_added"), Some("bob"))
        );
        h.pusher_subscribe(3, "presence-r", user("bob")).unwrap();
        assert!(drain(&outs[0]).is_empty(), "bob's second tab is not news");
        let hello = drain(&outs[2]);
        assert_eq!(hello[0]["data"]["presence"]["count"], 2);
        h.disconnect(2, 1000);
        assert!(drain(&outs[0]).is_empty(), "bob still has a tab");
        h.disconnect(3, 1000);
        let gone = drain(&outs[0]);
        assert_eq!(
            (gone[0]["event"].as_str(), gone[0]["data"]["user_id"].as_str()),
            (Some("pusher_internal:member_removed"), Some("bob"))
        );
        assert_eq!(h.pusher_users("presence-r"), ["ann"]);
    }

    #[test]
    fn json_and_pusher_clients_in_one_room_hear_each_other() {
        let h = hub();
        let (j, p) = (Arc::new(Outbox::new()), Arc::new(Outbox::new()));
        let who = Identity { name: Some("jay".into()), ..Default::default() };
        h.connect(1, who, "news", Resume::default(), j.clone());
        h.pusher_connect(2, "9.2", None, p.clone());
        h.pusher_subscribe(2, "news", None).unwrap();
        drain(&j);
        assert_eq!(drain(&p)[0]["event"], "pusher_internal:subscription_succeeded");
        h.broadcast(Some("news"), "hello", "system").unwrap();
        let got = drain(&p);
        assert_eq!(
            (got[0]["event"].as_str(), got[0]["data"]["text"].as_str()),
            (Some("message"), Some("hello"))
        );
        drain(&j);
        h.pusher_publish(&["news".to_string()], "alert", "{\"x\":1}", Some(2));
        assert!(drain(&p).is_empty(), "the excluded socket");
        let m = drain(&j);
        assert_eq!(
            (m[0]["type"].as_str(), m[0]["event"].as_str(), m[0]["text"].as_str()),
            (Some("message"), Some("alert"), Some("{\"x\":1}"))
        );
        assert!(h.pusher_guarded("private-x") && h.pusher_guarded("presence-x") && !h.pusher_guarded("news"));
    }
}
