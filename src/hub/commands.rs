//! Client commands, one function each. A refused command gets an `error` carrying its `ref`.

use std::sync::Arc;

use serde_json::Value;

use super::moderation::HeldKind;
use super::{Hub, State};
use crate::clock::now_ms;
use crate::config::{Relay, WhisperScope};
use crate::events::{Event, EventKind};
use crate::identity::{ConnId, Resume};
use crate::protocol::{self, Command, Out, Request, Target, User};

/// A refusal: the `error` code and its text.
type Refusal = (&'static str, String);

impl Hub {
    /// Carries out one command from a client.
    pub fn command(&self, id: ConnId, req: Request) {
        let mut st = self.lock();
        if !st.conns.contains_key(&id) {
            return;
        }
        let st = &mut *st;
        let done = match req.cmd {
            Command::Message { room, text } => self.cmd_message(st, id, room, text, req.reference.as_ref()),
            Command::Join { room, since, epoch } => {
                self.cmd_join(st, id, room, Resume { since, epoch }, req.reference.as_ref())
            }
            Command::Leave { room } => self.cmd_leave(st, id, room),
            Command::History { room, before, limit } => self.cmd_history(st, id, room, before, limit),
            Command::Whisper { to, text } => self.cmd_whisper(st, id, to, text),
            Command::Nick { name } => self.cmd_nick(st, id, name),
            Command::Members { room, offset, limit, prefix } => {
                if st.conns[&id].rooms.iter().any(|r| **r == *room) {
                    let (offset, limit) = (offset.unwrap_or(0) as usize, limit.unwrap_or(100) as usize);
                    self.members_page(st, id, &room, offset, limit, prefix.as_deref());
                    Ok(())
                } else {
                    Err(("not_member", format!("you are not in room `{room}`")))
                }
            }
            Command::Ping => {
                self.to_conn(st, id, &Out::Pong { reference: req.reference.as_ref() });
                Ok(())
            }
        };
        if let Err((code, message)) = done {
            self.refuse(st, id, code, &message, req.reference.as_ref());
        }
    }

    /// The room a command names (it must be one of the connection's), or the current one.
    fn room_of(st: &State, id: ConnId, room: Option<String>) -> Result<Arc<str>, Refusal> {
        let conn = &st.conns[&id];
        match room {
            Some(r) => match conn.rooms.iter().find(|x| ***x == *r) {
                Some(k) => Ok(k.clone()),
                None => Err(("not_member", format!("you are not in room `{r}`"))),
            },
            None => conn.rooms.last().cloned().ok_or(("no_room", "join a room first".into())),
        }
    }

    fn cmd_message(
        &self,
        st: &mut State,
        id: ConnId,
        room: Option<String>,
        text: String,
        reference: Option<&Value>,
    ) -> Result<(), Refusal> {
        let room = Self::room_of(st, id, room)?;
        if text.is_empty() {
            return Err(("empty", "empty message".into()));
        }
        let name = st.conns[&id].name.clone();
        let mut ev = Event::new(EventKind::Message, id);
        ev.room = Some(room.clone());
        ev.name = Some(name.clone());
        let prefix = &self.moderation.command_prefix;
        let command = !prefix.is_empty() && text.starts_with(prefix.as_str());
        match self.moderation.relay {
            Relay::Auto if !command => {
                ev.text = Some(text);
                self.publish(st, ev, true);
            }
            // A bot command waits for the host like every message under relay `host`.
            Relay::Auto | Relay::Host => {
                ev.text = Some(text.clone());
                self.hold(st, ev, room, name, HeldKind::Message(text), reference);
            }
        }
        Ok(())
    }

    fn cmd_join(
        &self,
        st: &mut State,
        id: ConnId,
        room: String,
        resume: Resume,
        reference: Option<&Value>,
    ) -> Result<(), Refusal> {
        protocol::validate_room(&room, self.chat.max_room_chars).map_err(|m| ("bad_room", m))?;
        let conn = &st.conns[&id];
        if !conn.allows(&room) {
            return Err(("forbidden_room", format!("your login does not allow room `{room}`")));
        }
        if self.pusher_guarded(&room) && !conn.listed(&room) {
            return Err(("forbidden_room", super::pusher::GUARDED.into()));
        }
        let member = conn.rooms.iter().any(|r| **r == *room);
        if self.moderation.join_hook && !member {
            self.hold_join(st, id, &room, false, resume, reference);
        } else {
            self.join_locked(st, id, &room, false, resume, reference);
        }
        Ok(())
    }

    fn cmd_leave(&self, st: &mut State, id: ConnId, room: String) -> Result<(), Refusal> {
        if self.leave_locked(st, id, &room) {
            Ok(())
        } else {
            Err(("not_member", format!("you are not in room `{room}`")))
        }
    }

    fn cmd_history(
        &self,
        st: &mut State,
        id: ConnId,
        room: String,
        before: Option<u64>,
        limit: Option<u64>,
    ) -> Result<(), Refusal> {
        if !st.conns[&id].rooms.iter().any(|r| **r == *room) {
            return Err(("not_member", format!("you are not in room `{room}`")));
        }
        let Some(r) = st.rooms.get(room.as_str()) else { return Ok(()) };
        let limit = limit.unwrap_or(50).clamp(1, self.history.history_size.max(1) as u64) as usize;
        let page = r.older(before, limit, self.page_bytes);
        let out = Out::History {
            room: &room,
            messages: &page.messages,
            gap: false,
            more: page.more,
            partial: false,
        };
        self.to_conn(st, id, &out);
        Ok(())
    }

    fn cmd_whisper(&self, st: &mut State, id: ConnId, to: Target, text: String) -> Result<(), Refusal> {
        if text.is_empty() {
            return Err(("empty", "empty message".into()));
        }
        let target = match &to {
            Target::Id(n) => st.conns.get(n).map(|c| c.user.clone()),
            Target::Name(n) => st.users.owner_of(n).cloned(),
        };
        let Some(dest) = target.as_ref().and_then(|u| st.users.get(u)) else {
            if let Some((key, to_id, to_name, to_bound)) = self.elsewhere_in_my_rooms(st, id, &to) {
                // A user on other nodes only, in one of the sender's rooms: its nodes deliver it.
                let conn = &st.conns[&id];
                let from = User { id, name: &conn.name, bound: conn.bound };
                let to = User { id: to_id, name: &to_name, bound: to_bound };
                let ts = now_ms();
                let whisper = || Out::Whisper { ts, from, to, text: &text };
                let own = st.users.get(&conn.user).map_or(vec![id], |u| u.conns.clone());
                self.to_user(st, &conn.user, &own, whisper());
                self.to_user(st, &key, &[], whisper());
                let mut ev = Event::new(EventKind::Whisper, id);
                ev.name = Some(st.conns[&id].name.clone());
                ev.text = Some(text);
                ev.to = to_id;
                self.push_event(st, ev);
                return Ok(());
            }
            return Err(("unknown_user", "nobody by that name or id is here".into()));
        };
        let conn = &st.conns[&id];
        if self.chat.whisper_scope == WhisperScope::SharedRoom && target.as_ref() != Some(&conn.user) {
            let shared = dest
                .conns
                .iter()
                .filter_map(|t| st.conns.get(t))
                .any(|t| t.rooms.iter().any(|r| conn.rooms.contains(r)));
            if !shared {
                return Err(("unknown_user", "nobody by that name or id is in your rooms".into()));
            }
        }
        let target_id = dest.conns[0];
        let from = User { id, name: &conn.name, bound: conn.bound };
        let (ts, to) = (now_ms(), User { id: target_id, name: &dest.name, bound: dest.bound });
        let whisper = || Out::Whisper { ts, from, to, text: &text };
        // Every tab of the recipient, and the sender's other tabs (they show the echo).
        let dest_key = target.clone().unwrap_or_default();
        if dest_key != conn.user {
            let alone = [id];
            let own: &[ConnId] = st.users.get(&conn.user).map_or(&alone, |u| u.conns.as_slice());
            self.to_user(st, &conn.user, own, whisper());
        }
        self.to_user(st, &dest_key, &dest.conns, whisper());
        let mut ev = Event::new(EventKind::Whisper, id);
        ev.name = Some(st.conns[&id].name.clone());
        ev.text = Some(text);
        ev.to = target_id;
        self.push_event(st, ev);
        Ok(())
    }

    /// In a cluster: a user on other nodes, named by `to`, in one of connection `id`'s rooms
    /// (the only users of other nodes a node knows): its key, id, name and whether it is bound.
    fn elsewhere_in_my_rooms(
        &self,
        st: &State,
        id: ConnId,
        to: &Target,
    ) -> Option<(Arc<str>, ConnId, Arc<str>, bool)> {
        if !self.clustered {
            return None;
        }
        let conn = st.conns.get(&id)?;
        conn.rooms.iter().filter_map(|r| st.rooms.get(r)).find_map(|r| {
            r.elsewhere
                .iter()
                .find(|(_, m)| match to {
                    Target::Id(n) => m.id == *n,
                    Target::Name(n) => m.name.to_lowercase() == n.to_lowercase(),
                })
                .map(|(k, m)| (k.clone(), m.id, m.name.clone(), m.bound))
        })
    }

    fn cmd_nick(&self, st: &mut State, id: ConnId, name: String) -> Result<(), Refusal> {
        let Some(new) = protocol::clean_name(&name, self.chat.max_name_chars) else {
            return Err(("bad_name", "a name needs at least one visible character".into()));
        };
        let user = st.conns[&id].user.clone();
        st.users.check_rename(&user, &new)?;
        self.rename_user(st, &user, id, new.into());
        Ok(())
    }

    /// Renames a user in every tab; each room it is in hears it once (as said by connection
    /// `id`), and the host gets a `nick` event.
    pub(super) fn rename_user(&self, st: &mut State, user: &Arc<str>, id: ConnId, new: Arc<str>) {
        let Some(entry) = st.users.get(user) else { return };
        let tabs = entry.conns.clone();
        let mut rooms: Vec<Arc<str>> = Vec::new();
        let mut bound = false;
        for t in &tabs {
            if let Some(c) = st.conns.get_mut(t) {
                c.name = new.clone();
                bound = c.bound;
                for r in &c.rooms {
                    if !rooms.contains(r) {
                        rooms.push(r.clone());
                    }
                }
            }
        }
        let old = st.users.rename(user, &new).unwrap_or_else(|| new.clone());
        if self.clustered && old.to_lowercase() != new.to_lowercase() {
            self.broker.name(user, &new, true, bound);
            self.broker.name(user, &old, false, false);
        }
        for room in &rooms {
            let who = User { id, name: &new, bound };
            // A cluster room still loading has only joiners who wait for their welcome, which
            // will carry the new name: a `nick` now would come before it.
            let first_load = st.rooms.get(room).and_then(|r| r.loading.as_ref()).is_some_and(|l| !l.reload);
            if !first_load {
                self.to_room(st, room, Out::Nick { room, user: who, old: &old }, None);
            }
            if self.clustered {
                // The other nodes announce the new name to their members (`presence_news`).
                self.tell_cluster(st, room, user, id, &new, bound, None);
            }
        }
        let mut ev = Event::new(EventKind::Nick, id);
        ev.name = Some(new);
        ev.text = Some(old.to_string());
        self.push_event(st, ev);
    }

    /// Refuses a command: an `error` (on wires that carry it) and a count.
    pub(super) fn refuse(
        &self,
        st: &State,
        id: ConnId,
        code: &str,
        message: &str,
        reference: Option<&Value>,
    ) {
        crate::stats::Stats::inc(&self.delivery.stats.command_errors);
        self.to_conn(st, id, &Out::Error { code, message, reference });
    }

    /// Tells a connection its message was refused before it became a command (unreadable,
    /// binary, rate-limited), echoing the command's `ref`, if any.
    pub fn reply_error(&self, id: ConnId, code: &str, message: &str, reference: Option<&Value>) {
        self.refuse(&self.lock(), id, code, message, reference);
    }
}
