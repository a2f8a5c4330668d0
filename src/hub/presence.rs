//! Who is in a room: member lists for clients (each user once, with its tab count) and full
//! snapshots for the host. Typed here; the callers turn them into JSON.
//!
//! A room up to its `presence_limit` users tells everyone everything: the full list on join and
//! a `join`/`leave` per user. Past it the room is a crowd (Pusher caps presence channels at 100;
//! Centrifugo makes presence asked for, not pushed): a newcomer gets the count, comings and
//! goings are announced together at most every `presence_interval_ms` (`crowd`: the count and
//! a few names), and the list is read page by page (`members`). So a join costs O(1), an
//! interval O(members), and n joins no longer cost O(n²) frames. The host still hears every join
//! and leave, and `chat_presence_json` is still the whole list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::room::Room;
use super::{Hub, State};
use crate::identity::ConnId;
use crate::protocol::{Member, Out};

/// Names a `crowd` update lists of those who came (and of those who went); the rest are counted.
const CROWD_NAMES: usize = 16;
/// The longest page `members` answers.
const MEMBERS_PAGE: usize = 200;

/// A crowd's comings and goings since its last `crowd` update.
#[derive(Default)]
pub struct Crowd {
    came: Vec<Arc<str>>,
    went: Vec<Arc<str>>,
    unnamed: u32,
    /// Listed in `State::crowded`, waiting for the next update.
    pending: bool,
    /// When the last update went out.
    last: Option<std::time::Instant>,
}

/// An update costs a write to every member: a crowd of n is updated at most every n × this
/// (and never more often than `presence_interval_ms`), so updates never take more than a small
/// share of a network thread, however big the room (19,000 members: every 4.75 s).
const CROWD_COST_PER_MEMBER: std::time::Duration = std::time::Duration::from_micros(250);

impl Crowd {
    fn note(list: &mut Vec<Arc<str>>, unnamed: &mut u32, name: &Arc<str>) {
        if list.len() < CROWD_NAMES {
            list.push(name.clone());
        } else {
            *unnamed += 1;
        }
    }
}

/// A user in a room, once however many tabs it has there.
pub struct RoomMember {
    /// Its oldest connection in the room (a whisper to it reaches every tab).
    pub id: ConnId,
    pub name: Arc<str>,
    pub tabs: u32,
    pub user: Arc<str>,
    pub bound: bool,
    /// A Pusher presence member's `user_info`.
    pub info: Option<Arc<str>>,
}

/// Who is where, for the host: `chat_presence_json`, the HTTP API and the control socket.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The number of the last event this snapshot reflects.
    pub seq: u64,
    pub epoch: String,
    pub rooms: BTreeMap<String, RoomSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct RoomSnapshot {
    pub last_id: u64,
    pub connections: usize,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct MemberSnapshot {
    pub id: ConnId,
    pub name: String,
    pub tabs: u32,
    /// The name comes from the site's login.
    pub bound: bool,
    pub conns: Vec<ConnId>,
    /// The login token's `sub`, for logged-in users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A room's users on this node once each, in the order they came. A user is what the room
/// counts tabs under: a Pusher presence member's `user_id`, else the connection's user.
pub(super) fn members_of_here(st: &State, key: &str, room: &Room) -> Vec<RoomMember> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<RoomMember> = Vec::new();
    for m in &room.members {
        let Some(c) = st.conns.get(&m.id) else { continue };
        let user = c.tab_in(key);
        match seen.get(&**user) {
            Some(&i) => out[i].id = out[i].id.min(m.id),
            None => {
                seen.insert(user, out.len());
                let tabs = room.tabs.get(user).copied().unwrap_or(1);
                let info = c.presence_in(key).map(|p| p.user_info.clone());
                let (name, user, bound) = (c.name.clone(), user.clone(), c.bound);
                out.push(RoomMember { id: m.id, name, tabs, user, bound, info });
            }
        }
    }
    out
}

/// A room's users once each, in the order they came (in a cluster, those on other nodes after
/// this node's).
pub(super) fn members_of(st: &State, key: &str, room: &Room) -> Vec<RoomMember> {
    let mut out = members_of_here(st, key, room);
    if room.elsewhere.is_empty() {
        return out;
    }
    let seen: HashMap<Arc<str>, usize> = out.iter().enumerate().map(|(i, m)| (m.user.clone(), i)).collect();
    // A cluster's room: its users on other nodes too (a user here and elsewhere once, its tabs
    // added up).
    for (user, r) in &room.elsewhere {
        match seen.get(user) {
            Some(&i) => out[i].tabs += r.tabs(),
            None => out.push(RoomMember {
                id: r.id,
                name: r.name.clone(),
                tabs: r.tabs(),
                user: user.clone(),
                bound: r.bound,
                info: r.info.clone(),
            }),
        }
    }
    out
}

impl Hub {
    /// A user's first tab came into `room`: true if the room is small and announces it itself;
    /// a crowd notes it for its next update (and a room that just passed its limit becomes one).
    pub(super) fn crowd_came(&self, st: &mut State, room: &Arc<str>, name: &Arc<str>) -> bool {
        let Some(r) = st.rooms.get_mut(room) else { return true };
        if r.crowd.is_none() && r.users() <= r.presence_limit {
            return true;
        }
        let crowd = r.crowd.get_or_insert_with(Box::default);
        Crowd::note(&mut crowd.came, &mut crowd.unnamed, name);
        Self::crowd_pending(&mut st.crowded, crowd, room);
        false
    }

    /// A user's last tab left `room` (which still has members): true if the room announces it.
    pub(super) fn crowd_went(&self, st: &mut State, room: &Arc<str>, name: &Arc<str>) -> bool {
        let Some(crowd) = st.rooms.get_mut(room).and_then(|r| r.crowd.as_mut()) else { return true };
        Crowd::note(&mut crowd.went, &mut crowd.unnamed, name);
        Self::crowd_pending(&mut st.crowded, crowd, room);
        false
    }

    fn crowd_pending(crowded: &mut Vec<Arc<str>>, crowd: &mut Crowd, room: &Arc<str>) {
        if !crowd.pending {
            crowd.pending = true;
            crowded.push(room.clone());
        }
    }

    /// Announces every crowd's comings and goings since the last time (called every
    /// `presence_interval_ms`; a big crowd waits longer, see `CROWD_COST_PER_MEMBER`).
    pub fn flush_presence(&self) {
        let mut st = self.lock();
        let st = &mut *st;
        let now = std::time::Instant::now();
        for room in std::mem::take(&mut st.crowded) {
            let Some(r) = st.rooms.get_mut(&room) else { continue };
            let members = r.members.len() as u32;
            let Some(crowd) = r.crowd.as_mut() else { continue };
            if crowd.last.is_some_and(|t| now < t + CROWD_COST_PER_MEMBER * members) {
                st.crowded.push(room); // not yet: it stays pending
                continue;
            }
            let Crowd { came, went, unnamed, .. } =
                std::mem::replace(&mut **crowd, Crowd { last: Some(now), ..Crowd::default() });
            let count = r.users();
            let joined: Vec<&str> = came.iter().map(|n| &**n).collect();
            let left: Vec<&str> = went.iter().map(|n| &**n).collect();
            let out = Out::Crowd { room: &room, count, joined: &joined, left: &left, others: unnamed };
            self.to_room(st, &room, out, None);
        }
    }

    /// A page of `room`'s member list, for a client in it: up to `limit` users from `offset`,
    /// only those whose name starts with `prefix` (any case).
    pub(super) fn members_page(
        &self,
        st: &State,
        id: ConnId,
        room: &str,
        offset: usize,
        limit: usize,
        prefix: Option<&str>,
    ) {
        let Some(r) = st.rooms.get(room) else { return };
        let prefix = prefix.map(str::to_lowercase);
        let all = members_of(st, room, r);
        let matching: Vec<&RoomMember> = all
            .iter()
            .filter(|m| prefix.as_deref().is_none_or(|p| m.name.to_lowercase().starts_with(p)))
            .collect();
        let limit = limit.clamp(1, MEMBERS_PAGE);
        let page: Vec<Member<'_>> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|m| Member { id: m.id, name: &m.name, tabs: m.tabs, bound: m.bound })
            .collect();
        let more = offset + page.len() < matching.len();
        let out = Out::Members { room, count: matching.len(), offset, members: &page, more };
        self.to_conn(st, id, &out);
    }

    /// Who is in `room` (None: every room with members). Taken under the lock every membership
    /// event is queued under, so it reflects exactly the events numbered up to `seq`: a host that
    /// lost track rebuilds from this and applies only events with a higher `seq`.
    pub fn presence(&self, room: Option<&str>) -> Snapshot {
        let st = self.lock();
        let seq = self.delivery.events.last_seq();
        let snapshot = |key: &str, r: &Room| {
            // One pass over the room for every user's connections (not one per user).
            let mut conns_of: HashMap<&str, Vec<ConnId>> = HashMap::new();
            for m in &r.members {
                if let Some(c) = st.conns.get(&m.id) {
                    conns_of.entry(&**c.tab_in(key)).or_default().push(m.id);
                }
            }
            let members = members_of(&st, key, r)
                .into_iter()
                .map(|m| MemberSnapshot {
                    id: m.id,
                    name: m.name.to_string(),
                    tabs: m.tabs,
                    bound: m.bound,
                    conns: conns_of.get(&*m.user).cloned().unwrap_or_default(),
                    user: m.user.strip_prefix("sub:").map(str::to_string),
                })
                .collect();
            RoomSnapshot { last_id: r.seq, connections: r.members.len(), members }
        };
        let rooms = match room {
            Some(name) => st
                .rooms
                .get_key_value(name)
                .map(|(k, r)| (k.to_string(), snapshot(k, r)))
                .into_iter()
                .collect(),
            None => st
                .rooms
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(k, r)| (k.to_string(), snapshot(k, r)))
                .collect(),
        };
        Snapshot { seq, epoch: self.epoch.clone(), rooms }
    }

    /// Users in a room once each, as (a connection id, name, tabs).
    #[cfg(test)]
    pub fn members(&self, room: &str) -> Vec<(ConnId, Arc<str>, u32)> {
        let st = self.lock();
        let Some(r) = st.rooms.get(room) else { return Vec::new() };
        members_of(&st, room, r).into_iter().map(|m| (m.id, m.name, m.tabs)).collect()
    }

    /// Rooms with someone in them: (name, users, connections, last message id), by name.
    pub fn rooms(&self) -> Vec<(String, usize, usize, u64)> {
        let st = self.lock();
        let mut out: Vec<_> = st
            .rooms
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(k, r)| (k.to_string(), r.users(), r.members.len(), r.seq))
            .collect();
        out.sort();
        out
    }

    /// Whether `room` has members here.
    pub fn follows(&self, room: &str) -> bool {
        self.lock().rooms.get(room).is_some_and(|r| !r.is_empty())
    }

    /// Rooms with someone in them (empty rooms kept for their history are not counted).
    pub fn room_count(&self) -> usize {
        self.lock().rooms.values().filter(|r| !r.is_empty()).count()
    }
}
