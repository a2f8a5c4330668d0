//! `chat_result`: the codes every `int`-returning function uses, and their text.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use crate::error::ErrorKind;

/// Result codes. `CHAT_OK` (0) is success; errors are negative. Functions that count something
/// (`chat_broadcast`, `chat_dispatch`, `chat_poll_event`) return the count (>= 0) on success.
/// `chat_last_error()` has the details of the last failure on the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chat_result {
    /// Success.
    CHAT_OK = 0,
    /// A required pointer argument was NULL.
    CHAT_ERR_NULL = -1,
    /// A string argument was not valid UTF-8.
    CHAT_ERR_UTF8 = -2,
    /// The configuration JSON was invalid (the message names the key).
    CHAT_ERR_CONFIG = -3,
    /// The listen address could not be bound (busy port, no permission).
    CHAT_ERR_BIND = -4,
    /// The engine was stopped (`chat_stop` was called).
    CHAT_ERR_STOPPED = -5,
    /// No open connection has that id.
    CHAT_ERR_UNKNOWN_CONN = -6,
    /// The connection's outbound queue is full; it is being closed as a slow consumer.
    CHAT_ERR_QUEUE_FULL = -7,
    /// A bug inside the library was caught before it could reach the host.
    CHAT_ERR_PANIC = -8,
    /// An operating-system or other internal failure.
    CHAT_ERR_INTERNAL = -9,
    /// An argument is out of range or not allowed now (too long, bad room name, wrong mode).
    CHAT_ERR_INVALID = -10,
    /// No message waits for a decision under that reply token (decided already, or timed out).
    CHAT_ERR_UNKNOWN_TOKEN = -11,
    /// The control socket could not be set up or reached, or the daemon behind a
    /// `chat_connect` handle went away.
    CHAT_ERR_CONTROL = -12,
    /// Not possible on this kind of handle (events and moderation on a `chat_connect` handle).
    CHAT_ERR_UNSUPPORTED = -13,
}

/// Every code (module-private so cbindgen does not export it).
const ALL: [chat_result; 14] = [
    chat_result::CHAT_OK,
    chat_result::CHAT_ERR_NULL,
    chat_result::CHAT_ERR_UTF8,
    chat_result::CHAT_ERR_CONFIG,
    chat_result::CHAT_ERR_BIND,
    chat_result::CHAT_ERR_STOPPED,
    chat_result::CHAT_ERR_UNKNOWN_CONN,
    chat_result::CHAT_ERR_QUEUE_FULL,
    chat_result::CHAT_ERR_PANIC,
    chat_result::CHAT_ERR_INTERNAL,
    chat_result::CHAT_ERR_INVALID,
    chat_result::CHAT_ERR_UNKNOWN_TOKEN,
    chat_result::CHAT_ERR_CONTROL,
    chat_result::CHAT_ERR_UNSUPPORTED,
];

impl From<ErrorKind> for chat_result {
    /// The code `src/error.rs`'s table gives the kind.
    fn from(kind: ErrorKind) -> Self {
        ALL.iter().copied().find(|r| *r as i32 == kind.c_code()).unwrap_or(chat_result::CHAT_ERR_INTERNAL)
    }
}

impl chat_result {
    /// The description from `src/error.rs`'s table (the first kind with this code), NUL-ended.
    fn text(self) -> &'static CStr {
        static TEXTS: OnceLock<Vec<(i32, CString)>> = OnceLock::new();
        let texts = TEXTS.get_or_init(|| {
            let mut t = vec![(0, CString::new("ok").unwrap_or_default())];
            for k in ErrorKind::ALL {
                if !t.iter().any(|(c, _)| *c == k.c_code()) {
                    t.push((k.c_code(), CString::new(k.describe()).unwrap_or_default()));
                }
            }
            t
        });
        texts
            .iter()
            .find(|(c, _)| *c == self as i32)
            .map(|(_, s)| s.as_c_str())
            .unwrap_or(c"unknown result code")
    }
}

/// A short English description of a result code.
///
/// Returns a static NUL-terminated string owned by the library (never free it); unknown codes
/// and positive counts get "unknown result code". Any thread; never NULL.
#[no_mangle]
pub extern "C" fn chat_result_str(code: c_int) -> *const c_char {
    let text = ALL.iter().find(|r| **r as i32 == code).map(|r| r.text()).unwrap_or(c"unknown result code");
    text.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_c_code_here() {
        for k in ErrorKind::ALL {
            assert_eq!(chat_result::from(*k) as i32, k.c_code(), "{k:?}");
        }
        for r in ALL {
            assert_ne!(r.text().to_bytes(), b"unknown result code", "{r:?}");
        }
    }
}
