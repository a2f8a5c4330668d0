//! What a hostile client tries, over real sockets: floods of control frames, rooms and history
//! as a memory sink, history too big for a newcomer's backlog. Each test says what must hold.
// The tests take turns on one lock, held across awaits on purpose: each runs on its own
// runtime, so nothing else waits on that lock while it is held.
#![allow(clippy::await_holding_lock)]

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

/// RSS is per process: the tests here take turns, so one's allocations never show in another's
/// measurement.
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    MEASURING.lock().unwrap_or_else(|p| p.into_inner())
}

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
    let _one = alone();
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
    let _one = alone();
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

/// A client that reads everything: the frames' texts in order until `until` says stop.
async fn read_until(
    ws: &mut Client,
    mut until: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    loop {
        let v = recv(ws).await;
        let done = until(&v);
        got.push(v);
        if done {
            return got;
        }
    }
}

/// The messages of every `history` frame up to the last page, and the frames themselves.
async fn whole_history(ws: &mut Client) -> (Vec<u64>, usize) {
    let frames = read_until(ws, |v| v["type"] == "history" && v.get("partial").is_none()).await;
    let pages: Vec<&serde_json::Value> = frames.iter().filter(|v| v["type"] == "history").collect();
    let ids = pages
        .iter()
        .flat_map(|p| p["messages"].as_array().unwrap())
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    (ids, pages.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_big_messages_stays_joinable_and_newcomers_get_all_of_it_in_pages() {
    let _one = alone();
    let e = engine(json!({"history_max_bytes": 4 << 20, "max_messages_per_second": 0}));
    let mut poster = connect(&e, "name=poster&room=big").await;
    welcomed(&mut poster).await;
    let big = "x".repeat(60_000);
    for _ in 0..20 {
        send(&mut poster, &big).await;
        recv_type(&mut poster, "message").await;
    }
    // 20 × 60 KB is more than the 1 MiB backlog: one history frame would close the newcomer.
    let mut newcomer = connect(&e, "name=late&room=big").await;
    assert_eq!(recv(&mut newcomer).await["type"], "welcome");
    let (ids, pages) = whole_history(&mut newcomer).await;
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>(), "all of it, in order");
    assert!(pages >= 2, "in pages ({pages})");
    // Still connected: it can talk.
    send(&mut newcomer, "hello").await;
    assert_eq!(recv_type(&mut newcomer, "message").await["text"], "hello");

    // Resuming from the start gets the same, in pages too.
    let w = recv_type(&mut poster, "message").await;
    assert_eq!(w["text"], "hello");
    let epoch = e.history_epoch().to_string();
    let mut back = connect(&e, &format!("name=back&room=big&since=0&epoch={epoch}")).await;
    recv(&mut back).await;
    let (ids, _) = whole_history(&mut back).await;
    assert_eq!(ids, (1..=21).collect::<Vec<u64>>());

    // Paging back answers with what fits the backlog, and says there is more.
    send(&mut back, r#"{"type":"history","room":"big","limit":50}"#).await;
    let page = recv_type(&mut back, "history").await;
    let n = page["messages"].as_array().unwrap().len();
    assert!((1..21).contains(&n), "{n}");
    assert_eq!(page["more"], true);
    assert_eq!(e.stats().slow_consumer_closes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded_in_bytes_per_room_and_in_total() {
    let _one = alone();
    let e = engine(json!({
        "history_max_bytes": 20_000, "history_total_bytes": 50_000, "max_messages_per_second": 0,
    }));
    // Control characters are kept escaped, six bytes each: the byte bound counts what is kept.
    let nasty = "\u{1}".repeat(1000);
    for room in ["a", "b", "c", "d"] {
        let mut c = connect(&e, &format!("name=w{room}&room={room}")).await;
        welcomed(&mut c).await;
        for _ in 0..10 {
            send(&mut c, &nasty).await;
            recv_type(&mut c, "message").await;
        }
        c.close(None).await.unwrap();
        while e.members(room).map(|m| m.len()).unwrap_or(0) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let st = e.stats();
    assert!(st.history_trimmed > 0, "a room keeps at most 20 kB: {st:?}");
    assert!(st.rooms_evicted >= 1, "four rooms of 20 kB do not fit 50 kB: {st:?}");
    let mut kept = 0;
    for room in ["a", "b", "c", "d"] {
        let mut c = connect(&e, &format!("room={room}")).await;
        recv(&mut c).await;
        let h = recv_type(&mut c, "history").await;
        let bytes: usize = h["messages"].as_array().unwrap().iter().map(|m| m.to_string().len()).sum();
        assert!(bytes <= 20_000, "room {room} keeps {bytes} bytes");
        kept += bytes;
    }
    assert!(kept <= 50_000, "all rooms keep {kept} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_create_rooms_without_end() {
    let _one = alone();
    // The first connection creates `lobby` (its first room) and three more: four of its own.
    let e = engine(json!({"max_created_rooms_per_connection": 4, "max_rooms_per_ip": 5, "max_rooms": 8}));
    let mut a = connect(&e, "name=maker").await;
    welcomed(&mut a).await;
    for r in ["r1", "r2", "r3"] {
        send(&mut a, &format!(r#"{{"type":"join","room":"{r}"}}"#)).await;
        recv_type(&mut a, "history").await;
    }
    send(&mut a, r#"{"type":"join","room":"r4"}"#).await;
    let err = recv_type(&mut a, "error").await;
    assert_eq!(err["code"], "room_limit", "{err}");
    // Joining rooms that exist is still fine.
    send(&mut a, r#"{"type":"join","room":"lobby"}"#).await;
    recv_type(&mut a, "history").await;

    // A second connection from the same address: the address is at 4 of 5 (lobby was created
    // by the first connection too).
    let mut b = connect(&e, "name=other").await;
    welcomed(&mut b).await;
    send(&mut b, r#"{"type":"join","room":"s1"}"#).await;
    recv_type(&mut b, "history").await;
    send(&mut b, r#"{"type":"join","room":"s2"}"#).await;
    assert_eq!(recv_type(&mut b, "error").await["code"], "room_limit");
    // Its first room in the URL refused: nowhere to be, closed with the reason.
    let mut c = connect(&e, "name=third&room=brand-new").await;
    assert_eq!(close_code(&mut c).await.map(u16::from), Some(1008));
    assert_eq!(e.stats().room_refusals, 3);
    // Rooms come back when they go: leaving one (no history) frees its count.
    send(&mut a, r#"{"type":"leave","room":"r1"}"#).await;
    send(&mut a, r#"{"type":"join","room":"r4"}"#).await;
    assert_eq!(recv_type(&mut a, "history").await["room"], "r4");
}
