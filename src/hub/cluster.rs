//! The hub's side of scale-out: messages that come back from the cluster with their ids, the
//! history a room loads when it gets its first member here, and messages delivered here alone
//! while the cluster cannot be reached. The cluster itself (Redis) is `src/cluster/`; it calls
//! these, and the hub reaches it only through the `Broker` (`fanout.rs`).
//!
//! A room followed from the cluster is `loading` from its first member's arrival until its
//! history is here: joiners are owed their history until then (`Loading::waiting`), and
//! messages that come meanwhile wait behind it (`Loading::early`), so each member sees history
//! and live messages in id order, without duplicates.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fanout::{Frames, Post};
use super::{Hub, State};
use crate::identity::ConnId;
use crate::protocol::{self, Out, User};
use crate::stats::Stats;

/// Messages kept for a room whose history is still on its way; past it the oldest wait in the
/// cluster's history instead (they are loaded with it).
const EARLY_MAX: usize = 4096;

/// A message as it crosses the cluster. `id` is the room's sequence number, given by the
/// cluster; 0 for a message delivered on one node only while the cluster was unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Posted {
    #[serde(default)]
    pub id: u64,
    pub from: ConnId,
    pub name: String,
    #[serde(default)]
    pub bound: bool,
    pub ts: u64,
    pub text: String,
    /// The sending node's own number for the message (unique in the cluster): a message that
    /// node delivered alone while Redis hung, and that Redis carried out late, is known by it.
    #[serde(default)]
    pub key: u64,
    /// A named event's name (`Post::event_name`).
    #[serde(default)]
    pub event_name: Option<String>,
    /// The connection that does not get it (`Post::except`).
    #[serde(default)]
    pub except: Option<ConnId>,
}

/// `Posted` without its id, as a node sends it.
#[derive(Serialize)]
struct Unnumbered<'a> {
    from: ConnId,
    name: &'a str,
    bound: bool,
    ts: u64,
    text: &'a str,
    key: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    except: Option<ConnId>,
}

impl Post {
    /// The message as the cluster carries it: a JSON object without `id`. The cluster numbers it
    /// by putting `"id":N,` after the opening brace (so it never parses the message).
    pub fn payload(&self) -> String {
        let u = Unnumbered {
            from: self.from,
            name: &self.name,
            bound: self.bound,
            ts: self.ts,
            text: &self.text,
            key: self.key,
            event_name: self.event_name.as_deref(),
            except: self.except,
        };
        serde_json::to_string(&u).unwrap_or_default()
    }

    /// The message, numbered `id` (0: delivered here only).
    pub fn numbered(&self, id: u64) -> Posted {
        Posted {
            id,
            from: self.from,
            name: self.name.to_string(),
            bound: self.bound,
            ts: self.ts,
            text: self.text.clone(),
            key: self.key,
            event_name: self.event_name.as_deref().map(str::to_string),
            except: self.except,
        }
    }
}

impl Hub {
    /// A message the cluster numbered, that this node's members saw already (`deliver_here`):
    /// kept, so it has its place in the room's history, but not sent again.
    pub fn keep_late(&self, room: &str, p: Posted) {
        let mut st = self.lock();
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        if st.rooms.get(&key).is_some_and(|r| r.loading.is_none()) {
            self.keep_posted(&mut st, &key, &p);
        }
    }

    /// A message the cluster numbered: kept and delivered to this node's members of `room`
    /// (nothing when nobody here is in it).
    pub fn deliver(&self, room: &str, p: Posted) {
        let mut st = self.lock();
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        let r = st.rooms.get_mut(&key).expect("the key was just found");
        if let Some(l) = r.loading.as_mut() {
            if l.early.len() < EARLY_MAX {
                l.early.push(p);
            } else {
                Stats::inc(&self.delivery.stats.cluster_early_dropped);
            }
            return;
        }
        self.deliver_locked(&mut st, &key, &p);
    }

    /// A message the cluster could not number (it is unreachable): delivered to this node's
    /// members with id 0 and not kept, so it takes no place in the room's sequence.
    pub fn deliver_here(&self, room: &str, p: Posted) {
        let mut st = self.lock();
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        self.deliver_locked(&mut st, &key, &Posted { id: 0, ..p });
    }

    /// Keeps (when numbered) and delivers one message; a number already seen is skipped.
    fn deliver_locked(&self, st: &mut State, key: &Arc<str>, p: &Posted) {
        let Some(json) = self.keep_posted(st, key, p) else { return };
        let Some(r) = st.rooms.get(key) else { return };
        let from = User { id: p.from, name: &p.name, bound: p.bound };
        let (room, id, ts, text) = (&**key, p.id, p.ts, p.text.as_str());
        let out = match &p.event_name {
            Some(event) => Out::Event { room, id, ts, from, event, data: text },
            None => Out::Message { room, id, ts, from, text },
        };
        self.delivery.to_members(&r.members, &mut Frames::with_json(out, &json), r.policy, p.except);
    }

    /// Keeps a numbered message in the room's history; returns its JSON, or None when the room
    /// has it already (or is gone).
    fn keep_posted(&self, st: &mut State, key: &Arc<str>, p: &Posted) -> Option<String> {
        let r = st.rooms.get_mut(key)?;
        if p.id != 0 {
            if p.id <= r.seq {
                return None;
            }
            r.seq = p.id;
        }
        let from = User { id: p.from, name: &p.name, bound: p.bound };
        let json = match &p.event_name {
            Some(event) => protocol::event_message(key, p.id, p.ts, from, event, &p.text),
            None => protocol::message(key, p.id, p.ts, from, &p.text),
        };
        if p.id != 0 {
            self.keep(st, key, p.id, &json);
        }
        Some(json)
    }

    /// The cluster's history of `room` (oldest first) and its last id, for the `watch` numbered
    /// `generation`. The first load answers the joiners that wait for it; a later one (after the
    /// cluster was unreachable) delivers to the members what they missed meanwhile.
    /// `seen`: keys of messages this node's members had already (delivered here alone), which
    /// are kept but not sent again.
    pub fn loaded(&self, room: &str, generation: u64, seq: u64, messages: Vec<Posted>, seen: &HashSet<u64>) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        let r = st.rooms.get_mut(&key).expect("the key was just found");
        if r.generation != generation {
            return; // an answer to an earlier life of the room
        }
        let loading = r.loading.take();
        for p in &messages {
            if loading.is_some() || seen.contains(&p.key) {
                self.keep_posted(st, &key, p);
            } else {
                self.deliver_locked(st, &key, p);
            }
        }
        if let Some(r) = st.rooms.get_mut(&key) {
            r.seq = r.seq.max(seq);
        }
        let Some(loading) = loading else { return };
        for (id, resume) in loading.waiting {
            if st.rooms.get(&key).is_some_and(|r| r.contains(id)) {
                self.send_history(st, id, &key, &resume);
            }
        }
        for p in &loading.early {
            self.deliver_locked(st, &key, p);
        }
    }

    /// Rooms this node follows, with the generation of their watch (to load them again after
    /// the cluster comes back).
    pub fn watched(&self) -> Vec<(Arc<str>, u64)> {
        let st = self.lock();
        st.rooms.iter().filter(|(_, r)| !r.is_empty()).map(|(k, r)| (k.clone(), r.generation)).collect()
    }

    /// Starts following a room that got its first member here: its history is owed until
    /// `loaded`.
    pub(super) fn watch(&self, st: &mut State, key: &Arc<str>) {
        st.generation += 1;
        let generation = st.generation;
        if let Some(r) = st.rooms.get_mut(key) {
            r.generation = generation;
            r.loading = Some(Box::default());
        }
        self.broker.watch(key, generation);
    }
}
