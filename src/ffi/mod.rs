//! The C ABI. Only the C surface lives here: argument checks, UTF-8 and NULL handling, result
//! codes, ownership of returned memory, and the panic boundary. Each file is one C type and
//! reads like its part of `include/embedchat.h`.
//!
//! The functions are safe `extern "C"` functions in Rust's eyes; what C must uphold (valid
//! pointers from this library, no use after `chat_free`) is in each function's comment, and
//! every pointer is reached through the checked helpers below.
#![allow(non_camel_case_types)]

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, CStr, CString};
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
    static LAST_RESULT: Cell<std::ffi::c_int> = const { Cell::new(0) };
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

pub(crate) fn last_result() -> std::ffi::c_int {
    LAST_RESULT.with(Cell::get)
}

/// Records the failure `chat_last_error()` and `chat_last_result()` report on this thread, and
/// returns `code` (as the C `int`).
pub(crate) fn fail(code: chat_result, msg: impl Into<String>) -> std::ffi::c_int {
    let mut bytes = msg.into().into_bytes();
    bytes.retain(|b| *b != 0);
    let text = CString::new(bytes).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    LAST_RESULT.with(|r| r.set(code as std::ffi::c_int));
    code as std::ffi::c_int
}

/// Runs `f`, turning a panic into `on_panic` plus a last-error text, so no unwind reaches C.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(chat_result::CHAT_ERR_PANIC, format!("internal panic (please report): {what}"));
            on_panic
        }
    }
}

/// A required string argument: NULL → `CHAT_ERR_NULL`, bad UTF-8 → `CHAT_ERR_UTF8`, both
/// naming the argument.
pub(crate) fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, std::ffi::c_int> {
    if p.is_null() {
        return Err(fail(chat_result::CHAT_ERR_NULL, format!("argument `{name}` is NULL")));
    }
    // SAFETY: not NULL; the C caller promises a NUL-terminated string that outlives the call.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        fail(
            chat_result::CHAT_ERR_UTF8,
            format!("argument `{name}` is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()),
        )
    })
}

/// An optional string argument: NULL is None.
pub(crate) fn opt_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, std::ffi::c_int> {
    if p.is_null() {
        Ok(None)
    } else {
        str_arg(p, name).map(Some)
    }
}

/// Writes through an out-pointer the caller checked for NULL.
pub(crate) fn write_out<T>(out: *mut *mut T, value: *mut T) {
    // SAFETY: callers check `out` for NULL; the C caller promises it points to writable storage.
    unsafe { *out = value };
}

/// Takes back ownership of a Box this library gave to C.
pub(crate) fn take_box<T>(p: *mut T) -> Box<T> {
    // SAFETY: callers check NULL; the C caller passes a pointer from Box::into_raw, exactly once.
    unsafe { Box::from_raw(p) }
}
