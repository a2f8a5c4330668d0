//! embedchat's benchmark: fan-out throughput, latency and server CPU, memory per connection,
//! one big room, a join storm and connect/close churn, measured against uWebSockets
//! (uWebSockets.js) and Node's `ws` in the same run, with the same clients.
//!
//!     cargo build --release --lib --examples && npm ci --prefix bench
//!     target/release/examples/bench fanout --subs 1000 --msgs 2000 --size 64 --runs 3 --targets embedchat,uws,ws
//!     target/release/examples/bench fanout --subs 1000 --msgs 1000 --rate 100 --runs 3 --targets embedchat,uws,ws
//!     target/release/examples/bench idle --conns 10000 --runs 3 --targets embedchat,uws,ws
//!     target/release/examples/bench bigroom --conns 19000 --rate 100 --seconds 10 --runs 3 --targets embedchat,uws,ws
//!     target/release/examples/bench storm --conns 10000 --spread-ms 2000 --runs 3 --targets embedchat,uws,ws
//!     target/release/examples/bench churn --conns 5000 --rounds 2 --runs 1 --targets embedchat,uws,ws
//!     target/release/examples/bench hook --runs 3
//!
//! Modes:
//! - `fanout`: `--subs` connections in one room; one of them publishes `--msgs` messages of
//!   `--size` bytes, flat out (`--rate 0`, at most `--window` messages ahead of the average
//!   subscriber) or at `--rate` per second; every connection, the publisher included, receives
//!   every message. Deliveries/s, publish → receive latency, and the server's CPU time (utime +
//!   stime from /proc) per delivery.
//! - `idle`: `--conns` connections in rooms of `--room-size`; server RSS growth per connection.
//! - `bigroom`: `--conns` (19,000) connections in ONE room, opened as fast as the server lets
//!   them (`--concurrency` (256) handshakes in flight); connect rate (first connect → last
//!   welcome), the server's CPU per connection over that phase (TLS handshakes show here),
//!   RSS growth per connection held once settled, then `--rate` (100) msg/s for
//!   `--seconds` (10) from one of them: delivered % of conns × messages, p50 / p99 latency, and
//!   how busy this process was meanwhile (near 100 %: the clients, not the server, set the
//!   latency).
//! - `storm`: `--conns` (10,000) clients whose connects start evenly within `--spread-ms` (2 s)
//!   into one room; p50 / p99 time from connect start to welcome, and how many got their
//!   welcome before the deadline.
//! - `churn`: `--rounds` (2) times: `--conns` (5,000) connections into one room, all closed
//!   (close frame, then the server ends the connection), settle, server RSS. Memory must not
//!   grow from the first round to the last.
//! - `hook`: the latency a PHP host adds by approving every message (`php-auto`/`php-approve`).
//!
//! Options: `--targets embedchat,uws,ws` (which servers, `embedchat,ws` if not given; the ratio
//! lines at the end compare every other target with embedchat; `clusterN` is N embedchat nodes
//! sharing a `redis-server` of the run's own, all on the server's CPU, with the clients spread
//! evenly over the nodes: `cluster1` is one node that sends everything through Redis; `pusher`
//! and `soketi` are embedchat and Soketi with Pusher-protocol clients: each subscribes to its
//! room's private channel, signed, and the publisher sends client events, which every
//! subscriber but the sender gets), `--tls` (embedchat serves
//! https/wss with a certificate this tool makes, ECDSA P-256, and every client speaks TLS through
//! tokio-rustls with full handshakes, no session resumption; the uws and ws peers stay plain), `--server-cpu 0 --client-cpu 1` (the server is pinned with taskset, the
//! clients pin themselves), `--deadline SECS` (bigroom, storm, churn: the most each phase may
//! take; what was reached by then is reported), `--runs N` (figures are medians over the runs).
//!
//! Each server is started fresh per run: `chat_server` (embedchat, one worker thread, rate and
//! per-IP limits lifted, its default JSON protocol), `bench/uws_server.js` or
//! `bench/ws_server.js`. All clients live in this process (one thread, one core) on 127.0.0.x
//! source addresses and answer the servers' pings, as browsers do. The first text frame a
//! connection gets is its welcome; frames other than `message` (presence, whatever shape) are
//! read and ignored. Latency is publish → receive on one clock (same process). The machine is
//! shared, so compare the ratios, not the absolute numbers.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

const MODES: [&str; 6] = ["fanout", "idle", "bigroom", "storm", "churn", "hook"];

struct Opts {
    mode: String,
    targets: Vec<String>,
    subs: usize,
    msgs: usize,
    size: usize,
    rate: u64,
    window: usize,
    batch: usize,
    deflate: bool,
    conns: usize,
    room_size: usize,
    runs: usize,
    server_cpu: usize,
    client_cpu: usize,
    seconds: u64,
    concurrency: usize,
    deadline: Duration,
    spread_ms: u64,
    rounds: usize,
    tls: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench fanout|idle|bigroom|storm|churn|hook [--targets embedchat,pusher,soketi,uws,ws,clusterN] [--runs N]\n\
         \x20 [--server-cpu N] [--client-cpu N] [--tls]\n\
         \x20 fanout:  [--subs N] [--msgs N] [--size BYTES] [--rate N] [--window N] [--batch N] [--deflate 1]\n\
         \x20 idle:    [--conns N] [--room-size N]\n\
         \x20 bigroom: [--conns N] [--concurrency N] [--rate N] [--seconds N] [--size BYTES] [--deadline SECS]\n\
         \x20 storm:   [--conns N] [--spread-ms MS] [--deadline SECS]\n\
         \x20 churn:   [--conns N] [--rounds N] [--concurrency N] [--deadline SECS]"
    );
    std::process::exit(2);
}

fn parse_opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    if !MODES.contains(&mode.as_str()) {
        usage();
    }
    // Defaults that differ per mode; the fanout and idle ones are what they always were.
    let (conns, rate, deadline) = match mode.as_str() {
        "bigroom" => (19_000, 100, 60),
        "storm" => (10_000, 0, 30),
        "churn" => (5_000, 0, 60),
        _ => (10_000, 0, 60),
    };
    let mut o = Opts {
        mode,
        targets: vec!["embedchat".into(), "ws".into()],
        subs: 1000,
        msgs: 2000,
        size: 64,
        rate,
        window: 64,
        batch: 1,
        deflate: false,
        conns,
        room_size: 100,
        runs: 3,
        server_cpu: 0,
        client_cpu: 1,
        seconds: 10,
        concurrency: 256,
        deadline: Duration::from_secs(deadline),
        spread_ms: 2000,
        rounds: 2,
        tls: false,
    };
    while let Some(k) = args.next() {
        if k == "--tls" {
            o.tls = true;
            continue;
        }
        let v = args.next().unwrap_or_else(|| panic!("{k} needs a value"));
        let n = || v.parse::<usize>().unwrap_or_else(|_| panic!("{k}: not a number: {v}"));
        match k.as_str() {
            "--targets" => o.targets = v.split(',').map(String::from).collect(),
            "--subs" => o.subs = n(),
            "--msgs" => o.msgs = n(),
            "--size" => o.size = n(),
            "--rate" => o.rate = n() as u64,
            "--window" => o.window = n(),
            "--batch" => o.batch = n().max(1),
            "--deflate" => o.deflate = n() != 0,
            "--conns" => o.conns = n(),
            "--room-size" => o.room_size = n().max(1),
            "--runs" => o.runs = n().max(1),
            "--server-cpu" => o.server_cpu = n(),
            "--client-cpu" => o.client_cpu = n(),
            "--seconds" => o.seconds = n() as u64,
            "--concurrency" => o.concurrency = n().max(1),
            "--deadline" => o.deadline = Duration::from_secs(n().max(1) as u64),
            "--spread-ms" => o.spread_ms = n() as u64,
            "--rounds" => o.rounds = n().max(2),
            _ => {
                eprintln!("unknown option {k}");
                usage()
            }
        }
    }
    assert!(
        o.conns <= 19_000 && o.subs <= 19_000,
        "one process may hold 20,000 fds: stay under 19,000 connections"
    );
    assert!(o.mode != "bigroom" || o.rate > 0, "bigroom publishes at --rate messages/s: give one above 0");
    o
}

/// utime + stime of a process (all its threads) in ns, from /proc/PID/stat (clock-tick
/// resolution, 10 ms at the usual 100 Hz: time long enough runs).
fn cpu_ns(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (state) comes first, so utime (14) and stime (15) are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    f.iter().sum::<u64>() * 1_000_000_000 / hz
}

/// A server under test, pinned to one CPU: one process, or (`clusterN`) a `redis-server` and N
/// embedchat nodes, all on that CPU.
struct Server {
    child: Child,
    port: u16,
    /// Every port clients may use (the nodes of a cluster; clients are spread over them).
    ports: Vec<u16>,
    /// The other processes of a cluster (Redis first).
    others: Vec<Child>,
}

/// `clusterN`: how many nodes.
fn cluster_nodes(target: &str) -> Option<usize> {
    target.strip_prefix("cluster").map(|n| n.parse().unwrap_or(2).max(1))
}

/// A `redis-server` of the run's own, pinned to `cpu`, no persistence; returns it and its port.
fn start_redis(cpu: usize) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "redis-server", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(std::env::temp_dir())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

impl Server {
    fn start(target: &str, cpu: usize) -> Server {
        let Some(nodes) = cluster_nodes(target) else { return Self::start_one(target, cpu, None) };
        let (redis, redis_port) = start_redis(cpu);
        let mut others = vec![redis];
        let mut ports = Vec::new();
        let mut first: Option<Server> = None;
        for _ in 0..nodes {
            let node = Self::start_one("embedchat", cpu, Some(redis_port));
            ports.push(node.port);
            match &first {
                None => first = Some(node),
                Some(_) => others.push(node.child),
            }
        }
        let first = first.unwrap();
        Server { child: first.child, port: first.port, ports, others }
    }

    fn start_one(target: &str, cpu: usize, redis_port: Option<u16>) -> Server {
        let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpu.to_string());
        let node_peer = |module: &str, script: &str, cmd: &mut Command| {
            assert!(
                root.join("bench/node_modules").join(module).exists(),
                "the {module} peer is not installed: run `npm ci --prefix bench`"
            );
            cmd.arg("node").arg(root.join("bench").join(script));
        };
        match target {
            "embedchat" | "pusher" => {
                let cfg = std::env::temp_dir().join(format!("embedchat-bench-{}.json", std::process::id()));
                let mut json = serde_json::json!({"worker_threads": 1, "max_connections": 100000,
                    "max_connections_per_ip": 0, "max_messages_per_second": 0, "event_queue": 1048576});
                if let Some(t) = tls_now() {
                    json["tls"] = serde_json::json!({"cert": t.cert, "key": t.key});
                }
                if let Some(p) = redis_port {
                    json["redis_url"] = format!("redis://127.0.0.1:{p}/0").into();
                }
                if target == "pusher" {
                    json["pusher"] = serde_json::json!({"app_id": "bench", "key": PUSHER_KEY,
                        "secret": PUSHER_SECRET, "client_events": true});
                }
                std::fs::write(&cfg, json.to_string()).unwrap();
                cmd.arg(exe_dir.join("chat_server"))
                    .args(["--listen", "127.0.0.1:0", "--quiet", "--config"])
                    .arg(cfg);
            }
            "php-auto" | "php-approve" => {
                let lib = exe_dir.parent().unwrap().join("libembedchat.so");
                cmd.env("EMBEDCHAT_LIB", lib).arg("php").arg(root.join("bench/php_host.php"));
                cmd.arg(target.trim_start_matches("php-")).arg(HOOK_MESSAGES.to_string());
            }
            "uws" => node_peer("uwebsockets", "uws_server.js", &mut cmd),
            "soketi" => node_peer("@soketi/soketi", "soketi_server.js", &mut cmd),
            "ws" => node_peer("ws", "ws_server.js", &mut cmd),
            other => panic!("unknown target {other} (embedchat, pusher, clusterN, uws, ws, soketi)"),
        }
        // The node peers compress only when asked (embedchat's `compression` is on by default).
        cmd.env("BENCH_DEFLATE", if DEFLATE.load(Ordering::Relaxed) { "1" } else { "0" });
        // taskset execs the server, so the child's pid is the server's (its /proc figures).
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
        Server { child, port, ports: vec![port], others: Vec::new() }
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.child.id()).chain(self.others.iter().map(Child::id))
    }

    /// The RSS of every process of the server (a cluster's nodes and its Redis).
    fn rss_kib(&self) -> u64 {
        self.pids()
            .map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    fn cpu_ns(&self) -> u64 {
        self.pids().map(|pid| cpu_ns(&pid.to_string())).sum()
    }

    fn stop(self) {
        let Server { child, others, .. } = self;
        // Nodes before their Redis: a node that loses Redis first only reconnects in vain.
        for mut c in std::iter::once(child).chain(others.into_iter().rev()) {
            // SAFETY: signals our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
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

/// `--deflate 1`: every client offers permessage-deflate (set once in `main`, read by every connect).
static DEFLATE: AtomicBool = AtomicBool::new(false);
/// Targets `pusher` (embedchat) and `soketi`: every client speaks the Pusher protocol
/// (`/app/{key}`), subscribes to the room's private channel (`private-<room>`, signed as a
/// site's auth endpoint signs it) and the publisher sends client events there, which every
/// subscriber but the sender gets.
static PUSHER: AtomicBool = AtomicBool::new(false);
const PUSHER_KEY: &str = "bench-key";
const PUSHER_SECRET: &str = "bench-secret-0123456789";

fn pusher_on() -> bool {
    PUSHER.load(Ordering::Relaxed)
}

/// The client event a Pusher publisher sends into `room`'s channel, timed like `timed_text`.
fn timed_event(sh: &Shared, pad: &str, room: &str) -> Vec<u8> {
    let ev = format!(r#"{{"event":"client-m","channel":"private-{room}","data":"T{}|{pad}"}}"#, sh.now_ns());
    client_frame(ev.as_bytes())
}

/// The message a publisher sends into `room`: a text for the engine's own protocol, a client
/// event for a Pusher one.
fn publish_frame(sh: &Shared, pad: &str, room: &str) -> Vec<u8> {
    if pusher_on() {
        timed_event(sh, pad, room)
    } else {
        timed_text(sh, pad)
    }
}

/// The `activity_timeout` (seconds) a `connection_established` gives; 120 if none.
fn activity_timeout(established: &[u8]) -> u64 {
    let key = br#"activity_timeout\":"#;
    let Some(at) = established.windows(key.len()).position(|w| w == key).map(|i| i + key.len()) else {
        return 120;
    };
    let digits = established[at..].iter().take_while(|b| b.is_ascii_digit());
    digits.fold(0u64, |acc, d| acc * 10 + (d - b'0') as u64).max(1)
}

/// `pusher:subscribe` to `private-<room>` for the socket `connection_established` named.
fn pusher_subscribe(established: &[u8], room: &str) -> Vec<u8> {
    let key = br#"socket_id\":\""#;
    let at = established.windows(key.len()).position(|w| w == key).map_or(0, |i| i + key.len());
    let id: String = established[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    let channel = format!("private-{room}");
    let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, PUSHER_SECRET.as_bytes());
    let sig: String = ring::hmac::sign(&mac, format!("{id}:{channel}").as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sub = format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}","auth":"{PUSHER_KEY}:{sig}"}}}}"#
    );
    client_frame(sub.as_bytes())
}

/// `--tls`: the certificate this run made and a client config that trusts it.
struct TlsSetup {
    client: Arc<rustls::ClientConfig>,
    cert: String,
    key: String,
}

static TLS: OnceLock<TlsSetup> = OnceLock::new();
/// Whether the target being measured now speaks TLS (embedchat with `--tls`).
static TLS_ON: AtomicBool = AtomicBool::new(false);

fn tls_now() -> Option<&'static TlsSetup> {
    TLS.get().filter(|_| TLS_ON.load(Ordering::SeqCst))
}

/// A CA and a server certificate for 127.0.0.1 signed by it (ECDSA P-256, what most sites get
/// from their CA today), written next to the config; clients trust the CA and nothing else, and
/// make a full handshake every time (no resumption: the cost of a first visit or a reconnect
/// storm after a restart).
fn make_tls() -> TlsSetup {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let dir = std::env::temp_dir();
    let cert = dir.join(format!("embedchat-bench-{}-cert.pem", std::process::id()));
    let key_path = dir.join(format!("embedchat-bench-{}-key.pem", std::process::id()));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let mut client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    client.resumption = rustls::client::Resumption::disabled();
    TlsSetup {
        client: Arc::new(client),
        cert: cert.to_str().unwrap().to_string(),
        key: key_path.to_str().unwrap().to_string(),
    }
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client's connection: plain TCP, or TLS (`--tls`).
enum Conn {
    Plain(TcpStream),
    Tls(Box<ClientTls>),
}

enum Rd {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<ClientTls>),
}

enum Wr {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<ClientTls>),
}

impl Conn {
    fn split(self) -> (Rd, Wr) {
        match self {
            Conn::Plain(s) => {
                let (r, w) = s.into_split();
                (Rd::Plain(r), Wr::Plain(w))
            }
            Conn::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Rd::Tls(r), Wr::Tls(w))
            }
        }
    }
}

impl Wr {
    /// Writes all of `b`; over TLS also flushes, since rustls may keep records back otherwise.
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Wr::Plain(w) => w.write_all(b).await,
            Wr::Tls(w) => {
                w.write_all(b).await?;
                w.flush().await
            }
        }
    }
}

/// Opens a WebSocket from `local_ip` (over TLS when the target speaks it) and returns the
/// connection plus bytes read past the handshake.
async fn ws_connect(port: u16, local_ip: Ipv4Addr, query: &str) -> std::io::Result<(Conn, Vec<u8>)> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(local_ip.into(), 0))?;
    let s = sock.connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await?;
    s.set_nodelay(true)?;
    match tls_now() {
        None => {
            let mut s = s;
            let rest = upgrade(&mut s, query).await?;
            Ok((Conn::Plain(s), rest))
        }
        Some(t) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut s = tokio_rustls::TlsConnector::from(t.client.clone()).connect(name, s).await?;
            let rest = upgrade(&mut s, query).await?;
            Ok((Conn::Tls(Box::new(s)), rest))
        }
    }
}

/// The HTTP upgrade on `s`; returns the bytes read past the 101's headers.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, query: &str) -> std::io::Result<Vec<u8>> {
    let path = match pusher_on() {
        true => format!("/app/{PUSHER_KEY}?protocol=7&client=bench&version=8.4.0&{query}"),
        false => format!("/ws?{query}"),
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        if DEFLATE.load(Ordering::Relaxed) {
            // What a browser offers, plus server_no_context_takeover so every server resets its
            // compressor per message and `frames` can inflate each one on its own.
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        } else {
            ""
        }
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
                let status = String::from_utf8_lossy(&buf[..end]).lines().next().unwrap_or("").to_string();
                return Err(std::io::Error::other(status));
            }
            return Ok(buf.split_off(end + 4));
        }
    }
}

/// A compressed message's payload inflated (RFC 7692 §7.2.2: the tail the sender dropped goes
/// back on); the servers never take context over, so each message inflates on its own.
fn inflate(p: &[u8]) -> Vec<u8> {
    thread_local! {
        // One inflater for every connection on this thread, reset per message: a new one per
        // message would cost the load generator more than the server spends compressing.
        static INFLATER: RefCell<flate2::Decompress> = RefCell::new(flate2::Decompress::new(false));
    }
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let input = [p, &[0, 0, 0xff, 0xff][..]].concat();
        let mut out = Vec::with_capacity(p.len() * 4 + 64);
        loop {
            let at = d.total_in() as usize;
            d.decompress_vec(&input[at..], &mut out, flate2::FlushDecompress::Sync)
                .unwrap_or_else(|e| panic!("a compressed message does not inflate: {e}"));
            // All input taken with room to spare: everything it holds is out.
            if d.total_in() as usize == input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity());
        }
    })
}

/// Calls `f(opcode, payload)` for each complete server (unmasked) frame, inflating compressed
/// ones (RSV1); returns bytes used.
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
        let payload = &d[hdr..hdr + len];
        if d[0] & 0x40 != 0 {
            f(d[0] & 0x0f, &inflate(payload));
        } else {
            f(d[0] & 0x0f, payload);
        }
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

/// A masked client frame with FIN set: `op` 1 text, 8 close, 10 pong.
fn client_frame_op(op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut b = vec![0x80 | op];
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

fn client_frame(payload: &[u8]) -> Vec<u8> {
    client_frame_op(1, payload)
}

const MESSAGE_PREFIX: &[u8] = br#"{"type":"message""#;
/// A client event as a Pusher subscriber gets it.
const PUSHER_MESSAGE_PREFIX: &[u8] = br#"{"event":"client-m""#;

/// The publish time (ns since `t0`) carried in a message's text `T<ns>|…` (a client event's
/// data).
fn sent_ns(payload: &[u8]) -> Option<u64> {
    let key: &[u8] =
        if payload.starts_with(PUSHER_MESSAGE_PREFIX) { br#""data":"T"# } else { br#""text":"T"# };
    let at = payload.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0u64, |acc, d| acc * 10 + (d - b'0') as u64))
}

/// What every connection of one run reports into.
struct Shared {
    t0: Instant,
    /// Connections that got their welcome (their first text frame).
    ready: AtomicUsize,
    /// Connections whose connect or handshake failed.
    failed: AtomicUsize,
    /// Readers that ended (the server closed, or the expected messages came).
    ended: AtomicUsize,
    delivered: AtomicU64,
    /// Bytes read from the server after the handshakes, all connections.
    wire_bytes: AtomicU64,
    /// ns since t0 of the latest delivery anywhere.
    last_ns: AtomicU64,
    /// ns since t0 of the latest welcome, and of the latest connect start.
    last_welcome_ns: AtomicU64,
    last_start_ns: AtomicU64,
    /// Publish → receive, µs, every delivery.
    lat_us: Mutex<Vec<u32>>,
    /// Connect start → welcome, µs, every connection.
    welcome_us: Mutex<Vec<u32>>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            t0: Instant::now(),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            last_welcome_ns: AtomicU64::new(0),
            last_start_ns: AtomicU64::new(0),
            lat_us: Mutex::new(Vec::new()),
            welcome_us: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
        })
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn ready(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    /// Prints why connections failed, if any did.
    fn report_failures(&self, target: &str) {
        let failed = self.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let why = self.first_error.lock().unwrap().clone().unwrap_or_default();
            println!("# {target}: {failed} connections failed (first: {why})");
        }
    }
}

/// A connection's write half: the reader answers pings through it while the benchmark publishes
/// or closes through it, so writes take the lock and frames never interleave.
type Writer = Arc<tokio::sync::Mutex<Wr>>;

/// An open client: its write half and the task reading everything the server sends.
struct Client {
    wr: Writer,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The reader holds the write half too; ending it lets the socket close.
        self.reader.abort();
    }
}

thread_local! {
    /// One read buffer for all connections (they share this thread): an idle connection then
    /// costs the benchmark no 64 KiB buffer of its own, which matters at 19,000 connections.
    static CHUNK: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// Waits for bytes and appends them to `buf`; Ok(0) at the end of the stream.
async fn read_some(rd: &mut Rd, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let rd = match rd {
        Rd::Plain(r) => r,
        Rd::Tls(r) => {
            // rustls holds the connection's records itself; the plaintext lands in `buf`.
            buf.reserve(16 * 1024);
            return r.read_buf(buf).await;
        }
    };
    loop {
        rd.readable().await?;
        let r = CHUNK.with(|c| {
            let mut c = c.borrow_mut();
            let r = rd.try_read(&mut c);
            if let Ok(n) = r {
                buf.extend_from_slice(&c[..n]);
            }
            r
        });
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Reads frames until `expect` messages came or the connection ends: counts the welcome (the
/// first text frame; `permit` is released then), times every `message`, answers pings, ignores
/// everything else.
#[allow(clippy::too_many_arguments)] // one reader's whole state, handed over at spawn
async fn subscribe(
    mut rd: Rd,
    mut buf: Vec<u8>,
    sh: Arc<Shared>,
    expect: usize,
    wr: Writer,
    started_ns: u64,
    mut permit: Option<OwnedSemaphorePermit>,
    pusher_channel: Option<String>,
) {
    let mut got = 0;
    let mut welcomed = false;
    // A Pusher client subscribes on `connection_established` and is ready once subscribed; as
    // pusher-js does, it sends `pusher:ping` after `activity_timeout` seconds without a frame
    // (Soketi closes a connection it has sent nothing to for that long) and answers the
    // server's `pusher:ping`.
    let mut established = pusher_channel.is_none();
    let mut activity: Option<Duration> = None;
    let mut lat = Vec::new();
    let mut pongs = Vec::new();
    loop {
        let used = frames(&buf, |op, p| match op {
            1 if !established => {
                established = true;
                activity = Some(Duration::from_secs(activity_timeout(p)));
                pongs.extend_from_slice(&pusher_subscribe(p, pusher_channel.as_deref().unwrap_or_default()));
            }
            1 if activity.is_some() && p.starts_with(br#"{"event":"pusher:ping""#) => {
                pongs.extend_from_slice(&client_frame(br#"{"event":"pusher:pong","data":{}}"#));
            }
            1 if !welcomed && pusher_channel.is_some() && !contains(p, b"subscription_succeeded") => {}
            1 => {
                let now = sh.now_ns();
                if !welcomed {
                    welcomed = true;
                    sh.ready.fetch_add(1, Ordering::SeqCst);
                    sh.last_welcome_ns.fetch_max(now, Ordering::SeqCst);
                    sh.welcome_us.lock().unwrap().push((now.saturating_sub(started_ns) / 1000) as u32);
                    permit = None;
                }
                if p.starts_with(MESSAGE_PREFIX) || p.starts_with(PUSHER_MESSAGE_PREFIX) {
                    if let Some(sent) = sent_ns(p) {
                        lat.push((now.saturating_sub(sent) / 1000) as u32);
                    }
                    got += 1;
                    sh.delivered.fetch_add(1, Ordering::Relaxed);
                    sh.last_ns.fetch_max(now, Ordering::Relaxed);
                }
            }
            9 => pongs.extend_from_slice(&client_frame_op(10, p)),
            _ => {}
        });
        buf.drain(..used);
        if !lat.is_empty() {
            // One lock per read, not per message.
            sh.lat_us.lock().unwrap().append(&mut lat);
        }
        if !pongs.is_empty() {
            if wr.lock().await.write_all(&pongs).await.is_err() {
                break;
            }
            pongs.clear();
        }
        if got >= expect {
            break;
        }
        let read = match activity {
            Some(quiet) => match tokio::time::timeout(quiet, read_some(&mut rd, &mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    pongs.extend_from_slice(&client_frame(br#"{"event":"pusher:ping","data":{}}"#));
                    continue;
                }
            },
            None => read_some(&mut rd, &mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sh.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    drop(permit);
    sh.ended.fetch_add(1, Ordering::SeqCst);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Connects, then reads in a task of its own (see `subscribe`); a failure is counted in `sh`.
async fn open(
    port: u16,
    ip: Ipv4Addr,
    query: String,
    sh: Arc<Shared>,
    expect: usize,
    permit: Option<OwnedSemaphorePermit>,
) -> Option<Client> {
    let started_ns = sh.now_ns();
    sh.last_start_ns.fetch_max(started_ns, Ordering::SeqCst);
    let pusher_channel = pusher_on().then(|| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "room")
            .map_or("bench".into(), |(_, v)| v.into_owned())
    });
    match ws_connect(port, ip, &query).await {
        Ok((s, rest)) => {
            let (rd, wr) = s.split();
            let wr = Arc::new(tokio::sync::Mutex::new(wr));
            let reader =
                tokio::spawn(subscribe(rd, rest, sh, expect, wr.clone(), started_ns, permit, pusher_channel));
            Some(Client { wr, reader })
        }
        Err(e) => {
            sh.failed.fetch_add(1, Ordering::SeqCst);
            sh.first_error.lock().unwrap().get_or_insert_with(|| e.to_string());
            None
        }
    }
}

/// Waits until `done()` or `until`; returns whether `done()` became true.
async fn wait_for(until: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Latency percentile in ms of `sorted` (µs) among `total` samples; the ones missing from
/// `sorted` count as never arriving (infinite).
fn pct_ms(sorted: &[u32], total: usize, p: f64) -> f64 {
    let i = ((total as f64 * p) as usize).min(total.saturating_sub(1));
    sorted.get(i).map(|&us| us as f64 / 1000.0).unwrap_or(f64::INFINITY)
}

fn ms(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "-".into()
    }
}

/// `n` bytes of English chat, not one repeated letter: compression is measured on what people
/// write (a run of "xxx" deflates to nothing and flatters every server).
fn chat_text(n: usize) -> String {
    const WORDS: &str = "did anyone see the release notes for tonight? the deploy went fine on my side but \
        the staging box still shows the old page, could you check the cache headers when you have \
        a minute; thanks, I will be back after lunch with the numbers from the load test ";
    WORDS.chars().cycle().take(n).collect()
}

/// The publish time goes first in every text so receivers can time it; `pad` fills it to size.
fn timed_text(sh: &Shared, pad: &str) -> Vec<u8> {
    client_frame(format!("T{}|{}", sh.now_ns(), pad).as_bytes())
}

struct FanoutResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: u64,
    cpu_ns_per_delivery: f64,
    wire_b_per_delivery: f64,
}

async fn fanout_once(o: &Opts, server: &Server) -> FanoutResult {
    let sh = Shared::new();
    let mut clients = Vec::new();
    let ip_for = source_ips(o.subs);
    for i in 0..o.subs {
        let q = format!("name=s{i}&room=bench");
        let port = server.ports[i % server.ports.len()];
        let c = open(port, ip_for(i), q, sh.clone(), o.msgs, None).await;
        clients.push(c.unwrap_or_else(|| panic!("connect: {:?}", sh.first_error.lock().unwrap())));
    }
    let publisher = clients[0].wr.clone();
    // A Pusher publisher does not get its own client events: the others do.
    let (skip, receivers) = if pusher_on() { (1, o.subs - 1) } else { (0, o.subs) };
    let ready_by = Instant::now() + Duration::from_secs(60);
    wait_for(ready_by, || sh.ready() >= o.subs).await;
    // Let the join announcements settle before timing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = sh.delivered.load(Ordering::SeqCst);
    assert_eq!(base, 0);
    let pad = chat_text(o.size.saturating_sub(24));
    let cpu0 = server.cpu_ns();
    let wire0 = sh.wire_bytes.load(Ordering::SeqCst);
    let start_ns = sh.now_ns();
    let interval = (o.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / o.rate));
    let started = Instant::now();
    let mut k = 0;
    while k < o.msgs {
        match interval {
            Some(iv) => tokio::time::sleep_until((started + iv * k as u32).into()).await,
            None => {
                // Flat out, but at most `window` messages ahead of the average subscriber.
                while (k as u64) * receivers as u64
                    > sh.delivered.load(Ordering::Relaxed) + (o.window * receivers) as u64
                {
                    tokio::task::yield_now().await;
                }
            }
        }
        // `--batch N`: up to N messages in one write (flat out only), as a busy publisher's
        // messages arrive; a server that sends per event-loop turn (uWS) is measured fairly so.
        let n = if interval.is_some() { 1 } else { o.batch.min(o.msgs - k) };
        let mut buf = Vec::new();
        for _ in 0..n {
            buf.extend_from_slice(&publish_frame(&sh, &pad, "bench"));
        }
        publisher.lock().await.write_all(&buf).await.expect("publish");
        k += n;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for c in clients.iter_mut().skip(skip) {
        let _ = tokio::time::timeout_at(deadline, &mut c.reader).await;
    }
    // Before the connections close: closing costs the server CPU too.
    let cpu1 = server.cpu_ns();
    drop(clients);
    let delivered = sh.delivered.load(Ordering::SeqCst);
    let wire = sh.wire_bytes.load(Ordering::SeqCst) - wire0;
    let secs = (sh.last_ns.load(Ordering::SeqCst).saturating_sub(start_ns)) as f64 / 1e9;
    let mut lat = std::mem::take(&mut *sh.lat_us.lock().unwrap());
    lat.sort_unstable();
    FanoutResult {
        per_sec: delivered as f64 / secs.max(1e-9),
        p50_ms: pct_ms(&lat, lat.len(), 0.50),
        p99_ms: pct_ms(&lat, lat.len(), 0.99),
        lost: (receivers * o.msgs) as u64 - delivered,
        cpu_ns_per_delivery: cpu1.saturating_sub(cpu0) as f64 / delivered.max(1) as f64,
        wire_b_per_delivery: wire as f64 / delivered.max(1) as f64,
    }
}

/// Messages per `hook` run (the PHP host exits after handling this many).
const HOOK_MESSAGES: usize = 500;

/// One client sends a message, waits until it comes back from the room, and sends the next;
/// returns each round trip in µs.
async fn round_trips(port: u16, n: usize) -> Vec<u32> {
    let (Conn::Plain(s), mut buf) =
        ws_connect(port, Ipv4Addr::new(127, 0, 0, 2), "name=rtt").await.expect("connect")
    else {
        unreachable!("the PHP hosts speak plain WebSocket");
    };
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
    let sh = Shared::new();
    let mut clients = Vec::new();
    let ip_for = source_ips(o.conns);
    for batch in (0..o.conns).collect::<Vec<_>>().chunks(500) {
        let mut conns = Vec::new();
        for &i in batch {
            let q = format!("room=idle-{}", i / o.room_size);
            // Drain whatever the server sends (welcome, joins) so nothing waits in its queues.
            conns.push(tokio::spawn(open(server.port, ip_for(i), q, sh.clone(), usize::MAX, None)));
        }
        for c in conns {
            let c = c.await.unwrap();
            clients.push(c.unwrap_or_else(|| panic!("connect: {:?}", sh.first_error.lock().unwrap())));
        }
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    wait_for(ready_by, || sh.ready() >= o.conns).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let open = sh.ready();
    drop(clients);
    IdleResult {
        per_conn_kib: (after.saturating_sub(before)) as f64 / o.conns as f64,
        rss_mib: after as f64 / 1024.0,
        open,
    }
}

/// Connections opened as fast as the server takes them.
struct Opened {
    clients: Vec<Client>,
    /// Welcomed before the deadline.
    held: usize,
    /// From the first connect to the last welcome.
    per_sec: f64,
    deadline_passed: bool,
}

/// Opens `n` connections into one room with at most `concurrency` of them between connect start
/// and welcome, all within `deadline`; each reader waits for `expect` messages.
async fn connect_many(
    o: &Opts,
    ports: &[u16],
    n: usize,
    room: &str,
    sh: &Arc<Shared>,
    expect: usize,
) -> Opened {
    let ip_for = source_ips(n);
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let until = Instant::now() + o.deadline;
    let first_ns = sh.now_ns();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(permit) = tokio::time::timeout_at(until.into(), sem.clone().acquire_owned()).await else {
            break;
        };
        let q = format!("room={room}");
        let port = ports[i % ports.len()];
        tasks.push(tokio::spawn(open(port, ip_for(i), q, sh.clone(), expect, Some(permit.unwrap()))));
    }
    let started = tasks.len();
    let all = wait_for(until, || sh.ready() + sh.failed.load(Ordering::SeqCst) >= started).await;
    let held = sh.ready();
    let mut clients = Vec::with_capacity(held);
    for t in tasks {
        if t.is_finished() {
            clients.extend(t.await.unwrap());
        } else {
            t.abort(); // still in its handshake at the deadline
        }
    }
    let secs = sh.last_welcome_ns.load(Ordering::SeqCst).saturating_sub(first_ns) as f64 / 1e9;
    Opened { clients, held, per_sec: held as f64 / secs.max(1e-9), deadline_passed: !all || started < n }
}

struct BigRoomResult {
    held: usize,
    deadline_passed: bool,
    per_sec: f64,
    /// Server CPU per connection held, over the connect phase.
    connect_cpu_us: f64,
    /// How busy this process was during the connect phase.
    connect_busy_pct: f64,
    rss_per_conn_b: f64,
    delivered_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
    client_busy_pct: f64,
}

async fn bigroom_once(o: &Opts, server: &Server, target: &str) -> BigRoomResult {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();
    let sh = Shared::new();
    let msgs = (o.rate * o.seconds) as usize;
    let (server0, own0, t0) = (server.cpu_ns(), cpu_ns("self"), Instant::now());
    let opened = connect_many(o, &server.ports, o.conns, "big", &sh, msgs).await;
    // The connect phase's CPU on both sides: the server's per connection (TLS handshake,
    // upgrade, join) does not depend on whether this process kept up.
    let connect_cpu_us = server.cpu_ns().saturating_sub(server0) as f64 / 1e3 / opened.held.max(1) as f64;
    let connect_busy_pct =
        cpu_ns("self").saturating_sub(own0) as f64 * 100.0 / t0.elapsed().as_nanos().max(1) as f64;
    sh.report_failures(target);
    // Let presence traffic and allocations settle, as `idle` does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let rss_per_conn_b = after.saturating_sub(before) as f64 * 1024.0 / opened.held.max(1) as f64;

    // A Pusher publisher does not get its own client events.
    let receivers = opened.clients.len().saturating_sub(usize::from(pusher_on()));
    let pad = chat_text(o.size.saturating_sub(24));
    let iv = Duration::from_nanos(1_000_000_000 / o.rate);
    let (start, own0) = (Instant::now(), cpu_ns("self"));
    let send_by = start + iv * msgs as u32 + o.deadline;
    if let Some(publisher) = opened.clients.first().map(|c| c.wr.clone()) {
        for k in 0..msgs {
            tokio::time::sleep_until((start + iv * k as u32).into()).await;
            let frame = publish_frame(&sh, &pad, "big");
            let sent = tokio::time::timeout_at(send_by.into(), async {
                publisher.lock().await.write_all(&frame).await
            });
            if !matches!(sent.await, Ok(Ok(()))) {
                println!("# {target}: the publisher could not send message {k}");
                break;
            }
        }
    }
    let expected = (receivers * msgs) as u64;
    wait_for(Instant::now() + o.deadline, || sh.delivered.load(Ordering::SeqCst) >= expected).await;
    let own1 = cpu_ns("self");
    let wall_ns = start.elapsed().as_nanos().max(1) as f64;
    drop(opened.clients);
    let delivered = sh.delivered.load(Ordering::SeqCst);
    let mut lat = std::mem::take(&mut *sh.lat_us.lock().unwrap());
    lat.sort_unstable();
    BigRoomResult {
        held: opened.held,
        deadline_passed: opened.deadline_passed,
        per_sec: opened.per_sec,
        connect_cpu_us,
        connect_busy_pct,
        rss_per_conn_b,
        // Of every connection asked for (one fewer with Pusher clients: the publisher's own
        // client events do not come back), so connections that did not get in count as lost.
        delivered_pct: delivered as f64 * 100.0 / ((o.conns - usize::from(pusher_on())) * msgs).max(1) as f64,
        p50_ms: pct_ms(&lat, lat.len(), 0.50),
        p99_ms: pct_ms(&lat, lat.len(), 0.99),
        client_busy_pct: own1.saturating_sub(own0) as f64 * 100.0 / wall_ns,
    }
}

struct StormResult {
    welcomed: usize,
    p50_ms: f64,
    p99_ms: f64,
    spread_s: f64,
}

async fn storm_once(o: &Opts, server: &Server, target: &str) -> StormResult {
    let sh = Shared::new();
    let ip_for = source_ips(o.conns);
    let t_start = Instant::now() + Duration::from_millis(50);
    let until = t_start + o.deadline;
    let mut tasks = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        // Paced: connection i starts at i/n of the spread, whatever happened to the others.
        let at = t_start + Duration::from_millis(o.spread_ms) * i as u32 / o.conns as u32;
        let (port, ip, sh) = (server.port, ip_for(i), sh.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            open(port, ip, "room=storm".into(), sh, usize::MAX, None).await
        }));
    }
    let first_ns = t_start.saturating_duration_since(sh.t0).as_nanos() as u64;
    wait_for(until, || sh.ready() + sh.failed.load(Ordering::SeqCst) >= o.conns).await;
    let welcomed = sh.ready();
    sh.report_failures(target);
    let spread_s = sh.last_start_ns.load(Ordering::SeqCst).saturating_sub(first_ns) as f64 / 1e9;
    let mut w = std::mem::take(&mut *sh.welcome_us.lock().unwrap());
    w.sort_unstable();
    for t in tasks {
        t.abort(); // a task still connecting at the deadline; finished ones drop their client
    }
    StormResult { welcomed, p50_ms: pct_ms(&w, o.conns, 0.50), p99_ms: pct_ms(&w, o.conns, 0.99), spread_s }
}

struct ChurnResult {
    before_mib: f64,
    /// Per round: welcomed, then RSS MiB once everything closed and settled.
    rounds: Vec<(usize, f64)>,
}

async fn churn_once(o: &Opts, server: &Server, target: &str) -> ChurnResult {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_mib = server.rss_kib() as f64 / 1024.0;
    let mut rounds = Vec::new();
    for _ in 0..o.rounds {
        let sh = Shared::new();
        let opened = connect_many(o, &server.ports, o.conns, "churn", &sh, usize::MAX).await;
        sh.report_failures(target);
        // Close as a client does (a close frame); the server answers and ends the connection,
        // which ends its reader.
        let until = Instant::now() + o.deadline;
        let bye = client_frame_op(8, &1000u16.to_be_bytes());
        for c in &opened.clients {
            let close = async { c.wr.lock().await.write_all(&bye).await };
            if !matches!(tokio::time::timeout_at(until.into(), close).await, Ok(Ok(()))) {
                break;
            }
        }
        let n = opened.clients.len();
        if !wait_for(until, || sh.ended.load(Ordering::SeqCst) >= n).await {
            let left = n - sh.ended.load(Ordering::SeqCst);
            println!("# {target}: {left} connections still open at the deadline (dropped)");
        }
        drop(opened.clients);
        tokio::time::sleep(Duration::from_secs(3)).await;
        rounds.push((opened.held, server.rss_kib() as f64 / 1024.0));
    }
    ChurnResult { before_mib, rounds }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median_usize(v: Vec<usize>) -> usize {
    median(v.into_iter().map(|x| x as f64).collect()) as usize
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

fn header(o: &Opts) {
    let (what, cols) = match o.mode.as_str() {
        "fanout" => (
            format!(
                "{} subscribers, {} messages of {} B, {}, {}",
                o.subs,
                o.msgs,
                o.size,
                if o.deflate { "clients offer permessage-deflate" } else { "no compression" },
                if o.rate == 0 { format!("flat out (window {})", o.window) } else { format!("{} msg/s", o.rate) }
            ),
            "| server | deliveries/s (median) | runs | p50 latency ms | p99 latency ms | lost | server CPU ns per delivery | bytes on the wire per delivery |",
        ),
        "idle" => (
            format!("{} idle connections, rooms of {}", o.conns, o.room_size),
            "| server | RSS per connection KiB (median) | runs | server RSS MiB | connections open |",
        ),
        "bigroom" => (
            format!(
                "{} connections in one room ({} handshakes in flight, deadline {} s per phase), then {} msg/s of {} B for {} s from one of them",
                o.conns, o.concurrency, o.deadline.as_secs(), o.rate, o.size, o.seconds
            ),
            "| server | held | connects/s (median) | runs | server CPU µs per connect | load generator busy % while connecting | RSS per connection B | delivered % | p50 latency ms | p99 latency ms | load generator busy % |",
        ),
        "storm" => (
            format!(
                "{} clients starting their connects within {} ms into one room; welcome deadline {} s",
                o.conns, o.spread_ms, o.deadline.as_secs()
            ),
            "| server | welcomed before the deadline | p50 to welcome ms | p99 to welcome ms (median) | runs (p99) | connect starts spread s |",
        ),
        _ => (
            format!(
                "{} rounds of {} connections into one room, all closed, settled 3 s (deadline {} s per phase)",
                o.rounds, o.conns, o.deadline.as_secs()
            ),
            "| server | welcomed per round | RSS before MiB | RSS after each round MiB | growth first → last round KiB | growth per connection B |",
        ),
    };
    println!("# {what}");
    println!("{cols}");
    println!("{}|", "|---".repeat(cols.matches(" | ").count() + 1));
}

fn join(v: &[f64], digits: usize) -> String {
    v.iter().map(|x| format!("{x:.digits$}")).collect::<Vec<_>>().join(" / ")
}

/// Runs one target `o.runs` times, prints its row and returns the figures the ratios compare.
fn bench_target(o: &Opts, rt: &tokio::runtime::Runtime, target: &str) -> Vec<(&'static str, f64)> {
    TLS_ON.store(o.tls && target == "embedchat", Ordering::SeqCst);
    PUSHER.store(target == "pusher" || target == "soketi", Ordering::SeqCst);
    let start = || Server::start(target, o.server_cpu);
    match o.mode.as_str() {
        "fanout" => {
            let mut r = Vec::new();
            for _ in 0..o.runs {
                let server = start();
                r.push(rt.block_on(fanout_once(o, &server)));
                server.stop();
            }
            let per_sec: Vec<f64> = r.iter().map(|x| x.per_sec).collect();
            let m = median(per_sec.clone());
            let cpu = median(r.iter().map(|x| x.cpu_ns_per_delivery).collect());
            let wire = median(r.iter().map(|x| x.wire_b_per_delivery).collect());
            println!(
                "| {target} | {m:.0} | {} | {} | {} | {} | {cpu:.0} | {wire:.1} |",
                join(&per_sec, 0),
                ms(median(r.iter().map(|x| x.p50_ms).collect())),
                ms(median(r.iter().map(|x| x.p99_ms).collect())),
                r.iter().map(|x| x.lost).sum::<u64>(),
            );
            vec![("throughput", m), ("server CPU per delivery", cpu), ("bytes per delivery", wire)]
        }
        "idle" => {
            let mut r = Vec::new();
            for _ in 0..o.runs {
                let server = start();
                r.push(rt.block_on(idle_once(o, &server)));
                server.stop();
            }
            let per: Vec<f64> = r.iter().map(|x| x.per_conn_kib).collect();
            let m = median(per.clone());
            let rss = median(r.iter().map(|x| x.rss_mib).collect());
            println!("| {target} | {m:.2} | {} | {rss:.1} | {} |", join(&per, 2), r.last().unwrap().open);
            vec![("memory per connection", m)]
        }
        "bigroom" => {
            let mut r = Vec::new();
            for _ in 0..o.runs {
                let server = start();
                r.push(rt.block_on(bigroom_once(o, &server, target)));
                server.stop();
            }
            let rate: Vec<f64> = r.iter().map(|x| x.per_sec).collect();
            let m = median(rate.clone());
            let held = median_usize(r.iter().map(|x| x.held).collect());
            let held = if r.iter().any(|x| x.deadline_passed) {
                let each = r.iter().map(|x| x.held.to_string()).collect::<Vec<_>>().join(" / ");
                format!("{held} (deadline passed; runs {each})")
            } else {
                held.to_string()
            };
            let rss = median(r.iter().map(|x| x.rss_per_conn_b).collect());
            let p99 = median(r.iter().map(|x| x.p99_ms).collect());
            println!(
                "| {target} | {held} | {m:.0} | {} | {:.0} | {:.0} | {rss:.0} | {:.2} | {} | {} | {:.0} |",
                join(&rate, 0),
                median(r.iter().map(|x| x.connect_cpu_us).collect()),
                median(r.iter().map(|x| x.connect_busy_pct).collect()),
                median(r.iter().map(|x| x.delivered_pct).collect()),
                ms(median(r.iter().map(|x| x.p50_ms).collect())),
                ms(p99),
                median(r.iter().map(|x| x.client_busy_pct).collect()),
            );
            vec![("connect rate", m), ("RSS per connection", rss), ("p99 latency", p99)]
        }
        "storm" => {
            let mut r = Vec::new();
            for _ in 0..o.runs {
                let server = start();
                r.push(rt.block_on(storm_once(o, &server, target)));
                server.stop();
            }
            let p99: Vec<f64> = r.iter().map(|x| x.p99_ms).collect();
            let m = median(p99.clone());
            println!(
                "| {target} | {} of {} | {} | {} | {} | {:.2} |",
                median_usize(r.iter().map(|x| x.welcomed).collect()),
                o.conns,
                ms(median(r.iter().map(|x| x.p50_ms).collect())),
                ms(m),
                p99.iter().map(|&x| ms(x)).collect::<Vec<_>>().join(" / "),
                median(r.iter().map(|x| x.spread_s).collect()),
            );
            vec![("p99 to welcome", m)]
        }
        _ => {
            // Rounds are what this mode compares; each run is printed as a row of its own.
            for _ in 0..o.runs {
                let server = start();
                let r = rt.block_on(churn_once(o, &server, target));
                server.stop();
                let first = r.rounds.first().unwrap().1;
                let last = r.rounds.last().unwrap().1;
                let growth_kib = (last - first) * 1024.0;
                println!(
                    "| {target} | {} | {:.1} | {} | {growth_kib:.0} | {:.0} |",
                    r.rounds.iter().map(|x| x.0.to_string()).collect::<Vec<_>>().join(" / "),
                    r.before_mib,
                    join(&r.rounds.iter().map(|x| x.1).collect::<Vec<_>>(), 1),
                    growth_kib * 1024.0 / o.conns as f64,
                );
            }
            Vec::new()
        }
    }
}

fn main() {
    let o = parse_opts();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    pin_self(o.client_cpu);
    DEFLATE.store(o.deflate, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "# bench {} | server pinned to cpu {}, clients on cpu {} | {} cores | runs {}",
        o.mode, o.server_cpu, o.client_cpu, cores, o.runs
    );
    if o.mode == "hook" {
        return hook_bench(&o, &rt);
    }
    if o.tls {
        let _ = TLS.set(make_tls());
        println!("# --tls: embedchat serves wss:// (rustls, ring, ECDSA P-256, full handshakes); uws and ws stay plain");
    }
    header(&o);
    let summary: Vec<(&str, Vec<(&str, f64)>)> =
        o.targets.iter().map(|t| (t.as_str(), bench_target(&o, &rt, t))).collect();
    // Every target against embedchat (or the first target when embedchat is not in the run).
    let reference = summary.iter().find(|s| s.0 == "embedchat").unwrap_or(&summary[0]);
    for (target, figures) in summary.iter().filter(|s| s.0 != reference.0) {
        for ((what, a), (_, b)) in reference.1.iter().zip(figures) {
            let ratio = if a.is_finite() && b.is_finite() && *b != 0.0 {
                format!("{:.2}", a / b)
            } else {
                "n/a".into()
            };
            println!("# {what} {}/{target}: {ratio}", reference.0);
        }
    }
}
