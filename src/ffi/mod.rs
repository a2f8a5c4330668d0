//! The C ABI. Only the C surface lives here: argument checks, UTF-8 and NULL handling, result
//! codes, ownership of returned memory, and the panic boundary. Each file is one C type and
//! reads like its part of `include/embedchat.h`.
//!
//! Every function that takes a pointer is an `unsafe extern "C" fn`: what C must uphold (valid
//! pointers from this library, no use after `chat_free`) is in its comment under "Safety", and
//! every pointer is reached through the checked helpers below. Every body runs inside `entry`,
//! the one panic boundary.
#![allow(non_camel_case_types)]

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

// One file per C type: engine.rs is `chat_engine`, event.rs `chat_event`, result.rs `chat_result`.
pub mod engine;
pub mod event;
pub mod result;
pub mod strings;

pub use engine::*;
pub use event::*;
pub use result::*;
pub use strings::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_RESULT: Cell<c_int> = const { Cell::new(0) };
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

pub(crate) fn last_result() -> c_int {
    LAST_RESULT.with(Cell::get)
}

/// Records the failure `chat_last_error()` and `chat_last_result()` report on this thread, and
/// returns `code` (as the C `int`).
pub(crate) fn fail(code: chat_result, msg: impl Into<String>) -> c_int {
    let mut bytes = msg.into().into_bytes();
    bytes.retain(|b| *b != 0);
    let text = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    LAST_RESULT.with(|r| r.set(code as c_int));
    code as c_int
}

/// A failed call: the code already recorded by `fail` (so `?` works on engine errors too).
pub(crate) struct Failed(c_int);

impl From<crate::Error> for Failed {
    fn from(e: crate::Error) -> Self {
        Failed(fail(chat_result::from(e.kind()), e.to_string()))
    }
}

/// What an entry point returns when it fails: its error code, or NULL, or 0.
pub(crate) trait FailValue {
    fn failed(code: c_int) -> Self;
}

impl FailValue for c_int {
    fn failed(code: c_int) -> Self {
        code
    }
}

impl FailValue for u16 {
    fn failed(_: c_int) -> Self {
        0
    }
}

impl FailValue for () {
    fn failed(_: c_int) -> Self {}
}

impl<T> FailValue for *mut T {
    fn failed(_: c_int) -> Self {
        std::ptr::null_mut()
    }
}

/// Every entry point's body runs in here: a failure becomes its C value with the reason
/// recorded, and a panic becomes `CHAT_ERR_PANIC` (or NULL, or 0) plus a last-error text, so no
/// unwind ever reaches C.
pub(crate) fn entry<T: FailValue>(f: impl FnOnce() -> Result<T, Failed>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(Failed(code))) => T::failed(code),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            T::failed(fail(chat_result::CHAT_ERR_PANIC, format!("internal panic (please report): {what}")))
        }
    }
}

/// A required string argument: NULL → `CHAT_ERR_NULL`, bad UTF-8 → `CHAT_ERR_UTF8`, both
/// naming the argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid and unchanged during the call.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failed> {
    if p.is_null() {
        return Err(Failed(fail(chat_result::CHAT_ERR_NULL, format!("argument `{name}` is NULL"))));
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string that outlives the call.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failed(fail(
            chat_result::CHAT_ERR_UTF8,
            format!("argument `{name}` is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()),
        ))
    })
}

/// An optional string argument: NULL is None.
///
/// # Safety
/// As `str_arg`.
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Failed> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's promise about `p` is passed on.
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// Takes back ownership of a Box this library gave to C.
///
/// # Safety
/// `p` is not NULL, came from `Box::into_raw` of a `Box<T>` in this library, and is given back
/// exactly once.
pub(crate) unsafe fn take_box<T>(p: *mut T) -> Box<T> {
    // SAFETY: guaranteed by the caller, see above.
    unsafe { Box::from_raw(p) }
}
