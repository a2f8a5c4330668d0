//! What keeps the cluster's shared state right while a node is connected: its counters
//! exchanged every second, what Redis lost put back (the epoch, the node counter, each room's
//! sequence, the keys' time to live), and this node's users made exact after an outage.

use std::sync::Arc;

use redis::RedisResult;

use super::{within, Job, Link, Redis, ALIVE_MS, BATCH};
use crate::stats::Stats;

impl Link {
    /// Writes this node's counters to Redis and reads every node's back: the live nodes' (those
    /// that wrote within `ALIVE_MS`) added up become `cluster` in this node's stats; entries of
    /// nodes gone for a minute are removed.
    pub(super) async fn exchange_stats(&self, redis: &mut Redis) -> RedisResult<()> {
        let Some(ctx) = self.ctx() else { return Ok(()) };
        let now = crate::clock::now_ms();
        let mut mine = ctx.snapshot();
        mine.cluster = None;
        let json = serde_json::json!({"at": now, "s": mine}).to_string();
        let key = self.s.keys.stats();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&key).arg(self.s.node).arg(json).ignore();
        pipe.cmd("HGETALL").arg(&key);
        let (all,): (Vec<(String, String)>,) =
            within(redis.timeout, pipe.query_async(&mut redis.conn)).await?;
        let mut totals = std::collections::BTreeMap::new();
        let mut stale = Vec::new();
        for (node, entry) in all {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&entry) else { continue };
            let at = v["at"].as_u64().unwrap_or(0);
            if now.saturating_sub(at) > ALIVE_MS {
                if now.saturating_sub(at) > 60_000 {
                    stale.push(node);
                }
                continue;
            }
            *totals.entry("nodes".to_string()).or_insert(0) += 1;
            for (name, x) in v["s"].as_object().into_iter().flatten() {
                let n = x.as_u64().or_else(|| x.as_bool().map(u64::from)).unwrap_or(0);
                *totals.entry(name.clone()).or_insert(0) += n;
            }
        }
        *self.s.stats.cluster_totals.lock().unwrap_or_else(|p| p.into_inner()) = Some(totals);
        if !stale.is_empty() {
            let del = redis::cmd("HDEL").arg(&key).arg(stale).to_owned();
            within(redis.timeout, del.query_async::<()>(&mut redis.conn)).await?;
        }
        Ok(())
    }

    /// Puts back what the cluster as a whole knows if Redis lost it: the epoch and the node
    /// counter. An epoch that differs from this node's means another cluster's data under the
    /// same prefix: reported, and this node keeps its own.
    pub(super) async fn reseed(&self, redis: &mut Redis) -> RedisResult<()> {
        let keys = &self.s.keys;
        let cmd = redis::cmd("EVALSHA")
            .arg(&redis.reseed_sha)
            .arg(2)
            .arg(keys.epoch())
            .arg(keys.nodes())
            .arg(&self.s.epoch)
            .arg(self.s.node)
            .to_owned();
        let epoch: String = within(redis.timeout, cmd.query_async(&mut redis.conn)).await?;
        if epoch != self.s.epoch {
            Stats::inc(&self.s.stats.cluster_errors);
            self.note("Redis holds another epoch under this redis_prefix: are two clusters sharing it?");
        }
        Ok(())
    }

    /// Raises each room's sequence in Redis to this node's last id and renews its keys' time to
    /// live, in pipelines.
    pub(super) async fn heal(&self, redis: &mut Redis, rooms: Vec<(Arc<str>, u64)>) -> RedisResult<()> {
        for chunk in rooms.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for (room, seq) in chunk {
                pipe.cmd("EVALSHA")
                    .arg(&redis.heal_sha)
                    .arg(3)
                    .arg(self.s.keys.seq(room))
                    .arg(self.s.keys.history(room))
                    .arg(self.s.keys.history_bytes(room))
                    .arg(*seq)
                    .arg(self.s.ttl_s)
                    .ignore();
            }
            within(redis.timeout, pipe.query_async::<()>(&mut redis.conn)).await?;
        }
        Ok(())
    }

    /// Makes Redis hold exactly this node's users: those no longer here removed (announced
    /// gone), the others told again (idempotent: no news unless Redis had lost them).
    pub(super) async fn sync_presence(&mut self, redis: &mut Redis) -> RedisResult<()> {
        let Some(ctx) = self.ctx() else { return Ok(()) };
        let now = ctx.hub.local_presence();
        let mut forget = redis::cmd("EVALSHA");
        forget.arg(&redis.forget_sha).arg(0).arg(self.s.keys.prefix()).arg(self.s.node).arg("sync");
        for c in &now {
            forget.arg(format!("{}\n{}:{}", c.room, self.s.node, c.user));
        }
        within(redis.timeout, forget.query_async::<u64>(&mut redis.conn)).await?;
        let mut again: Vec<Job> = std::mem::take(&mut self.later);
        again.extend(now.into_iter().map(Job::Presence));
        // Claims are idempotent: this node's names, told again (Redis may have lost them).
        again.extend(ctx.hub.local_names().into_iter().map(|(user, name, force)| Job::Name {
            user,
            name,
            claim: true,
            force,
        }));
        while !again.is_empty() {
            let rest = again.split_off(again.len().min(BATCH));
            self.send(redis, &mut again).await?;
            again = rest;
        }
        Ok(())
    }
}
