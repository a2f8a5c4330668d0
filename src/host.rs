//! The host's operations, written once. The Rust API (`Engine`), the C ABI (through it), the
//! HTTP API and the control socket all act on an engine through these functions; a handle on a
//! daemon (`Engine::connect`, `chat_connect`) sends the same operations as `Op` over the control
//! socket, where `execute` carries them out with these functions again.
//!
//! To add an operation: a function here, an `Op` variant if processes outside the engine may
//! ask for it (plus its arm in `execute` and its method on `Remote`), and its `Engine` method.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::hub::{Decision, Snapshot};
use crate::identity::ConnId;
use crate::protocol;
use crate::stats;

/// One operation as the control socket carries it (the tag is `op`); the HTTP API derives it
/// from the path.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A message to `room` (None: every room) from `from` (None: the config's `host_name`).
    #[serde(alias = "publish")]
    Broadcast {
        #[serde(default)]
        room: Option<String>,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// A private message from the host to one connection.
    Send {
        id: ConnId,
        text: String,
    },
    /// Close one connection (`id`) or every tab of a logged-in user (`user`, the token `sub`).
    Kick {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ConnId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default)]
        reason: String,
    },
    Rooms,
    Presence {
        #[serde(default)]
        room: Option<String>,
    },
    Stats,
    Ping,
    /// Read the `tls` certificate and key files again (after a renewal).
    ReloadTls,
}

/// A room with someone in it, as `rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub room: String,
    /// Users (a user with several tabs counts once).
    pub users: usize,
    pub connections: usize,
    /// The id of the room's last message.
    pub last_id: u64,
}

fn running(ctx: &Context) -> Result<(), Error> {
    if ctx.stopping.load(Ordering::SeqCst) {
        return Err(Error::Stopped);
    }
    Ok(())
}

fn check_text(ctx: &Context, text: &str) -> Result<(), Error> {
    let max = ctx.cfg.limits.max_message_bytes;
    if text.len() > max {
        return Err(Error::InvalidArgument(format!(
            "text is {} bytes; max_message_bytes is {max}",
            text.len()
        )));
    }
    Ok(())
}

/// A host message to `room` (None: every room), shown as sent by `from` (None: `host_name`).
/// Returns how many connections it was queued to.
pub fn broadcast(ctx: &Context, room: Option<&str>, text: &str, from: Option<&str>) -> Result<usize, Error> {
    running(ctx)?;
    check_text(ctx, text)?;
    let from = match from {
        Some(f) => protocol::clean_name(f, ctx.cfg.chat.max_name_chars)
            .ok_or_else(|| Error::InvalidArgument("`from` needs at least one visible character".into()))?,
        None => ctx.cfg.chat.host_name.clone(),
    };
    ctx.hub.broadcast(room, text, &from)
}

/// A host message to one connection, shown as a whisper from the host.
pub fn send(ctx: &Context, id: ConnId, text: &str) -> Result<(), Error> {
    running(ctx)?;
    check_text(ctx, text)?;
    ctx.hub.send(id, text)
}

/// Closes one connection with 4000 and `reason`.
pub fn kick(ctx: &Context, id: ConnId, reason: &str) -> Result<(), Error> {
    running(ctx)?;
    ctx.hub.kick(id, reason)
}

/// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many (an
/// error when it has none open).
pub fn kick_user(ctx: &Context, user: &str, reason: &str) -> Result<usize, Error> {
    running(ctx)?;
    match ctx.hub.kick_user(user, reason) {
        0 => Err(Error::UnknownUser(format!("user `{user}` has no open connection"))),
        n => Ok(n),
    }
}

/// Publishes a held message as sent, or admits a held join.
pub fn approve(ctx: &Context, token: u64) -> Result<(), Error> {
    running(ctx)?;
    ctx.hub.decide(token, Decision::Approve)
}

/// Refuses a held message (its sender gets an `error` with `reason`) or join.
pub fn reject(ctx: &Context, token: u64, reason: &str) -> Result<(), Error> {
    running(ctx)?;
    ctx.hub.decide(token, Decision::Reject(reason.to_string()))
}

/// Publishes `text` instead of a held message's text.
pub fn replace(ctx: &Context, token: u64, text: &str) -> Result<(), Error> {
    running(ctx)?;
    check_text(ctx, text)?;
    ctx.hub.decide(token, Decision::Replace(text.to_string()))
}

/// Puts a kept message back into a room's history (oldest first, ids increasing).
pub fn restore(ctx: &Context, room: &str, id: u64, ts_ms: u64, from: &str, text: &str) -> Result<(), Error> {
    running(ctx)?;
    check_text(ctx, text)?;
    ctx.hub.restore(room, id, ts_ms, from, text)
}

/// Rooms with someone in them, by name.
/// In a cluster: every room with users on any node (from a host thread; async callers use
/// `rooms_async`).
pub fn rooms(ctx: &Context) -> Result<Vec<RoomInfo>, Error> {
    running(ctx)?;
    match cluster_up(ctx) {
        true => ctx.wait_for(rooms_async(ctx)).unwrap_or_else(|| Ok(local_rooms(ctx))),
        false => Ok(local_rooms(ctx)),
    }
}

fn local_rooms(ctx: &Context) -> Vec<RoomInfo> {
    ctx.hub
        .rooms()
        .into_iter()
        .map(|(room, users, connections, last_id)| RoomInfo { room, users, connections, last_id })
        .collect()
}

/// In a cluster whose Redis answers (while it does not, the node answers for itself).
pub(crate) fn cluster_up(ctx: &Context) -> bool {
    ctx.cfg.cluster.url().is_some() && ctx.stats.cluster_up.load(std::sync::atomic::Ordering::Relaxed) == 1
}

/// `rooms`, awaited (the HTTP API and the control socket).
pub async fn rooms_async(ctx: &Context) -> Result<Vec<RoomInfo>, Error> {
    running(ctx)?;
    if !cluster_up(ctx) {
        return Ok(local_rooms(ctx));
    }
    let mut rooms: Vec<RoomInfo> = ctx
        .queries
        .rooms(&ctx.cfg.cluster, "")
        .await?
        .into_iter()
        .map(|r| RoomInfo { room: r.name, users: r.users, connections: r.conns, last_id: r.seq })
        .collect();
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(rooms)
}

/// Who is in `room` (None: every room with members here), stamped with the last event's
/// number. In a cluster a room with no members here is read from Redis (from a host thread;
/// async callers use `presence_async`).
pub fn presence(ctx: &Context, room: Option<&str>) -> Result<Snapshot, Error> {
    running(ctx)?;
    match room {
        Some(r) if cluster_up(ctx) && !ctx.hub.follows(r) => {
            ctx.wait_for(presence_async(ctx, room)).unwrap_or_else(|| Ok(ctx.hub.presence(room)))
        }
        _ => Ok(ctx.hub.presence(room)),
    }
}

/// `presence`, awaited (the HTTP API and the control socket).
pub async fn presence_async(ctx: &Context, room: Option<&str>) -> Result<Snapshot, Error> {
    running(ctx)?;
    match room {
        Some(r) if cluster_up(ctx) && !ctx.hub.follows(r) => {
            let (entries, last_id) = ctx.queries.room(&ctx.cfg.cluster, r).await?;
            Ok(ctx.hub.presence_of_cluster_room(r, entries, last_id))
        }
        _ => Ok(ctx.hub.presence(room)),
    }
}

/// Every counter and gauge (also after stop: the final numbers).
pub fn stats(ctx: &Context) -> stats::Snapshot {
    ctx.snapshot()
}

/// Reads the `tls` certificate and key files again and serves new connections with them;
/// connections already open keep theirs. On failure the old certificate keeps serving and the
/// error (`Error::Config`) names the file's key and why.
pub fn reload_tls(ctx: &Context) -> Result<(), Error> {
    running(ctx)?;
    let Some(tls) = &ctx.tls else {
        return Err(Error::InvalidArgument("TLS is off: the config has no `tls` key".into()));
    };
    tls.reload()?;
    Ok(())
}

/// `execute` from async code (the HTTP API, the control socket): a cluster's questions to
/// Redis are awaited, not waited for.
pub async fn execute_async(ctx: &Context, op: Op) -> Result<Value, Error> {
    match op {
        Op::Rooms if ctx.cfg.cluster.url().is_some() => {
            Ok(json!({"ok": true, "rooms": rooms_async(ctx).await?}))
        }
        Op::Presence { room } if ctx.cfg.cluster.url().is_some() => {
            let snapshot = presence_async(ctx, room.as_deref()).await?;
            let mut v = serde_json::to_value(snapshot).unwrap_or_default();
            v["ok"] = Value::Bool(true);
            Ok(v)
        }
        op => execute(ctx, op),
    }
}

/// Carries out one operation for the HTTP API or the control socket; the reply is a JSON object
/// with `"ok": true`.
pub fn execute(ctx: &Context, op: Op) -> Result<Value, Error> {
    let with_ok = |mut v: Value| {
        v["ok"] = Value::Bool(true);
        v
    };
    Ok(match op {
        Op::Broadcast { room, text, from } => {
            let delivered = broadcast(ctx, room.as_deref(), &text, from.as_deref())?;
            // In a cluster the count is of this node's members (the others deliver their own).
            let scope = if ctx.cfg.cluster.url().is_some() { "node" } else { "engine" };
            json!({"ok": true, "delivered": delivered, "delivered_scope": scope})
        }
        Op::Send { id, text } => {
            send(ctx, id, &text)?;
            json!({"ok": true})
        }
        Op::Kick { id, user, reason } => match (id, user) {
            (Some(id), None) => {
                kick(ctx, id, &reason)?;
                json!({"ok": true, "kicked": 1})
            }
            (None, Some(user)) => json!({"ok": true, "kicked": kick_user(ctx, &user, &reason)?}),
            _ => {
                return Err(Error::other(ErrorKind::BadRequest, "kick needs exactly one of `id` and `user`"))
            }
        },
        Op::Rooms => json!({"ok": true, "rooms": rooms(ctx)?}),
        Op::Presence { room } => {
            with_ok(serde_json::to_value(presence(ctx, room.as_deref())?).unwrap_or_default())
        }
        Op::Stats => {
            running(ctx)?;
            with_ok(serde_json::to_value(stats(ctx)).unwrap_or_default())
        }
        Op::Ping => {
            running(ctx)?;
            json!({"ok": true, "port": ctx.local_port, "epoch": ctx.hub.epoch()})
        }
        Op::ReloadTls => {
            reload_tls(ctx)?;
            json!({"ok": true})
        }
    })
}

/// Parses a request body or line; the error says what is wrong with it.
pub fn parse(text: &[u8]) -> Result<Op, Error> {
    serde_json::from_slice(text).map_err(|e| Error::other(ErrorKind::BadRequest, format!("bad request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_by_op_and_refuse_unknown_fields() {
        assert!(matches!(
            parse(br#"{"op":"publish","room":"a","text":"hi"}"#).unwrap(),
            Op::Broadcast { room: Some(_), .. }
        ));
        assert!(matches!(parse(br#"{"op":"send","id":3,"text":"x"}"#).unwrap(), Op::Send { id: 3, .. }));
        assert!(matches!(parse(br#"{"op":"stats"}"#).unwrap(), Op::Stats));
        let bad = |t: &[u8]| parse(t).unwrap_err().kind();
        assert_eq!(bad(br#"{"op":"send","id":3,"txt":"x"}"#), ErrorKind::BadRequest);
        assert_eq!(bad(br#"{"op":"explode"}"#), ErrorKind::BadRequest);
        assert_eq!(bad(b"not json"), ErrorKind::BadRequest);
    }

    #[test]
    fn ops_round_trip_through_their_wire_form() {
        let op = Op::Kick { id: None, user: Some("42".into()), reason: "bye".into() };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"op":"kick","user":"42","reason":"bye"}"#);
        assert!(matches!(parse(text.as_bytes()).unwrap(), Op::Kick { user: Some(_), .. }));
    }
}
