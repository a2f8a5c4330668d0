//! Scale-out on Redis: several engines (nodes) serve the same rooms. Configured by `redis_url`;
//! without it this module is never started and the hub keeps its `LocalOnly` broker, so an
//! engine alone pays nothing for it.
//!
//! Redis does what a cluster needs and a node cannot do alone (the keys and channels are in
//! `keys.rs`, the two scripts in `link.rs`):
//! - it numbers messages: one Lua script per message takes the room's next id (`INCR`), keeps
//!   the message in the room's history (a stream within `history_size` and `history_max_bytes`)
//!   and `PUBLISH`es it on the room's channel, in one step, so every node sees one order per
//!   room;
//! - every node, the sender's included, delivers a message when it comes back on the channel of
//!   a room that has members there (a node subscribes to a room's channel on its first member
//!   and unsubscribes after its last), so a message crosses Redis once and is framed once per
//!   node;
//! - a room that gets its first member on a node loads its history from the stream;
//! - presence: each node keeps its users of each room in the room's presence hash (one field
//!   per node and user, with its tabs there) and a per-room count of the nodes each user is on;
//!   a script changes both and announces the user on the room's channel, with "came" when its
//!   first tab anywhere arrived and "went" when its last one left, so members hear `join` and
//!   `leave` once per user, whichever nodes its tabs are on. A node refreshes a short-lived
//!   `alive` key every second; every 5 s each node removes the users of nodes whose key expired
//!   (a node that died), announcing them gone;
//! - `epoch` (what message ids are counted in) is one key for the whole cluster, and each node
//!   takes a number (`INCR`) that makes its connection ids unique across the cluster.
//!
//! When Redis cannot be reached (down, restarting, or hung: every call has `redis_timeout_ms`),
//! the node keeps serving its own connections: messages reach local members at once with id 0
//! and are not kept (they have no place in the room's sequence), `cluster_up` is 0 and
//! `/healthz` says degraded. The node reconnects with backoff, subscribes again and loads each
//! room's history again, delivering to its members what was said elsewhere meanwhile.
//!
//! The Redis client is redis-rs (`redis` crate, tokio, multiplexed connection + a pub/sub
//! connection): see `docs/scaling.md` for why.

mod conn;
mod keys;
mod link;
pub mod query;
mod scripts;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::context::Context;
use crate::error::Error;
use crate::hub::{Broker, NodeOp, Post, PresenceChange};
use crate::protocol::Out;
use crate::stats::Stats;

pub use keys::Keys;

/// Messages that may wait for Redis at once, and the bytes they may hold; past either a message
/// is refused and counted (`cluster_posts_dropped`): memory stays bounded whatever Redis does.
const POST_QUEUE: usize = 65_536;
const POST_QUEUE_BYTES: usize = 64 << 20;

/// What a node learns when it joins: the cluster's epoch and its own number.
pub struct Joined {
    pub epoch: String,
    pub node: u64,
    /// The broker to give the hub.
    pub broker: Box<dyn Broker>,
    /// Starts the node's link to Redis once the engine's context exists.
    pub start: Starter,
}

/// What a node sends to Redis, in the order it happened (a user's arrival before its first
/// message).
enum Job {
    Post(Post),
    Presence(PresenceChange),
    /// A note for every node (`Note`, as JSON).
    Note(String),
    /// A message restored into a room's history: room, id, the message's JSON.
    Restore(String, u64, String),
    /// A host message for every room with users in the cluster (its `room` is empty).
    PostAll(Post),
    /// A name taken (`claim`, `force`) or given up by a user of this node.
    Name {
        user: Arc<str>,
        name: Arc<str>,
        claim: bool,
        force: bool,
    },
}

/// What goes to every node on the `all` channel; each ignores its own.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Note {
    node: u64,
    /// A whisper (the JSON wire's object) for the tabs of this user key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    whisper: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op: Option<NodeOp>,
}

/// Room watches in the order the hub made them.
enum Watch {
    Start(Arc<str>, u64),
    Stop(Arc<str>),
}

/// The hub's broker in a cluster: queues work for the link task (`link.rs`) and returns.
struct RedisBroker {
    jobs: mpsc::Sender<Job>,
    /// Bytes the queued jobs hold (the link takes off what it takes out).
    queued: Arc<AtomicUsize>,
    watches: mpsc::UnboundedSender<Watch>,
    stats: Arc<Stats>,
    node: u64,
}

impl Job {
    /// About what the job holds in memory, for the queue's byte budget.
    /// Presence and names cost nothing: they are small, and a lost one would leave the cluster
    /// wrong about who is here, so only the count bounds them.
    fn cost(&self) -> usize {
        match self {
            Job::Post(p) | Job::PostAll(p) => 128 + p.text.len(),
            Job::Note(s) | Job::Restore(_, _, s) => 128 + s.len(),
            Job::Presence(_) | Job::Name { .. } => 0,
        }
    }
}

impl RedisBroker {
    /// Queues a job for the link, within the queue's count and bytes.
    fn queue(&self, job: Job) {
        let cost = job.cost();
        if (cost > 0 && self.queued.fetch_add(cost, Ordering::Relaxed) + cost > POST_QUEUE_BYTES)
            || self.jobs.try_send(job).is_err()
        {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            Stats::inc(&self.stats.cluster_posts_dropped);
        }
    }

    fn note(&self, note: Note) {
        let json = serde_json::to_string(&note).unwrap_or_default();
        self.queue(Job::Note(json));
    }
}

impl Broker for RedisBroker {
    // Rooms: messages and presence go through `post` and `presence` (Redis orders them).
    fn room(&self, _room: &str, _out: &Out<'_>) {}

    /// A whisper went to `user`'s tabs here: its tabs on other nodes get it from there.
    fn user(&self, user: &str, out: &Out<'_>) {
        let Some(json) = crate::protocol::Wire::Json.encode(out) else { return };
        self.note(Note { node: self.node, user: Some(user.to_string()), whisper: Some(json), op: None });
    }

    fn node_op(&self, op: NodeOp) {
        self.note(Note { node: self.node, user: None, whisper: None, op: Some(op) });
    }

    fn name(&self, user: &Arc<str>, name: &Arc<str>, claim: bool, force: bool) {
        let job = Job::Name { user: user.clone(), name: name.clone(), claim, force };
        self.queue(job);
    }

    fn restore(&self, room: &str, id: u64, json: String) {
        self.queue(Job::Restore(room.to_string(), id, json));
    }

    fn orders(&self) -> bool {
        true
    }

    fn post(&self, post: Post) {
        self.queue(Job::Post(post));
    }

    fn post_everywhere(&self, post: Post) {
        self.queue(Job::PostAll(post));
    }

    fn presence(&self, change: PresenceChange) {
        self.queue(Job::Presence(change));
    }

    fn watch(&self, room: &Arc<str>, generation: u64) {
        let _ = self.watches.send(Watch::Start(room.clone(), generation));
    }

    fn unwatch(&self, room: &Arc<str>) {
        let _ = self.watches.send(Watch::Stop(room.clone()));
    }
}

/// The rest of a node's start, once its context exists.
pub struct Starter {
    link: link::Link,
    ctx: Arc<OnceLock<Weak<Context>>>,
}

impl Starter {
    /// Spawns the link task on the engine's runtime (call inside it).
    pub fn start(self, ctx: &Arc<Context>) {
        let _ = self.ctx.set(Arc::downgrade(ctx));
        tokio::spawn(self.link.run());
    }
}

/// Connects to Redis (failing start with the reason when it cannot be reached: a node that
/// starts alone would count its own ids and epoch), takes a node number and the epoch.
pub async fn join(
    cfg: &ClusterConfig,
    history: &crate::config::HistoryConfig,
    epoch: Option<String>,
    stats: Arc<Stats>,
) -> Result<Joined, Error> {
    let url = cfg.url().unwrap_or_default();
    let keys = Keys::new(&cfg.redis_prefix);
    let fail = |what: String| {
        Error::Config(crate::config::ConfigError {
            key: "redis_url".into(),
            message: format!("cannot use Redis at {}: {what}", link::redacted(url)),
        })
    };
    let redis = link::Redis::connect(url, cfg.redis_timeout_ms).await.map_err(|e| fail(e.to_string()))?;
    let (node, epoch) = redis.join(&keys, epoch).await.map_err(|e| fail(e.to_string()))?;
    stats.cluster_up.store(1, std::sync::atomic::Ordering::Relaxed);
    let (jobs, job_rx) = mpsc::channel(POST_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let (watches, watch_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(OnceLock::new());
    let link = link::Link::new(
        link::Setup {
            url: url.to_string(),
            timeout_ms: cfg.redis_timeout_ms,
            history_size: history.history_size,
            history_bytes: history.history_max_bytes,
            ttl_s: cfg.redis_history_ttl_s,
            keys,
            jobs: job_rx,
            queued: queued.clone(),
            watches: watch_rx,
            ctx: ctx.clone(),
            stats: stats.clone(),
            node,
            epoch: epoch.clone(),
        },
        redis,
    );
    Ok(Joined {
        epoch,
        node,
        broker: Box::new(RedisBroker { jobs, queued: queued.clone(), watches, stats, node }),
        start: Starter { link, ctx },
    })
}
