//! A handle on an engine running in another process (a daemon), through its control socket:
//! what `Engine::connect` and `chat_connect` return and `EmbedChat\Engine::connect` wraps.
//! PHP-FPM workers use it to post into rooms; they cannot run an engine themselves (it would die
//! with the request). It sends `host::Op`s and reads the replies `host::execute` wrote.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::error::Error;
use crate::host::{Op, RoomInfo};
use crate::identity::ConnId;

/// How long one request may take before the daemon counts as gone.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Remote {
    path: String,
    /// The open connection; None after a failure, reopened by the next call (a daemon that
    /// restarts is reached again without a new handle).
    conn: Mutex<Option<BufReader<UnixStream>>>,
    /// Closed by the host (`stop`): every later call fails with `Stopped`.
    closed: AtomicBool,
}

impl Remote {
    /// Connects and checks that an engine answers.
    pub fn connect(path: &str) -> Result<Remote, Error> {
        let r = Remote { path: path.to_string(), conn: Mutex::new(None), closed: AtomicBool::new(false) };
        r.call(&Op::Ping)?;
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
    fn call(&self, op: &Op) -> Result<Value, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.open()?,
        };
        let lost = |e: std::io::Error| Error::Control(format!("lost the engine at {}: {e}", self.path));
        let mut line = serde_json::to_vec(op).map_err(|e| Error::Control(e.to_string()))?;
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
        let mut v: Value = serde_json::from_str(&reply)
            .map_err(|e| Error::Control(format!("unreadable reply from {}: {e}", self.path)))?;
        if v["ok"] == Value::Bool(true) {
            if let Value::Object(m) = &mut v {
                m.remove("ok");
            }
            return Ok(v);
        }
        let message = v["message"].as_str().unwrap_or("request failed").to_string();
        let id = match op {
            Op::Send { id, .. } | Op::Kick { id: Some(id), .. } => Some(*id),
            _ => None,
        };
        Err(Error::from_reply(v["error"].as_str().unwrap_or(""), message, id))
    }

    pub fn broadcast(&self, room: Option<&str>, text: &str, from: Option<&str>) -> Result<usize, Error> {
        let op = Op::Broadcast { room: room.map(Into::into), text: text.into(), from: from.map(Into::into) };
        let v = self.call(&op)?;
        Ok(v["delivered"].as_u64().unwrap_or(0) as usize)
    }

    pub fn send(&self, id: ConnId, text: &str) -> Result<(), Error> {
        self.call(&Op::Send { id, text: text.into() }).map(drop)
    }

    pub fn kick(&self, id: ConnId, reason: &str) -> Result<(), Error> {
        self.call(&Op::Kick { id: Some(id), user: None, reason: reason.into() }).map(drop)
    }

    pub fn kick_user(&self, user: &str, reason: &str) -> Result<usize, Error> {
        let v = self.call(&Op::Kick { id: None, user: Some(user.into()), reason: reason.into() })?;
        Ok(v["kicked"].as_u64().unwrap_or(0) as usize)
    }

    pub fn rooms(&self) -> Result<Vec<RoomInfo>, Error> {
        let v = self.call(&Op::Rooms)?;
        serde_json::from_value(v["rooms"].clone())
            .map_err(|e| Error::Control(format!("unreadable rooms: {e}")))
    }

    /// The daemon's counters, as `chat_stats_json` gives them for a local engine.
    pub fn stats_json(&self) -> Result<String, Error> {
        Ok(self.call(&Op::Stats)?.to_string())
    }

    pub fn presence_json(&self, room: Option<&str>) -> Result<String, Error> {
        Ok(self.call(&Op::Presence { room: room.map(Into::into) })?.to_string())
    }

    /// The daemon's TCP port.
    pub fn port(&self) -> Result<u16, Error> {
        Ok(self.call(&Op::Ping)?["port"].as_u64().unwrap_or(0) as u16)
    }

    /// Forgets the connection for good (the daemon keeps running); false if already closed.
    pub fn close(&self) -> bool {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        !self.closed.swap(true, Ordering::SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
