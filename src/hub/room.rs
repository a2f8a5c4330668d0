//! One room: its members (a dense list for fan-out), its tab counts per user, its message ids
//! and the history it keeps for newcomers, paging and resume.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::config::SlowConsumer;
use crate::identity::ConnId;
use crate::outbox::Outbox;
use crate::protocol::Wire;

/// A member as fan-out needs it: where to push, and in which encoding.
pub struct Slot {
    pub id: ConnId,
    pub outbox: Arc<Outbox>,
    pub wire: Wire,
}

pub struct Room {
    /// Dense list so fan-out is a straight walk; `index` finds a member for removal.
    pub members: Vec<Slot>,
    index: HashMap<ConnId, usize>,
    /// The last message id given out here.
    pub seq: u64,
    pub policy: SlowConsumer,
    /// The last messages as (id, JSON object), oldest first.
    pub history: VecDeque<(u64, Arc<str>)>,
    /// Tabs per user key: the room hears `join` for a user's first tab and `leave` for its last.
    pub tabs: HashMap<Arc<str>, u32>,
}

/// What a client gets from the history: messages, whether some it missed are gone (`gap`),
/// and whether older ones can still be asked for (`more`).
pub struct Page<'a> {
    pub messages: Vec<&'a str>,
    pub gap: bool,
    pub more: bool,
}

impl Room {
    pub fn new(policy: SlowConsumer, seq: u64) -> Self {
        Room {
            members: Vec::new(),
            index: HashMap::new(),
            seq,
            policy,
            history: VecDeque::new(),
            tabs: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[cfg(test)]
    pub fn contains(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    /// Keeps a message (its id and JSON object), forgetting the oldest past `keep`.
    pub fn remember(&mut self, id: u64, json: &str, keep: usize) {
        if keep == 0 {
            return;
        }
        if self.history.len() == keep {
            self.history.pop_front();
        }
        self.history.push_back((id, json.into()));
    }

    /// What a client that last saw `since` (None: a newcomer, who gets the newest
    /// `newcomer_window`) should get. `foreign`: `since` is from another epoch (an engine that
    /// restarted), so it says nothing about this history.
    pub fn catch_up(&self, since: Option<u64>, foreign: bool, newcomer_window: usize) -> Page<'_> {
        let Some(since) = since else {
            let skip = self.history.len().saturating_sub(newcomer_window);
            let messages: Vec<&str> = self.history.iter().skip(skip).map(|(_, m)| &**m).collect();
            let more =
                messages.len() < self.history.len() || self.history.front().is_some_and(|(f, _)| *f > 1);
            return Page { messages, gap: false, more };
        };
        let oldest = self.history.front().map_or(self.seq + 1, |(id, _)| *id);
        let gap = foreign || since > self.seq || (since < self.seq && since + 1 < oldest);
        let from = if gap { 0 } else { since };
        let messages = self.history.iter().filter(|(id, _)| *id > from).map(|(_, m)| &**m).collect();
        Page { messages, gap, more: false }
    }

    /// Up to `limit` kept messages with ids below `before` (None: the newest), for paging back.
    pub fn older(&self, before: Option<u64>, limit: usize) -> Page<'_> {
        let older: Vec<&str> = self
            .history
            .iter()
            .filter(|(mid, _)| before.is_none_or(|b| *mid < b))
            .map(|(_, m)| &**m)
            .collect();
        let start = older.len().saturating_sub(limit);
        let first_id = self.history.iter().find(|(mid, _)| before.is_none_or(|b| *mid < b)).map(|(m, _)| *m);
        let more = start > 0 || first_id.is_some_and(|f| f > 1);
        Page { messages: older[start..].to_vec(), gap: false, more }
    }

    pub fn add(&mut self, id: ConnId, outbox: Arc<Outbox>, wire: Wire) {
        self.index.insert(id, self.members.len());
        self.members.push(Slot { id, outbox, wire });
    }

    pub fn remove(&mut self, id: ConnId) {
        if let Some(i) = self.index.remove(&id) {
            self.members.swap_remove(i);
            if let Some(moved) = self.members.get(i) {
                self.index.insert(moved.id, i);
            }
        }
    }

    /// Counts one more tab of `user`; true when it is the user's first here.
    pub fn add_tab(&mut self, user: Arc<str>) -> bool {
        let tabs = self.tabs.entry(user).or_insert(0);
        *tabs += 1;
        *tabs == 1
    }

    /// Counts one tab of `user` less; true when it was the user's last here.
    pub fn remove_tab(&mut self, user: &Arc<str>) -> bool {
        match self.tabs.get_mut(user) {
            Some(t) if *t > 1 => {
                *t -= 1;
                false
            }
            _ => {
                self.tabs.remove(user);
                true
            }
        }
    }

    #[cfg(test)]
    pub fn index_is_consistent(&self) -> bool {
        self.members.len() == self.index.len()
            && self.members.iter().enumerate().all(|(i, m)| self.index.get(&m.id) == Some(&i))
    }
}
