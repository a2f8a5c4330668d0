//! What the host does to the chat: messages to rooms and connections, kicks, stop, restored
//! history. Reached through `host.rs` from every surface.

use std::sync::Arc;

use super::{Conn, Hub, NodeOp, Post};
use crate::clock::now_ms;
use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::identity::ConnId;
use crate::outbox::Push;
use crate::protocol::{self, Out, User};
use crate::stats::Stats;
use crate::wsframe;

impl Hub {
    /// A host message to one room, or to every room when `room` is None. Returns how many
    /// connections it was queued to.
    pub fn broadcast(&self, room: Option<&str>, text: &str, from: &str) -> Result<usize, Error> {
        if let Some(r) = room {
            protocol::validate_room(r, self.chat.max_room_chars).map_err(Error::BadRoom)?;
        }
        let mut st = self.lock();
        Stats::inc(&self.delivery.stats.host_broadcasts);
        let ts = now_ms();
        if room.is_none() && self.clustered {
            // Every room of the cluster, as Redis knows them (those with users on some node).
            let event = self.published_events.then(|| {
                let mut ev = Event::new(EventKind::Published, 0);
                ev.ts = ts;
                ev.name = Some(from.into());
                ev.text = Some(text.to_string());
                ev
            });
            let post = Post::from_host("".into(), from, ts, text, event);
            self.broker.post_everywhere(post);
            return Ok(st.rooms.values().map(|r| r.members.len()).sum());
        }
        let keys: Vec<Arc<str>> = match room {
            Some(name) => {
                vec![st.rooms.get_key_value(name).map(|(k, _)| k.clone()).unwrap_or_else(|| name.into())]
            }
            None => st.rooms.keys().cloned().collect(),
        };
        let mut sent = 0;
        for key in keys {
            let mut ev = Event::new(EventKind::Published, 0);
            ev.ts = ts;
            ev.room = Some(key.clone());
            ev.name = Some(from.into());
            ev.text = Some(text.to_string());
            if self.clustered {
                // The cluster keeps the history: no room is made here for it.
                sent += self.publish(&mut st, ev, self.published_events);
                continue;
            }
            // Nobody there yet: the room is kept for its history, so later arrivals see it.
            let new = !st.rooms.contains_key(&key);
            self.room_entry(&mut st, &key);
            sent += self.publish(&mut st, ev, self.published_events);
            if new {
                self.room_emptied(&mut st, key.clone());
            }
        }
        Ok(sent)
    }

    /// A host message to one connection (shown as a whisper from the host).
    /// (In a cluster, a connection of another node gets it from that node.)
    pub fn send(&self, id: ConnId, text: &str) -> Result<(), Error> {
        self.here_or_elsewhere(self.send_here(id, text), id, || NodeOp::Send { conn: id, text: text.into() })
    }

    /// `send` to a connection of this node.
    pub fn send_here(&self, id: ConnId, text: &str) -> Result<(), Error> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(Error::UnknownConnection(id))?;
        let host = User::named(0, &self.chat.host_name);
        let to = User { id, name: &conn.name, bound: conn.bound };
        let out = Out::Whisper { ts: now_ms(), from: host, to, text };
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
    /// (In a cluster, a connection of another node is closed by that node.)
    pub fn kick(&self, id: ConnId, reason: &str) -> Result<(), Error> {
        self.here_or_elsewhere(self.kick_here(id, reason), id, || NodeOp::Kick {
            conn: id,
            reason: reason.into(),
        })
    }

    /// `kick` for a connection of this node.
    pub fn kick_here(&self, id: ConnId, reason: &str) -> Result<(), Error> {
        let st = self.lock();
        let conn = st.conns.get(&id).ok_or(Error::UnknownConnection(id))?;
        self.kick_conn(conn, reason);
        Ok(())
    }

    /// `here`: what an operation on connection `id` did on this node. When the connection is not
    /// here, in a cluster, the operation goes to the node that has it (its number is in the
    /// id's high bits): accepted, though that node may find it gone.
    fn here_or_elsewhere(
        &self,
        here: Result<(), Error>,
        id: ConnId,
        op: impl FnOnce() -> NodeOp,
    ) -> Result<(), Error> {
        match here {
            Err(Error::UnknownConnection(_)) if self.clustered && id >> 32 != 0 => {
                self.broker.node_op(op());
                Ok(())
            }
            r => r,
        }
    }

    /// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many
    /// (in a cluster: on this node; the other nodes close theirs).
    pub fn kick_user(&self, sub: &str, reason: &str) -> usize {
        if self.clustered {
            self.broker.node_op(NodeOp::KickUser { sub: sub.to_string(), reason: reason.to_string() });
        }
        self.kick_user_here(sub, reason)
    }

    /// `kick_user` for this node's connections only.
    pub fn kick_user_here(&self, sub: &str, reason: &str) -> usize {
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
        if self.clustered {
            if self.delivery.stats.cluster_up.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return Err(Error::Other(
                    crate::error::ErrorKind::Internal,
                    "Redis cannot be reached: nothing was restored; try again when it is back".into(),
                ));
            }
            // Into the cluster's history in Redis, where ids are checked as they are here (a
            // message at or below the last kept id is refused: several nodes restoring the same
            // history keep it once). Rooms already loaded on a node see it on their next load.
            let post = Post::from_host(room.into(), from, ts, text, None);
            self.broker.restore(room, id, post.numbered_json(id));
            return Ok(());
        }
        let mut st = self.lock();
        let key: Arc<str> =
            st.rooms.get_key_value(room).map(|(k, _)| k.clone()).unwrap_or_else(|| room.into());
        let new = !st.rooms.contains_key(&key);
        let r = self.room_entry(&mut st, &key);
        // Ids must increase along the history; the room's sequence may already be higher (an
        // `id_floor`, or a room that lived before), and new messages continue above both.
        let last = r.history.back().map_or(0, |(last, _)| *last);
        if id <= last {
            if new {
                self.room_emptied(&mut st, key);
            }
            return Err(Error::InvalidArgument(format!(
                "message id {id} is not above room `{room}`'s last kept id {last}; restore oldest first"
            )));
        }
        r.seq = r.seq.max(id);
        let json = protocol::message(room, id, ts, User::named(0, from), text);
        self.keep(&mut st, &key, id, &json);
        if new {
            self.room_emptied(&mut st, key);
        }
        Ok(())
    }
}
