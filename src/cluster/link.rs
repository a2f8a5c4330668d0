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

use super::{Keys, Watch};
use crate::context::Context;
use crate::hub::{Post, Posted};
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

/// A room's last id and its newest messages, oldest first: `{seq, msg, msg, …}`.
/// KEYS: the room's sequence, its history stream. ARGV: how many messages.
const LOAD_LUA: &str = r#"
local out = {redis.call('GET', KEYS[1]) or '0'}
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])
for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
return out
"#;

/// Messages numbered by one pipeline at most.
const BATCH: usize = 256;
/// How often Redis is asked whether it is still there.
const CHECK_EVERY: Duration = Duration::from_secs(1);
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
    timeout: Duration,
}

impl Redis {
    pub async fn connect(url: &str, timeout_ms: u64) -> RedisResult<Redis> {
        let t = Duration::from_millis(timeout_ms);
        let client = redis::Client::open(url)?;
        let cfg = AsyncConnectionConfig::new().set_connection_timeout(Some(t)).set_response_timeout(Some(t));
        let mut conn = within(t, client.get_multiplexed_async_connection_with_config(&cfg)).await?;
        let (sink, stream) = within(t, client.get_async_pubsub()).await?.split();
        let post_sha =
            within(t, redis::cmd("SCRIPT").arg("LOAD").arg(POST_LUA).query_async(&mut conn)).await?;
        let load_sha =
            within(t, redis::cmd("SCRIPT").arg("LOAD").arg(LOAD_LUA).query_async(&mut conn)).await?;
        Ok(Redis { conn, sink, stream, post_sha, load_sha, timeout: t })
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
}

/// What the link task is given.
pub struct Setup {
    pub url: String,
    pub timeout_ms: u64,
    pub history_size: usize,
    pub ttl_s: u64,
    pub keys: Keys,
    pub posts: mpsc::Receiver<Post>,
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

    /// Serves this node alone for `d`: messages go to local members at once (id 0), rooms that
    /// get their first member here are served without cluster history.
    async fn alone_for(&mut self, d: Duration) {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                Some(p) = self.s.posts.recv() => self.deliver_here(p),
                Some(w) = self.s.watches.recv() => {
                    if let (Watch::Start(room, generation), Some(ctx)) = (w, self.ctx()) {
                        ctx.hub.loaded(&room, generation, 0, Vec::new(), &self.here);
                    }
                }
            }
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
        // Rooms with members here (after a reconnect): follow them again and deliver what their
        // members missed.
        if let Some(ctx) = self.ctx() {
            for (room, generation) in ctx.hub.watched() {
                if let Err(e) = within(t, redis.sink.subscribe(self.s.keys.channel(&room))).await {
                    return Lost(e);
                }
                self.load(&redis, room, generation);
            }
        }
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                                    if let Some(ctx) = self.ctx() {
                                        ctx.hub.loaded(&room, generation, 0, Vec::new(), &self.here);
                                    }
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
                Some(p) = self.s.posts.recv() => {
                    let mut batch = vec![p];
                    while batch.len() < BATCH {
                        match self.s.posts.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    for p in &mut batch {
                        self.last_key += 1;
                        p.key = self.last_key;
                    }
                    if let Err(e) = self.number(&mut redis, &mut batch).await {
                        for p in batch {
                            self.deliver_here(p);
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
                }
            }
        }
    }

    /// Numbers, keeps and publishes `batch` in one pipeline; the events wait for their ids. On
    /// failure `batch` is left for the caller to deliver here.
    async fn number(&self, redis: &mut Redis, batch: &mut Vec<Post>) -> RedisResult<()> {
        let keys = &self.s.keys;
        let mut pipe = redis::pipe();
        for p in batch.iter() {
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
        let ids: Vec<u64> = within(redis.timeout, pipe.query_async(&mut redis.conn)).await?;
        let ctx = self.ctx();
        for (p, id) in batch.drain(..).zip(ids) {
            if let (Some(mut ev), Some(ctx)) = (p.event, ctx.as_ref()) {
                ev.msg_id = id;
                ctx.events.push(ev);
            }
        }
        Ok(())
    }

    /// A message on a room channel: delivered to the room's members here.
    fn arrived(&mut self, channel: &str, payload: &[u8]) {
        let (Some(room), Some(ctx)) = (self.s.keys.room_of(channel), self.ctx()) else { return };
        match serde_json::from_slice::<Posted>(payload) {
            Ok(p) if self.here.remove(&p.key) => ctx.hub.keep_late(room, p),
            Ok(p) => ctx.hub.deliver(room, p),
            Err(_) => Stats::inc(&self.s.stats.cluster_errors),
        }
    }

    /// Loads a room's history in the background and hands it to the hub (an empty one if Redis
    /// fails to answer: the joiners are not kept waiting).
    fn load(&self, redis: &Redis, room: Arc<str>, generation: u64) {
        let mut conn = redis.conn.clone();
        let cmd = redis::cmd("EVALSHA")
            .arg(&redis.load_sha)
            .arg(2)
            .arg(self.s.keys.seq(&room))
            .arg(self.s.keys.history(&room))
            .arg(self.s.history_size.max(1))
            .to_owned();
        let (t, ctx, stats) = (redis.timeout, self.s.ctx.clone(), self.s.stats.clone());
        let here = self.here.clone();
        tokio::spawn(async move {
            let answer: RedisResult<Vec<String>> = within(t, cmd.query_async(&mut conn)).await;
            let Some(ctx) = ctx.get().and_then(Weak::upgrade) else { return };
            let (seq, messages) = match answer {
                Ok(v) if !v.is_empty() => {
                    let seq = v[0].parse().unwrap_or(0);
                    let msgs = v[1..].iter().filter_map(|m| serde_json::from_str::<Posted>(m).ok()).collect();
                    (seq, msgs)
                }
                _ => {
                    Stats::inc(&stats.cluster_errors);
                    (0, Vec::new())
                }
            };
            ctx.hub.loaded(&room, generation, seq, messages, &here);
        });
    }
}
