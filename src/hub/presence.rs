//! Who is in a room: member lists for clients (each user once, with its tab count) and full
//! snapshots for the host. Typed here; the callers turn them into JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use super::room::Room;
use super::{Hub, State};
use crate::identity::ConnId;

/// A user in a room, once however many tabs it has there.
pub struct RoomMember {
    /// Its oldest connection in the room (a whisper to it reaches every tab).
    pub id: ConnId,
    pub name: Arc<str>,
    pub tabs: u32,
    pub user: Arc<str>,
    pub bound: bool,
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

/// A room's users once each, in the order they came.
pub(super) fn members_of(st: &State, room: &Room) -> Vec<RoomMember> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<RoomMember> = Vec::new();
    for m in &room.members {
        let Some(c) = st.conns.get(&m.id) else { continue };
        match seen.get(&*c.user) {
            Some(&i) => out[i].id = out[i].id.min(m.id),
            None => {
                seen.insert(&c.user, out.len());
                let tabs = room.tabs.get(&c.user).copied().unwrap_or(1);
                let (name, user, bound) = (c.name.clone(), c.user.clone(), c.bound);
                out.push(RoomMember { id: m.id, name, tabs, user, bound });
            }
        }
    }
    out
}

impl Hub {
    /// Who is in `room` (None: every room with members). Taken under the lock every membership
    /// event is queued under, so it reflects exactly the events numbered up to `seq`: a host that
    /// lost track rebuilds from this and applies only events with a higher `seq`.
    pub fn presence(&self, room: Option<&str>) -> Snapshot {
        let st = self.lock();
        let seq = self.delivery.events.last_seq();
        let snapshot = |r: &Room| {
            // One pass over the room for every user's connections (not one per user).
            let mut conns_of: HashMap<&str, Vec<ConnId>> = HashMap::new();
            for m in &r.members {
                if let Some(c) = st.conns.get(&m.id) {
                    conns_of.entry(&*c.user).or_default().push(m.id);
                }
            }
            let members = members_of(&st, r)
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
            Some(name) => {
                st.rooms.get_key_value(name).map(|(k, r)| (k.to_string(), snapshot(r))).into_iter().collect()
            }
            None => st
                .rooms
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(k, r)| (k.to_string(), snapshot(r)))
                .collect(),
        };
        Snapshot { seq, epoch: self.epoch.clone(), rooms }
    }

    /// Users in a room once each, as (a connection id, name, tabs).
    #[cfg(test)]
    pub fn members(&self, room: &str) -> Vec<(ConnId, Arc<str>, u32)> {
        let st = self.lock();
        let Some(r) = st.rooms.get(room) else { return Vec::new() };
        members_of(&st, r).into_iter().map(|m| (m.id, m.name, m.tabs)).collect()
    }

    /// Rooms with someone in them: (name, users, connections, last message id), by name.
    pub fn rooms(&self) -> Vec<(String, usize, usize, u64)> {
        let st = self.lock();
        let mut out: Vec<_> = st
            .rooms
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(k, r)| (k.to_string(), r.tabs.len(), r.members.len(), r.seq))
            .collect();
        out.sort();
        out
    }

    /// Rooms with someone in them (empty rooms kept for their history are not counted).
    pub fn room_count(&self) -> usize {
        self.lock().rooms.values().filter(|r| !r.is_empty()).count()
    }
}
