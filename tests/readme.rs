//! The README's commands, run as written, so the README cannot drift from the code: every
//! `cargo run --release --example chat_server …` line (the seed one with `--`, which cargo would
//! otherwise take for itself) and the PHP site's `examples/php/site/run`. Each is moved to a
//! free port through the environment (`EMBEDCHAT_LISTEN`, `EMBEDCHAT_SITE_LISTEN`), not by
//! editing the command, used a little, and stopped with Ctrl-C's SIGINT. Bounded by timeouts;
//! the first may build the release library, hence the long first wait.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::*;

/// A build of the release library on a busy machine, plus the start.
const FIRST_START: Duration = Duration::from_secs(1500);

/// The lines of the README's shell blocks that are one of the commands tested here, without
/// their trailing comments.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut shell = false;
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(lang) = t.strip_prefix("```") {
            shell = !fenced && matches!(lang, "sh" | "bash" | "console");
            fenced = !fenced;
            continue;
        }
        let cmd = t.split(" #").next().unwrap_or("").trim();
        if shell
            && (cmd.starts_with("cargo run --release --example chat_server")
                || cmd == "examples/php/site/run")
        {
            out.push(cmd.to_string());
        }
    }
    out.dedup();
    out
}

/// A command started in a process group of its own (as a shell runs it), its output lines
/// collected; the whole group is killed when this is dropped.
struct Running {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(cmd: &str, env: &[(&str, String)]) -> Running {
        let mut c = Command::new("sh");
        c.args(["-c", cmd])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        let pipe = |r: Box<dyn Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let lines = pipe(Box::new(child.stdout.take().unwrap()));
        let errors = pipe(Box::new(child.stderr.take().unwrap()));
        Running { child, lines, errors, seen: Vec::new() }
    }

    /// Waits for an output line containing `needle`; returns it.
    fn line_with(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "exited ({status}) before printing {needle:?}: {:?} {:?}",
                            self.seen,
                            self.stderr()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no line with {needle:?} within {limit:?}: {:?} {:?}", self.seen, self.stderr());
    }

    fn stderr(&self) -> Vec<String> {
        self.errors.try_iter().collect()
    }

    /// Ctrl-C: SIGINT to the whole group, as a terminal sends it; the group must be gone
    /// within `limit` (the shell itself may end by the signal). Returns what was printed after.
    fn interrupt(&mut self, limit: Duration) -> Vec<String> {
        use std::os::unix::process::ExitStatusExt;
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGINT) };
        let status = wait_with_timeout(&mut self.child, limit);
        assert!(
            status.success() || status.signal() == Some(libc::SIGINT) || status.code() == Some(130),
            "{status}"
        );
        // The output pipes close once every process of the group has ended.
        let deadline = Instant::now() + limit;
        let mut after = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => after.push(l),
                Err(_) => break,
            }
        }
        after
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The port of the first `http://host:port` in a line.
fn port_in(line: &str) -> u16 {
    let rest = &line[line.find("http://").expect(line) + 7..];
    let addr = rest.split(|c: char| c == '/' || c.is_whitespace()).next().unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in {line}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_readme_shows_every_command_this_test_runs() {
    let cmds = readme_commands();
    for expected in [
        "cargo run --release --example chat_server",
        "cargo run --release --example chat_server -- --config examples/seed/config.json",
        "examples/php/site/run",
    ] {
        assert!(cmds.iter().any(|c| c == expected), "README lacks `{expected}` in a shell block: {cmds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_chat_server_commands_work_as_written() {
    let cmds: Vec<String> = readme_commands().into_iter().filter(|c| c.starts_with("cargo run")).collect();
    assert!(!cmds.is_empty());
    for cmd in cmds {
        let mut run = Running::start(&cmd, &[("EMBEDCHAT_LISTEN", "127.0.0.1:0".into())]);
        let port = port_in(&run.line_with("listening on http://", FIRST_START));
        let (status, _, page) = http_response(port, "GET", "/", "", "");
        assert_eq!(status, 200, "{cmd}: the page");
        assert!(page.contains("<title>embedchat</title>"), "{cmd}");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?name=reader"))
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        if cmd.contains("examples/seed/config.json") {
            // Seed mode: the tutorial's wire, chat messages only.
            send(&mut ws, "hello seed").await;
            let m = recv(&mut ws).await;
            assert_eq!(
                (m["mess"].as_str(), m["name"].as_str()),
                (Some("hello seed"), Some("reader")),
                "{cmd}"
            );
        } else {
            recv_type(&mut ws, "welcome").await;
            send(&mut ws, "/time").await;
            assert!(recv_type(&mut ws, "whisper").await["text"].as_str().unwrap().contains("server time"));
        }
        let after = run.interrupt(Duration::from_secs(30));
        assert!(after.iter().any(|l| l.starts_with("stopped (ok)")), "{cmd}: a clean stop: {after:?}");
    }
}

#[test]
fn the_readmes_php_site_command_works_as_written() {
    assert!(readme_commands().iter().any(|c| c == "examples/php/site/run"));
    let site = free_port();
    let mut run = Running::start(
        "examples/php/site/run",
        &[("EMBEDCHAT_LISTEN", "127.0.0.1:0".into()), ("EMBEDCHAT_SITE_LISTEN", format!("127.0.0.1:{site}"))],
    );
    let chat = port_in(&run.line_with("listening on http://", FIRST_START));
    let open = run.line_with("Open http://", Duration::from_secs(60));
    assert_eq!(port_in(&open), site, "{open}");
    assert!(open.contains("/login.php"), "{open}");

    let (status, _, body) = http_response(site, "GET", "/login.php", "", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Your name"), "the site runs, with the secrets it needs: {body}");
    // Signed in, the site frames the daemon's page with a token the daemon accepts.
    let (status, head, _) = http_response(
        site,
        "POST",
        "/login.php",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "name=Readme",
    );
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: ").or_else(|| l.strip_prefix("set-cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect(&head)
        .to_string();
    let (_, _, page) = http_response(site, "GET", "/login.php", &format!("Cookie: {cookie}\r\n"), "");
    let token = page.split("#token=").nth(1).and_then(|t| t.split('"').next()).expect(&page);
    let offer = format!("Sec-WebSocket-Protocol: embedchat, embedchat.token.{token}\r\n");
    assert_eq!(upgrade_status(chat, "/ws", &offer), 101, "the daemon knows the site's secret");

    // A refused upgrade is logged by the daemon, with its reason.
    assert_eq!(
        upgrade_status(chat, "/ws", "Sec-WebSocket-Protocol: embedchat, embedchat.token.forged\r\n"),
        401
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut errors = Vec::new();
    while Instant::now() < deadline
        && !errors.iter().any(|l: &String| l.contains("refused a WebSocket upgrade"))
    {
        errors.extend(run.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        errors.iter().any(|l| l.contains("refused a WebSocket upgrade: HTTP 401")),
        "the daemon logs refusals: {errors:?}"
    );
    let after = run.interrupt(Duration::from_secs(30));
    assert!(after.iter().any(|l| l.starts_with("stopped (ok)")), "the daemon stops cleanly: {after:?}");
}

/// The status an upgrade request gets (the connection is dropped after the status line).
fn upgrade_status(port: u16, path: &str, extra: &str) -> u16 {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request(path, &format!("127.0.0.1:{port}"), extra).as_bytes()).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    String::from_utf8_lossy(&b[9..12]).parse().unwrap()
}
