//! One connection to Redis: a multiplexed connection for commands (pipelined), a pub/sub
//! connection, the scripts loaded, and a timeout on every call.

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use super::scripts::*;
use super::Keys;

/// How long a node's `alive` key lives: a node silent this long is taken for dead.
pub const ALIVE_MS: u64 = 5_000;

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
pub async fn within<T>(
    t: Duration,
    fut: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(t, fut).await.unwrap_or_else(|_| Err(timed_out()))
}

/// Live connections to one Redis.
pub struct Redis {
    pub conn: MultiplexedConnection,
    pub sink: PubSubSink,
    pub stream: PubSubStream,
    pub post_sha: String,
    pub load_sha: String,
    pub presence_sha: String,
    pub forget_sha: String,
    pub restore_sha: String,
    pub heal_sha: String,
    pub reseed_sha: String,
    pub claim_sha: String,
    pub release_sha: String,
    pub timeout: Duration,
}

impl Redis {
    pub async fn connect(url: &str, timeout_ms: u64) -> RedisResult<Redis> {
        let t = Duration::from_millis(timeout_ms);
        let client = redis::Client::open(url)?;
        let cfg = AsyncConnectionConfig::new().set_connection_timeout(Some(t)).set_response_timeout(Some(t));
        let mut conn = within(t, client.get_multiplexed_async_connection_with_config(&cfg)).await?;
        let (sink, stream) = within(t, client.get_async_pubsub()).await?.split();
        let mut sha = Vec::new();
        let (post, restore) = (format!("{KEEP_LUA}{POST_LUA}"), format!("{KEEP_LUA}{RESTORE_LUA}"));
        let scripts = [
            &*post,
            LOAD_LUA,
            PRESENCE_LUA,
            FORGET_LUA,
            &*restore,
            HEAL_LUA,
            RESEED_LUA,
            CLAIM_LUA,
            RELEASE_LUA,
        ];
        for script in scripts {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(script).to_owned();
            sha.push(within(t, load.query_async::<String>(&mut conn)).await?);
        }
        let [post_sha, load_sha, presence_sha, forget_sha, restore_sha, heal_sha, reseed_sha, claim_sha, release_sha] =
            <[String; 9]>::try_from(sha).expect("nine scripts");
        Ok(Redis {
            conn,
            sink,
            stream,
            post_sha,
            load_sha,
            presence_sha,
            forget_sha,
            restore_sha,
            heal_sha,
            reseed_sha,
            claim_sha,
            release_sha,
            timeout: t,
        })
    }

    /// Takes a node number and the cluster's epoch (`epoch` from the config, or the one the
    /// first node set).
    pub async fn join(&self, keys: &Keys, epoch: Option<String>) -> RedisResult<(u64, String)> {
        let mut conn = self.conn.clone();
        let take = redis::cmd("EVAL")
            .arg(JOIN_LUA)
            .arg(1)
            .arg(keys.nodes())
            .arg(keys.prefix())
            .arg(ALIVE_MS)
            .to_owned();
        let node: u64 = within(self.timeout, take.query_async(&mut conn)).await?;
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

    /// Says this node is alive for the next `ALIVE_MS`; returns whether it still was (false: the
    /// key had expired, and the other nodes may have removed this node's users).
    pub async fn alive(&self, keys: &Keys, node: u64) -> RedisResult<bool> {
        let mut conn = self.conn.clone();
        let set =
            redis::cmd("SET").arg(keys.alive(node)).arg(1).arg("PX").arg(ALIVE_MS).arg("GET").to_owned();
        let before: Option<String> = within(self.timeout, set.query_async(&mut conn)).await?;
        Ok(before.is_some())
    }
}
