//! Events for the host: a bounded queue that I/O threads fill and the host drains on its own
//! thread.
//!
//! The engine never calls host code from its I/O threads (a PHP closure called from a foreign
//! thread crashes PHP). Events wait here; the host takes them with `poll`, and can sleep in its
//! own `poll()`/`stream_select` on `fd()`, which is readable exactly while events are queued.
//! Overflow never blocks the I/O threads: the event is counted and a `dropped` event tells the
//! host how many it missed as soon as there is room again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Connect,
    Join,
    Message,
    Leave,
    Disconnect,
    /// Events were lost because the queue was full; `count` says how many.
    Dropped,
    /// A slow connection is losing messages to its drop policy; `count` is how many so far
    /// (reported at 1, 10, 100… and at disconnect).
    Lagging,
    /// A private message: `name` sent `text` to connection `to`.
    Whisper,
    /// A rename: `name` is the new name, `text` the old one.
    Nick,
    /// With `join_hook`: `name` asks to join `room`; decide with the event's token.
    JoinRequest,
    /// With `published_events`: a message entered `room` with id `msg_id` that no `message`
    /// event reported with its id:
    /// a held message the host approved or replaced (relay `host`), or a host message (from
    /// `broadcast`, the HTTP API or the control socket; `conn_id` 0). With the `message` events
    /// that carry a `msg_id`, a host sees every message that enters history exactly once (to
    /// store it, for example).
    Published,
    /// With `refused_events`: a WebSocket upgrade was refused before it became a connection
    /// (`conn_id` 0); `close_code` holds the HTTP status, `text` the reason the client was
    /// sent, `room` the room it asked for (when it named a valid one).
    Refused,
    /// In a cluster (`redis_url`): this node lost Redis and serves its own clients alone
    /// (`count` 0, `text` why), or has it back and is one with the cluster again (`count` 1).
    Cluster,
}

/// One event, numbered per engine (`seq` starts at 1 and has no gaps except where a `dropped`
/// event reports lost ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    /// The connection concerned (0 for `dropped`, and for host messages in `published`).
    pub conn_id: u64,
    pub room: Option<Arc<str>>,
    pub name: Option<Arc<str>>,
    pub text: Option<String>,
    /// The logged-in user (the login token's `sub`) of the connection, if it has one.
    pub user: Option<Arc<str>>,
    /// Per-room message id for `message` events that were broadcast (0 = not broadcast), and
    /// for `published`.
    pub msg_id: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// `disconnect`: the WebSocket close code (1006 when the connection just ended);
    /// `refused`: the HTTP status.
    pub close_code: u16,
    /// `dropped`: how many events were lost; `lagging`: how many messages this connection lost.
    pub count: u64,
    /// `whisper`: the connection the whisper was addressed to.
    pub to: u64,
    /// Non-zero when the host is asked to decide (relay `host`, `join_hook`): answer with
    /// approve, reject or replace before `hook_timeout_ms`, or `hook_default` applies.
    pub token: u64,
}

impl Serialize for Event {
    /// As `to_json`: the C struct's fields, with one `code`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventJson {
            seq: self.seq,
            kind: self.kind,
            conn_id: self.conn_id,
            room: self.room.as_deref(),
            name: self.name.as_deref(),
            text: self.text.as_deref(),
            user: self.user.as_deref(),
            msg_id: self.msg_id,
            ts: self.ts,
            code: self.code(),
            token: self.token,
        }
        .serialize(s)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The JSON form of an event (`Event::to_json`, the C event's `json`): one `code` field holds
/// whichever of close code, count or addressee the kind has, as the C struct does.
#[derive(Serialize)]
struct EventJson<'a> {
    seq: u64,
    kind: EventKind,
    conn_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    msg_id: u64,
    ts: u64,
    #[serde(skip_serializing_if = "is_zero")]
    code: u64,
    #[serde(skip_serializing_if = "is_zero")]
    token: u64,
}

impl Event {
    pub fn new(kind: EventKind, conn_id: u64) -> Self {
        Event {
            seq: 0,
            kind,
            conn_id,
            room: None,
            name: None,
            text: None,
            user: None,
            msg_id: 0,
            ts: crate::clock::now_ms(),
            close_code: 0,
            count: 0,
            to: 0,
            token: 0,
        }
    }

    /// The one number the C struct's `code` carries for this kind: the close code
    /// (`disconnect`), the HTTP status (`refused`), the count (`dropped`, `lagging`) or the
    /// addressee (`whisper`).
    pub fn code(&self) -> u64 {
        match self.kind {
            EventKind::Disconnect | EventKind::Refused => u64::from(self.close_code),
            EventKind::Dropped | EventKind::Lagging | EventKind::Cluster => self.count,
            EventKind::Whisper => self.to,
            _ => 0,
        }
    }

    /// Roughly the memory a queued event holds.
    fn weight(&self) -> usize {
        std::mem::size_of::<Event>()
            + self.text.as_ref().map_or(0, |t| t.len())
            + self.room.as_ref().map_or(0, |r| r.len())
            + self.name.as_ref().map_or(0, |n| n.len())
            + self.user.as_ref().map_or(0, |u| u.len())
    }

    /// The whole event as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Returned by a wait on a queue that was closed by `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

struct Inner {
    queue: VecDeque<Event>,
    /// Approximate memory the queued events hold (see `Event::weight`).
    bytes: usize,
    next_seq: u64,
    dropped_pending: u64,
    dropped_total: u64,
    /// Message ids the dropped events carried, per room, until the `dropped` event reports them:
    /// a host that stores messages learns which ids it will never see (and must not reuse).
    lost_ids: Vec<(Arc<str>, u64, u64)>,
    closed: bool,
    /// Host threads blocked in `pop`.
    waiting: usize,
}

/// Events queued without waking the host yet, past which it is woken at once.
const WAKE_BATCH: usize = 64;
/// The longest a queued event waits for the host to be woken (if the network threads stay busy).
const WAKE_DELAY: Duration = Duration::from_micros(500);

/// Rooms whose lost ids a `dropped` event lists one by one; past it only the highest id is kept.
const LOST_ROOMS: usize = 64;

pub struct EventQueue {
    inner: Mutex<Inner>,
    cond: Condvar,
    capacity: usize,
    max_bytes: usize,
    wake: WakeFd,
    /// Events were queued and the host not woken for them yet (see `flush`).
    unannounced: AtomicBool,
    /// When the oldest of them was queued (µs since `epoch`).
    unannounced_since: AtomicU64,
    epoch: Instant,
}

impl EventQueue {
    #[cfg(test)]
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        Self::with_limits(capacity, usize::MAX)
    }

    /// At most `capacity` events, holding at most `max_bytes` (a host that stops taking events
    /// while clients send 64 KiB messages must not cost gigabytes).
    pub fn with_limits(capacity: usize, max_bytes: usize) -> std::io::Result<Self> {
        Ok(EventQueue {
            inner: Mutex::new(Inner {
                bytes: 0,
                queue: VecDeque::new(),
                next_seq: 1,
                dropped_pending: 0,
                dropped_total: 0,
                lost_ids: Vec::new(),
                closed: false,
                waiting: 0,
            }),
            cond: Condvar::new(),
            capacity,
            max_bytes,
            wake: WakeFd::new()?,
            unannounced: AtomicBool::new(false),
            unannounced_since: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event; never blocks. Returns false if it was dropped (counted, and reported by
    /// a `dropped` event with the message ids it carried) or the queue is closed.
    pub fn push(&self, ev: Event) -> bool {
        let mut g = self.lock();
        if g.closed {
            return false;
        }
        if !self.has_room(&g, &ev) {
            g.dropped_pending += 1;
            g.dropped_total += 1;
            if ev.msg_id > 0 && matches!(ev.kind, EventKind::Message | EventKind::Published) {
                Self::lose(&mut g, ev.room.clone().unwrap_or_else(|| "".into()), ev.msg_id);
            }
            return false;
        }
        self.enqueue(&mut g, ev);
        true
    }

    /// Queues an event that must not be lost silently (one that waits for the host's decision):
    /// false when there is no room, without counting a drop: the caller refuses what it was
    /// about instead.
    pub fn push_if_room(&self, ev: Event) -> bool {
        let mut g = self.lock();
        if g.closed || !self.has_room(&g, &ev) {
            return false;
        }
        self.enqueue(&mut g, ev);
        true
    }

    /// Queues an event the host can do without (a `refused` upgrade) only while the queue is
    /// less than half full, by count and by bytes: what anyone on the network can cause at
    /// will must never crowd out the chat's own events. Dropped silently otherwise.
    pub fn push_spare(&self, ev: Event) -> bool {
        let mut g = self.lock();
        let half =
            g.queue.len() < self.capacity / 2 && g.bytes.saturating_add(ev.weight()) <= self.max_bytes / 2;
        if g.closed || !half {
            return false;
        }
        self.enqueue(&mut g, ev);
        true
    }

    fn has_room(&self, g: &Inner, ev: &Event) -> bool {
        g.queue.len() < self.capacity && g.bytes.saturating_add(ev.weight()) <= self.max_bytes
    }

    fn lose(g: &mut Inner, room: Arc<str>, id: u64) {
        if let Some(r) = g.lost_ids.iter_mut().find(|r| r.0 == room) {
            r.1 = r.1.min(id);
            r.2 = r.2.max(id);
        } else if g.lost_ids.len() < LOST_ROOMS {
            g.lost_ids.push((room, id, id));
        } else if let Some(last) = g.lost_ids.last_mut() {
            // Too many rooms to list: the last entry keeps growing, so the highest id is kept.
            last.2 = last.2.max(id);
        }
    }

    /// Queues an event. The host is not woken for each one: waking a thread costs a system call
    /// and, when it shares a core with a network thread, a context switch per event (a quarter
    /// of the CPU in a join storm, profiled). It is woken when the network thread has nothing
    /// left to do (`flush`, from tokio's park hook), when `WAKE_BATCH` events wait, or when the
    /// oldest has waited `WAKE_DELAY` (checked on every push and after every session poll).
    /// Events queued outside the runtime are announced at once.
    fn enqueue(&self, g: &mut Inner, mut ev: Event) {
        ev.seq = g.next_seq;
        g.next_seq += 1;
        g.bytes += ev.weight();
        g.queue.push_back(ev);
        if tokio::runtime::Handle::try_current().is_err() {
            // Not a network thread (the host itself, a test): nothing would flush it later.
            self.announce(g);
        } else if !self.unannounced.swap(true, Ordering::AcqRel) {
            self.unannounced_since.store(self.now_us(), Ordering::Release);
        } else if g.queue.len() >= WAKE_BATCH || self.overdue() {
            self.announce(g);
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn overdue(&self) -> bool {
        self.now_us().saturating_sub(self.unannounced_since.load(Ordering::Acquire))
            >= WAKE_DELAY.as_micros() as u64
    }

    /// Wakes the host for what is queued: the fd becomes readable, a waiting `pop` returns.
    fn announce(&self, g: &Inner) {
        self.unannounced.store(false, Ordering::Release);
        if !g.queue.is_empty() {
            self.wake.set();
            if g.waiting > 0 {
                self.cond.notify_all();
            }
        }
    }

    /// Wakes the host if events wait unannounced (a network thread is about to sleep).
    pub fn flush(&self) {
        if self.unannounced.load(Ordering::Acquire) {
            self.announce(&self.lock());
        }
    }

    /// `flush` if the oldest unannounced event has waited `WAKE_DELAY` (cheap when not).
    pub fn flush_if_overdue(&self) {
        if self.unannounced.load(Ordering::Acquire) && self.overdue() {
            self.flush();
        }
    }

    /// Takes the next event, waiting up to `timeout` (None = forever). Ok(None) on timeout.
    pub fn pop(&self, timeout: Option<Duration>) -> Result<Option<Event>, Closed> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.lock();
        loop {
            if let Some(ev) = g.queue.pop_front() {
                g.bytes -= ev.weight();
                if g.dropped_pending > 0 {
                    // A slot just freed: tell the host what it missed, in order: how many, the
                    // highest message id among them (`msg_id`), and per room the range of
                    // message ids lost (`text`, a JSON object `{"room": [first, last]}`).
                    let mut d = Event::new(EventKind::Dropped, 0);
                    d.count = std::mem::take(&mut g.dropped_pending);
                    let lost = std::mem::take(&mut g.lost_ids);
                    d.msg_id = lost.iter().map(|r| r.2).max().unwrap_or(0);
                    if !lost.is_empty() {
                        let map: serde_json::Map<String, serde_json::Value> =
                            lost.iter().map(|(r, a, b)| (r.to_string(), serde_json::json!([a, b]))).collect();
                        d.text = Some(serde_json::Value::Object(map).to_string());
                    }
                    self.enqueue(&mut g, d);
                }
                if g.queue.is_empty() && !g.closed {
                    self.wake.clear();
                }
                return Ok(Some(ev));
            }
            if g.closed {
                return Err(Closed);
            }
            match deadline {
                None => {
                    g.waiting += 1;
                    g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
                    g.waiting -= 1;
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    g.waiting += 1;
                    g = self.cond.wait_timeout(g, d - now).unwrap_or_else(|p| p.into_inner()).0;
                    g.waiting -= 1;
                }
            }
        }
    }

    /// Number of events waiting now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// The sequence number of the newest event so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    pub fn dropped_total(&self) -> u64 {
        self.lock().dropped_total
    }

    /// Closes intake (later pushes are ignored). What is queued can still be taken; then every
    /// waiter gets `Closed`. So a host that stops loses nothing that was queued before.
    pub fn close(&self) {
        let mut g = self.lock();
        g.closed = true;
        // Leave the fd readable so a host sleeping in poll() wakes up and learns of the stop.
        self.wake.set();
        self.cond.notify_all();
    }

    /// File descriptor that is readable while events are queued (or after close).
    pub fn fd(&self) -> i32 {
        self.wake.fd
    }
}

/// An eventfd (a pipe where there is none) used as a level-triggered "events waiting" flag.
struct WakeFd {
    fd: i32,
    #[cfg(not(target_os = "linux"))]
    write_fd: i32,
}

impl WakeFd {
    #[cfg(target_os = "linux")]
    fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(WakeFd { fd })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> std::io::Result<Self> {
        let mut fds = [0i32; 2];
        // SAFETY: fds has room for the two descriptors pipe writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: fd was just returned by pipe.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        }
        Ok(WakeFd { fd: fds[0], write_fd: fds[1] })
    }

    /// Makes the fd readable (idempotent in effect: clear() drains any count).
    fn set(&self) {
        let one: u64 = 1;
        #[cfg(target_os = "linux")]
        let fd = self.fd;
        #[cfg(not(target_os = "linux"))]
        let fd = self.write_fd;
        // SAFETY: writes 8 bytes from a live u64; failure (counter full) still leaves it readable.
        unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    }

    fn clear(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live local buffer of the given length; the fd is non-blocking.
        while unsafe { libc::read(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
    }
}

impl Drop for WakeFd {
    fn drop(&mut self) {
        // SAFETY: the fds are owned by this struct and closed exactly once.
        unsafe {
            libc::close(self.fd);
            #[cfg(not(target_os = "linux"))]
            libc::close(self.write_fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    #[test]
    fn a_byte_budget_drops_big_events_and_reports_them() {
        let q = EventQueue::with_limits(1000, 4096).unwrap();
        let big = |n: usize| {
            let mut e = Event::new(EventKind::Message, 1);
            e.text = Some("x".repeat(n));
            e
        };
        assert!(q.push(big(2000)));
        assert!(!q.push(big(3000)), "over the byte budget");
        assert!(q.push(big(100)), "small ones still fit");
        assert_eq!(q.pop(Some(Duration::ZERO)).unwrap().unwrap().text.unwrap().len(), 2000);
        let dropped = q.pop(Some(Duration::ZERO)).unwrap().unwrap();
        assert_eq!(dropped.text.unwrap().len(), 100);
        let report = q.pop(Some(Duration::ZERO)).unwrap().unwrap();
        assert_eq!((report.kind, report.count), (EventKind::Dropped, 1));
        assert!(q.push(big(3000)), "room again once taken");
    }

    #[test]
    fn fd_is_readable_exactly_while_events_wait() {
        let q = EventQueue::new(16).unwrap();
        assert!(!readable(q.fd()));
        q.push(Event::new(EventKind::Connect, 1));
        q.push(Event::new(EventKind::Join, 1));
        assert!(readable(q.fd()));
        q.pop(Some(Duration::ZERO)).unwrap();
        assert!(readable(q.fd()));
        q.pop(Some(Duration::ZERO)).unwrap();
        assert!(!readable(q.fd()));
    }

    #[test]
    fn events_are_numbered_in_order() {
        let q = EventQueue::new(16).unwrap();
        for i in 1..=3 {
            q.push(Event::new(EventKind::Message, i));
        }
        let seqs: Vec<u64> = (0..3).map(|_| q.pop(None).unwrap().unwrap().seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
    }

    #[test]
    fn overflow_is_counted_and_reported_by_a_dropped_event() {
        let q = EventQueue::new(16).unwrap();
        for i in 0..20 {
            q.push(Event::new(EventKind::Message, i));
        }
        assert_eq!(q.dropped_total(), 4);
        let mut kinds = Vec::new();
        while let Some(ev) = q.pop(Some(Duration::ZERO)).unwrap() {
            kinds.push((ev.kind, ev.count));
        }
        assert_eq!(kinds.len(), 17);
        assert_eq!(kinds.last(), Some(&(EventKind::Dropped, 4)));
    }

    #[test]
    fn after_close_what_was_queued_can_still_be_taken() {
        let q = EventQueue::new(16).unwrap();
        q.push(Event::new(EventKind::Message, 1));
        q.close();
        assert!(!q.push(Event::new(EventKind::Message, 2)), "intake is closed");
        assert!(readable(q.fd()));
        assert_eq!(q.pop(Some(Duration::ZERO)).unwrap().unwrap().conn_id, 1);
        assert_eq!(q.pop(Some(Duration::ZERO)), Err(Closed));
        assert!(readable(q.fd()), "stays readable: a host in poll() learns of the stop");
    }

    #[test]
    fn a_dropped_report_names_the_message_ids_lost() {
        let q = EventQueue::new(16).unwrap();
        for i in 1..=20u64 {
            let mut e = Event::new(EventKind::Message, 1);
            e.room = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
            e.msg_id = i;
            q.push(e);
        }
        let events: Vec<Event> = std::iter::from_fn(|| q.pop(Some(Duration::ZERO)).unwrap()).collect();
        let d = events.iter().find(|e| e.kind == EventKind::Dropped).unwrap();
        assert_eq!((d.count, d.msg_id), (4, 20));
        let ranges: serde_json::Value = serde_json::from_str(d.text.as_deref().unwrap()).unwrap();
        assert_eq!(ranges, serde_json::json!({"odd": [17, 19], "even": [18, 20]}));
    }

    #[test]
    fn close_wakes_a_waiting_poller() {
        let q = Arc::new(EventQueue::new(16).unwrap());
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(None));
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(t.join().unwrap(), Err(Closed));
        assert!(readable(q.fd()), "a host in poll() must wake up on stop");
    }

    #[test]
    fn pop_times_out() {
        let q = EventQueue::new(16).unwrap();
        let t = Instant::now();
        assert_eq!(q.pop(Some(Duration::from_millis(30))), Ok(None));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
