//! embedchat's benchmark: fan-out throughput and latency, and idle memory per connection,
//! measured against Node's `ws` in the same run, with the same clients.
//!
//!     cargo build --release --lib --examples && npm ci --prefix bench
//!     target/release/examples/bench fanout --subs 1000 --msgs 2000 --size 64 --runs 3
//!     target/release/examples/bench idle --conns 10000 --runs 3
//!
//! Options: `--targets embedchat,ws` (which servers), `--server-cpu 0 --client-cpu 1` (the server
//! is pinned with taskset, the clients pin themselves), `--rate N` (fan-out: N messages/s; 0 = flat
//! out, keeping at most `--window` messages in flight), `--room-size N` (idle: members per room).
//!
//! Each server is started fresh per run: `chat_server` (embedchat, one worker thread) or
//! `bench/ws_server.js`. One connection publishes; every connection, the publisher included,
//! receives every message. Latency is publish → receive on one clock (same process). Figures are
//! medians over the runs; the machine is shared, so compare the ratio, not the absolute numbers.

use std::io::{BufRead, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Opts {
    mode: String,
    targets: Vec<String>,
    subs: usize,
    msgs: usize,
    size: usize,
    rate: u64,
    window: usize,
    conns: usize,
    room_size: usize,
    runs: usize,
    server_cpu: usize,
    client_cpu: usize,
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    if mode != "fanout" && mode != "idle" && mode != "hook" {
        eprintln!("usage: bench fanout|idle|hook [--targets embedchat,ws] [--subs N] [--msgs N] [--size BYTES] [--rate N] [--window N] [--conns N] [--room-size N] [--runs N] [--server-cpu N] [--client-cpu N]");
        std::process::exit(2);
    }
    let mut o = Opts {
        mode,
        targets: vec!["embedchat".into(), "ws".into()],
        subs: 1000,
        msgs: 2000,
        size: 64,
        rate: 0,
        window: 64,
        conns: 10_000,
        room_size: 100,
        runs: 3,
        server_cpu: 0,
        client_cpu: 1,
    };
    while let Some(k) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let n = || v.parse::<usize>().unwrap_or_else(|_| panic!("{k}: not a number: {v}"));
        match k.as_str() {
            "--targets" => o.targets = v.split(',').map(String::from).collect(),
            "--subs" => o.subs = n(),
            "--msgs" => o.msgs = n(),
            "--size" => o.size = n(),
            "--rate" => o.rate = n() as u64,
            "--window" => o.window = n(),
            "--conns" => o.conns = n(),
            "--room-size" => o.room_size = n().max(1),
            "--runs" => o.runs = n().max(1),
            "--server-cpu" => o.server_cpu = n(),
            "--client-cpu" => o.client_cpu = n(),
            _ => panic!("unknown option {k}"),
        }
    }
    assert!(
        o.conns <= 19_000 && o.subs <= 19_000,
        "one process may hold 20,000 fds: stay under 19,000 connections"
    );
    o
}

/// A server under test, pinned to one CPU.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(target: &str, cpu: usize) -> Server {
        let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpu.to_string());
        match target {
            "embedchat" => {
                let cfg = std::env::temp_dir().join(format!("embedchat-bench-{}.json", std::process::id()));
                std::fs::write(
                    &cfg,
                    r#"{"worker_threads": 1, "max_connections": 100000, "max_connections_per_ip": 0,
                        "max_messages_per_second": 0, "event_queue": 1048576}"#,
                )
                .unwrap();
                cmd.arg(exe_dir.join("chat_server"))
                    .args(["--listen", "127.0.0.1:0", "--quiet", "--config"])
                    .arg(cfg);
            }
            "php-auto" | "php-approve" => {
                let lib = exe_dir.parent().unwrap().join("libembedchat.so");
                cmd.env("EMBEDCHAT_LIB", lib).arg("php").arg(root.join("bench/php_host.php"));
                cmd.arg(target.trim_start_matches("php-")).arg(HOOK_MESSAGES.to_string());
            }
            "ws" => {
                assert!(
                    root.join("bench/node_modules/ws").exists(),
                    "the ws peer is not installed: run `npm ci --prefix bench`"
                );
                cmd.arg("node").arg(root.join("bench/ws_server.js"));
            }
            other => panic!("unknown target {other}"),
        }
        let mut child =
            cmd.stdout(Stdio::piped()).spawn().expect("start server (taskset, chat_server, node)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{target}: unexpected first line {line:?}"));
        // Keep draining so the server never blocks on a full stdout pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        Server { child, port }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; affinity for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Opens a WebSocket from `local_ip` and returns the stream plus bytes read past the handshake.
async fn ws_connect(port: u16, local_ip: Ipv4Addr, query: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(local_ip.into(), 0))?;
    let mut s = sock.connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(String::from_utf8_lossy(&buf).into_owned()));
            }
            return Ok((s, buf.split_off(end + 4)));
        }
    }
}

/// Calls `f(opcode, payload)` for each complete server (unmasked) frame; returns bytes used.
fn frames(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
    let mut pos = 0;
    loop {
        let d = &buf[pos..];
        if d.len() < 2 {
            return pos;
        }
        let (len, hdr) = match d[1] & 0x7f {
            126 if d.len() >= 4 => (u16::from_be_bytes([d[2], d[3]]) as usize, 4),
            127 if d.len() >= 10 => (u64::from_be_bytes(d[2..10].try_into().unwrap()) as usize, 10),
            126 | 127 => return pos,
            n => (n as usize, 2),
        };
        if d.len() < hdr + len {
            return pos;
        }
        f(d[0] & 0x0f, &d[hdr..hdr + len]);
        pos += hdr + len;
    }
}

/// Source addresses rotate per run: each 127.0.0.x has ~28k ports and a closed connection keeps
/// its port in TIME_WAIT for a minute, so back-to-back runs must not reuse one address.
static NEXT_IP: AtomicUsize = AtomicUsize::new(2);

/// Reserves enough fresh source addresses for `conns` connections; returns the address picker.
fn source_ips(conns: usize) -> impl Fn(usize) -> Ipv4Addr {
    let blocks = conns / 10_000 + 1;
    let mut base = NEXT_IP.fetch_add(blocks, Ordering::SeqCst);
    if base + blocks > 254 {
        NEXT_IP.store(2 + blocks, Ordering::SeqCst);
        base = 2;
    }
    move |i| Ipv4Addr::new(127, 0, 0, (base + i / 10_000) as u8)
}

fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut b = vec![0x81];
    if payload.len() < 126 {
        b.push(0x80 | payload.len() as u8);
    } else {
        b.push(0x80 | 126);
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    b.extend_from_slice(&mask);
    b.extend(payload.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]));
    b
}

const MESSAGE_PREFIX: &[u8] = br#"{"type":"message""#;

/// The publish time (ns since `t0`) carried in a message's text `T<ns>|…`.
fn sent_ns(payload: &[u8]) -> Option<u64> {
    let key = br#""text":"T"#;
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0u64, |acc, d| acc * 10 + (d - b'0') as u64))
}

struct Shared {
    t0: Instant,
    ready: AtomicUsize,
    delivered: AtomicU64,
    /// ns since t0 of the latest delivery anywhere.
    last_ns: AtomicU64,
}

/// Reads frames until `expect` messages came (or the connection ends); returns latencies in µs.
async fn subscribe(
    mut rd: impl tokio::io::AsyncRead + Unpin,
    mut buf: Vec<u8>,
    sh: Arc<Shared>,
    expect: usize,
) -> Vec<u32> {
    let mut lat = Vec::with_capacity(expect.min(1 << 16));
    let mut got = 0;
    let mut welcomed = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let used = frames(&buf, |op, p| {
            if op != 1 {
                return;
            }
            if !welcomed {
                welcomed = true;
                sh.ready.fetch_add(1, Ordering::SeqCst);
            }
            if p.starts_with(MESSAGE_PREFIX) {
                let now = sh.t0.elapsed().as_nanos() as u64;
                if let Some(sent) = sent_ns(p) {
                    lat.push(((now.saturating_sub(sent)) / 1000) as u32);
                }
                got += 1;
                sh.delivered.fetch_add(1, Ordering::Relaxed);
                sh.last_ns.fetch_max(now, Ordering::Relaxed);
            }
        });
        buf.drain(..used);
        if got >= expect {
            return lat;
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return lat,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct FanoutResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: u64,
}

async fn fanout_once(o: &Opts, port: u16) -> FanoutResult {
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        ready: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    let mut readers = Vec::new();
    let mut publisher = None;
    let mut keep = Vec::new();
    let ip_for = source_ips(o.subs);
    for i in 0..o.subs {
        let ip = ip_for(i);
        let (s, rest) = ws_connect(port, ip, &format!("name=s{i}&room=bench")).await.expect("connect");
        let (rd, wr) = s.into_split();
        if i == 0 {
            publisher = Some(wr);
        } else {
            keep.push(wr); // dropping a write half shuts the socket down: keep it until the end
        }
        readers.push(tokio::spawn(subscribe(rd, rest, sh.clone(), o.msgs)));
    }
    let mut publisher = publisher.unwrap();
    let ready_by = Instant::now() + Duration::from_secs(60);
    while sh.ready.load(Ordering::SeqCst) < o.subs && Instant::now() < ready_by {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the join announcements settle before timing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = sh.delivered.load(Ordering::SeqCst);
    assert_eq!(base, 0);
    let pad = "x".repeat(o.size.saturating_sub(24));
    let start_ns = sh.t0.elapsed().as_nanos() as u64;
    let interval = (o.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / o.rate));
    let started = Instant::now();
    for k in 0..o.msgs {
        match interval {
            Some(iv) => tokio::time::sleep_until((started + iv * k as u32).into()).await,
            None => {
                // Flat out, but at most `window` messages ahead of the average subscriber.
                while (k as u64) * o.subs as u64
                    > sh.delivered.load(Ordering::Relaxed) + (o.window * o.subs) as u64
                {
                    tokio::task::yield_now().await;
                }
            }
        }
        let text = format!("T{}|{}", sh.t0.elapsed().as_nanos(), pad);
        publisher.write_all(&client_frame(text.as_bytes())).await.expect("publish");
    }
    let mut lat = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for r in readers {
        if let Ok(Ok(mut l)) = tokio::time::timeout_at(deadline, r).await {
            lat.append(&mut l);
        }
    }
    drop(keep);
    let delivered = sh.delivered.load(Ordering::SeqCst);
    let secs = (sh.last_ns.load(Ordering::SeqCst).saturating_sub(start_ns)) as f64 / 1e9;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
            as f64
            / 1000.0
    };
    FanoutResult {
        per_sec: delivered as f64 / secs.max(1e-9),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        lost: (o.subs * o.msgs) as u64 - delivered,
    }
}

/// Messages per `hook` run (the PHP host exits after handling this many).
const HOOK_MESSAGES: usize = 500;

/// One client sends a message, waits until it comes back from the room, and sends the next;
/// returns each round trip in µs.
async fn round_trips(port: u16, n: usize) -> Vec<u32> {
    let (s, mut buf) = ws_connect(port, Ipv4Addr::new(127, 0, 0, 2), "name=rtt").await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let sent = Instant::now();
        wr.write_all(&client_frame(format!("m{i}").as_bytes())).await.expect("send");
        let want = format!(r#""text":"m{i}""#);
        loop {
            let mut found = false;
            let used = frames(&buf, |op, p| {
                if op == 1
                    && p.starts_with(MESSAGE_PREFIX)
                    && p.windows(want.len()).any(|w| w == want.as_bytes())
                {
                    found = true;
                }
            });
            buf.drain(..used);
            if found {
                break;
            }
            let k = rd.read(&mut chunk).await.expect("read");
            assert!(k > 0, "server closed");
            buf.extend_from_slice(&chunk[..k]);
        }
        out.push(sent.elapsed().as_micros() as u32);
    }
    out
}

struct IdleResult {
    per_conn_kib: f64,
    rss_mib: f64,
    open: usize,
}

async fn idle_once(o: &Opts, server: &Server) -> IdleResult {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        ready: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    let mut writers = Vec::new();
    let ip_for = source_ips(o.conns);
    for batch in (0..o.conns).collect::<Vec<_>>().chunks(500) {
        let mut conns = Vec::new();
        for &i in batch {
            let ip = ip_for(i);
            let room = format!("idle-{}", i / o.room_size);
            let port = server.port;
            conns.push(tokio::spawn(async move { ws_connect(port, ip, &format!("room={room}")).await }));
        }
        for c in conns {
            let (s, rest) = c.await.unwrap().expect("connect");
            let (rd, wr) = s.into_split();
            writers.push(wr);
            // Drain whatever the server sends (welcome, joins) so nothing waits in its queues.
            tasks.push(tokio::spawn(subscribe(rd, rest, sh.clone(), usize::MAX)));
        }
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    while sh.ready.load(Ordering::SeqCst) < o.conns && Instant::now() < ready_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let open = sh.ready.load(Ordering::SeqCst);
    drop(writers);
    for t in tasks {
        t.abort();
    }
    IdleResult {
        per_conn_kib: (after.saturating_sub(before)) as f64 / o.conns as f64,
        rss_mib: after as f64 / 1024.0,
        open,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The latency a PHP host adds by approving every message (relay `host`) against one that
/// only watches (relay `auto`).
fn hook_bench(o: &Opts, rt: &tokio::runtime::Runtime) {
    println!("# {HOOK_MESSAGES} messages, one at a time, send -> back from the room; PHP CLI host");
    println!("| host | p50 round trip ms (median) | p99 round trip ms (median) | runs (p50) |");
    println!("|---|---|---|---|");
    let mut p50s = Vec::new();
    for target in ["php-auto", "php-approve"] {
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for _ in 0..o.runs {
            let server = Server::start(target, o.server_cpu);
            let mut rtt = rt.block_on(round_trips(server.port, HOOK_MESSAGES));
            rtt.sort_unstable();
            p50.push(rtt[rtt.len() / 2] as f64 / 1000.0);
            p99.push(rtt[rtt.len() * 99 / 100] as f64 / 1000.0);
            server.stop();
        }
        let runs = p50.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" / ");
        let m = median(p50.clone());
        p50s.push(m);
        println!("| {target} | {m:.3} | {:.3} | {runs} |", median(p99));
    }
    println!("# added by approving in PHP (p50): {:.3} ms", p50s[1] - p50s[0]);
}

fn main() {
    let o = parse_opts();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    pin_self(o.client_cpu);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "# bench {} | server pinned to cpu {}, clients on cpu {} | {} cores | runs {}",
        o.mode, o.server_cpu, o.client_cpu, cores, o.runs
    );
    if o.mode == "hook" {
        return hook_bench(&o, &rt);
    }
    if o.mode == "fanout" {
        println!(
            "# {} subscribers, {} messages of {} B, {}",
            o.subs,
            o.msgs,
            o.size,
            if o.rate == 0 { format!("flat out (window {})", o.window) } else { format!("{} msg/s", o.rate) }
        );
        println!("| server | deliveries/s (median) | runs | p50 latency ms | p99 latency ms | lost |");
        println!("|---|---|---|---|---|---|");
    } else {
        println!("# {} idle connections, rooms of {}", o.conns, o.room_size);
        println!("| server | RSS per connection KiB (median) | runs | server RSS MiB | connections open |");
        println!("|---|---|---|---|---|");
    }
    let mut summary = Vec::new();
    for target in &o.targets {
        let mut a = Vec::new();
        let (mut p50, mut p99, mut lost, mut rss, mut open) = (Vec::new(), Vec::new(), 0, Vec::new(), 0);
        for _ in 0..o.runs {
            let server = Server::start(target, o.server_cpu);
            if o.mode == "fanout" {
                let r = rt.block_on(fanout_once(&o, server.port));
                a.push(r.per_sec);
                p50.push(r.p50_ms);
                p99.push(r.p99_ms);
                lost += r.lost;
            } else {
                let r = rt.block_on(idle_once(&o, &server));
                a.push(r.per_conn_kib);
                rss.push(r.rss_mib);
                open = r.open;
            }
            server.stop();
        }
        let runs = a.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" / ");
        let m = median(a.clone());
        summary.push((target.clone(), m));
        if o.mode == "fanout" {
            println!("| {target} | {m:.0} | {runs} | {:.2} | {:.2} | {lost} |", median(p50), median(p99));
        } else {
            let runs = a.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" / ");
            println!("| {target} | {m:.2} | {runs} | {:.1} | {open} |", median(rss));
        }
    }
    if summary.len() == 2 {
        let (a, b) = (&summary[0], &summary[1]);
        let what = if o.mode == "fanout" { "throughput" } else { "memory per connection" };
        println!("# {what} ratio {}/{}: {:.2}", a.0, b.0, a.1 / b.1);
    }
}
