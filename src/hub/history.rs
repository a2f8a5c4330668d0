//! What a joining or resuming client is owed from a room's history, sent in pages that each fit
//! its backlog: the first page with the welcome (or presence), each next one once the
//! connection has written the last, so history of any size reaches a newcomer without passing
//! `max_backlog_bytes` (a newcomer is never closed as a slow consumer for what it was sent on
//! join). Pages carry `partial: true` while more follow.

use std::sync::Arc;

use super::{Hub, State};
use crate::identity::{ConnId, Resume};
use crate::protocol::Out;

/// History a connection is still owed: ids in (after, upto] of `room`.
pub(super) struct Owed {
    room: Arc<str>,
    after: u64,
    upto: u64,
    more: bool,
}

impl Hub {
    /// Sends the first page of what a joiner is owed; the rest follow as it drains.
    pub(super) fn send_history(&self, st: &mut State, id: ConnId, room: &Arc<str>, resume: &Resume) {
        let (Some(conn), Some(r)) = (st.conns.get(&id), st.rooms.get(room)) else { return };
        let foreign = resume.epoch.as_deref().is_some_and(|e| e != self.epoch);
        let page = r.catch_up(resume.since, foreign, self.history.history_on_join, self.page_bytes);
        let partial = page.partial.is_some();
        let out = Out::History { room, messages: &page.messages, gap: page.gap, more: page.more, partial };
        let sent = self.delivery.to_one(id, &conn.outbox, conn.wire, &out).is_some();
        if let (Some(after), true) = (page.partial, sent) {
            let owed = Owed { room: room.clone(), after, upto: r.seq, more: page.more };
            if let Some(conn) = st.conns.get_mut(&id) {
                conn.owed().push(owed);
                conn.outbox.set_owes_history(true);
            }
        }
    }

    /// Sends the next page of history connection `id` is owed, if any (its session calls this
    /// when everything queued so far is written).
    pub fn next_history_page(&self, id: ConnId) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(conn) = st.conns.get_mut(&id) else { return };
        if !conn.owes() {
            conn.outbox.set_owes_history(false);
            return;
        }
        while let Some(o) = conn.owed().first() {
            let room = o.room.clone();
            let Some(r) = st.rooms.get(&room).filter(|r| r.contains(id)) else {
                conn.owed().remove(0); // left the room meanwhile
                continue;
            };
            let page = r.page(o.after, o.upto, self.page_bytes);
            let partial = page.partial;
            let out = Out::History {
                room: &room,
                messages: &page.messages,
                gap: page.gap,
                more: o.more,
                partial: partial.is_some(),
            };
            self.delivery.to_one(id, &conn.outbox, conn.wire, &out);
            match partial {
                Some(after) => conn.owed()[0].after = after,
                None => {
                    conn.owed().remove(0);
                }
            }
            break;
        }
        if !conn.owes() {
            conn.outbox.set_owes_history(false);
        }
    }
}
