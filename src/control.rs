//! The control socket (`control_socket`): a Unix socket where a daemon's engine takes the host's
//! operations from other local processes, one JSON object per line (`host::Op`), answered with
//! one JSON line. `chat_connect` (`remote.rs`) is its client; the operations are `host.rs`'s.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::host;
use crate::stats::Stats;

/// Whether something is already answering on `path`: a live daemon must not lose its socket
/// to a second one, but a file left by one that died may be replaced.
fn in_use(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Binds the control socket with its mode already set: bound under a temporary name, chmod'ed,
/// then renamed into place, so there is no moment when it is open to everyone.
pub fn bind(path: &str, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    let path = Path::new(path);
    if path.exists() {
        if in_use(path) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another engine answers on this control socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.set_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("embedchat.sock"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Longest request line; a longer one ends that control connection.
const MAX_LINE: u64 = 1 << 20;

/// Serves control connections until `stop` is notified (the engine removes the file).
pub async fn serve(listener: UnixListener, ctx: Arc<Context>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => { tokio::spawn(client(stream, ctx.clone())); }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            _ = stop.notified() => break,
        }
    }
}

async fn client(stream: UnixStream, ctx: Arc<Context>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE + 1);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if line.len() as u64 > MAX_LINE {
            Error::other(ErrorKind::BadRequest, "request line longer than 1 MiB").to_reply()
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        } else {
            Stats::inc(&ctx.stats.control_requests);
            match host::parse(&line).and_then(|op| host::execute(&ctx, op)) {
                Ok(v) => v,
                Err(e) => e.to_reply(),
            }
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || line.len() as u64 > MAX_LINE {
            return;
        }
    }
}
