//! What the host asks about the whole cluster (its rooms, a room's users), read from Redis on a
//! connection the questions share (`Queries`, made on the first question and again after an
//! error): these are occasional questions (the HTTP API, the Pusher HTTP API, the control
//! socket, `chat_presence_json`), not worth a cache kept up to date on every node. And a node's
//! leaving at stop, on a connection of its own (the link is being shut down).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use super::conn::within;
use super::scripts::FORGET_LUA;
use super::Keys;
use crate::config::ClusterConfig;
use crate::error::{Error, ErrorKind};
use crate::hub::Presence;

/// Every room with users whose name starts with ARGV[2] ('' for all), with its users,
/// connections, last id and Pusher presence members: `{room, users, conns, seq, members}…`.
/// ARGV: the prefix, the start of the names.
const ROOMS_LUA: &str = r#"
local prefix, start, out = ARGV[1], ARGV[2], {}
for _, room in ipairs(redis.call('SMEMBERS', prefix .. ':rooms')) do
  if string.sub(room, 1, #start) == start then
    local conns, members = 0, 0
    for _, v in ipairs(redis.call('HVALS', prefix .. ':presence:' .. room)) do
      conns = conns + (tonumber(string.match(v, '"tabs":(%d+)}$')) or 0)
    end
    if string.sub(room, 1, 9) == 'presence-' then
      for _, u in ipairs(redis.call('HKEYS', prefix .. ':users:' .. room)) do
        if string.sub(u, 1, 7) == 'pusher:' then members = members + 1 end
      end
    end
    out[#out + 1] = room
    out[#out + 1] = tostring(redis.call('HLEN', prefix .. ':users:' .. room))
    out[#out + 1] = tostring(conns)
    out[#out + 1] = redis.call('GET', prefix .. ':seq:' .. room) or '0'
    out[#out + 1] = tostring(members)
  end
end
return out
"#;

/// A room of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterRoom {
    pub name: String,
    /// Users on every node (each once).
    pub users: usize,
    /// Connections (tabs) on every node.
    pub conns: usize,
    /// Its last message id.
    pub seq: u64,
    /// A Pusher presence channel's members (user ids) on every node.
    pub members: usize,
}

async fn connection(cfg: &ClusterConfig) -> RedisResult<(MultiplexedConnection, Duration)> {
    let t = Duration::from_millis(cfg.redis_timeout_ms);
    let client = redis::Client::open(cfg.url().unwrap_or_default())?;
    let c = AsyncConnectionConfig::new().set_connection_timeout(Some(t)).set_response_timeout(Some(t));
    Ok((within(t, client.get_multiplexed_async_connection_with_config(&c)).await?, t))
}

fn unreachable(e: redis::RedisError) -> Error {
    Error::other(ErrorKind::Internal, format!("the cluster's Redis did not answer: {e}"))
}

/// The connection a node's questions about the cluster share: one multiplexed connection
/// carries concurrent questions; made on the first question, kept while it answers, made again
/// after an error (a connection whose socket died would fail every question after).
#[derive(Default)]
pub struct Queries {
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Queries {
    /// Asks `ask` on the shared connection. A connection kept from before that fails (Redis
    /// restarted since) is dropped and the question asked once more on a new one.
    async fn ask<T, F, Fut>(&self, cfg: &ClusterConfig, ask: F) -> Result<T, Error>
    where
        F: Fn(MultiplexedConnection, Duration) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let t = Duration::from_millis(cfg.redis_timeout_ms);
        loop {
            let mut slot = self.conn.lock().await;
            let (conn, fresh) = match &*slot {
                Some(c) => (c.clone(), false),
                None => {
                    let (c, _) = connection(cfg).await.map_err(unreachable)?;
                    *slot = Some(c.clone());
                    (c, true)
                }
            };
            drop(slot);
            match ask(conn, t).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    *self.conn.lock().await = None;
                    if fresh {
                        return Err(unreachable(e));
                    }
                }
            }
        }
    }

    /// Every room with users on some node whose name starts with `start`.
    pub async fn rooms(&self, cfg: &ClusterConfig, start: &str) -> Result<Vec<ClusterRoom>, Error> {
        let cmd = redis::cmd("EVAL")
            .arg(ROOMS_LUA)
            .arg(0)
            .arg(Keys::new(&cfg.redis_prefix).prefix())
            .arg(start)
            .to_owned();
        let flat = self
            .ask(cfg, |mut conn, t| {
                let cmd = cmd.clone();
                async move { within(t, cmd.query_async::<Vec<String>>(&mut conn)).await }
            })
            .await?;
        Ok(flat
            .chunks(5)
            .filter_map(|c| match c {
                [name, users, conns, seq, members] => Some(ClusterRoom {
                    name: name.clone(),
                    users: users.parse().ok()?,
                    conns: conns.parse().ok()?,
                    seq: seq.parse().unwrap_or(0),
                    members: members.parse().unwrap_or(0),
                }),
                _ => None,
            })
            .collect())
    }

    /// A room's users on every node (one entry per node and user) and its last id.
    pub async fn room(&self, cfg: &ClusterConfig, room: &str) -> Result<(Vec<Presence>, u64), Error> {
        let keys = Keys::new(&cfg.redis_prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("HVALS").arg(keys.presence(room));
        pipe.cmd("GET").arg(keys.seq(room));
        let (values, seq) = self
            .ask(cfg, |mut conn, t| {
                let pipe = pipe.clone();
                async move { within(t, pipe.query_async::<(Vec<String>, Option<u64>)>(&mut conn)).await }
            })
            .await?;
        let users = values.iter().filter_map(|v| serde_json::from_str(v).ok()).collect();
        Ok((users, seq.unwrap_or(0)))
    }
}

/// A node that stops leaves the cluster at once: its users are announced gone (as the others'
/// clean-up would do some seconds later), its names freed and its `alive` key removed. Best
/// effort, within `redis_timeout_ms`: a node that cannot reach Redis is cleaned up by the others.
pub async fn leave(cfg: &ClusterConfig, node: u64) {
    let keys = Keys::new(&cfg.redis_prefix);
    let run = async {
        let (mut conn, t) = connection(cfg).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL").arg(FORGET_LUA).arg(0).arg(keys.prefix()).arg(node).arg("leave").ignore();
        pipe.cmd("DEL").arg(keys.alive(node)).ignore();
        pipe.cmd("HDEL").arg(keys.stats()).arg(node).ignore();
        within(t, pipe.query_async::<()>(&mut conn)).await
    };
    let _ = tokio::time::timeout(Duration::from_millis(cfg.redis_timeout_ms * 2), run).await;
}
