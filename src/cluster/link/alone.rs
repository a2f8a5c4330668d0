//! A node serving alone: while Redis cannot be reached (or while it connects), messages go to
//! this node's members at once with id 0, comings and goings are announced here as an engine
//! alone would, and rooms that get their first member are served without cluster history.

use std::sync::Arc;
use std::time::Duration;

use super::{Job, Link, Loaded, Post, Presence, Watch, HERE_MAX, LATER_MAX};
use crate::stats::Stats;

impl Link {
    /// Serves this node alone for `d`: messages go to local members at once (id 0), comings and
    /// goings are announced here as an engine alone would, rooms that get their first member
    /// here are served without cluster history.
    pub(super) async fn alone_for(&mut self, d: Duration) {
        self.alone_until(tokio::time::sleep(d)).await
    }

    /// Serves this node alone (see `alone_for`) until `until` is done.
    pub(super) async fn alone_until<F: std::future::Future>(&mut self, until: F) -> F::Output {
        tokio::pin!(until);
        loop {
            tokio::select! {
                done = &mut until => return done,
                Some(job) = self.s.jobs.recv() => {
                    self.took(&job);
                    self.here_alone(job);
                }
                Some(w) = self.s.watches.recv() => {
                    if let Watch::Start(room, generation) = w {
                        self.unloaded(&room, generation);
                    }
                }
            }
        }
    }

    /// A room served without what the cluster has of it (Redis did not answer).
    pub(super) fn unloaded(&self, room: &str, generation: u64) {
        if let Some(ctx) = self.ctx() {
            let l = Loaded { seq: 0, messages: Vec::new(), presence: None, users: 0, seen: &self.here };
            ctx.hub.loaded(room, generation, l);
        }
    }

    /// What Redis should have done, done for this node alone.
    pub(super) fn here_alone(&mut self, job: Job) {
        match job {
            Job::Post(p) => self.deliver_here(p),
            Job::PostAll(p) => {
                let rooms = self.ctx().map(|ctx| ctx.hub.followed()).unwrap_or_default();
                for (room, _) in rooms {
                    let event = p.event.clone().map(|mut ev| {
                        ev.room = Some(room.clone());
                        ev
                    });
                    self.deliver_here(Post { room, event, ..p.clone() });
                }
            }
            Job::Presence(c) => {
                let Some(ctx) = self.ctx() else { return };
                // A user's first tab here came or its last left: as an engine alone announces.
                let came = c.tabs == 1 && c.came;
                let p = if came {
                    "came"
                } else if c.tabs == 0 {
                    "went"
                } else {
                    ""
                };
                let news = Presence {
                    p: p.into(),
                    node: self.s.node,
                    user: c.user.to_string(),
                    id: c.id,
                    name: c.name.to_string(),
                    bound: c.bound,
                    info: c.info.as_deref().map(str::to_string),
                    tabs: c.tabs,
                    users: None,
                };
                ctx.hub.presence_news(&c.room, news, true);
            }
            // For other nodes or for Redis only: lost while Redis is away (counted).
            Job::Note(_) | Job::Restore(..) => Stats::inc(&self.s.stats.cluster_posts_dropped),
            // Claims are made again when Redis is back (`sync_presence`); releases wait for it.
            Job::Name { claim: false, .. } if self.later.len() < LATER_MAX => self.later.push(job),
            Job::Name { .. } => {}
        }
    }

    pub(super) fn deliver_here(&mut self, p: Post) {
        Stats::inc(&self.s.stats.cluster_local_only);
        if p.key != 0 {
            let here = Arc::make_mut(&mut self.here);
            if here.len() >= HERE_MAX {
                here.clear();
            }
            here.insert(p.key);
        }
        let Some(ctx) = self.ctx() else { return };
        ctx.hub.deliver_here(&p.room, p.numbered(0));
        if let Some(ev) = p.event {
            ctx.events.push(ev);
        }
    }
}
