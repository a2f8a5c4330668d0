//! The Rust API: start an engine (or connect to a daemon's), act on rooms and connections, take
//! events. The C ABI in `ffi/` is a thin layer over this `Engine`.
//!
//! Every method takes `&self`, so one `Engine` can be shared between threads (it is `Send` and
//! `Sync`); `stop` may run while another thread waits for events. The operations themselves are
//! `host.rs`'s; this file chooses where they run: in this process (`start`), or in a daemon
//! reached through its control socket (`connect`), where events and moderation are not
//! available and say so (`Error::Unsupported`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crate::context::Context;
use crate::host;
use crate::remote::Remote;
use crate::runtime::{self, Running};

pub use crate::config::{
    CallbackThread, Config, ConfigError, HookDefault, Protocol, Relay, SlowConsumer, WhisperScope,
};
pub use crate::error::{Error, ErrorKind};
pub use crate::events::{Event, EventKind};
pub use crate::host::RoomInfo;
pub use crate::stats::Snapshot as Stats;

/// A chat engine: one this process runs (`start`), or one a daemon runs (`connect`).
pub struct Engine {
    target: Target,
}

enum Target {
    Local(Local),
    Remote(Remote),
}

/// An engine in this process.
struct Local {
    ctx: Arc<Context>,
    running: Mutex<Option<Running>>,
    stopped: AtomicBool,
    local_addr: SocketAddr,
    event_thread: Mutex<Option<(ThreadId, JoinHandle<()>)>>,
}

const REMOTE_ONLY: &str = "a connected handle can broadcast, send, kick and read rooms, stats and \
                           presence; events and moderation belong to the process that started the engine";

impl Engine {
    /// Binds and starts serving; returns once connections are accepted.
    pub fn start(config: Config) -> Result<Engine, Error> {
        let running = runtime::start(config)?;
        Ok(Engine {
            target: Target::Local(Local {
                ctx: running.ctx.clone(),
                local_addr: running.local_addr,
                running: Mutex::new(Some(running)),
                stopped: AtomicBool::new(false),
                event_thread: Mutex::new(None),
            }),
        })
    }

    /// Parses a JSON config (the `chat_start` format) and starts.
    pub fn start_json(config: &str) -> Result<Engine, Error> {
        Engine::start(Config::from_json(config)?)
    }

    /// A handle on the engine another process runs with `"control_socket": path` (a daemon).
    /// Broadcast, send, kick, rooms, stats and presence act on the daemon; events and moderation
    /// return `Error::Unsupported`; `stop` closes only this handle. The daemon must run as this
    /// process's user or root (`Error::Control` otherwise: another user may have bound the path);
    /// see `connect_trusting` for a daemon of another user.
    pub fn connect(path: &str) -> Result<Engine, Error> {
        Ok(Engine { target: Target::Remote(Remote::connect(path, None)?) })
    }

    /// `connect` to a daemon that runs as `daemon_user` (a user name or a numeric uid), which
    /// is trusted besides this process's user and root. An unknown user is
    /// `Error::InvalidArgument`.
    pub fn connect_trusting(path: &str, daemon_user: &str) -> Result<Engine, Error> {
        Ok(Engine { target: Target::Remote(Remote::connect(path, Some(daemon_user))?) })
    }

    /// Whether this handle was made by `connect`.
    pub fn is_remote(&self) -> bool {
        matches!(self.target, Target::Remote(_))
    }

    /// The local engine, running or stopped; `Unsupported` for a connected handle.
    fn local_any(&self) -> Result<&Local, Error> {
        match &self.target {
            Target::Local(l) => Ok(l),
            Target::Remote(_) => Err(Error::Unsupported(REMOTE_ONLY)),
        }
    }

    /// The local engine, running; `Unsupported` for a connected handle.
    fn local(&self) -> Result<&Local, Error> {
        match &self.target {
            Target::Local(l) if l.stopped.load(Ordering::SeqCst) => Err(Error::Stopped),
            Target::Local(l) => Ok(l),
            Target::Remote(_) => Err(Error::Unsupported(REMOTE_ONLY)),
        }
    }

    /// The configuration the engine runs with (None for a connected handle).
    pub fn config(&self) -> Option<&Config> {
        match &self.target {
            Target::Local(l) => Some(&l.ctx.cfg),
            Target::Remote(_) => None,
        }
    }

    /// The bound address (the real port when the config asked for port 0); for a connected
    /// handle, the daemon's port on 127.0.0.1.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.target {
            Target::Local(l) => l.local_addr,
            Target::Remote(r) => SocketAddr::from(([127, 0, 0, 1], r.port().unwrap_or(0))),
        }
    }

    /// The TCP port (0 for a connected handle whose daemon cannot be reached).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The port, or why there is none (stopped, daemon unreachable).
    pub fn try_port(&self) -> Result<u16, Error> {
        match &self.target {
            Target::Local(_) => Ok(self.local()?.local_addr.port()),
            Target::Remote(r) => r.port(),
        }
    }

    /// A host message to `room`, or to every room when None. Returns how many connections it
    /// was queued to (on this node).
    pub fn broadcast(&self, room: Option<&str>, text: &str) -> Result<usize, Error> {
        self.broadcast_as(room, text, None)
    }

    /// `broadcast`, shown as sent by `from` (a bot, "Front desk") instead of `host_name`.
    pub fn broadcast_from(&self, room: Option<&str>, text: &str, from: &str) -> Result<usize, Error> {
        self.broadcast_as(room, text, Some(from))
    }

    fn broadcast_as(&self, room: Option<&str>, text: &str, from: Option<&str>) -> Result<usize, Error> {
        match &self.target {
            Target::Local(_) => host::broadcast(&self.local()?.ctx, room, text, from),
            Target::Remote(r) => r.broadcast(room, text, from),
        }
    }

    /// A host message to one connection.
    pub fn send(&self, conn_id: u64, text: &str) -> Result<(), Error> {
        match &self.target {
            Target::Local(_) => host::send(&self.local()?.ctx, conn_id, text),
            Target::Remote(r) => r.send(conn_id, text),
        }
    }

    /// Closes a connection with code 4000 and `reason`.
    pub fn kick(&self, conn_id: u64, reason: &str) -> Result<(), Error> {
        match &self.target {
            Target::Local(_) => host::kick(&self.local()?.ctx, conn_id, reason),
            Target::Remote(r) => r.kick(conn_id, reason),
        }
    }

    /// Closes every connection of a logged-in user (token `sub`) with 4000; returns how many
    /// (`Error::UnknownUser` when the user has none open).
    pub fn kick_user(&self, sub: &str, reason: &str) -> Result<usize, Error> {
        match &self.target {
            Target::Local(_) => host::kick_user(&self.local()?.ctx, sub, reason),
            Target::Remote(r) => r.kick_user(sub, reason),
        }
    }

    /// Reads the `tls` certificate and key files again (after a renewal replaced them): new
    /// connections get the new certificate, open ones keep theirs. A file that cannot be used
    /// leaves the old certificate serving and returns `Error::Config` naming `tls.cert` or
    /// `tls.key`; `Error::InvalidArgument` when the engine runs without `tls`. On a connected
    /// handle, the daemon reloads.
    pub fn reload_tls(&self) -> Result<(), Error> {
        match &self.target {
            Target::Local(_) => host::reload_tls(&self.local()?.ctx),
            Target::Remote(r) => r.reload_tls(),
        }
    }

    /// Rooms with someone in them, by name.
    pub fn rooms(&self) -> Result<Vec<RoomInfo>, Error> {
        match &self.target {
            Target::Local(_) => host::rooms(&self.local()?.ctx),
            Target::Remote(r) => r.rooms(),
        }
    }

    /// Publishes a message held for the host (relay `host`) as its sender wrote it, or admits a
    /// held join.
    pub fn approve(&self, token: u64) -> Result<(), Error> {
        host::approve(&self.local()?.ctx, token)
    }

    /// Refuses a held message (its sender gets an `error` `rejected` with `reason`) or join.
    pub fn reject(&self, token: u64, reason: &str) -> Result<(), Error> {
        host::reject(&self.local()?.ctx, token, reason)
    }

    /// Publishes `text` instead of a held message's text (from its sender, in its room).
    pub fn replace(&self, token: u64, text: &str) -> Result<(), Error> {
        host::replace(&self.local()?.ctx, token, text)
    }

    /// Puts a kept message back into a room's history (oldest first, ids increasing), so a
    /// host with a database can restart without clients losing their place (use a fixed
    /// `history_epoch`). Shown as sent by `from`.
    pub fn restore(&self, room: &str, id: u64, ts_ms: u64, from: &str, text: &str) -> Result<(), Error> {
        host::restore(&self.local()?.ctx, room, id, ts_ms, from, text)
    }

    /// Takes the next event, waiting up to `timeout` (None = until one comes or the engine stops).
    /// After `stop`, the events queued before it are still handed out (a message to store, say);
    /// then `Error::Stopped`.
    pub fn poll_event(&self, timeout: Option<Duration>) -> Result<Option<Event>, Error> {
        self.local_any()?.ctx.events.pop(timeout).map_err(|_| Error::Stopped)
    }

    /// Waits up to `timeout` for an event, then calls `f` on this thread for it and for every
    /// event already queued behind it. Returns how many were handled. `f` may call any engine
    /// method, `stop` included.
    pub fn dispatch(&self, timeout: Option<Duration>, mut f: impl FnMut(&Event)) -> Result<usize, Error> {
        let events = &self.local_any()?.ctx.events;
        let Some(first) = self.poll_event(timeout)? else {
            return Ok(0);
        };
        // `f` may stop the engine: what is queued already is still handed over (then the queue
        // is closed and the loop ends).
        f(&first);
        let mut n = 1;
        // Only what is queued now: a busy chat must not keep the host in here forever.
        for _ in 0..events.len() {
            match events.pop(Some(Duration::ZERO)) {
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
        let local = self.local()?;
        let mut slot = local.event_thread.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return Err(Error::InvalidArgument("the event thread is already running".into()));
        }
        let ctx = local.ctx.clone();
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
        Ok(self.local()?.ctx.events.fd())
    }

    /// Counters and gauges; for a local engine also after stop (the final numbers). For a
    /// connected handle, the daemon's, or all zero (`running` false) when it cannot be reached:
    /// `stats_json` says why.
    pub fn stats(&self) -> Stats {
        match &self.target {
            Target::Local(l) => {
                let mut s = host::stats(&l.ctx);
                s.running = !l.stopped.load(Ordering::SeqCst);
                s
            }
            Target::Remote(r) => {
                r.stats_json().ok().and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default()
            }
        }
    }

    /// The counters as JSON (`chat_stats_json`), or why they cannot be had.
    pub fn stats_json(&self) -> Result<String, Error> {
        match &self.target {
            Target::Local(_) => Ok(serde_json::to_string(&self.stats()).unwrap_or_default()),
            Target::Remote(r) => r.stats_json(),
        }
    }

    /// A membership snapshot as JSON, with the sequence number of the last event it reflects
    /// (see `chat_presence_json`). `room` None = every room with members.
    pub fn presence_json(&self, room: Option<&str>) -> Result<String, Error> {
        match &self.target {
            Target::Local(_) => {
                let snap = host::presence(&self.local()?.ctx, room)?;
                Ok(serde_json::to_string(&snap).unwrap_or_default())
            }
            Target::Remote(r) => r.presence_json(room),
        }
    }

    /// Users in a room once each, as (one of its connection ids, name, tabs).
    pub fn members(&self, room: &str) -> Result<Vec<(u64, String, u32)>, Error> {
        let json = self.presence_json(Some(room))?;
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| Error::Control(format!("unreadable presence: {e}")))?;
        let members = v["rooms"][room]["members"].as_array().cloned().unwrap_or_default();
        Ok(members
            .iter()
            .map(|m| {
                let id = m["id"].as_u64().unwrap_or(0);
                (id, m["name"].as_str().unwrap_or("").to_string(), m["tabs"].as_u64().unwrap_or(1) as u32)
            })
            .collect())
    }

    /// The engine's history epoch (see `history_epoch`); "" for a connected handle.
    pub fn history_epoch(&self) -> &str {
        match &self.target {
            Target::Local(l) => l.ctx.hub.epoch(),
            Target::Remote(_) => "",
        }
    }

    /// Graceful stop: clients get close 1001, every thread is joined. The second call returns
    /// `Error::Stopped`. May be called from the event callback. On a connected handle it closes
    /// the connection to the daemon (which keeps running).
    pub fn stop(&self) -> Result<(), Error> {
        let local = match &self.target {
            Target::Remote(r) => return if r.close() { Ok(()) } else { Err(Error::Stopped) },
            Target::Local(l) => l,
        };
        if local.stopped.swap(true, Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        let running = local.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = running {
            r.stop();
        }
        let thread = local.event_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((id, handle)) = thread {
            // Called from the event thread itself: it ends on its own when this call returns.
            if id != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        Ok(())
    }

    pub fn is_stopped(&self) -> bool {
        match &self.target {
            Target::Local(l) => l.stopped.load(Ordering::SeqCst),
            Target::Remote(r) => r.is_closed(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
