//! The one error type of the engine, and the one table that says how each kind of failure is
//! reported on every surface: its `chat_result` code in C, its stable code in JSON replies (HTTP
//! API, control socket), its HTTP status and a short description.
//!
//! `Error` carries the details of one failure (which connection, which key); `ErrorKind` is what
//! the surfaces switch on. Adding a kind is one line in `kinds!` (and, if C must tell it apart, a
//! `chat_result` value with the same number in `src/ffi/result.rs`, which a test checks).

use std::net::SocketAddr;

use crate::config::ConfigError;

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident = $c:literal, $wire:literal, $status:literal, $text:literal;)*) => {
        /// What kind of failure an `Error` is; see the table in `src/error.rs`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        impl ErrorKind {
            /// Every kind, in table order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// The `chat_result` value C sees (negative).
            pub const fn c_code(self) -> i32 {
                match self { $(ErrorKind::$kind => $c,)* }
            }

            /// The stable code in JSON replies (`{"ok": false, "error": CODE}`).
            pub const fn wire_code(self) -> &'static str {
                match self { $(ErrorKind::$kind => $wire,)* }
            }

            /// The HTTP status of the HTTP API's answer.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorKind::$kind => $status,)* }
            }

            /// A short description of the kind (what `chat_result_str` says).
            pub const fn describe(self) -> &'static str {
                match self { $(ErrorKind::$kind => $text,)* }
            }

            /// The kind with this wire code, if any.
            pub fn from_wire_code(code: &str) -> Option<ErrorKind> {
                match code { $($wire => Some(ErrorKind::$kind),)* _ => None }
            }
        }
    };
}

kinds! {
    /// A required pointer argument was NULL (C only).
    Null = -1, "null", 400, "a required argument was NULL";
    /// A string argument was not valid UTF-8 (C only).
    Utf8 = -2, "utf8", 400, "a string argument was not valid UTF-8";
    Config = -3, "config", 400, "invalid configuration";
    Bind = -4, "bind", 500, "could not bind the listen address";
    Stopped = -5, "stopped", 503, "the engine is stopped";
    UnknownConnection = -6, "unknown_connection", 404, "no such connection";
    QueueFull = -7, "queue_full", 503, "the connection's outbound queue is full";
    /// A bug inside the library was caught before it reached the host.
    Panic = -8, "panic", 500, "internal panic caught";
    Internal = -9, "internal", 500, "internal error";
    Invalid = -10, "invalid", 400, "invalid argument";
    UnknownToken = -11, "unknown_token", 400, "no message waits for that reply token";
    Control = -12, "control", 502, "the control socket could not be used";
    Unsupported = -13, "unsupported", 400, "not possible on a handle from chat_connect";
    /// A room name that is empty, too long or has control characters (C: invalid argument).
    BadRoom = -10, "bad_room", 400, "bad room name";
    /// No connection of that logged-in user is open (C: invalid argument).
    UnknownUser = -10, "unknown_user", 404, "no such user";
    /// A request to the HTTP API or the control socket that cannot be read.
    BadRequest = -10, "bad_request", 400, "bad request";
    /// The HTTP API's key is missing or wrong.
    Unauthorized = -10, "unauthorized", 401, "missing or wrong API key";
    NotFound = -10, "not_found", 404, "not found";
    MethodNotAllowed = -10, "method_not_allowed", 405, "method not allowed";
    TooLarge = -10, "too_large", 413, "request body too large";
}

/// Why an engine call failed. `kind()` tells how it is reported; `Display` is the full text
/// (what `chat_last_error()` gives and what JSON replies carry as `message`).
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
    /// No open connection belongs to this logged-in user (token `sub`).
    UnknownUser(String),
    BadRoom(String),
    /// The connection's outbound backlog is full (it is being closed as a slow consumer).
    QueueFull(u64),
    /// No message waits for a decision under this token (decided already, or timed out).
    UnknownToken(u64),
    /// An argument is not acceptable (too long, wrong mode…); the text says which and why.
    InvalidArgument(String),
    /// Not possible on this kind of handle (events and moderation on a connected handle).
    Unsupported(&'static str),
    /// Any other kind, with its text (request errors of the HTTP API and control socket).
    Other(ErrorKind, String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::Bind { .. } => ErrorKind::Bind,
            Error::Io(_) => ErrorKind::Internal,
            Error::Control(_) => ErrorKind::Control,
            Error::Stopped => ErrorKind::Stopped,
            Error::UnknownConnection(_) => ErrorKind::UnknownConnection,
            Error::UnknownUser(_) => ErrorKind::UnknownUser,
            Error::BadRoom(_) => ErrorKind::BadRoom,
            Error::QueueFull(_) => ErrorKind::QueueFull,
            Error::UnknownToken(_) => ErrorKind::UnknownToken,
            Error::InvalidArgument(_) => ErrorKind::Invalid,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Other(k, _) => *k,
        }
    }

    pub(crate) fn other(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::Other(kind, message.into())
    }

    /// The error a JSON reply describes (`error` code, `message`), as the control socket's client
    /// rebuilds it; `id` is the connection the request named, if any.
    pub(crate) fn from_reply(code: &str, message: String, id: Option<u64>) -> Error {
        match ErrorKind::from_wire_code(code) {
            Some(ErrorKind::UnknownConnection) => Error::UnknownConnection(id.unwrap_or(0)),
            Some(ErrorKind::QueueFull) => Error::QueueFull(id.unwrap_or(0)),
            Some(ErrorKind::Stopped) => Error::Stopped,
            Some(ErrorKind::BadRoom) => Error::BadRoom(message),
            Some(ErrorKind::UnknownUser) => Error::UnknownUser(message),
            Some(ErrorKind::Invalid) => Error::InvalidArgument(message),
            Some(kind) => Error::Other(kind, message),
            None => Error::Control(message),
        }
    }

    /// The JSON reply of a failed request: `{"ok": false, "error": CODE, "message": TEXT}`.
    pub(crate) fn to_reply(&self) -> serde_json::Value {
        serde_json::json!({"ok": false, "error": self.kind().wire_code(), "message": self.to_string()})
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Control(m) | Error::InvalidArgument(m) | Error::Other(_, m) => f.write_str(m),
            Error::Stopped => f.write_str("the engine is stopped"),
            Error::UnknownConnection(id) => write!(f, "no open connection with id {id}"),
            Error::UnknownUser(m) => f.write_str(m),
            Error::BadRoom(m) => write!(f, "bad room name: {m}"),
            Error::QueueFull(id) => {
                write!(f, "connection {id} is not reading; its backlog is full and it is being closed")
            }
            Error::UnknownToken(t) => {
                write!(f, "no message waits for a decision under token {t} (already decided, or timed out)")
            }
            Error::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_are_unique_and_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_wire_code(k.wire_code()), Some(*k));
            assert!(k.c_code() < 0);
        }
    }

    #[test]
    fn a_failed_request_reply_names_its_kind_and_status() {
        let e = Error::UnknownConnection(9);
        assert_eq!(e.kind().http_status(), 404);
        assert_eq!(e.to_reply()["error"], "unknown_connection");
        assert_eq!(Error::BadRoom("x".into()).kind().http_status(), 400);
        assert_eq!(Error::QueueFull(9).kind().http_status(), 503);
        let back = Error::from_reply("unknown_connection", "gone".into(), Some(9));
        assert!(matches!(back, Error::UnknownConnection(9)));
    }
}
