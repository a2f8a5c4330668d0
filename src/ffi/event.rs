//! `chat_event`: one thing that happened, as a plain C struct the host reads directly.

use std::ffi::{c_char, CString};

use crate::api::{Event, EventKind};

/// What an event reports.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chat_event_kind {
    /// A client connected (name set; room NULL).
    CHAT_EVENT_CONNECT = 1,
    /// A client joined a room (room, name set).
    CHAT_EVENT_JOIN = 2,
    /// A client sent a chat message (room, name, text set; msg_id > 0 if it was broadcast).
    CHAT_EVENT_MESSAGE = 3,
    /// A client left a room (room, name set).
    CHAT_EVENT_LEAVE = 4,
    /// A client's connection ended (name set; code = the WebSocket close code, 1006 if none).
    CHAT_EVENT_DISCONNECT = 5,
    /// The event queue was full: `code` events were lost before this one.
    CHAT_EVENT_DROPPED = 6,
    /// A slow client is losing messages to its room's drop policy: `code` = dropped so far for
    /// this connection (reported at 1, 10, 100… and once more at disconnect).
    CHAT_EVENT_LAGGING = 7,
    /// A private message (name = sender, text, code = the receiving connection's id).
    CHAT_EVENT_WHISPER = 8,
    /// A client renamed itself (name = the new name, text = the old one).
    CHAT_EVENT_NICK = 9,
    /// With `"join_hook": true`: `name` asks to join `room`; answer with `chat_approve` or
    /// `chat_reject` and `reply_token` (the JOIN event follows once it is a member).
    CHAT_EVENT_JOIN_REQUEST = 10,
    /// With `"published_events": true`: a message entered `room` with id `msg_id` and no
    /// MESSAGE event reported that id: a held
    /// message the host approved or replaced (relay `host`), or a host message from
    /// `chat_broadcast`, the HTTP API or the control socket (conn_id 0, name = the sender shown).
    /// With MESSAGE events whose msg_id > 0, every message that enters a room's history is
    /// reported exactly once: what a host that stores messages listens to.
    CHAT_EVENT_PUBLISHED = 11,
    /// With `"refused_events": true`: a WebSocket upgrade was refused before it became a
    /// connection (conn_id 0; code = the HTTP status, text = the reason the client was sent,
    /// room = the room it asked for, if valid). Queued only while the event queue is less than
    /// half full, so refusals never crowd out the chat's events.
    CHAT_EVENT_REFUSED = 12,
    /// In a cluster (`redis_url`): this node lost Redis and serves its own clients alone
    /// (code 0, text = why), or has Redis back and is one with the cluster again (code 1).
    CHAT_EVENT_CLUSTER = 13,
}

/// One event. Every pointer is owned by the event and valid until `chat_event_free` (pull API)
/// or until the callback returns (callback API); copy what you keep. Strings are UTF-8 and
/// NUL-terminated; a field that does not apply is NULL.
#[repr(C)]
pub struct chat_event {
    pub kind: chat_event_kind,
    /// Per-engine sequence number: 1, 2, 3… in the order events happened.
    pub seq: u64,
    /// The connection (0 for `CHAT_EVENT_DROPPED`).
    pub conn_id: u64,
    /// Per-room message id of a broadcast message; 0 otherwise.
    pub msg_id: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Disconnect: the close code. Dropped: how many events were lost. Lagging: how many
    /// messages this connection lost. Whisper: the receiving connection. Refused: the HTTP
    /// status. Otherwise 0.
    pub code: u64,
    /// The room, or NULL.
    pub room: *const c_char,
    /// The client's display name, or NULL.
    pub name: *const c_char,
    /// Message text, or NULL. May contain NUL bytes: `text_len` is its length in bytes (PHP's
    /// header declares it `const uint8_t *` so FFI reads all of it, see build.rs).
    pub text: *const c_char,
    pub text_len: usize,
    /// The whole event as one JSON object (always set).
    pub json: *const c_char,
    /// Non-zero when the event waits for the host's decision (a message under relay `host`, a
    /// JOIN_REQUEST under `join_hook`): answer with `chat_approve`, `chat_reject` or (messages)
    /// `chat_replace` before `hook_timeout_ms`.
    pub reply_token: u64,
    /// The site's user id (the login token's `sub`) when the connection logged in with a
    /// token (config `auth`), else NULL. Added after `reply_token` so the fields before it keep
    /// their offsets; it grew the struct, hence ABI 2 (an ABI 1 library has no such field).
    pub user: *const c_char,
}

/// The struct C sees, followed by the memory its pointers point into. `raw` comes first so a
/// `chat_event *` is also a pointer to the whole allocation.
#[repr(C)]
pub(crate) struct OwnedEvent {
    raw: chat_event,
    room: Option<CString>,
    name: Option<CString>,
    text: Option<Vec<u8>>,
    json: CString,
    user: Option<CString>,
}

fn cstring(s: &str) -> CString {
    // Room and names carry no control characters; this only guards against future changes.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl OwnedEvent {
    pub(crate) fn new(ev: &Event) -> Box<OwnedEvent> {
        let kind = match ev.kind {
            EventKind::Connect => chat_event_kind::CHAT_EVENT_CONNECT,
            EventKind::Join => chat_event_kind::CHAT_EVENT_JOIN,
            EventKind::Message => chat_event_kind::CHAT_EVENT_MESSAGE,
            EventKind::Leave => chat_event_kind::CHAT_EVENT_LEAVE,
            EventKind::Disconnect => chat_event_kind::CHAT_EVENT_DISCONNECT,
            EventKind::Dropped => chat_event_kind::CHAT_EVENT_DROPPED,
            EventKind::Lagging => chat_event_kind::CHAT_EVENT_LAGGING,
            EventKind::Whisper => chat_event_kind::CHAT_EVENT_WHISPER,
            EventKind::Nick => chat_event_kind::CHAT_EVENT_NICK,
            EventKind::JoinRequest => chat_event_kind::CHAT_EVENT_JOIN_REQUEST,
            EventKind::Published => chat_event_kind::CHAT_EVENT_PUBLISHED,
            EventKind::Refused => chat_event_kind::CHAT_EVENT_REFUSED,
            EventKind::Cluster => chat_event_kind::CHAT_EVENT_CLUSTER,
        };
        let room = ev.room.as_deref().map(cstring);
        let name = ev.name.as_deref().map(cstring);
        let user = ev.user.as_deref().map(cstring);
        let text = ev.text.as_ref().map(|t| {
            let mut v = Vec::with_capacity(t.len() + 1);
            v.extend_from_slice(t.as_bytes());
            v.push(0);
            v
        });
        let json = cstring(&ev.to_json());
        let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        let raw = chat_event {
            kind,
            seq: ev.seq,
            conn_id: ev.conn_id,
            msg_id: ev.msg_id,
            ts_ms: ev.ts,
            code: ev.code(),
            room: ptr(&room),
            name: ptr(&name),
            text: text.as_ref().map_or(std::ptr::null(), |t| t.as_ptr() as *const c_char),
            text_len: text.as_ref().map_or(0, |t| t.len() - 1),
            json: json.as_ptr(),
            reply_token: ev.token,
            user: ptr(&user),
        };
        // Moving CString/Vec values does not move their heap buffers, so the pointers stay valid.
        Box::new(OwnedEvent { raw, room, name, text, json, user })
    }

    pub(crate) fn as_raw(&self) -> *const chat_event {
        &self.raw
    }

    pub(crate) fn into_raw(self: Box<Self>) -> *mut chat_event {
        Box::into_raw(self) as *mut chat_event
    }
}

/// Frees an event returned by `chat_poll_event`. NULL is a no-op. Any thread; never free an
/// event passed to a callback (the library owns those), and never free one twice.
///
/// # Safety
/// `ev` is NULL or an event from `chat_poll_event`, freed exactly once.
#[no_mangle]
pub unsafe extern "C" fn chat_event_free(ev: *mut chat_event) {
    if ev.is_null() {
        return;
    }
    super::entry(|| {
        // SAFETY: `ev` came from OwnedEvent::into_raw (chat_poll_event), once (the Safety
        // section), and `raw` is the first field of the repr(C) OwnedEvent, so it is the
        // original Box pointer.
        drop(unsafe { super::take_box(ev as *mut OwnedEvent) });
        Ok(())
    })
}
