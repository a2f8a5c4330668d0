//! `chat_engine`: start or connect, act, take events, stop. Each function checks its arguments
//! and calls the Rust `Engine`, which knows whether the engine runs here or in a daemon.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::event::{chat_event, OwnedEvent};
use super::result::chat_result::{self, *};
use super::{entry, fail, opt_str_arg, str_arg, take_box, Failed};
use crate::api::{CallbackThread, Engine, Error, Event};

/// Called once per event with the `userdata` given to `chat_set_callback` and an event that is
/// valid only during the call (do not free it). It runs on the thread that called
/// `chat_dispatch`, or on the engine's event thread when the config says
/// `"callback_thread": "engine"`; never on a network thread. It may call any `chat_*` function
/// on the same engine except `chat_free`.
pub type chat_event_cb = Option<extern "C" fn(userdata: *mut c_void, ev: *const chat_event)>;

#[derive(Clone, Copy)]
struct Callback {
    cb: extern "C" fn(*mut c_void, *const chat_event),
    userdata: usize,
}

impl Callback {
    fn call(self, ev: &Event) {
        let owned = OwnedEvent::new(ev);
        (self.cb)(self.userdata as *mut c_void, owned.as_raw());
    }
}

type Slot = Arc<Mutex<Option<Callback>>>;

/// An engine handle: created by `chat_start` or `chat_connect`, released by `chat_free`.
/// Opaque to C.
///
/// Every call holds its own reference to the insides for as long as it runs, so `chat_free` on
/// one thread never frees memory that a call on another thread (a waiting `chat_poll_event`, a
/// `chat_stop` in progress, a dispatch whose callback is running) still uses.
pub struct chat_engine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    callback: Slot,
}

impl chat_engine {
    fn into_raw(engine: Engine) -> *mut chat_engine {
        Box::into_raw(Box::new(chat_engine { inner: Arc::new(Inner { engine, callback: Slot::default() }) }))
    }
}

fn current(slot: &Slot) -> Option<Callback> {
    *slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine behind `e`, kept alive for the caller's whole call, or CHAT_ERR_NULL.
///
/// # Safety
/// `e` is NULL or a handle from `chat_start`/`chat_connect` not yet given to `chat_free`.
unsafe fn engine_ref(e: *const chat_engine) -> Result<Arc<Inner>, Failed> {
    // SAFETY: guaranteed by the caller; all mutation inside goes through locks and atomics, so
    // a shared reference is sound.
    let handle =
        unsafe { e.as_ref() }.ok_or_else(|| Failed(fail(CHAT_ERR_NULL, "argument `engine` is NULL")))?;
    Ok(handle.inner.clone())
}

fn timeout_of(ms: c_int) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

fn count(n: usize) -> c_int {
    n.min(c_int::MAX as usize) as c_int
}

const OK: c_int = CHAT_OK as c_int;

/// Starts an engine from a JSON config (NULL or "" = all defaults; docs/config.md lists the keys).
///
/// Binds synchronously and returns only once connections are accepted. Returns a handle the
/// caller owns and must release with `chat_free`, or NULL on failure with the reason in
/// `chat_last_error()` and its kind in `chat_last_result()`: CHAT_ERR_CONFIG (an unknown key,
/// wrong type or out-of-range value; the text names the key), CHAT_ERR_BIND (busy port, no
/// permission), CHAT_ERR_CONTROL (the control socket), CHAT_ERR_UTF8, CHAT_ERR_INTERNAL.
/// Any thread. Many engines may run in one process.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_start(config_json: *const c_char) -> *mut chat_engine {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let json = unsafe { opt_str_arg(config_json, "config_json") }?.unwrap_or("");
        Ok(chat_engine::into_raw(Engine::start_json(json)?))
    })
}

/// Connects to an engine another process runs with `"control_socket": path` in its config
/// (a daemon), for processes that must not run an engine themselves (PHP-FPM workers).
///
/// Returns a handle the caller owns and releases with `chat_free`, or NULL with the reason in
/// `chat_last_error()` and `chat_last_result()` (CHAT_ERR_NULL or CHAT_ERR_UTF8 for the path;
/// CHAT_ERR_CONTROL: nothing listening, no permission, refused by the daemon, or a daemon
/// running as another user). On it `chat_broadcast`, `chat_send`, `chat_kick`,
/// `chat_kick_user`, `chat_rooms_json`, `chat_stats_json`, `chat_presence_json` and `chat_port`
/// act on the daemon (each is one request, waiting up to 10 s for the reply); `chat_stop` closes
/// only this connection. Event and moderation calls return CHAT_ERR_UNSUPPORTED. If the daemon
/// goes away, calls return CHAT_ERR_CONTROL and the next call connects again; a connection the
/// daemon closed while unused (its `control_socket_idle_timeout_ms`) is replaced before the next
/// request is written, and a request is sent again only when the daemon certainly did not read
/// it. One handle may be used from several threads (calls take turns).
///
/// Whom it talks to: the process answering on `path` must run as this process's own user or as
/// root (checked with SO_PEERCRED on every new connection); any other daemon is refused with
/// CHAT_ERR_CONTROL, since another user who can write the socket's directory may have bound the
/// path while the daemon was down. For a daemon that runs as another user on purpose, use
/// `chat_connect_trusting`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_connect(path: *const c_char) -> *mut chat_engine {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let path = unsafe { str_arg(path, "path") }?;
        Ok(chat_engine::into_raw(Engine::connect(path)?))
    })
}

/// `chat_connect` to a daemon that runs as `daemon_user`: a user name (looked up with
/// getpwnam_r) or a numeric uid, trusted besides this process's own user and root. For a PHP-FPM
/// pool whose user differs from the daemon's (the daemon lists the pool's uid in its
/// `control_socket_uids`). NULL `daemon_user` = `chat_connect`.
///
/// Returns a handle as `chat_connect` does, or NULL with the reason in `chat_last_error()` and
/// `chat_last_result()`: CHAT_ERR_INVALID for an unknown user, else as `chat_connect`. Any
/// thread.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `daemon_user` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_connect_trusting(
    path: *const c_char,
    daemon_user: *const c_char,
) -> *mut chat_engine {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let path = unsafe { str_arg(path, "path") }?;
        // SAFETY: see the function's Safety section.
        let user = unsafe { opt_str_arg(daemon_user, "daemon_user") }?;
        let engine = match user {
            Some(u) => Engine::connect_trusting(path, u)?,
            None => Engine::connect(path)?,
        };
        Ok(chat_engine::into_raw(engine))
    })
}

/// The TCP port the engine listens on (the real one when the config asked for port 0).
/// Returns 0 if `e` is NULL or stopped (or, for a `chat_connect` handle, the daemon is not
/// reachable), with the reason in `chat_last_error()`. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle (not yet given to `chat_free`).
#[no_mangle]
pub unsafe extern "C" fn chat_port(e: *const chat_engine) -> u16 {
    // SAFETY: see the function's Safety section.
    entry(|| Ok(unsafe { engine_ref(e) }?.engine.try_port()?))
}

/// Sends `text` (UTF-8, copied) from the host to everyone in `room`, or to every room when
/// `room` is NULL. The sender is the config's `host_name`.
///
/// Returns how many connections it was queued to (>= 0; 0 for a room with nobody in it), or
/// CHAT_ERR_NULL (e or text NULL), CHAT_ERR_UTF8, CHAT_ERR_INVALID (bad room name, text longer
/// than max_message_bytes), CHAT_ERR_STOPPED. Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle; `room` and `text` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn chat_broadcast(
    e: *mut chat_engine,
    room: *const c_char,
    text: *const c_char,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, room, text) = unsafe { (engine_ref(e)?, opt_str_arg(room, "room")?, str_arg(text, "text")?) };
        Ok(count(h.engine.broadcast(room, text)?))
    })
}

/// `chat_broadcast`, shown as sent by `from` (UTF-8, copied; NULL = the config's `host_name`),
/// for a bot or a named service ("Front desk"); the name is cleaned like a client's.
/// Returns as `chat_broadcast`, and CHAT_ERR_INVALID for a `from` with nothing visible in it.
///
/// # Safety
/// `e` is NULL or a live handle; `room`, `text` and `from` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn chat_broadcast_from(
    e: *mut chat_engine,
    room: *const c_char,
    text: *const c_char,
    from: *const c_char,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, room, text, from) = unsafe {
            (engine_ref(e)?, opt_str_arg(room, "room")?, str_arg(text, "text")?, opt_str_arg(from, "from")?)
        };
        Ok(count(match from {
            Some(from) => h.engine.broadcast_from(room, text, from)?,
            None => h.engine.broadcast(room, text)?,
        }))
    })
}

/// Sends `text` (UTF-8, copied) from the host to one connection, shown as a private message.
///
/// Returns CHAT_OK, or CHAT_ERR_NULL, CHAT_ERR_UTF8, CHAT_ERR_INVALID (too long),
/// CHAT_ERR_UNKNOWN_CONN, CHAT_ERR_QUEUE_FULL (the client is not reading; it is being closed),
/// CHAT_ERR_STOPPED. Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle; `text` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_send(e: *mut chat_engine, conn_id: u64, text: *const c_char) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, text) = unsafe { (engine_ref(e)?, str_arg(text, "text")?) };
        h.engine.send(conn_id, text)?;
        Ok(OK)
    })
}

/// Closes one connection with WebSocket close code 4000 and `reason` (UTF-8, NULL = none; cut
/// to fit a close frame). Returns CHAT_OK, CHAT_ERR_NULL, CHAT_ERR_UTF8, CHAT_ERR_UNKNOWN_CONN or
/// CHAT_ERR_STOPPED. Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle; `reason` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_kick(e: *mut chat_engine, conn_id: u64, reason: *const c_char) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, reason) = unsafe { (engine_ref(e)?, opt_str_arg(reason, "reason")?) };
        h.engine.kick(conn_id, reason.unwrap_or(""))?;
        Ok(OK)
    })
}

/// Closes every connection (every tab) of a logged-in user, the login token's `sub` given as
/// `user` (UTF-8), with close code 4000 and `reason` (NULL = none). Returns how many connections
/// were closed (>= 1), or CHAT_ERR_NULL (e or user), CHAT_ERR_UTF8, CHAT_ERR_INVALID (the user
/// has no open connection), CHAT_ERR_STOPPED. Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle; `user` and `reason` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn chat_kick_user(
    e: *mut chat_engine,
    user: *const c_char,
    reason: *const c_char,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, user, reason) =
            unsafe { (engine_ref(e)?, str_arg(user, "user")?, opt_str_arg(reason, "reason")?) };
        Ok(count(h.engine.kick_user(user, reason.unwrap_or(""))?))
    })
}

/// Publishes the held message with `reply_token` as its sender wrote it (relay `host`), or
/// admits the held join (`join_hook`: the client gets its welcome or presence).
/// Returns CHAT_OK, CHAT_ERR_NULL (e), CHAT_ERR_UNKNOWN_TOKEN (already decided, or
/// `hook_timeout_ms` passed and `hook_default` applied), CHAT_ERR_STOPPED or
/// CHAT_ERR_UNSUPPORTED (a `chat_connect` handle). Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_approve(e: *mut chat_engine, reply_token: u64) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        unsafe { engine_ref(e) }?.engine.approve(reply_token)?;
        Ok(OK)
    })
}

/// Refuses the held message (its sender gets an `error`, code `rejected`) or join (a `join`
/// command gets `join_rejected`; a connection's first room closes it with 4003), with `reason`
/// (UTF-8, copied; NULL = a generic text). Returns CHAT_OK, CHAT_ERR_NULL (e),
/// CHAT_ERR_UTF8, CHAT_ERR_UNKNOWN_TOKEN, CHAT_ERR_STOPPED or CHAT_ERR_UNSUPPORTED. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle; `reason` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_reject(e: *mut chat_engine, reply_token: u64, reason: *const c_char) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, reason) = unsafe { (engine_ref(e)?, opt_str_arg(reason, "reason")?) };
        h.engine.reject(reply_token, reason.unwrap_or(""))?;
        Ok(OK)
    })
}

/// Relay `host`: publishes `new_text` (UTF-8, copied) in place of the held message, from the
/// same sender in the same room. Returns CHAT_OK, CHAT_ERR_NULL (e or new_text), CHAT_ERR_UTF8,
/// CHAT_ERR_INVALID (longer than max_message_bytes), CHAT_ERR_UNKNOWN_TOKEN, CHAT_ERR_STOPPED or
/// CHAT_ERR_UNSUPPORTED. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle; `new_text` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_replace(
    e: *mut chat_engine,
    reply_token: u64,
    new_text: *const c_char,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, text) = unsafe { (engine_ref(e)?, str_arg(new_text, "new_text")?) };
        h.engine.replace(reply_token, text)?;
        Ok(OK)
    })
}

/// Puts a message the host kept (in its database) back into `room`'s history, for a host that
/// restarts: call it for each kept message, oldest first, right after `chat_start`, with a
/// fixed `history_epoch` in the config. Clients then get these on join, and a browser that
/// resumes with the id it last saw gets exactly what it missed; new messages continue above
/// the highest restored `msg_id`. `from` is the sender's name, `ts_ms` the time it was sent
/// (ms since 1970). All strings UTF-8, copied.
///
/// Returns CHAT_OK, or CHAT_ERR_NULL (e, room, from or text), CHAT_ERR_UTF8, CHAT_ERR_INVALID
/// (bad room name, text too long, `msg_id` not above the room's last id), CHAT_ERR_STOPPED,
/// CHAT_ERR_UNSUPPORTED (a `chat_connect` handle). Any thread.
///
/// # Safety
/// `e` is NULL or a live handle; `room`, `from` and `text` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn chat_restore(
    e: *mut chat_engine,
    room: *const c_char,
    msg_id: u64,
    ts_ms: u64,
    from: *const c_char,
    text: *const c_char,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, room, from, text) = unsafe {
            (engine_ref(e)?, str_arg(room, "room")?, str_arg(from, "from")?, str_arg(text, "text")?)
        };
        h.engine.restore(room, msg_id, ts_ms, from, text)?;
        Ok(OK)
    })
}

/// Sets (or with `cb` NULL, removes) the event callback and its `userdata` (not touched by the
/// library). With the default `"callback_thread": "host"` the callback runs only inside
/// `chat_dispatch`, on the caller's thread; with `"engine"` the engine starts one dedicated
/// thread that calls it for every event (events that arrive while no callback is set are
/// discarded there). Returns CHAT_OK, CHAT_ERR_NULL (e), CHAT_ERR_STOPPED or
/// CHAT_ERR_UNSUPPORTED. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle; `cb`, when set, may be called with `userdata` until it is
/// replaced, removed, or the engine stops.
#[no_mangle]
pub unsafe extern "C" fn chat_set_callback(
    e: *mut chat_engine,
    cb: chat_event_cb,
    userdata: *mut c_void,
) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let h = unsafe { engine_ref(e) }?;
        let engine = &h.engine;
        // Refuses connected handles and stopped engines before anything changes.
        engine.event_fd()?;
        let new = cb.map(|cb| Callback { cb, userdata: userdata as usize });
        let first = {
            let mut slot = h.callback.lock().unwrap_or_else(|p| p.into_inner());
            let first = slot.is_none() && new.is_some();
            *slot = new;
            first
        };
        if first && engine.config().is_some_and(|c| c.events.callback_thread == CallbackThread::Engine) {
            let slot = h.callback.clone();
            let started = engine.spawn_event_thread(move |ev| {
                if let Some(c) = current(&slot) {
                    c.call(ev);
                }
            });
            match started {
                Ok(()) | Err(Error::InvalidArgument(_)) => {} // already running
                Err(err) => return Err(err.into()),
            }
        }
        Ok(OK)
    })
}

/// Waits up to `timeout_ms` (0 = do not wait, negative = until an event or stop) for an event,
/// then calls the callback on THIS thread for it and for every event already queued behind it.
///
/// Returns how many events were handled (0 on timeout), or CHAT_ERR_NULL, CHAT_ERR_STOPPED,
/// CHAT_ERR_INVALID (no callback set, or callbacks run on the engine thread),
/// CHAT_ERR_UNSUPPORTED. The callback may call `chat_*` functions, including `chat_stop`, but
/// not `chat_free`.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_dispatch(e: *mut chat_engine, timeout_ms: c_int) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let h = unsafe { engine_ref(e) }?;
        let engine = &h.engine;
        engine.event_fd()?;
        if engine.config().is_some_and(|c| c.events.callback_thread == CallbackThread::Engine) {
            return Err(Failed(fail(
                CHAT_ERR_INVALID,
                "callbacks run on the engine thread (\"callback_thread\": \"engine\"); chat_dispatch is not used",
            )));
        }
        if current(&h.callback).is_none() {
            return Err(Failed(fail(CHAT_ERR_INVALID, "no callback set: call chat_set_callback first")));
        }
        let n = engine.dispatch(timeout_of(timeout_ms), |ev| {
            // Looked up per event: the callback may replace itself.
            if let Some(c) = current(&h.callback) {
                c.call(ev);
            }
        })?;
        Ok(count(n))
    })
}

/// Takes the next event without a callback. Waits up to `timeout_ms` (0 = do not wait,
/// negative = until an event or stop). On 1, `*out` is an event the caller owns and frees with
/// `chat_event_free`; on 0 (timeout) or an error `*out` is NULL.
///
/// Returns 1, 0, or CHAT_ERR_NULL (e or out NULL), CHAT_ERR_STOPPED (also when `chat_stop` is
/// called on another thread while this one waits), CHAT_ERR_UNSUPPORTED. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle; `out` is NULL or points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn chat_poll_event(
    e: *mut chat_engine,
    timeout_ms: c_int,
    out: *mut *mut chat_event,
) -> c_int {
    entry(|| {
        if out.is_null() {
            return Err(Failed(fail(CHAT_ERR_NULL, "argument `out` is NULL")));
        }
        // SAFETY: `out` is not NULL and points to writable storage (the Safety section).
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: see the function's Safety section.
        let h = unsafe { engine_ref(e) }?;
        match h.engine.poll_event(timeout_of(timeout_ms))? {
            Some(ev) => {
                // SAFETY: as above.
                unsafe { *out = OwnedEvent::new(&ev).into_raw() };
                Ok(1)
            }
            None => Ok(0),
        }
    })
}

/// A file descriptor that is readable while events are queued (and once the engine stops), for
/// `poll()`/`select()` loops or PHP's `stream_select` on `php://fd/N`. Do not read, write or close
/// it; `chat_poll_event`/`chat_dispatch` reset it. Valid until `chat_free`.
/// Returns the fd (>= 0), or CHAT_ERR_NULL, CHAT_ERR_STOPPED, CHAT_ERR_UNSUPPORTED. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_event_fd(e: *const chat_engine) -> c_int {
    // SAFETY: see the function's Safety section.
    entry(|| Ok(unsafe { engine_ref(e) }?.engine.event_fd()?))
}

/// Counters and gauges as a JSON object (connections, rooms, messages and bytes in and out,
/// drops, slow-consumer closes, errors, auth failures, events queued and dropped, running).
/// Also works after `chat_stop` (the final numbers). On a `chat_connect` handle, the daemon's.
/// Returns a string the caller owns and frees with `chat_string_free`, or NULL (e NULL, daemon
/// unreachable) with the reason in `chat_last_error()`. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_stats_json(e: *const chat_engine) -> *mut c_char {
    // SAFETY: see the function's Safety section.
    entry(|| Ok(super::strings::owned(unsafe { engine_ref(e) }?.engine.stats_json()?)))
}

/// Who is in `room` (UTF-8; NULL = every room with members) as a JSON object
/// `{"seq": N, "epoch": E, "rooms": {"lobby": {"last_id": M, "connections": C, "members":
/// [{"id", "name", "tabs", "conns": [ids], "user"?}]}}}` (each user once; `user` is the login
/// token's `sub`), where `seq` is the number of the last event the snapshot reflects: a host
/// rebuilding its bookkeeping applies only events with a higher `seq` after it. A room nobody is
/// in is absent. This is also the member list of one room (`room` set).
/// Returns a string the caller owns and frees with `chat_string_free`, or NULL (e NULL, room not
/// UTF-8, stopped) with the reason in `chat_last_error()`. Any thread, including the callback.
///
/// # Safety
/// `e` is NULL or a live handle; `room` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn chat_presence_json(e: *const chat_engine, room: *const c_char) -> *mut c_char {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let (h, room) = unsafe { (engine_ref(e)?, opt_str_arg(room, "room")?) };
        Ok(super::strings::owned(h.engine.presence_json(room)?))
    })
}

/// The rooms with someone in them, by name, as a JSON array
/// `[{"room", "users", "connections", "last_id"}]` (`users` counts a user with several tabs
/// once). Returns a string the caller owns and frees with `chat_string_free`, or NULL (e NULL,
/// stopped, daemon unreachable) with the reason in `chat_last_error()`. Any thread.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_rooms_json(e: *const chat_engine) -> *mut c_char {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let rooms = unsafe { engine_ref(e) }?.engine.rooms()?;
        Ok(super::strings::owned(serde_json::to_string(&rooms).unwrap_or_default()))
    })
}

/// Reads the `tls` certificate and key files again (after a renewal replaced them), without a
/// restart: connections made from now on get the new certificate, connections already open keep
/// theirs and stay up.
///
/// Returns CHAT_OK, or CHAT_ERR_NULL, CHAT_ERR_CONFIG (a file is missing, unreadable, not PEM,
/// or the key is not the certificate's: `chat_last_error()` names `tls.cert` or `tls.key` and
/// why; the old certificate keeps serving), CHAT_ERR_INVALID (the engine runs without `tls`),
/// CHAT_ERR_STOPPED. On a `chat_connect` handle the daemon reloads (CHAT_ERR_CONTROL if it
/// cannot be reached). Any thread, including inside the callback.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_reload_tls(e: *mut chat_engine) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        unsafe { engine_ref(e) }?.engine.reload_tls()?;
        Ok(OK)
    })
}

/// Stops the engine gracefully: no new connections, every client gets close 1001, waits up to
/// `stop_timeout_ms` for them, then joins every engine thread and closes every socket. Waiting
/// `chat_poll_event`/`chat_dispatch` calls on other threads return CHAT_ERR_STOPPED.
///
/// Returns CHAT_OK, CHAT_ERR_NULL, or CHAT_ERR_STOPPED if it was already stopped. The handle stays
/// valid (every call returns CHAT_ERR_STOPPED, except `chat_stats_json`) until `chat_free`.
/// Any thread, including inside the callback. On a `chat_connect` handle it closes the
/// connection to the daemon (the daemon keeps running); later calls return CHAT_ERR_STOPPED.
///
/// # Safety
/// `e` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn chat_stop(e: *mut chat_engine) -> c_int {
    entry(|| {
        // SAFETY: see the function's Safety section.
        let h = unsafe { engine_ref(e) }?;
        // The callback's userdata may be freed by the host after stop: forget it first.
        *h.callback.lock().unwrap_or_else(|p| p.into_inner()) = None;
        h.engine.stop().map_err(|_| Failed(fail(CHAT_ERR_STOPPED, "the engine is already stopped")))?;
        Ok(OK)
    })
}

/// Stops the engine if it is running and releases the handle. NULL is a no-op. Call it once,
/// when no other thread uses the handle any more, and never from inside the callback. Calls
/// already running on other threads (a waiting `chat_poll_event`) finish safely with
/// CHAT_ERR_STOPPED.
///
/// # Safety
/// `e` is NULL or a handle from `chat_start`/`chat_connect`, given here exactly once.
#[no_mangle]
pub unsafe extern "C" fn chat_free(e: *mut chat_engine) {
    if e.is_null() {
        return;
    }
    entry(|| {
        // SAFETY: not NULL, and the caller gives the handle back exactly once (Safety section).
        let h = unsafe { take_box(e) };
        let _ = h.inner.engine.stop();
        // Calls still running on other threads hold their own references; the last one frees.
        drop(h);
        Ok(())
    })
}

// The C side reads results as `int`.
const _: () = assert!(std::mem::size_of::<chat_result>() == std::mem::size_of::<c_int>());
