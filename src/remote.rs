//! A handle on an engine running in another process (a daemon), through its control socket:
//! what `chat_connect` returns and `EmbedChat\Engine::connect` wraps. PHP-FPM workers use it to
//! post into rooms; they cannot run an engine themselves (it would die with the request).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::Error;

/// How long one request may take before the daemon counts as gone.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Remote {
    path: String,
    /// The open connection; None after a failure, reopened by the next call (a daemon that
    /// restarts is reached again without a new handle).
    conn: Mutex<Option<BufReader<UnixStream>>>,
}

impl Remote {
    /// Connects and checks that an engine answers.
    pub fn connect(path: &str) -> Result<Remote, Error> {
        let r = Remote { path: path.to_string(), conn: Mutex::new(None) };
        r.call(json!({"op": "ping"}))?;
        Ok(r)
    }

    fn open(&self) -> Result<BufReader<UnixStream>, Error> {
        let s = UnixStream::connect(&self.path).map_err(|e| {
            Error::Control(format!("cannot reach the engine's control socket {}: {e}", self.path))
        })?;
        s.set_read_timeout(Some(TIMEOUT)).map_err(Error::Io)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(Error::Io)?;
        Ok(BufReader::new(s))
    }

    /// Sends one request and reads its reply. A request is never sent twice: if the daemon
    /// went away mid-call the caller gets an error (it may have been carried out).
    fn call(&self, req: Value) -> Result<Value, Error> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.open()?,
        };
        let lost = |e: std::io::Error| Error::Control(format!("lost the engine at {}: {e}", self.path));
        let mut line = req.to_string().into_bytes();
        line.push(b'\n');
        conn.get_mut().write_all(&line).map_err(lost)?;
        let mut reply = String::new();
        match conn.read_line(&mut reply) {
            Ok(0) => {
                return Err(Error::Control(format!("the engine at {} closed the connection", self.path)))
            }
            Ok(_) => {}
            Err(e) => return Err(lost(e)),
        }
        *slot = Some(conn);
        let v: Value = serde_json::from_str(&reply)
            .map_err(|e| Error::Control(format!("unreadable reply from {}: {e}", self.path)))?;
        if v["ok"] == Value::Bool(true) {
            return Ok(v);
        }
        let message = v["message"].as_str().unwrap_or("request failed").to_string();
        Err(match v["error"].as_str().unwrap_or("") {
            "unknown_connection" => Error::UnknownConnection(req["id"].as_u64().unwrap_or(0)),
            "bad_room" => Error::BadRoom(message),
            "queue_full" => Error::QueueFull(req["id"].as_u64().unwrap_or(0)),
            "stopped" => Error::Stopped,
            "invalid" | "bad_request" | "unknown_user" => Error::InvalidArgument(message),
            _ => Error::Control(message),
        })
    }

    pub fn broadcast(&self, room: Option<&str>, text: &str) -> Result<usize, Error> {
        let v = self.call(json!({"op": "broadcast", "room": room, "text": text}))?;
        Ok(v["delivered"].as_u64().unwrap_or(0) as usize)
    }

    pub fn send(&self, id: u64, text: &str) -> Result<(), Error> {
        self.call(json!({"op": "send", "id": id, "text": text})).map(drop)
    }

    pub fn kick(&self, id: u64, reason: &str) -> Result<(), Error> {
        self.call(json!({"op": "kick", "id": id, "reason": reason})).map(drop)
    }

    /// A reply as the JSON a local engine would give: the same object without the `ok` flag.
    fn call_json(&self, req: Value) -> Result<String, Error> {
        let mut v = self.call(req)?;
        if let Value::Object(m) = &mut v {
            m.remove("ok");
        }
        Ok(v.to_string())
    }

    /// The daemon's counters, as `chat_stats_json` gives them for a local engine.
    pub fn stats_json(&self) -> Result<String, Error> {
        self.call_json(json!({"op": "stats"}))
    }

    pub fn presence_json(&self, room: Option<&str>) -> Result<String, Error> {
        self.call_json(json!({"op": "presence", "room": room}))
    }

    /// The daemon's TCP port.
    pub fn port(&self) -> Result<u16, Error> {
        let v = self.call(json!({"op": "ping"}))?;
        Ok(v["port"].as_u64().unwrap_or(0) as u16)
    }

    /// Forgets the connection (the daemon keeps running).
    pub fn close(&self) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
