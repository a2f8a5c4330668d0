//! Rooms coming and going: a client creates a room by joining it, within the room caps
//! (`max_rooms`, per address, per connection); an empty room is kept for its history, up to
//! `max_idle_rooms` of them; history is bounded in bytes per room and for the whole engine,
//! and past those bounds the rooms empty longest are forgotten first. Every refusal and
//! eviction is counted.

use std::sync::Arc;

use super::room::{Creator, Kept, Room};
use super::{Hub, State};
use crate::identity::ConnId;
use crate::stats::Stats;

impl Hub {
    /// The room called `key`, created (continuing above every retired id) if need be. Host
    /// paths create rooms freely; clients go through `create_room`.
    pub(super) fn room_entry<'s>(&self, st: &'s mut State, key: &Arc<str>) -> &'s mut Room {
        let policy = self.chat.policy_for(key, self.delivery.policy);
        let limit = self.chat.presence_limit_for(key);
        if !st.rooms.contains_key(key) {
            // A cluster's room counts from its sequence in Redis (`loaded`), not from this node's.
            let floor = if self.clustered { 0 } else { st.retired_seq };
            st.rooms.insert(key.clone(), Room::new(policy, floor, limit));
            if self.clustered {
                self.watch(st, key);
            }
        }
        st.rooms.get_mut(key).expect("the room was just made")
    }

    /// Creates `key` for connection `id` if the room caps allow; otherwise why not.
    pub(super) fn create_room(&self, st: &mut State, id: ConnId, key: &Arc<str>) -> Result<(), String> {
        let Some(conn) = st.conns.get(&id) else { return Err("gone".into()) };
        let ip = conn.ip;
        let refused = |why: String| {
            Stats::inc(&self.delivery.stats.room_refusals);
            Err(why)
        };
        if conn.created as usize >= self.chat.max_created_rooms_per_connection {
            let n = self.chat.max_created_rooms_per_connection;
            return refused(format!("you have created {n} rooms that still exist; join an existing one"));
        }
        if let Some(ip) = ip {
            if st.by_ip.get(&ip).is_some_and(|n| *n as usize >= self.chat.max_rooms_per_ip) {
                return refused("too many rooms were created from your address; join an existing one".into());
            }
        }
        while st.rooms.len() >= self.chat.max_rooms {
            if !self.evict_idle(st) {
                return refused("the server has as many rooms as it may hold; join an existing one".into());
            }
        }
        self.room_entry(st, key).creator = Some(Creator { conn: id, ip });
        if let Some(c) = st.conns.get_mut(&id) {
            c.created += 1;
        }
        if let Some(ip) = ip {
            *st.by_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(())
    }

    /// A room nobody is in: forgotten at once if it has no history, else kept, up to
    /// `max_idle_rooms` of them.
    pub(super) fn room_emptied(&self, st: &mut State, key: Arc<str>) {
        if self.clustered {
            // The cluster keeps the history; this node stops following the room.
            self.broker.unwatch(&key);
            Self::retire(st, &key);
            return;
        }
        let keep = st.rooms.get(&key).is_some_and(|r| !r.history.is_empty());
        if keep {
            st.idle.push_back(key);
            while st.idle.len() > self.history.max_idle_rooms {
                let Some(old) = st.idle.pop_front() else { break };
                if st.rooms.get(&old).is_some_and(Room::is_empty) {
                    Stats::inc(&self.delivery.stats.rooms_evicted);
                    Self::retire(st, &old);
                }
            }
        } else {
            Self::retire(st, &key);
        }
    }

    /// Forgets the room empty longest (with its history); false if no room is empty.
    pub(super) fn evict_idle(&self, st: &mut State) -> bool {
        while let Some(old) = st.idle.pop_front() {
            if st.rooms.get(&old).is_some_and(Room::is_empty) {
                Stats::inc(&self.delivery.stats.rooms_evicted);
                Self::retire(st, &old);
                return true;
            }
        }
        false
    }

    /// Removes a room, remembering its last id and giving its creator's quota back.
    pub(super) fn retire(st: &mut State, key: &str) {
        let Some(r) = st.rooms.remove(key) else { return };
        st.retired_seq = st.retired_seq.max(r.seq);
        st.history_bytes -= r.bytes;
        if let Some(c) = r.creator {
            if let Some(conn) = st.conns.get_mut(&c.conn) {
                conn.created = conn.created.saturating_sub(1);
            }
            if let Some(ip) = c.ip {
                if let Some(n) = st.by_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        st.by_ip.remove(&ip);
                    }
                }
            }
        }
    }

    /// Keeps a message in `room`'s history within the byte bounds: the room's own
    /// (`history_max_bytes`), then the engine's (`history_total_bytes`), for which the rooms
    /// empty longest go first, then the oldest messages of this room.
    pub(super) fn keep(&self, st: &mut State, room: &str, id: u64, json: &str) {
        let (keep, max) = (self.history.history_size, self.history.history_max_bytes);
        let Some(r) = st.rooms.get_mut(room) else { return };
        let Kept { added, freed, mut trimmed } = r.remember(id, json, keep, max);
        st.history_bytes = st.history_bytes + added - freed;
        while st.history_bytes > self.history.history_total_bytes {
            if self.evict_idle(st) {
                continue;
            }
            let Some(r) = st.rooms.get_mut(room) else { break };
            if r.history.len() <= 1 {
                break; // the newest message stays: the bound is then exceeded by one message at most
            }
            st.history_bytes -= r.forget_oldest();
            trimmed += 1;
        }
        Stats::add(&self.delivery.stats.history_trimmed, trimmed);
    }
}
