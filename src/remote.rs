//! A handle on an engine running in another process (a daemon), through its control socket:
//! what `Engine::connect` and `chat_connect` return and `EmbedChat\Engine::connect` wraps.
//! PHP-FPM workers use it to post into rooms; they cannot run an engine themselves (it would die
//! with the request). It sends `host::Op`s and reads the replies `host::execute` wrote.
//!
//! It talks only to a daemon that runs as this process's own user, as root, or as the user the
//! caller named (`connect`'s `daemon_user`): anyone who can write the socket's directory could
//! have bound its path while the daemon was down, and would otherwise be sent every request.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use socket2::SockRef;

use crate::control::own_uid;
use crate::error::Error;
use crate::host::{Op, RoomInfo};
use crate::identity::ConnId;

/// How long one request may take before the daemon counts as gone.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Remote {
    path: String,
    /// The uid named by the caller as the daemon's (besides this process's own and root's).
    daemon_uid: Option<u32>,
    /// The open connection; None after a failure, reopened by the next call (a daemon that
    /// restarts is reached again without a new handle).
    conn: Mutex<Option<BufReader<UnixStream>>>,
    /// Closed by the host (`stop`): every later call fails with `Stopped`.
    closed: AtomicBool,
}

/// Why an exchange on one connection failed.
enum Failure {
    /// The engine closed the connection without reading the request (idle timeout, restart):
    /// it may be sent again, once, on a new connection.
    Unread(Error),
    /// Anything else: the request may have been carried out.
    Lost(Error),
}

/// The uid of the process at the other end of `s` (as it was when it listened).
fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for writes and `len` holds the size of `cred`, which
        // is what SO_PEERCRED fills; the descriptor stays open while `s` is borrowed.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: both pointers are valid for writes; the descriptor stays open while `s` is
        // borrowed.
        if unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// The uid of `user`: a user name, or a uid in decimal.
fn uid_of(user: &str) -> Result<u32, Error> {
    if let Ok(uid) = user.parse::<u32>() {
        if uid != u32::MAX {
            return Ok(uid);
        }
    }
    let bad = |why: String| Error::InvalidArgument(format!("daemon user `{user}`: {why}"));
    if user.is_empty() {
        return Err(bad("empty (a user name or a numeric uid)".into()));
    }
    let name = CString::new(user).map_err(|_| bad("contains a NUL byte".into()))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is a C struct of integers and pointers, for which all zeros is a valid
        // value (getpwnam_r fills it in).
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `pw`, `buf` (with its true length) and `found` are
        // valid for writes for the duration of the call; the strings it leaves in `buf` are not
        // read (only the uid is).
        let r = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if r != 0 {
            return Err(bad(format!("cannot be looked up: {}", io::Error::from_raw_os_error(r))));
        }
        if found.is_null() {
            return Err(bad("no such user (a user name or a numeric uid)".into()));
        }
        return Ok(pw.pw_uid);
    }
}

/// Writes all of `buf` without raising SIGPIPE when the engine has closed the connection (a C
/// host that never thought about it would die of it): the write fails with `BrokenPipe` instead.
fn send_all(s: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    let sock = SockRef::from(s);
    while !buf.is_empty() {
        match sock.send_with_flags(buf, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the engine still keeps `conn` open, looked at without waiting: on a connection it
/// closed (idle timeout, restart) its end of file, an error or its closing notice waits to be
/// read, while between requests a live one has nothing to read at all.
fn still_open(conn: &BufReader<UnixStream>) -> bool {
    if !conn.buffer().is_empty() {
        return false;
    }
    let mut byte = [MaybeUninit::<u8>::uninit()];
    let peek = SockRef::from(conn.get_ref()).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    matches!(peek, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl Remote {
    /// Connects and checks that an engine answers. `daemon_user` (a user name or a uid) is the
    /// user the daemon runs as when that is neither this process's own user nor root.
    pub fn connect(path: &str, daemon_user: Option<&str>) -> Result<Remote, Error> {
        let daemon_uid = daemon_user.map(uid_of).transpose()?;
        let r = Remote {
            path: path.to_string(),
            daemon_uid,
            conn: Mutex::new(None),
            closed: AtomicBool::new(false),
        };
        r.call(&Op::Ping)?;
        Ok(r)
    }

    fn open(&self) -> Result<BufReader<UnixStream>, Error> {
        let s = UnixStream::connect(&self.path).map_err(|e| {
            Error::Control(format!("cannot reach the engine's control socket {}: {e}", self.path))
        })?;
        let uid = peer_uid(&s).map_err(|e| {
            Error::Control(format!("cannot tell who answers the control socket {}: {e}", self.path))
        })?;
        let own = own_uid();
        if uid != own && uid != 0 && Some(uid) != self.daemon_uid {
            let named = match self.daemon_uid {
                Some(d) => format!(", root or the daemon user named (uid {d})"),
                None => " or root".to_string(),
            };
            return Err(Error::Control(format!(
                "refused the control socket {}: the process answering it runs as uid {uid}, and only                  an engine running as this process's user (uid {own}){named} is trusted (another user                  may have bound that path). If the daemon runs as that user on purpose, name it:                  chat_connect_trusting(path, user), Engine::connect_trusting in Rust,                  Engine::connect($path, daemonUser: 'user') in PHP",
                self.path
            )));
        }
        s.set_read_timeout(Some(TIMEOUT)).map_err(Error::Io)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(Error::Io)?;
        Ok(BufReader::new(s))
    }

    fn lost(&self, e: io::Error) -> Error {
        Error::Control(format!("lost the engine at {}: {e}", self.path))
    }

    fn read_reply(&self, conn: &mut BufReader<UnixStream>) -> Result<Value, Error> {
        let mut reply = String::new();
        match conn.read_line(&mut reply) {
            Ok(0) => Err(Error::Control(format!("the engine at {} closed the connection", self.path))),
            Ok(_) => serde_json::from_str(&reply)
                .map_err(|e| Error::Control(format!("unreadable reply from {}: {e}", self.path))),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Sends one request line on `conn` and reads the reply.
    fn exchange(&self, conn: &mut BufReader<UnixStream>, line: &[u8]) -> Result<Value, Failure> {
        if let Err(e) = send_all(conn.get_ref(), line) {
            if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                return Err(Failure::Lost(self.lost(e)));
            }
            // The engine had closed the connection before the line was complete, and it only
            // carries out whole lines. If it said why it refused, that is the better error.
            return match self.read_reply(conn) {
                Ok(v) if v["closed"] == "refused" => Ok(v),
                _ => Err(Failure::Unread(self.lost(e))),
            };
        }
        let v = self.read_reply(conn).map_err(Failure::Lost)?;
        if v["closed"] == "idle" {
            // Closed for idleness before it read anything of this request (its promise; see
            // control.rs): the idle timeout passed between the check in `call` and the write.
            let message = v["message"].as_str().unwrap_or("closed for idleness").to_string();
            return Err(Failure::Unread(Error::Control(message)));
        }
        Ok(v)
    }

    /// Sends one request and reads its reply.
    ///
    /// A request is never carried out twice: it is sent again (once, on a new connection) only
    /// when the engine certainly did not read it. A kept connection the engine closed while it
    /// sat unused (idle timeout, restart) is noticed before anything is written on it; a write
    /// that fails because the engine had closed the connection did not deliver a whole line;
    /// the idle notice says nothing was read. If the daemon went away after the request was
    /// written, the caller gets an error (it may have been carried out).
    fn call(&self, op: &Op) -> Result<Value, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_vec(op).map_err(|e| Error::Control(e.to_string()))?;
        line.push(b'\n');
        let mut sent_again = false;
        let mut v = loop {
            let mut conn = match slot.take() {
                Some(c) if still_open(&c) => c,
                _ => self.open()?,
            };
            match self.exchange(&mut conn, &line) {
                Ok(v) => {
                    if v["closed"].is_null() {
                        *slot = Some(conn);
                    }
                    break v;
                }
                Err(Failure::Unread(_)) if !sent_again => sent_again = true,
                Err(Failure::Unread(e) | Failure::Lost(e)) => return Err(e),
            }
        };
        if v["ok"] == Value::Bool(true) {
            if let Value::Object(m) = &mut v {
                m.remove("ok");
            }
            return Ok(v);
        }
        let message = v["message"].as_str().unwrap_or("request failed").to_string();
        let id = match op {
            Op::Send { id, .. } | Op::Kick { id: Some(id), .. } => Some(*id),
            _ => None,
        };
        Err(Error::from_reply(v["error"].as_str().unwrap_or(""), message, id))
    }

    pub fn broadcast(&self, room: Option<&str>, text: &str, from: Option<&str>) -> Result<usize, Error> {
        let op = Op::Broadcast { room: room.map(Into::into), text: text.into(), from: from.map(Into::into) };
        let v = self.call(&op)?;
        Ok(v["delivered"].as_u64().unwrap_or(0) as usize)
    }

    pub fn send(&self, id: ConnId, text: &str) -> Result<(), Error> {
        self.call(&Op::Send { id, text: text.into() }).map(drop)
    }

    pub fn kick(&self, id: ConnId, reason: &str) -> Result<(), Error> {
        self.call(&Op::Kick { id: Some(id), user: None, reason: reason.into() }).map(drop)
    }

    pub fn kick_user(&self, user: &str, reason: &str) -> Result<usize, Error> {
        let v = self.call(&Op::Kick { id: None, user: Some(user.into()), reason: reason.into() })?;
        Ok(v["kicked"].as_u64().unwrap_or(0) as usize)
    }

    pub fn rooms(&self) -> Result<Vec<RoomInfo>, Error> {
        let v = self.call(&Op::Rooms)?;
        serde_json::from_value(v["rooms"].clone())
            .map_err(|e| Error::Control(format!("unreadable rooms: {e}")))
    }

    /// The daemon's counters, as `chat_stats_json` gives them for a local engine.
    pub fn stats_json(&self) -> Result<String, Error> {
        Ok(self.call(&Op::Stats)?.to_string())
    }

    pub fn presence_json(&self, room: Option<&str>) -> Result<String, Error> {
        Ok(self.call(&Op::Presence { room: room.map(Into::into) })?.to_string())
    }

    /// Has the daemon read its TLS certificate and key again.
    pub fn reload_tls(&self) -> Result<(), Error> {
        self.call(&Op::ReloadTls).map(drop)
    }

    /// The daemon's TCP port.
    pub fn port(&self) -> Result<u16, Error> {
        Ok(self.call(&Op::Ping)?["port"].as_u64().unwrap_or(0) as u16)
    }

    /// Forgets the connection for good (the daemon keeps running); false if already closed.
    pub fn close(&self) -> bool {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        !self.closed.swap(true, Ordering::SeqCst)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    /// A stand-in daemon on a fresh socket: each accepted connection is handed to `script` with
    /// the lines it reads sent to the returned channel.
    fn fake_daemon(
        tag: &str,
        script: impl Fn(usize, &mut BufReader<UnixStream>, &mpsc::Sender<String>) + Send + 'static,
    ) -> (String, mpsc::Receiver<String>) {
        let path = std::env::temp_dir().join(format!("embedchat-fake-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (n, s) in listener.incoming().enumerate() {
                let mut conn = BufReader::new(s.unwrap());
                script(n, &mut conn, &tx);
            }
        });
        (path.to_str().unwrap().to_string(), rx)
    }

    fn read(conn: &mut BufReader<UnixStream>, seen: &mpsc::Sender<String>) -> bool {
        let mut line = String::new();
        if conn.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        seen.send(line.trim_end().to_string()).unwrap();
        true
    }

    const IDLE: &str = "{\"ok\":false,\"error\":\"control\",\"message\":\"idle\",\"closed\":\"idle\"}\n";

    #[test]
    fn a_request_the_engine_says_it_did_not_read_is_sent_once_more_on_a_new_connection() {
        // The first connection answers the ping, then meets the next request with the idle
        // notice (as if the timeout had passed just before it arrived); the second one serves.
        let (path, seen) = fake_daemon("idle-race", |n, conn, seen| {
            if n == 0 {
                read(conn, seen);
                conn.get_mut().write_all(b"{\"ok\":true}\n").unwrap();
                read(conn, seen);
                conn.get_mut().write_all(IDLE.as_bytes()).unwrap();
                return;
            }
            while read(conn, seen) {
                conn.get_mut().write_all(b"{\"ok\":true,\"delivered\":7}\n").unwrap();
            }
        });
        let r = Remote::connect(&path, None).unwrap();
        assert_eq!(r.broadcast(None, "once", None).unwrap(), 7);
        let lines: Vec<String> = seen.try_iter().collect();
        assert_eq!(lines.len(), 3, "ping, the unread broadcast, the broadcast again: {lines:?}");
    }

    #[test]
    fn a_reply_lost_after_the_request_was_written_is_an_error_and_not_sent_again() {
        let (path, seen) = fake_daemon("lost", |n, conn, seen| {
            if n == 0 {
                read(conn, seen);
                conn.get_mut().write_all(b"{\"ok\":true}\n").unwrap();
            }
            // Reads the request, then goes away without a reply: it may have been carried out.
            read(conn, seen);
        });
        let r = Remote::connect(&path, None).unwrap();
        let e = r.broadcast(None, "maybe", None).unwrap_err();
        assert!(matches!(e, Error::Control(_)), "{e}");
        assert!(e.to_string().contains("closed the connection"), "{e}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(seen.try_iter().filter(|l| l.contains("maybe")).count(), 1);
    }

    #[test]
    fn a_kept_connection_the_engine_closed_is_replaced_before_anything_is_written() {
        let (path, seen) = fake_daemon("closed", |n, conn, seen| {
            read(conn, seen);
            conn.get_mut().write_all(b"{\"ok\":true,\"delivered\":1}\n").unwrap();
            if n == 0 {
                // Closes the kept connection with the notice, before any next request.
                conn.get_mut().write_all(IDLE.as_bytes()).unwrap();
                return;
            }
            while read(conn, seen) {
                conn.get_mut().write_all(b"{\"ok\":true,\"delivered\":1}\n").unwrap();
            }
        });
        let r = Remote::connect(&path, None).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(r.broadcast(None, "hi", None).unwrap(), 1);
        let lines: Vec<String> = seen.try_iter().collect();
        assert_eq!(lines.len(), 2, "the ping, then the broadcast once, on the new connection: {lines:?}");
    }

    #[test]
    fn a_daemon_user_is_a_name_or_a_uid() {
        assert_eq!(uid_of("0").unwrap(), 0);
        assert_eq!(uid_of("root").unwrap(), 0);
        assert_eq!(uid_of("1234").unwrap(), 1234);
        for bad in ["", "no-such-user-embedchat", "a\0b"] {
            assert!(matches!(uid_of(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
    }
}
