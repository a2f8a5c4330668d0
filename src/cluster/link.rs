//! The node's link to Redis: one task that owns a multiplexed connection (commands, pipelined)
//! and a pub/sub connection, numbers and publishes this node's messages, follows the channels of
//! the rooms that have members here, loads their histories, checks Redis every second, and,
//! while Redis cannot be reached, serves this node alone and reconnects with backoff.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::sync::mpsc;

use super::{Job, Keys, Note, Watch};
use crate::context::Context;
use crate::hub::{Loaded, NodeOp, Post, Posted, Presence};
use crate::stats::Stats;

/// Numbers a message, keeps it in the room's stream and publishes it, as one step.
/// KEYS: the room's sequence, its history stream. ARGV: the message without its id (a JSON
/// object), the channel, how many messages the stream keeps, the keys' time to live (s).
const POST_LUA: &str = r#"
local id = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local msg = '{"id":' .. id .. ',' .. string.sub(ARGV[1], 2)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'm', msg)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', ARGV[2], msg)
return id
"#;

/// Puts a message the host restores into a room's history, if its id is above the last kept
/// one (else nothing: restored oldest first, and by several nodes at once, it is kept once), and
/// raises the room's sequence to it. Returns 1 if kept, 0 if not.
/// KEYS: the room's sequence, its history stream. ARGV: the message (JSON, with its id), its id,
/// how many messages the stream keeps, the keys' time to live (s).
const RESTORE_LUA: &str = r#"
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 and cjson.decode(last[1][2][2])['id'] >= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], '*', 'm', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
end
return 1
"#;

/// A room's last id, its user count, its newest messages (oldest first) and its users per node:
/// `{seq, users, n, msg × n, user × …}`.
/// KEYS: the room's sequence, history stream, presence hash, users hash. ARGV: how many messages.
const LOAD_LUA: &str = r#"
local out = {redis.call('GET', KEYS[1]) or '0', tostring(redis.call('HLEN', KEYS[4]))}
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])
out[3] = tostring(#entries)
for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
local users = redis.call('HVALS', KEYS[3])
for i = 1, #users do out[#out + 1] = users[i] end
return out
"#;

/// Sets (tabs > 0) or removes (tabs = 0) a user's entry for this node in a room, counts on how
/// many nodes the user is there, and announces it on the room's channel: "came" when its first
/// node arrived, "went" when its last one left, with the room's user count. Idempotent: telling
/// the same again changes nothing and announces no coming or going.
/// KEYS: presence hash, users hash, this node's rooms, the nodes with users. ARGV: field
/// (`<node>:<user>`), user, value (JSON), tabs, channel, room, node.
const PRESENCE_LUA: &str = r#"
local edge = ''
if tonumber(ARGV[4]) > 0 then
  if redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then edge = 'came' end
    redis.call('SADD', KEYS[3], ARGV[6])
    redis.call('SADD', KEYS[4], ARGV[7])
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    edge = 'went'
  end
end
local users = redis.call('HLEN', KEYS[2])
redis.call('PUBLISH', ARGV[5], '{"p":"' .. edge .. '","users":' .. users .. ',' .. string.sub(ARGV[3], 2))
return users
"#;

/// Removes the users of every node whose `alive` key expired (it died, or lost Redis for
/// longer than that), announcing each user that is then gone from a room. ARGV: the prefix,
/// this node's number. Returns how many entries it removed.
const SWEEP_LUA: &str = r#"
local prefix, me, swept = ARGV[1], ARGV[2], 0
for _, node in ipairs(redis.call('SMEMBERS', prefix .. ':presence-nodes')) do
  if node ~= me and redis.call('EXISTS', prefix .. ':alive:' .. node) == 0 then
    local rooms_key = prefix .. ':node-rooms:' .. node
    for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
      local pkey, ukey = prefix .. ':presence:' .. room, prefix .. ':users:' .. room
      local fields = redis.call('HGETALL', pkey)
      for i = 1, #fields, 2 do
        if string.sub(fields[i], 1, #node + 1) == node .. ':' then
          local user = string.sub(fields[i], #node + 2)
          redis.call('HDEL', pkey, fields[i])
          local edge = ''
          if redis.call('HINCRBY', ukey, user, -1) <= 0 then
            redis.call('HDEL', ukey, user)
            edge = 'went'
          end
          local value = string.gsub(fields[i + 1], '"tabs":%d+}$', '"tabs":0}')
          local users = redis.call('HLEN', ukey)
          redis.call('PUBLISH', prefix .. ':room:' .. room,
            '{"p":"' .. edge .. '","users":' .. users .. ',' .. string.sub(value, 2))
          swept = swept + 1
        end
      end
    end
    redis.call('DEL', rooms_key)
    redis.call('SREM', prefix .. ':presence-nodes', node)
  end
end
return swept
"#;

/// Messages and presence changes sent in one pipeline at most.
const BATCH: usize = 256;
/// How often Redis is asked whether it is still there (and this node says it is alive).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a node's `alive` key lives: a node silent this long is taken for dead.
const ALIVE_MS: u64 = 5_000;
/// Every how many checks the users of dead nodes are cleaned up.
const SWEEP_EVERY: u32 = 5;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// `url` with its password hidden, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

fn timed_out() -> RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis did not answer in time (redis_timeout_ms)")
        .into()
}

/// `fut`, or a timeout error after `t`.
async fn within<T>(t: Duration, fut: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    tokio::time::timeout(t, fut).await.unwrap_or_else(|_| Err(timed_out()))
}

/// Live connections to one Redis.
pub struct Redis {
    conn: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
    post_sha: String,
    load_sha: String,
    presence_sha: String,
    sweep_sha: String,
    restore_sha: String,
    timeout: Duration,
}

impl Redis {
    pub async fn connect(url: &str, timeout_ms: u64) -> RedisResult<Redis> {
        let t = Duration::from_millis(timeout_ms);
        let client = redis::Client::open(url)?;
        let cfg = AsyncConnectionConfig::new().set_connection_timeout(Some(t)).set_response_timeout(Some(t));
        let mut conn = within(t, client.get_multiplexed_async_connection_with_config(&cfg)).await?;
        let (sink, stream) = within(t, client.get_async_pubsub()).await?.split();
        let mut sha = Vec::new();
        for script in [POST_LUA, LOAD_LUA, PRESENCE_LUA, SWEEP_LUA, RESTORE_LUA] {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(script).to_owned();
            sha.push(within(t, load.query_async::<String>(&mut conn)).await?);
        }
        let [post_sha, load_sha, presence_sha, sweep_sha, restore_sha] =
            <[String; 5]>::try_from(sha).expect("five scripts");
        Ok(Redis { conn, sink, stream, post_sha, load_sha, presence_sha, sweep_sha, restore_sha, timeout: t })
    }

    /// Takes a node number and the cluster's epoch (`epoch` from the config, or the one the
    /// first node set).
    pub async fn join(&self, keys: &Keys, epoch: Option<String>) -> RedisResult<(u64, String)> {
        let mut conn = self.conn.clone();
        let node: u64 =
            within(self.timeout, redis::cmd("INCR").arg(keys.nodes()).query_async(&mut conn)).await?;
        let epoch = match epoch {
            Some(e) => e,
            None => {
                let mine = crate::hub::new_epoch();
                let set = redis::cmd("SET").arg(keys.epoch()).arg(&mine).arg("NX").to_owned();
                within(self.timeout, set.query_async::<()>(&mut conn)).await?;
                within(self.timeout, redis::cmd("GET").arg(keys.epoch()).query_async(&mut conn)).await?
            }
        };
        Ok((node, epoch))
    }

    /// Says this node is alive for the next `ALIVE_MS`.
    async fn alive(&self, keys: &Keys, node: u64) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        let set = redis::cmd("SET").arg(keys.alive(node)).arg(1).arg("PX").arg(ALIVE_MS).to_owned();
        within(self.timeout, set.query_async(&mut conn)).await
    }
}

/// What the link task is given.
pub struct Setup {
    pub url: String,
    pub timeout_ms: u64,
    pub history_size: usize,
    pub ttl_s: u64,
    pub keys: Keys,
    pub jobs: mpsc::Receiver<Job>,
    pub watches: mpsc::UnboundedReceiver<Watch>,
    pub ctx: Arc<OnceLock<Weak<Context>>>,
    pub stats: Arc<Stats>,
    /// This node's number (the high bits of its message keys).
    pub node: u64,
}

pub struct Link {
    s: Setup,
    redis: Option<Redis>,
    /// The last message key given out.
    last_key: u64,
    /// Keys of messages delivered here alone (Redis did not answer in time); if Redis carries
    /// one out late, its members are not sent it twice. Bounded: cleared past `HERE_MAX`.
    here: std::collections::HashSet<u64>,
}

const HERE_MAX: usize = 65_536;

/// Why the link left its connected loop.
struct Lost(RedisError);

impl Link {
    /// `redis`: the connection made at start.
    pub fn new(s: Setup, redis: Redis) -> Self {
        let last_key = s.node << 32;
        Link { s, redis: Some(redis), last_key, here: Default::default() }
    }

    fn ctx(&self) -> Option<Arc<Context>> {
        self.s.ctx.get().and_then(Weak::upgrade)
    }

    /// Runs until the engine's runtime is dropped.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some(redis) = self.redis.take() {
                self.s.stats.cluster_up.store(1, std::sync::atomic::Ordering::Relaxed);
                let Lost(why) = self.connected(redis).await;
                self.s.stats.cluster_up.store(0, std::sync::atomic::Ordering::Relaxed);
                Stats::inc(&self.s.stats.cluster_errors);
                self.note(&format!("lost Redis: {why}; serving this node alone until it is back"));
                backoff = BACKOFF_MIN;
            }
            self.alone_for(backoff).await;
            match Redis::connect(&self.s.url, self.s.timeout_ms).await {
                Ok(r) => {
                    Stats::inc(&self.s.stats.cluster_reconnects);
                    self.note("Redis is back: following every room again");
                    self.redis = Some(r);
                }
                Err(_) => {
                    Stats::inc(&self.s.stats.cluster_errors);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// A line for the operator on standard error (the host gets the counters and `/healthz`).
    fn note(&self, what: &str) {
        eprintln!("embedchat: cluster: {what}");
    }

    /// Serves this node alone for `d`: messages go to local members at once (id 0), comings and
    /// goings are announced here as an engine alone would, rooms that get their first member
    /// here are served without cluster history.
    async fn alone_for(&mut self, d: Duration) {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                Some(job) = self.s.jobs.recv() => self.here_alone(job),
                Some(w) = self.s.watches.recv() => {
                    if let Watch::Start(room, generation) = w {
                        self.unloaded(&room, generation);
                    }
                }
            }
        }
    }

    /// A room served without what the cluster has of it (Redis did not answer).
    fn unloaded(&self, room: &str, generation: u64) {
        if let Some(ctx) = self.ctx() {
            let l = Loaded { seq: 0, messages: Vec::new(), presence: None, users: 0, seen: &self.here };
            ctx.hub.loaded(room, generation, l);
        }
    }

    /// What Redis should have done, done for this node alone.
    fn here_alone(&mut self, job: Job) {
        match job {
            Job::Post(p) => self.deliver_here(p),
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
                    tabs: c.tabs,
                    users: None,
                };
                ctx.hub.presence_news(&c.room, news, true);
            }
            // For other nodes or for Redis only: lost while Redis is away (counted).
            Job::Note(_) | Job::Restore(..) => Stats::inc(&self.s.stats.cluster_posts_dropped),
        }
    }

    fn deliver_here(&mut self, p: Post) {
        Stats::inc(&self.s.stats.cluster_local_only);
        if p.key != 0 {
            if self.here.len() >= HERE_MAX {
                self.here.clear();
            }
            self.here.insert(p.key);
        }
        let Some(ctx) = self.ctx() else { return };
        ctx.hub.deliver_here(&p.room, p.numbered(0));
        if let Some(ev) = p.event {
            ctx.events.push(ev);
        }
    }

    /// Serves with Redis until a call fails or times out.
    async fn connected(&mut self, mut redis: Redis) -> Lost {
        let t = redis.timeout;
        // After a reconnect: this node's users again (Redis may have lost them, or another node
        // removed them while this one was silent), then every room with members here followed
        // again, delivering what their members missed.
        if let Err(e) = within(t, redis.sink.subscribe(self.s.keys.all())).await {
            return Lost(e);
        }
        if let Some(ctx) = self.ctx() {
            let mut again: Vec<Job> = ctx.hub.local_presence().into_iter().map(Job::Presence).collect();
            while !again.is_empty() {
                let rest = again.split_off(again.len().min(BATCH));
                if let Err(e) = self.send(&mut redis, &mut again).await {
                    return Lost(e);
                }
                again = rest;
            }
            for (room, generation) in ctx.hub.watched() {
                if let Err(e) = within(t, redis.sink.subscribe(self.s.keys.channel(&room))).await {
                    return Lost(e);
                }
                self.load(&redis, room, generation);
            }
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
                    let mut batch = vec![job];
                    while batch.len() < BATCH {
                        match self.s.jobs.try_recv() {
                            Ok(j) => batch.push(j),
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
                    let mut conn = redis.conn.clone();
                    let ping = within(t, redis::cmd("PING").query_async::<String>(&mut conn)).await;
                    if let Err(e) = ping {
                        return Lost(e);
                    }
                    // In subscribed mode PING answers ["pong", ""]: any answer will do.
                    if let Err(e) = within(t, redis.sink.ping::<redis::Value>()).await {
                        return Lost(e);
                    }
                    if let Err(e) = redis.alive(&self.s.keys, self.s.node).await {
                        return Lost(e);
                    }
                    checks += 1;
                    if checks % SWEEP_EVERY == 0 {
                        let sweep = redis::cmd("EVALSHA")
                            .arg(&redis.sweep_sha)
                            .arg(0)
                            .arg(self.s.keys.prefix())
                            .arg(self.s.node)
                            .to_owned();
                        if let Err(e) = within(t, sweep.query_async::<u64>(&mut conn)).await {
                            return Lost(e);
                        }
                    }
                }
            }
        }
    }

    /// Sends `batch` in one pipeline: messages numbered, kept and published (their events wait
    /// for their ids), presence changes kept and announced. On failure `batch` is left for the
    /// caller to carry out here.
    async fn send(&mut self, redis: &mut Redis, batch: &mut Vec<Job>) -> RedisResult<()> {
        let keys = &self.s.keys;
        let mut pipe = redis::pipe();
        for job in batch.iter_mut() {
            match job {
                Job::Post(p) => {
                    self.last_key += 1;
                    p.key = self.last_key;
                    pipe.cmd("EVALSHA")
                        .arg(&redis.post_sha)
                        .arg(2)
                        .arg(keys.seq(&p.room))
                        .arg(keys.history(&p.room))
                        .arg(p.payload())
                        .arg(keys.channel(&p.room))
                        .arg(self.s.history_size)
                        .arg(self.s.ttl_s);
                }
                Job::Presence(c) => {
                    pipe.cmd("EVALSHA")
                        .arg(&redis.presence_sha)
                        .arg(4)
                        .arg(keys.presence(&c.room))
                        .arg(keys.users(&c.room))
                        .arg(keys.node_rooms(self.s.node))
                        .arg(keys.presence_nodes())
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
                Job::Restore(room, id, json) => {
                    pipe.cmd("EVALSHA")
                        .arg(&redis.restore_sha)
                        .arg(2)
                        .arg(keys.seq(room))
                        .arg(keys.history(room))
                        .arg(&*json)
                        .arg(*id)
                        .arg(self.s.history_size)
                        .arg(self.s.ttl_s);
                }
            }
        }
        let answers: Vec<u64> = within(redis.timeout, pipe.query_async(&mut redis.conn)).await?;
        let ctx = self.ctx();
        for (job, id) in batch.drain(..).zip(answers) {
            if let (Job::Post(p), Some(ctx)) = (job, ctx.as_ref()) {
                if let Some(mut ev) = p.event {
                    ev.msg_id = id;
                    ctx.events.push(ev);
                }
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
            Ok(p) if self.here.remove(&p.key) => ctx.hub.keep_late(room, p),
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
        tokio::spawn(async move {
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
