//! What a hostile client tries, over real sockets: floods of control frames, rooms and history
//! as a memory sink, history too big for a newcomer's backlog. Each test says what must hold.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Resident memory of this process (the engine runs in it), in KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// RSS is per process: tests that measure it must not overlap.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A client past the upgrade with a tiny receive buffer, so the kernel absorbs little of what
/// the server sends and the engine's own bounds are what is measured.
fn deaf_client(port: u16, path: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    upgrade_on(&mut s, path);
    s
}

/// Masked empty pings, `n` of them back to back.
fn pings(n: usize) -> Vec<u8> {
    [0x89u8, 0x80, 1, 2, 3, 4].repeat(n)
}

/// Sends pings without ever reading for up to `limit`; returns how long the server let it.
fn ping_flood(s: &mut TcpStream, limit: Duration) -> Duration {
    s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let burst = pings(10_000);
    let mut at = 0; // a short write must not cut the frames that follow
    let start = Instant::now();
    while start.elapsed() < limit {
        match s.write(&burst[at..]) {
            Ok(n) => at = (at + n) % burst.len(),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(e) => {
                eprintln!("flood ended: {e}");
                break; // closed by the server
            }
        }
    }
    start.elapsed()
}

#[test]
fn a_ping_flood_that_never_reads_keeps_memory_flat() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    // No rate limit: only the bound on unanswered pongs protects the engine here.
    let e = engine(json!({"max_messages_per_second": 0, "close_timeout_ms": 200}));
    let mut s = deaf_client(e.port(), "/ws?name=pinger");
    ping_flood(&mut s, Duration::from_secs(1)); // the engine's buffers settle
    let before = rss_kib();
    let ran = ping_flood(&mut s, Duration::from_secs(10));
    let grown = rss_kib() as i64 - before as i64;
    assert!(ran >= Duration::from_secs(9), "the flood ran its course ({ran:?})");
    assert!(grown < 2048, "RSS grew {grown} KiB during a 10 s ping flood");
    assert!(e.stats().bytes_in > 10_000_000, "the engine kept reading: {:?}", e.stats());
}

#[test]
fn a_ping_flood_counts_against_the_rate_limit_and_is_closed_with_1008() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let e = engine(json!({"close_timeout_ms": 200}));
    let mut s = deaf_client(e.port(), "/ws?name=pinger");
    let before = rss_kib();
    let ran = ping_flood(&mut s, Duration::from_secs(10));
    let grown = rss_kib() as i64 - before as i64;
    assert!(ran < Duration::from_secs(5), "the flooder was cut off ({ran:?})");
    assert!(grown < 2048, "RSS grew {grown} KiB");
    let st = e.stats();
    assert_eq!(st.rate_limit_closes, 1, "{st:?}");
    assert!(st.rate_limited >= 40, "{st:?}");
}
