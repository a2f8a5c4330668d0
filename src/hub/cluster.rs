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

use super::cluster_presence::{apply, Presence};
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
    /// A host message (connection 0, shown as from `from`), with the event to report.
    pub fn from_host(
        room: Arc<str>,
        from: &str,
        ts: u64,
        text: &str,
        event: Option<crate::events::Event>,
    ) -> Post {
        Post {
            room,
            from: 0,
            name: from.into(),
            bound: false,
            ts,
            text: text.to_string(),
            key: 0,
            event,
            event_name: None,
            except: None,
        }
    }

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

    /// The message as the cluster keeps it once numbered `id` (what the post script makes).
    pub fn numbered_json(&self, id: u64) -> String {
        format!("{{\"id\":{id},{}", &self.payload()[1..])
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

/// What the cluster has of a room, as `Hub::loaded` takes it.
pub struct Loaded<'a> {
    /// The room's last message id.
    pub seq: u64,
    /// Its newest messages, oldest first.
    pub messages: Vec<Posted>,
    /// Its users on other nodes (None: not known, the cluster did not answer).
    pub presence: Option<Vec<Presence>>,
    /// How many users it has on every node.
    pub users: usize,
    /// Keys of messages this node's members had already (delivered here alone while the
    /// cluster hung): kept, not sent again.
    pub seen: &'a HashSet<u64>,
}

/// A whisper as another node encoded it (the JSON wire's `whisper` object).
#[derive(Debug, Deserialize)]
struct WhisperIn {
    ts: u64,
    from: UserIn,
    to: UserIn,
    text: String,
}

#[derive(Debug, Deserialize)]
struct UserIn {
    id: ConnId,
    name: String,
    #[serde(default)]
    bound: bool,
}

impl Hub {
    /// A whisper another node sent to `user` (a user key): delivered to its tabs here, if any.
    /// `json`: the whisper as the JSON wire encodes it.
    pub fn whisper_in(&self, user: &str, json: &str) {
        let Ok(w) = serde_json::from_str::<WhisperIn>(json) else { return };
        let st = self.lock();
        let Some(u) = st.users.get(user) else { return };
        let from = User { id: w.from.id, name: &w.from.name, bound: w.from.bound };
        let to = User { id: w.to.id, name: &w.to.name, bound: w.to.bound };
        let mut frames = Frames::new(Out::Whisper { ts: w.ts, from, to, text: &w.text });
        self.to_tabs(&st, &u.conns, &mut frames);
    }

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
            // After the welcome and history its joiners wait for.
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
        // As a numbered one, behind a loading room's history too; id 0 is never kept.
        self.deliver(room, Posted { id: 0, ..p });
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

    /// What the cluster has of `room` (see `Loaded`), for the `watch` numbered `generation`.
    /// The first load answers the joiners that wait for it (welcome, members, history); a later
    /// one (after the cluster was unreachable) delivers to the members the messages they missed
    /// meanwhile, and takes the other nodes' members as they are now.
    pub fn loaded(&self, room: &str, generation: u64, l: Loaded<'_>) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(key) = st.rooms.get_key_value(room).map(|(k, _)| k.clone()) else { return };
        let r = st.rooms.get_mut(&key).expect("the key was just found");
        if r.generation != generation {
            return; // an answer to an earlier life of the room
        }
        let Some(loading) = r.loading.take() else { return };
        // Messages are news only on a reload of a room that had its history before; a first
        // load (or the first after being served alone) is history.
        let news = loading.reload && r.synced;
        // What this node's members were told of the other nodes' users, to tell them what
        // changed: on any reload (a room first served while the cluster was away was told of
        // nobody elsewhere; it learns of them now).
        let before = loading.reload.then(|| r.elsewhere.clone());
        if let Some(presence) = l.presence {
            r.elsewhere.clear();
            for p in &presence {
                apply(r, p);
            }
            r.cluster_users = Some(l.users);
            r.synced = true;
        }
        // News that came while loading: each sets one node's tabs of a user, in order, so those
        // the snapshot has already change nothing and the newer ones bring it up to date.
        for p in &loading.early_presence {
            apply(r, p);
        }
        let mut came_went = (Vec::new(), Vec::new());
        if let Some(before) = before {
            // Who came and went elsewhere while this node could not hear it (users with tabs
            // here were announced here).
            let here = |u: &Arc<str>| r.tabs.contains_key(u);
            for (u, m) in &r.elsewhere {
                if !before.contains_key(u) && !here(u) {
                    came_went.0.push((u.clone(), m.clone()));
                }
            }
            for (u, m) in before {
                if !r.elsewhere.contains_key(&u) && !here(&u) {
                    came_went.1.push((u, m));
                }
            }
        }
        // Not to the joiners waiting for their list, which has it.
        let waiting: HashSet<ConnId> = loading.waiting.iter().map(|(id, ..)| *id).collect();
        for (came, list) in [(true, came_went.0), (false, came_went.1)] {
            for (u, m) in list {
                self.pusher_member_news(st, &key, &u, m.info.as_deref(), came, &waiting);
                let user = User { id: m.id, name: &m.name, bound: m.bound };
                if came && self.crowd_came(st, &key, &m.name) {
                    self.to_room_but(st, &key, Out::Join { room: &key, user }, &waiting);
                } else if !came && self.crowd_went(st, &key, &m.name) {
                    self.to_room_but(st, &key, Out::Leave { room: &key, user }, &waiting);
                }
            }
        }
        for p in &l.messages {
            if news && !l.seen.contains(&p.key) {
                self.deliver_locked(st, &key, p);
            } else {
                self.keep_posted(st, &key, p);
            }
        }
        if let Some(r) = st.rooms.get_mut(&key) {
            r.seq = r.seq.max(l.seq);
        }
        for (id, resume, first) in loading.waiting {
            if st.rooms.get(&key).is_some_and(|r| r.contains(id)) {
                self.greet(st, id, &key, first, &resume);
            }
        }
        for p in &loading.early {
            self.deliver_locked(st, &key, p);
        }
    }

    /// Every room this node follows, with its last id here.
    pub fn followed(&self) -> Vec<(Arc<str>, u64)> {
        let st = self.lock();
        st.rooms.iter().filter(|(_, r)| !r.is_empty()).map(|(k, r)| (k.clone(), r.seq)).collect()
    }

    /// Every room this node follows, to load again after the cluster was unreachable: each is
    /// loading again (live messages wait behind what it missed), under a new watch generation.
    /// Returns (room, generation, its last id here).
    pub fn reload_all(&self) -> Vec<(Arc<str>, u64, u64)> {
        let mut st = self.lock();
        let st = &mut *st;
        let mut out = Vec::new();
        for (k, r) in st.rooms.iter_mut().filter(|(_, r)| !r.is_empty()) {
            st.generation += 1;
            r.generation = st.generation;
            let l = r.loading.get_or_insert_with(Box::default);
            l.reload = true;
            out.push((k.clone(), r.generation, r.seq));
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_numbered_post_reads_back_as_the_same_message() {
        let post = Post {
            room: "r".into(),
            from: 7,
            name: "ann \"a\"".into(),
            bound: true,
            ts: 5,
            text: "hi\n{}".into(),
            key: 9,
            event: None,
            event_name: None,
            except: None,
        };
        let back: Posted = serde_json::from_str(&post.numbered_json(42)).unwrap();
        assert_eq!(back, post.numbered(42));
    }
}
