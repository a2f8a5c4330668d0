//! Helpers for tests that talk to a real engine over real sockets on 127.0.0.1 port 0.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use embedchat::{Engine, Event, EventKind};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(5);

/// Starts an engine on a free port with extra config keys merged in.
pub fn engine(extra: Value) -> Engine {
    let mut cfg = serde_json::json!({"listen": "127.0.0.1:0"});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    Engine::start_json(&cfg.to_string()).expect("engine starts")
}

pub async fn connect(e: &Engine, query: &str) -> Client {
    let url = format!("ws://127.0.0.1:{}/ws?{query}", e.port());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Next text message as JSON (pings and pongs skipped).
pub async fn recv(ws: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Next message whose `type` is `kind`, skipping others.
pub async fn recv_type(ws: &mut Client, kind: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// The welcome and the room's history that follows it; returns the welcome.
pub async fn welcomed(ws: &mut Client) -> Value {
    let w = recv(ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    let h = recv(ws).await;
    assert_eq!(h["type"], "history", "{h}");
    w
}

pub async fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Polls engine events until one of `kind` arrives.
pub fn wait_event(e: &Engine, kind: EventKind) -> Event {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(ev) = e.poll_event(Some(Duration::from_millis(50))).unwrap() {
            if ev.kind == kind {
                return ev;
            }
        }
    }
    panic!("no {kind:?} event within {WAIT:?}");
}

/// target/debug (or release), where cargo put libembedchat.so next to the test binary's parent.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libembedchat.so").exists(),
        "no libembedchat.so in {}: run `cargo build` first (scripts/test does)",
        dir.display()
    );
    dir
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child process when dropped, so a failing test never leaves a server behind (which
/// would also keep cargo waiting on the output pipe it inherited).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The "echo bot in the lobby" scenario every host example implements: the host prints
/// `listening on http://127.0.0.1:PORT`, answers `/time` privately with a text containing
/// `reply_has`, logs the message event, and on SIGINT closes clients with 1001, prints
/// `stopped (ok): {stats}` last and exits 0.
pub async fn time_bot_scenario(child: Child, reply_has: &str) {
    use std::io::BufRead;
    let mut child = KillOnDrop(child);
    let mut out = std::io::BufReader::new(child.0.stdout.take().expect("stdout piped"));
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    let url = format!("ws://127.0.0.1:{port}/ws?name=tester");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    recv_type(&mut ws, "welcome").await;
    send(&mut ws, "/time").await;
    let reply = recv_type(&mut ws, "whisper").await;
    assert!(reply["text"].as_str().unwrap().contains(reply_has), "{reply}");

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    assert_eq!(close_code(&mut ws).await.map(u16::from), Some(1001));
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(20));
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    assert!(status.success(), "{status} {lines:?}");
    assert!(lines.iter().any(|l| l.contains("\"kind\":\"message\"") && l.contains("/time")), "{lines:?}");
    assert!(lines.last().is_some_and(|l| l.starts_with("stopped (ok): {")), "{lines:?}");
}

/// The text of a WebSocket upgrade request for `path` (with its query), with extra header lines
/// (`extra`: whole lines, CRLF-terminated).
pub fn upgrade_request(path: &str, host: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends an upgrade request on `s` and reads the status line; panics unless it is 101.
pub fn upgrade_on(s: &mut std::net::TcpStream, path: &str) {
    s.write_all(upgrade_request(path, "x", "").as_bytes()).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"HTTP/1.1 101");
}

/// A short masked text frame as a client sends it (mask 0, so the payload reads as is).
pub fn masked_text(text: &[u8]) -> Vec<u8> {
    assert!(text.len() < 126, "short frames only");
    let mut f = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(text);
    f
}

/// The library's text for the last failure on this thread.
pub fn last_error() -> String {
    // SAFETY: chat_last_error never returns NULL and the text lives until the next failure here.
    unsafe { std::ffi::CStr::from_ptr(embedchat::ffi::chat_last_error()) }.to_string_lossy().into_owned()
}

/// Sends an upgrade request with extra header lines; returns the status code and the stream.
pub fn raw_upgrade(port: u16, path: &str, extra: &str) -> (u16, std::net::TcpStream) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // A refused request may be cut off mid-write; the answer is still read below.
    let _ = s.write_all(upgrade_request(path, &format!("127.0.0.1:{port}"), extra).as_bytes());
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, s)
}

/// Reads server frames until a close; returns its code (None if the TCP connection just ended).
pub fn raw_close_code(s: &mut std::net::TcpStream) -> Option<u16> {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let mut len = (h[1] & 0x7f) as usize;
        if len == 126 {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            len = u16::from_be_bytes(l) as usize;
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).ok()?;
        if h[0] & 0x0f == 8 {
            return Some(u16::from_be_bytes([body[0], body[1]]));
        }
    }
}

/// One HTTP/1.1 request with `Connection: close` and a JSON body; returns the status and body.
pub fn http(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let (status, _, body) =
        http_response(port, method, path, &format!("{headers}Content-Type: application/json\r\n"), body);
    (status, body)
}

/// One HTTP/1.1 request with `Connection: close` (`headers`: whole lines, CRLF-terminated);
/// returns the status, the response head and the body.
pub fn http_response(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // One write: a request that arrives in pieces is a different test.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

/// An HS256 login token as a site would mint it.
pub fn token(secret: &str, claims: Value) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
