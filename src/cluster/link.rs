//! The node's link to Redis: one task that owns a multiplexed connection (commands, pipelined)
//! and a pub/sub connection, numbers and publishes this node's messages, follows the channels of
//! the rooms that have members here, loads their histories, checks Redis every second, and,
//! while Redis cannot be reached, serves this node alone and reconnects with backoff.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{RedisError, RedisResult};
use tokio::sync::mpsc;

use super::conn::within;
pub use super::conn::{redacted, Redis, ALIVE_MS};
use super::{Job, Keys, Note, Watch};
use crate::context::Context;
use crate::hub::{Loaded, NodeOp, Post, Posted, Presence};
use crate::stats::Stats;

mod alone;
mod upkeep;

/// Messages and presence changes sent in one pipeline at most.
const BATCH: usize = 256;
/// How often Redis is asked whether it is still there (and this node says it is alive).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Every how many checks the users of dead nodes are cleaned up.
const SWEEP_EVERY: u32 = 5;
/// Every how many checks the rooms this node follows have their keys' time to live renewed.
const HEAL_EVERY: u32 = 60;
/// Name releases kept while Redis is away, at most.
const LATER_MAX: usize = 65_536;
/// Room loads in flight at once (after a reconnect every followed room loads again).
const LOADS_AT_ONCE: usize = 16;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the link task is given.
pub struct Setup {
    pub url: String,
    pub timeout_ms: u64,
    pub history_size: usize,
    /// `history_max_bytes`: the most bytes a room's history stream holds.
    pub history_bytes: usize,
    pub ttl_s: u64,
    pub keys: Keys,
    pub jobs: mpsc::Receiver<Job>,
    /// Bytes the queued jobs hold (see `Job::cost`).
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
    pub watches: mpsc::UnboundedReceiver<Watch>,
    pub ctx: Arc<OnceLock<Weak<Context>>>,
    pub stats: Arc<Stats>,
    /// This node's number (the high bits of its message keys).
    pub node: u64,
    /// The cluster's epoch, as this node has it (set again if Redis lost it).
    pub epoch: String,
}

pub struct Link {
    s: Setup,
    redis: Option<Redis>,
    /// The last message key given out.
    last_key: u64,
    /// Keys of messages delivered here alone (Redis did not answer in time); if Redis carries
    /// one out late, its members are not sent it twice. Bounded: cleared past `HERE_MAX`.
    here: Arc<std::collections::HashSet<u64>>,
    /// Names given up while Redis was away (sent when it is back: a name stays taken until then).
    later: Vec<Job>,
    /// Room loads in flight at once.
    loads: Arc<tokio::sync::Semaphore>,
}

const HERE_MAX: usize = 65_536;

/// Why the link left its connected loop.
struct Lost(RedisError);

impl Link {
    /// `redis`: the connection made at start.
    pub fn new(s: Setup, redis: Redis) -> Self {
        let last_key = s.node << 32;
        let loads = Arc::new(tokio::sync::Semaphore::new(LOADS_AT_ONCE));
        Link { s, redis: Some(redis), last_key, here: Default::default(), later: Vec::new(), loads }
    }

    fn ctx(&self) -> Option<Arc<Context>> {
        self.s.ctx.get().and_then(Weak::upgrade)
    }

    /// Runs until the engine's runtime is dropped.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stopping() {
                // The engine stops and has left the cluster (`query::leave`): nothing more to
                // tell Redis; the runtime ends this task.
                return std::future::pending().await;
            }
            if let Some(redis) = self.redis.take() {
                self.s.stats.cluster_up.store(1, std::sync::atomic::Ordering::Relaxed);
                let Lost(why) = self.connected(redis).await;
                self.s.stats.cluster_up.store(0, std::sync::atomic::Ordering::Relaxed);
                *self.s.stats.cluster_totals.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Stats::inc(&self.s.stats.cluster_errors);
                let why = format!("lost Redis: {why}; serving this node alone until it is back");
                self.note(&why);
                self.tell_host(0, why);
                backoff = BACKOFF_MIN;
            }
            self.alone_for(backoff).await;
            match self.connect_serving_alone().await {
                Ok(r) => {
                    Stats::inc(&self.s.stats.cluster_reconnects);
                    self.note("Redis is back: following every room again");
                    self.tell_host(1, "Redis is back: following every room again".into());
                    self.redis = Some(r);
                }
                Err(_) => {
                    Stats::inc(&self.s.stats.cluster_errors);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Connects to Redis (a connection, a pub/sub connection, the scripts: each step up to
    /// `redis_timeout_ms`), serving this node alone meanwhile, so a half-answering Redis never
    /// holds local messages up.
    async fn connect_serving_alone(&mut self) -> RedisResult<Redis> {
        let url = self.s.url.clone();
        let timeout_ms = self.s.timeout_ms;
        self.alone_until(Redis::connect(&url, timeout_ms)).await
    }

    fn stopping(&self) -> bool {
        self.ctx().is_none_or(|ctx| ctx.stopping.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A job left the queue: its bytes no longer count against the queue's budget.
    fn took(&self, job: &Job) {
        self.s.queued.fetch_sub(job.cost(), std::sync::atomic::Ordering::Relaxed);
    }

    /// A `cluster` event for the host: `up` 0 (serving alone, `why`) or 1 (back).
    fn tell_host(&self, up: u64, why: String) {
        let Some(ctx) = self.ctx() else { return };
        let mut ev = crate::events::Event::new(crate::events::EventKind::Cluster, 0);
        ev.count = up;
        ev.text = Some(why);
        ctx.events.push(ev);
    }

    /// A line for the operator on standard error (the host gets the counters and `/healthz`).
    fn note(&self, what: &str) {
        eprintln!("embedchat: cluster: {what}");
    }

    /// Serves with Redis until a call fails or times out.
    async fn connected(&mut self, mut redis: Redis) -> Lost {
        let t = redis.timeout;
        // Alive first, so no other node takes this one for dead while it catches up.
        if let Err(e) = redis.alive(&self.s.keys, self.s.node).await {
            return Lost(e);
        }
        if let Err(e) = self.reseed(&mut redis).await {
            return Lost(e);
        }
        // After a reconnect: this node's users as they are now (those who left meanwhile
        // removed, the others told again: Redis may have lost them), then every room with
        // members here followed again, delivering what their members missed (in order: live
        // messages wait behind the room's load).
        if let Err(e) = self.sync_presence(&mut redis).await {
            return Lost(e);
        }
        let rooms = self.ctx().map(|ctx| ctx.hub.reload_all()).unwrap_or_default();
        if let Err(e) =
            self.heal(&mut redis, rooms.iter().map(|(r, _, seq)| (r.clone(), *seq)).collect()).await
        {
            return Lost(e);
        }
        let mut channels: Vec<String> = rooms.iter().map(|(r, ..)| self.s.keys.channel(r)).collect();
        channels.push(self.s.keys.all());
        for chunk in channels.chunks(1024) {
            if let Err(e) = within(t, redis.sink.subscribe(chunk)).await {
                return Lost(e);
            }
        }
        for (room, generation, _) in rooms {
            self.load(&redis, room, generation);
        }
        if let Err(e) = self.exchange_stats(&mut redis).await {
            return Lost(e);
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checks = 0u32;
        loop {
            tokio::select! {
                msg = redis.stream.next() => {
                    let Some(msg) = msg else { return Lost(std::io::Error::other("the pub/sub connection closed").into()) };
                    self.arrived(msg.get_channel_name(), msg.get_payload_bytes());
                }
                Some(w) = self.s.watches.recv() => {
                    let r = match w {
                        Watch::Start(room, generation) => {
                            let r = within(t, redis.sink.subscribe(self.s.keys.channel(&room))).await;
                            match r {
                                Ok(()) => {
                                    self.load(&redis, room, generation);
                                    Ok(())
                                }
                                Err(e) => {
                                    self.unloaded(&room, generation);
                                    Err(e)
                                }
                            }
                        }
                        Watch::Stop(room) => within(t, redis.sink.unsubscribe(self.s.keys.channel(&room))).await,
                    };
                    if let Err(e) = r {
                        return Lost(e);
                    }
                }
                Some(job) = self.s.jobs.recv() => {
                    self.took(&job);
                    let mut batch = vec![job];
                    while batch.len() < BATCH {
                        match self.s.jobs.try_recv() {
                            Ok(j) => {
                                self.took(&j);
                                batch.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.send(&mut redis, &mut batch).await {
                        for job in batch {
                            self.here_alone(job);
                        }
                        return Lost(e);
                    }
                }
                _ = check.tick() => {
                    if self.stopping() {
                        // The engine leaves the cluster itself (`query::leave`); this task does
                        // nothing more until the runtime ends it.
                        std::future::pending::<()>().await;
                    }
                    let mut conn = redis.conn.clone();
                    let ping = within(t, redis::cmd("PING").query_async::<String>(&mut conn)).await;
                    if let Err(e) = ping {
                        return Lost(e);
                    }
                    // In subscribed mode PING answers ["pong", ""]: any answer will do.
                    if let Err(e) = within(t, redis.sink.ping::<redis::Value>()).await {
                        return Lost(e);
                    }
                    match redis.alive(&self.s.keys, self.s.node).await {
                        Err(e) => return Lost(e),
                        // Taken for dead (this node was silent too long): its users again.
                        Ok(false) => {
                            if let Err(e) = self.sync_presence(&mut redis).await {
                                return Lost(e);
                            }
                        }
                        Ok(true) => {}
                    }
                    if let Err(e) = self.exchange_stats(&mut redis).await {
                        return Lost(e);
                    }
                    checks += 1;
                    if checks % SWEEP_EVERY == 0 {
                        let sweep = redis::cmd("EVALSHA")
                            .arg(&redis.forget_sha)
                            .arg(0)
                            .arg(self.s.keys.prefix())
                            .arg(self.s.node)
                            .arg("sweep")
                            .to_owned();
                        if let Err(e) = within(t, sweep.query_async::<u64>(&mut conn)).await {
                            return Lost(e);
                        }
                    }
                    if checks % HEAL_EVERY == 0 {
                        let rooms = self.ctx().map(|ctx| ctx.hub.followed()).unwrap_or_default();
                        if let Err(e) = self.heal(&mut redis, rooms).await {
                            return Lost(e);
                        }
                    }
                }
            }
        }
    }

    /// Turns each message for every room in `batch` into one message per room with users in
    /// the cluster (and per room followed here), in place.
    async fn everywhere(&self, redis: &mut Redis, batch: &mut Vec<Job>) -> RedisResult<()> {
        let members = redis::cmd("SMEMBERS").arg(self.s.keys.rooms()).to_owned();
        let mut rooms: Vec<String> = within(redis.timeout, members.query_async(&mut redis.conn)).await?;
        if let Some(ctx) = self.ctx() {
            rooms.extend(ctx.hub.followed().into_iter().map(|(r, _)| r.to_string()));
        }
        rooms.sort();
        rooms.dedup();
        let mut out = Vec::with_capacity(batch.len() + rooms.len());
        for job in batch.drain(..) {
            let Job::PostAll(p) = job else {
                out.push(job);
                continue;
            };
            for room in &rooms {
                let room: Arc<str> = room.as_str().into();
                let event = p.event.clone().map(|mut ev| {
                    ev.room = Some(room.clone());
                    ev
                });
                out.push(Job::Post(Post { room, event, ..p.clone() }));
            }
        }
        *batch = out;
        Ok(())
    }

    /// Sends `batch` in one pipeline: messages numbered, kept and published (their events wait
    /// for their ids), presence changes kept and announced. On failure `batch` is left for the
    /// caller to carry out here.
    async fn send(&mut self, redis: &mut Redis, batch: &mut Vec<Job>) -> RedisResult<()> {
        if batch.iter().any(|j| matches!(j, Job::PostAll(_))) {
            self.everywhere(redis, batch).await?;
        }
        // In pipelines of `BATCH` (a message to every room may have become thousands): on
        // failure, what was not carried out is left in `batch`.
        while !batch.is_empty() {
            let n = batch.len().min(BATCH);
            let mut chunk: Vec<Job> = batch.drain(..n).collect();
            if let Err(e) = self.send_chunk(redis, &mut chunk).await {
                chunk.append(batch);
                *batch = chunk;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn send_chunk(&mut self, redis: &mut Redis, batch: &mut Vec<Job>) -> RedisResult<()> {
        let keys = &self.s.keys;
        let mut pipe = redis::pipe();
        for job in batch.iter_mut() {
            match job {
                Job::Post(p) => {
                    self.last_key += 1;
                    p.key = self.last_key;
                    pipe.cmd("EVALSHA")
                        .arg(&redis.post_sha)
                        .arg(3)
                        .arg(keys.seq(&p.room))
                        .arg(keys.history(&p.room))
                        .arg(keys.history_bytes(&p.room))
                        .arg(p.payload())
                        .arg(keys.channel(&p.room))
                        .arg(self.s.history_size)
                        .arg(self.s.history_bytes)
                        .arg(self.s.ttl_s);
                }
                Job::Presence(c) => {
                    pipe.cmd("EVALSHA")
                        .arg(&redis.presence_sha)
                        .arg(5)
                        .arg(keys.presence(&c.room))
                        .arg(keys.users(&c.room))
                        .arg(keys.node_rooms(self.s.node))
                        .arg(keys.presence_nodes())
                        .arg(keys.rooms())
                        .arg(format!("{}:{}", self.s.node, c.user))
                        .arg(&*c.user)
                        .arg(c.value(self.s.node))
                        .arg(c.tabs)
                        .arg(keys.channel(&c.room))
                        .arg(&*c.room)
                        .arg(self.s.node);
                }
                Job::Note(json) => {
                    pipe.cmd("PUBLISH").arg(keys.all()).arg(&*json);
                }
                Job::PostAll(_) => unreachable!("expanded by `everywhere`"),
                Job::Name { user, name, claim, force } => {
                    let lower = name.to_lowercase();
                    let script = if *claim { &redis.claim_sha } else { &redis.release_sha };
                    pipe.cmd("EVALSHA").arg(script);
                    if *claim {
                        pipe.arg(4);
                    } else {
                        pipe.arg(3);
                    }
                    pipe.arg(keys.names()).arg(keys.name_nodes(&lower)).arg(keys.node_names(self.s.node));
                    if *claim {
                        pipe.arg(keys.name_holder_nodes());
                    }
                    pipe.arg(&lower).arg(&**user).arg(self.s.node);
                    if *claim {
                        pipe.arg(u8::from(*force)).arg(keys.all()).arg(&**name);
                    }
                }
                Job::Restore(room, id, json) => {
                    pipe.cmd("EVALSHA")
                        .arg(&redis.restore_sha)
                        .arg(3)
                        .arg(keys.seq(room))
                        .arg(keys.history(room))
                        .arg(keys.history_bytes(room))
                        .arg(&*json)
                        .arg(*id)
                        .arg(self.s.history_size)
                        .arg(self.s.history_bytes)
                        .arg(self.s.ttl_s);
                }
            }
        }
        let answers: Vec<u64> = within(redis.timeout, pipe.query_async(&mut redis.conn)).await?;
        let ctx = self.ctx();
        for (job, answer) in batch.drain(..).zip(answers) {
            let Some(ctx) = ctx.as_ref() else { continue };
            match job {
                Job::Post(p) => {
                    if let Some(mut ev) = p.event {
                        ev.msg_id = answer;
                        ctx.events.push(ev);
                    }
                }
                // Another node's user had the name first.
                Job::Name { user, name, claim: true, .. } if answer == 0 => ctx.hub.name_taken(&user, &name),
                _ => {}
            }
        }
        Ok(())
    }

    /// A message or presence news on a room channel, for the room's members here.
    fn arrived(&mut self, channel: &str, payload: &[u8]) {
        if channel == self.s.keys.all() {
            return self.noted(payload);
        }
        let (Some(room), Some(ctx)) = (self.s.keys.room_of(channel), self.ctx()) else { return };
        if payload.starts_with(br#"{"p":"#) {
            match serde_json::from_slice::<Presence>(payload) {
                Ok(p) => {
                    let mine = p.node == self.s.node;
                    ctx.hub.presence_news(room, p, mine);
                }
                Err(_) => Stats::inc(&self.s.stats.cluster_errors),
            }
            return;
        }
        match serde_json::from_slice::<Posted>(payload) {
            Ok(p) if self.here.contains(&p.key) => {
                Arc::make_mut(&mut self.here).remove(&p.key);
                ctx.hub.keep_late(room, p);
            }
            Ok(p) => ctx.hub.deliver(room, p),
            Err(_) => Stats::inc(&self.s.stats.cluster_errors),
        }
    }

    /// A note from another node: a whisper for a user with tabs here, or what the host asked
    /// for a connection or user of this node.
    fn noted(&self, payload: &[u8]) {
        let Some(ctx) = self.ctx() else { return };
        let Ok(note) = serde_json::from_slice::<Note>(payload) else {
            Stats::inc(&self.s.stats.cluster_errors);
            return;
        };
        if note.node == self.s.node {
            return;
        }
        if let (Some(user), Some(w)) = (&note.user, &note.whisper) {
            ctx.hub.whisper_in(user, w);
        }
        let mine = |conn: u64| conn >> 32 == crate::context::first_conn_id(self.s.node) >> 32;
        match note.op {
            Some(NodeOp::Kick { conn, reason }) if mine(conn) => {
                let _ = ctx.hub.kick_here(conn, &reason);
            }
            Some(NodeOp::Send { conn, text }) if mine(conn) => {
                let _ = ctx.hub.send_here(conn, &text);
            }
            Some(NodeOp::KickUser { sub, reason }) => {
                ctx.hub.kick_user_here(&sub, &reason);
            }
            Some(NodeOp::Rename { user, name }) => ctx.hub.name_taken(&user, &name),
            Some(NodeOp::PusherTerminate { user_id }) => {
                ctx.hub.pusher_terminate_here(&user_id);
            }
            _ => {}
        }
    }

    /// Loads what Redis has of a room (history, users) in the background and hands it to the
    /// hub (nothing if Redis fails to answer: the joiners are not kept waiting).
    fn load(&self, redis: &Redis, room: Arc<str>, generation: u64) {
        let mut conn = redis.conn.clone();
        let keys = &self.s.keys;
        let cmd = redis::cmd("EVALSHA")
            .arg(&redis.load_sha)
            .arg(4)
            .arg(keys.seq(&room))
            .arg(keys.history(&room))
            .arg(keys.presence(&room))
            .arg(keys.users(&room))
            .arg(self.s.history_size.max(1))
            .to_owned();
        let (t, ctx, stats, node) = (redis.timeout, self.s.ctx.clone(), self.s.stats.clone(), self.s.node);
        let here = self.here.clone();
        let loads = self.loads.clone();
        tokio::spawn(async move {
            let _permit = loads.acquire_owned().await;
            let answer: RedisResult<Vec<String>> = within(t, cmd.query_async(&mut conn)).await;
            let Some(ctx) = ctx.get().and_then(Weak::upgrade) else { return };
            let l = match answer.ok().and_then(|v| parse_load(&v, node)) {
                Some((seq, users, messages, presence)) => {
                    Loaded { seq, messages, presence: Some(presence), users, seen: &here }
                }
                None => {
                    Stats::inc(&stats.cluster_errors);
                    Loaded { seq: 0, messages: Vec::new(), presence: None, users: 0, seen: &here }
                }
            };
            ctx.hub.loaded(&room, generation, l);
        });
    }
}

/// The load script's answer: the room's last id, its user count, its messages, and its users on
/// nodes other than `node`.
fn parse_load(v: &[String], node: u64) -> Option<(u64, usize, Vec<Posted>, Vec<Presence>)> {
    let seq = v.first()?.parse().ok()?;
    let users = v.get(1)?.parse().ok()?;
    let n: usize = v.get(2)?.parse().ok()?;
    let msgs = v.get(3..3 + n)?.iter().filter_map(|m| serde_json::from_str(m).ok()).collect();
    let presence = v
        .get(3 + n..)?
        .iter()
        .filter_map(|p| serde_json::from_str::<Presence>(p).ok())
        .filter(|p| p.node != node)
        .collect();
    Some((seq, users, msgs, presence))
}
