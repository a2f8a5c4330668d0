//! The Rust API: start an engine, act on rooms and connections, take events.
//!
//! Every method takes `&self`, so one `Engine` can be shared between threads (it is `Send` and
//! `Sync`); `stop` may run while another thread waits for events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crate::context::Context;
use crate::engine::{self, Running, StartError};
use crate::hub::{Decision, HubError};

pub use crate::config::{CallbackThread, Config, ConfigError, HookDefault, Protocol, Relay, SlowConsumer};
pub use crate::events::{Event, EventKind};
pub use crate::stats::Snapshot as Stats;

/// Why an engine call failed.
#[derive(Debug)]
pub enum Error {
    /// The configuration is wrong; the error names the key.
    Config(ConfigError),
    /// The listen address could not be bound (busy port, no permission…).
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Io(std::io::Error),
    /// The control socket could not be set up or reached (daemon not running, gone, no
    /// permission).
    Control(String),
    /// The engine was stopped.
    Stopped,
    UnknownConnection(u64),
    BadRoom(String),
    /// The connection's outbound backlog is full (it is being closed as a slow consumer).
    QueueFull(u64),
    /// No message waits for a decision under this token (decided already, or timed out).
    UnknownToken(u64),
    /// An argument is not acceptable (too long, wrong mode…); the text says which and why.
    InvalidArgument(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Control(m) => f.write_str(m),
            Error::Stopped => f.write_str("the engine is stopped"),
            Error::UnknownConnection(id) => write!(f, "no open connection with id {id}"),
            Error::BadRoom(m) => write!(f, "bad room name: {m}"),
            Error::QueueFull(id) => {
                write!(f, "connection {id} is not reading; its backlog is full and it is being closed")
            }
            Error::UnknownToken(t) => {
                write!(f, "no message waits for a decision under token {t} (already decided, or timed out)")
            }
            Error::InvalidArgument(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<StartError> for Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Config(c) => Error::Config(c),
            StartError::Bind { addr, source } => Error::Bind { addr, source },
            e @ StartError::Control { .. } => Error::Control(e.to_string()),
            StartError::Io(e) => Error::Io(e),
        }
    }
}

impl From<HubError> for Error {
    fn from(e: HubError) -> Self {
        match e {
            HubError::UnknownConnection(id) => Error::UnknownConnection(id),
            HubError::BadRoom(m) => Error::BadRoom(m),
            HubError::QueueFull(id) => Error::QueueFull(id),
            HubError::UnknownToken(t) => Error::UnknownToken(t),
            e @ HubError::IdNotIncreasing { .. } => Error::InvalidArgument(e.to_string()),
        }
    }
}

/// A running chat server.
pub struct Engine {
    ctx: Arc<Context>,
    running: Mutex<Option<Running>>,
    stopped: AtomicBool,
    local_addr: SocketAddr,
    event_thread: Mutex<Option<(ThreadId, JoinHandle<()>)>>,
}

impl Engine {
    /// Binds and starts serving; returns once connections are accepted.
    pub fn start(config: Config) -> Result<Engine, Error> {
        let running = engine::start(config)?;
        Ok(Engine {
            ctx: running.ctx.clone(),
            local_addr: running.local_addr,
            running: Mutex::new(Some(running)),
            stopped: AtomicBool::new(false),
            event_thread: Mutex::new(None),
        })
    }

    /// Parses a JSON config (the `chat_start` format) and starts.
    pub fn start_json(config: &str) -> Result<Engine, Error> {
        Engine::start(Config::from_json(config).map_err(Error::Config)?)
    }

    fn check(&self) -> Result<(), Error> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(Error::Stopped)
        } else {
            Ok(())
        }
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.ctx.cfg
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    fn check_text(&self, text: &str) -> Result<(), Error> {
        if text.len() > self.ctx.cfg.max_message_bytes {
            return Err(Error::InvalidArgument(format!(
                "text is {} bytes; max_message_bytes is {}",
                text.len(),
                self.ctx.cfg.max_message_bytes
            )));
        }
        Ok(())
    }

    /// A host message to `room`, or to every room when None. Returns how many connections it
    /// was queued to.
    pub fn broadcast(&self, room: Option<&str>, text: &str) -> Result<usize, Error> {
        self.check()?;
        self.check_text(text)?;
        Ok(self.ctx.hub.broadcast(room, text, &self.ctx.cfg.host_name)?)
    }

    /// A host message to one connection.
    pub fn send(&self, conn_id: u64, text: &str) -> Result<(), Error> {
        self.check()?;
        self.check_text(text)?;
        Ok(self.ctx.hub.send(conn_id, text)?)
    }

    /// Closes a connection with code 4000 and `reason`.
    pub fn kick(&self, conn_id: u64, reason: &str) -> Result<(), Error> {
        self.check()?;
        Ok(self.ctx.hub.kick(conn_id, reason)?)
    }

    /// Publishes a message held for the host (relay `host`) as its sender wrote it.
    pub fn approve(&self, token: u64) -> Result<(), Error> {
        self.check()?;
        Ok(self.ctx.hub.decide(token, Decision::Approve)?)
    }

    /// Refuses a held message; its sender gets an `error` (`rejected`) with `reason`.
    pub fn reject(&self, token: u64, reason: &str) -> Result<(), Error> {
        self.check()?;
        Ok(self.ctx.hub.decide(token, Decision::Reject(reason.to_string()))?)
    }

    /// Publishes `text` instead of a held message's text (from its sender, in its room).
    pub fn replace(&self, token: u64, text: &str) -> Result<(), Error> {
        self.check()?;
        self.check_text(text)?;
        Ok(self.ctx.hub.decide(token, Decision::Replace(text.to_string()))?)
    }

    /// Takes the next event, waiting up to `timeout` (None = until one comes or the engine stops).
    pub fn poll_event(&self, timeout: Option<Duration>) -> Result<Option<Event>, Error> {
        self.check()?;
        self.ctx.events.pop(timeout).map_err(|_| Error::Stopped)
    }

    /// Waits up to `timeout` for an event, then calls `f` on this thread for it and for every
    /// event already queued behind it. Returns how many were handled. `f` may call any engine
    /// method, `stop` included.
    pub fn dispatch(&self, timeout: Option<Duration>, mut f: impl FnMut(&Event)) -> Result<usize, Error> {
        let Some(first) = self.poll_event(timeout)? else {
            return Ok(0);
        };
        f(&first);
        let mut n = 1;
        // Only what is queued now: a busy chat must not keep the host in here forever.
        for _ in 0..self.ctx.events.len() {
            match self.ctx.events.pop(Some(Duration::ZERO)) {
                Ok(Some(ev)) => {
                    f(&ev);
                    n += 1;
                }
                _ => break,
            }
        }
        Ok(n)
    }

    /// Runs `f` for every event on one dedicated thread (not a network thread) until stop.
    pub fn spawn_event_thread(&self, mut f: impl FnMut(&Event) + Send + 'static) -> Result<(), Error> {
        self.check()?;
        let mut slot = self.event_thread.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(Error::InvalidArgument("the event thread is already running".into()));
        }
        let ctx = self.ctx.clone();
        let handle = std::thread::Builder::new()
            .name("embedchat-events".into())
            .spawn(move || {
                while let Ok(ev) = ctx.events.pop(None) {
                    if let Some(ev) = ev {
                        f(&ev);
                    }
                }
            })
            .map_err(Error::Io)?;
        *slot = Some((handle.thread().id(), handle));
        Ok(())
    }

    /// File descriptor readable while events are queued (and after stop), for `poll()` loops.
    pub fn event_fd(&self) -> Result<i32, Error> {
        self.check()?;
        Ok(self.ctx.events.fd())
    }

    /// Counters and gauges; also available after stop (the final numbers).
    pub fn stats(&self) -> Stats {
        let mut s = self.ctx.snapshot();
        s.running = !self.stopped.load(Ordering::SeqCst);
        s
    }

    /// A membership snapshot as JSON, with the sequence number of the last event it reflects
    /// (see `chat_presence_json`). `room` None = every room with members.
    pub fn presence_json(&self, room: Option<&str>) -> Result<String, Error> {
        self.check()?;
        Ok(self.ctx.hub.presence(room).to_string())
    }

    /// Users in a room once each, as (one of its connection ids, name, tabs).
    pub fn members(&self, room: &str) -> Result<Vec<(u64, String, u32)>, Error> {
        self.check()?;
        Ok(self.ctx.hub.members(room).into_iter().map(|(id, n, t)| (id, n.to_string(), t)).collect())
    }

    /// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many.
    pub fn kick_user(&self, sub: &str, reason: &str) -> Result<usize, Error> {
        self.check()?;
        Ok(self.ctx.hub.kick_user(sub, reason))
    }

    /// Puts a kept message back into a room's history (oldest first, ids increasing), so a
    /// host with a database can restart without clients losing their place (use a fixed
    /// `history_epoch`). Shown as sent by `from`.
    pub fn restore(&self, room: &str, id: u64, ts_ms: u64, from: &str, text: &str) -> Result<(), Error> {
        self.check()?;
        self.check_text(text)?;
        Ok(self.ctx.hub.restore(room, id, ts_ms, from, text)?)
    }

    /// The engine's history epoch (see `history_epoch`).
    pub fn history_epoch(&self) -> &str {
        self.ctx.hub.epoch()
    }

    /// Graceful stop: clients get close 1001, every thread is joined. The second call returns
    /// `Error::Stopped`. May be called from the event callback.
    pub fn stop(&self) -> Result<(), Error> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = running {
            r.stop();
        }
        let thread = self.event_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((id, handle)) = thread {
            // Called from the event thread itself: it ends on its own when this call returns.
            if id != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        Ok(())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
