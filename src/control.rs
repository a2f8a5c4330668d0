//! The control socket (`control_socket`): a Unix socket where a daemon's engine takes the host's
//! operations from other local processes, one JSON object per line (`host::Op`), answered with
//! one JSON line. `chat_connect` (`remote.rs`) is its client; the operations are `host.rs`'s.
//!
//! Who may use it is decided three times: by the directories around the file (checked at start,
//! so nobody else can replace the socket or take its path), by the file's mode (who can connect
//! at all), and by the peer's uid (`SO_PEERCRED`, who is served). The client checks the
//! daemon's uid the same way, so a process that bound the path while the daemon was down is not
//! mistaken for it.
//!
//! A connection the engine closes on its own (refused, idle) gets one last line first:
//! `{"ok": false, "error": "control", "message": …, "closed": "refused" | "idle"}`. `"idle"`
//! promises that nothing of a next request was read from that connection, so the client may send
//! that request again on a new connection.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::host;
use crate::stats::Stats;

/// The uid this process runs as (effective), which is what `SO_PEERCRED` shows its peers.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether something is already answering on `path`: a live daemon must not lose its socket
/// to a second one, but a file left by one that died may be replaced.
fn in_use(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Why the engine will not keep its socket in `dir` (owner `uid`, `mode`), if it will not.
///
/// Whoever may write a directory may remove, rename or create the entries in it: replace the
/// socket with their own, or bind its path while the engine is not running and answer its
/// clients in its place. So the directory (and every one above it, which could be swapped as a
/// whole) must belong to the engine's user or root and be writable by nobody else. The sticky
/// bit is the one exception (`/tmp`): there others cannot remove or rename what is not theirs,
/// so the running engine's socket stays its own; that they could bind the path while the engine
/// is down is what the client's uid check (`remote.rs`) is for.
fn refusal(dir: &Path, uid: u32, mode: u32, own: u32) -> Option<String> {
    if uid != own && uid != 0 {
        return Some(format!(
            "its directory {} belongs to uid {uid}, neither the engine's user (uid {own}) nor root, \
             and that user could replace the socket with their own: use a directory of the engine's \
             user, such as /run/embedchat (`install -d -m 0750 -o USER /run/embedchat`)",
            dir.display()
        ));
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return None,
        (true, false) => "its group",
        (false, true) => "all users",
        (true, true) => "its group and all users",
    };
    if mode & 0o1000 != 0 {
        return None;
    }
    Some(format!(
        "its directory {} is writable by {who} (mode {:04o}, no sticky bit), who could replace the \
         socket or bind its path before the engine does and answer in its place: remove that write \
         access (`chmod go-w`), or use a directory only the engine's user can write, such as \
         /run/embedchat (`install -d -m 0750 -o USER /run/embedchat`)",
        dir.display(),
        mode & 0o7777
    ))
}

/// Checks every directory the socket's path goes through (as written and with its symbolic links
/// resolved: a link is as safe as the directory that holds it, which is checked in turn).
fn check_directories(path: &Path, own: u32) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let written = std::path::absolute(parent)?;
    let resolved = fs::canonicalize(parent)
        .map_err(|e| io::Error::new(e.kind(), format!("its directory {}: {e}", parent.display())))?;
    for dir in written.ancestors().chain(resolved.ancestors()) {
        let m = fs::symlink_metadata(dir)?;
        if m.file_type().is_symlink() {
            continue;
        }
        if let Some(why) = refusal(dir, m.uid(), m.mode(), own) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
        }
    }
    Ok(())
}

/// A directory only this process's user can enter, next to the socket's final place; removed
/// (with anything left in it) when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// Named `.e` and four random letters or digits (short: the socket path inside it must
    /// still fit the 107 bytes of a Unix socket address when `control_socket` is 100 bytes).
    fn create(next_to: &Path) -> io::Result<PrivateDir> {
        use std::hash::BuildHasher;
        let parent = next_to.parent().unwrap_or(Path::new(""));
        let seed = std::hash::RandomState::new();
        for attempt in 0..32u32 {
            let mut n = seed.hash_one((std::process::id(), attempt, std::time::SystemTime::now()));
            let mut name = String::from(".e");
            for _ in 0..4 {
                name.push(char::from_digit((n % 36) as u32, 36).unwrap_or('x'));
                n /= 36;
            }
            let dir = parent.join(name);
            // mkdir's mode is narrowed by the umask, never widened: 0700 at most.
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                // Someone else's (or a leftover): never used, another name is tried.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name for a private temporary directory next to the socket",
        ))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join("s"));
        let _ = fs::remove_dir(&self.0);
    }
}

/// Binds the control socket with its mode already set, in a directory nobody else can write.
///
/// The socket is bound inside a fresh private directory (0700) next to its place, chmod'ed, then
/// renamed into place: while it has the umask's permissions nobody else can reach it, and it
/// appears at its path only with its final mode. (Setting a strict umask around `bind` would do
/// the same, but the umask belongs to the whole process: other threads of the host creating
/// files at that moment would get it too.)
pub fn bind(path: &str, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    let path = Path::new(path);
    check_directories(path, own_uid())?;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if in_use(path) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another engine answers on this control socket",
                ));
            }
            fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something that is not a socket is at that path and is left alone: remove it or choose another path",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let private = PrivateDir::create(path)?;
    let tmp = private.0.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    listener.set_nonblocking(true)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)?;
    drop(private);
    Ok(listener)
}

/// Longest request line; a longer one ends that control connection.
const MAX_LINE: u64 = 1 << 20;

/// The last line of a connection the engine closes on its own (see the module's comment).
fn notice(message: String, closed: &str) -> Vec<u8> {
    let mut v = Error::Control(message).to_reply();
    v["closed"] = closed.into();
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// Serves control connections until `stop` is notified (the engine removes the file).
pub async fn serve(listener: UnixListener, ctx: Arc<Context>, stop: Arc<Notify>) {
    let slots = Arc::new(Semaphore::new(ctx.cfg.site.control_socket_max_connections));
    let own = own_uid();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => admit(stream, &ctx, &slots, own),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            _ = stop.notified() => break,
        }
    }
}

/// Serves a new connection, or refuses it at once: a peer whose uid is not allowed, or one past
/// `control_socket_max_connections`. A refusal is one line written only if the socket takes it
/// without waiting (a new socket's buffer is empty, so it does), then the socket is closed: the
/// accept loop never waits on a refused peer.
fn admit(stream: UnixStream, ctx: &Arc<Context>, slots: &Arc<Semaphore>, own: u32) {
    let site = &ctx.cfg.site;
    // The engine's user and root always: root can read the engine's memory anyway, so refusing
    // it would protect nothing and only surprise an administrator.
    let uid = stream.peer_cred().map(|c| c.uid());
    let refused = match uid {
        Ok(u) if u == own || u == 0 || site.control_socket_uids.contains(&u) => None,
        Ok(u) => Some(format!("uid {u}")),
        Err(e) => Some(format!("a peer whose uid cannot be read ({e})")),
    };
    if let Some(who) = refused {
        Stats::inc(&ctx.stats.control_peer_rejects);
        let text = format!(
            "the engine's control socket does not serve {who}: only the engine's user (uid {own}), \
             root and the uids in its config key `control_socket_uids` may use it"
        );
        let _ = stream.try_write(&notice(text, "refused"));
        return;
    }
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        Stats::inc(&ctx.stats.control_connection_rejects);
        let text = format!(
            "the engine already has {} control connections open (config key \
             `control_socket_max_connections`): try again later",
            site.control_socket_max_connections
        );
        let _ = stream.try_write(&notice(text, "refused"));
        return;
    };
    tokio::spawn(client(stream, ctx.clone(), slot));
}

/// A served connection's place: counted in `control_connections_open` while it lives.
struct Open {
    ctx: Arc<Context>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.ctx.stats.control_connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn client(stream: UnixStream, ctx: Arc<Context>, slot: OwnedSemaphorePermit) {
    Stats::inc(&ctx.stats.control_connections_open);
    let _open = Open { ctx: ctx.clone(), _slot: slot };
    let idle_ms = ctx.cfg.site.control_socket_idle_timeout_ms;
    let idle = Duration::from_millis(idle_ms);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = {
            let mut limited = (&mut lines).take(MAX_LINE + 1);
            tokio::time::timeout(idle, limited.read_until(b'\n', &mut line)).await
        };
        match read {
            Err(_) => {
                Stats::inc(&ctx.stats.control_idle_closes);
                // A read that is cut short keeps every byte it took in `line` (and it waits only
                // when the buffer is empty): when both are empty, nothing of a next request was
                // read, and the notice tells the client it may send it again elsewhere.
                if line.is_empty() && lines.buffer().is_empty() {
                    let text = format!(
                        "the engine closed this control connection after {idle_ms} ms without a \
                         request (config key `control_socket_idle_timeout_ms`)"
                    );
                    let _ = write.try_write(&notice(text, "idle"));
                }
                return;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let too_long = line.len() as u64 > MAX_LINE;
        if !too_long && line.last() != Some(&b'\n') {
            // Cut off by the end of the connection: the sender gave up in the middle of writing
            // it (a timeout), so it is not carried out.
            return;
        }
        let reply = if too_long {
            Error::other(ErrorKind::BadRequest, "request line longer than 1 MiB").to_reply()
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            Stats::inc(&ctx.stats.control_requests);
            let result = match host::parse(&line) {
                Ok(op) => host::execute_async(&ctx, op).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => v,
                Err(e) => e.to_reply(),
            }
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        match tokio::time::timeout(idle, write.write_all(&out)).await {
            Ok(Ok(())) if !too_long => {}
            Ok(_) => return,
            Err(_) => {
                // The peer does not read its replies.
                Stats::inc(&ctx.stats.control_idle_closes);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_others_may_write_is_refused_unless_it_is_sticky() {
        let d = Path::new("/srv/chat");
        assert_eq!(refusal(d, 1000, 0o40700, 1000), None, "private");
        assert_eq!(refusal(d, 1000, 0o40750, 1000), None, "group may enter, not write");
        assert_eq!(refusal(d, 0, 0o40755, 1000), None, "root's");
        assert_eq!(refusal(d, 0, 0o41777, 1000), None, "sticky, like /tmp");
        let group = refusal(d, 1000, 0o40770, 1000).unwrap();
        assert!(group.contains("writable by its group (mode 0770, no sticky bit)"), "{group}");
        let all = refusal(d, 1000, 0o40777, 1000).unwrap();
        assert!(all.contains("its group and all users"), "{all}");
        let theirs = refusal(d, 33, 0o40700, 1000).unwrap();
        assert!(theirs.contains("belongs to uid 33"), "{theirs}");
    }

    #[test]
    fn the_temporary_directory_is_private_and_goes_away() {
        let target = std::env::temp_dir().join(format!("embedchat-private-{}.sock", std::process::id()));
        let dir = PrivateDir::create(&target).unwrap();
        let path = dir.0.clone();
        assert_eq!(path.parent(), target.parent());
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!((name.len(), name.starts_with(".e")), (6, true), "{name}");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        fs::write(path.join("s"), b"").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
