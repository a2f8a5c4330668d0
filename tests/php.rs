//! PHP hosts: the real PHP CLI with FFI loading the real libembedchat.so.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn php(script: &str, args: &[&str]) -> std::process::Child {
    Command::new("php")
        .arg(root().join(script))
        .args(args)
        .env("EMBEDCHAT_LIB", lib_dir().join("libembedchat.so"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the php CLI (apt install php-cli; scripts/test installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_takes_10000_messages_through_dispatch_while_running_php_code() {
    const CLIENTS: usize = 10;
    const EACH: usize = 1000;
    let mut child = php("tests/php/receive_all.php", &[&(CLIENTS * EACH).to_string()]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect(&line);

    let mut senders = Vec::new();
    for c in 0..CLIENTS {
        senders.push(tokio::spawn(async move {
            let url = format!("ws://127.0.0.1:{port}/ws?name=c{c}");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for i in 0..EACH {
                ws.feed(Message::text(format!("c{c}-{i}"))).await.unwrap();
            }
            ws.flush().await.unwrap();
            ws // kept open until PHP has everything
        }));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || wait_with_timeout(&mut child, Duration::from_secs(150)))
        .await
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "PHP failed: {status} {rest}");
    assert!(rest.starts_with(&format!("received {}", CLIENTS * EACH)), "{rest}");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_daemon_answers_time_and_stops_cleanly_on_sigint() {
    let dir = TempDir::new("timebot");
    let arg = format!("--db={}", dir.path("chat.sqlite"));
    time_bot_scenario(php("examples/php/daemon.php", &["127.0.0.1:0", &arg]), "PHP").await;
}

#[test]
fn php_host_misuse_gets_error_codes_and_never_crashes() {
    let mut child = php("tests/php/misuse.php", &[]);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert_eq!(out.trim(), "0 checks failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_host_approving_every_message_lets_each_one_through_in_order() {
    const N: usize = 100;
    let mut child = KillOnDrop(php("bench/php_host.php", &["approve", &N.to_string()]));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect(&first);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.unwrap();
    welcomed(&mut ws).await;
    for i in 0..N {
        send(&mut ws, &format!("m{i}")).await;
        let m = recv_type(&mut ws, "message").await;
        assert_eq!(m["text"], format!("m{i}"), "approved by PHP, in order");
    }
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(30));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "{status} {rest}");
    assert_eq!(rest.trim(), format!("handled {N}, failed approvals 0"));
}

/// A scratch directory for one test, removed at the end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("embedchat-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const API_KEY: &str = "php-test-api-key-0123456789";
const SECRET: &str = "php-test-secret-0123456789";

/// Starts examples/php/daemon.php; returns it and its port.
fn daemon(dir: &TempDir) -> (KillOnDrop, u16) {
    daemon_with(dir, &[])
}

/// Starts examples/php/daemon.php with more environment variables.
fn daemon_with(dir: &TempDir, env: &[(&str, String)]) -> (KillOnDrop, u16) {
    let mut child = Command::new("php")
        .arg(root().join("examples/php/daemon.php"))
        .arg("127.0.0.1:0")
        .arg(format!("--db={}", dir.path("chat.sqlite")))
        .env("EMBEDCHAT_LIB", lib_dir().join("libembedchat.so"))
        .env("EMBEDCHAT_API_KEY", API_KEY)
        .env("EMBEDCHAT_SOCKET", dir.path("chat.sock"))
        .env("EMBEDCHAT_SECRET", SECRET)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .expect("php");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port = first
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    // Keep reading its log so a full pipe never blocks it.
    std::thread::spawn(move || for _ in out.lines() {});
    (KillOnDrop(child), port)
}

fn stop(mut d: KillOnDrop) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.0.id() as i32, libc::SIGINT) };
    assert!(wait_with_timeout(&mut d.0, Duration::from_secs(20)).success());
}

async fn ws(port: u16, query: &str) -> Client {
    let url = format!("ws://127.0.0.1:{port}/ws?{query}");
    tokio_tungstenite::connect_async(url).await.expect("connect").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_daemon_moderates_stores_and_restores_history_across_a_restart() {
    let dir = TempDir::new("daemon");
    let (d, port) = daemon(&dir);
    let mut ann = ws(port, "name=ann").await;
    let welcome = recv_type(&mut ann, "welcome").await;
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    send(&mut ann, "what the heck").await;
    let m = recv_type(&mut ann, "message").await;
    assert_eq!((m["text"].as_str(), m["id"].as_u64()), (Some("what the ****"), Some(1)), "filtered by PHP");
    // A NUL byte in front no longer hides the word: PHP's filter reads the whole text.
    send(&mut ann, r#"{"type":"message","text":"\u0000darn it"}"#).await;
    let m = recv_type(&mut ann, "message").await;
    assert_eq!((m["text"].as_str(), m["id"].as_u64()), (Some("**** it"), Some(2)), "filtered past the NUL");
    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let (status, body) = http(port, "POST", "/api/publish", &auth, r#"{"room":"lobby","text":"news"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(recv_type(&mut ann, "message").await["id"], 3);
    drop(ann);
    stop(d);

    // Back up on the same database: ann resumes after id 1 and gets exactly ids 2 and 3, as
    // published (the database stored the filtered text, not a text cut at the NUL).
    let (d, port) = daemon(&dir);
    let mut ann = ws(port, &format!("name=ann&since=1&epoch={epoch}")).await;
    let w = recv_type(&mut ann, "welcome").await;
    assert_eq!(w["epoch"], epoch.as_str(), "the epoch lives in the database");
    let h = recv_type(&mut ann, "history").await;
    assert_eq!(h["gap"], false);
    let texts: Vec<&str> =
        h["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["**** it", "news"]);
    send(&mut ann, "and on").await;
    assert_eq!(recv_type(&mut ann, "message").await["id"], 4, "ids continue above the stored ones");
    stop(d);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_under_a_web_sapi_posts_by_both_paths_and_logs_users_in() {
    let dir = TempDir::new("site");
    let web = free_port();
    let site_origin = format!("http://127.0.0.1:{web}");
    let (d, port) = daemon_with(&dir, &[("EMBEDCHAT_SITE_ORIGIN", site_origin.clone())]);
    let lib = lib_dir().join("libembedchat.so");
    // login.php frames the daemon's page: the daemon lets the site's origin (and only it) do so.
    let (_, head, _) = http_response(port, "GET", "/", "", "");
    assert!(head.contains(&format!("frame-ancestors 'self' {site_origin}\r\n")), "{head}");

    // php -S with PHP's default ffi.enable (=preload): FFI only through the preload.
    let header = Command::new("php")
        .arg(root().join("bindings/php/bin/ffi-header.php"))
        .arg(&lib)
        .output()
        .expect("php");
    assert!(header.status.success());
    std::fs::write(dir.path("ffi.h"), &header.stdout).unwrap();
    let mut cmd = Command::new("php");
    cmd.args(["-d", &format!("ffi.preload={}", dir.path("ffi.h"))])
        .args(["-d", "opcache.enable=1", "-d", "opcache.enable_cli=1"])
        .args(["-d", &format!("opcache.preload={}", root().join("bindings/php/preload.php").display())]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-d", "opcache.preload_user=root"]);
    }
    let server = KillOnDrop(
        cmd.args(["-S", &format!("127.0.0.1:{web}"), "-t"])
            .arg(root().join("examples/php/site"))
            .env("EMBEDCHAT_LIB", &lib)
            .env("EMBEDCHAT_URL", format!("http://127.0.0.1:{port}"))
            .env("EMBEDCHAT_API_KEY", API_KEY)
            .env("EMBEDCHAT_SOCKET", dir.path("chat.sock"))
            .env("EMBEDCHAT_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php -S"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", web)).is_err() {
        assert!(std::time::Instant::now() < deadline, "php -S did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut reader = ws(port, "name=reader").await;
    recv_type(&mut reader, "welcome").await;
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (status, _, body) = http_response(web, "POST", "/post.php", form, "room=lobby&text=Site+news");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["http"].as_u64(), v["socket"].as_u64()), (Some(1), Some(1)), "{body}");
    let texts = [
        recv_type(&mut reader, "message").await["text"].as_str().unwrap().to_string(),
        recv_type(&mut reader, "message").await["text"].as_str().unwrap().to_string(),
    ];
    assert!(texts.contains(&"Site news".to_string()), "{texts:?}");
    assert!(texts.contains(&"Site news (via the control socket)".to_string()), "{texts:?}");

    // login.php: sign in, get the page with a token, and the token is accepted by the daemon.
    let (status, head, _) = http_response(web, "POST", "/login.php", form, "name=Grace");
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .expect("a session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (_, head, page) = http_response(web, "GET", "/login.php", &format!("Cookie: {cookie}\r\n"), "");
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{head}");
    let token = page.split("#token=").nth(1).and_then(|r| r.split('"').next()).expect("a token in the page");
    let claims = token.split('.').nth(1).expect("a JWT");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).expect("base64url");
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(ttl <= 300, "a short-lived token: {claims}");
    // As the page sends it: in Sec-WebSocket-Protocol, answered with the marker alone.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", format!("embedchat, embedchat.token.{token}").parse().unwrap());
    let (mut grace, resp) = tokio_tungstenite::connect_async(req).await.expect("connect");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "embedchat");
    let w = recv_type(&mut grace, "welcome").await;
    assert_eq!((w["name"].as_str(), w["bound"].as_bool()), (Some("Grace"), Some(true)));
    drop(server);
    stop(d);
}

/// Every (room, id, text) row the daemon's database holds, read with PHP's own PDO.
fn stored(db: &str) -> Vec<(String, u64, String)> {
    let out = Command::new("php")
        .arg("-r")
        .arg(format!(
            "$db = new PDO('sqlite:{db}'); echo json_encode($db->query('SELECT room, id, text FROM messages')->fetchAll(PDO::FETCH_NUM));"
        ))
        .output()
        .expect("php");
    let rows: Vec<(String, u64, String)> = serde_json::from_slice(&out.stdout).expect("rows as JSON");
    rows
}

/// Reads `message` frames (id, text) until the server closes; returns them and the close code.
async fn messages_until_close(ws: &mut Client) -> (Vec<(u64, String)>, Option<u16>) {
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("the daemon closes in time") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "message" {
                    seen.push((v["id"].as_u64().unwrap(), v["text"].as_str().unwrap().to_string()));
                }
            }
            Some(Ok(Message::Close(f))) => return (seen, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (seen, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_daemon_under_traffic_loses_no_message_and_reuses_no_id() {
    let dir = TempDir::new("traffic");
    let mut seen: Vec<(u64, String)> = Vec::new();
    for round in 0..2 {
        let (d, port) = daemon(&dir);
        let mut reader = ws(port, "name=reader").await;
        recv_type(&mut reader, "welcome").await;
        let mut writer = ws(port, "name=writer").await;
        recv_type(&mut writer, "welcome").await;
        // Messages keep coming while the daemon is told to stop.
        let pid = d.0.id() as i32;
        let sending = tokio::spawn(async move {
            for i in 0..30 {
                if writer.send(Message::text(format!("round {round} message {i}"))).await.is_err() {
                    break;
                }
                if i == 15 {
                    // SAFETY: kill(2) on our own child.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let (got, code) = messages_until_close(&mut reader).await;
        assert_eq!(code, Some(1001), "a clean stop");
        assert!(got.len() >= 10, "traffic flowed before the stop: {got:?}");
        sending.await.unwrap();
        let mut d = d;
        assert!(wait_with_timeout(&mut d.0, Duration::from_secs(20)).success());
        seen.extend(got);
    }
    let rows = stored(&dir.path("chat.sqlite"));
    for (id, text) in &seen {
        assert!(
            rows.iter().any(|(room, i, t)| room == "lobby" && i == id && t == text),
            "message {id} ({text}) was seen by a client but not stored: {rows:?}"
        );
    }
    let mut ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no id was given to two messages: {seen:?}");
}

#[test]
fn the_site_refuses_to_run_without_its_secrets() {
    // No built-in secret to fall back on: a deployed copy would accept tokens anyone can forge.
    let web = free_port();
    let start = |env: &[(&str, &str)]| {
        let mut cmd = Command::new("php");
        cmd.args(["-S", &format!("127.0.0.1:{web}"), "-t"])
            .arg(root().join("examples/php/site"))
            .env_remove("EMBEDCHAT_SECRET")
            .env_remove("EMBEDCHAT_API_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = KillOnDrop(cmd.spawn().expect("php -S"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", web)).is_err() {
            assert!(std::time::Instant::now() < deadline, "php -S did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    };
    let server = start(&[]);
    let (status, _, body) = http_response(web, "GET", "/login.php", "", "");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("EMBEDCHAT_SECRET is not set") && body.contains("random_bytes"), "{body}");
    assert!(!body.contains("<iframe"), "{body}");
    drop(server);

    let server = start(&[("EMBEDCHAT_SECRET", SECRET), ("EMBEDCHAT_API_KEY", "short")]);
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (status, _, body) = http_response(web, "POST", "/post.php", form, "room=lobby&text=hi");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("EMBEDCHAT_API_KEY is shorter than 16 bytes"), "{body}");
    drop(server);
}
