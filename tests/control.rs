//! The control socket's defences, over real Unix sockets: the directories around it, the
//! moment it is bound, who may use it (the peer's uid, on both ends), how many connections it
//! keeps and for how long. Tests that need a second user fork a child that becomes `nobody`
//! (uid 65534); they need root and say so when skipped.

mod common;

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use embedchat::ffi::*;
use serde_json::{json, Value};

const NOBODY: u32 = 65534;

/// A fresh directory with exactly `mode` (whatever the umask), removed with its contents at the
/// end of the test.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str, mode: u32) -> Dir {
        let d = std::env::temp_dir().join(format!("embedchat-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        chmod(&d, mode);
        Dir(d)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("chat.sock")
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn start(sock: &Path, extra: Value) -> Result<embedchat::Engine, embedchat::Error> {
    let mut cfg = json!({"listen": "127.0.0.1:0", "control_socket": sock.to_str().unwrap()});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    embedchat::Engine::start_json(&cfg.to_string())
}

/// One request line on a new connection; returns the lines read until the engine closes it.
fn ask(sock: &Path, request: &str) -> Vec<Value> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(format!("{request}\n").as_bytes());
    BufReader::new(s).lines().map_while(Result::ok).map(|l| serde_json::from_str(&l).unwrap()).collect()
}

/// Reads one line from a connection kept open.
fn reply(s: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

fn open(sock: &Path) -> BufReader<UnixStream> {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    BufReader::new(s)
}

fn ping(s: &mut BufReader<UnixStream>) -> Value {
    s.get_mut().write_all(b"{\"op\":\"ping\"}\n").unwrap();
    reply(s)
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < WAIT, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_socket_directory_others_can_write_is_refused_at_start() {
    let d = Dir::new("open", 0o777);
    let e = start(&d.sock(), json!({})).err().expect("a directory everyone may write is refused");
    assert_eq!(e.kind(), embedchat::ErrorKind::Control);
    let m = e.to_string();
    for part in [
        "`control_socket`",
        d.0.to_str().unwrap(),
        "writable by its group and all users",
        "0777",
        "chmod go-w",
    ] {
        assert!(m.contains(part), "{part:?} in {m}");
    }
    assert!(d.entries().is_empty(), "nothing was created: {:?}", d.entries());

    chmod(&d.0, 0o770);
    let m = start(&d.sock(), json!({})).err().expect("group-writable too").to_string();
    assert!(m.contains("writable by its group (mode 0770"), "{m}");

    // A directory inside it is no better: the open one above could swap it as a whole.
    chmod(&d.0, 0o777);
    let inner = d.0.join("inner");
    std::fs::DirBuilder::new().mode(0o700).create(&inner).unwrap();
    let m = start(&inner.join("chat.sock"), json!({})).err().expect("an open directory above").to_string();
    assert!(m.contains(&format!("its directory {} is writable", d.0.display())), "{m}");

    // The sticky bit (as on /tmp) keeps others from removing or renaming the socket.
    chmod(&d.0, 0o1777);
    let e = start(&d.sock(), json!({})).expect("a sticky directory is accepted");
    e.stop().unwrap();
}

#[test]
fn a_socket_directory_of_another_user_is_refused_at_start() {
    if !is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let d = Dir::new("theirs", 0o755);
    chown(&d.0, NOBODY);
    let m = start(&d.sock(), json!({})).err().expect("another user's directory").to_string();
    assert!(m.contains(&format!("belongs to uid {NOBODY}")), "{m}");
    assert!(m.contains("`control_socket`"), "{m}");
}

/// Every entry created or moved into `dir` while `f` runs, as (name, inotify mask).
fn watch(dir: &Path, f: impl FnOnce()) -> Vec<(String, u32)> {
    let path = CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: inotify_init1 takes no pointers; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    assert!(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) } >= 0);
    f();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at < n as usize {
            let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
            let (mask, len) = (word(4), word(12) as usize);
            let name = &buf[at + 16..at + 16 + len];
            let name = String::from_utf8_lossy(name).trim_end_matches('\0').to_string();
            seen.push((name, mask));
            at += 16 + len;
        }
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    seen
}

#[test]
fn the_socket_appears_only_by_rename_with_its_final_mode_and_nothing_is_left_beside_it() {
    let d = Dir::new("bind", 0o755);
    let mut engine = None;
    let events =
        watch(&d.0, || engine = Some(start(&d.sock(), json!({"control_socket_mode": "0660"})).unwrap()));
    // Bound anywhere in this directory, a socket would have the umask's permissions until the
    // chmod: it must only ever be created inside the private directory and moved here.
    let created: Vec<&(String, u32)> = events.iter().filter(|(_, m)| m & libc::IN_CREATE != 0).collect();
    assert!(!created.is_empty(), "{events:?}");
    assert!(
        created.iter().all(|(_, m)| m & libc::IN_ISDIR != 0),
        "only a directory is created here: {events:?}"
    );
    let moved: Vec<&str> =
        events.iter().filter(|(_, m)| m & libc::IN_MOVED_TO != 0).map(|(n, _)| n.as_str()).collect();
    assert_eq!(moved, ["chat.sock"], "{events:?}");
    assert_eq!(d.entries(), ["chat.sock"], "the private directory is gone");
    let mode = std::fs::metadata(d.sock()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660);
    engine.unwrap().stop().unwrap();
    assert!(d.entries().is_empty());
}

#[test]
fn something_that_is_not_a_socket_at_the_path_is_left_alone() {
    let d = Dir::new("file", 0o755);
    std::fs::write(d.sock(), b"precious").unwrap();
    let m = start(&d.sock(), json!({})).err().expect("refused").to_string();
    assert!(m.contains("not a socket"), "{m}");
    assert_eq!(std::fs::read(d.sock()).unwrap(), b"precious");
}

/// Runs `child` in a forked process that has become `nobody`, and returns what it wrote to the
/// pipe it is given. After a fork in a threaded process only system calls are safe, so `child`
/// makes nothing but libc calls on data prepared before.
fn as_nobody(child: impl FnOnce(i32)) -> (i32, Vec<u8>) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes async-signal-safe calls (setgroups, setgid, setuid, socket
    // calls, read, write, _exit) before it exits; the parent carries on as usual.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain system calls; the process exits without returning to the test harness.
        unsafe {
            libc::close(fds[0]);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                libc::_exit(3);
            }
            child(fds[1]);
            libc::_exit(0);
        }
    }
    // SAFETY: the write end is the child's; closing ours lets the read below see its end.
    unsafe { libc::close(fds[1]) };
    (pid, read_fd(fds[0]))
}

/// Reads `fd` to its end (or until `limit` bytes), then closes it.
fn read_fd(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    out
}

fn sockaddr(path: &Path) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain data; all zeros is a valid (empty) address.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(path.to_str().unwrap().bytes()) {
        *d = s as libc::c_char;
    }
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;

/// As `nobody`: connects to `sock`, sends `request` and returns the engine's answer (one line).
fn ask_as_nobody(sock: &Path, request: &'static [u8]) -> String {
    let addr = sockaddr(sock);
    let (pid, answer) = as_nobody(move |out| {
        // SAFETY: system calls on the prepared address and a stack buffer.
        unsafe {
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if libc::connect(s, (&addr as *const libc::sockaddr_un).cast(), ADDR_LEN) != 0 {
                libc::_exit(4);
            }
            libc::send(s, request.as_ptr().cast(), request.len(), libc::MSG_NOSIGNAL);
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(out, buf.as_ptr().cast(), n as usize);
                if buf[n as usize - 1] == b'\n' {
                    break;
                }
            }
        }
    });
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for writes.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child could not do its part");
    String::from_utf8(answer).unwrap()
}

#[test]
fn a_peer_of_a_user_not_allowed_is_refused_and_counted() {
    if !is_root() {
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    // Open to everyone by its mode, so only the uid check stands between `nobody` and the engine.
    let d = Dir::new("peer", 0o755);
    let e = start(&d.sock(), json!({"control_socket_mode": "0666"})).unwrap();
    let answer = ask_as_nobody(&d.sock(), b"{\"op\":\"broadcast\",\"text\":\"from nobody\"}\n");
    let v: Value = serde_json::from_str(answer.trim_end()).expect(&answer);
    assert_eq!(
        (v["ok"].as_bool(), v["error"].as_str(), v["closed"].as_str()),
        (Some(false), Some("control"), Some("refused"))
    );
    let m = v["message"].as_str().unwrap();
    assert!(m.contains(&format!("does not serve uid {NOBODY}")) && m.contains("control_socket_uids"), "{m}");
    let s = e.stats();
    assert_eq!((s.control_peer_rejects, s.control_requests, s.host_broadcasts), (1, 0, 0));
    let (_, metrics) = http(e.port(), "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_control_peer_rejects_total 1\n"), "{metrics}");
    e.stop().unwrap();

    // Listed, the same user is served.
    let e =
        start(&d.sock(), json!({"control_socket_mode": "0666", "control_socket_uids": [NOBODY]})).unwrap();
    let answer = ask_as_nobody(&d.sock(), b"{\"op\":\"ping\"}\n");
    assert!(answer.contains("\"ok\":true"), "{answer}");
    assert_eq!(e.stats().control_peer_rejects, 0);
    e.stop().unwrap();
}

#[test]
fn chat_connect_refuses_a_daemon_of_another_user_unless_it_is_named() {
    if !is_root() {
        eprintln!("skipped: needs root to run a daemon as another user");
        return;
    }
    // A stand-in daemon run by `nobody` in its own directory; for every connection it reports
    // on the pipe whether a request reached it ('r') or not ('-').
    let d = Dir::new("daemon", 0o755);
    chown(&d.0, NOBODY);
    let addr = sockaddr(&d.sock());
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let report = fds[1];
    // SAFETY: the child only makes async-signal-safe calls (see `as_nobody`).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls; the child never returns to the test harness.
        unsafe {
            libc::close(fds[0]);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                libc::_exit(3);
            }
            let l = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if libc::bind(l, (&addr as *const libc::sockaddr_un).cast(), ADDR_LEN) != 0
                || libc::listen(l, 8) != 0
            {
                libc::_exit(4);
            }
            libc::write(report, b"L".as_ptr().cast(), 1);
            let answer = b"{\"ok\":true,\"port\":4242}\n";
            loop {
                let c = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                let mut buf = [0u8; 4096];
                loop {
                    let n = libc::read(c, buf.as_mut_ptr().cast(), buf.len());
                    let flag = if n > 0 { b"r" } else { b"-" };
                    libc::write(report, flag.as_ptr().cast(), 1);
                    if n <= 0 {
                        break;
                    }
                    libc::send(c, answer.as_ptr().cast(), answer.len(), libc::MSG_NOSIGNAL);
                }
                libc::close(c);
            }
        }
    }
    // SAFETY: the write end is the child's.
    unsafe { libc::close(report) };
    let next = || {
        let mut b = [0u8];
        // SAFETY: `b` is valid for a one-byte write.
        assert_eq!(unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) }, 1, "the daemon reports");
        b[0]
    };
    assert_eq!(next(), b'L', "the daemon listens");

    let path = CString::new(d.sock().to_str().unwrap()).unwrap();
    // SAFETY: the C contract: NUL-terminated strings, handles freed once.
    unsafe {
        assert!(chat_connect(path.as_ptr()).is_null(), "a daemon of another user is refused");
        assert_eq!(chat_last_result(), chat_result::CHAT_ERR_CONTROL as i32);
        let m = last_error();
        assert!(m.contains(&format!("runs as uid {NOBODY}")) && m.contains("chat_connect_trusting"), "{m}");
        assert_eq!(next(), b'-', "and nothing was sent to it");

        let user = CString::new(NOBODY.to_string()).unwrap();
        let h = chat_connect_trusting(path.as_ptr(), user.as_ptr());
        assert!(!h.is_null(), "{}", last_error());
        assert_eq!(next(), b'r', "named, it gets the ping");
        assert_eq!(chat_port(h), 4242);
        chat_free(h);

        let bad = CString::new("no-such-user-embedchat").unwrap();
        assert!(chat_connect_trusting(path.as_ptr(), bad.as_ptr()).is_null());
        assert_eq!(chat_last_result(), chat_result::CHAT_ERR_INVALID as i32);
    }
    let by_name = embedchat::Engine::connect_trusting(d.sock().to_str().unwrap(), "nobody").expect("by name");
    assert_eq!(by_name.port(), 4242);

    // SAFETY: `pid` is our own child, killed and reaped once.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(fds[0]);
    }
}

#[test]
fn control_connections_past_the_cap_are_refused_at_once_and_counted() {
    let d = Dir::new("cap", 0o755);
    let e = start(&d.sock(), json!({"control_socket_max_connections": 2})).unwrap();
    let mut a = open(&d.sock());
    let mut b = open(&d.sock());
    assert_eq!(ping(&mut a)["ok"], true);
    assert_eq!(ping(&mut b)["ok"], true);
    assert_eq!(e.stats().control_connections_open, 2);

    let refused = ask(&d.sock(), r#"{"op":"broadcast","text":"one too many"}"#);
    assert_eq!(refused.len(), 1, "one line, then closed: {refused:?}");
    assert_eq!(refused[0]["closed"], "refused");
    let m = refused[0]["message"].as_str().unwrap();
    assert!(m.contains("2 control connections") && m.contains("control_socket_max_connections"), "{m}");
    let err = embedchat::Engine::connect(d.sock().to_str().unwrap()).err().expect("a handle is refused too");
    assert!(err.to_string().contains("control_socket_max_connections"), "{err}");
    let s = e.stats();
    assert_eq!((s.control_connection_rejects, s.host_broadcasts), (2, 0));
    let (_, metrics) = http(e.port(), "GET", "/metrics", "", "");
    assert!(metrics.contains("embedchat_control_connection_rejects_total 2\n"), "{metrics}");
    assert!(metrics
        .contains("# TYPE embedchat_control_connections_open gauge\nembedchat_control_connections_open 2\n"));

    drop(a);
    until("the closed connection frees its place", || e.stats().control_connections_open == 1);
    assert_eq!(ping(&mut open(&d.sock()))["ok"], true);
    assert_eq!(ping(&mut b)["ok"], true);
    e.stop().unwrap();
}

#[test]
fn a_request_cut_off_by_the_end_of_the_connection_is_not_carried_out() {
    let d = Dir::new("cut", 0o755);
    let e = start(&d.sock(), json!({})).unwrap();
    let mut s = UnixStream::connect(d.sock()).unwrap();
    s.write_all(br#"{"op":"broadcast","text":"half a request"}"#).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no reply: {}", String::from_utf8_lossy(&rest));
    let st = e.stats();
    assert_eq!((st.control_requests, st.host_broadcasts), (0, 0));
    e.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_control_connections_are_closed_and_a_handle_carries_on_without_sending_twice() {
    let d = Dir::new("idle", 0o755);
    let e = start(&d.sock(), json!({"control_socket_idle_timeout_ms": 300})).unwrap();
    let mut ws = connect(&e, "name=reader").await;
    welcomed(&mut ws).await;

    // A connection that never sends anything is told why, then closed.
    let t = Instant::now();
    let lines = ask_nothing(&d.sock());
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["closed"], "idle");
    assert!(lines[0]["message"].as_str().unwrap().contains("control_socket_idle_timeout_ms"));
    assert_eq!(e.stats().control_idle_closes, 1);

    // A handle whose connection was closed while unused reconnects before it writes.
    let site = embedchat::Engine::connect(d.sock().to_str().unwrap()).unwrap();
    assert_eq!(site.broadcast(Some("lobby"), "one").unwrap(), 1);
    until("the handle's connection is closed for idleness", || e.stats().control_idle_closes == 2);
    assert_eq!(site.broadcast(Some("lobby"), "two").unwrap(), 1);
    assert_eq!(recv_type(&mut ws, "message").await["text"], "one");
    assert_eq!(recv_type(&mut ws, "message").await["text"], "two");
    send(&mut ws, r#"{"type":"ping"}"#).await;
    assert_eq!(recv(&mut ws).await["type"], "pong", "nothing arrived twice");
    let s = e.stats();
    assert_eq!((s.control_requests, s.host_broadcasts), (3, 2), "the ping, then each broadcast once");
    site.stop().unwrap();
    e.stop().unwrap();
}

/// Connects and sends nothing; returns the lines read until the engine closes the connection.
fn ask_nothing(sock: &Path) -> Vec<Value> {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    BufReader::new(s).lines().map_while(Result::ok).map(|l| serde_json::from_str(&l).unwrap()).collect()
}
