//! Scale-out on Redis: several engines (nodes) serve the same rooms. Configured by `redis_url`;
//! without it this module is never started and the hub keeps its `LocalOnly` broker, so an
//! engine alone pays nothing for it.
//!
//! Redis does what a cluster needs and a node cannot do alone (the keys and channels are in
//! `keys.rs`, the two scripts in `link.rs`):
//! - it numbers messages: one Lua script per message takes the room's next id (`INCR`), keeps
//!   the message in the room's history (a stream, `XADD … MAXLEN history_size`) and `PUBLISH`es
//!   it on the room's channel, in one step, so every node sees one order per room;
//! - every node, the sender's included, delivers a message when it comes back on the channel of
//!   a room that has members there (a node subscribes to a room's channel on its first member
//!   and unsubscribes after its last), so a message crosses Redis once and is framed once per
//!   node;
//! - a room that gets its first member on a node loads its history from the stream;
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

mod keys;
mod link;

use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::context::Context;
use crate::error::Error;
use crate::hub::{Broker, Post};
use crate::protocol::Out;
use crate::stats::Stats;

pub use keys::Keys;

/// Messages that may wait for Redis at once; past it a message is refused and counted
/// (`cluster_posts_dropped`): memory stays bounded whatever Redis does.
const POST_QUEUE: usize = 65_536;

/// What a node learns when it joins: the cluster's epoch and its own number.
pub struct Joined {
    pub epoch: String,
    pub node: u64,
    /// The broker to give the hub.
    pub broker: Box<dyn Broker>,
    /// Starts the node's link to Redis once the engine's context exists.
    pub start: Starter,
}

/// Room watches in the order the hub made them.
enum Watch {
    Start(Arc<str>, u64),
    Stop(Arc<str>),
}

/// The hub's broker in a cluster: queues work for the link task (`link.rs`) and returns.
struct RedisBroker {
    posts: mpsc::Sender<Post>,
    watches: mpsc::UnboundedSender<Watch>,
    stats: Arc<Stats>,
}

impl Broker for RedisBroker {
    // Presence, whispers and kicks across nodes are not carried yet: join/leave are per node.
    fn room(&self, _room: &str, _out: &Out<'_>) {}
    fn user(&self, _user: &str, _out: &Out<'_>) {}

    fn orders(&self) -> bool {
        true
    }

    fn post(&self, post: Post) {
        if self.posts.try_send(post).is_err() {
            Stats::inc(&self.stats.cluster_posts_dropped);
        }
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
    history_size: usize,
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
    let (posts, post_rx) = mpsc::channel(POST_QUEUE);
    let (watches, watch_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(OnceLock::new());
    let link = link::Link::new(
        link::Setup {
            url: url.to_string(),
            timeout_ms: cfg.redis_timeout_ms,
            history_size,
            ttl_s: cfg.redis_history_ttl_s,
            keys,
            posts: post_rx,
            watches: watch_rx,
            ctx: ctx.clone(),
            stats: stats.clone(),
            node,
        },
        redis,
    );
    Ok(Joined {
        epoch,
        node,
        broker: Box::new(RedisBroker { posts, watches, stats }),
        start: Starter { link, ctx },
    })
}
