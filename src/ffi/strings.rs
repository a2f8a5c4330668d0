//! Library-owned and caller-owned strings, versions, and the last error text.

use std::ffi::{c_char, CString};

/// The text of the last failure on the calling thread (thread-local), or "" if none yet.
///
/// The string is owned by the library and stays valid until the next failing `chat_*` call on
/// the same thread; copy it if you need it longer (PHP's FFI copies automatically). Successful
/// calls do not clear it. Never NULL.
#[no_mangle]
pub extern "C" fn chat_last_error() -> *const c_char {
    super::last_error_ptr()
}

/// The `chat_result` of the last failure on the calling thread (thread-local), or CHAT_OK if
/// none yet: what `chat_start` or `chat_connect` failed with when they return NULL (a bad
/// config is CHAT_ERR_CONFIG, a busy port CHAT_ERR_BIND, an unreachable daemon
/// CHAT_ERR_CONTROL), so a host need not read the text to react. Successful calls do not clear
/// it. Takes nothing, any thread, never fails.
#[no_mangle]
pub extern "C" fn chat_last_result() -> std::ffi::c_int {
    super::last_result()
}

/// Frees a string returned as `char *` by this library (e.g. `chat_stats_json`).
///
/// NULL is a no-op. Never pass a string from anywhere else, or the same one twice. Any thread.
///
/// # Safety
/// `s` is NULL or a `char *` this library returned, freed exactly once.
#[no_mangle]
pub unsafe extern "C" fn chat_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: not NULL; C passes a pointer this library made with CString::into_raw, exactly
    // once (the Safety section).
    drop(unsafe { CString::from_raw(s) });
}

/// The library version, e.g. "0.1.0". Static, owned by the library, never NULL. Any thread.
#[no_mangle]
pub extern "C" fn chat_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The ABI version of the loaded library. It changes whenever a function, struct or enum in the
/// header changes incompatibly; bindings compare it with the value they were written for
/// (`CHAT_ABI_VERSION` in C) at load time. Takes nothing, owns nothing, any thread, never fails.
#[no_mangle]
pub extern "C" fn chat_abi_version() -> u32 {
    CHAT_ABI_VERSION
}

/// The ABI version this build implements (what `chat_abi_version()` returns). 2: `user` was
/// appended to `chat_event`. The layout of each version is recorded in include/abi-layout.txt.
pub const CHAT_ABI_VERSION: u32 = 2;

/// Returns a caller-owned copy (free with `chat_string_free`).
pub(crate) fn owned(s: String) -> *mut c_char {
    let mut bytes = s.into_bytes();
    bytes.retain(|b| *b != 0);
    CString::new(bytes).map(CString::into_raw).unwrap_or(std::ptr::null_mut())
}
