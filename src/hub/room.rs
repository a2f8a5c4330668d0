//! One room: its members (a dense list for fan-out), its tab counts per user, its message ids
//! and the history it keeps for newcomers, paging and resume.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use super::presence::Crowd;
use crate::config::SlowConsumer;
use crate::identity::{ConnId, Resume};
use crate::outbox::Outbox;
use crate::protocol::Codec;

/// A member as fan-out needs it: where to push, and in which encoding.
pub struct Slot {
    pub id: ConnId,
    pub outbox: Arc<Outbox>,
    pub wire: Codec,
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
    /// Bytes the history holds (its JSON).
    pub bytes: usize,
    /// The client that created the room, counted against its limits while the room exists.
    pub creator: Option<Creator>,
    /// Users past which the room is a crowd (see `presence.rs`).
    pub presence_limit: usize,
    /// A crowd's batched presence: set once the room passes `presence_limit`, until it empties.
    pub crowd: Option<Box<Crowd>>,
    /// Tabs per user key: the room hears `join` for a user's first tab and `leave` for its last.
    pub tabs: HashMap<Arc<str>, u32>,
    /// In a cluster: the room's history is on its way (see `hub/cluster.rs`).
    pub loading: Option<Box<Loading>>,
    /// In a cluster: which `watch` of this room a `loaded` answers.
    pub generation: u64,
    /// In a cluster: the room's users on other nodes, as the cluster announced them.
    pub elsewhere: HashMap<Arc<str>, super::cluster_presence::Remote>,
    /// In a cluster: how many users the room has on every node (from the last announcement).
    pub cluster_users: Option<usize>,
    /// In a cluster: the room's history came from the cluster at least once (a room served
    /// while Redis was away has not, and its first load is history, not news).
    pub synced: bool,
}

/// What waits for a cluster room's history: joiners owed it, and messages that came before it.
#[derive(Default)]
pub struct Loading {
    /// Joiners owed their welcome (`true`) or presence, and their history.
    pub waiting: Vec<(ConnId, Resume, bool)>,
    pub early: Vec<super::cluster::Posted>,
    pub early_presence: Vec<super::cluster_presence::Presence>,
    /// Loaded again after the cluster was unreachable: what the members missed is delivered.
    pub reload: bool,
}

/// Who created a room: a connection and its address.
#[derive(Debug, Clone, Copy)]
pub struct Creator {
    pub conn: ConnId,
    pub ip: Option<IpAddr>,
}

/// What a client gets from the history: messages, whether some it missed are gone (`gap`),
/// whether older ones can still be asked for (`more`), and, when the messages it is owed did
/// not fit one page, the last id this page holds (the rest follow).
pub struct Page<'a> {
    pub messages: Vec<&'a str>,
    pub gap: bool,
    pub more: bool,
    pub partial: Option<u64>,
}

/// What keeping a message cost and freed.
pub struct Kept {
    pub added: usize,
    pub freed: usize,
    /// Messages dropped for bytes rather than count.
    pub trimmed: u64,
}

impl Room {
    pub fn new(policy: SlowConsumer, seq: u64, presence_limit: usize) -> Self {
        Room {
            members: Vec::new(),
            index: HashMap::new(),
            seq,
            policy,
            history: VecDeque::new(),
            bytes: 0,
            creator: None,
            presence_limit,
            crowd: None,
            tabs: HashMap::new(),
            loading: None,
            generation: 0,
            elsewhere: HashMap::new(),
            cluster_users: None,
            synced: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many users the room has (each once, whatever its tabs): in a cluster, on every node.
    pub fn users(&self) -> usize {
        self.cluster_users.unwrap_or(0).max(self.tabs.len())
    }

    pub fn contains(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    /// Keeps a message (its id and JSON object), forgetting the oldest past `keep` messages or
    /// `max_bytes` bytes.
    pub fn remember(&mut self, id: u64, json: &str, keep: usize, max_bytes: usize) -> Kept {
        let mut kept = Kept { added: 0, freed: 0, trimmed: 0 };
        if keep == 0 {
            return kept;
        }
        if self.history.len() == keep {
            kept.freed += self.forget_oldest();
        }
        while !self.history.is_empty() && self.bytes + json.len() > max_bytes {
            kept.freed += self.forget_oldest();
            kept.trimmed += 1;
        }
        self.history.push_back((id, json.into()));
        self.bytes += json.len();
        kept.added = json.len();
        kept
    }

    /// Forgets the oldest kept message; returns the bytes freed.
    pub fn forget_oldest(&mut self) -> usize {
        let n = self.history.pop_front().map_or(0, |(_, m)| m.len());
        self.bytes -= n;
        n
    }

    /// What a client that last saw `since` (None: a newcomer, who gets the newest
    /// `newcomer_window`) is owed: the first page (at most `budget` bytes) of the messages after
    /// it. `foreign`: `since` is from another epoch (an engine that restarted), so it says
    /// nothing about this history.
    pub fn catch_up(
        &self,
        since: Option<u64>,
        foreign: bool,
        newcomer_window: usize,
        budget: usize,
    ) -> Page<'_> {
        let (after, gap, more) = match since {
            None => {
                let skip = self.history.len().saturating_sub(newcomer_window);
                let after = self.history.get(skip).map_or(self.seq, |(id, _)| id - 1);
                let more = skip > 0 || self.history.front().is_some_and(|(f, _)| *f > 1);
                (after, false, more)
            }
            Some(since) => {
                let oldest = self.history.front().map_or(self.seq + 1, |(id, _)| *id);
                let gap = foreign || since > self.seq || (since < self.seq && since + 1 < oldest);
                (if gap { 0 } else { since }, gap, false)
            }
        };
        let mut page = self.page(after, self.seq, budget);
        // A foreign or impossible `since` is a gap even when the whole window follows.
        page.gap = gap;
        page.more = more;
        page
    }

    /// The kept messages with ids in (after, upto], oldest first, as many as fit `budget` bytes
    /// (at least one). `gap`: the first ones in the range are no longer kept.
    pub fn page(&self, after: u64, upto: u64, budget: usize) -> Page<'_> {
        let mut messages = Vec::new();
        let mut used = 0;
        let mut partial = None;
        let mut first = None;
        for (id, m) in self.history.iter().filter(|(id, _)| *id > after && *id <= upto) {
            if !messages.is_empty() && used + m.len() + 1 > budget {
                partial = Some(id - 1);
                break;
            }
            first.get_or_insert(*id);
            used += m.len() + 1;
            messages.push(&**m);
        }
        let oldest = self.history.front().map_or(self.seq + 1, |(id, _)| *id);
        let gap = after < upto && after + 1 < oldest && first != Some(after + 1);
        Page { messages, gap, more: false, partial }
    }

    /// Kept messages with ids below `before` (None: the newest): the newest `limit` of them, or
    /// fewer when they do not fit `budget` bytes (at least one), for paging back.
    pub fn older(&self, before: Option<u64>, limit: usize, budget: usize) -> Page<'_> {
        let older: Vec<&str> = self
            .history
            .iter()
            .filter(|(mid, _)| before.is_none_or(|b| *mid < b))
            .map(|(_, m)| &**m)
            .collect();
        let mut start = older.len().saturating_sub(limit);
        let mut used: usize = older[start..].iter().map(|m| m.len() + 1).sum();
        while used > budget && start + 1 < older.len() {
            used -= older[start].len() + 1;
            start += 1;
        }
        let first_id = self.history.iter().find(|(mid, _)| before.is_none_or(|b| *mid < b)).map(|(m, _)| *m);
        let more = start > 0 || first_id.is_some_and(|f| f > 1);
        Page { messages: older[start..].to_vec(), gap: false, more, partial: None }
    }

    pub fn add(&mut self, id: ConnId, outbox: Arc<Outbox>, wire: Codec) {
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
