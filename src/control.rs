//! What a site may ask of a running engine from outside it: publish, send, kick, rooms,
//! presence, stats. One set of operations, reached two ways: the HTTP API (`/api/...`, Bearer
//! `api_key`) and the local control socket (`control_socket`, one JSON object per line), which
//! `chat_connect` speaks.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::context::Context;
use crate::hub::HubError;
use crate::protocol;
use crate::stats::Stats;

/// One request. On the socket the tag is `op`; the HTTP API derives it from the path.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// A message to `room` (None: every room) from `from` (None: the config's `host_name`).
    #[serde(alias = "publish")]
    Broadcast {
        #[serde(default)]
        room: Option<String>,
        text: String,
        #[serde(default)]
        from: Option<String>,
    },
    /// A private message from the host to one connection.
    Send {
        id: u64,
        text: String,
    },
    /// Close one connection (`id`) or every tab of a logged-in user (`user`, the token `sub`).
    Kick {
        #[serde(default)]
        id: Option<u64>,
        #[serde(default)]
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
}

/// Why a request failed: a stable code (also the C result it maps to) and a sentence.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    /// The HTTP status for this failure.
    pub fn status(&self) -> u16 {
        match self.code {
            "unknown_connection" | "unknown_user" => 404,
            "queue_full" | "stopped" => 503,
            _ => 400,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"ok": false, "error": self.code, "message": self.message})
    }
}

impl From<HubError> for Failure {
    fn from(e: HubError) -> Self {
        let code = match e {
            HubError::UnknownConnection(_) => "unknown_connection",
            HubError::BadRoom(_) => "bad_room",
            HubError::QueueFull(_) => "queue_full",
            HubError::UnknownToken(_) => "unknown_token",
            HubError::IdNotIncreasing { .. } => "invalid",
        };
        Failure::new(code, e.to_string())
    }
}

/// Parses a request body or line; the error says what is wrong with it.
pub fn parse(text: &[u8]) -> Result<Op, Failure> {
    serde_json::from_slice(text).map_err(|e| Failure::new("bad_request", format!("bad request: {e}")))
}

/// Carries out one request. The result is a JSON object with `"ok": true`.
pub fn execute(ctx: &Context, op: Op) -> Result<Value, Failure> {
    if ctx.stopping.load(Ordering::SeqCst) {
        return Err(Failure::new("stopped", "the engine is stopping"));
    }
    let check_text = |text: &str| {
        if text.len() > ctx.cfg.max_message_bytes {
            let m =
                format!("text is {} bytes; max_message_bytes is {}", text.len(), ctx.cfg.max_message_bytes);
            return Err(Failure::new("invalid", m));
        }
        Ok(())
    };
    Ok(match op {
        Op::Broadcast { room, text, from } => {
            check_text(&text)?;
            let from = match from {
                Some(f) => protocol::clean_name(&f, ctx.cfg.max_name_chars)
                    .ok_or_else(|| Failure::new("invalid", "`from` needs at least one visible character"))?,
                None => ctx.cfg.host_name.clone(),
            };
            let delivered = ctx.hub.broadcast(room.as_deref(), &text, &from)?;
            json!({"ok": true, "delivered": delivered})
        }
        Op::Send { id, text } => {
            check_text(&text)?;
            ctx.hub.send(id, &text)?;
            json!({"ok": true})
        }
        Op::Kick { id, user, reason } => match (id, user) {
            (Some(id), None) => {
                ctx.hub.kick(id, &reason)?;
                json!({"ok": true, "kicked": 1})
            }
            (None, Some(user)) => {
                let n = ctx.hub.kick_user(&user, &reason);
                if n == 0 {
                    return Err(Failure::new(
                        "unknown_user",
                        format!("user `{user}` has no open connection"),
                    ));
                }
                json!({"ok": true, "kicked": n})
            }
            _ => return Err(Failure::new("bad_request", "kick needs exactly one of `id` and `user`")),
        },
        Op::Rooms => {
            let rooms: Vec<Value> = ctx
                .hub
                .rooms()
                .into_iter()
                .map(|(name, users, conns, last)| {
                    json!({"room": name, "users": users, "connections": conns, "last_id": last})
                })
                .collect();
            json!({"ok": true, "rooms": rooms})
        }
        Op::Presence { room } => {
            let mut v = ctx.hub.presence(room.as_deref());
            v["ok"] = Value::Bool(true);
            v
        }
        Op::Stats => {
            let mut v = serde_json::to_value(ctx.snapshot()).unwrap_or_default();
            v["ok"] = Value::Bool(true);
            v
        }
        Op::Ping => json!({"ok": true, "port": ctx.local_port, "epoch": ctx.hub.epoch()}),
    })
}

/// Whether something is already answering on `path`: a live daemon must not lose its socket
/// to a second one, but a file left by one that died may be replaced.
fn in_use(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Binds the control socket with its mode already set: bound under a temporary name, chmod'ed,
/// then renamed into place, so there is no moment when it is open to everyone.
pub fn bind(path: &str, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    let path = Path::new(path);
    if path.exists() {
        if in_use(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another engine answers on this control socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.set_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("embedchat.sock"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Longest request line; a longer one ends that control connection.
const MAX_LINE: u64 = 1 << 20;

/// Serves control connections until `stop` is notified (the engine removes the file).
pub async fn serve(listener: UnixListener, ctx: Arc<Context>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => { tokio::spawn(client(stream, ctx.clone())); }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            _ = stop.notified() => break,
        }
    }
}

async fn client(stream: UnixStream, ctx: Arc<Context>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE + 1);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.len() as u64 > MAX_LINE {
            Failure::new("bad_request", "request line longer than 1 MiB").to_json()
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            Stats::inc(&ctx.stats.control_requests);
            match parse(&line).and_then(|op| execute(&ctx, op)) {
                Ok(v) => v,
                Err(f) => f.to_json(),
            }
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || line.len() as u64 > MAX_LINE {
            return;
        }
    }
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
        assert_eq!(parse(br#"{"op":"send","id":3,"txt":"x"}"#).unwrap_err().code, "bad_request");
        assert_eq!(parse(br#"{"op":"explode"}"#).unwrap_err().code, "bad_request");
        assert_eq!(parse(b"not json").unwrap_err().code, "bad_request");
    }

    #[test]
    fn failures_map_to_http_statuses() {
        assert_eq!(Failure::from(HubError::UnknownConnection(9)).status(), 404);
        assert_eq!(Failure::from(HubError::BadRoom("x".into())).status(), 400);
        assert_eq!(Failure::from(HubError::QueueFull(9)).status(), 503);
    }
}
