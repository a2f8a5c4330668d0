//! Presence in a cluster: a room's users on other nodes as this node knows them (from the
//! cluster's announcements and the room's load), what this node tells the cluster about its own
//! users, and names kept unique across nodes. The Redis side is `src/cluster/` (the presence,
//! forget, claim and release scripts).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::presence;
use super::room::Room;
use super::{Hub, State};
use crate::identity::ConnId;
use crate::protocol::{Out, User};

/// A change of one user's tabs in a room on this node, as the cluster is told it.
#[derive(Debug, Clone)]
pub struct PresenceChange {
    pub room: Arc<str>,
    pub user: Arc<str>,
    pub id: ConnId,
    pub name: Arc<str>,
    pub bound: bool,
    /// A Pusher presence member's `user_info` (JSON), for the other nodes' member lists.
    pub info: Option<Arc<str>>,
    /// Its tabs in the room on this node now (0: gone from this node).
    pub tabs: u32,
    /// A tab came (rather than left).
    pub came: bool,
}

#[derive(Serialize)]
struct PresenceValue<'a> {
    node: u64,
    user: &'a str,
    id: ConnId,
    name: &'a str,
    bound: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a str>,
    // Last: the scripts find it at the end of the value (`"tabs":N}`).
    tabs: u32,
}

impl PresenceChange {
    /// What the cluster keeps for the user on node `node` (a JSON object), and announces.
    pub fn value(&self, node: u64) -> String {
        let v = PresenceValue {
            node,
            user: &self.user,
            id: self.id,
            name: &self.name,
            bound: self.bound,
            info: self.info.as_deref(),
            tabs: self.tabs,
        };
        serde_json::to_string(&v).unwrap_or_default()
    }
}

/// What the cluster says of a user in a room on one node: kept per node (`value`), and
/// announced with `p` ("came": its first tab on any node, "went": its last, "": its tabs
/// changed) and the room's user count.
#[derive(Debug, Clone, Deserialize)]
pub struct Presence {
    #[serde(default)]
    pub p: String,
    pub node: u64,
    pub user: String,
    pub id: ConnId,
    pub name: String,
    #[serde(default)]
    pub bound: bool,
    /// A Pusher presence member's `user_info`.
    #[serde(default)]
    pub info: Option<String>,
    pub tabs: u32,
    #[serde(default)]
    pub users: Option<usize>,
}

/// A user of a room on other nodes.
#[derive(Debug, Clone)]
pub struct Remote {
    pub id: ConnId,
    pub name: Arc<str>,
    pub bound: bool,
    /// A Pusher presence member's `user_info`.
    pub info: Option<Arc<str>>,
    /// Tabs per node.
    nodes: Vec<(u64, u32)>,
}

impl Remote {
    pub fn tabs(&self) -> u32 {
        self.nodes.iter().map(|(_, t)| t).sum()
    }
}

/// Takes one node's news about a user into the room's list of users elsewhere.
pub(super) fn apply(r: &mut Room, p: &Presence) {
    let user: Arc<str> = p.user.as_str().into();
    if p.tabs == 0 {
        if let Some(rem) = r.elsewhere.get_mut(&user) {
            rem.nodes.retain(|(n, _)| *n != p.node);
            if rem.nodes.is_empty() {
                r.elsewhere.remove(&user);
            }
        }
        return;
    }
    let rem = r.elsewhere.entry(user).or_insert_with(|| Remote {
        id: p.id,
        name: p.name.as_str().into(),
        bound: p.bound,
        info: None,
        nodes: Vec::new(),
    });
    rem.name = p.name.as_str().into();
    rem.id = p.id;
    rem.bound = p.bound;
    if let Some(info) = &p.info {
        rem.info = Some(info.as_str().into());
    }
    match rem.nodes.iter_mut().find(|(n, _)| *n == p.node) {
        Some(e) => e.1 = p.tabs,
        None => rem.nodes.push((p.node, p.tabs)),
    }
}

impl Hub {
    /// The cluster's news about a user of `room`: its tabs on one node, and whether it just came
    /// into the room or left it (on every node), which this node's members are told (as `join`
    /// and `leave`, or in a crowd's next update). `mine`: the news is about this node's user.
    /// News that one of this node's users left a room it is back in (its tab closed and a new
    /// one came before the news did) is not announced: the newer change follows it.
    pub fn presence_news(&self, room: &str, p: Presence, mine: bool) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        let r = st.rooms.get_mut(&key).expect("the key was just found");
        if mine && p.tabs == 0 && r.tabs.contains_key(p.user.as_str()) {
            return;
        }
        if let Some(l) = r.loading.as_mut() {
            if !mine {
                l.early_presence.push(p);
            }
            return;
        }
        // A user of another node renamed: this node's members hear it (its own users' renames
        // were announced here already).
        let renamed = match r.elsewhere.get(p.user.as_str()) {
            Some(rem) if !mine && p.tabs > 0 && *rem.name != *p.name => Some(rem.name.clone()),
            _ => None,
        };
        let seen = Self::in_view(r, &p.user);
        if !mine {
            apply(r, &p);
        }
        let changed = seen != Self::in_view(r, &p.user);
        if let Some(n) = p.users {
            r.cluster_users = Some(n);
        }
        // A Pusher presence member entered or left this node's view (its own changes here
        // were announced when they were made).
        if changed {
            self.pusher_member_news(st, &key, &p.user, p.info.as_deref(), !seen, &Default::default());
        }
        let name: Arc<str> = p.name.into();
        let user = User { id: p.id, name: &name, bound: p.bound };
        if let Some(old) = renamed {
            self.to_room(st, &key, Out::Nick { room: &key, user, old: &old }, None);
        }
        match p.p.as_str() {
            "came" if self.crowd_came(st, &key, &name) => {
                self.to_room(st, &key, Out::Join { room: &key, user }, Some(p.id));
            }
            "went" if self.crowd_went(st, &key, &name) => {
                self.to_room(st, &key, Out::Leave { room: &key, user }, None);
            }
            _ => {}
        }
    }

    /// This node's users of every room it follows, as the cluster should know them (told again
    /// after the cluster was unreachable: the telling is idempotent).
    pub fn local_presence(&self) -> Vec<PresenceChange> {
        let st = self.lock();
        let mut out = Vec::new();
        for (key, r) in st.rooms.iter().filter(|(_, r)| !r.is_empty()) {
            for m in presence::members_of_here(&st, key, r) {
                out.push(PresenceChange {
                    room: key.clone(),
                    user: m.user,
                    id: m.id,
                    name: m.name,
                    bound: m.bound,
                    info: m.info,
                    tabs: m.tabs,
                    came: true,
                });
            }
        }
        out
    }

    /// Tells the cluster how many tabs `user` (`id`: one of its connections) now has in `room`
    /// on this node (0: none left); `info`: a Pusher presence member's `user_info`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tell_cluster(
        &self,
        st: &State,
        room: &Arc<str>,
        user: &Arc<str>,
        id: ConnId,
        name: &Arc<str>,
        bound: bool,
        info: Option<Arc<str>>,
    ) {
        let r = st.rooms.get(room);
        let tabs = r.and_then(|r| r.tabs.get(user)).copied().unwrap_or(0);
        let came = r.is_some_and(|r| r.contains(id));
        // The connection named for the user: the one that came, or, when one of several tabs
        // left, another that is still there.
        let id = match r {
            Some(r) if !r.contains(id) && tabs > 0 => match st.users.get(user) {
                Some(u) => u.conns.iter().copied().find(|c| r.contains(*c)).unwrap_or(id),
                // A Pusher presence member (its tabs are counted under its user_id).
                None => r
                    .members
                    .iter()
                    .find(|m| st.conns.get(&m.id).is_some_and(|c| c.tab_in(room) == user))
                    .map_or(id, |m| m.id),
            },
            _ => id,
        };
        let change = PresenceChange {
            room: room.clone(),
            user: user.clone(),
            id,
            name: name.clone(),
            bound,
            info,
            tabs,
            came,
        };
        self.broker.presence(change);
    }

    /// Another node's user had `name` first: this node's `user` (if it still has that name) is
    /// renamed to a free variant (`name-2`…), which every room it is in hears as a `nick`.
    pub fn name_taken(&self, user: &str, name: &str) {
        let mut st = self.lock();
        let Some((key, u)) = st.users.get_key_value(user) else { return };
        if &*u.name != name || u.bound {
            return;
        }
        let (key, tab) = (key.clone(), u.conns[0]);
        let new = st.users.free_name(name);
        self.rename_user(&mut st, &key, tab, new.into());
    }

    /// A snapshot of `room` from what the cluster keeps (`entries`: one per node and user), for
    /// a room with no members here (the others' snapshots come from `presence`).
    pub fn presence_of_cluster_room(
        &self,
        room: &str,
        entries: Vec<Presence>,
        last_id: u64,
    ) -> presence::Snapshot {
        let mut members: Vec<presence::MemberSnapshot> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for e in entries {
            match index.get(&e.user) {
                Some(&i) => members[i].tabs += e.tabs,
                None => {
                    index.insert(e.user.clone(), members.len());
                    members.push(presence::MemberSnapshot {
                        id: e.id,
                        tabs: e.tabs,
                        bound: e.bound,
                        conns: Vec::new(),
                        user: e.user.strip_prefix("sub:").map(str::to_string),
                        name: e.name,
                    })
                }
            }
        }
        let connections = members.iter().map(|m| m.tabs as usize).sum();
        let mut snap = self.presence(Some(""));
        if !members.is_empty() {
            snap.rooms.insert(room.to_string(), presence::RoomSnapshot { last_id, connections, members });
        }
        snap
    }

    /// This node's users and their names (claimed again after an outage).
    pub fn local_names(&self) -> Vec<(Arc<str>, Arc<str>, bool)> {
        let st = self.lock();
        st.users.iter().map(|(k, u)| (k.clone(), u.name.clone(), u.bound)).collect()
    }
}
