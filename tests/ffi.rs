//! The C ABI contract, called exactly as C calls it: NULLs, bad UTF-8, use after stop, double
//! stop, callbacks that call back in, and a poll woken by a stop on another thread.

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use embedchat::ffi::*;

mod common;
use common::{last_error, upgrade_on};

fn start(cfg: &str) -> *mut chat_engine {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let c = CString::new(cfg).unwrap();
        let e = chat_start(c.as_ptr());
        assert!(!e.is_null(), "{}", last_error());
        e
    }
}

const ERR_NULL: i32 = chat_result::CHAT_ERR_NULL as i32;
const ERR_UTF8: i32 = chat_result::CHAT_ERR_UTF8 as i32;
const ERR_STOPPED: i32 = chat_result::CHAT_ERR_STOPPED as i32;
const ERR_INVALID: i32 = chat_result::CHAT_ERR_INVALID as i32;

#[test]
fn null_everywhere_is_an_error_code_never_a_crash() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let text = CString::new("x").unwrap();
        assert_eq!(chat_broadcast(null_mut(), null(), text.as_ptr()), ERR_NULL);
        assert!(last_error().contains("engine"), "{}", last_error());
        assert_eq!(chat_send(null_mut(), 1, text.as_ptr()), ERR_NULL);
        assert_eq!(chat_kick(null_mut(), 1, null()), ERR_NULL);
        assert_eq!(chat_set_callback(null_mut(), None, null_mut()), ERR_NULL);
        assert_eq!(chat_dispatch(null_mut(), 0), ERR_NULL);
        let mut ev = null_mut();
        assert_eq!(chat_poll_event(null_mut(), 0, &mut ev), ERR_NULL);
        assert_eq!(chat_event_fd(null()), ERR_NULL);
        assert!(chat_stats_json(null()).is_null());
        assert_eq!(chat_port(null()), 0);
        assert_eq!(chat_stop(null_mut()), ERR_NULL);
        assert_eq!(chat_approve(null_mut(), 1), ERR_NULL);
        assert!(chat_presence_json(null(), null()).is_null());
        assert_eq!(chat_reject(null_mut(), 1, null()), ERR_NULL);
        assert_eq!(chat_replace(null_mut(), 1, c"x".as_ptr()), ERR_NULL);
        assert!(chat_connect(null()).is_null());
        assert!(chat_connect_trusting(null(), c"root".as_ptr()).is_null());
        assert_eq!(chat_last_result(), ERR_NULL);
        assert_eq!(chat_kick_user(null_mut(), c"42".as_ptr(), null()), ERR_NULL);
        assert!(chat_rooms_json(null()).is_null());
        assert_eq!(chat_broadcast_from(null_mut(), null(), c"x".as_ptr(), null()), ERR_NULL);
        assert_eq!(chat_reload_tls(null_mut()), ERR_NULL);
        chat_free(null_mut());
        chat_event_free(null_mut());
        chat_string_free(null_mut());

        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        assert_eq!(chat_broadcast(e, null(), null()), ERR_NULL);
        assert!(last_error().contains("`text`"), "{}", last_error());
        assert_eq!(chat_send(e, 1, null()), ERR_NULL);
        assert_eq!(chat_poll_event(e, 0, null_mut()), ERR_NULL);
        assert_eq!(chat_broadcast(e, null(), text.as_ptr()), 0, "room NULL = every room (none yet)");
        assert_eq!(chat_replace(e, 1, null()), ERR_NULL);
        assert_eq!(chat_approve(e, 77), chat_result::CHAT_ERR_UNKNOWN_TOKEN as i32);
        assert_eq!(chat_kick_user(e, null(), null()), ERR_NULL);
        assert_eq!(chat_broadcast_from(e, null(), c"x".as_ptr(), c"Front desk".as_ptr()), 0);
        assert_eq!(
            chat_broadcast_from(e, null(), c"x".as_ptr(), c" \n".as_ptr()),
            ERR_INVALID,
            "nothing visible"
        );
        assert_eq!(chat_kick_user(e, c"nobody".as_ptr(), null()), ERR_INVALID, "no such user");
        assert_eq!(chat_reload_tls(e), ERR_INVALID, "no `tls` in the config");
        let rooms = chat_rooms_json(e);
        assert_eq!(CStr::from_ptr(rooms).to_str().unwrap(), "[]");
        chat_string_free(rooms);
        let p = chat_presence_json(e, null());
        // SAFETY: a string from chat_presence_json, freed once below.
        let snapshot: serde_json::Value = serde_json::from_str(CStr::from_ptr(p).to_str().unwrap()).unwrap();
        assert_eq!(snapshot["rooms"], serde_json::json!({}));
        assert_eq!(snapshot["seq"], 0);
        assert!(snapshot["epoch"].is_string());
        chat_string_free(p);
        chat_free(e);
    }
}

#[test]
fn invalid_utf8_is_refused_and_named() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        let bad = [0x66u8, 0xff, 0x00];
        let bad = bad.as_ptr() as *const std::ffi::c_char;
        assert_eq!(chat_broadcast(e, bad, c"ok".as_ptr()), ERR_UTF8);
        assert!(last_error().contains("`room`"), "{}", last_error());
        assert_eq!(chat_broadcast(e, null(), bad), ERR_UTF8);
        assert_eq!(chat_send(e, 1, bad), ERR_UTF8);
        assert_eq!(chat_kick(e, 1, bad), ERR_UTF8);
        assert!(chat_start(bad).is_null());
        chat_free(e);
    }
}

#[test]
fn bad_config_returns_null_and_names_the_key() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        assert!(chat_start(c"{\"listen\":\"127.0.0.1:0\",\"worker_threads\":0}".as_ptr()).is_null());
        assert!(last_error().contains("`worker_threads`"), "{}", last_error());
        assert_eq!(
            chat_last_result(),
            chat_result::CHAT_ERR_CONFIG as i32,
            "the kind, without reading the text"
        );
        assert!(chat_start(c"not json".as_ptr()).is_null());
        assert!(last_error().starts_with("config"), "{}", last_error());

        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        let busy = std::ffi::CString::new(format!(r#"{{"listen":"127.0.0.1:{}"}}"#, chat_port(e))).unwrap();
        assert!(chat_start(busy.as_ptr()).is_null());
        assert_eq!(chat_last_result(), chat_result::CHAT_ERR_BIND as i32, "{}", last_error());
        assert!(chat_connect(c"/nonexistent/embedchat.sock".as_ptr()).is_null());
        assert_eq!(chat_last_result(), chat_result::CHAT_ERR_CONTROL as i32);
        chat_free(e);
    }
}

#[test]
fn calls_after_stop_return_stopped_and_double_stop_says_so() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        assert!(chat_port(e) > 0);
        assert_eq!(chat_stop(e), 0);
        assert_eq!(chat_stop(e), ERR_STOPPED);
        assert!(last_error().contains("already stopped"));
        assert_eq!(chat_broadcast(e, null(), c"x".as_ptr()), ERR_STOPPED);
        assert_eq!(chat_send(e, 1, c"x".as_ptr()), ERR_STOPPED);
        assert_eq!(chat_kick(e, 1, null()), ERR_STOPPED);
        assert_eq!(chat_dispatch(e, 0), ERR_STOPPED);
        let mut ev = null_mut();
        assert_eq!(chat_poll_event(e, 0, &mut ev), ERR_STOPPED);
        assert!(ev.is_null());
        assert_eq!(chat_event_fd(e), ERR_STOPPED);
        assert_eq!(chat_port(e), 0);
        let stats = chat_stats_json(e);
        // SAFETY: a string from chat_stats_json, freed once below.
        let text = CStr::from_ptr(stats).to_str().unwrap().to_owned();
        chat_string_free(stats);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["running"], false, "final stats stay readable");
        chat_free(e);
    }
}

#[test]
fn result_codes_have_text() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        for code in 0..=11 {
            // SAFETY: static strings.
            let s = CStr::from_ptr(chat_result_str(-code)).to_str().unwrap();
            assert!(!s.is_empty() && s != "unknown result code", "{code}");
        }
        let s = CStr::from_ptr(chat_result_str(-999)).to_str().unwrap();
        assert_eq!(s, "unknown result code");
        assert_eq!(chat_abi_version(), CHAT_ABI_VERSION);
        let v = CStr::from_ptr(chat_version()).to_str().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
    }
}

/// A raw client connecting is enough to produce connect + join events.
fn connect_client(e: *mut chat_engine, name: &str) -> std::net::TcpStream {
    // SAFETY: `e` is a live handle from chat_start.
    let port = unsafe { chat_port(e) };
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    upgrade_on(&mut s, &format!("/ws?name={name}"));
    s
}

struct Ctx {
    engine: *mut chat_engine,
    seen: AtomicUsize,
    broadcasts: AtomicUsize,
}

extern "C" fn reentrant(userdata: *mut c_void, ev: *const chat_event) {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        // SAFETY: userdata is the &Ctx given to chat_set_callback; ev is valid during the call.
        let (ctx, ev) = (&*(userdata as *const Ctx), &*ev);
        ctx.seen.fetch_add(1, Ordering::SeqCst);
        assert!(!ev.json.is_null());
        if ev.kind == chat_event_kind::CHAT_EVENT_JOIN {
            // Calling back into the engine from the callback must not deadlock.
            let n = chat_broadcast(ctx.engine, ev.room, c"welcome!".as_ptr());
            assert!(n >= 0);
            ctx.broadcasts.fetch_add(1, Ordering::SeqCst);
            let stats = chat_stats_json(ctx.engine);
            chat_string_free(stats);
            assert_eq!(chat_set_callback(ctx.engine, Some(reentrant), userdata), 0);
        }
    }
}

#[test]
fn callback_runs_on_the_dispatching_thread_and_may_call_back_in() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        assert_eq!(chat_dispatch(e, 0), ERR_INVALID, "no callback yet");
        let ctx = Box::new(Ctx { engine: e, seen: AtomicUsize::new(0), broadcasts: AtomicUsize::new(0) });
        assert_eq!(chat_set_callback(e, Some(reentrant), &*ctx as *const Ctx as *mut c_void), 0);
        let _c = connect_client(e, "ann");
        let mut total = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while total < 2 && std::time::Instant::now() < deadline {
            let n = chat_dispatch(e, 100);
            assert!(n >= 0, "{}", last_error());
            total += n as usize;
        }
        assert_eq!(ctx.seen.load(Ordering::SeqCst), 2, "connect + join");
        assert_eq!(ctx.broadcasts.load(Ordering::SeqCst), 1);
        assert_eq!(chat_stop(e), 0);
        chat_free(e);
    }
}

#[test]
fn poll_event_hands_out_owned_events_with_all_fields() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0","default_room":"den"}"#);
        let _c = connect_client(e, "zoë");
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut ev = null_mut();
            assert_eq!(chat_poll_event(e, 5000, &mut ev), 1, "{}", last_error());
            // SAFETY: an event we own until chat_event_free.
            let r = &*ev;
            kinds.push(r.kind);
            let name = CStr::from_ptr(r.name).to_str().unwrap();
            assert_eq!(name, "zoë");
            assert!(r.conn_id > 0 && r.seq > 0 && r.ts_ms > 0);
            let json = CStr::from_ptr(r.json).to_str().unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["seq"], r.seq);
            if r.kind == chat_event_kind::CHAT_EVENT_JOIN {
                assert_eq!(CStr::from_ptr(r.room).to_str().unwrap(), "den");
            }
            chat_event_free(ev);
        }
        assert_eq!(kinds, [chat_event_kind::CHAT_EVENT_CONNECT, chat_event_kind::CHAT_EVENT_JOIN]);
        let mut ev = null_mut();
        assert_eq!(chat_poll_event(e, 0, &mut ev), 0, "nothing left: timeout");
        chat_free(e);
    }
}

/// A thread waiting in chat_poll_event with no timeout; joins with its result.
fn waiting_poll(e: *mut chat_engine) -> std::thread::JoinHandle<i32> {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let addr = e as usize;
        let waiter = std::thread::spawn(move || {
            let mut ev = null_mut();
            chat_poll_event(addr as *mut chat_engine, -1, &mut ev)
        });
        std::thread::sleep(Duration::from_millis(100));
        waiter
    }
}

#[test]
fn stop_from_another_thread_wakes_a_waiting_poll() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        let waiter = waiting_poll(e);
        assert_eq!(chat_stop(e), 0);
        assert_eq!(waiter.join().unwrap(), ERR_STOPPED);
        chat_free(e);
    }
}

static ENGINE_THREAD_EVENTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_on_engine_thread(_u: *mut c_void, _ev: *const chat_event) {
    let name = std::thread::current().name().map(String::from);
    assert_eq!(name.as_deref(), Some("embedchat-events"), "never a network thread");
    ENGINE_THREAD_EVENTS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn engine_thread_mode_calls_back_on_its_own_thread() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0","callback_thread":"engine"}"#);
        assert_eq!(chat_set_callback(e, Some(count_on_engine_thread), null_mut()), 0);
        assert_eq!(chat_dispatch(e, 0), ERR_INVALID);
        let _c = connect_client(e, "bo");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while ENGINE_THREAD_EVENTS.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ENGINE_THREAD_EVENTS.load(Ordering::SeqCst), 2);
        assert_eq!(chat_stop(e), 0);
        chat_free(e);
    }
}

#[test]
fn event_fd_is_readable_while_events_wait() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        let fd = chat_event_fd(e);
        assert!(fd >= 0);
        let readable = |ms| {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            libc::poll(&mut p, 1, ms) == 1
        };
        assert!(!readable(0));
        let _c = connect_client(e, "x");
        assert!(readable(5000));
        let mut ev = null_mut();
        while chat_poll_event(e, 0, &mut ev) == 1 {
            chat_event_free(ev);
        }
        assert!(!readable(0));
        chat_free(e);
    }
}

extern "C" fn stop_inside(userdata: *mut c_void, _ev: *const chat_event) {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = userdata as *mut chat_engine;
        let r = chat_stop(e);
        assert!(r == 0 || r == ERR_STOPPED);
    }
}

#[test]
fn stop_from_inside_a_dispatch_callback_ends_dispatch_cleanly() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0","close_timeout_ms":100}"#);
        assert_eq!(chat_set_callback(e, Some(stop_inside), e as *mut c_void), 0);
        let _c = connect_client(e, "a");
        let mut n = 0;
        for _ in 0..50 {
            n = chat_dispatch(e, 100);
            if n != 0 {
                break;
            }
        }
        assert!(n >= 1, "the callback ran and the dispatch returned its count: {n}");
        assert_eq!(chat_dispatch(e, 0), ERR_STOPPED);
        chat_free(e);
    }
}

#[test]
fn stop_from_inside_an_engine_thread_callback_does_not_deadlock() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0","callback_thread":"engine","close_timeout_ms":100}"#);
        assert_eq!(chat_set_callback(e, Some(stop_inside), e as *mut c_void), 0);
        let _c = connect_client(e, "a");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while chat_broadcast(e, null(), c"x".as_ptr()) != ERR_STOPPED {
            assert!(std::time::Instant::now() < deadline, "the callback never stopped the engine");
            std::thread::sleep(Duration::from_millis(10));
        }
        chat_free(e); // joins the event thread, which has returned from its callback
    }
}

#[test]
fn free_while_a_poll_waits_on_another_thread_is_safe() {
    // SAFETY: the C contract: handles from chat_start/chat_connect used until chat_free,
    // NUL-terminated strings, strings and events freed once.
    unsafe {
        let e = start(r#"{"listen":"127.0.0.1:0"}"#);
        let waiter = waiting_poll(e);
        chat_free(e);
        assert_eq!(waiter.join().unwrap(), ERR_STOPPED);
    }
}
