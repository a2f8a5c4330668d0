//! What waits for the host: messages held under relay `host`, joins held under `join_hook`,
//! the host's decisions on them, and `hook_default` for those it leaves undecided.

use std::sync::Arc;

use serde_json::Value;

use super::{Hub, State};
use crate::config::HookDefault;
use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::identity::{ConnId, Resume};
use crate::stats::Stats;
use crate::wsframe;

/// Something waiting for the host's decision.
pub struct Held {
    pub from: ConnId,
    pub name: Arc<str>,
    pub room: Arc<str>,
    pub what: HeldKind,
    pub deadline_ms: u64,
    /// The command's `ref`: a refusal decided later still names what it refuses.
    pub reference: Option<Value>,
}

pub enum HeldKind {
    /// A chat message (relay `host`).
    Message(String),
    /// A join (`join_hook`): the connection's first room, or a `join` command; with its resume.
    Join { first: bool, resume: Resume },
}

/// The host's answer to a held message or join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject(String),
    Replace(String),
}

impl Hub {
    /// Holds `what` for the host; the event (a MESSAGE or JOIN_REQUEST, already filled in) gets
    /// the reply token. If the event queue has no room, nothing is held: the host would never
    /// hear of it and `hook_default` would decide unreviewed, so it is refused at once
    /// (`moderation_unavailable`; a first room closes the connection with 1013, try again later).
    pub(super) fn hold(
        &self,
        st: &mut State,
        mut ev: Event,
        room: Arc<str>,
        name: Arc<str>,
        what: HeldKind,
        reference: Option<&Value>,
    ) {
        st.next_token += 1;
        ev.token = st.next_token;
        // +1: `ts` is truncated to the millisecond; never hold less than asked.
        let deadline_ms = ev.ts + self.moderation.hook_timeout_ms + 1;
        let from = ev.conn_id;
        if ev.user.is_none() {
            ev.user = st.conns.get(&from).and_then(|c| c.login());
        }
        let token = ev.token;
        if !self.delivery.events.push_if_room(ev) {
            Stats::inc(&self.delivery.stats.moderation_refusals);
            let why = "the moderator cannot take more right now; try again in a moment";
            match what {
                HeldKind::Join { first: true, .. } => {
                    if let Some(c) = st.conns.get(&from) {
                        c.outbox.close(wsframe::close::TRY_AGAIN_LATER, why);
                    }
                }
                _ => self.refuse(st, from, "moderation_unavailable", why, reference),
            }
            return;
        }
        let reference = reference.cloned();
        st.held.insert(token, Held { from, name, room, what, deadline_ms, reference });
    }

    /// Holds a join for the host (`join_hook`): a `join_request` event with a reply token.
    pub(super) fn hold_join(
        &self,
        st: &mut State,
        id: ConnId,
        room: &str,
        first: bool,
        resume: Resume,
        reference: Option<&Value>,
    ) {
        let Some(conn) = st.conns.get(&id) else { return };
        let name = conn.name.clone();
        let room: Arc<str> = room.into();
        let mut ev = Event::new(EventKind::JoinRequest, id);
        ev.name = Some(name.clone());
        ev.room = Some(room.clone());
        self.hold(st, ev, room, name, HeldKind::Join { first, resume }, reference);
    }

    /// The host's decision on a held message or join: publish it as sent, publish other text,
    /// or refuse it.
    pub fn decide(&self, token: u64, decision: Decision) -> Result<(), Error> {
        let mut st = self.lock();
        let held = st.held.remove(&token).ok_or(Error::UnknownToken(token))?;
        self.apply(&mut st, held, decision);
        Ok(())
    }

    fn apply(&self, st: &mut State, held: Held, decision: Decision) {
        match (held.what, decision) {
            (HeldKind::Message(text), Decision::Approve)
            | (HeldKind::Message(_), Decision::Replace(text)) => {
                let mut ev = Event::new(EventKind::Published, held.from);
                ev.room = Some(held.room);
                ev.name = Some(held.name);
                ev.text = Some(text);
                self.publish(st, ev, self.published_events);
            }
            (HeldKind::Message(_), Decision::Reject(reason)) => {
                let reason =
                    if reason.is_empty() { "your message was not published".to_string() } else { reason };
                self.refuse(st, held.from, "rejected", &reason, held.reference.as_ref());
            }
            (HeldKind::Join { first, resume }, Decision::Approve | Decision::Replace(_)) => {
                self.join_locked(st, held.from, &held.room, first, resume, held.reference.as_ref());
            }
            (HeldKind::Join { first, .. }, Decision::Reject(reason)) => {
                let reason =
                    if reason.is_empty() { format!("you may not join `{}`", held.room) } else { reason };
                if first {
                    // Nowhere to be: the connection ends, with the reason.
                    if let Some(c) = st.conns.get(&held.from) {
                        c.outbox.close(wsframe::close::JOIN_REFUSED, &reason);
                    }
                } else {
                    self.refuse(st, held.from, "join_rejected", &reason, held.reference.as_ref());
                }
            }
        }
    }

    /// Applies `hook_default` to held messages and joins whose deadline passed; returns how many.
    pub fn expire(&self, now: u64) -> usize {
        let mut st = self.lock();
        let mut due: Vec<u64> =
            st.held.iter().filter(|(_, h)| h.deadline_ms <= now).map(|(t, _)| *t).collect();
        // In the order they were held (tokens count up): a sender's messages keep their order.
        due.sort_unstable();
        for token in &due {
            if let Some(held) = st.held.remove(token) {
                let decision = match self.moderation.hook_default {
                    HookDefault::Accept => Decision::Approve,
                    HookDefault::Reject => Decision::Reject("the moderator did not answer in time".into()),
                };
                Stats::inc(&self.delivery.stats.hook_timeouts);
                self.apply(&mut st, held, decision);
            }
        }
        due.len()
    }
}
